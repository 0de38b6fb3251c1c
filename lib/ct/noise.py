"""The noise power spectrum (NPS): how image noise is spread over spatial frequencies.

For noise-only images n_k (realisations minus their mean) on an ROI of N x N pixels of size a:

.. math::  \\mathrm{NPS}(f_x, f_y) = \\frac{a^2}{N^2} \\, \\big\\langle |\\mathrm{DFT}(n_k)|^2 \\big\\rangle_k

so that integrating the NPS over frequency gives the noise variance. Smooth (blotchy) noise has its
power at low frequencies; fine grain at high ones. The radial average and the mean frequency
summarise the texture in a curve and a number.
"""

from __future__ import annotations

import torch


def noise_power_spectrum(realizations: torch.Tensor, pixel_mm: float):
    """Radially averaged NPS of (K, N, N) noisy ROIs of the same object (K >= 2).

    Returns ``(frequencies, nps, variance)``: bin centres in cycles/mm, the radial NPS in
    (mm^-1)^2 mm^2, and the noise variance (the NPS integrated over the 2-D frequency plane).
    """
    if realizations.dim() != 3 or realizations.shape[0] < 2 or realizations.shape[1] != realizations.shape[2]:
        raise ValueError(f"need (K >= 2, N, N) realizations, got {tuple(realizations.shape)}")
    k, n, _ = realizations.shape
    noise = (realizations - realizations.mean(0, keepdim=True)).double() * (k / (k - 1)) ** 0.5
    spectrum = (torch.fft.fft2(noise).abs() ** 2).mean(0) * pixel_mm ** 2 / n ** 2
    f = torch.fft.fftfreq(n, d=pixel_mm, dtype=torch.float64)
    radius = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    df = 1.0 / (n * pixel_mm)
    bins = (radius / df).round().long().flatten()
    n_bins = n // 2 + 1
    keep = bins < n_bins
    total = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, bins[keep], spectrum.flatten()[keep])
    count = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, bins[keep], torch.ones_like(spectrum.flatten()[keep]))
    variance = float(spectrum.sum() * df * df)
    return torch.arange(n_bins, dtype=torch.float64) * df, total / count.clamp(min=1), variance


def mean_frequency(frequencies: torch.Tensor, nps: torch.Tensor) -> float:
    """The NPS-weighted mean of the radial frequency (cycles/mm), weighting each ring by its
    circumference so that it is the mean over the 2-D frequency plane."""
    weight = nps * frequencies
    return float((frequencies * weight).sum() / weight.sum())
