"""Shipped checkpoints: the manifest in ``data/manifest.json`` and :func:`load`.

Each manifest entry records how a checkpoint was made (exact command, data seeds, steps, wall time,
hardware, validation metrics) and its sha256. :func:`load` refuses a file whose checksum differs.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
from pathlib import Path

import torch
from torch import nn

from lib.paths import DATA
from lib.storage import atomic_write_text

MANIFEST = DATA / "manifest.json"


class CheckpointError(RuntimeError):
    """A shipped checkpoint that is missing, altered or does not fit its model."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(path: Path = MANIFEST) -> dict:
    return json.loads(Path(path).read_text()) if Path(path).exists() else {}


def register(name: str, path: Path, entry: dict, device: str, manifest_path: Path = MANIFEST) -> dict:
    """Record the checkpoint written at ``path`` in the manifest under ``name``, atomically.

    Adds the file name, its sha256, the hardware (``device`` it was trained on) and the time to
    ``entry`` (command, config, history, metrics, ...); returns the completed entry.
    """
    entry = {"file": Path(path).relative_to(Path(manifest_path).parent).as_posix(),
             "sha256": sha256(path), **entry,
             "hardware": {"machine": platform.machine(), "processor": platform.processor(),
                          "cpu_count": os.cpu_count(), "torch": torch.__version__,
                          "device": device, "processes": int(os.environ.get("WORLD_SIZE", "1"))},
             "trained": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    manifest = read_manifest(manifest_path)
    manifest[name] = entry
    atomic_write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", Path(manifest_path))
    return entry


def load_checkpoint_weights(name: str, manifest_path: Path = MANIFEST) -> tuple[dict, dict]:
    """The verified state dict of shipped checkpoint ``name`` and its manifest entry."""
    manifest = read_manifest(manifest_path)
    if name not in manifest:
        shipped = ", ".join(sorted(manifest)) or "none"
        raise CheckpointError(f"no shipped checkpoint named {name!r}; shipped: {shipped}")
    entry = manifest[name]
    path = Path(manifest_path).parent / entry["file"]
    if not path.exists():
        raise CheckpointError(f"{path}: the manifest lists it but the file is missing")
    actual = sha256(path)
    if actual != entry["sha256"]:
        raise CheckpointError(f"{path}: sha256 {actual[:12]}... does not match the manifest's "
                              f"{entry['sha256'][:12]}...; the file is corrupted or was replaced. "
                              "Restore it from git or retrain with the command in the manifest.")
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state["model"], entry


def load(name: str, device: str | torch.device = "cpu", manifest_path: Path = MANIFEST) -> nn.Module:
    """The shipped, trained model ``name`` in eval mode, its checksum verified.

    Example::

        >>> import lib.models
        >>> model = lib.models.load("chen")          # doctest: +SKIP
    """
    from lib.models import build

    weights, entry = load_checkpoint_weights(name, manifest_path)
    model = build(entry.get("architecture", name))
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {name!r} does not fit {type(model).__name__}: {err}") from err
    return model.to(device).eval()
