"""The phantom's lung texture: the separable evaluation against the direct cosine sum.

The texture is a sum of 96 plane waves. ``lib.ct.phantom`` evaluates it as two matrix products
(each wave splits into a row factor and a column factor); the direct way takes one cosine per wave
and pixel. We report the time of each per slice, their ratio, the largest difference between the
two fields, and the time of a whole phantom slice at the book's grid. One run, one machine:

    .venv/bin/python benchmarks/phantom_texture.py [--size 512] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform

import numpy as np
import torch

from lib.ct import PAPER, thorax_phantom
from lib.ct.phantom import _Thorax
from results import best_time, write_result  # benchmarks/results.py


def direct_texture(thorax, x, y, z):
    """One cosine per wave and pixel, summed over the waves."""
    k, phi = thorax.wave_k, thorax.wave_phase
    phase = k[:, 0, None, None] * x + k[:, 1, None, None] * y + k[:, 2, None, None] * z
    return np.cos(phase + phi[:, None, None]).sum(0) / np.sqrt(len(phi) / 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=PAPER.size)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    pixel_mm = PAPER.field_of_view_mm / args.size
    coords = (np.arange(args.size) - (args.size - 1) / 2) * pixel_mm
    y, x = np.meshgrid(coords, coords, indexing="ij")
    thorax = _Thorax(0)

    t_direct, direct = best_time(lambda: direct_texture(thorax, x, y, 1.0), args.repeats)
    t_separable, separable = best_time(lambda: thorax._texture(x, y, 1.0, 1.0), args.repeats)
    t_slice, _ = best_time(lambda: thorax_phantom(args.size, pixel_mm, seed=0), args.repeats)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "size": args.size, "pixel_mm": pixel_mm, "waves": len(thorax.wave_phase),
        "direct_s": t_direct, "separable_s": t_separable, "speedup": t_direct / t_separable,
        "max_abs_difference": float(np.abs(direct - separable).max()),
        "phantom_slice_s": t_slice,
    }
    print(f"texture of a {args.size}x{args.size} slice ({result['waves']} waves): direct "
          f"{t_direct * 1e3:.0f} ms, separable {t_separable * 1e3:.1f} ms, "
          f"{result['speedup']:.0f}x; largest difference {result['max_abs_difference']:.1e}")
    print(f"a whole phantom slice now takes {t_slice * 1e3:.0f} ms")
    write_result("phantom_texture", result)


if __name__ == "__main__":
    main()
