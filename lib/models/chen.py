"""Chen et al.'s three-layer CNN for low-dose CT (Biomed. Opt. Express 2017)."""

from __future__ import annotations

from torch import nn

from lib.models.scaling import to_mu, to_network_units


class ChenCNN(nn.Module):
    """Conv 9x9 (64) - ReLU - Conv 3x3 (32) - ReLU - Conv 3x3 (1), 'same' zero padding.

    Input and output: mu images (B, 1, H, W) in mm^-1. Receptive field 13 x 13.
    """

    receptive_field = 13
    slab = None  # a 2-D network (the lib.models.Denoiser contract)

    def __init__(self, width: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            to_network_units(),
            nn.Conv2d(1, width, 9, padding=4), nn.ReLU(),
            nn.Conv2d(width, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 1, 3, padding=1),
            to_mu(),
        )

    def forward(self, x):
        return self.net(x)
