"""Approximately linear regions over a plane of inputs, and a greedy cover by operating points.

The exact regions of a trained denoiser are tiny, but neighbouring regions hold nearly the same
linear system. So ask instead: over which inputs does *one* linearisation stay within a tolerance?
Inputs come from the plane ``x(c, b) = base + c * lesion + b * background`` of a
:class:`lib.ct.scenes.LesionScene` (lesion contrast ``c``, background intensity ``b``). The
linearisation at an operating point ``x0 = x(c0, b0)`` is, for every point of the plane,

    L(c, b) = H(x0) + J0 (x(c, b) - x0) = H(x0) + (c - c0) J0 lesion + (b - b0) J0 background,

so two JVPs per operating point (``J0 lesion`` and ``J0 background``) give it on the whole plane,
never a Jacobian matrix and never one JVP per grid point.

Error measure. The seed paper reports the maximum over voxels of the absolute percent error
``100 |H - L| / |H|``, which explodes where the output is near zero (air, an empty background). We
divide by ``max(|H_i|, floor)`` instead, with ``floor`` = mu_water by default: where the output is
at least as bright as water this is the paper's per-voxel percent error, and below that it is the
error in percent of mu_water (1 % = 10 HU), a fixed scale that a reader can interpret.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import jvp
from tqdm.auto import tqdm

from lib.ct.scenes import LesionScene
from lib.ct.units import MU_WATER


def percent_error_map(output: torch.Tensor, approximation: torch.Tensor,
                      floor: float = MU_WATER) -> torch.Tensor:
    """``100 |H_i - L_i| / max(|H_i|, floor)`` at every pixel, shaped like ``output``."""
    if output.shape != approximation.shape:
        raise ValueError(f"output {tuple(output.shape)} and approximation "
                         f"{tuple(approximation.shape)} differ in shape")
    return 100 * (output - approximation).abs() / output.abs().clamp(min=floor)


def percent_error(output: torch.Tensor, approximation: torch.Tensor, floor: float = MU_WATER,
                  margin: int = 0) -> torch.Tensor:
    """``max_i 100 |H_i - L_i| / max(|H_i|, floor)`` per sample of a batch (N, ...) -> (N,).

    The largest entry of :func:`percent_error_map`. ``margin`` pixels at each edge of the image
    are left out (the network's zero padding makes the border of a cropped ROI an artefact of the
    crop, not of the scene).
    """
    if margin:
        output = output[..., margin:-margin, margin:-margin]
        approximation = approximation[..., margin:-margin, margin:-margin]
    return percent_error_map(output, approximation, floor).flatten(1).amax(dim=1)


@dataclass
class ErrorTable:
    """Linearisation errors on a (contrast, background) grid.

    ``errors[k, i, j]`` is the percent error at grid point (contrasts[i], backgrounds[j]) of the
    linearisation at candidate operating point ``k``; candidate ``k`` is grid point
    ``divmod(k, len(backgrounds))``. ``outputs`` holds H at every grid point, flattened the same way.
    """

    contrasts: torch.Tensor
    backgrounds: torch.Tensor
    errors: torch.Tensor
    outputs: torch.Tensor
    forward_passes: int
    jvps: int

    def point(self, k: int) -> tuple[float, float]:
        """(contrast, background) of grid point ``k``."""
        i, j = divmod(k, len(self.backgrounds))
        return float(self.contrasts[i]), float(self.backgrounds[j])

    def index(self, contrast: float, background: float) -> int:
        """The grid point nearest to (contrast, background)."""
        i = int((self.contrasts - contrast).abs().argmin())
        j = int((self.backgrounds - background).abs().argmin())
        return i * len(self.backgrounds) + j

    def error_at(self, k: int, contrast: float, background: float) -> float:
        """The error of candidate ``k``'s linearisation at the grid point nearest (c, b)."""
        return float(self.errors[k].flatten()[self.index(contrast, background)])


def linearization_errors(model: torch.nn.Module, scene: LesionScene, contrasts, backgrounds,
                         floor: float = MU_WATER, margin: int = 0, batch: int = 16,
                         progress: bool = True) -> ErrorTable:
    """Errors of the linearisation at every grid point, as operating point, over the whole grid.

    Cost: one forward pass per grid point for H, plus two JVPs per grid point as operating point;
    the errors themselves are tensor arithmetic. The model is used in its own dtype and device
    (float32 is plenty for errors of a fraction of a percent).
    """
    if scene.background is None:
        raise ValueError("the scene has no background direction; use "
                         "lib.ct.scenes.uniform_lesion_scene")
    param = next(model.parameters())
    scene = scene.to(device=param.device, dtype=param.dtype)
    c = torch.as_tensor(contrasts, dtype=param.dtype, device=param.device)
    b = torch.as_tensor(backgrounds, dtype=param.dtype, device=param.device)
    cc, bb = (g.flatten() for g in torch.meshgrid(c, b, indexing="ij"))
    n = len(cc)
    outputs, along_lesion, along_background = [], [], []
    for start in tqdm(range(0, n, batch), desc="linearising grid", disable=not progress):
        x0 = scene.at(cc[start:start + batch], bb[start:start + batch])
        k = len(x0)
        primal = torch.cat([x0, x0])
        tangent = torch.cat([scene.profile.expand_as(x0), scene.background.expand_as(x0)])
        out, change = jvp(model, (primal,), (tangent,))
        outputs.append(out[:k].detach())
        along_lesion.append(change[:k].detach())
        along_background.append(change[k:].detach())
    outputs, along_lesion, along_background = (torch.cat(t) for t in
                                               (outputs, along_lesion, along_background))
    shape = (-1, *[1] * (outputs.dim() - 1))
    errors = torch.empty(n, n, dtype=param.dtype, device=param.device)
    for k in range(n):
        approx = (outputs[k] + (cc - cc[k]).reshape(shape) * along_lesion[k]
                  + (bb - bb[k]).reshape(shape) * along_background[k])
        errors[k] = percent_error(outputs, approx, floor, margin)
    return ErrorTable(c.cpu(), b.cpu(), errors.reshape(n, len(c), len(b)).cpu(), outputs.cpu(),
                      forward_passes=n, jvps=2 * n)


