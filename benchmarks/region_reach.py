"""How far an input's linear region reaches along v_1: one forward-mode pass against bisection.

Chapter 8 asserts that ``t v_1`` attains ``s_1`` inside the input's linear region, which needs the
region's end along ``+-v_1``. :func:`lib.linearity.distance_to_boundary` finds it exactly in one
float64 forward-mode pass. The naive way: grow a step until the activation pattern at
``x + t v_1`` differs from the one at ``x``, then bisect on "same pattern" to a relative width of
1e-9, one forward pass per test. Both on every shipped denoiser at chapter 8's operating point
(lung-lesion ROI); reports the two distances, their relative difference, passes, time and ratios,
all from one run (each time the best of ``--repeats``).

    .venv/bin/python benchmarks/region_reach.py [--roi-size 64] [--power-iterations 20]
"""

from __future__ import annotations

import argparse

import torch

from lib import models
from lib.ct import PAPER
from lib.ct.scenes import lung_lesion_scene
from lib.ct.units import norm_to_rms_hu
from lib.linearity import activation_pattern, distance_to_boundary, power_iteration
from results import best_time, write_result  # benchmarks/results.py

REL_WIDTH = 1e-9


def bisect_reach(net: torch.nn.Module, x: torch.Tensor, unit: torch.Tensor,
                 first_step: float) -> tuple[float, int]:
    """The first t > 0 where the pattern of ``x + t unit`` leaves the one of ``x``, by bracketing
    then bisection; returns (t, forward passes)."""
    start = activation_pattern(net, x)
    passes = 1

    def same(t: float) -> bool:
        nonlocal passes
        passes += 1
        return bool(torch.equal(activation_pattern(net, x + t * unit), start))

    lo, hi = 0.0, first_step
    while same(hi):  # grow the bracket until it holds a boundary
        lo, hi = hi, 2 * hi
    while hi - lo > REL_WIDTH * hi:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if same(mid) else (lo, mid)
    return hi, passes


def compare(net: torch.nn.Module, x: torch.Tensor, direction: torch.Tensor, first_step: float,
            repeats: int) -> dict:
    """Both ways along one direction: distances (mm^-1), their relative difference, passes, time."""
    exact_s, exact = best_time(lambda: distance_to_boundary(net, x, direction), repeats)
    bisect_s, (bisected, passes) = best_time(lambda: bisect_reach(net, x, direction, first_step),
                                             repeats)
    return {"exact": exact, "bisected": bisected,
            "relative_difference": abs(bisected - exact) / exact, "exact_passes": 1,
            "bisection_passes": passes, "exact_seconds": exact_s, "bisection_seconds": bisect_s,
            "speedup": bisect_s / exact_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--roi-size", type=int, default=64)
    parser.add_argument("--power-iterations", type=int, default=20)
    parser.add_argument("--first-step", type=float, default=1e-4,
                        help="bisection's first trial step (norm of the perturbation, mm^-1)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    rows = {}
    print(f"{'network':>10} {'sign':>4} {'exact (HU RMS)':>15} {'bisection':>12} {'rel. diff':>10} "
          f"{'passes':>7} {'exact s':>8} {'bisect s':>9}")
    for name in models.DENOISERS:
        net = models.load(name).requires_grad_(False)
        slab = models.slab_of(net)
        x = lung_lesion_scene(args.roi_size, slab=slab).at(PAPER.lesion_contrast)
        _, v1, _ = power_iteration(net, x, args.power_iterations)
        net64, x64, unit = net.double().eval(), x.double(), (v1 / v1.norm()).double()
        n = x[0].numel()
        for sign in (1.0, -1.0):
            row = compare(net64, x64, sign * unit, args.first_step, args.repeats)
            row |= {"exact_hu_rms": norm_to_rms_hu(row["exact"], n),
                    "bisected_hu_rms": norm_to_rms_hu(row["bisected"], n)}
            rows[f"{name}{sign:+.0f}"] = row
            print(f"{name:>10} {sign:+4.0f} {row['exact_hu_rms']:15.3e} "
                  f"{row['bisected_hu_rms']:12.3e} {row['relative_difference']:10.1e} "
                  f"{row['bisection_passes']:7d} {row['exact_seconds']:8.2f} "
                  f"{row['bisection_seconds']:9.2f}")
    speedups = [r["speedup"] for r in rows.values()]
    print(f"one exact pass is {min(speedups):.0f}x to {max(speedups):.0f}x faster than bisection "
          f"to a relative width of {REL_WIDTH:g}")
    write_result("region_reach", {"roi_size": args.roi_size, "rel_width": REL_WIDTH, "rows": rows})


if __name__ == "__main__":
    main()
