"""The analysis pieces of chapters 5, 6 and 8: which region serves a point, receptive-field
margins, HU norms, lesion masks, noise slabs, singular-vector shares, noise through a network and
its linear system, worst case against random, the error-table check, and plane maps."""

import matplotlib

matplotlib.use("agg")

import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn

from lib.ct.scenes import LesionScene, noise_slabs, uniform_lesion_scene
from lib.ct.units import HU_PER_MU, norm_to_rms_hu, rms_hu_to_norm
from lib.instability import against_random
from lib.linearity import (ErrorTable, greedy_cover, linearization_errors, percent_error_map,
                           regions_against_threshold)
from lib.linearity.checks import check_error_table
from lib.linearity.noise_transfer import noise_transfer
from lib.linearity.svd import LocalSVD
from lib.models.receptive_field import receptive_field_margin
from lib.plotting import show_plane

F64 = torch.float64


def small_table():
    """A 2 x 3 grid whose errors make candidate 0 serve the first column and 5 the rest."""
    contrasts = torch.tensor([0.01, 0.05], dtype=F64)
    backgrounds = torch.tensor([0.0, 0.02, 0.04], dtype=F64)
    errors = torch.full((6, 2, 3), 50.0)
    errors[0, :, 0] = torch.tensor([0.0, 1.0])
    errors[5, :, 1:] = torch.tensor([[2.0, 3.0], [4.0, 0.0]])
    errors[0, 1, 1] = 4.5  # worse than candidate 5 (4.0) at grid point (1, 1)
    return ErrorTable(contrasts, backgrounds, errors, torch.zeros(6, 1, 1, 1), 6, 12)


def test_the_cover_says_which_operating_point_serves_a_point():
    table = small_table()
    cover = greedy_cover(table, threshold=5.0)
    assert sorted(cover.points) == [0, 5]
    served = cover.serving(0.05, 0.02)  # grid point (1, 1): candidate 5 errs least there
    assert served.point == 5 and served.error == 4.0 and served.grid_point == (0.05, 0.02)
    assert served.operating_point == table.point(5) and cover.points[served.region] == 5
    near = cover.serving(0.049, 0.001)  # nearest grid point (1, 0): candidate 0
    assert (near.point, near.error, near.grid_point) == (0, 1.0, (0.05, 0.0))
    assert table.error_at(0, 0.05, 0.02) == 4.5 and table.error_at(5, 0.01, 0.04) == 3.0
    assert cover.operating_points == [table.point(k) for k in cover.points]


def test_regions_against_threshold_counts_and_bounds():
    # at 5 % candidate 5 serves 4 of the 6 grid points, candidate 0 the other two; at 60 % any
    # single candidate serves all
    assert regions_against_threshold(small_table(), [5.0, 60.0]) == ([2, 1], [2, 1])
    assert regions_against_threshold(small_table(), [5.0], start=1) == ([3], [2])


def test_the_percent_error_map_is_per_pixel():
    out = torch.tensor([[0.04, 0.0], [-0.04, 0.02]], dtype=F64)
    approx = out + torch.tensor([[0.001, 0.0001], [0.002, 0.0]], dtype=F64)
    expected = [2.5, 100 * 0.0001 / 0.0193, 5.0, 0.0]  # the floor: mu_water for dark pixels
    assert percent_error_map(out, approx).flatten().tolist() == pytest.approx(expected)
    with pytest.raises(ValueError, match="differ in shape"):
        percent_error_map(out, approx[:1])


def test_the_receptive_field_margin_is_half_the_larger_side():
    net = nn.Sequential(nn.Conv2d(1, 2, 5, padding=2), nn.ReLU(), nn.Conv2d(2, 1, 3, padding=1))
    assert receptive_field_margin(net) == 3  # field 7
    slab = nn.Sequential(nn.Conv3d(1, 1, (5, 3, 3), padding=(2, 1, 1)))
    assert receptive_field_margin(slab, depth=7) == 1  # field (5, 3, 3): the depth does not count
    slab.slab, slab.receptive_field = 7, 3  # a Denoiser: its slab is the depth by default
    assert receptive_field_margin(slab) == 1


