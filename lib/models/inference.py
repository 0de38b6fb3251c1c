"""Running a denoiser over a stack of images or slabs, in batches, without gradients."""

from __future__ import annotations

import torch
from torch import nn

from lib.models.denoiser import slab_of


@torch.no_grad()
def denoise(model: nn.Module, images: torch.Tensor, batch: int = 2) -> torch.Tensor:
    """Apply ``model`` to (N, H, W) images or (N, D, H, W) slabs; returns (N, H, W) on the CPU.

    2-D networks given slabs see each slab's centre slice; slab networks (a
    :class:`~lib.models.Denoiser` with ``slab`` set, such as CPCE3D) need slabs at least as deep as
    theirs and see the centre ``slab`` slices. The model stays in its mode (call ``.eval()`` first
    for inference).
    """
    depth = slab_of(model)
    if depth is None and images.dim() == 4:
        images = images[:, images.shape[1] // 2]
    if depth is not None and images.dim() == 4 and images.shape[1] > depth:
        first = (images.shape[1] - depth) // 2
        images = images[:, first:first + depth]
    if depth is not None and (images.dim() != 4 or images.shape[1] != depth):
        raise ValueError(f"{type(model).__name__} needs slabs (N, {depth}, H, W), "
                         f"got {tuple(images.shape)}")
    device = next(model.parameters()).device
    out = [model(images[k:k + batch, None].to(device))[:, 0].cpu()
           for k in range(0, len(images), batch)]
    return torch.cat(out)
