"""Measure a network's receptive field by probing it, rather than trusting a hard-coded number.

The probe is a copy of the network with every weight set positive and every bias set to one, fed
an all-ones input: every ReLU is then active, no paths cancel, and the gradient of one central
output pixel is non-zero exactly on the input pixels that can influence it. Its bounding box is
the receptive field.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from lib.models.denoiser import slab_of


def receptive_field(model: nn.Module, size: int = 48, depth: int | None = None) -> tuple[int, ...]:
    """The receptive field (height, width), or (depth, height, width) for slab inputs.

    ``depth`` is the slab depth for 3-D networks (for example 9 for CPCE3D). The probe input grows
    until the field no longer touches its border.
    """
    probe = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for module in probe.modules():
            weight = getattr(module, "weight", None)
            if isinstance(weight, torch.Tensor) and weight.dim() > 1:
                weight.fill_(1.0 / weight[0].numel())
                if getattr(module, "bias", None) is not None:
                    module.bias.fill_(1.0)
    while True:
        shape = (1, 1, size, size) if depth is None else (1, 1, depth, size, size)
        x = torch.ones(shape, dtype=torch.float64, requires_grad=True)
        y = probe(x)
        centre = tuple(n // 2 for n in y.shape)
        (grad,) = torch.autograd.grad(y[centre], x)
        support = grad[0, 0].abs() > 0
        extents, touches = [], False
        for axis in range(support.dim()):
            others = tuple(a for a in range(support.dim()) if a != axis)
            hit = support.any(dim=others).nonzero().flatten() if others else support.nonzero().flatten()
            extents.append(int(hit.max() - hit.min() + 1))
            touches |= axis >= support.dim() - 2 and (hit.min() == 0 or hit.max() == size - 1)
        if not touches:
            return tuple(extents)
        size *= 2
        if size > 4096:
            raise RuntimeError("the receptive field is larger than 4096 pixels: is the network global?")


def receptive_field_margin(model: nn.Module, depth: int | None = None) -> int:
    """Pixels at each image edge where the network's zero padding reaches the output.

    Half the larger in-plane side of the probed :func:`receptive_field`, ``max(h, w) // 2``: an
    output pixel at least this far from the border sees no padding. ``depth`` as for
    :func:`receptive_field`; by default the model's own slab (:func:`lib.models.slab_of`).
    """
    depth = slab_of(model) if depth is None else depth
    return max(receptive_field(model, depth=depth)[-2:]) // 2
