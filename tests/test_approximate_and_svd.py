"""Approximately linear regions (errors over a plane, greedy cover) and SVDs of local Jacobians."""

import pytest
import torch
from torch import nn

from lib.ct.scenes import lung_lesion_scene, scanner_noise, uniform_lesion_scene
from lib.ct.units import MU_WATER
from lib.linearity import (ErrorTable, greedy_cover, jacobian, linearization_errors, linearize,
                           local_svd, percent_error, randomized_svd)
from lib.models import ChenCNN

F64 = torch.float64


def relu_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1),
                         nn.ReLU(), nn.Conv2d(6, 1, 3, padding=1)).double()


def test_percent_error_divides_by_the_output_or_the_floor():
    out = torch.tensor([[[[0.04, 0.0]]]], dtype=F64)
    approx = torch.tensor([[[[0.039, 0.0001]]]], dtype=F64)
    # 0.001 / 0.04 = 2.5 % on the bright pixel; 0.0001 / mu_water = 0.52 % on the dark one
    assert float(percent_error(out, approx)) == pytest.approx(2.5)
    assert float(percent_error(out[..., 1:], approx[..., 1:])) == pytest.approx(
        100 * 0.0001 / MU_WATER)
    with pytest.raises(ValueError, match="differ in shape"):
        percent_error(out, approx[..., :1])


def test_percent_error_leaves_out_the_margin():
    out = torch.full((1, 1, 6, 6), 0.02, dtype=F64)
    approx = out.clone()
    approx[..., 0, 0] = 1.0
    assert float(percent_error(out, approx, margin=1)) == 0.0
    assert float(percent_error(out, approx)) > 1000


def test_two_jvps_give_the_same_errors_as_one_jvp_per_grid_point():
    net = relu_net()
    scene = uniform_lesion_scene(12, diameter_mm=6.0).to(F64)
    c, b = torch.linspace(0.001, 0.08, 4), torch.linspace(0.0, 0.04, 3)
    table = linearization_errors(net, scene, c, b, margin=1, progress=False)
    assert table.errors.shape == (12, 4, 3) and table.jvps == 24
    for k in (0, 5, 11):
        assert float(table.errors[k].flatten()[k]) < 1e-10  # exact at the operating point
        lin = linearize(net, scene.at(*table.point(k)))
        for g in (1, 7, 10):
            direct = percent_error(table.outputs[g:g + 1], lin(scene.at(*table.point(g))),
                                   margin=1)
            assert float(direct) == pytest.approx(float(table.errors[k].flatten()[g]), abs=1e-9)
    assert table.index(*table.point(7)) == 7


def test_a_linear_network_is_one_region():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Conv2d(3, 1, 3, padding=1)).double()
    table = linearization_errors(net, uniform_lesion_scene(10, diameter_mm=6.0).to(F64),
                                 torch.linspace(0.001, 0.08, 3), torch.linspace(0, 0.04, 3),
                                 progress=False)
    assert float(table.errors.max()) < 1e-9
    assert len(greedy_cover(table, 0.1).points) == 1


def test_the_plane_needs_a_scene_with_a_background_direction():
    scene = lung_lesion_scene(16)
    with pytest.raises(ValueError, match="uniform_lesion_scene"):
        linearization_errors(relu_net(), scene, [0.01], [0.0], progress=False)
    with pytest.raises(ValueError, match="no background direction"):
        scene.at(0.01, 0.02)


def synthetic_table(errors):
    n_c, n_b = errors.shape[1:]
    return ErrorTable(torch.arange(n_c, dtype=F64), torch.arange(n_b, dtype=F64), errors,
                      torch.zeros(n_c * n_b, 1, 1, 1), n_c * n_b, 2 * n_c * n_b)


def test_greedy_cover_serves_every_point_and_is_nested():
    # grid 1 x 4; candidate 1 covers points 0-2, candidate 3 covers 2-3, others only themselves
    e = torch.full((4, 4), 50.0, dtype=F64)
    e.fill_diagonal_(0.0)
    e[1, :3] = torch.tensor([4.0, 0.0, 3.0])
    e[3, 2:] = torch.tensor([2.0, 0.0])
    table = synthetic_table(e.reshape(4, 1, 4))
    cover = greedy_cover(table, 5.0)
    assert cover.points == [1, 3] and cover.complete
    assert cover.assignment.flatten().tolist() == [0, 0, 1, 1]
    assert cover.error.flatten().tolist() == [4.0, 0.0, 2.0, 0.0]
    assert cover.first(1).points == [1] and not cover.first(1).complete
    started = greedy_cover(table, 5.0, start=0)
    assert started.points[0] == 0 and started.complete
    with pytest.raises(ValueError, match="positive"):
        greedy_cover(table, 0.0)


