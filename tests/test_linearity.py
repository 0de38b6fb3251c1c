"""Local linearity: exact region enumeration, Jacobians, linearisation, refusals."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lib.linearity import (UnsupportedNonlinearity, activation_pattern, enumerate_regions,
                           jacobian, jacobian_row, linearize, pattern_hash, sample_patterns,
                           sparse_jacobian)
from lib.linearity.regions import RegionWalk
from lib.models import CPCE2D, CPCE3D, REDCNN, WGANVGG, ChenCNN

F64 = torch.float64


class FunctionalNet(nn.Module):
    """Functional ReLUs, a LeakyReLU, a transposed conv, concatenation and a residual sum."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 3, 3, padding=1)
        self.b = nn.Conv2d(3, 3, 3)
        self.up = nn.ConvTranspose2d(3, 3, 3)
        self.out = nn.Conv2d(6, 1, 1)

    def forward(self, x):
        h = F.relu(self.a(x))
        g = F.leaky_relu(self.b(h), 0.1)
        u = self.up(g).relu()
        return self.out(torch.cat([u, h], dim=1)) + x


def small_nets():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(4, 12), nn.ReLU(), nn.Linear(12, 12), nn.ReLU(),
                        nn.Linear(12, 4), nn.Unflatten(1, (1, 2, 2)))
    return {"mlp": (mlp.double(), (1, 1, 2, 2)), "functional conv": (FunctionalNet().double(), (1, 1, 5, 5))}


@pytest.mark.parametrize("name", list(small_nets()))
def test_exact_walk_against_dense_sampling_and_bisection(name):
    net, shape = small_nets()[name]
    g = torch.Generator().manual_seed(1)
    x0, d = torch.randn(shape, generator=g, dtype=F64), torch.randn(shape, generator=g, dtype=F64)
    walk = enumerate_regions(net, x0, d, -2.0, 2.0, chunks=3, progress=False)
    ts = torch.linspace(-2.0, 2.0, 40001, dtype=F64)
    dense = sample_patterns(net, x0, d, ts, batch=4000, progress=False)
    changes = (dense.hashes[1:] != dense.hashes[:-1]).nonzero().flatten()
    assert walk.n_regions >= len(changes) + 1  # never fewer regions than sampling sees
    bp = walk.breakpoints
    assert torch.all(bp[1:] > bp[:-1]) and bp.min() > -2.0 and bp.max() < 2.0

    def pattern(t):
        return activation_pattern(net, x0 + t * d)[0]

    # every change found by sampling is a breakpoint, located by bisection
    for k in changes.tolist():
        lo, hi = ts[k].item(), ts[k + 1].item()
        left = pattern(lo)
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if torch.equal(pattern(mid), left) else (lo, mid)
        assert (bp - hi).abs().min() < 1e-9
    # every breakpoint is confirmed by a pattern change on both sides
    gaps = torch.diff(torch.cat([torch.tensor([-2.0], dtype=F64), bp, torch.tensor([2.0], dtype=F64)]))
    for i, b in enumerate(bp.tolist()):
        eps = min(gaps[i], gaps[i + 1]).item() / 4
        assert not torch.equal(pattern(b - eps), pattern(b + eps))
    assert walk.changes_from_previous[0] == 0 and (walk.changes_from_previous[1:] >= 1).all()
    assert len(walk.hashes) == walk.n_regions


def test_simultaneous_crossings_count_as_one_breakpoint():
    # two identical units cross zero at the same t
    net = nn.Sequential(nn.Flatten(), nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 1),
                        nn.Unflatten(1, (1, 1, 1))).double()
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[1.0], [1.0]]))
        net[1].bias.copy_(torch.tensor([-0.5, -0.5]))
    walk = enumerate_regions(net, torch.zeros(1, 1, 1, 1, dtype=F64), torch.ones(1, 1, 1, 1, dtype=F64),
                            progress=False)
    assert walk.breakpoints.tolist() == [0.5]
    assert walk.changes_from_previous.tolist() == [0, 2]


