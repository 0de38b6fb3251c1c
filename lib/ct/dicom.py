"""Read a CT DICOM file, or a folder holding one series, as mu in mm^-1.

Slices are sorted along the patient axis by projecting ``ImagePositionPatient`` on the slice
normal (from ``ImageOrientationPatient``); pixel values are rescaled to HU with ``RescaleSlope``
and ``RescaleIntercept`` and converted with :data:`lib.ct.units.MU_WATER`. Anything that would make
the result wrong (another modality than CT, several series in one folder, a missing tag, an
unreadable file, a rescale slope that is not a positive number, a pixel spacing or slice spacing
that is not positive, slices that differ in size, pixel spacing or orientation, unequal slice
spacing) raises :class:`DicomError` naming the file and the problem.
"""

from __future__ import annotations

import math
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
    axis, and the spacing in mm. For a single file ``dz`` is ``SpacingBetweenSlices``, else
    ``SliceThickness``, else NaN: a lone slice needs no slice spacing.

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

    for f, ds in zip(files, datasets):
        if ds.get("Modality", "CT") != "CT":
            raise DicomError(f"{f}: modality {ds.Modality!r}, not CT; read_dicom reads CT only "
                             "(its values are Hounsfield units)")
    if len(datasets) == 1:
        ds, f = datasets[0], files[0]
        dz = ds.get("SpacingBetweenSlices") or ds.get("SliceThickness")
        order, dz = [0], _positive(f, "slice spacing", dz) if dz not in (None, "") else math.nan
    else:
        order, dz = _sort_along_axis(files, datasets)
    slices = [_to_hu(files[i], datasets[i]) for i in order]
    shapes = {s.shape for s in slices}
    if len(shapes) > 1:
        raise DicomError(f"{path}: slices differ in size {sorted(shapes)}")
    spacings = {tuple(_positive(f, "PixelSpacing", v) for v in _require(ds, f, "PixelSpacing"))
                for f, ds in zip(files, datasets)}
    if len(spacings) > 1:
        raise DicomError(f"{path}: slices differ in pixel spacing {sorted(spacings)}; resample "
                         "them to one grid first")
    (dy, dx), = spacings
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


def _positive(path: Path, what: str, value) -> float:
    number = float(value)
    if not (math.isfinite(number) and number > 0):
        raise DicomError(f"{path}: {what} is {value}; it must be a positive number of mm")
    return number


def _to_hu(path: Path, ds: pydicom.Dataset) -> np.ndarray:
    slope = float(_require(ds, path, "RescaleSlope"))
    intercept = float(_require(ds, path, "RescaleIntercept"))
    if not (math.isfinite(slope) and slope > 0 and math.isfinite(intercept)):
        raise DicomError(f"{path}: RescaleSlope {slope} and RescaleIntercept {intercept} do not "
                         "map stored values to HU (the slope must be a positive number)")
    try:
        pixels = ds.pixel_array
    except Exception as err:  # compressed data without a decoder, truncated pixels, ...
        raise DicomError(f"{path}: pixel data cannot be decoded ({err})") from err
    if pixels.ndim != 2:
        raise DicomError(f"{path}: expected one 2-D frame, got pixel data of shape {pixels.shape}")
    return pixels.astype(np.float64) * slope + intercept


def _sort_along_axis(files, datasets) -> tuple[list[int], float]:
    """Order of the slices along the slice normal, and their (uniform) spacing."""
    orientations = [np.asarray(_require(ds, f, "ImageOrientationPatient"), float)
                    for f, ds in zip(files, datasets)]
    orientation = orientations[0]
    for f, other in zip(files, orientations):
        if not np.allclose(other, orientation, atol=1e-4):
            raise DicomError(f"{f}: orientation {other.tolist()} differs from {files[0].name}'s "
                             f"{orientation.tolist()}; one series must have one orientation")
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
