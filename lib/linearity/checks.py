"""Checks of the claims the analysis chapters make, each able to fail.

A check recomputes a claim by a route independent of the result it tests and raises
``AssertionError`` with the numbers when the two disagree; it returns what it measured otherwise.
The unit tests show every check failing on a deliberately broken input (a mutated network, sampler
or threshold).

- :func:`check_sampling_matches_walk` - every sampled pattern is the pattern the exact walk
  assigns to that point of the line (the sampler against the walk, sample by sample)
- :func:`check_linear_between` - the network equals its linearisation between two points
- :func:`check_error_table` - the error table's entries for one operating point equal the errors
  of that point's linearisation recomputed by one JVP per grid point
- :func:`check_cover` - every grid point is served within the threshold, recomputed by fresh
  forward passes and JVPs rather than read from the error table
- :func:`check_svd_matches_jvp` - ``U S V^T n`` equals ``J n`` from a JVP for given inputs
- :func:`check_attenuated_finer` - the attenuated part of noise has finer texture (a higher mean
  radial frequency of its noise power spectrum) than the preserved part
- :func:`check_planar_regions` - the exact regions of a network with a 2-D input tile the box, and
  at random points the network is the affine map, pattern and Jacobian of the region there
"""

from __future__ import annotations

import torch
from torch.func import jvp

from lib.ct.noise import mean_frequency, noise_power_spectrum
from lib.ct.scenes import LesionScene
from lib.ct.units import MU_WATER
from lib.linearity.approximate import Cover, ErrorTable, percent_error
from lib.linearity.jacobian import linearize
from lib.linearity.regions import RegionWalk, SampledPath
from lib.linearity.planar import PlanarRegion, region_index
from lib.linearity.tracing import activation_pattern
from lib.linearity.svd import LocalSVD


def check_sampling_matches_walk(walk: RegionWalk, sampled: SampledPath,
                                guard: float = 1e-9) -> int:
    """Each sample's pattern hash equals the hash of the walk's region that contains it.

    Samples closer than ``guard * (t1 - t0)`` to a breakpoint are skipped (there the two may
    round differently). Also the number of distinct patterns the sampler saw must equal the
    number of distinct patterns of the regions it landed in. Returns the samples compared.
    """
    ts = sampled.ts.to(torch.float64)
    region = torch.searchsorted(walk.breakpoints, ts, right=True)
    region = region.clamp(max=walk.n_regions - 1)
    if len(walk.breakpoints):
        gap = (ts[:, None] - walk.breakpoints[None, :]).abs().amin(dim=1)
        clear = gap > guard * (walk.t1 - walk.t0)
    else:
        clear = torch.ones_like(ts, dtype=torch.bool)
    expected = walk.hashes[region]
    wrong = (expected != sampled.hashes) & clear
    if wrong.any():
        first = int(wrong.nonzero()[0])
        raise AssertionError(f"{int(wrong.sum())} of {int(clear.sum())} samples have a pattern "
                             f"other than the walk's region there (first at t = "
                             f"{float(ts[first]):.9g}, region {int(region[first])}): the sampler "
                             "and the walk disagree")
    seen, hit = set(sampled.hashes[clear].tolist()), set(expected[clear].tolist())
    if seen != hit:
        raise AssertionError(f"the sampler saw {len(seen)} distinct patterns, the walk's regions "
                             f"at those samples have {len(hit)}")
    return int(clear.sum())


def check_linear_between(model: torch.nn.Module, x0: torch.Tensor, direction: torch.Tensor,
                         lo: float, hi: float, points: int = 7, rtol: float = 1e-12) -> float:
    """``H(x0 + t d)`` equals the linearisation at the midpoint for ``points`` t in (lo, hi).

    Holds when (lo, hi) lies inside one linear region; fails across a breakpoint. Float64.
    Returns the largest deviation.
    """
    lin = linearize(model, x0 + (lo + hi) / 2 * direction)
    ts = torch.linspace(lo, hi, points + 2, dtype=torch.float64)[1:-1]
    x = torch.cat([x0.double() + float(t) * direction.double() for t in ts])
    with torch.no_grad():
        exact = lin.model(x)
    gap = float((lin(x) - exact).abs().max())
    scale = float(exact.abs().max())
    if gap > rtol * scale:
        raise AssertionError(f"between t = {lo:.9g} and {hi:.9g} the network departs from its "
                             f"linearisation by {gap:.2e} (outputs of order {scale:.3f}): the "
                             "interval is not one linear region")
    return gap


