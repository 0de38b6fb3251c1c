"""The probed Jacobian against the per-output-pixel autograd loop (one run, one machine).

Both compute the exact dense Jacobian of a shipped denoiser at an ROI of a low-dose scan: receptive-
field lattice probing (RF^2 products J p, batched) and one ``autograd.grad`` call per output pixel
(the way public code does it). Reports time, peak memory (each method in its own process, resident
set size) and agreement. The largest ROI each handles in 24 GiB follows from what it must store:
both hold the dense n^2 x n^2 matrix (n = ROI side); the probed method can instead return it
sparse (n^2 x RF^2 entries with two int64 indices each), which reaches whole slices.

    .venv/bin/python benchmarks/jacobian.py [--model chen] [--roi-size 64] [--dtype float32]

Both methods run in the same precision: float32 (the models' own) by default, float64 on request.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

import torch

from results import write_result  # benchmarks/results.py

LIMIT_BYTES = 24 * 1024 ** 3


def run(method: str, model_name: str, roi_size: int, dtype: str, out: Path, queue) -> None:
    from lib import models
    from lib.ct.scenes import lung_lesion_scene
    from lib.linearity import jacobian

    net = models.load(model_name).to(getattr(torch, dtype))
    x = lung_lesion_scene(roi_size).at(0.007).to(getattr(torch, dtype))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    if method == "probed":
        J = jacobian(net, x)
    else:
        x = x.clone().requires_grad_(True)
        y = net(x).flatten()
        J = torch.stack([torch.autograd.grad(y[i], x, retain_graph=True)[0].flatten()
                         for i in range(len(y))])
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    torch.save(J, out)
    queue.put({"seconds": seconds, "peak_bytes": peak, "added_bytes": peak - before})


def measure(method, model, roi_size, dtype, out):
    queue = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=run, args=(method, model, roi_size, dtype, out,
                                                             queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="chen")
    parser.add_argument("--roi-size", type=int, default=64)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    args = parser.parse_args()
    # a private folder (mode 700, unpredictable name): nobody else can plant or swap the files
    work = tempfile.TemporaryDirectory(prefix="jacobian-benchmark-")
    files = {m: Path(work.name) / f"{m}.pt" for m in ("probed", "autograd_loop")}
    results = {m: measure(m, args.model, args.roi_size, args.dtype, files[m]) for m in files}
    itemsize = torch.tensor([], dtype=getattr(torch, args.dtype)).element_size()
    from lib import models
    from lib.models.receptive_field import receptive_field

    field = max(receptive_field(models.load(args.model)))
    results["largest_roi_in_24GiB"] = {
        "dense (both methods)": int((LIMIT_BYTES / itemsize) ** 0.25),
        "sparse (probed)": int((LIMIT_BYTES / (field ** 2 * (itemsize + 16))) ** 0.5),
    }
    a = torch.load(files["probed"], weights_only=True)
    b = torch.load(files["autograd_loop"], weights_only=True)
    work.cleanup()
    results["max_abs_difference"] = float((a - b).abs().max())
    results["max_abs_entry"] = float(b.abs().max())
    results["dtype"] = args.dtype
    results["speedup"] = results["autograd_loop"]["seconds"] / results["probed"]["seconds"]
    print(f"{args.model}, {args.roi_size}x{args.roi_size} ROI, {args.dtype}: dense Jacobian "
          f"{a.shape[0]}x{a.shape[1]}")
    for m in ("probed", "autograd_loop"):
        r = results[m]
        print(f"{m:>14}: {r['seconds']:7.1f} s, peak resident memory {r['peak_bytes'] / 2**30:5.2f} GiB")
    print("largest ROI in 24 GiB: " + ", ".join(f"{k} {v}x{v}" for k, v in
                                                 results["largest_roi_in_24GiB"].items()))
    print(f"probed is {results['speedup']:.1f}x faster; largest difference "
          f"{results['max_abs_difference']:.1e}")
    write_result(f"jacobian_{args.dtype}", results)


if __name__ == "__main__":
    main()
