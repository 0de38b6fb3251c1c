"""The noise power spectrum (lib.ct.noise) against cases whose answer is known, and the bootstrap
of any statistic (lib.stats.bootstrap_statistic) it uses for its intervals."""

import numpy as np
import pytest
import torch

from lib.ct.noise import (NoiseSpectra, check_dose_scaling, output_spectra, paired_noise_std,
                          scan_realizations, uniform_roi, with_margin)
from lib.ct.scanner import Scanner
from lib.stats import bootstrap, bootstrap_statistic


def _white(k=32, n=32, std=2.0, seed=0):
    return std * torch.randn(k, n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _filtered(images, kernel):
    """Circular convolution with a small kernel, and its frequency response on the grid."""
    n = images.shape[-1]
    padded = torch.zeros(n, n, dtype=torch.float64)
    padded[: kernel.shape[0], : kernel.shape[1]] = kernel
    response = torch.fft.fft2(padded)
    return torch.fft.ifft2(torch.fft.fft2(images) * response).real, response.abs() ** 2


def _ring_average(plane, pixel_mm):
    """The radial average of a (N, N) frequency-plane map, rings of width 1 / (N a)."""
    n = plane.shape[-1]
    f = np.fft.fftfreq(n, d=pixel_mm)
    ring = np.rint(np.hypot(f[:, None], f[None, :]) * n * pixel_mm).astype(int).ravel()
    return np.bincount(ring, plane.numpy().ravel()) / np.bincount(ring)


def test_parseval_the_variance_is_the_pooled_unbiased_variance():
    white = _white()
    spectra = NoiseSpectra.of(white, pixel_mm=0.5)
    noise = white - white.mean(0)
    expected = float((noise ** 2).sum(0).mean() / (len(white) - 1))
    assert spectra.variance() == pytest.approx(expected, rel=1e-12)


def test_white_noise_has_a_flat_spectrum_at_variance_times_pixel_area():
    spectra = NoiseSpectra.of(_white(k=64, std=2.0), pixel_mm=0.5)
    radial = spectra.radial()[1:17]  # rings with many pixels, up to the axis Nyquist
    assert torch.allclose(radial, torch.full_like(radial, 4.0 * 0.25), rtol=0.15)


def test_a_filter_multiplies_the_spectrum_by_its_squared_response():
    kernel = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]], dtype=torch.float64) / 16
    images, gain = _filtered(_white(k=200, std=1.0), kernel)
    measured = NoiseSpectra.of(images, pixel_mm=1.0).radial()[:17].numpy()
    expected = _ring_average(gain, 1.0)[:17]
    assert np.allclose(measured, expected, rtol=0.12, atol=1e-3)
    # and the check can fail: the unfiltered (flat) spectrum is far from |H|^2
    flat = NoiseSpectra.of(_white(k=200, std=1.0), pixel_mm=1.0).radial()[:17].numpy()
    assert not np.allclose(flat, expected, rtol=0.12, atol=1e-3)


def test_pixel_size_scales_frequency_and_spectrum_but_not_the_variance():
    white = _white()
    fine, coarse = NoiseSpectra.of(white, 0.5), NoiseSpectra.of(white, 1.0)
    assert torch.allclose(coarse.frequencies, fine.frequencies / 2)
    assert torch.allclose(coarse.radial(), 4 * fine.radial())
    assert coarse.variance() == pytest.approx(fine.variance())
    assert coarse.mean_frequency() == pytest.approx(fine.mean_frequency() / 2)


def test_smoothing_lowers_the_mean_frequency_and_changes_the_shape():
    white = _white(k=16)
    smooth, _ = _filtered(white, torch.ones(3, 3, dtype=torch.float64) / 9)
    a, b = NoiseSpectra.of(white, 1.0), NoiseSpectra.of(smooth, 1.0)
    assert b.mean_frequency() < 0.7 * a.mean_frequency()
    assert a.shape_distance(b) > 0.3
    # the same noise at three times the amplitude has the same shape and 9 times the variance
    louder = NoiseSpectra.of(3 * white, 1.0)
    assert louder.shape_distance(a) == pytest.approx(0.0, abs=1e-12)
    summary = louder.intervals(a, n_boot=200)
    assert summary["variance_ratio"].estimate == pytest.approx(9.0)
    assert summary["frequency_ratio"].estimate == pytest.approx(1.0)
    assert summary["shape_distance"].high < 1e-9
    assert b.intervals(a, n_boot=200)["frequency_ratio"].high < 0.7


def test_intervals_cover_the_truth_and_refuse_unpaired_spectra():
    white = NoiseSpectra.of(_white(k=24, std=3.0, seed=1), 1.0)
    summary = white.intervals(NoiseSpectra.of(_white(k=24, std=1.0, seed=2), 1.0))
    assert summary["std"].contains(3.0) and summary["variance_ratio"].estimate == pytest.approx(9, rel=0.05)
    assert summary["std"].low < summary["std"].estimate < summary["std"].high
    with pytest.raises(ValueError, match="do not pair"):
        white.intervals(NoiseSpectra.of(_white(k=12), 1.0))
    with pytest.raises(ValueError, match="K >= 2"):
        NoiseSpectra.of(_white(k=1), 1.0)


@pytest.fixture(scope="module")
def small_scanner():
    return Scanner(size=64, pixel_mm=3.0, n_angles=90)


