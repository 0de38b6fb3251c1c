"""Image-quality metrics with a stated protocol.

PSNR and SSIM are computed on images mapped through the chest (lung) display window, centre
-600 HU, width 1500 HU, to [0, 1] (values outside clipped), so that the data range is 1. RMSE is
reported in HU on the unwindowed images. Published numbers depend on these choices; compare only
numbers made with the same protocol. :func:`body_mask` restricts RMSE to the patient, for images
whose field of view is mostly air.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from lib.ct.units import HU_PER_MU, LUNG_WINDOW, hu_to_mu

WINDOW = LUNG_WINDOW  # (low, high) in mm^-1


def windowed(mu: torch.Tensor, window: tuple[float, float] = WINDOW) -> torch.Tensor:
    low, high = window
    return ((mu - low) / (high - low)).clamp(0, 1)


def rmse_hu(pred: torch.Tensor, target: torch.Tensor,
            mask: torch.Tensor | None = None) -> torch.Tensor:
    """Root-mean-square error in HU, per image (leading dimension), over ``mask`` if given."""
    squared = ((pred - target) * HU_PER_MU).pow(2).flatten(1)
    if mask is None:
        return squared.mean(1).sqrt()
    weight = mask.expand_as(pred).flatten(1).to(squared.dtype)
    return ((squared * weight).sum(1) / weight.sum(1)).sqrt()


def body_mask(truth: torch.Tensor, above_hu: float = -500.0) -> torch.Tensor:
    """The patient in (..., H, W) images: pixels above ``above_hu``, with enclosed holes (lungs,
    bowel gas) filled, per image."""
    flat = truth.reshape(-1, *truth.shape[-2:]).cpu().numpy() > hu_to_mu(above_hu)
    filled = [ndimage.binary_fill_holes(image) for image in flat]
    return torch.from_numpy(np.stack(filled)).reshape(truth.shape)


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of windowed images (data range 1), per image."""
    mse = (windowed(pred) - windowed(target)).flatten(1).pow(2).mean(1)
    return -10 * torch.log10(mse.clamp(min=1e-12))


def ssim(pred: torch.Tensor, target: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    """SSIM (Wang et al. 2004) of windowed (B, 1, H, W) images: 11x11 Gaussian, K = 0.01, 0.03."""
    x, y = windowed(pred).double(), windowed(target).double()
    coords = torch.arange(11, dtype=torch.float64, device=x.device) - 5
    g = torch.exp(-coords ** 2 / (2 * sigma ** 2))
    g = (g / g.sum())
    kernel = (g[:, None] * g[None, :]).view(1, 1, 11, 11)

    def blur(img):
        return F.conv2d(img, kernel)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1).float()


@torch.no_grad()
def perceptual_loss(pred: torch.Tensor, target: torch.Tensor,
                    features: torch.nn.Module) -> torch.Tensor:
    """The perceptual loss of WGAN-VGG and CPCE, per image: the mean squared difference of the
    feature maps, mean |phi(pred) - phi(target)|^2 with ``phi = features`` (for example
    :func:`lib.train.feature_network`). Seed 003's "P.Loss" column is this with VGG-19."""
    device = next(features.parameters()).device
    difference = features(pred.to(device)) - features(target.to(device))
    return difference.pow(2).flatten(1).mean(1).cpu()


def image_quality(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Mean PSNR (dB), SSIM and RMSE (HU) over a batch of (B, 1, H, W) images."""
    return {"psnr": float(psnr(pred, target).mean()), "ssim": float(ssim(pred, target).mean()),
            "rmse_hu": float(rmse_hu(pred, target).mean())}
