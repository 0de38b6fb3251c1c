"""A conditional VAE over pixels, the paper's outlook, built so that it cannot collapse unseen.

Eulig et al.'s talk proposes a conditional VAE as the alternative to their VAE + cINN: an encoder
``q(z | x, Phi_l(x))`` and a decoder ``p(x | z, Phi_l(x))``. Drawing ``z ~ N(0, I)`` and decoding
with the features of one input gives patches the layer represents like that input, as the cINN's
samples do. Trained by the evidence lower bound, such a model often *collapses*: the decoder
explains ``x`` from the condition alone, ``q(z | x, c)`` equals the prior (KL about 0) and the
samples do not vary, which would read as "no invariance". Three choices guard against that here:

- the condition enters through the same :class:`~lib.invariance.cinn.ConditionEmbedding` as the
  cINN: a least-squares conditional mean ``m(z)`` (fitted first) and a trained embedding ``h``;
  the VAE models the residual ``r = x / mu_water - m``, scaled by its standard deviation on the
  first training batch (a buffer, like an ActNorm);
- a *heteroscedastic* decoder: ``p(r | z, h) = N(mu(z, h), diag exp(s(z, h)))``;
- *free bits* (Kingma et al., NeurIPS 2016): the KL term of each latent dimension, averaged over
  the batch, counts as ``max(KL_d, lambda)``, so no gradient pushes a dimension below ``lambda``
  nats and the encoder has no reason to give its information up.

Loss per patch: ``sum_pixels -log p(r | z, h) + sum_d max(KL_d, lambda)`` (nats).
:func:`latent_usage` reports what the model really uses (KL without the floor, active dimensions
as in Burda et al. 2016: ``Cov_x E_q[z_d] > 0.01``) and :func:`check_not_collapsed` refuses a
collapsed model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from lib.ct.units import HU_PER_MU, MU_WATER
from lib.invariance.cinn import ConditionEmbedding

#: Decoder log-variance range (in units of the residual's scale): keeps the Gaussian likelihood
#: finite where the condition fixes the pixels (a layer that keeps everything).
LOG_VARIANCE_RANGE = (-16.0, 4.0)

#: A latent dimension is *active* if the mean of q(z_d | x, c) varies over inputs by more than
#: this variance (Burda et al., 2016).
ACTIVE_VARIANCE = 0.01


def _mlp(dims_in: int, hidden: int, dims_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dims_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                         nn.ReLU(), nn.Linear(hidden, dims_out))


@dataclass
class ELBOTerms:
    """One batch through the cVAE: per-patch reconstruction NLL, per-dimension mean KL (nats),
    and the reconstruction (decoder mean at ``z = E_q[z]``) in mm^-1."""

    reconstruction_nll: torch.Tensor  # (B,)
    kl_per_dimension: torch.Tensor    # (latent_dim,), mean over the batch
    posterior_mean: torch.Tensor      # (B, latent_dim)
    reconstruction: torch.Tensor      # (B, 1, P, P)


class ConditionalVAE(nn.Module):
    """``q(z | x, Phi_l(x))`` and ``p(x | z, Phi_l(x))`` over (B, 1, P, P) patches in mm^-1."""

    def __init__(self, patch_size: int, feature_shape: tuple[int, int, int],
                 embed_dim: int = 128, latent_dim: int = 32, hidden: int = 256):
        super().__init__()
        self.patch_size, self.dim, self.latent_dim = patch_size, patch_size ** 2, latent_dim
        self.embedding = ConditionEmbedding(tuple(feature_shape), patch_size, embed_dim)
        self.encoder = _mlp(self.dim + embed_dim, hidden, 2 * latent_dim)
        self.decoder = _mlp(latent_dim + embed_dim, hidden, 2 * self.dim)
        self.register_buffer("scale", torch.zeros(()))  # residual std, set on the first batch

    def _residual(self, x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.patch_size, self.patch_size):
            raise ValueError(f"this cVAE takes {self.patch_size} x {self.patch_size} patches, "
                             f"got {tuple(x.shape[-2:])}")
        residual = x.flatten(1) / MU_WATER - mean
        if self.scale == 0:
            if not self.training:
                raise ValueError("an untrained cVAE: train it (or load a shipped one) first")
            self.scale.fill_(float(residual.detach().std().clamp_min(1e-8)))
        return residual / self.scale

    def encode(self, x: torch.Tensor, features: torch.Tensor):
        """``E_q[z]``, ``log Var_q[z]`` and the condition's ``(m, h)``."""
        mean, h = self.embedding(features)
        stats = self.encoder(torch.cat([self._residual(x, mean), h], dim=1))
        mu, log_var = stats.chunk(2, dim=1)
        return mu, log_var, mean, h

    def decode(self, z: torch.Tensor, mean: torch.Tensor, h: torch.Tensor):
        """Decoder mean (B, 1, P, P) in mm^-1 and its log-variance in scaled residual units."""
        mu, log_var = self.decoder(torch.cat([z, h], dim=1)).chunk(2, dim=1)
        x = (mean + mu * self.scale).view(-1, 1, self.patch_size, self.patch_size) * MU_WATER
        return x, log_var.clamp(*LOG_VARIANCE_RANGE)

    def forward(self, x: torch.Tensor, features: torch.Tensor) -> ELBOTerms:
        mu, log_var, mean, h = self.encode(x, features)
        z = mu + torch.randn_like(mu) * (0.5 * log_var).exp() if self.training else mu
        recon, dec_log_var = self.decode(z, mean, h)
        error = (x - recon).flatten(1) / (MU_WATER * self.scale)
        nll = 0.5 * (dec_log_var + error.pow(2) / dec_log_var.exp() + math.log(2 * math.pi))
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var)
        return ELBOTerms(nll.sum(1), kl.mean(0), mu, recon)

    def sample(self, n: int, features: torch.Tensor, generator=None,
               temperature: float = 1.0) -> torch.Tensor:
        """``n`` decoder means for ``z ~ N(0, T^2 I)`` and the features (batch 1) of one input:
        its invariance samples (n, 1, P, P) in mm^-1 (the decoder's pixel noise is not added:
        it is independent per pixel, not a property of the layer)."""
        z = temperature * torch.randn(n, self.latent_dim, generator=generator)
        mean, h = self.embedding(features.expand(n, *features.shape[1:]))
        return self.decode(z.to(features.device), mean, h)[0]


