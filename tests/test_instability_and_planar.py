"""Worst-case perturbations, power iteration, and exact planar regions of small ReLU networks."""

import pytest
import torch
from matplotlib.path import Path
from torch import nn

from lib.ct.scanner import Scanner
from lib.instability import (random_response, through_fbp, through_projection,
                             worst_case_perturbation)
from lib.linearity import activation_pattern, local_svd, power_iteration
from lib.linearity.planar import planar_regions

F64 = torch.float64


def conv_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(4, 1, 3, padding=1)).double().requires_grad_(False)


def test_power_iteration_finds_the_top_singular_pair():
    net = conv_net()
    x = torch.rand(1, 1, 6, 6, dtype=F64, generator=torch.Generator().manual_seed(0))
    dense = local_svd(net, x, field=5)
    s, v, history = power_iteration(net, x, iterations=300)
    assert s == pytest.approx(float(dense.S[0]), rel=1e-6)
    assert float((v.flatten() @ dense.V[:, 0]).abs()) == pytest.approx(1.0, abs=1e-4)
    assert len(history) == 300 and history[-1] == pytest.approx(s, rel=1e-4)


def test_a_linear_map_has_its_worst_case_along_the_top_singular_vector():
    torch.manual_seed(1)
    A = torch.randn(5, 5, dtype=F64)
    A = A @ torch.diag(torch.tensor([3.0, 1.0, 0.5, 0.2, 0.1], dtype=F64)) @ torch.linalg.qr(A).Q.T

    def f(x):
        return x.flatten(1) @ A.T

    x = torch.randn(1, 5, dtype=F64)
    w = worst_case_perturbation(f, x, max_norm=0.1, steps=200)
    top = torch.linalg.svdvals(A)[0]
    assert w.input_norm == pytest.approx(0.1, rel=1e-9)
    assert w.gain == pytest.approx(float(top), rel=1e-4)
    rand = random_response(f, x, 0.1, n=20)
    assert rand.shape == (20,) and float(rand.max()) <= float(top) * 0.1 + 1e-12
    assert w.objective[-1] >= w.objective[0]


def test_the_penalty_bounds_the_perturbation_by_a_gain_threshold():
    def f(x):
        return 2.0 * x  # gain 2 in every direction

    x = torch.zeros(1, 4, dtype=F64)
    below = worst_case_perturbation(f, x, lam=3.0, steps=50, step_size=0.01)   # sqrt(3) < 2
    above = worst_case_perturbation(f, x, lam=5.0, steps=50, step_size=0.01)   # sqrt(5) > 2
    assert below.input_norm > 0.2 and above.input_norm < 0.03


def test_bad_arguments_are_refused_with_a_reason():
    net = conv_net()
    x = torch.zeros(2, 1, 4, 4, dtype=F64)
    with pytest.raises(ValueError, match="batch 1"):
        worst_case_perturbation(net, x, max_norm=1.0)
    with pytest.raises(ValueError, match="needs lam > 0"):
        worst_case_perturbation(net, x[:1])
    with pytest.raises(ValueError, match="non-negative"):
        worst_case_perturbation(net, x[:1], lam=-1.0)
    with pytest.raises(ValueError, match="batch 1"):
        power_iteration(net, x)


def test_sinogram_perturbations_reach_the_network_through_fbp():
    scanner = Scanner(64, 6.0, n_angles=60)
    net = conv_net().float()
    sino = scanner.project(torch.rand(1, 64, 64) * 0.02)
    f = through_fbp(net, scanner)
    assert f(sino).shape == (1, 1, 64, 64)
    w = worst_case_perturbation(f, sino, max_norm=0.05, steps=5)
    assert w.perturbation.shape == sino.shape and w.output_change > 0


def test_object_perturbations_enter_through_the_projector():
    scanner = Scanner(64, 6.0, n_angles=60)
    net = conv_net().float()
    truth = torch.rand(1, 64, 64) * 0.02
    sino = scanner.project(truth)
    f = through_projection(net, scanner, sino)
    zero = torch.zeros(1, 1, 64, 64)
    assert torch.allclose(f(zero), through_fbp(net, scanner)(sino))
    bump = torch.zeros(1, 1, 64, 64)
    bump[..., 30:34, 30:34] = 0.01
    expected = through_fbp(net, scanner)(scanner.project(truth + bump[:, 0]))
    assert torch.allclose(f(bump), expected, atol=1e-6)   # A is linear: s + A r = A (x + r)
    w = worst_case_perturbation(f, zero, max_norm=0.05, steps=3)
    assert w.perturbation.shape == zero.shape and w.output_change > 0


def small_mlp(width=6):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, 2)).double().requires_grad_(False)


def test_planar_regions_tile_the_box_and_hold_the_network_exactly():
    mlp = small_mlp()
    regions = planar_regions(mlp, (-3.0, 3.0, -2.0, 2.0))
    assert sum(r.area for r in regions) == pytest.approx(24.0, abs=1e-9)
    patterns = {tuple(r.pattern.tolist()) for r in regions}
    assert len(patterns) == len(regions)  # one region per pattern
    points = torch.rand(400, 2, dtype=F64) * torch.tensor([6.0, 4.0], dtype=F64) - torch.tensor([3.0, 2.0], dtype=F64)
    seen = activation_pattern(mlp, points)
    for i, point in enumerate(points):
        owners = [r for r in regions if Path(r.vertices.numpy()).contains_point(point.numpy())]
        assert len(owners) == 1
        assert torch.equal(owners[0].pattern, seen[i])
        assert torch.allclose(owners[0](point[None]), mlp(point[None]), atol=1e-13)
    # a grid never sees more patterns than there are regions
    axis_x, axis_y = torch.linspace(-3, 3, 150, dtype=F64), torch.linspace(-2, 2, 100, dtype=F64)
    grid = torch.cartesian_prod(axis_x, axis_y)
    assert len(torch.unique(activation_pattern(mlp, grid), dim=0)) <= len(regions)


def test_a_network_without_relus_is_one_region_and_others_are_refused():
    assert len(planar_regions(nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1)).double(),
                              (0.0, 1.0, 0.0, 1.0))) == 1
    with pytest.raises(ValueError, match="nn.Linear and nn.ReLU only"):
        planar_regions(nn.Sequential(nn.Linear(2, 3), nn.Tanh()), (0.0, 1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="takes 2 inputs"):
        planar_regions(nn.Sequential(nn.Linear(3, 3)), (0.0, 1.0, 0.0, 1.0))
