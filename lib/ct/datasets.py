"""Paired low-dose / normal-dose images for training and evaluating denoisers.

A :class:`DoseProtocol` fixes the scanner and the two doses (by default the seed paper's, from
:data:`lib.ct.protocol.PAPER`). Ground-truth images come from the phantom (:func:`phantom_pairs`, one
phantom per seed, splits on disjoint seed ranges) or from a user's DICOM series
(:func:`dicom_pairs`, which treats the real images as ground truth, as the seed paper does with
LIDC); a user with real low/normal-dose pairs (Mayo) loads them with :func:`measured_pairs`.
:data:`REAL_SLICES` names three real CT slices that the ``pydicom-data`` package ships (found
offline by :func:`real_slice_file`); the book uses them for evaluation only, never for training.
:class:`PatchDataset` draws reproducible random patches from any of them.

Simulated pairs are deterministic in their seeds and cached on disk under
``lib.paths.cache_dir("datasets")``; a cache file is written to a temporary name and renamed, so
two processes building the same cache both end with a complete file. Large sets are simulated in
one worker process per available core; every example depends on its own seed alone, so the result
is the same whatever the number of workers.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import multiprocessing
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from lib.ct.dicom import read_dicom
from lib.ct.phantom import thorax_phantom, thorax_slab
from lib.ct.protocol import PAPER
from lib.ct.scanner import Scanner
from lib.device import available_cores
from lib.paths import cache_dir
from lib.storage import atomic_save

#: Disjoint phantom-seed ranges of the three splits.
SPLIT_OFFSETS = {"train": 0, "validation": 1_000_000, "test": 2_000_000}
#: Real 512 x 512 CT slices shipped by ``pydicom-data``: an abdomen (a public pancreas CT
#: collection), a neck and a head (a public head CT collection). Evaluation only.
REAL_SLICES = {"abdomen": "explicit_VR-UN.dcm", "neck": "bad_sequence.dcm", "head": "693_UNCR.dcm"}

_CACHE_VERSION = 1  # bump when the phantom or the scanner changes what a seed produces
#: Sets smaller than this many pixels are simulated in this process: below it, starting worker
#: processes (a few seconds each) costs more than it saves.
PARALLEL_FROM_PIXELS = 4 * 512 * 512


@dataclass(frozen=True)
class DoseProtocol:
    """How pairs are simulated: scanner geometry, FBP filter, the two doses, slices per example."""

    size: int = PAPER.size
    pixel_mm: float = PAPER.pixel_mm
    n_angles: int = PAPER.n_angles
    filter: str = "ramp"
    normal_I0: float = PAPER.normal_I0
    low_I0: float = PAPER.low_I0
    slab: int = 1  # adjacent slices per example (odd); 1 gives 2-D images

    def __post_init__(self):
        if self.slab < 1 or self.slab % 2 == 0:
            raise ValueError(f"slab must be a positive odd number of slices, got {self.slab}")
        if not 0 < self.low_I0 <= self.normal_I0:
            raise ValueError(f"need 0 < low_I0 <= normal_I0, got {self.low_I0}, {self.normal_I0}")

    def scanner(self) -> Scanner:
        return Scanner(self.size, self.pixel_mm, self.n_angles, filter=self.filter)


@dataclass
class PairedImages:
    """Co-registered images (N, H, W), or slabs (N, D, H, W), in mm^-1.

    ``truth`` is the noiseless image when it is known (simulation), else the normal-dose image.
    """

    low: torch.Tensor
    normal: torch.Tensor
    truth: torch.Tensor
    seeds: list[int]

    def __len__(self) -> int:
        return len(self.low)


def split_seeds(split: str, n: int) -> list[int]:
    """The phantom seeds of the first ``n`` examples of ``split`` (train, validation or test)."""
    if split not in SPLIT_OFFSETS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_OFFSETS)}")
    if not 0 <= n < 1_000_000:
        raise ValueError(f"n must be between 0 and 999999, got {n}")
    return [SPLIT_OFFSETS[split] + i for i in range(n)]


def simulate_pairs(truth: torch.Tensor, protocol: DoseProtocol, seeds: list[int],
                   progress: bool = True, workers: int | None = None) -> PairedImages:
    """Scan each ground-truth image (or slab) at both doses; example k's noise comes from seeds[k].

    ``workers``: processes to simulate in (None: one per available core for a large set, see
    :data:`PARALLEL_FROM_PIXELS`)."""
    if len(seeds) != len(truth):
        raise ValueError(f"need one seed per image: {len(seeds)} seeds for {len(truth)} images")
    normal, low = torch.empty_like(truth), torch.empty_like(truth)
    items = [(image.numpy(), seed) for image, seed in zip(truth, seeds)]
    for k, scans in enumerate(_map(functools.partial(_scan_pair, protocol), items,
                                   _workers(workers, protocol, len(truth)), "scanning", progress)):
        normal[k], low[k] = map(torch.from_numpy, scans)
    return PairedImages(low=low, normal=normal, truth=truth, seeds=list(seeds))


def phantom_pairs(split: str, n: int, protocol: DoseProtocol = DoseProtocol(),
                  cache: bool = True, progress: bool = True,
                  workers: int | None = None) -> PairedImages:
    """``n`` simulated pairs of ``split``, from phantoms with the split's seeds (cached on disk).

    ``workers``: processes to simulate in (None: one per available core for a large set). The
    workers import the calling script, so a script must call this under
    ``if __name__ == "__main__":``."""
    seeds = split_seeds(split, n)
    path = None
    if cache:
        key = json.dumps({"v": _CACHE_VERSION, "protocol": dataclasses.asdict(protocol),
                          "seeds": [seeds[0], len(seeds)] if seeds else []}, sort_keys=True)
        path = cache_dir("datasets") / f"{split}-{n}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"
        if path.exists():
            try:
                return PairedImages(**torch.load(path, weights_only=True))
            except Exception as err:  # any failure to read it means the file is damaged
                raise ValueError(f"the cached dataset {path} cannot be read "
                                 f"({type(err).__name__}); it is damaged: delete it and it is "
                                 "simulated again") from err
    shape = (n, protocol.size, protocol.size) if protocol.slab == 1 else \
        (n, protocol.slab, protocol.size, protocol.size)
    truth, normal, low = (torch.empty(shape, dtype=torch.float32) for _ in range(3))
    for k, example in enumerate(_map(functools.partial(_phantom_pair, protocol), [(s,) for s in seeds],
                                     _workers(workers, protocol, n), f"{split} phantoms", progress)):
        truth[k], normal[k], low[k] = map(torch.from_numpy, example)
    pairs = PairedImages(low=low, normal=normal, truth=truth, seeds=list(seeds))
    if path is not None:
        atomic_save(dataclasses.asdict(pairs), path)
    return pairs


def dicom_pairs(folder: str | Path, protocol: DoseProtocol = DoseProtocol(), seed: int = 0,
                progress: bool = True) -> PairedImages:
    """Simulated pairs with the slices of a real DICOM series as ground truth.

    Each slice is resampled to the protocol's pixel size and centre-cropped or padded (with air)
    to its grid. Slabs take ``protocol.slab`` adjacent slices around each slice that has them.
    """
    mu, (_, dy, dx) = read_dicom(folder)
    images = fit_to_grid(mu, (dy, dx), protocol.size, protocol.pixel_mm)
    if protocol.slab > 1:
        h = protocol.slab // 2
        if len(images) < protocol.slab:
            raise ValueError(f"{folder}: {len(images)} slices, fewer than a slab of {protocol.slab}")
        images = torch.stack([images[k - h: k + h + 1] for k in range(h, len(images) - h)])
    seeds = [seed * 1_000_003 + k for k in range(len(images))]
    return simulate_pairs(images, protocol, seeds, progress)


def real_slice_file(name: str) -> Path:
    """The local file of :data:`REAL_SLICES` ``name``, from the installed ``pydicom-data``."""
    from pydicom.data import get_testdata_file

    if name not in REAL_SLICES:
        raise ValueError(f"unknown real slice {name!r}; choose one of {', '.join(REAL_SLICES)}")
    path = get_testdata_file(REAL_SLICES[name], download=False)
    if path is None:
        raise FileNotFoundError(f"{REAL_SLICES[name]} is not installed; install the pinned "
                                "pydicom-data from requirements.txt (nothing is downloaded)")
    return Path(path)


def read_real_slice(name: str) -> tuple[torch.Tensor, tuple[float, float, float]]:
    """:data:`REAL_SLICES` ``name`` read with :func:`lib.ct.read_dicom`: the (H, W) mu slice and
    its spacing ``(dz, dy, dx)`` in mm (``dz`` NaN when the lone slice records no thickness).

    One of the files carries a malformed UID; pydicom's warning about it is silenced here, and
    only that warning.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Invalid value for VR UI")
        mu, spacing = read_dicom(real_slice_file(name))
    return mu[0], spacing


