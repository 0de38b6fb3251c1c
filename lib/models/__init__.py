"""The CT denoisers, all mapping mu images (mm^-1) to mu images, all piecewise linear.

- :class:`ChenCNN` - three-layer CNN (Chen et al. 2017)
- :class:`REDCNN` - residual encoder-decoder (Chen et al. 2017)
- :class:`WGANVGG` - the WGAN-VGG generator (Yang et al. 2018); :class:`Critic` trains it
- :class:`CPCE2D`, :class:`CPCE3D` - conveying-path encoder-decoders (Shan et al. 2018), with
  :func:`transfer_2d_to_3d`
- :class:`Denoiser` - the contract they keep (mu in, mu out, ``receptive_field``, ``slab``);
  :func:`slab_of` reads ``slab`` of any module (None: a 2-D network)
- :func:`load` - a shipped trained model, checksum verified; :func:`build` - an untrained one
- :func:`receptive_field` - measured by probing
- :class:`PhantomFeatures`, :class:`VGG19Features` - feature networks for perceptual losses

Layers are convolutions, transposed convolutions, linear layers, ReLU / LeakyReLU, concatenation,
addition and a fixed scaling (:mod:`lib.models.scaling`), so every analysis chapter applies.
"""

import torch
from torch import nn

from lib.checkpoints import DENOISER_LOADER, MANIFEST, CheckpointError, read_weights
from lib.device import pick_device
from lib.models.chen import ChenCNN
from lib.models.cpce import CPCE2D, CPCE3D, transfer_2d_to_3d
from lib.models.features import PhantomFeatures, VGG19Features
from lib.models.denoiser import Denoiser, slab_of
from lib.models.receptive_field import receptive_field
from lib.models.redcnn import REDCNN
from lib.models.wganvgg import WGANVGG, Critic

#: The denoisers by the names used in the book, the manifest and the training command.
ARCHITECTURES = {"chen": ChenCNN, "redcnn": REDCNN, "wganvgg": WGANVGG, "cpce2d": CPCE2D,
                 "cpce3d": CPCE3D, "features": PhantomFeatures}
DENOISERS = ("chen", "redcnn", "wganvgg", "cpce2d", "cpce3d")
#: How the book's figures and tables name them.
DISPLAY_NAMES = {"chen": "Chen CNN", "redcnn": "RED-CNN", "wganvgg": "WGAN-VGG", "cpce2d": "CPCE-2D",
                 "cpce3d": "CPCE-3D"}


def build(name: str, slab: int | None = None) -> nn.Module:
    """A new, untrained network of architecture ``name`` (one of :data:`ARCHITECTURES`);
    ``slab`` sets the depth of a ``cpce3d`` (None: its default, ``PAPER.slab``)."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    if slab is None:
        return ARCHITECTURES[name]()
    if name != "cpce3d":
        raise ValueError(f"only cpce3d takes a slab depth; {name!r} is a 2-D network")
    return CPCE3D(slab=slab)


def load(name: str, device: str | torch.device = "cpu", manifest_path=MANIFEST) -> nn.Module:
    """The shipped, trained network ``name`` in eval mode, its checksum verified.

    Example::

        >>> import lib.models
        >>> model = lib.models.load("chen")          # doctest: +SKIP
    """
    weights, entry = read_weights(name, DENOISER_LOADER, manifest_path)
    device = pick_device(device)
    model = build(entry.get("architecture", name), entry.get("config", {}).get("slab"))
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {name!r} does not fit {type(model).__name__}: {err}") from err
    return model.to(device).eval()


__all__ = ["ChenCNN", "REDCNN", "WGANVGG", "Critic", "CPCE2D", "CPCE3D", "transfer_2d_to_3d",
           "PhantomFeatures", "VGG19Features", "receptive_field", "load", "build", "Denoiser",
           "slab_of", "CheckpointError", "ARCHITECTURES", "DENOISERS", "DISPLAY_NAMES"]