def test_inside_a_region_the_network_is_its_linearisation():
    net = FunctionalNet().double()
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(1, 1, 5, 5, generator=g, dtype=F64)
    d = torch.randn(1, 1, 5, 5, generator=g, dtype=F64)
    walk = enumerate_regions(net, x0, d, 0.0, 1.0, progress=False)
    a, b = walk.region_bounds()[walk.n_regions // 2].tolist()
    center = x0 + (a + b) / 2 * d
    lin = linearize(net, center)
    inside = torch.stack([(x0 + t * d)[0] for t in torch.linspace(a, b, 7)[1:-1].tolist()])
    assert torch.allclose(lin(inside), net(inside), rtol=0, atol=1e-13)


def test_missed_by_sampling_counts_thin_regions():
    walk = RegionWalk(0.0, 1.0, torch.tensor([0.31, 0.32, 0.5], dtype=F64), torch.zeros(4), torch.zeros(4),
                      torch.zeros(4), 1)
    assert walk.missed_by_sampling(0.1) == 1    # (0.31, 0.32) holds no multiple of 0.1
    assert walk.missed_by_sampling(0.001) == 0


ARCHITECTURES = {
    "chen": lambda: ChenCNN(width=8), "redcnn": lambda: REDCNN(width=6),
    "wganvgg": lambda: WGANVGG(width=6), "cpce2d": lambda: CPCE2D(width=6),
    "cpce3d": lambda: CPCE3D(width=4),
}


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_jacobian_matches_autograd_on_every_architecture(name):
    torch.manual_seed(3)
    net = ARCHITECTURES[name]().double().eval()
    side = 24 if name == "redcnn" else 12  # RED-CNN's valid convolutions need 21 pixels or more
    shape = (1, 1, 9, side, side) if name == "cpce3d" else (1, 1, side, side)
    x = 0.02 * torch.rand(shape, dtype=F64)
    reference = torch.autograd.functional.jacobian(lambda v: net(v).flatten(), x)
    reference = reference.reshape(side * side, -1)
    assert torch.allclose(jacobian(net, x), reference, rtol=0, atol=1e-12)
    row = jacobian_row(net, x, (5, 7))
    assert torch.allclose(row.flatten(), reference[5 * side + 7], atol=1e-12)


def test_sparse_jacobian_equals_the_dense_one():
    net = ChenCNN(width=4).double().eval()
    x = 0.02 * torch.rand(1, 1, 30, 30, dtype=F64)
    sparse = sparse_jacobian(net, x, progress=False)
    assert sparse._nnz() <= 900 * 13 * 13
    assert torch.allclose(sparse.to_dense(), jacobian(net, x), atol=0)


def test_activation_pattern_counts_every_relu_output():
    net = FunctionalNet()
    x = torch.randn(2, 1, 5, 5)
    pattern = activation_pattern(net, x)
    assert pattern.shape == (2, 3 * 25 + 3 * 9 + 3 * 25) and pattern.dtype == torch.bool
    assert pattern_hash(pattern[0]) == pattern_hash(pattern[0].clone())


@pytest.mark.parametrize("layer, word", [(nn.Tanh(), "tanh"), (nn.GELU(), "GELU"),
                                         (nn.Sigmoid(), "sigmoid"), (nn.MaxPool2d(2), "max pooling")])
def test_other_nonlinearities_are_refused_by_name(layer, word):
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), layer, nn.Conv2d(2, 1, 1))
    x = torch.randn(1, 1, 6, 6)
    with pytest.raises(UnsupportedNonlinearity, match=word):
        activation_pattern(net, x)
    with pytest.raises(UnsupportedNonlinearity, match=word):
        enumerate_regions(net, x, x, progress=False)
    with pytest.raises(UnsupportedNonlinearity, match=word):
        jacobian(net, x, field=5)
