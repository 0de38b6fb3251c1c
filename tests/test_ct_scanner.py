"""The scanner: units, FBP accuracy, adjointness, noise law, autograd, bad input."""

import math

import pytest
import torch

from lib.ct import MU_WATER, Scanner, lesion_profile, thorax_phantom


@pytest.fixture(scope="module")
def scanner():
    return Scanner(size=128, pixel_mm=3.0, n_angles=180)


def disk(radius_mm, value, size=128, pixel_mm=3.0):
    return value * lesion_profile((size, size), ((size - 1) / 2, (size - 1) / 2), 2 * radius_mm, pixel_mm)


def test_line_integrals_are_in_the_right_units(scanner):
    # through the centre of a disk of radius R the line integral is 2 R mu (dimensionless)
    sino = scanner.project(disk(120.0, MU_WATER))
    assert sino.shape == (180, scanner.n_detectors)
    assert float(sino.max()) == pytest.approx(2 * 120.0 * MU_WATER, rel=0.01)


def test_noiseless_fbp_recovers_the_image(scanner):
    # tolerances: 1% of water inside a disk; over a whole thorax on 3 mm pixels, RMSE below
    # 1e-3 mm^-1 (5% of water, the error sits at edges) and a median error below 2% of water
    recon = scanner.fbp(scanner.project(disk(120.0, MU_WATER)))
    center = recon[44:84, 44:84]
    assert float(center.mean()) == pytest.approx(MU_WATER, rel=0.01)
    mu = thorax_phantom(128, 3.0, seed=0)
    error = scanner.fbp(scanner.project(mu)) - mu
    assert float(error.pow(2).mean().sqrt()) < 1e-3
    assert float(error.abs().median()) < 0.02 * MU_WATER


def test_projector_and_backprojector_are_adjoint(scanner):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(128, 128, generator=g, dtype=torch.float32)
    y = torch.rand(*scanner.sinogram_shape, generator=g, dtype=torch.float32)
    lhs = (scanner.project(x).double() * y.double()).sum()
    rhs = (x.double() * scanner.backproject(y).double()).sum()
    assert float(lhs) == pytest.approx(float(rhs), rel=1e-5)