def measured_pairs(low_folder: str | Path, normal_folder: str | Path) -> PairedImages:
    """Real low-dose and normal-dose reconstructions of the same slices (for example Mayo data).

    There is no ground truth: ``truth`` is the normal-dose series.
    """
    low, low_spacing = read_dicom(low_folder)
    normal, normal_spacing = read_dicom(normal_folder)
    if low.shape != normal.shape or not np.allclose(low_spacing, normal_spacing, rtol=1e-3):
        raise ValueError(f"{low_folder} {tuple(low.shape)} at {low_spacing} mm and {normal_folder} "
                         f"{tuple(normal.shape)} at {normal_spacing} mm are not the same slices")
    return PairedImages(low=low, normal=normal, truth=normal, seeds=list(range(len(low))))


def fit_to_grid(mu: torch.Tensor, spacing_yx: tuple[float, float], size: int,
                pixel_mm: float) -> torch.Tensor:
    """Resample (S, H, W) images of ``spacing_yx`` mm to ``pixel_mm``, then crop or pad to size."""
    scale = (spacing_yx[0] / pixel_mm, spacing_yx[1] / pixel_mm)
    shape = [max(1, round(n * s)) for n, s in zip(mu.shape[-2:], scale)]
    resampled = F.interpolate(mu[:, None], size=shape, mode="bilinear", align_corners=False,
                              antialias=min(scale) < 1)[:, 0]
    out = torch.zeros(len(mu), size, size, dtype=mu.dtype)
    src, dst = [], []
    for n in shape:
        start = (n - size) // 2
        src.append(slice(max(start, 0), max(start, 0) + min(n, size)))
        dst.append(slice(max(-start, 0), max(-start, 0) + min(n, size)))
    out[:, dst[0], dst[1]] = resampled[:, src[0], src[1]]
    return out


