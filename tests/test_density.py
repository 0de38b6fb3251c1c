"""The region count estimated from region widths at random points, against exact answers."""

import pytest
import torch
from torch import nn

from lib.linearity import enumerate_regions
from lib.linearity.density import estimate_region_count

F64 = torch.float64


def staircase():
    """Ten units switching at t = 0.05, 0.15, ..., 0.95 along x = t: regions of width 0.1."""
    net = nn.Sequential(nn.Conv2d(1, 10, 1), nn.ReLU(), nn.Conv2d(10, 1, 1)).double()
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.copy_(-(torch.arange(10, dtype=F64) + 0.5) / 10)
    return net


def test_equal_widths_give_the_exact_count():
    x0, d = torch.zeros(1, 1, 1, 1, dtype=F64), torch.ones(1, 1, 1, 1, dtype=F64)
    estimate = estimate_region_count(staircase(), x0, d, 0.15, 0.85, samples=5)
    assert torch.allclose(estimate.widths, torch.full((5,), 0.1, dtype=F64))
    assert estimate.count == pytest.approx(7.0) and estimate.stderr == pytest.approx(0.0, abs=1e-9)
    assert estimate.forward_passes == 2


def test_the_estimate_agrees_with_the_walk_on_a_trained_like_network():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1),
                        nn.ReLU(), nn.Conv2d(6, 1, 3, padding=1)).double()
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(1, 1, 8, 8, dtype=F64, generator=g)
    d = torch.randn(1, 1, 8, 8, dtype=F64, generator=g)
    exact = enumerate_regions(net, x0, d, 0.0, 1.0, progress=False).n_regions
    estimate = estimate_region_count(net, x0, d, 0.0, 1.0, samples=200, batch=100)
    assert abs(estimate.count - exact) <= 3 * estimate.stderr + 2
    assert 0 < estimate.stderr < 0.3 * exact


def test_bad_arguments_are_refused():
    x0 = torch.zeros(1, 1, 1, 1, dtype=F64)
    with pytest.raises(ValueError, match="same shape"):
        estimate_region_count(staircase(), x0, torch.ones(1, 1, 2, 1, dtype=F64), 0.0, 1.0)
    with pytest.raises(ValueError, match="t1 > t0"):
        estimate_region_count(staircase(), x0, torch.ones_like(x0), 1.0, 0.0)
