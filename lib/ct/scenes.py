"""Ready-made inputs for the analysis chapters: a lesion in the lung, seen through a low-dose scan.

The seed paper's operating point is a uniform 9 mm lesion in the lung of a thorax scan, and its
experiments move along ``x(c) = base + c * lesion`` in lesion contrast ``c`` (mm^-1). Here ``base``
is a region of interest (ROI) of a simulated low-dose reconstruction without the lesion and
``lesion`` the lesion's anti-aliased profile (1 inside, 0 outside): the family is a straight line
in input space, as the linear-region analysis needs.

Its section on approximately linear regions adds a second direction: the lesion sits in a uniform
background of intensity ``b``, ``x(c, b) = c * lesion + b * 1``, a plane in input space
(:func:`uniform_lesion_scene`); noise enters as scanner noise of the same low-dose protocol
(:func:`scanner_noise`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from lib.ct.lesion import lesion_profile, lung_lesion_site
from lib.ct.noise import scan_realizations
from lib.ct.phantom import thorax_phantom, thorax_slab
from lib.ct.protocol import PAPER
from lib.ct.scanner import Scanner


@dataclass
class LesionScene:
    """An ROI around a lung lesion site: ``base`` (no lesion) and the lesion ``profile``.

    Both are (1, 1, H, W), or (1, 1, D, H, W) for slabs; ``center`` is the lesion centre in ROI
    pixels (row, col). ``background`` is the direction in which the background intensity moves
    (ones for :func:`uniform_lesion_scene`, zeros for the lung scene, whose background is ``base``).
    """

    base: torch.Tensor
    profile: torch.Tensor
    center: tuple[int, int]
    pixel_mm: float
    diameter_mm: float
    background: torch.Tensor | None = None

    def at(self, contrast, background=0.0) -> torch.Tensor:
        """The input ``base + contrast * profile + background * self.background``.

        ``contrast`` and ``background`` are floats or 1-D tensors of one length (a batch).
        """
        shape = (-1, *[1] * (self.base.dim() - 1))
        c = torch.as_tensor(contrast, dtype=self.base.dtype, device=self.base.device).reshape(shape)
        x = self.base + c * self.profile
        if self.background is None:
            if torch.as_tensor(background).abs().max() > 0:
                raise ValueError("this scene has no background direction; build it with "
                                 "uniform_lesion_scene to vary the background")
            return x
        b = torch.as_tensor(background, dtype=self.base.dtype, device=self.base.device).reshape(shape)
        return x + b * self.background

    @property
    def radius_px(self) -> float:
        """The lesion's radius in pixels."""
        return self.diameter_mm / 2 / self.pixel_mm

    def distance_px(self) -> torch.Tensor:
        """(H, W): each pixel's in-plane distance from the lesion centre, in pixels."""
        rows, cols = (torch.arange(n, dtype=torch.float64) for n in self.base.shape[-2:])
        return torch.hypot(rows[:, None] - self.center[0], cols[None, :] - self.center[1])

    def masks(self, margin: int, edge_px: float = 1.0,
              clear_px: float = 4.0) -> dict[str, torch.Tensor]:
        """Three sets of pixels (H, W) by their distance ``d`` from the lesion centre.

        With lesion radius ``R``: the ``"lesion interior"`` ``d <= R - edge_px``; the
        ``"lesion edge"`` ``|d - R| <= edge_px`` (it shares the ring ``d = R - edge_px`` with the
        interior); the ``"uniform background"`` ``d >= R + clear_px`` and at least ``margin``
        pixels from the ROI border (where the network's zero padding acts, see
        :func:`lib.models.receptive_field.receptive_field_margin`). An empty set is refused (a
        statistic over it would be NaN): the ROI or the lesion is too small in pixels.
        """
        if clear_px <= edge_px:
            raise ValueError(f"clear_px ({clear_px}) must exceed edge_px ({edge_px}), else the "
                             "background and the edge overlap")
        d, radius = self.distance_px(), self.radius_px
        masks = {"lesion interior": d <= radius - edge_px,
                 "lesion edge": (d - radius).abs() <= edge_px,
                 "uniform background": (d >= radius + clear_px) & self.inside(margin)}
        empty = [name for name, mask in masks.items() if not mask.any()]
        if empty:
            height, width = self.base.shape[-2:]
            raise ValueError(f"no {' or '.join(empty)} pixels in this {height}x{width} ROI (lesion "
                             f"radius {radius:.1f} px, margin {margin} px): use a larger ROI")
        return masks

    def inside(self, margin: int) -> torch.Tensor:
        """(H, W): the pixels at least ``margin`` pixels from the ROI border."""
        height, width = self.base.shape[-2:]
        if 2 * margin >= min(height, width):
            raise ValueError(f"a margin of {margin} px leaves nothing of a {height}x{width} ROI")
        inner = torch.zeros(height, width, dtype=torch.bool)
        inner[margin:height - margin, margin:width - margin] = True
        return inner

    def to(self, *args, **kwargs) -> LesionScene:
        """The scene with its tensors moved or cast, as ``torch.Tensor.to``."""
        moved = {k: getattr(self, k).to(*args, **kwargs)
                 for k in ("base", "profile", "background") if getattr(self, k) is not None}
        return replace(self, **moved)


