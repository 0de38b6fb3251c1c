"""Linear regions along a line in input space: exact enumeration, and the paper's sampled view.

Along ``x(t) = x0 + t d`` every pre-activation is affine in ``t`` inside a linear region:
``z(t) = z(t_k) + (t - t_k) dz``, where ``dz`` is the directional derivative with the region's
pattern, obtained with ``z`` in one forward-mode pass. The next breakpoint is therefore exactly
``t_k + min(-z / dz)`` over the units heading for zero; the walk jumps there, re-evaluates (the
right-continuous mask of :mod:`lib.linearity.tracing` gives the next region's pattern, even when
several units switch at once), and repeats. One float64 forward pass per region, and no region is
missed, however thin: a fixed sampling step misses every region narrower than the step.

``[t0, t1]`` is cut into chunks walked together as one batch, for throughput.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from lib.linearity.tracing import activation_pattern, check_finite, traced_jvp

#: Pre-activations within this fraction of their layer's largest |z| count as exactly zero.
REL_TOL = 1e-9


@dataclass
class RegionWalk:
    """The linear regions met along ``x0 + t d`` for t in (t0, t1).

    Attributes:
        breakpoints: sorted float64 tensor of every t in (t0, t1) where the pattern changes;
            there are ``len(breakpoints) + 1`` regions.
        changes_from_start: per region, the number of units whose state differs from the region
            that contains ``t0`` (the operating point).
        changes_from_previous: per region, the number of units that switch at its left breakpoint
            (0 for the first region).
        hashes: per region, a 64-bit hash of its activation pattern.
        forward_passes: network evaluations used (one per region, plus one per chunk).
    """

    t0: float
    t1: float
    breakpoints: torch.Tensor
    changes_from_start: torch.Tensor
    changes_from_previous: torch.Tensor
    hashes: torch.Tensor
    forward_passes: int

    @property
    def n_regions(self) -> int:
        return len(self.breakpoints) + 1

    def region_bounds(self) -> torch.Tensor:
        """(n_regions, 2) float64 start and end of every region."""
        edges = torch.cat([torch.tensor([self.t0], dtype=torch.float64), self.breakpoints,
                           torch.tensor([self.t1], dtype=torch.float64)])
        return torch.stack([edges[:-1], edges[1:]], dim=1)

    def widths(self) -> torch.Tensor:
        """(n_regions,) float64 length of every region along t."""
        return self.region_bounds().diff(dim=1).flatten()

    def midpoints(self) -> torch.Tensor:
        """(n_regions,) float64 midpoint of every region: an input strictly inside it."""
        return self.region_bounds().mean(dim=1)

    def region_at(self, t: float) -> int:
        """The index of the region that contains ``t`` (a breakpoint starts the next region)."""
        if not self.t0 <= t <= self.t1:
            raise ValueError(f"t = {t} lies outside the walked interval [{self.t0}, {self.t1}]")
        return min(int(torch.searchsorted(self.breakpoints, torch.tensor(float(t), dtype=torch.float64),
                                          right=True)), self.n_regions - 1)

    def missed_by_sampling(self, step: float) -> int:
        """How many regions a sampling at ``t0, t0 + step, ...`` (up to t1) never lands in.

        A sample lands in a region when it lies strictly inside it; ``t0`` belongs to the first
        region and a sample at ``t1`` to the last.
        """
        bounds = self.region_bounds().numpy()
        first = np.floor((bounds[:, 0] - self.t0) / step) + 1  # first sample strictly inside
        last = np.ceil((bounds[:, 1] - self.t0) / step) - 1
        last[-1] = np.floor((self.t1 - self.t0) / step * (1 + 1e-12))  # a sample at t1 counts
        seen = first <= last
        seen[0] = True  # t0 itself is sampled
        return int((~seen).sum())


def check_line(x0: torch.Tensor, direction: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``x0 + t direction`` is one input line (same shape, batch 1)."""
    if x0.shape != direction.shape or x0.shape[0] != 1:
        raise ValueError(f"x0 {tuple(x0.shape)} and direction {tuple(direction.shape)} must have "
                         "the same shape with batch size 1")


def pattern_hash(mask: torch.Tensor) -> int:
    """A 64-bit hash of a boolean activation pattern (n_units,)."""
    packed = np.packbits(mask.cpu().numpy().astype(np.uint8))
    return int.from_bytes(hashlib.blake2b(packed.tobytes(), digest_size=8).digest(), "little",
                          signed=True)