def test_rms_in_hu_and_norms_are_inverse():
    r = torch.full((1, 1, 8, 8), 10.0 / HU_PER_MU, dtype=F64)  # 10 HU at every pixel
    assert rms_hu_to_norm(10.0, 64) == pytest.approx(float(r.norm()))
    assert norm_to_rms_hu(float(r.norm()), 64) == pytest.approx(10.0)


def test_lesion_masks_follow_the_distance_from_the_centre():
    scene = uniform_lesion_scene(24, diameter_mm=9.0, pixel_mm=1.5)  # radius 3 px
    masks = scene.masks(margin=5)
    assert scene.radius_px == 3.0
    for (i, j), d in ((((12, 12), 0.0)), (((12, 14), 2.0)), (((12, 16), 4.0)),
                      (((5, 12), 7.0)), (((12, 19), 7.0)), (((2, 12), 10.0))):
        assert float(scene.distance_px()[i, j]) == d
        assert bool(masks["lesion interior"][i, j]) == (d <= 2)
        assert bool(masks["lesion edge"][i, j]) == (2 <= d <= 4)
        inside = 5 <= i < 19 and 5 <= j < 19  # not within the margin of 5 px of the border
        assert bool(masks["uniform background"][i, j]) == (d >= 7 and inside)
    assert int(masks["lesion interior"].sum()) == 13  # lattice points within radius 2
    assert not (masks["uniform background"] & masks["lesion edge"]).any()
    assert int(scene.inside(5).sum()) == 14 * 14 and not scene.inside(5)[4, 12]
    with pytest.raises(ValueError, match="leaves nothing"):
        scene.inside(12)
    with pytest.raises(ValueError, match="must exceed edge_px"):
        scene.masks(margin=5, edge_px=2.0, clear_px=2.0)
    with pytest.raises(ValueError, match="no uniform background pixels in this 24x24 ROI"):
        scene.masks(margin=9)  # the inner 6 x 6 pixels all lie within 7 px of the centre


def test_noise_slabs_hold_consecutive_realizations():
    noise = torch.arange(3.0)[:, None, None, None].expand(3, 1, 2, 2)
    slabs = noise_slabs(noise, depth=4)
    assert slabs.shape == (3, 1, 4, 2, 2)
    assert slabs[:, 0, :, 0, 0].tolist() == [[0, 1, 2, 0], [1, 2, 0, 1], [2, 0, 1, 2]]
    with pytest.raises(ValueError, match=r"\(n, 1, H, W\)"):
        noise_slabs(noise[:, 0], depth=4)


def test_energy_on_a_mask_and_share_in_the_leading_span():
    V = torch.linalg.qr(torch.randn(4, 4, dtype=F64, generator=torch.Generator().manual_seed(0))).Q
    svd = LocalSVD(V, torch.ones(4, dtype=F64), V, (2, 2), (2, 2), complete=True)
    mask = torch.tensor([[True, False], [False, True]])
    assert svd.energy_on(mask, [0, 1]) == pytest.approx(
        float((V[0, :2] ** 2 + V[3, :2] ** 2).mean()))
    assert svd.energy_on(torch.ones(2, 2, dtype=torch.bool), slice(0, 4)) == pytest.approx(1.0)
    x = torch.stack([V[:, 0] + V[:, 2], V[:, 1]]).reshape(2, 1, 2, 2)
    assert svd.input_share(x, k=1).tolist() == pytest.approx([0.5, 0.0])
    with pytest.raises(ValueError, match="the mask has 9 pixels"):
        svd.energy_on(torch.ones(3, 3, dtype=torch.bool), [0])


