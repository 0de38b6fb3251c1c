"""A conditional invertible network t: z_bar <-> v, conditioned on a denoiser's layer-l features.

After Rombach et al. (ECCV 2020) and Eulig et al. (SPIE 2022): the VAE latent ``z_bar = E(x)`` holds
everything about the patch; the features ``z = Phi_l(x)`` hold what layer ``l`` keeps. The cINN
learns ``p(z_bar | z)`` as ``v = t(z_bar; h(z))`` with ``v ~ N(0, I)``, trained by the negative
log-likelihood ``0.5 ||v||^2 - log |det dt/dz_bar|``. Drawing ``v`` and inverting gives latents that
share the layer's representation and differ in everything the layer is invariant to.

Built from FrEIA modules: each block is an ActNorm, a GLOW affine coupling whose two subnetworks
see the condition embedding ``h(z)`` concatenated to their input, and a fixed random permutation.
The embedding ``h`` is a shallow convolutional network on the feature maps, trained jointly.
"""

from __future__ import annotations

import FrEIA.framework as Ff
import FrEIA.modules as Fm
import torch
from torch import nn


class ConditionEmbedding(nn.Module):
    """h(z): feature maps (B, C, H, W) of any size -> a vector (B, embed_dim)."""

    def __init__(self, channels: int, embed_dim: int = 64, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(2 * width * 16, embed_dim))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class ConditionalINN(nn.Module):
    """``forward(z_bar, features) -> (v, log|det J|)``; ``reverse(v, features) -> z_bar``."""

    def __init__(self, latent_dim: int, feature_channels: int, embed_dim: int = 64,
                 n_blocks: int = 8, hidden: int = 128, clamp: float = 2.0):
        super().__init__()
        if latent_dim < 2:
            raise ValueError(f"a coupling block needs latent_dim >= 2, got {latent_dim}")
        self.latent_dim = latent_dim
        self.embedding = ConditionEmbedding(feature_channels, embed_dim)

        def subnet(dims_in, dims_out):
            return nn.Sequential(nn.Linear(dims_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                 nn.ReLU(), nn.Linear(hidden, dims_out))

        self.flow = Ff.SequenceINN(latent_dim)
        for k in range(n_blocks):
            self.flow.append(Fm.ActNorm)
            self.flow.append(Fm.GLOWCouplingBlock, cond=0, cond_shape=(embed_dim,),
                             subnet_constructor=subnet, clamp=clamp)
            self.flow.append(Fm.PermuteRandom, seed=k)

    def condition(self, features: torch.Tensor) -> torch.Tensor:
        return self.embedding(features)

    def forward(self, z_bar: torch.Tensor, features: torch.Tensor):
        v, log_det = self.flow(z_bar, c=[self.condition(features)])
        return v, log_det

    def reverse(self, v: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        z_bar, _ = self.flow(v, c=[self.condition(features)], rev=True)
        return z_bar

    def sample(self, n: int, features: torch.Tensor, generator=None) -> torch.Tensor:
        """``n`` latents ``t^{-1}(v; h(z))``, ``v ~ N(0, I)``, for the features of one input."""
        v = torch.randn(n, self.latent_dim, generator=generator).to(features.device)
        return self.reverse(v, features.expand(n, *features.shape[1:]))


def negative_log_likelihood(v: torch.Tensor, log_det: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``0.5 ||v||^2 - log|det|``, per latent dimension (nats)."""
    return (0.5 * v.pow(2).sum(dim=1) - log_det).mean() / v.shape[1]
