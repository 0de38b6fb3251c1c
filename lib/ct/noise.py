"""The noise power spectrum (NPS): how image noise is spread over spatial frequencies.

For noise-only images n_k (realizations minus their mean, rescaled by sqrt(K / (K - 1)) so that
each has the noise's variance) on an ROI of N x N pixels of size a:

.. math::  \\mathrm{NPS}(f_x, f_y) = \\frac{a^2}{N^2} \\, \\big\\langle |\\mathrm{DFT}(n_k)|^2 \\big\\rangle_k

so that integrating the NPS over the frequency plane gives the noise variance (Parseval). Smooth
(blotchy) noise has its power at low frequencies; fine grain at high ones. :class:`NoiseSpectra`
keeps each realization's spectrum summed over rings of width 1 / (N a), so the radial NPS, the
variance, the mean frequency and the distance between two spectra's shapes can be recomputed on
any resample of the realizations (:meth:`NoiseSpectra.intervals`, a bootstrap).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lib.ct.scanner import Scanner, Window
from lib.stats import Interval, bootstrap_statistic


@dataclass(frozen=True)
class NoiseSpectra:
    """Ring sums of the NPS of K noise realizations.

    ``rings[k, b]`` is the sum of realization k's NPS over the pixels of the frequency plane whose
    radius rounds to ring b (centre ``frequencies[b] = b df``); ``counts[b]`` is their number.
    Units: those of the images squared times mm^2 (HU^2 mm^2 for images in HU).
    """

    frequencies: torch.Tensor  # (B,) cycles/mm
    rings: torch.Tensor        # (K, B)
    counts: torch.Tensor       # (B,)
    df: float                  # ring width, cycles/mm

    @classmethod
    def of(cls, realizations: torch.Tensor, pixel_mm: float) -> NoiseSpectra:
        """The spectra of (K >= 2, N, N) noisy images of one object (their mean is the signal)."""
        if (realizations.dim() != 3 or realizations.shape[0] < 2
                or realizations.shape[1] != realizations.shape[2]):
            raise ValueError(f"need (K >= 2, N, N) realizations, got {tuple(realizations.shape)}")
        if not pixel_mm > 0:
            raise ValueError(f"pixel_mm must be positive, got {pixel_mm}")
        k, n, _ = realizations.shape
        noise = (realizations - realizations.mean(0, keepdim=True)).double() * (k / (k - 1)) ** 0.5
        spectra = torch.fft.fft2(noise).abs() ** 2 * pixel_mm ** 2 / n ** 2
        f = torch.fft.fftfreq(n, d=pixel_mm, dtype=torch.float64)
        df = 1.0 / (n * pixel_mm)
        ring = (torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2) / df).round().long().flatten()
        n_rings = int(ring.max()) + 1
        rings = torch.zeros(k, n_rings, dtype=torch.float64).index_add_(1, ring, spectra.flatten(1))
        counts = torch.bincount(ring, minlength=n_rings).double()
        return cls(torch.arange(n_rings, dtype=torch.float64) * df, rings, counts, df)

    def radial(self) -> torch.Tensor:
        """The radially averaged NPS (B,): the mean over realizations of each ring's mean."""
        return self._sums() / self.counts

    def variance(self) -> float:
        """The noise variance: the NPS integrated over the frequency plane."""
        return float(_variance(self._sums(), self.df))

    def mean_frequency(self) -> float:
        """The NPS-weighted mean radial frequency over the frequency plane (cycles/mm)."""
        return float(_mean_frequency(self._sums(), self.frequencies))

    def shape_distance(self, other: NoiseSpectra) -> float:
        """Half the L1 distance between the two spectra's shapes (each ring's share of the
        variance): 0 for the same shape at any noise level, 1 for power in disjoint rings."""
        self._check_pairs(other)
        return float(_shape_distance(self._sums(), other._sums()))

    def intervals(self, reference: NoiseSpectra, n_boot: int = 2000,
                  seed: int = 0) -> dict[str, Interval]:
        """Summaries against a ``reference`` spectrum (the normal dose), with bootstrap intervals
        over realizations (realization k of both is resampled together):

        - ``std``: the noise standard deviation; ``variance_ratio``: variance / the reference's;
        - ``mean_frequency`` (cycles/mm) and ``frequency_ratio``: it over the reference's;
        - ``shape_distance``: :meth:`shape_distance` to the reference.
        """
        self._check_pairs(reference)
        f, df = self.frequencies, self.df
        statistics = {
            "std": lambda i: _variance(self._sums(i), df).sqrt(),
            "variance_ratio": lambda i: _variance(self._sums(i), df) / _variance(reference._sums(i), df),
            "mean_frequency": lambda i: _mean_frequency(self._sums(i), f),
            "frequency_ratio": lambda i: (_mean_frequency(self._sums(i), f)
                                          / _mean_frequency(reference._sums(i), f)),
            "shape_distance": lambda i: _shape_distance(self._sums(i), reference._sums(i)),
        }
        return {name: bootstrap_statistic(statistic, len(self.rings), n_boot, seed, vectorised=True)
                for name, statistic in statistics.items()}

    def _sums(self, resample=None) -> torch.Tensor:
        """Mean ring sums over the realizations, or over each row of a (..., K) resample."""
        if resample is None:
            return self.rings.mean(0)
        return self.rings[torch.as_tensor(resample)].mean(-2)

    def _check_pairs(self, other: NoiseSpectra) -> None:
        if self.rings.shape != other.rings.shape or self.df != other.df:
            raise ValueError(f"spectra of {tuple(self.rings.shape)} (realizations, rings) and "
                             f"{tuple(other.rings.shape)} do not pair: use the same number of "
                             "realizations, ROI size and pixel size")