def check_cover(model: torch.nn.Module, scene: LesionScene, cover: Cover, margin: int = 0,
                floor: float = MU_WATER, batch: int = 32) -> torch.Tensor:
    """Recompute, for every grid point, the error of the linearisation that serves it.

    Fresh forward passes and one JVP per grid point (:func:`lib.linearity.linearize` at each
    operating point) in the model's dtype; fails if any error exceeds the threshold or differs
    from the table the cover was chosen from. Returns the errors (n_contrast, n_background).
    """
    table = cover.table
    param = next(model.parameters())
    scene = scene.to(device=param.device, dtype=param.dtype)
    cc, bb = (g.flatten() for g in torch.meshgrid(table.contrasts, table.backgrounds,
                                                  indexing="ij"))
    assignment = cover.assignment.flatten()
    errors = torch.full((len(cc),), float("nan"), dtype=torch.float64)
    for j, point in enumerate(cover.points):
        lin = linearize(model, scene.at(*table.point(point)), dtype=param.dtype)
        for chunk in (assignment == j).nonzero().flatten().split(batch):
            x = scene.at(cc[chunk].to(param), bb[chunk].to(param))
            with torch.no_grad():
                out = model(x)
            errors[chunk] = percent_error(out, lin(x), floor, margin).double().cpu()
    errors = errors.reshape(cover.error.shape)
    tolerance = 1e-3 * max(cover.threshold, 1.0)
    differ = float((errors - cover.error.double()).abs().max())
    if differ > tolerance:
        raise AssertionError(f"recomputed errors differ from the table by up to {differ:.3g} "
                             "percentage points: the table does not belong to this network")
    worst = float(errors.max())
    if worst > cover.threshold + tolerance:
        raise AssertionError(f"a grid point is served with error {worst:.3f} % > threshold "
                             f"{cover.threshold} %: the cover is incomplete")
    return errors


def check_error_table(model: torch.nn.Module, scene: LesionScene, table: ErrorTable, point: int,
                      samples: int = 6, floor: float = MU_WATER, margin: int = 0, seed: int = 0,
                      atol: float = 1e-3) -> float:
    """Row ``point`` of the table equals the errors of that point's linearisation, recomputed at
    ``samples`` random grid points by one JVP each, and is zero at the operating point itself.

    The table has them from two JVPs for the whole plane (:func:`linearization_errors`); this is
    the route of one JVP per input. Returns the largest difference (percentage points).
    """
    param = next(model.parameters())
    scene = scene.to(param)
    lin = linearize(model, scene.at(*table.point(point)), dtype=param.dtype)
    generator = torch.Generator().manual_seed(seed)
    some = torch.randperm(len(table.outputs), generator=generator)[:samples]
    cb = torch.tensor([table.point(int(k)) for k in some]).to(param)
    direct = percent_error(table.outputs[some], lin(scene.at(cb[:, 0], cb[:, 1])).cpu(), floor,
                           margin)
    row = table.errors[point].flatten()
    gap = float((direct - row[some]).abs().max())
    if gap > atol:
        raise AssertionError(f"the table's errors for operating point {point} differ from one "
                             f"JVP per grid point by up to {gap:.3g} percentage points")
    if float(row[point]) > atol:
        raise AssertionError(f"the linearisation at grid point {point} errs by "
                             f"{float(row[point]):.3g} % at that very point: the table is wrong")
    return gap