def _water(scanner, diameter_mm=150.0):
    from lib.ct import MU_WATER, lesion_profile
    n = scanner.size
    return MU_WATER * lesion_profile((n, n), ((n - 1) / 2, (n - 1) / 2), diameter_mm, scanner.pixel_mm)


def test_scan_realizations_are_the_scanners_scans(small_scanner):
    water = _water(small_scanner)
    many = scan_realizations(small_scanner, water, 1e4, 3, seed=5)
    for k in range(3):
        assert torch.equal(many[k], small_scanner.scan(water, 1e4, seed=5 + k))


def test_the_normal_dose_reference_must_be_the_normal_dose_scan(small_scanner):
    water = _water(small_scanner)
    roi = (slice(24, 40), slice(24, 40))
    low = NoiseSpectra.of(scan_realizations(small_scanner, water, 1e4, 24, seed=0)[(..., *roi)], 3.0)
    normal = NoiseSpectra.of(scan_realizations(small_scanner, water, 8e4, 24, seed=100)[(..., *roi)], 3.0)
    assert check_dose_scaling(low, normal, 8.0) == pytest.approx(8.0, rel=0.15)
    with pytest.raises(ValueError, match="not the normal-dose scan"):
        check_dose_scaling(low, low, 8.0)  # the low-dose spectrum in the reference's place
    with pytest.raises(ValueError, match="not the normal-dose scan"):
        check_dose_scaling(normal, low, 8.0)


def test_paired_noise_std_recovers_the_low_dose_noise():
    gen = torch.Generator().manual_seed(0)
    low = 5.0 * torch.randn(4, 1, 64, 64, generator=gen)
    normal = 5.0 / 8 ** 0.5 * torch.randn(4, 1, 64, 64, generator=gen)
    mask = torch.ones(4, 1, 64, 64, dtype=torch.bool)
    assert paired_noise_std(low, normal, mask, 8.0) == pytest.approx(5.0, rel=0.02)
    assert paired_noise_std(low, normal, mask, 1.0) < 4.5  # the wrong dose ratio is seen


def test_uniform_roi_finds_the_uniform_square_inside_the_window():
    image = torch.rand(64, 64, generator=torch.Generator().manual_seed(0))
    image[10:30, 40:60] = 0.5
    assert uniform_roi(image, 16, (0.4, 0.6)) == (slice(10, 26), slice(40, 56))
    with pytest.raises(ValueError, match="no 24 x 24 square"):
        uniform_roi(image, 24, (0.4, 0.6))


def test_a_crop_with_the_receptive_field_margin_gives_the_whole_image_output():
    from lib.models import build, receptive_field
    net = build("chen").double()
    images = torch.rand(2, 64, 64, dtype=torch.float64) * 0.02
    roi = (slice(20, 36), slice(2, 18))
    margin = receptive_field(net)[-1] // 2
    outer, inner = with_margin(roi, margin, images.shape)
    with torch.no_grad():
        whole = net(images[:, None])[:, 0][(..., *roi)]
        cropped = net(images[(..., *outer)][:, None])[:, 0][(..., *inner)]
        short = with_margin(roi, margin - 2, images.shape)
        too_small = net(images[(..., *short[0])][:, None])[:, 0][(..., *short[1])]
    assert torch.allclose(cropped, whole, atol=1e-12)
    assert not torch.allclose(too_small, whole, atol=1e-12)


def test_output_spectra_of_an_identity_denoiser_is_the_low_dose_spectrum(small_scanner):
    slab = _water(small_scanner).expand(3, 64, 64)
    roi = (slice(24, 40), slice(24, 40))
    spectra = output_spectra(small_scanner, slab, 1e4, 8e4, {"identity": lambda x: x[:, 1]},
                             roi, 4, 4, seed=0, scale=2.0)
    assert set(spectra) == {"normal dose", "low-dose input", "identity"}
    assert torch.allclose(spectra["identity"].rings, spectra["low-dose input"].rings)
    assert spectra["normal dose"].variance() < spectra["low-dose input"].variance() / 4


def test_bootstrap_statistic_vectorised_or_not_and_bootstrap_unchanged():
    values = np.random.default_rng(0).normal(size=30)
    looped = bootstrap_statistic(lambda i: values[i].mean(), 30, n_boot=300, seed=3)
    at_once = bootstrap_statistic(lambda i: values[i].mean(-1), 30, n_boot=300, seed=3,
                                  vectorised=True)
    assert looped == at_once == bootstrap(values, n_boot=300, seed=3)
    assert bootstrap_statistic(lambda i: np.median(values[i]), 30).estimate == np.median(values)
    with pytest.raises(ValueError, match="at least 2 items"):
        bootstrap_statistic(np.mean, 1)


def test_texture_verdict_by_where_the_interval_lies():
    from lib.ct.noise import texture_verdict
    from lib.stats import Interval
    assert texture_verdict(Interval(1.0, 0.95, 1.05)) == "similar"
    assert texture_verdict(Interval(0.6, 0.5, 0.7)) == "coarser"
    assert texture_verdict(Interval(1.3, 1.2, 1.4)) == "finer"
    assert texture_verdict(Interval(0.9, 0.8, 1.0)) == "undecided"
    assert texture_verdict(Interval(1.0, 0.85, 1.05), tolerance=0.2) == "similar"
