"""CPCE: the conveying-path convolutional encoder-decoder of Shan et al. (IEEE TMI 2018), in 2-D
and 3-D, and the 2-D -> 3-D transfer that starts the 3-D network equal to a trained 2-D one."""

from __future__ import annotations

import torch
from torch import nn

from lib.ct.protocol import PAPER
from lib.models.scaling import to_mu, to_network_units


class _Decoder(nn.Module):
    """Three stages of 3x3 transposed conv -> concat with the mirrored encoder map -> ReLU ->
    1x1 conv (64 -> 32) -> ReLU, then a 3x3 transposed conv to one channel."""

    def __init__(self, width: int):
        super().__init__()
        self.deconvs = nn.ModuleList(nn.ConvTranspose2d(width, width, 3, bias=False)
                                     for _ in range(3))
        self.squeeze = nn.ModuleList(nn.Conv2d(2 * width, width, 1, bias=False) for _ in range(3))
        self.last = nn.ConvTranspose2d(width, 1, 3, bias=False)
        self.relu = nn.ReLU()

    def forward(self, deepest, skips):
        out = deepest
        for deconv, squeeze, skip in zip(self.deconvs, self.squeeze, skips):
            out = self.relu(torch.cat([deconv(out), skip], dim=1))
            out = self.relu(squeeze(out))
        return self.last(out)


class _CPCE(nn.Module):
    """Four 3x3 valid convolutions (``conv`` type, 32 channels, no bias, ReLU) and the decoder;
    ``_conveyed`` turns an encoder map into the 2-D map its conveying path carries."""

    def __init__(self, conv: type[nn.Module], width: int):
        super().__init__()
        self.scale_in, self.scale_out = to_network_units(), to_mu()
        self.convs = nn.ModuleList(conv(1 if i == 0 else width, width, 3, bias=False)
                                   for i in range(4))
        self.decoder = _Decoder(width)
        self.relu = nn.ReLU()

    def _conveyed(self, feature_map: torch.Tensor) -> torch.Tensor:
        return feature_map

    def forward(self, x):
        out, maps = self.scale_in(x), []
        for conv in self.convs:
            out = self.relu(conv(out))
            maps.append(self._conveyed(out))
        return self.scale_out(self.decoder(maps[3], [maps[2], maps[1], maps[0]]))


class CPCE2D(_CPCE):
    """Four 3x3 valid convs (32, no bias, ReLU), then the conveying-path decoder.

    Input and output: mu images (B, 1, H, W) in mm^-1. Receptive field 17 x 17. Without biases
    the network is positively homogeneous: H(a x) = a H(x) for a > 0.
    """

    receptive_field = 17
    slab = None  # a 2-D network (the lib.models.Denoiser contract)

    def __init__(self, width: int = 32):
        super().__init__(nn.Conv2d, width)


class CPCE3D(_CPCE):
    """CPCE over a slab of ``slab`` adjacent slices (3, 5, 7 or 9; the seed slides' CPCA-3/5/7 and
    the public code's 9). The first ``(slab - 1) / 2`` convolutions are 3x3x3 and valid along depth,
    the others 1x3x3, so the depth shrinks to one slice (9-7-5-3-1 for nine); the conveying paths
    pass the centre slice of each encoder map to the 2-D decoder.

    Input: a slab (B, 1, slab, H, W) of mu in mm^-1; output: the centre slice (B, 1, H, W).
    Receptive field slab x 17 x 17.
    """

    receptive_field = 17
    SLABS = (3, 5, 7, 9)

    def __init__(self, width: int = 32, slab: int = PAPER.slab):
        if slab not in self.SLABS:
            raise ValueError(f"CPCE3D takes a slab of {', '.join(map(str, self.SLABS))} slices, "
                             f"got {slab}")
        super().__init__(nn.Conv3d, width)
        self.slab = slab
        for i in range(slab // 2, len(self.convs)):  # depth already one slice: 1x3x3 kernels
            self.convs[i] = nn.Conv3d(width, width, (1, 3, 3), bias=False)

    def _conveyed(self, feature_map: torch.Tensor) -> torch.Tensor:
        return feature_map[:, :, feature_map.shape[2] // 2]

    def forward(self, x):
        if x.dim() != 5 or x.shape[2] != self.slab:
            raise ValueError(f"CPCE3D takes slabs (B, 1, {self.slab}, H, W), got {tuple(x.shape)}")
        return super().forward(x)


@torch.no_grad()
def transfer_2d_to_3d(cpce2d: CPCE2D, slab: int = PAPER.slab) -> CPCE3D:
    """A CPCE3D over ``slab`` slices that computes exactly what ``cpce2d`` computes on the centre
    slice.

    Each 3x3x3 kernel is initialised as ``[0, W2D, 0]`` along depth (each 1x3x3 kernel as
    ``[W2D]``), so every layer's output slice ``d`` is the 2-D layer applied to its input slice
    ``d + 1``; the decoder is copied.
    """
    cpce3d = CPCE3D(width=cpce2d.convs[0].out_channels, slab=slab)
    for conv2d, conv3d in zip(cpce2d.convs, cpce3d.convs):
        kernel = torch.zeros_like(conv3d.weight)
        kernel[:, :, kernel.shape[2] // 2] = conv2d.weight
        conv3d.weight.copy_(kernel)
    cpce3d.decoder.load_state_dict(cpce2d.decoder.state_dict())
    return cpce3d