@dataclass(frozen=True)
class Serving:
    """The operating point that serves one grid point, and how well.

    ``region`` is the operating point's place in :attr:`Cover.points` (0 for the first chosen),
    ``point`` its grid index, ``operating_point`` its (contrast, background); ``grid_point`` is the
    (contrast, background) served and ``error`` the percent error of the linearisation there.
    """

    region: int
    point: int
    operating_point: tuple[float, float]
    grid_point: tuple[float, float]
    error: float


@dataclass
class Cover:
    """Operating points (grid indices, in the order chosen) and the partition they induce."""

    table: ErrorTable
    points: list[int]
    threshold: float

    def first(self, k: int) -> Cover:
        """The cover by the first ``k`` operating points only (the greedy choice is nested)."""
        return Cover(self.table, self.points[:k], self.threshold)

    @property
    def error(self) -> torch.Tensor:
        """(n_contrast, n_background): the error of the best of the chosen linearisations."""
        return self.table.errors[self.points].amin(dim=0)

    @property
    def assignment(self) -> torch.Tensor:
        """(n_contrast, n_background): which operating point (0, 1, ...) serves each grid point."""
        return self.table.errors[self.points].argmin(dim=0)

    def serving(self, contrast: float, background: float) -> Serving:
        """Which operating point serves the grid point nearest (``contrast``, ``background``).

        It is the chosen point whose linearisation errs least there, ``argmin_k errors[k, i, j]``
        over the chosen ``k`` (:attr:`assignment`).
        """
        k = self.table.index(contrast, background)
        region = int(self.assignment.flatten()[k])
        point = self.points[region]
        return Serving(region, point, self.table.point(point), self.table.point(k),
                       self.table.error_at(point, contrast, background))

    @property
    def operating_points(self) -> list[tuple[float, float]]:
        """The (contrast, background) of each chosen operating point, in the order chosen."""
        return [self.table.point(k) for k in self.points]

    @property
    def complete(self) -> bool:
        """Whether every grid point is within the threshold."""
        return bool((self.error <= self.threshold).all())


def greedy_cover(table: ErrorTable, threshold: float, start: int | None = None) -> Cover:
    """Operating points such that every grid point has a linearisation within ``threshold`` %.

    Greedy set cover: begin at ``start`` (a grid index; default the one that covers most), then
    repeatedly add the candidate whose linearisation covers the most grid points not yet covered.
    Every candidate covers itself, so this ends; the number of points is within a factor
    ln(grid size) of the smallest cover by grid points. Being greedy, the count is not monotone
    in the threshold: a looser threshold can lead it to a worse first choice and one more point.
    """
    if threshold <= 0:
        raise ValueError(f"threshold must be positive (percent), got {threshold}")
    within = (table.errors <= threshold).flatten(1)  # (candidates, grid points)
    covered = torch.zeros(within.shape[1], dtype=torch.bool)
    points: list[int] = []
    if start is not None:
        points.append(start)
        covered |= within[start]
    while not covered.all():
        gain = (within & ~covered).sum(dim=1)
        best = int(gain.argmax())
        points.append(best)
        covered |= within[best]
    return Cover(table, points, threshold)


def cover_lower_bound(table: ErrorTable, threshold: float) -> int:
    """A lower bound on the size of *any* cover by grid points at ``threshold``.

    No candidate serves more than ``m`` grid points within the threshold, so every cover needs at
    least ``ceil(N / m)`` of them (N grid points). Unlike the greedy count, the bound never rises
    as the threshold loosens.
    """
    within = (table.errors <= threshold).flatten(1).sum(dim=1)
    n = within.shape[0]
    return -(-n // int(within.max()))


def regions_against_threshold(table: ErrorTable, thresholds, start: int | None = None
                              ) -> tuple[list[int], list[int]]:
    """At each threshold, the size of the greedy cover from ``start`` (:func:`greedy_cover`) and
    the lower bound on any cover (:func:`cover_lower_bound`): ``(counts, bounds)``."""
    counts = [len(greedy_cover(table, th, start=start).points) for th in thresholds]
    return counts, [cover_lower_bound(table, th) for th in thresholds]
