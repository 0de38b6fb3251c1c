"""Units, phantom and lesions."""

import math

import numpy as np
import pytest
import torch

from lib.ct import (MU_WATER, TISSUE, hu_to_mu, insert_lesion, lesion_profile, lung_lesion_site,
                    mu_to_hu, thorax_phantom, thorax_slab)


def test_units_water_and_air():
    assert MU_WATER == pytest.approx(0.0193, abs=5e-4)  # about 70 keV
    assert hu_to_mu(0.0) == pytest.approx(MU_WATER)
    assert hu_to_mu(-1000.0) == 0.0
    assert hu_to_mu(-3024.0) == 0.0  # padding values below air are clipped
    hu = torch.linspace(-900, 1500, 7)
    assert torch.allclose(mu_to_hu(hu_to_mu(hu)), hu, atol=1e-3)


def test_tissue_values_are_physical():
    assert 0.002 <= TISSUE["lung"] <= 0.004
    assert 0.016 <= TISSUE["fat"] <= 0.018
    assert 0.019 <= TISSUE["muscle"] <= 0.021
    assert 0.03 <= TISSUE["cortical_bone"] <= 0.05


def test_phantom_shape_values_and_anatomy():
    mu = thorax_phantom(128, 3.0, seed=3)
    assert mu.shape == (128, 128) and mu.dtype == torch.float32
    assert float(mu.min()) >= 0 and float(mu.max()) <= 0.05
    body = mu > 0.001
    lung = (mu > 0.001) & (mu < 0.008)
    bone = mu > 0.028
    assert 0.2 < body.float().mean() < 0.8       # the body fills the field of view, with air around
    assert 0.15 < lung.sum() / body.sum() < 0.6  # two lungs
    assert bone.sum() > 20                        # spine, ribs and sternum
    assert float(mu[0, 0]) == 0.0                 # air in the corner


def test_phantom_is_deterministic_and_varies_by_seed():
    a, b, c = thorax_phantom(96, 4.0, 1), thorax_phantom(96, 4.0, 1), thorax_phantom(96, 4.0, 2)
    assert torch.equal(a, b)
    assert (a - c).abs().mean() > 1e-3


def test_slab_is_continuous_along_z():
    slab = thorax_slab(9, 128, 3.0, slice_mm=1.5, seed=0)
    assert slab.shape == (9, 128, 128)
    step = [(slab[k + 1] - slab[k]).abs().mean().item() for k in range(8)]
    far = (slab[8] - slab[0]).abs().mean().item()
    assert max(step) < far  # neighbours are more alike than the ends of the slab
    assert torch.allclose(slab[4], thorax_phantom(128, 3.0, seed=0, z_mm=0.0))


def test_phantom_texture_equals_its_plane_wave_sum():
    """The separable evaluation of the lung texture is the sum of cosines it stands for."""
    from lib.ct.phantom import _Thorax
    thorax = _Thorax(7)
    coords = (np.arange(40) - 19.5) * 2.5
    y, x = np.meshgrid(coords, coords, indexing="ij")
    k, phi = thorax.wave_k, thorax.wave_phase
    direct = np.cos(k[:, 0, None, None] * x + k[:, 1, None, None] * y + k[:, 2, None, None] * 3.0
                    + phi[:, None, None]).sum(0) / np.sqrt(len(phi) / 2)
    np.testing.assert_allclose(thorax._texture(x, y, 3.0, 1.0), direct, atol=1e-12)
    assert not np.allclose(thorax._texture(x, y.T, 3.0, 1.0), direct, atol=1e-3)  # axes matter


def test_phantom_rejects_impossible_grids():
    with pytest.raises(ValueError, match="field of view"):
        thorax_phantom(64, 1.0)
    with pytest.raises(ValueError, match="n_slices"):
        thorax_slab(0, 128, 3.0)


def test_disk_and_sphere_have_the_right_size():
    disk = lesion_profile((64, 64), (31.3, 30.8), diameter_mm=9.0, pixel_mm=0.5)
    assert disk.sum() * 0.25 == pytest.approx(math.pi * 4.5 ** 2, rel=0.01)
    edge = disk[(disk > 0) & (disk < 1)]
    assert len(edge) > 20  # anti-aliased edge pixels
    sphere = lesion_profile((24, 40, 40), (12, 20, 20), diameter_mm=9.0, pixel_mm=(1.0, 0.5, 0.5))
    assert sphere.sum() * 0.25 == pytest.approx(4 / 3 * math.pi * 4.5 ** 3, rel=0.01)


def test_insert_lesion_adds_contrast_and_keeps_the_input():
    mu = thorax_phantom(128, 3.0, seed=0)
    site = lung_lesion_site(mu, 9.0, 3.0, seed=0)
    before = mu.clone()
    out = insert_lesion(mu, site, 9.0, 0.007, 3.0)
    assert torch.equal(mu, before)
    profile = lesion_profile(mu.shape, site, 9.0, 3.0)
    assert torch.allclose(out - mu, 0.007 * profile, atol=1e-7)
    assert float(mu[site]) < 0.008  # the site is in lung
    assert float(out[site]) == pytest.approx(float(mu[site]) + 0.007, abs=1e-6)


def test_lung_site_fits_the_whole_lesion():
    mu = thorax_phantom(256, 1.5, seed=4)
    for seed in range(3):
        site = lung_lesion_site(mu, 9.0, 1.5, seed=seed, margin_mm=2.0)
        footprint = lesion_profile(mu.shape, site, 13.0, 1.5) > 0
        assert (mu[footprint] < 0.008).float().mean() > 0.9  # vessels may cross, body may not


def test_lesion_bad_input():
    with pytest.raises(ValueError, match="one entry per axis"):
        insert_lesion(torch.zeros(8, 8), (1, 2, 3), 3.0, 0.01, 1.0)
    with pytest.raises(ValueError, match="positive"):
        lesion_profile((8, 8), (4, 4), 0.0, 1.0)
    with pytest.raises(ValueError, match="no place in lung"):
        lung_lesion_site(torch.full((64, 64), MU_WATER), 9.0, 1.0)
    with pytest.raises(ValueError, match="outside the image"):
        lesion_profile((8, 8), (100, 100), 3.0, 1.0)


def test_noise_power_spectrum_integrates_to_the_variance():
    from lib.ct.noise import mean_frequency, noise_power_spectrum

    g = torch.Generator().manual_seed(0)
    white = 0.002 * torch.randn(64, 32, 32, generator=g, dtype=torch.float64)
    f, nps, variance = noise_power_spectrum(white, pixel_mm=0.5)
    assert variance == pytest.approx(0.002 ** 2, rel=0.05)
    assert f[1] == pytest.approx(1 / 16)  # 1 / (N a)
    smooth = torch.nn.functional.avg_pool2d(white[:, None], 3, 1, 1)[:, 0]
    fs, nps_s, var_s = noise_power_spectrum(smooth, pixel_mm=0.5)
    assert var_s < variance and mean_frequency(fs, nps_s) < mean_frequency(f, nps)
    with pytest.raises(ValueError, match="realizations"):
        noise_power_spectrum(white[:1], 0.5)
