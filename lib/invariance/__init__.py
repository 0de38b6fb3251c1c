"""What a denoiser's layer does not see: invariances, sampled and computed exactly.

After Eulig, Ommer and Kachelriess (SPIE 2022) and Rombach et al. (ECCV 2020). Split a denoiser at
layer l, ``f = Psi_l o Phi_l`` (valid only where no skip path crosses the cut). A conditional INN
over the patch's pixels learns ``p(x | Phi_l(x))``; its samples are patches the layer cannot tell
apart from ``x``: its invariances. Because the networks are piecewise linear, the same question
has an exact local answer: the near null space of the Jacobian of ``Phi_l``.

- :class:`ConditionalINN`, :func:`negative_log_likelihood` - :mod:`lib.invariance.cinn`
- :func:`layer_output`, :func:`count_layers` - a denoiser's layer-l features -
  :mod:`lib.invariance.layers`
- :func:`valid_cuts`, :func:`cut_error` - where ``f = Psi_l o Phi_l`` holds -
  :mod:`lib.invariance.cuts`
- :func:`null_space`, :func:`feature_jacobian` - exact local invariances -
  :mod:`lib.invariance.nullspace`
- :class:`PairAverage` - a network with a known invariance - :mod:`lib.invariance.synthetic`
- :class:`InvarianceConfig`, :func:`train_sampler`, :func:`load_sampler` - resumable training
  and the shipped samplers - :mod:`lib.invariance.training`; ``python -m lib.invariance NAME --ship`` -
  :mod:`lib.invariance.ship`
"""

from lib.invariance.cinn import ConditionalINN, negative_log_likelihood
from lib.invariance.cuts import cut_error, valid_cuts
from lib.invariance.layers import count_layers, layer_output
from lib.invariance.nullspace import NullSpace, feature_jacobian, null_space
from lib.invariance.synthetic import PairAverage, pair_difference_basis, variance_fraction
from lib.invariance.training import InvarianceConfig, load_sampler, train_sampler

__all__ = [
           "ConditionalINN",
           "InvarianceConfig",
           "NullSpace",
           "PairAverage",
           "count_layers",
           "cut_error",
           "feature_jacobian",
           "layer_output",
           "load_sampler",
           "negative_log_likelihood",
           "null_space",
           "pair_difference_basis",
           "train_sampler",
           "valid_cuts",
           "variance_fraction",
]
