"""Read a CT DICOM file, or a folder holding one series, as mu in mm^-1.

Slices are sorted along the patient axis by projecting ``ImagePositionPatient`` on the slice
normal (from ``ImageOrientationPatient``); pixel values are rescaled to HU with ``RescaleSlope``
and ``RescaleIntercept`` and converted with :data:`lib.ct.units.MU_WATER`. Anything that would make
the result wrong (several series in one folder, a missing tag, an unreadable file, unequal slice
spacing or image sizes) raises :class:`DicomError` naming the file and the problem.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import torch
from pydicom.errors import InvalidDicomError

from lib.ct.units import hu_to_mu


class DicomError(ValueError):
    """A DICOM input that cannot be read as one CT series."""


def read_dicom(path: str | Path) -> tuple[torch.Tensor, tuple[float, float, float]]:
    """Read ``path`` (a file, or a folder of one series) as ``(mu, (dz, dy, dx))``.

    Returns ``mu``, float32 (S, H, W) in mm^-1, slices in increasing position along the patient
    axis, and the spacing in mm. For a single file ``dz`` is ``SpacingBetweenSlices`` or else
    ``SliceThickness``.

    Example::

        >>> from pydicom.data import get_testdata_file
        >>> mu, spacing = read_dicom(get_testdata_file("CT_small.dcm"))
        >>> mu.shape
        torch.Size([1, 128, 128])
    """
    path = Path(path)
    if not path.exists():
        raise DicomError(f"{path}: no such file or folder")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    files = [f for f in files if not f.name.startswith(".")]
    if not files:
        raise DicomError(f"{path}: the folder holds no files")
    datasets = [_read(f) for f in files]
    series = {}
    for f, ds in zip(files, datasets):
        series.setdefault(str(ds.get("SeriesInstanceUID", "<none>")), []).append(f.name)
    if len(series) > 1:
        listing = "; ".join(f"{uid}: {len(names)} files, e.g. {names[0]}" for uid, names in series.items())
        raise DicomError(f"{path}: holds {len(series)} series ({listing}); "
                         "point read_dicom at a folder with one series")

    if len(datasets) == 1:
        ds, f = datasets[0], files[0]
        dz = ds.get("SpacingBetweenSlices") or _require(ds, f, "SliceThickness")
        order, dz = [0], float(dz)
    else:
        order, dz = _sort_along_axis(files, datasets)
    slices = [_to_hu(files[i], datasets[i]) for i in order]
    shapes = {s.shape for s in slices}
    if len(shapes) > 1:
        raise DicomError(f"{path}: slices differ in size {sorted(shapes)}")
    dy, dx = (float(v) for v in _require(datasets[order[0]], files[order[0]], "PixelSpacing"))
    mu = hu_to_mu(torch.from_numpy(np.stack(slices)).float())
    return mu, (dz, dy, dx)


def _read(path: Path) -> pydicom.Dataset:
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, EOFError) as err:
        raise DicomError(f"{path}: not a readable DICOM file ({err})") from err
    if "PixelData" not in ds:
        raise DicomError(f"{path}: has no PixelData (not an image)")
    return ds


def _require(ds: pydicom.Dataset, path: Path, keyword: str):
    value = ds.get(keyword)
    if value is None or value == "":
        raise DicomError(f"{path}: missing DICOM tag {keyword}")
    return value


def _to_hu(path: Path, ds: pydicom.Dataset) -> np.ndarray:
    slope = float(_require(ds, path, "RescaleSlope"))
    intercept = float(_require(ds, path, "RescaleIntercept"))
    try:
        pixels = ds.pixel_array
    except Exception as err:  # compressed data without a decoder, truncated pixels, ...
        raise DicomError(f"{path}: pixel data cannot be decoded ({err})") from err
    if pixels.ndim != 2:
        raise DicomError(f"{path}: expected one 2-D frame, got pixel data of shape {pixels.shape}")
    return pixels.astype(np.float64) * slope + intercept


def _sort_along_axis(files, datasets) -> tuple[list[int], float]:
    """Order of the slices along the slice normal, and their (uniform) spacing."""
    orientation = np.asarray(_require(datasets[0], files[0], "ImageOrientationPatient"), float)
    normal = np.cross(orientation[:3], orientation[3:])
    positions = np.array([np.dot(normal, np.asarray(_require(ds, f, "ImagePositionPatient"), float))
                          for f, ds in zip(files, datasets)])
    order = list(np.argsort(positions))
    steps = np.diff(positions[order])
    if np.any(steps < 1e-3):
        i = int(np.argmin(steps))
        raise DicomError(f"{files[order[i]]} and {files[order[i + 1]]}: two slices at the same "
                         "position; the folder may hold duplicates")
    if np.ptp(steps) > 0.01 * np.median(steps) + 1e-3:
        raise DicomError(f"{files[order[0]].parent}: slice spacing is not uniform "
                         f"(from {steps.min():.3f} to {steps.max():.3f} mm)")
    return order, float(np.median(steps))