def _variance(sums: torch.Tensor, df: float) -> torch.Tensor:
    return sums.sum(-1) * df ** 2


def _mean_frequency(sums: torch.Tensor, frequencies: torch.Tensor) -> torch.Tensor:
    return (frequencies * sums).sum(-1) / sums.sum(-1)


def _shape_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 0.5 * (a / a.sum(-1, keepdim=True) - b / b.sum(-1, keepdim=True)).abs().sum(-1)


def noise_power_spectrum(realizations: torch.Tensor, pixel_mm: float):
    """Radially averaged NPS of (K >= 2, N, N) noisy ROIs of the same object, up to the Nyquist
    frequency along an axis.

    Returns ``(frequencies, nps, variance)``: ring centres in cycles/mm, the radial NPS in (image
    units)^2 mm^2, and the noise variance (the NPS integrated over the whole frequency plane).
    """
    spectra = NoiseSpectra.of(realizations, pixel_mm)
    keep = realizations.shape[-1] // 2 + 1
    return spectra.frequencies[:keep], spectra.radial()[:keep], spectra.variance()


def mean_frequency(frequencies: torch.Tensor, nps: torch.Tensor) -> float:
    """The NPS-weighted mean of the radial frequency (cycles/mm) from a radial NPS, weighting each
    ring by its circumference so that it approximates the mean over the 2-D frequency plane."""
    weight = nps * frequencies
    return float((frequencies * weight).sum() / weight.sum())


def check_dose_scaling(low: NoiseSpectra, normal: NoiseSpectra, dose_ratio: float,
                       tolerance: float = 0.15) -> float:
    """The variance ratio low / normal, checked against the dose ratio (quantum noise variance is
    inversely proportional to the dose); a ``ValueError`` if it is off by more than ``tolerance``,
    as when the normal-dose spectrum is the low-dose one or comes from another dose."""
    ratio = low.variance() / normal.variance()
    if abs(ratio / dose_ratio - 1) > tolerance:
        raise ValueError(f"the low-dose noise variance is {ratio:.2f} times the normal-dose one, "
                         f"not the dose ratio {dose_ratio:g} (within {tolerance:.0%}): the "
                         "reference is not the normal-dose scan of the same object")
    return ratio


def uniform_roi(truth: torch.Tensor, size: int, window: tuple[float, float]) -> tuple[slice, slice]:
    """The ``size`` x ``size`` square of a (H, W) noiseless image whose values all lie in ``window``
    (low, high) and whose standard deviation is the smallest: where to measure noise in anatomy."""
    image = truth.double()[None, None]
    mean = F.avg_pool2d(image, size, stride=1)[0, 0]
    spread = (F.avg_pool2d(image ** 2, size, stride=1)[0, 0] - mean ** 2).clamp(min=0).sqrt()
    inside = (-F.max_pool2d(-image, size, stride=1)[0, 0] >= window[0]) & \
        (F.max_pool2d(image, size, stride=1)[0, 0] <= window[1])
    if not inside.any():
        raise ValueError(f"no {size} x {size} square of the image lies within {window}; "
                         "choose a smaller size or a wider window")
    r, c = np.unravel_index(int(torch.where(inside, spread, torch.inf).argmin()), spread.shape)
    return slice(int(r), int(r) + size), slice(int(c), int(c) + size)


