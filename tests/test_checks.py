"""Every check of a chapter's claim passes on a sound input and fails on a broken one."""

import copy

import pytest
import torch
from torch import nn

from lib.ct.scenes import uniform_lesion_scene
from lib.instability import (Erasure, check_no_false_negative, check_s1_attained,
                             check_worst_case, erase_lesion, random_response, worst_case)
from lib.linearity import (Cover, ErrorTable, cover_lower_bound, distance_to_boundary,
                           enumerate_regions, greedy_cover, linearization_errors, local_svd,
                           sample_patterns)
from lib.linearity.checks import (check_attenuated_finer, check_cover, check_linear_between,
                                  check_sampling_matches_walk, check_svd_matches_jvp)

F64 = torch.float64


def relu_net(seed=0, width=6):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(width, 1, 3, padding=1)).double().requires_grad_(False)


def line(size=8):
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(1, 1, size, size, dtype=F64, generator=g)
    d = torch.randn(1, 1, size, size, dtype=F64, generator=g)
    return x0, d


def test_the_sampler_agrees_with_the_walk_and_a_mutated_sampler_does_not():
    net = relu_net()
    x0, d = line()
    walk = enumerate_regions(net, x0, d, 0.0, 1.0, chunks=3, progress=False)
    ts = torch.linspace(0.0, 1.0, 400, dtype=F64)
    sampled = sample_patterns(net, x0, d, ts, progress=False)
    assert walk.n_regions > 10 and check_sampling_matches_walk(walk, sampled) >= 395
    # the sampler run on a mutated network (one bias moved) or along another direction
    mutated = copy.deepcopy(net)
    mutated[0].bias[0] += 0.05
    with pytest.raises(AssertionError, match="disagree"):
        check_sampling_matches_walk(walk, sample_patterns(mutated, x0, d, ts, progress=False))
    with pytest.raises(AssertionError, match="disagree"):
        check_sampling_matches_walk(walk, sample_patterns(net, x0, 1.01 * d, ts, progress=False))


def test_linear_inside_a_region_and_not_across_a_breakpoint():
    net = relu_net()
    x0, d = line()
    walk = enumerate_regions(net, x0, d, 0.0, 1.0, progress=False)
    bounds = walk.region_bounds()
    k = int(bounds.diff(dim=1).argmax())
    lo, hi = bounds[k].tolist()
    assert check_linear_between(net, x0, d, lo, hi) < 1e-12
    with pytest.raises(AssertionError, match="not one linear region"):
        check_linear_between(net, x0, d, lo, min(hi + 3 * (hi - lo), 1.0))


def cover_case():
    net = relu_net(width=4).float()
    scene = uniform_lesion_scene(12, diameter_mm=6.0)
    table = linearization_errors(net, scene, torch.linspace(0.001, 0.08, 5),
                                 torch.linspace(0.0, 0.04, 4), margin=1, progress=False)
    return net, scene, table


def test_the_cover_is_recomputed_and_fails_for_a_mutated_network_or_threshold():
    net, scene, table = cover_case()
    threshold = 0.5 * float(table.errors.flatten(1).amax(dim=1).min())  # one point is not enough
    cover = greedy_cover(table, threshold)
    assert len(cover.points) > 1
    errors = check_cover(net, scene, cover, margin=1)
    assert errors.shape == (5, 4) and float(errors.max()) <= threshold + 1e-2
    with pytest.raises(AssertionError, match="incomplete"):
        check_cover(net, scene, Cover(table, cover.points[:1], threshold), margin=1)
    with pytest.raises(AssertionError, match="incomplete"):
        check_cover(net, scene, Cover(table, cover.points, threshold / 100), margin=1)
    mutated = copy.deepcopy(net)
    mutated[2].weight.mul_(1.5)
    with pytest.raises(AssertionError, match="does not belong"):
        check_cover(mutated, scene, cover, margin=1)


def test_greedy_count_can_rise_with_the_threshold_but_the_lower_bound_cannot():
    # six grid points in a row. At 2 %, candidate 1 serves 0-2 and candidate 4 serves 3-5: two
    # points. At 4 %, candidate 2 also serves 1-4, the largest set, so greedy takes it first and
    # then needs two more for 0 and 5: three points for a looser threshold.
    e = torch.full((6, 6), 50.0, dtype=F64)
    e.fill_diagonal_(0.0)
    e[1, :3] = 1.0
    e[4, 3:] = 1.0
    e[2, 1:5] = 3.0
    e[2, 2] = 0.0
    table = ErrorTable(torch.arange(1, dtype=F64), torch.arange(6, dtype=F64),
                       e.reshape(6, 1, 6), torch.zeros(6, 1, 1, 1), 6, 12)
    counts = [len(greedy_cover(table, th).points) for th in (2.0, 4.0, 60.0)]
    bounds = [cover_lower_bound(table, th) for th in (2.0, 4.0, 60.0)]
    assert counts == [2, 3, 1] and bounds == [2, 2, 1]


