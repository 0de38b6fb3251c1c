"""A compact convolutional VAE over low-dose patches: the "complete representation" z_bar = E(x).

Eulig et al. use a ResNet encoder and a BigGAN decoder trained as a WGAN on 128 x 128 patches; that
is far beyond a CPU budget. This is a small honest substitute (four stride-2 convolutions down to
4 x 4, a Gaussian latent, the mirror image up), and the chapter shows its reconstruction error.

With ``condition=True`` it is the *conditional* VAE of the talk: the encoder sees ``[x, f(x)]`` and
the decoder ``D(z, f(x))`` gets the denoised patch at full resolution, so the latent needs to hold
only what ``f`` discards, and sampling ``z ~ N(0, I)`` gives invariances of the whole network
directly, without a cINN.

Images are mu patches (B, 1, P, P) in mm^-1, scaled by 1 / mu_water inside.
"""

from __future__ import annotations

import torch
from torch import nn

from lib.ct.units import MU_WATER


class PatchVAE(nn.Module):
    """``encode(x[, fx]) -> (mean, log variance)``, ``decode(z[, fx]) -> x``; P divisible by 16."""

    def __init__(self, patch_size: int = 32, latent_dim: int = 128, width: int = 32,
                 condition: bool = False):
        super().__init__()
        if patch_size % 16:
            raise ValueError(f"patch_size must be a multiple of 16, got {patch_size}")
        self.patch_size, self.latent_dim, self.condition = patch_size, latent_dim, condition
        self.side = patch_size // 16
        channels = [1 + condition, width, 2 * width, 4 * width, 4 * width]
        down = []
        for a, b in zip(channels, channels[1:]):
            down += [nn.Conv2d(a, b, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        self.encoder = nn.Sequential(*down, nn.Flatten())
        flat = channels[-1] * self.side ** 2
        self.to_mean, self.to_logvar = nn.Linear(flat, latent_dim), nn.Linear(flat, latent_dim)
        self.from_latent = nn.Linear(latent_dim, flat)
        up = []
        widths = channels[:0:-1]  # 4w, 4w, 2w, w: back up to full resolution with w channels
        for a, b in zip(widths, widths[1:] + [width]):
            up += [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        self.decoder = nn.Sequential(*up)
        self.head = nn.Sequential(nn.Conv2d(width + condition, width, 3, padding=1),
                                  nn.LeakyReLU(0.2), nn.Conv2d(width, 1, 3, padding=1))

    def encode(self, x: torch.Tensor, fx: torch.Tensor | None = None):
        """Mean and log variance of q(z | x) (and f(x) for the conditional VAE)."""
        h = self.encoder(self._inputs(x, fx))
        return self.to_mean(h), self.to_logvar(h).clamp(-12.0, 8.0)

    def decode(self, z: torch.Tensor, fx: torch.Tensor | None = None) -> torch.Tensor:
        h = self.from_latent(z).view(len(z), -1, self.side, self.side)
        h = self.decoder(h)
        if self.condition:
            h = torch.cat([h, self._need(fx) / MU_WATER], dim=1)
        return self.head(h) * MU_WATER

    def forward(self, x: torch.Tensor, fx: torch.Tensor | None = None):
        """(reconstruction, mean, log variance); z is sampled in training mode, the mean in eval."""
        mean, logvar = self.encode(x, fx)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp() if self.training else mean
        return self.decode(z, fx), mean, logvar

    def sample(self, n: int, fx: torch.Tensor | None = None, generator=None) -> torch.Tensor:
        """``n`` draws ``D(z[, f(x)])`` with ``z ~ N(0, I)`` (``fx`` of batch 1 is repeated)."""
        device = self.from_latent.weight.device
        z = torch.randn(n, self.latent_dim, generator=generator).to(device)
        if self.condition:
            fx = self._need(fx).expand(n, -1, -1, -1)
        return self.decode(z, fx)

    def _inputs(self, x, fx):
        if x.shape[-2:] != (self.patch_size, self.patch_size):
            raise ValueError(f"this VAE takes {self.patch_size} x {self.patch_size} patches, got "
                             f"{tuple(x.shape[-2:])}")
        return torch.cat([x, self._need(fx)], dim=1) / MU_WATER if self.condition else x / MU_WATER

    def _need(self, fx):
        if fx is None:
            raise ValueError("the conditional VAE needs the denoised patch f(x)")
        return fx


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z | x) || N(0, I)) per sample, summed over the latent dimensions."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum(dim=1)