def lung_lesion_scene(roi_size: int = 64, diameter_mm: float = PAPER.lesion_diameter_mm, seed: int = 0,
                      I0: float = PAPER.low_I0, slab: int | None = None, size: int = PAPER.size,
                      pixel_mm: float = PAPER.pixel_mm) -> LesionScene:
    """A low-dose ROI of ``roi_size`` pixels centred on a lung site that fits the lesion.

    With ``slab`` (odd), the ROI is a slab of that many adjacent slices and the lesion a sphere.
    """
    truth = thorax_phantom(size, pixel_mm, seed=seed)
    window = _lung_window(truth, roi_size, diameter_mm, pixel_mm, seed)
    half = roi_size // 2
    scanner = Scanner(size, pixel_mm)
    if slab:
        volume = thorax_slab(slab, size, pixel_mm, pixel_mm, seed=seed)
        low = scanner.scan(volume, I0, seed=seed, window=window)
        center = (slab // 2, half, half)
        profile = lesion_profile(low.shape, center, diameter_mm, pixel_mm)
        return LesionScene(low[None, None], profile[None, None], (half, half), pixel_mm, diameter_mm)
    low = scanner.scan(truth, I0, seed=seed, window=window)
    profile = lesion_profile(low.shape, (half, half), diameter_mm, pixel_mm)
    return LesionScene(low[None, None], profile[None, None], (half, half), pixel_mm, diameter_mm)


def uniform_lesion_scene(roi_size: int = 64, diameter_mm: float = PAPER.lesion_diameter_mm,
                         slab: int | None = None, pixel_mm: float = PAPER.pixel_mm) -> LesionScene:
    """A lesion centred in a uniform background, noise-free: ``x(c, b) = c * lesion + b * 1``.

    With ``slab`` (odd) the input is a slab of that many slices and the lesion a sphere.
    """
    shape = (slab, roi_size, roi_size) if slab else (roi_size, roi_size)
    center = (slab // 2, roi_size // 2, roi_size // 2) if slab else (roi_size // 2, roi_size // 2)
    profile = lesion_profile(shape, center, diameter_mm, pixel_mm)[None, None]
    return LesionScene(torch.zeros_like(profile), profile, (roi_size // 2, roi_size // 2), pixel_mm,
                       diameter_mm, background=torch.ones_like(profile))


def scanner_noise(n: int, roi_size: int = 64, I0: float = PAPER.low_I0, seed: int = 0,
                  size: int = PAPER.size, pixel_mm: float = PAPER.pixel_mm) -> torch.Tensor:
    """``n`` realisations (n, 1, roi_size, roi_size) of low-dose CT noise at a lung lesion site.

    Each is a reconstruction from Poisson counts at ``I0`` minus the noise-free reconstruction of
    the same thorax phantom, cropped to the ROI: noise with the magnitude and the correlation
    (texture) that the scanner and FBP give, not white noise. Realisation ``k`` uses seed
    ``seed + k``.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    truth = thorax_phantom(size, pixel_mm, seed=seed)
    window = _lung_window(truth, roi_size, PAPER.lesion_diameter_mm, pixel_mm, seed)
    scanner = Scanner(size, pixel_mm)
    clean = scanner.fbp(scanner.project(truth), window=window)
    return (scan_realizations(scanner, truth, I0, n, seed, window=window) - clean)[:, None]


def noise_slabs(noise: torch.Tensor, depth: int) -> torch.Tensor:
    """Slabs (n, 1, depth, H, W) of different 2-D noise realizations ``noise`` (n, 1, H, W).

    Slab ``j`` holds realizations ``j, j + 1, ..., j + depth - 1`` (modulo ``n``) as its slices:
    a textured control for a 3-D network from 2-D scanner noise (:func:`scanner_noise`).
    """
    if noise.dim() != 4 or noise.shape[1] != 1:
        raise ValueError(f"noise must be (n, 1, H, W) realizations, got {tuple(noise.shape)}")
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    n = len(noise)
    order = (torch.arange(n)[:, None] + torch.arange(depth)[None, :]) % n
    return noise[order, 0][:, None]


def _lung_window(truth: torch.Tensor, roi_size: int, diameter_mm: float, pixel_mm: float,
                 seed: int) -> tuple[slice, slice]:
    """The ROI window (rows, cols) around a lung site that fits the lesion, kept inside the slice."""
    size = truth.shape[-1]
    row, col = lung_lesion_site(truth, diameter_mm, pixel_mm, seed=seed)
    half = roi_size // 2
    row = min(max(row, half), size - roi_size + half)
    col = min(max(col, half), size - roi_size + half)
    return slice(row - half, row - half + roi_size), slice(col - half, col - half + roi_size)
