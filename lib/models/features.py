"""Fixed feature networks for the perceptual loss of WGAN-VGG and CPCE.

The papers compare VGG-19 features (ImageNet weights). Those weights cannot be downloaded here, so:

- :class:`VGG19Features` takes a VGG-19 weight file when the user has one (a ``state_dict`` with
  torchvision's ``features.N.*`` keys) and returns the conv5_4 features;
- otherwise :class:`PhantomFeatures` is used: a small convolutional autoencoder trained by this
  project on noiseless phantom patches (``python -m lib.train features``); its encoder's deepest
  maps are the features. The book says which one a model was trained with.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lib.ct.units import hu_to_mu
from lib.models.scaling import to_mu, to_network_units

_VGG19 = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512]  # up to conv5_4 (ReLU included)


class VGG19Features(nn.Module):
    """VGG-19 up to relu5_4, fed a CT window as three grey channels with ImageNet statistics."""

    def __init__(self, weights_path: str | Path):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in _VGG19:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU()]
                channels = item
        self.features = nn.Sequential(*layers)
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if k.startswith("features.")}
        missing = self.load_state_dict(state, strict=False).missing_keys
        if missing:
            raise ValueError(f"{weights_path}: not VGG-19 weights with torchvision's keys "
                             f"(missing {missing[:3]} ...)")
        low, high = hu_to_mu(-1000.0), hu_to_mu(1000.0)
        self.register_buffer("low", torch.tensor(low))
        self.register_buffer("span", torch.tensor(high - low))
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.requires_grad_(False).eval()

    def forward(self, mu):
        x = ((mu - self.low) / self.span).clamp(0, 1).expand(-1, 3, -1, -1)
        return self.features((x - self.mean) / self.std)


class PhantomFeatures(nn.Module):
    """A small conv autoencoder; :meth:`forward` returns its encoder's 64-channel maps (1/4 size)."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(
            to_network_units(),
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(),
        )
        self.bottleneck = nn.Sequential(nn.Conv2d(64, 8, 1), nn.ReLU())
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(8, 64, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 1, 3, padding=1), to_mu(),
        )

    def forward(self, mu):
        return self.encoder(mu)

    def reconstruct(self, mu):
        return self.decoder(self.bottleneck(self.encoder(mu)))