def svd_case():
    net = relu_net()
    x0 = torch.rand(1, 1, 8, 8, dtype=F64, generator=torch.Generator().manual_seed(3))
    return net, x0, local_svd(net, x0, field=7)


def test_the_svd_matches_the_jvp_and_fails_for_another_network_or_point():
    net, x0, svd = svd_case()
    n = torch.randn(4, 1, 8, 8, dtype=F64)
    assert check_svd_matches_jvp(svd, net, x0, n) < 1e-10
    with pytest.raises(AssertionError, match="not the Jacobian"):
        check_svd_matches_jvp(svd, relu_net(seed=1), x0, n)
    with pytest.raises(AssertionError, match="not the Jacobian"):
        check_svd_matches_jvp(svd, net, x0 + 0.5 * torch.randn_like(x0), n)


def test_both_readings_of_equation_7():
    _, _, svd = svd_case()
    n = torch.randn(3, 1, 8, 8, dtype=F64)
    kept, removed = svd.preserved(n, 0.1, weighted=False), svd.attenuated(n, 0.1, weighted=False)
    assert torch.allclose(kept + removed, n, atol=1e-12)          # projections add up to n
    assert torch.allclose((kept * removed).flatten(1).sum(1), torch.zeros(3, dtype=F64),
                          atol=1e-12)                             # and are orthogonal
    printed = svd.attenuated(n, 0.1)
    assert float(printed.flatten(1).norm(dim=1).div(n.flatten(1).norm(dim=1)).max()) <= 0.1


def test_a_smoothing_filter_attenuates_the_finer_part_and_a_sharpening_one_does_not():
    def filter_net(kernel):
        conv = nn.Conv2d(1, 1, 3, padding=1, bias=False).double().requires_grad_(False)
        conv.weight[:] = kernel
        return nn.Sequential(conv)

    blur = torch.full((3, 3), 1 / 9, dtype=F64)
    sharpen = -blur
    sharpen[1, 1] += 1.0
    noise = torch.randn(8, 1, 12, 12, dtype=F64, generator=torch.Generator().manual_seed(0))
    x0 = torch.zeros(1, 1, 12, 12, dtype=F64)
    for kernel, passes in ((blur, True), (sharpen, False)):
        svd = local_svd(filter_net(kernel), x0, field=3)
        parts = [svd.preserved(noise, 0.3, weighted=False),
                 svd.attenuated(noise, 0.3, weighted=False)]
        if passes:
            f_p, f_a = check_attenuated_finer(*parts, pixel_mm=1.0)
            assert 0 < f_p < f_a
        else:
            with pytest.raises(AssertionError, match="not the finer texture"):
                check_attenuated_finer(*parts, pixel_mm=1.0)


def linear_map():
    torch.manual_seed(1)
    A = torch.randn(6, 6, dtype=F64)
    A = A @ torch.diag(torch.tensor([3.0, 2.9, 1.0, 0.5, 0.2, 0.1], dtype=F64)) @ \
        torch.linalg.qr(A).Q.T

    def f(x):
        return x.flatten(1) @ A.T
    return f, A


def test_the_worst_case_reaches_s1_and_a_wrong_direction_or_a_weak_search_does_not():
    f, A = linear_map()
    x = torch.randn(1, 6, dtype=F64)
    s1 = float(torch.linalg.svdvals(A)[0])
    v1 = torch.linalg.svd(A).Vh[0][None]
    found = worst_case(f, x, 0.1, v1, steps=2)
    assert found.source == "direction" and found.gain == pytest.approx(s1, rel=1e-12)
    check_worst_case(found.gain, s1)
    weak = worst_case(f, x, 0.1, torch.linalg.svd(A).Vh[-1][None], steps=0)  # no search, v_6
    with pytest.raises(AssertionError, match="falls short"):
        check_worst_case(weak.gain, s1)
    rand = random_response(f, x, 0.1, directions=torch.randn(5, 6, dtype=F64))
    assert float(rand.max()) <= 0.1 * s1 + 1e-12
    with pytest.raises(ValueError, match="do not match"):
        random_response(f, x, 0.1, directions=torch.randn(5, 7, dtype=F64))


