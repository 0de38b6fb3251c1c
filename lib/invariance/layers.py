"""The representation of a denoiser at layer ``l``: f = Psi_l o Phi_l, and Phi_l(x).

Layers are counted as in Eulig et al.'s table I: every convolution, transposed convolution and
activation *call* in execution order is one layer, so Chen's CNN has layers 1 (conv 9x9), 2 (ReLU),
3 (conv 3x3), 4 (ReLU) and 5 (conv 3x3), and WGAN-VGG's layers 1, 7 and 13 are the outputs of its
first, fourth and seventh convolutions. A ReLU module called several times (RED-CNN, CPCE) counts
once per call. The fixed input/output scalings are not layers.
"""

from __future__ import annotations

import torch
from torch import nn

LAYER_TYPES = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.ReLU, nn.LeakyReLU)


class _Reached(Exception):
    """Raised inside the forward pass once the wanted layer has run (skips the rest)."""


def _layer_calls(model: nn.Module, x: torch.Tensor, stop_at: int | None):
    outputs = []

    def hook(module, args, output):
        outputs.append(output)
        if stop_at is not None and len(outputs) == stop_at:
            raise _Reached

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, LAYER_TYPES) and not list(m.children())]
    try:
        model(x)
    except _Reached:
        pass
    finally:
        for h in handles:
            h.remove()
    return outputs


def count_layers(model: nn.Module, x: torch.Tensor) -> int:
    """How many layers (convolution / activation calls) the forward pass of ``x`` runs."""
    with torch.no_grad():
        return len(_layer_calls(model, x, None))


def layer_output(model: nn.Module, x: torch.Tensor, layer: int) -> torch.Tensor:
    """Phi_l(x): the output of layer ``layer`` (1-based) for inputs ``x``; the rest is skipped."""
    if layer < 1:
        raise ValueError(f"layers are counted from 1, got {layer}")
    outputs = _layer_calls(model, x, layer)
    if len(outputs) < layer:
        raise ValueError(f"{type(model).__name__} has {len(outputs)} layers "
                         f"(convolution / activation calls), no layer {layer}")
    return outputs[layer - 1]