class PatchDataset(torch.utils.data.Dataset):
    """``n_patches`` random (low, normal, truth) patches, each (1, p, p) or (1, D, p, p).

    Patch ``i`` is fixed by ``(seed, i)``, so any epoch, worker count or process sees the same
    patches. Patches that are mostly air (mean truth below ``min_mean`` mm^-1) are redrawn.
    """

    def __init__(self, pairs: PairedImages, patch_size: int, n_patches: int, seed: int = 0,
                 min_mean: float = 0.005):
        height, width = pairs.low.shape[-2:]
        if not 1 <= patch_size <= min(height, width):
            raise ValueError(f"patch_size {patch_size} does not fit images of {height}x{width}")
        self.pairs, self.patch_size, self.n_patches = pairs, patch_size, n_patches
        self.seed, self.min_mean = seed, min_mean

    def __len__(self) -> int:
        return self.n_patches

    def __getitem__(self, i: int):
        if not 0 <= i < self.n_patches:
            raise IndexError(i)
        rng = np.random.default_rng([self.seed, i])
        p = self.patch_size
        height, width = self.pairs.low.shape[-2:]
        for _ in range(20):
            k = int(rng.integers(len(self.pairs)))
            r, c = int(rng.integers(height - p + 1)), int(rng.integers(width - p + 1))
            window = (k, ..., slice(r, r + p), slice(c, c + p))
            if self.pairs.truth[window].mean() >= self.min_mean:
                break
        return tuple(t[window].unsqueeze(0) for t in (self.pairs.low, self.pairs.normal, self.pairs.truth))


def _workers(workers: int | None, protocol: DoseProtocol, n: int) -> int:
    """The worker processes asked for, else this process's share of the cores (one per core,
    divided among the ranks of a distributed run) for a large set, else 1."""
    if workers is not None:
        if isinstance(workers, bool) or int(workers) != workers or workers < 1:
            raise ValueError(f"workers must be a whole number of at least 1, got {workers!r}")
        return int(workers)
    if n * protocol.slab * protocol.size ** 2 < PARALLEL_FROM_PIXELS:
        return 1
    return max(1, available_cores() // int(os.environ.get("WORLD_SIZE", "1")))


def _map(fn: Callable, items: Sequence[tuple], workers: int, desc: str,
         progress: bool) -> Iterator:
    """``fn(*item)`` for each item, in order, in ``workers`` spawned processes when more than one.

    Items and results travel as numpy arrays, which pickle by value: torch tensors would go
    through shared memory, a file per tensor."""
    bar = functools.partial(tqdm, total=len(items), desc=desc, disable=not progress, leave=False)
    workers = min(workers, len(items))
    if workers <= 1:
        yield from bar(fn(*item) for item in items)
        return
    context = multiprocessing.get_context("spawn")  # fork is unsafe once torch has threads
    with ProcessPoolExecutor(workers, mp_context=context, initializer=torch.set_num_threads,
                             initargs=(1,)) as pool:
        try:
            yield from bar(pool.map(fn, *zip(*items)))
        except BrokenProcessPool as error:
            raise RuntimeError(
                f"the {workers} simulation worker processes died. Called from a script? Each "
                "worker starts by importing the calling script, so the script must call lib "
                "under `if __name__ == \"__main__\":`, or pass workers=1 to simulate in this "
                "process. A worker can also die for lack of memory.") from error


@functools.cache
def _scanner(protocol: DoseProtocol) -> Scanner:
    return protocol.scanner()


def _scan_pair(protocol: DoseProtocol, truth: np.ndarray, seed: int) -> tuple[np.ndarray, ...]:
    """(normal, low): ``truth`` scanned at both doses with the noise of ``seed``."""
    scanner, truth = _scanner(protocol), torch.from_numpy(truth)
    return (scanner.scan(truth, protocol.normal_I0, seed=2 * seed).numpy(),
            scanner.scan(truth, protocol.low_I0, seed=2 * seed + 1).numpy())


def _phantom_pair(protocol: DoseProtocol, seed: int) -> tuple[np.ndarray, ...]:
    """(truth, normal, low) of the phantom of ``seed``."""
    truth = _phantom(protocol, seed).numpy()
    return (truth, *_scan_pair(protocol, truth, seed))


def _phantom(protocol: DoseProtocol, seed: int) -> torch.Tensor:
    if protocol.slab == 1:
        return thorax_phantom(protocol.size, protocol.pixel_mm, seed=seed)
    return thorax_slab(protocol.slab, protocol.size, protocol.pixel_mm, protocol.pixel_mm, seed=seed)