def test_noise_through_a_network_and_its_linear_system():
    noise = 0.01 * torch.randn(64, 1, 6, 6, dtype=F64, generator=torch.Generator().manual_seed(1))
    x = torch.zeros(1, 1, 6, 6, dtype=F64)
    everywhere = torch.ones(6, 6, dtype=torch.bool)
    half = nn.Conv2d(1, 1, 1, bias=False).double()
    nn.init.constant_(half.weight, 0.5)
    linear = noise_transfer(half, x, x, noise)
    assert linear.over(everywhere)["reduction"] == pytest.approx(0.5)
    assert linear.removed_variance(everywhere) == pytest.approx(0.75)
    assert linear.linear_disagreement(everywhere) == pytest.approx(0.0, abs=1e-12)
    assert linear.over(everywhere)["input"] == pytest.approx(
        float(noise.std(dim=0).mean()) * HU_PER_MU)
    # a ReLU linearised where every unit is on passes all the noise; the ReLU itself halves it
    relu = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.ReLU()).double()
    nn.init.constant_(relu[0].weight, 1.0)
    bent = noise_transfer(relu, x, x + 1.0, noise)
    assert bent.linear_disagreement(everywhere) > 0.3


def test_the_worst_case_against_random_controls_of_a_linear_map():
    Q = torch.linalg.qr(torch.randn(4, 4, dtype=F64, generator=torch.Generator().manual_seed(2))).Q
    A = Q @ torch.diag(torch.tensor([2.0, 1.0, 0.5, 0.25], dtype=F64)) @ Q.T

    def f(x):
        return x.flatten(1) @ A.T

    x = torch.zeros(1, 4, dtype=F64)
    textured = Q[:, 3:].T  # the least amplified direction: gain 0.25
    result = against_random(f, x, 0.1, textured, direction=Q[:, 0][None], steps=0)
    assert result.worst.gain == pytest.approx(2.0)
    assert result.textured_gain == pytest.approx(0.25) and result.textured_gain_std == 0.0
    assert result.over_textured == pytest.approx(8.0)
    assert 0.25 < result.white_gain < 2.0 and result.over_white == pytest.approx(
        2.0 / result.white_gain)


def relu_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(6, 1, 3, padding=1)).double()


def test_the_error_table_check_fails_on_a_wrong_row():
    net = relu_net()
    scene = uniform_lesion_scene(12, diameter_mm=6.0).to(F64)
    table = linearization_errors(net, scene, torch.linspace(0.001, 0.08, 4),
                                 torch.linspace(0.0, 0.04, 3), margin=1, progress=False)
    assert check_error_table(net, scene, table, 5, samples=12, margin=1) < 1e-6
    table.errors[5] += 0.5
    with pytest.raises(AssertionError, match="differ from one JVP per grid point"):
        check_error_table(net, scene, table, 5, samples=12, margin=1)
    table.errors[5] -= 0.5
    table.errors[5].view(-1)[5] = 1.0  # a seed whose one sample is another grid point
    seed = next(s for s in range(10)
                if int(torch.randperm(12, generator=torch.Generator().manual_seed(s))[0]) != 5)
    with pytest.raises(AssertionError, match="at that very point"):
        check_error_table(net, scene, table, 5, samples=1, margin=1, seed=seed)


def test_a_plane_map_puts_contrast_up_and_background_across():
    fig, ax = plt.subplots()
    values = torch.arange(6.0).reshape(2, 3)
    im = show_plane(ax, values, torch.tensor([0.01, 0.05]), torch.tensor([0.0, 0.02, 0.04]),
                    threshold=2.5, points=[(0.01, 0.0), (0.05, 0.04)], labels=["1", "2"])
    assert tuple(im.get_extent()) == pytest.approx((0.0, 0.04, 0.01, 0.05))
    assert im.origin == "lower" and len(ax.lines) == 2 and len(ax.texts) == 2
    assert ax.get_ylabel().startswith("lesion contrast")
    plt.close(fig)


def test_distances_are_measured_from_the_scene_centre():
    scene = LesionScene(torch.zeros(1, 1, 4, 6), torch.zeros(1, 1, 4, 6), (1, 2), 1.0, 2.0)
    d = scene.distance_px()
    assert d.shape == (4, 6) and float(d[1, 2]) == 0.0 and float(d[3, 2]) == 2.0
