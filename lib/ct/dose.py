"""Image noise against dose: the quantum-noise law, measured.

With ``N ~ Poisson(I0 exp(-p))`` counts per ray the scanner's line integral ``p_hat`` has variance
about ``1 / (I0 exp(-p))``; FBP is linear, so the standard deviation of the image noise in any
region scales as

.. math::  \\sigma(I_0) = k \\, I_0^{-1/2}.

It is measured in a region of uniform attenuation (no texture to mistake for noise) as the
standard deviation of scans minus the noise-free reconstruction, and the exponent is fitted on
log-log axes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage

from lib.ct.noise import scan_realizations
from lib.ct.scanner import Scanner


def uniform_region(truth: torch.Tensor, value: float, erode_px: int = 3,
                   atol: float = 1e-6) -> torch.Tensor:
    """Pixels of the 2-D ``truth`` equal to ``value`` (within ``atol``), eroded by ``erode_px``
    so that no edge blur of the reconstruction reaches them; a bool tensor on ``truth``'s device.

    >>> truth = torch.zeros(12, 12); truth[2:10, 2:10] = 1.0
    >>> int(uniform_region(truth, 1.0, erode_px=2).sum())  # 8 x 8 square less 2 px each side
    16
    """
    if truth.dim() != 2:
        raise ValueError(f"truth must be a 2-D slice, got shape {tuple(truth.shape)}")
    same = ((truth - value).abs() < atol).cpu().numpy()
    if erode_px > 0:
        same = ndimage.binary_erosion(same, iterations=erode_px)
    return torch.from_numpy(same).to(truth.device)


def image_noise(scans: torch.Tensor, noiseless: torch.Tensor,
                region: torch.Tensor | None = None) -> float:
    """Standard deviation (mm^-1) of ``scans - noiseless`` over ``region`` (all pixels if None).

    ``scans`` is (H, W) or a batch (K, H, W) of realizations of the same object.
    """
    noise = scans - noiseless
    return float(noise.std() if region is None else noise[..., region].std())


def noise_against_dose(scanner: Scanner, truth: torch.Tensor, doses: Sequence[float],
                       realizations: int, region: torch.Tensor, seed: int = 0) -> np.ndarray:
    """:func:`image_noise` in ``region`` at each dose ``I0`` (photons per ray), from
    ``realizations`` scans each (seeds ``seed``, ``seed + 1``, ...), against the noise-free FBP of
    ``truth``; only the region's bounding box is reconstructed."""
    if realizations < 1:
        raise ValueError(f"realizations must be at least 1, got {realizations}")
    if int(region.sum()) < 2:
        raise ValueError("the region holds fewer than 2 pixels: choose a larger uniform region")
    rows, cols = (torch.nonzero(region.any(dim=axis)).flatten() for axis in (1, 0))
    window = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
    noiseless = scanner.fbp(scanner.project(truth), window=window)  # the region's bounding box
    return np.array([image_noise(scan_realizations(scanner, truth, I0, realizations, seed, window),
                                 noiseless, region[window]) for I0 in doses])


def dose_exponent(doses: Sequence[float], noise: Sequence[float]) -> float:
    """The exponent ``a`` of the least-squares fit ``log sigma = a log I0 + log k``
    (the quantum-noise law says ``a = -1/2``).

    >>> round(dose_exponent([1e4, 4e4, 1.6e5], [4.0, 2.0, 1.0]), 6)
    -0.5
    """
    if len(doses) < 2 or len(doses) != len(noise):
        raise ValueError(f"need two or more doses with one noise level each, got {len(doses)} "
                         f"doses and {len(noise)} noise levels")
    return float(np.polyfit(np.log(doses), np.log(noise), 1)[0])
