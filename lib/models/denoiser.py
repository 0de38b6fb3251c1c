"""The contract of a denoiser: mu in, mu out, a receptive field, and a slab depth or none.

Every network of :data:`lib.models.DENOISERS` keeps it, and so does any network of your own that
sets the two attributes. A module without them is taken as a 2-D image network (``slab`` None).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class Denoiser(Protocol):
    """A network mapping mu images (mm^-1) to mu images of the same height and width.

    - ``slab``: slices per input for slab networks, which take (B, 1, slab, H, W) and return the
      centre slice (B, 1, H, W); None for 2-D networks, which take and return (B, 1, H, W).
    - ``receptive_field``: the side (pixels) of the input square one output pixel depends on;
      the tests check it against :func:`lib.models.receptive_field`.
    """

    slab: int | None
    receptive_field: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


def slab_of(model: nn.Module) -> int | None:
    """``model.slab`` for a :class:`Denoiser`; None (a 2-D network) for any other module."""
    return model.slab if isinstance(model, Denoiser) else None
