"""A conditional invertible network over pixels: x <-> v, conditioned on a layer's feature maps.

After Rombach et al. (ECCV 2020) and Eulig et al. (SPIE 2022), with one change: the flow models
the patch itself, not a VAE latent. A flow is invertible, so the pixels are a *complete*
representation with zero reconstruction error (the VAE of the paper loses detail, and on a CPU
budget it loses more than the noise); a 16 x 16 patch is only 256 numbers. The cINN learns
``p(x | Phi_l(x))`` as ``v = t(x; h(Phi_l(x)))``, ``v ~ N(0, I)``, by the negative
log-likelihood ``0.5 ||v||^2 - log |det dt/dx|``. Drawing ``v`` and inverting gives patches that
share the layer's representation and differ in what the layer is invariant to.

The condition keeps full resolution: a 1 x 1 convolution to a few channels, then linear maps from
*every* position (no pooling), so any detail the layer keeps can reach the flow. They give a
conditional mean ``m(z)``, fitted first by least squares (:mod:`lib.invariance.training`), and an
embedding ``h(z)``. The flow
(FrEIA: ActNorm, GLOW affine coupling whose subnetworks see ``h``, fixed random permutation)
models the residual ``x - m(z)``; its ActNorms are initialised on the first residuals, so their
scale is right from the start whether the layer keeps everything or little.
"""

from __future__ import annotations

import FrEIA.framework as Ff
import FrEIA.modules as Fm
import torch
from torch import nn

from lib.ct.units import MU_WATER


class ConditionEmbedding(nn.Module):
    """Feature maps (B, C, H, W) -> the conditional mean ``m(z)`` (B, P^2) and the embedding
    ``h(z)`` (B, embed_dim), each a 1 x 1 convolution to a few channels, then a linear map of
    every position. The mean path is fixed (random squeeze, least-squares map: see
    :meth:`lib.invariance.training.Objective.fit_mean`); the embedding is trained."""

    def __init__(self, feature_shape: tuple[int, int, int], patch_size: int,
                 embed_dim: int = 128, channels: int = 8):
        super().__init__()
        c, h, w = feature_shape
        self.mean_squeeze = nn.Sequential(nn.Conv2d(c, channels, 1), nn.Flatten())
        self.mean = nn.Linear(channels * h * w, patch_size ** 2)
        self.mean_squeeze.requires_grad_(False)
        self.mean.requires_grad_(False)
        self.squeeze = nn.Sequential(nn.Conv2d(c, channels, 1), nn.Flatten())
        self.embed = nn.Linear(channels * h * w, embed_dim)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean(self.mean_squeeze(features)), self.embed(self.squeeze(features))


class ConditionalINN(nn.Module):
    """``forward(x, features) -> (v, log|det J|)``; ``reverse(v, features) -> x`` (B, 1, P, P).

    ``v = t(x / mu_water - m(z); h(z))``: a conditional shift (volume preserving) and a flow on
    the residual, so a layer that keeps everything (``x`` a function of ``z``) leaves a residual
    near zero that the flow only has to scale down.
    """

    def __init__(self, patch_size: int, feature_shape: tuple[int, int, int],
                 embed_dim: int = 128, n_blocks: int = 6, hidden: int = 128, clamp: float = 2.0):
        super().__init__()
        self.patch_size, self.dim = patch_size, patch_size ** 2
        self.embedding = ConditionEmbedding(tuple(feature_shape), patch_size, embed_dim)

        def subnet(dims_in, dims_out):
            return nn.Sequential(nn.Linear(dims_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                 nn.ReLU(), nn.Linear(hidden, dims_out))

        self.flow = Ff.SequenceINN(self.dim)
        for k in range(n_blocks):
            self.flow.append(Fm.ActNorm)
            self.flow.append(Fm.GLOWCouplingBlock, cond=0, cond_shape=(embed_dim,),
                             subnet_constructor=subnet, clamp=clamp)
            self.flow.append(Fm.PermuteRandom, seed=k)

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.patch_size, self.patch_size):
            raise ValueError(f"this cINN takes {self.patch_size} x {self.patch_size} patches, "
                             f"got {tuple(x.shape[-2:])}")
        return x.flatten(1) / MU_WATER

    def mean_error(self, x: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Mean squared error of the conditional mean ``m(z)`` against ``x / mu_water``."""
        return (self._check(x) - self.embedding(features)[0]).pow(2).mean()

    def forward(self, x: torch.Tensor, features: torch.Tensor):
        """``v`` and ``log |det|`` of v against ``x / mu_water`` (x itself in mm^-1)."""
        mean, h = self.embedding(features)
        return self.flow(self._check(x) - mean, c=[h])

    def reverse(self, v: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        mean, h = self.embedding(features)
        residual, _ = self.flow(v, c=[h], rev=True)
        return (residual + mean).view(-1, 1, self.patch_size, self.patch_size) * MU_WATER

    def sample(self, n: int, features: torch.Tensor, generator=None,
               temperature: float = 1.0) -> torch.Tensor:
        """``n`` patches ``t^{-1}(v; z)``, ``v ~ N(0, T^2 I)``, for the features (batch 1) of one
        input: its invariance samples (n, 1, P, P) in mm^-1 (``T < 1`` draws nearer the mode)."""
        v = temperature * torch.randn(n, self.dim, generator=generator).to(features.device)
        return self.reverse(v, features.expand(n, *features.shape[1:]))


def negative_log_likelihood(v: torch.Tensor, log_det: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``0.5 ||v||^2 - log|det|``, per dimension (nats)."""
    return (0.5 * v.pow(2).sum(dim=1) - log_det).mean() / v.shape[1]