def test_the_distance_to_the_boundary_is_the_walks_first_breakpoint():
    net = relu_net()
    x0, d = line()
    ahead = enumerate_regions(net, x0, d, 0.0, 1.0, progress=False).breakpoints[0]
    behind = enumerate_regions(net, x0, -d, 0.0, 1.0, progress=False).breakpoints[0]
    assert distance_to_boundary(net, x0, d) == pytest.approx(float(ahead), rel=1e-12)
    assert distance_to_boundary(net, x0, -d) == pytest.approx(float(behind), rel=1e-12)
    assert distance_to_boundary(net[:1], x0, d) == float("inf")  # an affine network
    with pytest.raises(ValueError, match="batch size 1"):
        distance_to_boundary(net, x0, d[..., :4])


def test_s1_is_attained_inside_the_region_and_a_wrong_pair_or_network_is_caught():
    net = relu_net()
    x0, _ = line()
    J = torch.autograd.functional.jacobian(lambda z: net(z.view_as(x0)).flatten(), x0.flatten())
    svd = torch.linalg.svd(J)
    s1, v1, v_last = float(svd.S[0]), svd.Vh[0].view_as(x0), svd.Vh[-1].view_as(x0)
    t_plus, t_minus = check_s1_attained(net, x0, s1, v1)
    assert 0 < t_plus < float("inf") and 0 < t_minus < float("inf")
    with pytest.raises(AssertionError, match="do not belong"):
        check_s1_attained(net, x0, 1.01 * s1, v1)
    with pytest.raises(AssertionError, match="do not belong"):
        check_s1_attained(net, x0, s1, v_last)
    mutated = copy.deepcopy(net)
    mutated[2].weight *= 1.01
    with pytest.raises(AssertionError, match="do not belong"):
        check_s1_attained(mutated, x0, s1, v1)


def test_erasing_a_lesion_needs_about_its_own_norm_through_the_identity():
    profile = torch.zeros(1, 1, 8, 8, dtype=F64)
    profile[..., 3:5, 3:5] = 1.0
    x = 0.02 * profile + 0.01

    def identity(t):
        return t

    small = erase_lesion(identity, x, profile, 0.02, max_norm=0.25 * 0.02 * 2, steps=60)
    full = erase_lesion(identity, x, profile, 0.02, max_norm=1.05 * 0.02 * 2, steps=60)
    # ||0.02 profile|| = 0.04: a quarter of it can remove a quarter of the lesion, all of it all
    assert small.lesion_left == pytest.approx(0.75, abs=0.02)
    assert small.kept == pytest.approx(1.0)  # the identity keeps all of the lesion's contrast
    assert full.lesion_left == pytest.approx(0.0, abs=0.02)
    with pytest.raises(ValueError, match="no lesion"):
        erase_lesion(lambda t: 0 * t, x, profile, 0.02, max_norm=0.01)
    with pytest.raises(ValueError, match="must be positive"):
        erase_lesion(identity, x, profile, -0.02, max_norm=0.01)


def test_a_network_with_a_trigger_pixel_has_a_false_negative_and_the_check_sees_it():
    profile = torch.zeros(1, 1, 8, 8, dtype=F64)
    profile[..., 3:5, 3:5] = 1.0
    x = 0.02 * profile
    lesion_norm = float((0.02 * profile).norm())

    def identity(t):
        return t

    def trigger(t):  # a change at pixel (0, 0) subtracts 50 times itself from the lesion
        return t - 50 * t[..., :1, :1] * profile

    sound = erase_lesion(identity, x, profile, 0.02, max_norm=0.1 * lesion_norm, steps=40)
    check_no_false_negative(sound, lesion_norm)
    fragile = erase_lesion(trigger, x, profile, 0.02, max_norm=0.1 * lesion_norm, steps=40)
    assert fragile.lesion_left < 0.2
    with pytest.raises(AssertionError, match="false-negative"):
        check_no_false_negative(fragile, lesion_norm)
    whole = Erasure(-0.6 * x, input_norm=0.6 * lesion_norm, lesion_left=0.4, objective=[],
                    kept=1.0)
    with pytest.raises(ValueError, match="cannot fail"):  # at 0.6 of the norm all may go
        check_no_false_negative(whole, lesion_norm)
