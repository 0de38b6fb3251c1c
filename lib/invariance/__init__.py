"""What a denoiser's layer does not see: invariances sampled with a VAE and conditional INNs.

After Eulig, Ommer and Kachelriess (SPIE 2022) and Rombach et al. (ECCV 2020). Split a denoiser at
layer l, ``f = Psi_l o Phi_l``. A VAE gives a complete representation ``z_bar = E(x)`` of a low-dose
patch; a conditional INN ``v = t(z_bar; Phi_l(x))`` with ``v ~ N(0, I)`` separates what layer l
keeps from what it ignores. Sampling ``v`` and decoding ``D(t^{-1}(v; Phi_l(x)))`` gives patches
the layer cannot tell apart from ``x``: its invariances. The conditional VAE of the authors' talk
samples the whole network's invariances directly, ``D(z, f(x))`` with ``z ~ N(0, I)``.

- :class:`PatchVAE` (plain or conditional), :func:`kl_divergence` - :mod:`lib.invariance.vae`
- :class:`ConditionalINN` (FrEIA), :func:`negative_log_likelihood` - :mod:`lib.invariance.cinn`
- :func:`layer_output`, :func:`count_layers` - a denoiser's layer-l features - :mod:`lib.invariance.layers`
- :class:`InvarianceConfig`, :func:`train`, :func:`load` - resumable training and the shipped
  models - :mod:`lib.invariance.training`; ``python -m lib.invariance NAME --ship`` -
  :mod:`lib.invariance.ship`
"""

from lib.invariance.cinn import ConditionalINN, negative_log_likelihood
from lib.invariance.layers import count_layers, layer_output
from lib.invariance.training import InvarianceConfig, load, train
from lib.invariance.vae import PatchVAE, kl_divergence

__all__ = ["PatchVAE", "kl_divergence", "ConditionalINN", "negative_log_likelihood",
           "layer_output", "count_layers", "InvarianceConfig", "train", "load"]
