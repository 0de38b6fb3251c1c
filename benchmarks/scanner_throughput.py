"""Throughput of lib.ct.Scanner (ASTRA) against scikit-image's radon / iradon on the same slices.

Both project and reconstruct the same thorax slices with the same number of views and a ramp
filter; we report slices per second for projection and for FBP, the ratio, and each method's
noiseless reconstruction error so that the comparison is like for like. It also times FBP of one
ROI alone (``window=``) against FBP of the whole slice cropped to the ROI, with their largest
difference. One run, one machine:

    .venv/bin/python benchmarks/scanner_throughput.py [--size 512] [--angles 360] [--slices 8]
        [--roi 64]
"""

from __future__ import annotations

import argparse
import platform

import numpy as np
import torch
from skimage.transform import iradon, radon

from lib.ct import PAPER, Scanner, thorax_phantom
from results import best_time, write_result  # benchmarks/results.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=PAPER.size)
    parser.add_argument("--angles", type=int, default=360)
    parser.add_argument("--slices", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--roi", type=int, default=64, help="side of the windowed FBP's ROI")
    args = parser.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))

    pixel_mm = PAPER.field_of_view_mm / args.size
    truth = torch.stack([thorax_phantom(args.size, pixel_mm, seed=s) for s in range(args.slices)])
    scanner = Scanner(args.size, pixel_mm, args.angles, filter="ramp")
    degrees = np.degrees(scanner.angles)
    images = truth.numpy().astype(np.float64)

    t_astra_fp, sino = best_time(lambda: scanner.project(truth), args.repeats)
    t_astra_fbp, recon = best_time(lambda: scanner.fbp(sino), args.repeats)
    t_sk_fp, sk_sino = best_time(lambda: [radon(im, degrees, circle=False) for im in images], args.repeats)
    t_sk_fbp, sk_recon = best_time(
        lambda: [iradon(s, degrees, output_size=args.size, filter_name="ramp", circle=False)
                 for s in sk_sino], args.repeats)
    start = (args.size - args.roi) // 2
    window = (slice(start, start + args.roi),) * 2
    t_window, roi_recon = best_time(lambda: scanner.fbp(sino, window=window), args.repeats)
    sk_recon = np.stack(sk_recon)  # radon and iradon both work in pixel units: mu comes back

    def rmse(a):
        return float(np.sqrt(np.mean((np.asarray(a) - images) ** 2)))

    result = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "size": args.size, "angles": args.angles, "slices": args.slices,
        "astra_project_s_per_slice": t_astra_fp / args.slices,
        "astra_fbp_s_per_slice": t_astra_fbp / args.slices,
        "skimage_radon_s_per_slice": t_sk_fp / args.slices,
        "skimage_iradon_s_per_slice": t_sk_fbp / args.slices,
        "speedup_project": t_sk_fp / t_astra_fp,
        "speedup_fbp": t_sk_fbp / t_astra_fbp,
        "speedup_scan_total": (t_sk_fp + t_sk_fbp) / (t_astra_fp + t_astra_fbp),
        "roi": args.roi, "astra_fbp_roi_s_per_slice": t_window / args.slices,
        "speedup_fbp_roi": t_astra_fbp / t_window,
        "roi_max_difference_mm-1": float((roi_recon - recon[(..., *window)]).abs().max()),
        "astra_noiseless_rmse_mm-1": rmse(recon.numpy()),
        "skimage_noiseless_rmse_mm-1": rmse(sk_recon),
    }
    print(f"{args.slices} slices of {args.size}x{args.size}, {args.angles} views, ramp filter")
    print(f"{'':>10} {'lib.ct (ASTRA)':>16} {'scikit-image':>14} {'ratio':>7}")
    print(f"{'project':>10} {result['astra_project_s_per_slice'] * 1e3:13.1f} ms "
          f"{result['skimage_radon_s_per_slice'] * 1e3:11.1f} ms {result['speedup_project']:6.1f}x")
    print(f"{'FBP':>10} {result['astra_fbp_s_per_slice'] * 1e3:13.1f} ms "
          f"{result['skimage_iradon_s_per_slice'] * 1e3:11.1f} ms {result['speedup_fbp']:6.1f}x")
    print(f"{'both':>10} {'':>16} {'':>14} {result['speedup_scan_total']:6.1f}x")
    print(f"FBP of a {args.roi}x{args.roi} ROI alone: {t_window / args.slices * 1e3:.1f} ms, "
          f"{result['speedup_fbp_roi']:.1f}x the whole slice; largest difference "
          f"{result['roi_max_difference_mm-1']:.1e} mm^-1")
    print(f"noiseless RMSE against the phantom: lib.ct {result['astra_noiseless_rmse_mm-1']:.2e}, "
          f"scikit-image {result['skimage_noiseless_rmse_mm-1']:.2e} mm^-1")
    write_result("scanner_throughput", result)


if __name__ == "__main__":
    main()
