"""The registry of shipped checkpoints: ``data/manifest.json`` and the verified weights it lists.

Each manifest entry records how a checkpoint was made (exact command, data seeds, steps, wall time,
hardware, validation metrics), the scan protocol of its data (``scan``: grid, pixel size, views,
filter, doses), the sha256 of every shipped checkpoint it was trained from (``depends_on``: the
feature network of the perceptual loss, a transfer source, the denoiser an invariance sampler
explains) and its own sha256. :func:`read_weights` refuses a file whose checksum differs, one made
under another scan protocol than the book's (:data:`lib.ct.PAPER`), one whose sources have been
reshipped since, and a checkpoint of another kind than its caller loads (naming the loader to use).
Both
ship commands write through :func:`publish`; both loaders (:func:`lib.models.load` for denoisers,
:func:`lib.invariance.load_sampler` for invariance samplers) read through :func:`read_weights`.

:func:`publish` ships a checkpoint as one step. It writes the weights to ``NAME.pt.pending``, then
the manifest with the new entry (the commit point), then renames the pending file over
``NAME.pt``. Interrupted before the commit, the old pair is untouched; after it, the pending file
matches the manifest and :func:`read_weights` completes the rename. Manifest updates hold a lock
on the data folder and re-read the manifest inside it, so processes registering at the same time
never drop each other's entries.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import platform
from pathlib import Path

import torch

from lib.ct.protocol import PAPER
from lib.paths import DATA
from lib.storage import atomic_save, atomic_write_text, locked

MANIFEST = DATA / "manifest.json"

#: The loader of each kind of shipped checkpoint; an entry's kind is its architecture up to "-"
#: ("invariance-cinn" is an invariance sampler), any other architecture is a denoiser's.
LOADERS = {"invariance": "lib.invariance.load_sampler"}
DENOISER_LOADER = "lib.models.load"


class CheckpointError(RuntimeError):
    """A shipped checkpoint that is missing, altered or does not fit its model."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(path: Path = MANIFEST) -> dict:
    """The manifest as a dict (empty when there is none); a damaged one is refused by name."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({err}); restore it with "
                              f"`git checkout -- {path.name}` in its folder") from err
    broken = [name for name, entry in manifest.items()
              if not isinstance(entry, dict) or not {"file", "sha256"} <= set(entry)]
    if not isinstance(manifest, dict) or broken:
        raise CheckpointError(f"{path}: entries {broken} lack 'file' or 'sha256'; restore the "
                              "manifest from git")
    return manifest


def scan_record(size: int = PAPER.size, pixel_mm: float = PAPER.pixel_mm,
                n_angles: int = PAPER.n_angles, filter: str = "ramp",
                normal_I0: float = PAPER.normal_I0, low_I0: float = PAPER.low_I0) -> dict:
    """The scan protocol of a checkpoint's data as the manifest records it (defaults: the book's).

    Takes the fields of a :class:`lib.ct.datasets.DoseProtocol` but its ``slab`` (a slab
    network's depth is part of its architecture, not of the scan)."""
    return {"size": size, "pixel_mm": pixel_mm, "n_angles": n_angles, "filter": filter,
            "normal_I0": normal_I0, "low_I0": low_I0}


def scan_of(protocol) -> dict:
    """:func:`scan_record` of a :class:`lib.ct.datasets.DoseProtocol`."""
    fields = dataclasses.asdict(protocol)
    fields.pop("slab")
    return scan_record(**fields)


def dependencies(names, manifest_path: Path = MANIFEST) -> dict[str, str]:
    """``{name: sha256}`` of the shipped checkpoints ``names``, for an entry's ``depends_on``."""
    manifest = read_manifest(manifest_path)
    missing = [name for name in names if name not in manifest]
    if missing:
        raise CheckpointError(f"ship {', '.join(missing)} first: this checkpoint is trained from it")
    return {name: manifest[name]["sha256"] for name in names}


#: The vector instruction sets that decide which kernels a CPU build of torch runs, and so the
#: last bits of a sum: two CPUs that differ in them need not train the same run bit for bit.
SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


def cpu_record(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    """``{"cpu": model name, "simd": [flags of SIMD_FLAGS it has]}`` of this machine's CPU, read
    from ``cpuinfo`` (Linux); elsewhere the model is ``platform.processor()`` and simd is empty."""
    fields = {}
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    return {"cpu": fields.get("model name", platform.processor()),
            "simd": [flag for flag in SIMD_FLAGS if flag in flags]}


def machine_record(device: str | torch.device = "cpu") -> dict:
    """What fixes the last bits of a training run besides its settings: the machine and its CPU
    (:func:`cpu_record`), torch's thread count and version, and the device (with the GPU's name)."""
    device = torch.device(device)
    record = {"machine": platform.machine(), **cpu_record(), "threads": torch.get_num_threads(),
              "torch": str(torch.__version__), "device": str(device)}
    if device.type == "cuda":
        record["gpu"] = torch.cuda.get_device_name(device)
    return record


def _complete_entry(file: str, weights: Path, entry: dict, device: str) -> dict:
    return {"file": file, "sha256": sha256(weights), "scan": scan_record(), "depends_on": {},
            **entry,
            "hardware": machine_record(device) | {
                "cpu_count": os.cpu_count(), "processes": int(os.environ.get("WORLD_SIZE", "1"))},
            "trained": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}


def _write_entry(name: str, entry: dict, manifest_path: Path) -> None:
    """Re-read the manifest, set ``name`` and write it back (call inside :func:`locked`)."""
    manifest = read_manifest(manifest_path)
    manifest[name] = entry
    atomic_write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", Path(manifest_path))


def publish(name: str, state: dict, entry: dict, device: str,
            manifest_path: Path = MANIFEST) -> dict:
    """Ship ``state`` as ``NAME.pt`` next to the manifest with its ``entry``, as one step."""
    folder = Path(manifest_path).parent
    pending = folder / f"{name}.pt.pending"
    with locked(folder):
        atomic_save(state, pending)
        entry = _complete_entry(f"{name}.pt", pending, entry, device)
        _write_entry(name, entry, manifest_path)  # the commit point
        os.replace(pending, folder / entry["file"])
    return entry


def loader_of(entry: dict) -> str:
    """The function that loads a manifest entry's checkpoint (see :data:`LOADERS`)."""
    kind = str(entry.get("architecture", "")).split("-", 1)[0]
    return LOADERS.get(kind, DENOISER_LOADER)


def read_weights(name: str, loader: str, manifest_path: Path = MANIFEST) -> tuple[dict, dict]:
    """The verified state dict of shipped checkpoint ``name`` and its manifest entry.

    ``loader`` is the calling loader's name; a checkpoint of another kind is refused with the name
    of the loader that takes it and the names this one takes.
    """
    manifest = read_manifest(manifest_path)
    if name not in manifest:
        shipped = ", ".join(sorted(manifest)) or "none"
        raise CheckpointError(f"no shipped checkpoint named {name!r}; shipped: {shipped}")
    entry = manifest[name]
    if loader_of(entry) != loader:
        ours = ", ".join(n for n, e in sorted(manifest.items()) if loader_of(e) == loader)
        raise CheckpointError(f"{name!r} (architecture {entry.get('architecture')!r}) is not for "
                              f"{loader}: load it with {loader_of(entry)}({name!r}); {loader} "
                              f"takes {ours or 'none'}")
    _check_provenance(name, entry, manifest)
    path = Path(manifest_path).parent / entry["file"]
    pending = path.with_name(path.name + ".pending")
    if pending.exists() and sha256(pending) == entry["sha256"]:
        os.replace(pending, path)  # finish a publish interrupted after its commit point
    if not path.exists():
        raise CheckpointError(f"{path}: the manifest lists it but the file is missing")
    actual = sha256(path)
    if actual != entry["sha256"]:
        raise CheckpointError(f"{path}: sha256 {actual[:12]}... does not match the manifest's "
                              f"{entry['sha256'][:12]}...; the file is corrupted or was replaced. "
                              "Restore it from git or retrain with the command in the manifest.")
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state["model"], entry


def _check_provenance(name: str, entry: dict, manifest: dict) -> None:
    """Refuse a checkpoint made under another scan protocol than the book's, or from shipped
    checkpoints that have been reshipped since (its weights then describe data or sources the book
    no longer has)."""
    remedy = f"reship it: {entry.get('command') or 'its training command'} (see data/README.md)"
    scan, book = entry.get("scan"), scan_record()
    if scan != book:
        differ = (", ".join(f"{k} {scan.get(k)} (the book's: {book[k]})" for k in book
                            if scan.get(k) != book[k]) if isinstance(scan, dict)
                  else "no scan protocol recorded")
        raise CheckpointError(f"checkpoint {name!r} was trained on other scans than the book's "
                              f"protocol lib.ct.PAPER: {differ}; {remedy}")
    for source, digest in entry.get("depends_on", {}).items():
        now = manifest.get(source, {}).get("sha256")
        if now != digest:
            state = "is no longer shipped" if now is None else "has been reshipped since"
            raise CheckpointError(f"checkpoint {name!r} was made with {source!r} (its starting "
                                  f"weights, or the features of its losses and metrics), which "
                                  f"{state}; {remedy}")