def test_dense_svd_reconstructs_the_jacobian_and_splits_inputs():
    net = relu_net()
    x0 = torch.rand(1, 1, 6, 6, dtype=F64, generator=torch.Generator().manual_seed(0))
    svd = local_svd(net, x0, field=7)
    J = jacobian(net, x0, field=7)
    assert torch.allclose(svd.U * svd.S @ svd.V.T, J, atol=1e-12)
    assert svd.right_vector(0).shape == (6, 6) and svd.left_vector(0).shape == (6, 6)
    x = torch.randn(3, 1, 6, 6, dtype=F64)
    kept, removed = svd.preserved(x, 0.1), svd.attenuated(x, 0.1)
    sym = svd.V * svd.S @ svd.V.T  # (J^T J)^(1/2)
    assert torch.allclose((kept + removed).reshape(3, -1), x.reshape(3, -1) @ sym, atol=1e-12)
    assert torch.allclose((kept + removed).flatten(1).norm(dim=1),
                          (x.flatten(1) @ J.T).norm(dim=1), atol=1e-12)
    assert 1 <= svd.effective_rank() <= 36 and svd.count_above(0.0) <= 36


def test_randomized_svd_matches_lapack():
    net = relu_net()
    x0 = torch.rand(1, 1, 5, 5, dtype=F64, generator=torch.Generator().manual_seed(1))
    dense = local_svd(net, x0, field=7)
    full = randomized_svd(net, x0, rank=15, oversample=10, power_iterations=0)  # sketch = R^25
    assert torch.allclose(full.S, dense.S[:15], atol=1e-10)
    top = randomized_svd(net, x0, rank=3, oversample=8, power_iterations=4)
    assert torch.allclose(top.S, dense.S[:3], rtol=1e-3)
    # singular vectors up to sign
    assert torch.allclose((top.V.T @ dense.V[:, :1]).abs()[0], torch.ones(1, dtype=F64), atol=1e-3)
    with pytest.raises(ValueError, match="every singular value"):
        top.attenuated(torch.zeros(1, 1, 5, 5, dtype=F64))
    with pytest.raises(ValueError, match="exceeds the input size"):
        randomized_svd(net, x0, rank=20, oversample=10)


def test_randomized_svd_on_a_denoiser_agrees_on_the_top_value():
    torch.manual_seed(0)
    net = ChenCNN(width=8).double().eval()
    x0 = uniform_lesion_scene(16).to(F64).at(0.02, 0.01)
    dense = local_svd(net, x0)
    top = randomized_svd(net, x0, rank=4, power_iterations=4)
    assert float(top.S[0]) == pytest.approx(float(dense.S[0]), rel=1e-2)
    with pytest.raises(ValueError, match="raise `rank`"):
        top.preserved(x0, threshold=1e-9)


def test_uniform_scene_and_scanner_noise():
    scene = uniform_lesion_scene(16)
    x = scene.at(torch.tensor([0.01, 0.03]), torch.tensor([0.0, 0.02]))
    assert x.shape == (2, 1, 16, 16)
    assert float(x[1, 0, 0, 0]) == pytest.approx(0.02) and float(x[1, 0, 8, 8]) == pytest.approx(0.05)
    assert uniform_lesion_scene(16, slab=3).at(0.01, 0.01).shape == (1, 1, 3, 16, 16)
    noise = scanner_noise(3, roi_size=16, size=128, pixel_mm=3.0)
    assert noise.shape == (3, 1, 16, 16)
    assert 1e-4 < float(noise.std()) < 1e-2 and abs(float(noise.mean())) < float(noise.std())
    assert torch.equal(noise[1], scanner_noise(2, roi_size=16, size=128, pixel_mm=3.0)[1])
    assert not torch.equal(noise[0], noise[1])
    with pytest.raises(ValueError, match="at least 1"):
        scanner_noise(0)