def test_gradients_flow_through_projection_and_fbp(scanner):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 128, 128, generator=g, requires_grad=True)
    y = torch.rand(2, *scanner.sinogram_shape, generator=g)
    (scanner.project(x) * y).sum().backward()
    assert torch.allclose(x.grad, scanner.backproject(y), rtol=1e-5, atol=1e-5)
    # FBP is linear: its gradient along any direction is FBP of that direction
    s = torch.rand(*scanner.sinogram_shape, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.rand(128, 128, generator=g, dtype=torch.float64)
    (scanner.fbp(s) * w).sum().backward()
    d = torch.rand(*scanner.sinogram_shape, generator=g, dtype=torch.float64)
    assert float((s.grad * d).sum()) == pytest.approx(float((scanner.fbp(d) * w).sum()), rel=1e-4)


def test_a_window_reconstructs_those_pixels_of_the_whole_image(scanner):
    mu = thorax_phantom(128, 3.0, seed=2)
    window = (slice(30, 70), slice(50, 98))
    full = scanner.scan(mu, 1.25e4, seed=4)
    part = scanner.scan(mu, 1.25e4, seed=4, window=window)
    assert part.shape == (40, 48)
    scale = float(full.abs().max())  # ASTRA works in float32: equal to 1e-4 of the largest value
    assert torch.allclose(part, full[window], rtol=0, atol=1e-4 * scale)
    shifted = (slice(31, 71), slice(50, 98))  # one row off: the check must notice
    assert not torch.allclose(part, full[shifted], rtol=0, atol=1e-2 * scale)


def test_a_windowed_backprojection_has_the_windowed_projection_as_adjoint(scanner):
    g = torch.Generator().manual_seed(3)
    window = (slice(10, 40), slice(64, 128))
    s = torch.rand(*scanner.sinogram_shape, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.rand(30, 64, generator=g, dtype=torch.float64)
    (scanner.backproject(s, window) * w).sum().backward()
    embedded = torch.zeros(128, 128, dtype=torch.float64)
    embedded[window] = w
    projected = scanner.project(embedded)  # the whole grid's projector, the window's pixels only
    assert torch.allclose(s.grad, projected, rtol=0, atol=1e-3 * float(projected.abs().max()))
    inner = (scanner.backproject(s.detach(), window) * w).sum()
    assert float(inner) == pytest.approx(float((s.detach() * projected).sum()), rel=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_window_on_the_gpu_matches_the_whole_image():
    scanner = Scanner(size=128, pixel_mm=3.0, n_angles=180)
    sinogram = scanner.project(thorax_phantom(128, 3.0, seed=2)).cuda()
    window = (slice(30, 70), slice(50, 98))
    full, part = scanner.fbp(sinogram), scanner.fbp(sinogram, window=window)
    assert part.is_cuda and part.shape == (40, 48)
    assert torch.allclose(part, full[window], rtol=0, atol=1e-4 * float(full.abs().max()))


def test_windowed_projectors_do_not_pile_up():
    scanner = Scanner(size=64, pixel_mm=6.0, n_angles=30)
    sinogram = torch.zeros(*scanner.sinogram_shape)
    for start in range(20):
        scanner.fbp(sinogram, window=(slice(start, start + 8), slice(0, 8)))
    assert len(scanner._projectors) <= 9  # the whole grid's (if any) and the last eight windows


@pytest.mark.parametrize("window", [(slice(0, 10),), (slice(0, 10), slice(5, 5)),
                                    (slice(0, 10), slice(120, 130)), (slice(0, 10, 2), slice(0, 8)),
                                    (slice(None, 10), slice(0, 8)), [slice(0, 4), slice(0, 4)]])
def test_bad_windows_are_refused(scanner, window):
    with pytest.raises(ValueError, match="window must be"):
        scanner.fbp(torch.zeros(*scanner.sinogram_shape), window=window)


def test_batches_match_single_images(scanner):
    mu = torch.stack([thorax_phantom(128, 3.0, seed=s) for s in (0, 1)])
    batch = scanner.scan(mu, 1e5, seed=3)
    assert batch.shape == (2, 128, 128)
    assert torch.allclose(scanner.fbp(scanner.project(mu))[1],
                          scanner.fbp(scanner.project(mu[1])), atol=1e-7)


def test_scans_are_deterministic_in_the_seed(scanner):
    mu = thorax_phantom(128, 3.0, seed=0)
    assert torch.equal(scanner.scan(mu, 1e4, seed=5), scanner.scan(mu, 1e4, seed=5))
    assert not torch.equal(scanner.scan(mu, 1e4, seed=5), scanner.scan(mu, 1e4, seed=6))


@pytest.mark.parametrize("filter", ["ramp", "hann"])
def test_noise_std_scales_as_one_over_sqrt_dose(scanner, filter):
    water = disk(150.0, MU_WATER)
    clean = scanner.fbp(scanner.project(water), filter)
    roi = (slice(54, 74), slice(54, 74))
    std = {I0: torch.stack([(scanner.scan(water, I0, seed=s, filter=filter) - clean)[roi]
                            for s in range(4)]).std().item() for I0 in (1.25e4, 1e5)}
    # 8x the dose: sqrt(8) = 2.83x less noise; 10% tolerance for 4 x 400 correlated pixels
    assert std[1.25e4] / std[1e5] == pytest.approx(math.sqrt(8), rel=0.10)
    assert std[1e5] < 0.1 * MU_WATER


def test_electronic_noise_and_safe_log(scanner):
    sino = torch.full(scanner.sinogram_shape, 20.0)  # almost nothing gets through
    counts = scanner.counts(sino, 1e4, seed=0, electronic_noise=5.0)
    assert (counts <= 0).any()
    p = scanner.line_integrals(counts, 1e4)
    assert torch.isfinite(p).all() and float(p.max()) == pytest.approx(math.log(1e4))


def test_bad_input_is_explained(scanner):
    with pytest.raises(ValueError, match="128x128"):
        scanner.project(torch.zeros(64, 64))
    with pytest.raises(ValueError, match="sinograms of shape"):
        scanner.fbp(torch.zeros(10, 10))
    with pytest.raises(ValueError, match="unknown FBP filter"):
        Scanner(size=64, filter="shepp")
    with pytest.raises(ValueError, match="I0"):
        scanner.scan(torch.zeros(128, 128), I0=0)
    with pytest.raises(TypeError, match="torch.Tensor"):
        scanner.project([[0.0]])
