"""The two-JVP error table against linearising at every grid point separately (one run).

Both compute, for each candidate operating point on a (contrast, background) grid, the percent
error of its linearisation at every grid point. The two-JVP way (``linearization_errors``) takes
``J0 lesion`` and ``J0 background`` once per operating point; the naive way evaluates
``H(x0) + J0 (x - x0)`` with one JVP per grid point and operating point (``linearize``). Reports the
time per operating point, the JVP counts, and the largest difference of the two tables.

    .venv/bin/python benchmarks/approximate_regions.py [--model chen] [--roi-size 64] [--grid 14 11]
"""

from __future__ import annotations

import argparse
import time

import torch

from results import write_result  # benchmarks/results.py


def main() -> None:
    from lib import models
    from lib.ct.scenes import uniform_lesion_scene
    from lib.linearity import linearization_errors, linearize, percent_error
    from lib.models.receptive_field import receptive_field

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="chen")
    parser.add_argument("--roi-size", type=int, default=64)
    parser.add_argument("--grid", type=int, nargs=2, default=(14, 11), metavar=("N_C", "N_B"))
    parser.add_argument("--naive-points", type=int, default=4,
                        help="operating points timed the naive way (it is slow)")
    args = parser.parse_args()

    net = models.load(args.model)
    margin = max(receptive_field(net)) // 2
    scene = uniform_lesion_scene(args.roi_size)
    contrasts = torch.linspace(0.001, 0.08, args.grid[0])
    backgrounds = torch.linspace(0.0, 0.04, args.grid[1])
    n = args.grid[0] * args.grid[1]

    start = time.perf_counter()
    table = linearization_errors(net, scene, contrasts, backgrounds, margin=margin)
    two_jvp_seconds = time.perf_counter() - start

    points = torch.linspace(0, n - 1, args.naive_points).round().long().tolist()
    grid = torch.tensor([table.point(k) for k in range(n)])
    inputs = scene.at(grid[:, 0], grid[:, 1])
    start = time.perf_counter()
    naive = []
    for k in points:
        lin = linearize(net, scene.at(*table.point(k)), dtype=torch.float32)
        approx = torch.cat([lin(inputs[g:g + 1]) for g in range(n)])  # one JVP per grid point
        naive.append(percent_error(table.outputs, approx, margin=margin))
    naive_seconds = time.perf_counter() - start
    difference = max(float((e - table.errors[k].flatten()).abs().max()) for k, e in zip(points, naive))

    per_point_two = two_jvp_seconds / n
    per_point_naive = naive_seconds / len(points)
    result = {
        "model": args.model, "roi_size": args.roi_size, "grid": list(args.grid), "grid_points": n,
        "two_jvp": {"seconds_total": two_jvp_seconds, "seconds_per_operating_point": per_point_two,
                    "jvps_per_operating_point": 2, "forward_passes": table.forward_passes},
        "naive": {"seconds_per_operating_point": per_point_naive, "jvps_per_operating_point": n,
                  "operating_points_timed": len(points)},
        "speedup_per_operating_point": per_point_naive / per_point_two,
        "max_difference_percent_points": difference,
    }
    print(f"{args.model}, ROI {args.roi_size}, grid {args.grid[0]}x{args.grid[1]} = {n} points")
    print(f"two JVPs:  {per_point_two:.3f} s per operating point (whole table {two_jvp_seconds:.1f} s, "
          "forward passes included)")
    print(f"naive:     {per_point_naive:.3f} s per operating point ({n} JVPs each)")
    print(f"speed-up {result['speedup_per_operating_point']:.0f}x; tables differ by at most "
          f"{difference:.1e} percentage points")
    write_result("approximate_regions", result)


if __name__ == "__main__":
    main()
