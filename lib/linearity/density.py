"""How many linear regions lie along a line, estimated from the regions at a few random points.

Walking every region (:func:`lib.linearity.enumerate_regions`) costs one network evaluation per
region, too many for a large network over a long range. But the width of the *one* region that
contains a point ``t`` costs two: a forward-mode pass along ``+d`` gives the distance to the next
breakpoint, one along ``-d`` the distance to the previous one (the same computation the walk uses
to step). If ``t`` is uniform on ``[t0, t1]`` (length T), the region ``k`` of width ``L_k`` is hit
with probability ``L_k / T``, so

    E[1 / L(t)] = sum_k (L_k / T) (1 / L_k) = N / T,     N_hat = T * mean_j 1 / L(t_j)

is an unbiased estimate of the number N of regions, whatever the widths are. It assumes nothing
about how regions are spread; its error is the sampling error of the mean of ``1 / L`` (a region
much narrower than the rest is rarely hit but weighs much when it is), estimated from the sample.
The points are stratified, one uniform point in each of ``samples`` equal sub-intervals. Regions
cut by ``t0`` or ``t1`` count with their full width, a bias of at most two regions.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from lib.linearity.regions import REL_TOL, check_line
from lib.linearity.tracing import traced_jvp


@dataclass
class RegionEstimate:
    """``count`` +- ``stderr`` regions in (t0, t1), from the widths of the regions at ``ts``."""

    t0: float
    t1: float
    ts: torch.Tensor
    widths: torch.Tensor
    forward_passes: int

    @property
    def count(self) -> float:
        return float((self.t1 - self.t0) * (1 / self.widths).mean())

    @property
    def stderr(self) -> float:
        """Standard error of ``count`` from the sample (conservative for stratified points)."""
        inverse = (self.t1 - self.t0) / self.widths
        return float(inverse.std() / len(inverse) ** 0.5) if len(inverse) > 1 else float("inf")


def estimate_region_count(model: torch.nn.Module, x0: torch.Tensor, direction: torch.Tensor,
                          t0: float, t1: float, samples: int = 16, batch: int = 16,
                          seed: int = 0) -> RegionEstimate:
    """Estimate the number of linear regions along ``x0 + t d`` for t in (t0, t1).

    ``samples`` stratified uniform points, two float64 forward-mode passes each (batched by
    ``batch``). ``x0`` and ``direction`` have the model's input shape with batch 1.
    """
    check_line(x0, direction)
    if not t1 > t0 or samples < 1:
        raise ValueError(f"need t1 > t0 and samples >= 1, got t0={t0}, t1={t1}, "
                         f"samples={samples}")
    net = copy.deepcopy(model).double().eval()
    x0, d = x0.double(), direction.double()
    generator = torch.Generator().manual_seed(seed)
    u = torch.rand(samples, generator=generator, dtype=torch.float64)
    ts = t0 + (torch.arange(samples, dtype=torch.float64) + u) * (t1 - t0) / samples
    widths, passes = [], 0
    for chunk in ts.split(batch):
        x = x0 + chunk.to(x0.device).view(-1, *[1] * (x0.dim() - 1)) * d
        ahead = traced_jvp(net, x, d.expand_as(x).contiguous(), REL_TOL)[2].next_crossing
        behind = traced_jvp(net, x, -d.expand_as(x).contiguous(), REL_TOL)[2].next_crossing
        widths.append((ahead + behind).cpu())
        passes += 2
    return RegionEstimate(t0, t1, ts, torch.cat(widths), passes)
