"""What chapter 7 measures on invariance samples, against the exact local answer.

For one patch ``x``, a layer ``l`` and a sampler of ``p(x | Phi_l(x))`` (a cINN or a cVAE, any
object with ``sample(n, features, generator=..., temperature=...)``), :func:`measure_patch`
returns

- the samples' per-pixel standard deviation, and the exact prediction: the standard deviation of
  scanner noise projected onto the near null space of ``J_l`` (:mod:`lib.invariance.nullspace`);
- how the samples' variance splits between that near null space and its complement: the share
  inside (:func:`~lib.invariance.synthetic.variance_fraction`) and the per-pixel spread outside,
  which a perfect sampler would keep near zero wherever the layer's gain is high;
- the *feature mismatch*: ``rms_k ||Phi_l(x~_k) - Phi_l(x)|| / rms_j ||Phi_l(x + n_j) - Phi_l(x)||``,
  how far the samples' features are from the condition, relative to what scanner noise does to
  them. An exact sampler gives 0; a sampler that ignored the condition gives about 1 or more.

:func:`edge_and_homogeneous` splits a patch by the gradient magnitude of its noiseless truth,
:func:`region_means` averages per-pixel maps over the two sets, and :func:`noise_let_through` is
chapter 6's measure of noise removal on the same patches: ``std_n f(truth + n) / std_n n`` per
pixel, the fraction of the noise the whole network passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lib.ct.units import HU_PER_MU
from lib.invariance.layers import layer_output
from lib.invariance.nullspace import NullSpace, null_space
from lib.invariance.synthetic import variance_fraction


@dataclass
class PatchMeasures:
    """The measurements of one patch at one layer (maps (P, P) in HU)."""

    null_dimension: int
    exact_std: torch.Tensor     # std of P_0 n over the noise realisations
    sample_std: torch.Tensor    # std of the samples
    null_fraction: float        # share of the samples' variance in the near null space (nan if empty)
    outside_std_hu: float       # mean per-pixel std of the samples outside the near null space
    feature_mismatch: float     # see the module docstring
    samples: torch.Tensor       # (n, 1, P, P) in mm^-1

    @property
    def sample_spread_hu(self) -> float:
        """Mean over pixels of the samples' standard deviation."""
        return float(self.sample_std.mean())

    @property
    def exact_spread_hu(self) -> float:
        """Mean over pixels of the standard deviation of the unseen noise ``P_0 n``."""
        return float(self.exact_std.mean())


def _feature_rms(model: nn.Module, images: torch.Tensor, reference: torch.Tensor,
                 layer: int) -> float:
    return float((layer_output(model, images, layer) - reference).flatten(1).pow(2).sum(1)
                 .mean().sqrt())


@torch.no_grad()
def feature_mismatch(model: nn.Module, x: torch.Tensor, samples: torch.Tensor,
                     noise: torch.Tensor, layer: int) -> float:
    """RMS feature distance of ``samples`` from ``Phi_l(x)``, over that of ``x + noise``."""
    reference = layer_output(model, x, layer)
    scale = _feature_rms(model, x + noise, reference, layer)
    if scale == 0:
        raise ValueError(f"layer {layer} does not respond to the noise: no scale to compare with")
    return _feature_rms(model, samples, reference, layer) / scale


def measure_patch(model: nn.Module, sampler: nn.Module, x: torch.Tensor, layer: int,
                  noise: torch.Tensor, n_samples: int, generator: torch.Generator | None = None,
                  temperature: float = 1.0, exact: NullSpace | None = None) -> PatchMeasures:
    """Sample ``n_samples`` invariances of ``x`` (1, 1, P, P) at ``layer`` and measure them
    against the near null space ``exact`` (computed with the default threshold if not given)
    and scanner ``noise`` (N, 1, P, P)."""
    exact = exact or null_space(model, x, layer)
    with torch.no_grad():
        samples = sampler.sample(n_samples, layer_output(model, x, layer), generator=generator,
                                 temperature=temperature)
    centred = samples.double() - samples.double().mean(0)
    outside = centred - exact.project(centred)
    dimension = exact.dimension
    spread = samples.std(0)[0]
    return PatchMeasures(
        null_dimension=dimension,
        exact_std=exact.project(noise).std(0)[0].float() * HU_PER_MU,
        sample_std=spread * HU_PER_MU,
        null_fraction=(variance_fraction(samples, exact.null_basis)
                       if dimension and float(spread.max()) > 0 else float("nan")),
        outside_std_hu=float(outside.std(0).mean()) * HU_PER_MU,
        feature_mismatch=feature_mismatch(model, x, samples, noise, layer),
        samples=samples)


def edge_and_homogeneous(truth: torch.Tensor, edge_share: float = 0.2,
                         homogeneous_share: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks (P, P) of a noiseless patch: *edges*, the ``edge_share`` of pixels with the largest
    gradient magnitude, and *homogeneous*, the ``homogeneous_share`` with the smallest."""
    if truth.dim() != 2:
        raise ValueError(f"edge_and_homogeneous takes one (P, P) image, got {tuple(truth.shape)}")
    if not (0 < edge_share and 0 < homogeneous_share and edge_share + homogeneous_share <= 1):
        raise ValueError(f"the two shares must be positive and not overlap (sum <= 1); got "
                         f"{edge_share} and {homogeneous_share}")
    gy, gx = torch.gradient(truth)
    magnitude = (gx ** 2 + gy ** 2).sqrt()
    edges = magnitude >= magnitude.quantile(1 - edge_share)
    homogeneous = magnitude <= magnitude.quantile(homogeneous_share)
    return edges, homogeneous


def region_means(maps, masks) -> tuple[list[float], list[float]]:
    """Per patch, the mean of each map over its homogeneous and over its edge pixels:
    ``(homogeneous, edges)``, with ``masks`` as returned by :func:`edge_and_homogeneous`."""
    homogeneous = [float(m[h].mean()) for m, (_, h) in zip(maps, masks, strict=True)]
    edges = [float(m[e].mean()) for m, (e, _) in zip(maps, masks, strict=True)]
    return homogeneous, edges


@torch.no_grad()
def noise_let_through(model: nn.Module, truth: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Per pixel (P, P), ``std_n f(truth + n) / std_n n`` for one truth (1, 1, P, P) and noise
    realisations (N, 1, P, P), N >= 2."""
    if len(noise) < 2:
        raise ValueError(f"a standard deviation over realisations needs at least 2, got {len(noise)}")
    return model(truth + noise).std(0)[0] / noise.std(0)[0]
