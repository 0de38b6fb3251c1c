"""The analysis chapters 1, 2 and 4 call: feature maps, the noise law, lesion checks, planar
regions, region walks and Jacobian rows; each shown failing on a broken input."""

import math
import warnings

import matplotlib

matplotlib.use("agg")

import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn

from lib import ct
from lib.ct.datasets import REAL_SLICES, read_real_slice
from lib.ct.dose import dose_exponent, image_noise, noise_against_dose, uniform_region
from lib.ct.lesion import lesion_area_mm2, lesion_probe_pixels
from lib.feature_maps import EXAMPLE_KERNELS, feature_map, shift_sensitivity
from lib.linearity import enumerate_regions
from lib.linearity.checks import check_planar_regions, check_sampling_matches_walk
from lib.linearity.jacobian import compare_rows
from lib.linearity.planar import PlanarRegion, planar_regions, region_index
from lib.linearity.regions import RegionWalk, sample_and_walk
from lib.plotting import show_feature_map, show_polygons
from lib.tables import markdown_table

F64 = torch.float64


# chapter 1: feature maps and shifts

def test_feature_map_is_an_unflipped_cross_correlation():
    image = torch.rand(6, 7, generator=torch.Generator().manual_seed(0))
    kernel = torch.arange(9.0).reshape(3, 3)  # no symmetry: a flip would show
    padded = torch.nn.functional.pad(image, (1, 1, 1, 1))
    by_hand = torch.tensor([[float((padded[i:i + 3, j:j + 3] * kernel).sum()) for j in range(7)]
                            for i in range(6)])
    assert torch.allclose(feature_map(image, kernel), by_hand, atol=1e-5)
    assert not torch.allclose(feature_map(image, kernel.flip(0, 1)), by_hand, atol=1e-3)
    assert feature_map(image, kernel, pool=2).shape == (3, 3)
    with pytest.raises(ValueError, match="odd side"):
        feature_map(image, torch.ones(2, 2))


def test_shift_sensitivity_is_zero_for_a_shift_invariant_image_and_not_otherwise():
    stripes = torch.tensor([[1.0, 0.0] * 8] * 16)  # period 2 across: a shift by 2 changes nothing
    kernel = EXAMPLE_KERNELS["vertical edge"]
    assert shift_sensitivity(stripes, kernel, [1, 2], shift=2) == pytest.approx([0.0, 0.0], abs=1e-6)
    changed = shift_sensitivity(stripes, kernel, [1], shift=1)[0]
    before, after = feature_map(stripes, kernel), feature_map(torch.roll(stripes, 1, 1), kernel)
    assert changed == pytest.approx(float((after - before).norm() / before.norm()))
    assert changed > 1.0


def test_planar_regions_pass_their_check_and_a_broken_region_fails_it():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 6), nn.ReLU(), nn.Linear(6, 6), nn.ReLU(),
                        nn.Linear(6, 1)).double().requires_grad_(False)
    box = (-2.0, 2.0, -2.0, 2.0)
    regions = planar_regions(net, box)
    points = torch.rand(200, 2, dtype=F64) * 4 - 2
    measured = check_planar_regions(net, regions, box, points)
    assert measured["area"] == pytest.approx(16.0) and measured["output_gap"] < 1e-12
    owner = region_index(regions, points)
    assert (owner >= 0).all()
    assert region_index(regions, torch.tensor([[3.0, 0.0]])).tolist() == [-1]
    wrong = list(regions)
    k = int(owner[0])
    wrong[k] = PlanarRegion(regions[k].vertices, regions[k].pattern, regions[k].A + 1e-6,
                            regions[k].c)
    with pytest.raises(AssertionError, match="not the network's"):
        check_planar_regions(net, wrong, box, points)
    with pytest.raises(AssertionError, match="lie in no region"):
        check_planar_regions(net, [r for i, r in enumerate(regions) if i != k], box, points)


def test_feature_map_and_polygon_figures():
    fig, axes = plt.subplots(1, 3)
    im = show_feature_map(axes[0], torch.tensor([[-2.0, 1.0], [0.5, 2.0]]), quantile=1.0)
    assert im.get_clim() == (-2.0, 2.0)
    assert show_feature_map(axes[1], torch.tensor([[0.0, 4.0]]), quantile=1.0).get_clim() == (0.0, 4.0)
    square = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    shade = show_polygons(axes[2], [square, square + 1], values=[0.0, 1.0], box=(0, 2, 0, 2))
    assert len(shade.get_paths()) == 2 and list(shade.get_array()) == [0.0, 1.0]
    plt.close(fig)


# chapter 2: the noise law, lesions, real slices

