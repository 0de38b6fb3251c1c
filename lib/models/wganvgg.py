"""WGAN-VGG (Yang et al., IEEE TMI 2018): the generator, and the critic used to train it."""

from __future__ import annotations

from torch import nn

from lib.models.scaling import to_mu, to_network_units


class WGANVGG(nn.Module):
    """The generator: eight 3x3 convolutions (32 channels, the last to 1), ReLU between.

    Trained with a Wasserstein critic and a perceptual loss (see :mod:`lib.train`). Input and
    output: mu images (B, 1, H, W) in mm^-1. Receptive field 17 x 17.
    """

    receptive_field = 17
    slab = None  # a 2-D network (the lib.models.Denoiser contract)

    def __init__(self, width: int = 32, depth: int = 8):
        super().__init__()
        layers = [to_network_units()]
        for i in range(depth):
            layers.append(nn.Conv2d(1 if i == 0 else width, 1 if i == depth - 1 else width, 3,
                                    padding=1))
            if i < depth - 1:
                layers.append(nn.ReLU())
        layers.append(to_mu())
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class Critic(nn.Module):
    """The WGAN critic: six 3x3 convs (64, 64, 128, 128, 256, 256; strides 1, 2, 1, 2, 1, 2),
    a dense layer of 1024 and a dense output, with leaky ReLU (0.2).

    Takes (B, 1, P, P) mu patches (or (B, 1, D, P, P) slabs, whose centre slice is judged) with P
    divisible by 8.
    """

    def __init__(self, patch_size: int = 64):
        super().__init__()
        if patch_size % 8:
            raise ValueError(f"the critic needs a patch size divisible by 8, got {patch_size}")
        channels = [1, 64, 64, 128, 128, 256, 256]
        layers: list[nn.Module] = [to_network_units()]
        for i in range(6):
            layers += [nn.Conv2d(channels[i], channels[i + 1], 3, stride=1 + i % 2, padding=1),
                       nn.LeakyReLU(0.2)]
        side = patch_size // 8
        layers += [nn.Flatten(), nn.Linear(256 * side * side, 1024), nn.LeakyReLU(0.2),
                   nn.Linear(1024, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        if x.dim() == 5:
            x = x[:, :, x.shape[2] // 2]
        return self.net(x)
