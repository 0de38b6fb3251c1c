"""Lesions: anti-aliased disks (2-D) or spheres (3-D) added to a mu image, and where to put them.

A lesion of contrast ``c`` adds ``c * coverage`` to the image, where ``coverage`` in [0, 1] is the
fraction of each pixel inside the disk (estimated on an 8 x 8 sub-pixel grid). Adding, rather than
overwriting, keeps lesion families ``x0 + t * lesion`` straight lines in image space, which is what
the local-linearity chapters walk along.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage

_SUBPIXELS = 8


def lesion_profile(shape: Sequence[int], center_px: Sequence[float], diameter_mm: float,
                   pixel_mm: float | Sequence[float]) -> torch.Tensor:
    """Coverage in [0, 1] of a disk (2-D shape) or sphere (3-D shape) on the pixel grid.

    ``center_px`` is in pixel coordinates (row, col) or (slice, row, col); ``pixel_mm`` is one
    spacing or one per axis.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or len(center_px) != len(shape):
        raise ValueError(f"center_px {tuple(center_px)} must have one entry per axis of shape {shape} (2-D or 3-D)")
    if not (np.isfinite(diameter_mm) and diameter_mm > 0):
        raise ValueError(f"diameter_mm must be finite and positive, got {diameter_mm}")
    spacing = np.broadcast_to(np.asarray(pixel_mm, dtype=float), (len(shape),))
    if not (np.isfinite(spacing).all() and (spacing > 0).all()):
        raise ValueError(f"pixel_mm must be finite and positive, got {pixel_mm}")
    if not np.isfinite(np.asarray(center_px, dtype=float)).all():
        raise ValueError(f"center_px must be finite, got {tuple(center_px)}")
    radius = diameter_mm / 2
    coverage = np.zeros(shape)
    # only the bounding box of the lesion needs sub-pixel sampling
    lo = [max(int(np.floor(c - radius / s)) - 1, 0) for c, s in zip(center_px, spacing)]
    hi = [min(int(np.ceil(c + radius / s)) + 2, n) for c, s, n in zip(center_px, spacing, shape)]
    if any(b <= a for a, b in zip(lo, hi)):
        raise ValueError(f"a {diameter_mm} mm lesion at center_px {tuple(center_px)} lies "
                         f"entirely outside the image of shape {shape}")
    offsets = (np.arange(_SUBPIXELS) + 0.5) / _SUBPIXELS - 0.5
    axes = [(np.arange(a, b)[:, None] + offsets[None, :] - c) * s
            for a, b, c, s in zip(lo, hi, center_px, spacing)]
    dist2 = 0.0
    for k, ax in enumerate(axes):  # broadcast (n_k, sub) blocks into an interleaved grid
        view = [1] * (2 * len(axes))
        view[2 * k], view[2 * k + 1] = ax.shape
        dist2 = dist2 + (ax ** 2).reshape(view)
    inside = (dist2 <= radius ** 2).mean(axis=tuple(range(1, 2 * len(axes), 2)))
    coverage[tuple(slice(a, b) for a, b in zip(lo, hi))] = inside
    if not coverage.any():
        raise ValueError(f"a {diameter_mm} mm lesion at center_px {tuple(center_px)} covers no "
                         f"pixel of the image of shape {shape} (outside it, or too small)")
    return torch.from_numpy(coverage.astype(np.float32))


def insert_lesion(mu: torch.Tensor, center_px: Sequence[float], diameter_mm: float,
                  contrast: float, pixel_mm: float | Sequence[float]) -> torch.Tensor:
    """A new image: ``mu`` plus a uniform lesion of ``contrast`` (mm^-1) and ``diameter_mm``.

    ``mu`` is (H, W) for a disk or (D, H, W) for a sphere; ``center_px`` has one coordinate per axis.

    Example::

        >>> mu = torch.zeros(64, 64)
        >>> out = insert_lesion(mu, (32, 32), diameter_mm=9.0, contrast=0.007, pixel_mm=1.0)
        >>> area = float(out.sum()) / 0.007       # anti-aliased disk: about pi * 4.5^2 = 63.6 mm^2
        >>> abs(area - 63.6) < 0.5
        True
    """
    if mu.dim() not in (2, 3):
        raise ValueError(f"mu must be (H, W) or (D, H, W), got shape {tuple(mu.shape)}")
    if not np.isfinite(contrast):
        raise ValueError(f"contrast must be a finite mu difference in mm^-1, got {contrast}")
    profile = lesion_profile(mu.shape, center_px, diameter_mm, pixel_mm).to(mu.device, mu.dtype)
    return mu + contrast * profile


def lesion_area_mm2(with_lesion: torch.Tensor, without: torch.Tensor, contrast: float,
                    pixel_mm: float) -> float:
    """The area (mm^2) of a lesion read back from the image: the added attenuation over the
    contrast, ``sum(with_lesion - without) * pixel_mm^2 / contrast``.

    For a disk of diameter ``d`` it should be ``pi d^2 / 4``: a check on the anti-aliased coverage.
    """
    if not (np.isfinite(contrast) and contrast != 0):
        raise ValueError(f"contrast must be a finite, non-zero mu difference, got {contrast}")
    return float((with_lesion - without).sum()) * pixel_mm ** 2 / contrast


def lesion_probe_pixels(center_px: Sequence[int], diameter_mm: float,
                        pixel_mm: float) -> dict[str, tuple[int, int]]:
    """Three pixels to probe a lesion at: its ``center``, its ``edge`` (one radius to the right)
    and the ``background`` (two radii to the right, one radius outside the lesion), as (row, col).

    >>> lesion_probe_pixels((32, 32), 9.0, 1.5)
    {'center': (32, 32), 'edge': (32, 35), 'background': (32, 38)}
    """
    row, col = (int(c) for c in center_px[-2:])
    radius = round(diameter_mm / 2 / pixel_mm)
    return {"center": (row, col), "edge": (row, col + radius), "background": (row, col + 2 * radius)}


def lung_lesion_site(mu: torch.Tensor, diameter_mm: float, pixel_mm: float,
                     seed: int = 0, margin_mm: float = 3.0,
                     lung_below: float = 0.008) -> tuple[int, int]:
    """A (row, col) in lung where a disk of ``diameter_mm`` plus ``margin_mm`` fits entirely.

    Lung is taken as ``mu < lung_below`` inside the body (air outside the body is excluded by
    filling holes). The site is drawn at random (by ``seed``) among the valid pixels; raises
    ``ValueError`` if the lesion cannot fit anywhere.
    """
    image = mu.detach().cpu().numpy()
    if image.ndim != 2:
        raise ValueError(f"mu must be a 2-D slice, got shape {image.shape}")
    body = ndimage.binary_fill_holes(image > lung_below)
    lung = (image < lung_below) & body
    room = ndimage.distance_transform_edt(lung) * pixel_mm
    rows, cols = np.nonzero(room > diameter_mm / 2 + margin_mm)
    if len(rows) == 0:
        raise ValueError(f"no place in lung fits a {diameter_mm} mm lesion with a {margin_mm} mm margin")
    pick = np.random.default_rng(seed).integers(len(rows))
    return int(rows[pick]), int(cols[pick])
