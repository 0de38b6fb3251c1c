"""Where a denoiser can be cut: f = Psi_l o Phi_l holds only if every tensor that crosses layer l
is in Phi_l(x).

A skip connection that starts before layer ``l`` and ends after it (RED-CNN's input shortcut,
CPCE's conveying paths) carries information around the cut, so "the invariances of layer l" would
not be invariances of the network. The test is direct: run ``f`` on ``x`` but replace layer
``l``'s output by ``Phi_l(x')``. If the cut holds, the result is ``f(x')`` exactly (to rounding),
for every pair ``x, x'``; a bypassing path leaves a trace of ``x`` in it.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from lib.invariance.layers import LAYER_TYPES, count_layers, layer_output


def _swapped_forward(model: nn.Module, x: torch.Tensor, layer: int,
                     replacement: torch.Tensor) -> torch.Tensor:
    """``f(x)`` with the output of call number ``layer`` (1-based) replaced by ``replacement``."""
    calls = 0

    def hook(module, args, output):
        nonlocal calls
        calls += 1
        return replacement if calls == layer else None

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, LAYER_TYPES) and not list(m.children())]
    try:
        return model(x)
    finally:
        for h in handles:
            h.remove()


def cut_error(model: nn.Module, x: torch.Tensor, x_other: torch.Tensor, layer: int) -> float:
    """``max |f(x; Phi_l <- Phi_l(x')) - f(x')| / max |f(x')|``: zero (rounding) iff nothing
    crosses the cut at ``layer`` around it, for this pair of inputs."""
    with torch.no_grad():
        swapped = _swapped_forward(model, x, layer, layer_output(model, x_other, layer))
        target = model(x_other)
    return float((swapped - target).abs().max() / target.abs().max().clamp_min(1e-30))


def valid_cuts(model: nn.Module, x: torch.Tensor, x_other: torch.Tensor,
               tol: float = 1e-9) -> list[int]:
    """The layers (1-based) at which ``f = Psi_l o Phi_l`` holds, tested on the pairs
    ``(x[i], x_other[i])`` in float64: relative error at most ``tol`` for every pair."""
    net = copy.deepcopy(model).double()
    x, x_other = x.double(), x_other.double()
    n = count_layers(net, x[:1])
    return [layer for layer in range(1, n + 1)
            if all(cut_error(net, x[i:i + 1], x_other[i:i + 1], layer) <= tol
                   for i in range(len(x)))]
