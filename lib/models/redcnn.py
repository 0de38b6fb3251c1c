"""RED-CNN: the residual encoder-decoder CNN of Chen et al. (IEEE TMI 2017)."""

from __future__ import annotations

from torch import nn

from lib.models.scaling import to_mu, to_network_units


class REDCNN(nn.Module):
    """Five 5x5 valid convolutions (96) and five 5x5 transposed convolutions back to one channel.

    Shortcuts add the input to the output, the second conv's output to the third deconv's, and
    the fourth conv's output to the first deconv's; ReLU after every layer and after each sum,
    except at the output (as in the tuned public reimplementations). Input and output: mu images
    (B, 1, H, W) in mm^-1. Receptive field 41 x 41.
    """

    receptive_field = 41
    slab = None  # a 2-D network (the lib.models.Denoiser contract)

    def __init__(self, width: int = 96):
        super().__init__()
        self.scale_in, self.scale_out = to_network_units(), to_mu()
        self.convs = nn.ModuleList(nn.Conv2d(1 if i == 0 else width, width, 5) for i in range(5))
        self.deconvs = nn.ModuleList(nn.ConvTranspose2d(width, 1 if i == 4 else width, 5)
                                     for i in range(5))
        self.relu = nn.ReLU()

    def forward(self, x):
        x = self.scale_in(x)
        shortcut_input = x
        out = self.relu(self.convs[0](x))
        out = self.relu(self.convs[1](out))
        shortcut_2 = out
        out = self.relu(self.convs[2](out))
        out = self.relu(self.convs[3](out))
        shortcut_4 = out
        out = self.relu(self.convs[4](out))
        out = self.relu(self.deconvs[0](out) + shortcut_4)
        out = self.relu(self.deconvs[1](out))
        out = self.relu(self.deconvs[2](out) + shortcut_2)
        out = self.relu(self.deconvs[3](out))
        out = self.deconvs[4](out) + shortcut_input
        return self.scale_out(out)
