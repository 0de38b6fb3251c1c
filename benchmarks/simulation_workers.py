"""Simulating a dataset in one process against one worker process per core.

``lib.ct.datasets.phantom_pairs`` spreads a large set over worker processes; each example depends on
its own seed alone, so both ways give identical pairs (checked here as well). We report the wall
time of each, their ratio, and the cores. One run, one machine:

    .venv/bin/python benchmarks/simulation_workers.py [--n 8] [--slab 1]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from lib.ct.datasets import DoseProtocol, phantom_pairs
from lib.device import available_cores
from results import write_result  # benchmarks/results.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=8, help="examples (phantom slices or slabs)")
    parser.add_argument("--slab", type=int, default=1, help="slices per example")
    args = parser.parse_args()
    protocol = DoseProtocol(slab=args.slab)
    cores = available_cores()
    timings, pairs = {}, {}
    for workers in (1, cores):
        start = time.perf_counter()
        pairs[workers] = phantom_pairs("validation", args.n, protocol, cache=False,
                                       progress=False, workers=workers)
        timings[workers] = time.perf_counter() - start
    identical = all(torch.equal(getattr(pairs[1], k), getattr(pairs[cores], k))
                    for k in ("low", "normal", "truth"))
    result = {"machine": platform.processor() or platform.machine(), "cores": cores,
              "size": protocol.size, "n": args.n, "slab": args.slab,
              "one_process_s": timings[1], "workers_s": timings[cores],
              "speedup": timings[1] / timings[cores], "identical": identical}
    print(f"{args.n} examples of {args.slab} x {protocol.size}^2: one process {timings[1]:.1f} s, "
          f"{cores} workers {timings[cores]:.1f} s ({result['speedup']:.2f}x); identical: {identical}")
    write_result("simulation_workers", result)


if __name__ == "__main__":
    main()