def scan_realizations(scanner: Scanner, mu: torch.Tensor, I0: float, n: int,
                      seed: int = 0, window: Window | None = None) -> torch.Tensor:
    """``n`` independent scans of ``mu`` at ``I0`` photons per ray, (n, ..., H, W): the same as
    ``scanner.scan(mu, I0, seed=seed + k, window=window)`` for k < n, projecting ``mu`` only once.
    (H, W) is the image's, or the window's when a ``window`` (rows, cols) is given."""
    if n < 1:
        raise ValueError(f"need at least one realization, got n={n}")
    sinogram = scanner.project(mu)
    return torch.stack([scanner.fbp(scanner.line_integrals(scanner.counts(sinogram, I0, seed + k), I0),
                                    window=window) for k in range(n)])


def paired_noise_std(low: torch.Tensor, normal: torch.Tensor, mask: torch.Tensor,
                     dose_ratio: float) -> float:
    """The low-dose noise standard deviation inside ``mask`` from co-registered low- and
    normal-dose scans of the same objects, whose independent noises add:
    var(low - normal) = var_low (1 + 1 / dose_ratio)."""
    difference = (low - normal)[mask.expand_as(low)]
    return float(difference.double().std() / (1 + 1 / dose_ratio) ** 0.5)


def with_margin(roi: tuple[slice, slice], margin: int,
                shape: tuple[int, ...]) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """``roi`` grown by ``margin`` pixels on each side (clipped to the image ``shape``), and where
    the ROI lies inside that crop: a network whose receptive field is at most 2 margin + 1 pixels
    wide gives the same output on the ROI from the crop as from the whole image."""
    outer = tuple(slice(max(s.start - margin, 0), min(s.stop + margin, n))
                  for s, n in zip(roi, shape[-2:]))
    inner = tuple(slice(s.start - o.start, s.stop - o.start) for s, o in zip(roi, outer))
    return outer, inner


def output_spectra(scanner: Scanner, slab: torch.Tensor, low_I0: float, normal_I0: float,
                   denoisers: dict[str, Callable[[torch.Tensor], torch.Tensor]],
                   roi: tuple[slice, slice], margin: int, n: int, seed: int = 0,
                   scale: float = 1.0) -> dict[str, NoiseSpectra]:
    """Noise spectra on ``roi`` of the normal-dose scan, the low-dose scan and each denoiser's
    output, from ``n`` realizations of a (D, H, W) ``slab`` (its centre slice is the image).

    Each denoiser takes (n, D, h, w) low-dose slabs cropped to ``roi`` plus ``margin`` (see
    :func:`with_margin`) and returns (n, h, w); images are multiplied by ``scale`` (``HU_PER_MU``
    gives spectra in HU^2 mm^2).
    """
    if slab.dim() != 3 or slab.shape[0] % 2 == 0:
        raise ValueError(f"need a (D, H, W) slab with an odd D, got {tuple(slab.shape)}")
    center = slab.shape[0] // 2
    outer, inner = with_margin(roi, margin, slab.shape)
    low = scan_realizations(scanner, slab, low_I0, n, seed, window=outer)
    normal = scan_realizations(scanner, slab[center], normal_I0, n, seed + n, window=roi)
    images = {"normal dose": normal, "low-dose input": low[:, center][(..., *inner)]}
    images |= {label: net(low)[(..., *inner)] for label, net in denoisers.items()}
    return {label: NoiseSpectra.of(scale * image, scanner.pixel_mm) for label, image in images.items()}


def texture_verdict(frequency_ratio: Interval, tolerance: float = 0.1) -> str:
    """Whether noise texture is "similar to normal dose", from the interval of the mean-frequency
    ratio (output / normal dose): ``"similar"`` when the whole interval lies within 1 +- tolerance,
    ``"coarser"`` or ``"finer"`` when it lies entirely below or above that band, else
    ``"undecided"`` (the measurement cannot tell)."""
    if not 0 < tolerance < 1:
        raise ValueError(f"tolerance must lie in (0, 1), got {tolerance}")
    if 1 - tolerance <= frequency_ratio.low and frequency_ratio.high <= 1 + tolerance:
        return "similar"
    if frequency_ratio.high < 1 - tolerance:
        return "coarser"
    if frequency_ratio.low > 1 + tolerance:
        return "finer"
    return "undecided"
