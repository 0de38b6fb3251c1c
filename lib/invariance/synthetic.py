"""A piecewise linear network with a known invariance: the ground truth the pipeline must recover.

``PairAverage``: layer 1 averages horizontal pairs of pixels (a 1 x 2 convolution of stride 2,
weights 1/2), layer 2 is a ReLU, layer 3 copies each average back onto its pair (a 1 x 2
transposed convolution). Layer 1 is blind exactly to the *pair differences*: every image
``d`` with ``d[i, 2j + 1] = -d[i, 2j]`` maps to zero, and those images span half of the input
space. So the invariances of layer 1 are known in closed form: samples of ``x`` given
``Phi_1(x)`` must vary inside that subspace and nowhere else.
"""

from __future__ import annotations

import torch
from torch import nn


class PairAverage(nn.Module):
    """Average pairs of columns and copy the average back: (B, 1, H, W), W even."""

    def __init__(self):
        super().__init__()
        self.average = nn.Conv2d(1, 1, (1, 2), stride=(1, 2), bias=False)
        self.relu = nn.ReLU()
        self.spread = nn.ConvTranspose2d(1, 1, (1, 2), stride=(1, 2), bias=False)
        with torch.no_grad():
            self.average.weight.fill_(0.5)
            self.spread.weight.fill_(1.0)

    def forward(self, x):
        return self.spread(self.relu(self.average(x)))


def pair_difference_basis(height: int, width: int) -> torch.Tensor:
    """Orthonormal basis (H W / 2, H W) of the images layer 1 of :class:`PairAverage` ignores."""
    if width % 2:
        raise ValueError(f"pairs of columns need an even width, got {width}")
    basis = torch.zeros(height * width // 2, height, width, dtype=torch.float64)
    k = 0
    for i in range(height):
        for j in range(0, width, 2):
            basis[k, i, j], basis[k, i, j + 1] = 2 ** -0.5, -(2 ** -0.5)
            k += 1
    return basis.flatten(1)


def variance_fraction(samples: torch.Tensor, basis: torch.Tensor) -> float:
    """Share of the samples' variance (about their mean) that lies in span(basis rows), which
    must be orthonormal: ``||Q^T (X - mean)||^2 / ||X - mean||^2``."""
    centred = samples.flatten(1).double()
    centred = centred - centred.mean(0)
    total = centred.pow(2).sum()
    if total == 0:
        raise ValueError("the samples do not vary: no variance to split")
    return float((centred @ basis.double().T).pow(2).sum() / total)