def free_bits_loss(terms: ELBOTerms, free_bits: float) -> torch.Tensor:
    """Negative ELBO with free bits, per patch and pixel (nats): ``(mean_B NLL +
    sum_d max(KL_d, lambda)) / P^2``."""
    if free_bits < 0:
        raise ValueError(f"free bits are a floor in nats per latent dimension, >= 0; "
                         f"got {free_bits}")
    kl = terms.kl_per_dimension.clamp_min(free_bits).sum()
    return (terms.reconstruction_nll.mean() + kl) / terms.reconstruction[0].numel()


@dataclass(frozen=True)
class LatentUsage:
    """What a cVAE uses of its latent space on a set of patches."""

    kl_nats: float               # total KL(q(z | x, c) || N(0, I)), mean over patches
    active_dims: int             # dimensions with Cov_x E_q[z_d] > ACTIVE_VARIANCE
    latent_dim: int
    reconstruction_rmse_hu: float  # decoder mean at E_q[z] against x

    @property
    def kl_per_active_dim(self) -> float:
        return self.kl_nats / self.active_dims if self.active_dims else 0.0


@torch.no_grad()
def latent_usage(model: ConditionalVAE, x: torch.Tensor, features: torch.Tensor) -> LatentUsage:
    """KL, active dimensions and reconstruction RMSE of ``model`` on patches ``x`` (B >= 2)."""
    if len(x) < 2:
        raise ValueError(f"active dimensions need at least 2 patches, got {len(x)}")
    was = model.training
    model.eval()
    terms = model(x, features)
    model.train(was)
    active = int((terms.posterior_mean.var(0) > ACTIVE_VARIANCE).sum())
    rmse = float((terms.reconstruction - x).pow(2).mean().sqrt()) * HU_PER_MU
    return LatentUsage(float(terms.kl_per_dimension.sum()), active, model.latent_dim, rmse)


def check_not_collapsed(usage: LatentUsage, spread_hu: float, min_spread_hu: float,
                        min_kl_nats: float = 1.0) -> None:
    """Refuse a collapsed cVAE: one whose posterior is the prior (KL below ``min_kl_nats``, no
    active dimension) or whose samples do not vary (spread below ``min_spread_hu``). Use it where
    the layer has invariances (a non-empty near null space); at an injective layer a spread near
    zero is the right answer."""
    problems = []
    if usage.kl_nats < min_kl_nats:
        problems.append(f"KL {usage.kl_nats:.3g} nats < {min_kl_nats}")
    if usage.active_dims == 0:
        problems.append("no active latent dimension")
    if spread_hu < min_spread_hu:
        problems.append(f"sample spread {spread_hu:.3g} HU < {min_spread_hu:.3g} HU")
    if problems:
        raise ValueError("the cVAE has collapsed (" + "; ".join(problems) + "): train it with "
                         "free bits (CVAEConfig.free_bits > 0)")
