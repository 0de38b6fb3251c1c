"""Write small CT DICOM series for the tests (the tests make their own files; nothing is fetched)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def write_ct_slice(path: Path, hu: np.ndarray, z_mm: float, series_uid: str,
                   pixel_mm: float = 0.7, thickness_mm: float = 2.0, drop: tuple[str, ...] = ()):
    """One CT slice at table position ``z_mm`` with slope 1 and intercept -1024."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = "CT", series_uid, "1.2.3"
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-100.0, -100.0, float(z_mm)]
    ds.PixelSpacing = [pixel_mm, pixel_mm]
    ds.SliceThickness = thickness_mm
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.Rows, ds.Columns = hu.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = np.round(hu + 1024).astype(np.int16).tobytes()
    for keyword in drop:
        delattr(ds, keyword)
    ds.save_as(path, enforce_file_format=True)


def write_series(folder: Path, hu_slices: np.ndarray, spacing_mm: float = 2.0,
                 series_uid: str | None = None, **kwargs) -> str:
    """Write slices to ``folder`` with file names in shuffled order; returns the series UID."""
    folder.mkdir(parents=True, exist_ok=True)
    uid = series_uid or generate_uid()
    order = np.random.default_rng(0).permutation(len(hu_slices))
    for name, k in enumerate(order):
        write_ct_slice(folder / f"IM{name:04d}.dcm", hu_slices[k], z_mm=k * spacing_mm,
                       series_uid=uid, **kwargs)
    return uid

