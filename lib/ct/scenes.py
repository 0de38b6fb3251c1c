"""Ready-made inputs for the analysis chapters: a lesion in the lung, seen through a low-dose scan.

The seed paper's operating point is a uniform 9 mm lesion in the lung of a thorax scan, and its
experiments move along ``x(c) = base + c * lesion`` in lesion contrast ``c`` (mm^-1). Here ``base``
is a region of interest (ROI) of a simulated low-dose reconstruction without the lesion and
``lesion`` the lesion's anti-aliased profile (1 inside, 0 outside): the family is a straight line
in input space, as the linear-region analysis needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lib.ct.lesion import lesion_profile, lung_lesion_site
from lib.ct.phantom import DEFAULT_PIXEL_MM, DEFAULT_SIZE, thorax_phantom, thorax_slab
from lib.ct.scanner import Scanner


@dataclass
class LesionScene:
    """An ROI around a lung lesion site: ``base`` (no lesion) and the lesion ``profile``.

    Both are (1, 1, H, W), or (1, 1, D, H, W) for slabs; ``centre`` is the lesion centre in ROI
    pixels (row, col).
    """

    base: torch.Tensor
    profile: torch.Tensor
    centre: tuple[int, int]
    pixel_mm: float
    diameter_mm: float

    def at(self, contrast) -> torch.Tensor:
        """The input with the lesion at ``contrast`` (a float or a 1-D tensor for a batch)."""
        c = torch.as_tensor(contrast, dtype=self.base.dtype).reshape(-1, *[1] * (self.base.dim() - 1))
        return self.base + c * self.profile


def lung_lesion_scene(roi: int = 64, diameter_mm: float = 9.0, seed: int = 0, I0: float = 1.25e4,
                      slab: int | None = None, size: int = DEFAULT_SIZE,
                      pixel_mm: float = DEFAULT_PIXEL_MM) -> LesionScene:
    """A low-dose ROI of ``roi`` pixels centred on a lung site that fits the lesion.

    With ``slab`` (odd), the ROI is a slab of that many adjacent slices and the lesion a sphere.
    """
    truth = thorax_phantom(size, pixel_mm, seed=seed)
    row, col = lung_lesion_site(truth, diameter_mm, pixel_mm, seed=seed)
    half = roi // 2
    row = min(max(row, half), size - roi + half)
    col = min(max(col, half), size - roi + half)
    window = (slice(row - half, row - half + roi), slice(col - half, col - half + roi))
    scanner = Scanner(size, pixel_mm)
    if slab:
        volume = thorax_slab(slab, size, pixel_mm, pixel_mm, seed=seed)
        low = scanner.scan(volume, I0, seed=seed)[(slice(None), *window)]
        centre = (slab // 2, half, half)
        profile = lesion_profile(low.shape, centre, diameter_mm, pixel_mm)
        return LesionScene(low[None, None], profile[None, None], (half, half), pixel_mm, diameter_mm)
    low = scanner.scan(truth, I0, seed=seed)[window]
    profile = lesion_profile(low.shape, (half, half), diameter_mm, pixel_mm)
    return LesionScene(low[None, None], profile[None, None], (half, half), pixel_mm, diameter_mm)
