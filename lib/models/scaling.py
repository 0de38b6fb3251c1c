"""The fixed affine map between physical mu (mm^-1) and the networks' working range.

Networks learn best on inputs of order one, but the analysis chapters must see the physical input
space. Every model therefore starts with ``x / MU_WATER`` (water becomes 1) and ends with
``y * MU_WATER``: fixed, linear, with no offset, so piecewise linearity (and, for bias-free
networks, positive homogeneity) is kept.
"""

from __future__ import annotations

import torch
from torch import nn

from lib.ct.units import MU_WATER


class MuScaling(nn.Module):
    """Multiply by a fixed factor (a buffer, not a parameter)."""

    def __init__(self, factor: float):
        super().__init__()
        self.register_buffer("factor", torch.tensor(float(factor)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={float(self.factor):.6g}"


def to_network_units() -> MuScaling:
    return MuScaling(1.0 / MU_WATER)


def to_mu() -> MuScaling:
    return MuScaling(MU_WATER)