def test_noise_falls_as_one_over_root_dose_on_a_water_disk():
    scanner = ct.Scanner(size=64, pixel_mm=3.0, n_angles=90)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    truth = ((yy - 31.5) ** 2 + (xx - 31.5) ** 2 < 24 ** 2).float() * ct.MU_WATER
    region = uniform_region(truth, ct.MU_WATER, erode_px=4)
    doses = [1e4, 4e4, 1.6e5]
    noise = noise_against_dose(scanner, truth, doses, realizations=3, region=region, seed=1)
    assert noise[0] / noise[1] == pytest.approx(2.0, rel=0.15)
    assert dose_exponent(doses, noise) == pytest.approx(-0.5, abs=0.06)
    # the same measurement without the noise: zero; and a law that is not 1/sqrt is not -1/2
    assert image_noise(truth, truth, region) == 0.0
    assert dose_exponent(doses, [1.0, 0.25, 0.0625]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="fewer than 2 pixels"):
        noise_against_dose(scanner, truth, doses, 1, torch.zeros_like(region))


def test_a_uniform_region_excludes_texture_and_edges():
    truth = torch.zeros(20, 20)
    truth[2:18, 2:18] = 1.0
    truth[10, 10] = 1.5  # one textured pixel
    region = uniform_region(truth, 1.0, erode_px=1)
    assert not region[10, 10] and not region[9, 10] and not region[2, 2] and region[5, 5]
    with pytest.raises(ValueError, match="2-D"):
        uniform_region(truth[None], 1.0)


def test_lesion_area_is_the_disk_area_and_a_wrong_contrast_shows():
    mu = torch.zeros(96, 96)
    with_lesion = ct.insert_lesion(mu, (48, 48), diameter_mm=9.0, contrast=0.007, pixel_mm=0.5)
    disk = math.pi * 4.5 ** 2
    assert lesion_area_mm2(with_lesion, mu, 0.007, 0.5) == pytest.approx(disk, rel=0.01)
    assert lesion_area_mm2(with_lesion, mu, 0.014, 0.5) == pytest.approx(disk / 2, rel=0.01)
    with pytest.raises(ValueError, match="non-zero"):
        lesion_area_mm2(with_lesion, mu, 0.0, 0.5)


def test_probe_pixels_scale_with_the_lesion_radius_in_pixels():
    pixels = lesion_probe_pixels((1, 20, 20), diameter_mm=9.0, pixel_mm=0.75)  # a slab's center
    assert pixels == {"center": (20, 20), "edge": (20, 26), "background": (20, 32)}


def test_real_slices_are_read_without_the_uid_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        slices = {name: read_real_slice(name) for name in REAL_SLICES}
    assert all(mu.shape == (512, 512) for mu, _ in slices.values())
    assert math.isnan(slices["abdomen"][1][0])


def test_markdown_table_and_its_refusal():
    table = markdown_table(["a", "b"], [[1, 2]], caption="note").data
    assert table == "note\n\n| a | b |\n|---|---|\n| 1 | 2 |"
    with pytest.raises(ValueError, match="has 1 cells"):
        markdown_table(["a", "b"], [[1]])


# chapter 4: region walks and Jacobian rows

def test_region_lookup_widths_and_midpoints():
    walk = RegionWalk(0.0, 1.0, torch.tensor([0.25, 0.5], dtype=F64), torch.zeros(3),
                      torch.zeros(3), torch.zeros(3, dtype=torch.int64), 3)
    assert walk.widths().tolist() == [0.25, 0.25, 0.5]
    assert walk.midpoints().tolist() == [0.125, 0.375, 0.75]
    assert [walk.region_at(t) for t in (0.0, 0.25, 0.3, 1.0)] == [0, 1, 1, 2]
    with pytest.raises(ValueError, match="outside"):
        walk.region_at(1.5)


def test_a_window_sampled_and_walked_agrees_and_a_mutated_sample_does_not():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 4),
                        nn.Unflatten(1, (1, 2, 2))).double()
    x0, d = torch.randn(1, 1, 2, 2, dtype=F64), torch.randn(1, 1, 2, 2, dtype=F64)
    sampled, walk = sample_and_walk(net, x0, d, 0.0, 2.0, 1e-3)
    assert walk.n_regions > 1 and len(sampled.ts) == 2000
    assert check_sampling_matches_walk(walk, sampled) > 1900
    assert walk.n_regions == enumerate_regions(net, x0, d, 0.0, 2.0, progress=False).n_regions
    sampled.hashes[-1] = sampled.hashes[0] + 1
    with pytest.raises(AssertionError, match="disagree"):
        check_sampling_matches_walk(walk, sampled)


def test_compare_rows():
    row = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
    cosines, change = compare_rows([row, row, 3 * row])
    assert cosines == pytest.approx([1.0, 1.0]) and change == pytest.approx(4.0)
    cosines, _ = compare_rows([row, -row])
    assert cosines == pytest.approx([-1.0])
    with pytest.raises(ValueError, match="two or more"):
        compare_rows([row])
