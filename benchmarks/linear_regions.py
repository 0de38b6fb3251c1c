"""Exact region enumeration against dense sampling at the paper's increment (one run, one machine).

Both count the linear regions of a shipped denoiser along the lesion-contrast path of chapter 4
over the same interval: the exact walk (one float64 network evaluation per region) and sampling the
activation pattern every 2e-7 mm^-1 (the seed paper's increment). Reports time, network evaluations
and regions found, and the ratios.

    .venv/bin/python benchmarks/linear_regions.py [--model chen] [--roi-size 64] [--span 0.0005]
"""

from __future__ import annotations

import argparse
import time

import torch

from lib import models
from lib.ct.scenes import lung_lesion_scene
from lib.linearity import enumerate_regions, sample_patterns
from results import write_result  # benchmarks/results.py

PAPER_INCREMENT = 2e-7


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="chen")
    parser.add_argument("--roi-size", type=int, default=64)
    parser.add_argument("--start", type=float, default=0.007, help="lesion contrast (mm^-1)")
    parser.add_argument("--span", type=float, default=0.0005, help="contrast interval walked")
    parser.add_argument("--chunks", type=int, default=16)
    parser.add_argument("--batch", type=int, default=128, help="samples per pass when sampling")
    args = parser.parse_args()

    net = models.load(args.model).double()
    scene = lung_lesion_scene(args.roi_size)
    x0, d = scene.at(args.start).double(), scene.profile.double()

    t = time.perf_counter()
    walk = enumerate_regions(net, x0, d, 0.0, args.span, chunks=args.chunks)
    exact_s = time.perf_counter() - t
    ts = torch.arange(0.0, args.span, PAPER_INCREMENT, dtype=torch.float64)
    t = time.perf_counter()
    sampled = sample_patterns(net, x0, d, ts, batch=args.batch)
    sampled_s = time.perf_counter() - t
    sampled_regions = int((sampled.hashes[1:] != sampled.hashes[:-1]).sum()) + 1
    exact_evals = walk.forward_passes * args.chunks  # each pass evaluates one point per chunk

    result = {
        "model": args.model, "roi_size": args.roi_size, "contrast": [args.start, args.start + args.span],
        "exact": {"seconds": exact_s, "evaluations": exact_evals, "batched_passes": walk.forward_passes,
                  "regions": walk.n_regions},
        "sampled_2e-7": {"seconds": sampled_s, "evaluations": len(ts), "regions": sampled_regions,
                         "distinct_patterns": int(sampled.cumulative_patterns[-1])},
        "regions_missed_by_sampling": walk.missed_by_sampling(PAPER_INCREMENT),
        "speedup": sampled_s / exact_s,
        "evaluation_ratio": len(ts) / exact_evals,
    }
    print(f"{args.model}, ROI {args.roi_size}, contrast {args.start} to {args.start + args.span}")
    print(f"{'':>22} {'seconds':>9} {'evaluations':>12} {'regions':>8}")
    print(f"{'exact walk':>22} {exact_s:9.1f} {exact_evals:12,} {walk.n_regions:8,}")
    print(f"{'sampling at 2e-7':>22} {sampled_s:9.1f} {len(ts):12,} {sampled_regions:8,}")
    print(f"exact is {result['speedup']:.1f}x faster with {result['evaluation_ratio']:.1f}x fewer "
          f"evaluations; sampling missed {result['regions_missed_by_sampling']} regions")
    write_result("linear_regions", result)


if __name__ == "__main__":
    main()
