"""PSNR and SSIM against scikit-image's reference implementations, on the same windowed images."""

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from lib.ct import thorax_phantom
from lib.train.metrics import psnr, ssim, windowed


def _pair():
    truth = thorax_phantom(size=64, pixel_mm=6.0, seed=1)[None, None]
    noisy = truth + 0.002 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(0))
    return noisy, truth


def test_psnr_matches_scikit_image():
    noisy, truth = _pair()
    ours = float(psnr(noisy, truth)[0])
    theirs = peak_signal_noise_ratio(windowed(truth)[0, 0].numpy(), windowed(noisy)[0, 0].numpy(),
                                     data_range=1.0)
    assert ours == pytest.approx(theirs, abs=1e-3)


def test_ssim_matches_scikit_image_gaussian_ssim():
    noisy, truth = _pair()
    ours = float(ssim(noisy, truth)[0])
    # Wang et al.'s Gaussian SSIM: sigma 1.5, 11 x 11 window, population covariances, mean over the
    # pixels whose window lies inside the image (scikit-image crops the same border).
    theirs = structural_similarity(windowed(noisy)[0, 0].double().numpy(),
                                   windowed(truth)[0, 0].double().numpy(), data_range=1.0,
                                   gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert ours == pytest.approx(theirs, abs=1e-5)
    assert np.isfinite(ours) and ours < 1.0
