"""read_dicom on files the tests write, on pydicom's real CT slice, and on every bad input."""

import numpy as np
import pytest
import torch
from pydicom.data import get_testdata_file

from dicom_files import write_ct_slice, write_series
from lib.ct import MU_WATER, DicomError, hu_to_mu, read_dicom


def ramp_volume(n=5):
    """Slice k is uniform at 100 k HU, so the order can be read off the values."""
    return np.stack([np.full((16, 20), 100.0 * k) for k in range(n)])


def test_round_trip_of_a_series_written_in_shuffled_order(tmp_path):
    hu = ramp_volume()
    write_series(tmp_path, hu, spacing_mm=2.5, pixel_mm=0.7)
    mu, spacing = read_dicom(tmp_path)
    assert mu.shape == (5, 16, 20) and mu.dtype == torch.float32
    assert spacing == pytest.approx((2.5, 0.7, 0.7))
    assert torch.allclose(mu, hu_to_mu(torch.from_numpy(hu)).float(), atol=1e-6)


def test_single_file_and_the_real_ct_slice(tmp_path):
    write_ct_slice(tmp_path / "one.dcm", np.zeros((8, 8)), z_mm=0, series_uid="1.2", thickness_mm=1.25)
    mu, spacing = read_dicom(tmp_path / "one.dcm")
    assert spacing == pytest.approx((1.25, 0.7, 0.7))
    assert torch.allclose(mu, torch.full((1, 8, 8), MU_WATER))
    real, (_, dy, dx) = read_dicom(get_testdata_file("CT_small.dcm"))
    assert real.shape == (1, 128, 128)
    assert 0.5 < dy == dx < 1.0
    assert 0.0 <= float(real.min()) and float(real.max()) < 0.1  # tissue and bone, in mm^-1


def test_mixed_series_are_refused(tmp_path):
    write_series(tmp_path, ramp_volume(2))
    write_series(tmp_path / "other", ramp_volume(2))
    with pytest.raises(DicomError, match="holds 2 series"):
        read_dicom(tmp_path)


@pytest.mark.parametrize("tag", ["RescaleSlope", "RescaleIntercept", "PixelSpacing",
                                 "ImagePositionPatient"])
def test_missing_tags_are_named(tmp_path, tag):
    write_series(tmp_path, ramp_volume(3), drop=(tag,))
    with pytest.raises(DicomError, match=f"missing DICOM tag {tag}"):
        read_dicom(tmp_path)


def test_unreadable_file_is_named(tmp_path):
    write_series(tmp_path, ramp_volume(2))
    (tmp_path / "notes.dcm").write_bytes(b"this is not DICOM")
    with pytest.raises(DicomError, match="notes.dcm: not a readable DICOM file"):
        read_dicom(tmp_path)


def test_uneven_or_duplicate_slices_are_refused(tmp_path):
    uid = "1.2.3.4"
    for k, z in enumerate([0.0, 2.0, 5.0]):
        write_ct_slice(tmp_path / f"a{k}.dcm", np.zeros((8, 8)), z_mm=z, series_uid=uid)
    with pytest.raises(DicomError, match="not uniform"):
        read_dicom(tmp_path)
    write_ct_slice(tmp_path / "a3.dcm", np.zeros((8, 8)), z_mm=5.0, series_uid=uid)
    with pytest.raises(DicomError, match="same position"):
        read_dicom(tmp_path)


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(DicomError, match="no such file"):
        read_dicom(tmp_path / "nothing")
    with pytest.raises(DicomError, match="no files"):
        read_dicom(tmp_path)


def test_the_real_slices_of_pydicom_data_are_read():
    """Chapters 2 and 3 use these slices; the abdomen is a lone slice without a thickness."""
    import warnings

    from lib.ct.datasets import REAL_SLICES, real_slice_file

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Invalid value for VR UI")
        read = {name: read_dicom(real_slice_file(name)) for name in REAL_SLICES}
    for mu, (dz, dy, dx) in read.values():
        assert mu.shape == (1, 512, 512) and 0.2 < dy == dx < 1.0
        assert float(mu.min()) >= 0 and 1.5 * MU_WATER < float(mu.max()) < 0.1  # bone is there
    assert np.isnan(read["abdomen"][1][0]) and read["head"][1][0] > 0
    with pytest.raises(ValueError, match="unknown real slice"):
        real_slice_file("knee")