def enumerate_regions(model: torch.nn.Module, x0: torch.Tensor, direction: torch.Tensor,
                      t0: float = 0.0, t1: float = 1.0, chunks: int = 4,
                      max_regions: int | None = None, progress: bool = True) -> RegionWalk:
    """Every linear region of ``model`` along ``x0 + t direction``, t in (t0, t1), exactly.

    ``x0`` and ``direction`` have the model's input shape with batch 1. The walk runs in float64
    on a copy of the model in eval mode. ``max_regions`` stops a runaway walk with an error.
    """
    check_line(x0, direction)
    check_finite(x0=x0, direction=direction, t0=t0, t1=t1)
    if not t1 > t0:
        raise ValueError(f"need t1 > t0, got t0={t0}, t1={t1}")
    if isinstance(chunks, bool) or int(chunks) != chunks or chunks < 1:
        raise ValueError(f"chunks must be a positive whole number, got {chunks!r}")
    chunks = int(chunks)
    net = copy.deepcopy(model).double().eval()
    x0, d = x0.double(), direction.double()
    edges = torch.linspace(t0, t1, chunks + 1, dtype=torch.float64, device=x0.device)
    edges[-1] = t1
    ts, ends = edges[:-1].clone(), edges[1:]
    active = torch.ones(chunks, dtype=torch.bool, device=x0.device)
    current: list[torch.Tensor | None] = [None] * chunks  # pattern of each chunk's region
    pending: list[float | None] = [None] * chunks         # breakpoint awaiting its pattern
    found: list[list[tuple[float, int, int, int]]] = [[] for _ in range(chunks)]
    start_pattern = None
    passes = 0
    bar = tqdm(desc="walking regions", unit=" regions", disable=not progress)
    while active.any():
        idx = active.nonzero().flatten()
        t = ts[idx]
        x = x0 + t.view(-1, *[1] * (x0.dim() - 1)) * d
        _, _, record = traced_jvp(net, x, d.expand_as(x).contiguous(), REL_TOL)
        passes += 1
        mask = record.flat_masks(len(idx))
        if start_pattern is None:
            start_pattern = mask[0]  # the first pass includes chunk 0 at t0
        nxt = t + record.next_crossing
        # breakpoints in (t0, t1): a chunk owns its end, except the last chunk (t1 is excluded)
        inside = torch.where(idx == chunks - 1, nxt < ends[idx], nxt <= ends[idx])
        for row, c in enumerate(idx.tolist()):
            m = mask[row]
            if pending[c] is not None:
                found[c].append((pending[c], int((m != current[c]).sum()),
                                 int((m != start_pattern).sum()), pattern_hash(m)))
                pending[c] = None
            current[c] = m
            if inside[row]:
                pending[c], ts[c] = float(nxt[row]), nxt[row]
                bar.update(1)
            else:
                active[c] = False
        if max_regions is not None and sum(map(len, found)) + 1 > max_regions:
            raise RuntimeError(f"more than {max_regions} regions; raise max_regions or shorten "
                               "the interval")
    bar.close()
    rows = [row for chunk in found for row in chunk]
    return RegionWalk(
        t0, t1,
        breakpoints=torch.tensor([r[0] for r in rows], dtype=torch.float64),  # on the CPU
        changes_from_start=torch.tensor([0] + [r[2] for r in rows]),
        changes_from_previous=torch.tensor([0] + [r[1] for r in rows]),
        hashes=torch.tensor([pattern_hash(start_pattern)] + [r[3] for r in rows], dtype=torch.int64),
        forward_passes=passes)


def distance_to_boundary(model: torch.nn.Module, x0: torch.Tensor, direction: torch.Tensor) -> float:
    """The exact ``t > 0`` at which ``x0 + t direction`` leaves the linear region it starts in.

    One float64 forward-mode pass: the first breakpoint of :func:`enumerate_regions`'s walk,
    ``min(-z / dz)`` over the units heading for zero (units at zero take the pattern they have just
    past ``x0``, so a start on a boundary gives the region the line enters). Infinite for an affine
    network. ``x0`` and ``direction`` have the model's input shape with batch 1.
    """
    check_line(x0, direction)
    check_finite(x0=x0, direction=direction)
    net = copy.deepcopy(model).double().eval()
    _, _, record = traced_jvp(net, x0.double(), direction.double(), REL_TOL)
    return float(record.next_crossing[0])


@dataclass
class SampledPath:
    """The paper's sampled view: patterns at ``ts`` (a fixed increment along the path)."""

    ts: torch.Tensor
    cumulative_patterns: torch.Tensor  # unique patterns seen up to each sample
    changes_from_start: torch.Tensor   # Hamming distance to the pattern at ts[0]
    hashes: torch.Tensor


def sample_patterns(model: torch.nn.Module, x0: torch.Tensor, direction: torch.Tensor,
                    ts: torch.Tensor, batch: int = 64, progress: bool = True) -> SampledPath:
    """Activation patterns at the given ``ts`` (float64), as the seed paper counts them."""
    net = copy.deepcopy(model).double().eval()
    x0, d = x0.double(), direction.double()
    ts = torch.as_tensor(ts, dtype=torch.float64)
    check_finite(x0=x0, direction=direction, ts=ts)
    seen: set[int] = set()
    cumulative, changes, hashes = [], [], []
    reference = None
    for k in tqdm(range(0, len(ts), batch), desc="sampling patterns", disable=not progress):
        t = ts[k:k + batch].to(x0.device)
        masks = activation_pattern(net, x0 + t.view(-1, *[1] * (x0.dim() - 1)) * d)
        if reference is None:
            reference = masks[0]
        for mask in masks:
            h = pattern_hash(mask)
            seen.add(h)
            hashes.append(h)
            cumulative.append(len(seen))
            changes.append(int((mask != reference).sum()))
    return SampledPath(ts, torch.tensor(cumulative), torch.tensor(changes),
                       torch.tensor(hashes, dtype=torch.int64))


def sample_and_walk(model: torch.nn.Module, x0: torch.Tensor, direction: torch.Tensor, t0: float,
                    t1: float, step: float, chunks: int = 2,
                    batch: int = 128) -> tuple[SampledPath, RegionWalk]:
    """One window of the path seen both ways: the patterns sampled every ``step`` on [t0, t1)
    (:func:`sample_patterns`) and the exact walk of (t0, t1) (:func:`enumerate_regions`), to be
    compared sample by sample (:func:`lib.linearity.checks.check_sampling_matches_walk`)."""
    ts = torch.arange(t0, t1, step, dtype=torch.float64)
    return (sample_patterns(model, x0, direction, ts, batch=batch, progress=False),
            enumerate_regions(model, x0, direction, t0, t1, chunks=chunks, progress=False))