def check_svd_matches_jvp(svd: LocalSVD, model: torch.nn.Module, x0: torch.Tensor,
                          inputs: torch.Tensor, rtol: float = 1e-8) -> float:
    """``U S V^T n`` equals ``J0 n`` computed by a JVP at ``x0``, for every input ``n``.

    Returns the largest relative difference; fails above ``rtol``.
    """
    flat = inputs.reshape(len(inputs), -1).to(svd.V.dtype)
    by_svd = ((flat @ svd.V) * svd.S) @ svd.U.T
    primal = x0.expand(len(inputs), *x0.shape[1:]).contiguous()
    by_jvp = jvp(model, (primal,), (inputs.to(x0.dtype).reshape(primal.shape),))[1]
    by_jvp = by_jvp.detach().reshape(len(inputs), -1).to(by_svd.dtype)
    relative = float(((by_svd - by_jvp).norm(dim=1) / by_jvp.norm(dim=1)).max())
    if relative > rtol:
        raise AssertionError(f"U S V^T n differs from the JVP J n by {relative:.2e} (relative): "
                             "the SVD is not the Jacobian of this network at this point")
    return relative


def check_attenuated_finer(preserved: torch.Tensor, attenuated: torch.Tensor,
                           pixel_mm: float) -> tuple[float, float]:
    """Mean radial frequency (cycles/mm) of the preserved and attenuated parts' noise power
    spectra, realisations (K, 1, N, N); fails unless the attenuated part's is the higher."""
    f_p, f_a = (mean_frequency(*noise_power_spectrum(part[:, 0], pixel_mm)[:2])
                for part in (preserved, attenuated))
    if not f_a > f_p:
        raise AssertionError(f"the attenuated part's mean frequency {f_a:.3f} cycles/mm is not "
                             f"above the preserved part's {f_p:.3f}: it is not the finer texture")
    return f_p, f_a


def check_planar_regions(network: torch.nn.Module, regions: list[PlanarRegion],
                         box: tuple[float, float, float, float], points: torch.Tensor,
                         atol: float = 1e-12) -> dict[str, float]:
    """The polygons of :func:`lib.linearity.planar.planar_regions` against the network itself.

    Every point (N, 2) must lie in a polygon; there the network's output must equal the polygon's
    ``A x + c``, its activation pattern the polygon's pattern, and its Jacobian (autograd) ``A``,
    each to ``atol``; and the areas must add up to the box's. Returns the largest output gap
    ``output_gap``, the largest Jacobian gap ``jacobian_gap`` and the ``area`` of all polygons.
    """
    points = points.to(torch.float64)
    owner = region_index(regions, points)
    if (owner < 0).any():
        raise AssertionError(f"{int((owner < 0).sum())} of {len(points)} points lie in no region: "
                             "the polygons do not cover the box")
    with torch.no_grad():
        out = network(points)
    A = torch.stack([regions[k].A for k in owner.tolist()])
    c = torch.stack([regions[k].c for k in owner.tolist()])
    output_gap = float((out - (A @ points[:, :, None])[..., 0] - c).abs().max())
    jacobian_gap = float((torch.func.vmap(torch.func.jacrev(network))(points) - A).abs().max())
    patterns = activation_pattern(network, points)
    mismatched = sum(not torch.equal(patterns[i], regions[k].pattern)
                     for i, k in enumerate(owner.tolist()))
    area = sum(r.area for r in regions)
    box_area = (box[1] - box[0]) * (box[3] - box[2])
    if output_gap > atol or jacobian_gap > atol or mismatched:
        raise AssertionError(f"the network departs from its regions' maps by {output_gap:.2e}, "
                             f"from their Jacobians by {jacobian_gap:.2e}, and {mismatched} points "
                             "have another activation pattern: the regions are not the network's")
    if abs(area - box_area) > 1e-9 * box_area:
        raise AssertionError(f"the polygons cover {area:.12f}, the box {box_area}: regions are "
                             "missing or overlap")
    return {"output_gap": output_gap, "jacobian_gap": jacobian_gap, "area": area}
