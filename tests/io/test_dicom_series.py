"""DICOM series: real scans against SimpleITK, exact round trips, series choice and bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage

from synthct.errors import ReadError, VolumeKindError, WriteError
from synthct.io import read_volume, write_volume
from synthct.io.atomic import PARTIAL_PREFIX
from synthct.io.dicom_series import list_series, read_dicom_series, write_dicom_series
from synthct.io.itk import sitk_to_array
from synthct.volume import (
    CTVolume,
    LabelMap,
    MRProtocol,
    MultiEchoMR,
    ScalarVolume,
    SyntheticCT,
)

PROTOCOL = MRProtocol((2.3, 4.6), repetition_time_ms=7.0, flip_angle_deg=15.0, field_strength_t=3.0)


def local_testdata(name: str) -> Path:
    """A file shipped inside pydicom (never downloaded)."""
    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom's test file {name} is missing"
    return Path(path)


def ct_array(shape: tuple[int, int, int] = (6, 5, 4)) -> np.ndarray:
    data = np.random.default_rng(0).integers(-1024, 2000, size=shape).astype(np.int16)
    data[0, 0, 0] = -1024
    return data


def mr_array(shape: tuple[int, int, int, int] = (2, 6, 5, 4)) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 4000, size=shape).astype(np.uint16)


def sitk_series(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(array [i, j, k], affine)`` of a folder as SimpleITK's ImageSeriesReader reads it."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return sitk_to_array(reader.Execute())


def dicom_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.dcm"))


def edit(path: Path, **values: object) -> None:
    ds = pydicom.dcmread(path)
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    ds.save_as(path)


# -- the real CT series ------------------------------------------------------------------------


def test_real_ct_series_matches_simpleitk(totalseg: Path) -> None:
    folder = totalseg / "example_ct_dicom"
    ct = read_dicom_series(folder)
    array, affine = sitk_series(folder)
    assert isinstance(ct, CTVolume) and not isinstance(ct, SyntheticCT)
    assert ct.spatial_shape == (512, 512, 20)
    np.testing.assert_allclose(ct.spacing_mm, (0.9765625, 0.9765625, 2.0), atol=1e-9)
    np.testing.assert_allclose(ct.affine, affine, atol=1e-6)
    np.testing.assert_array_equal(ct.array, array)
    assert ct.dtype == np.int16
    assert ct.value_range() == (-1024, 1839)


def test_list_series_on_real_folder(totalseg: Path) -> None:
    (info,) = list_series(totalseg / "example_ct_dicom")
    # The de-identified export blanked SeriesInstanceUID: its files still form one series.
    assert info.series_uid == ""
    assert (info.modality, info.description, info.n_files) == ("CT", "CT Body 3.0", 20)
    assert info.echo_times_ms == ()
    assert info.is_image


def test_read_volume_and_write_volume_dispatch_folders(totalseg: Path, tmp_path: Path) -> None:
    ct = read_volume(totalseg / "example_ct_dicom")
    assert isinstance(ct, CTVolume)
    out = write_volume(ct, tmp_path / "copy")
    assert out == tmp_path / "copy" and len(dicom_files(out)) == 20
    back = read_volume(out)
    np.testing.assert_array_equal(back.array, ct.array)
    np.testing.assert_allclose(back.affine, ct.affine, atol=1e-4)


def test_real_ct_with_readme_and_dicomdir_beside_it(totalseg: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ct"
    shutil.copytree(totalseg / "example_ct_dicom", folder)
    (folder / "README.txt").write_text("exported from PACS\n")
    shutil.copy(local_testdata("DICOMDIR"), folder / "DICOMDIR")
    assert [s.n_files for s in list_series(folder)] == [20]
    assert read_dicom_series(folder).spatial_shape == (512, 512, 20)


# -- round trips -------------------------------------------------------------------------------


def test_ct_round_trip_is_exact(tmp_path: Path, affine: np.ndarray) -> None:
    ct = CTVolume(ct_array(), affine)
    out = write_dicom_series(ct, tmp_path / "ct")
    back = read_dicom_series(out)
    assert type(back) is CTVolume
    np.testing.assert_array_equal(back.array, ct.array)
    np.testing.assert_allclose(back.affine, ct.affine, atol=1e-4)
    # What we write is what SimpleITK/GDCM see too, not only our own reader.
    array, sitk_affine = sitk_series(out)
    np.testing.assert_array_equal(array, ct.array)
    np.testing.assert_allclose(sitk_affine, ct.affine, atol=1e-4)


def test_multi_echo_round_trip_is_exact(tmp_path: Path, affine: np.ndarray) -> None:
    mr = MultiEchoMR(mr_array(), affine, protocol=PROTOCOL)
    out = write_dicom_series(mr, tmp_path / "mr")
    (info,) = list_series(out)
    assert (info.modality, info.n_files, info.echo_times_ms) == ("MR", 8, (2.3, 4.6))
    back = read_dicom_series(out)
    assert isinstance(back, MultiEchoMR)
    assert back.protocol == PROTOCOL
    np.testing.assert_array_equal(back.array, mr.array)
    np.testing.assert_allclose(back.affine, mr.affine, atol=1e-4)


def test_left_handed_affine_reads_back_with_k_along_the_normal(tmp_path: Path) -> None:
    # Axis k runs toward I, against the normal L x P = S of the slices' orientation.
    affine = np.diag([0.8, 0.9, -2.5, 1.0])
    affine[:3, 3] = (10.0, 20.0, 30.0)
    ct = CTVolume(ct_array(), affine)
    back = read_dicom_series(write_dicom_series(ct, tmp_path / "ct"))
    expected = affine.copy()
    expected[:3, 2] = (0.0, 0.0, 2.5)
    expected[:3, 3] = (10.0, 20.0, 30.0 - 3 * 2.5)  # the last written slice comes first
    np.testing.assert_allclose(back.affine, expected, atol=1e-9)
    np.testing.assert_array_equal(back.array, ct.array[:, :, ::-1])
    # Same voxels at the same places: each voxel's centre in LPS holds the same value.
    ijk = np.argwhere(np.ones(ct.spatial_shape, dtype=bool))
    where_back = np.rint(back.geometry.lps_to_index(ct.geometry.index_to_lps(ijk))).astype(int)
    np.testing.assert_array_equal(back.array[tuple(where_back.T)], ct.array[tuple(ijk.T)])


def test_fractional_hu_are_rounded(tmp_path: Path) -> None:
    hu = ct_array().astype(np.float32)
    ct = CTVolume(hu + np.float32(0.3), np.eye(4))
    back = read_dicom_series(write_dicom_series(ct, tmp_path / "ct"))
    assert back.dtype == np.int16
    np.testing.assert_array_equal(back.array, hu)


def test_float_mr_is_scaled_to_uint16_within_half_a_step(tmp_path: Path) -> None:
    data = np.random.default_rng(2).random((2, 4, 3, 3)) * 900.0
    data[0, 0, 0, 0] = 0.0
    mr = MultiEchoMR(data, np.eye(4), protocol=PROTOCOL)
    out = write_dicom_series(mr, tmp_path / "mr")
    ds = pydicom.dcmread(dicom_files(out)[0])
    slope = float(ds.RescaleSlope)
    assert (ds.BitsAllocated, ds.PixelRepresentation, float(ds.RescaleIntercept)) == (16, 0, 0.0)
    assert slope == pytest.approx(data.max() / 65535, rel=1e-9)
    back = read_dicom_series(out)
    assert back.dtype == np.float32
    assert np.abs(back.array - data).max() <= slope / 2 + 1e-4
    assert back.array[0, 0, 0, 0] == 0.0


def test_synthetic_ct_is_marked_and_reads_back_as_sct(tmp_path: Path) -> None:
    sct = SyntheticCT(ct_array(), np.eye(4))
    out = write_dicom_series(sct, tmp_path / "sct", series_description="BoneMRI-like")
    ds = pydicom.dcmread(dicom_files(out)[0])
    assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert "synthetic CT" in ds.SeriesDescription and "BoneMRI-like" in ds.SeriesDescription
    assert isinstance(read_dicom_series(out), SyntheticCT)
    assert type(read_dicom_series(out, kind="ct")) is CTVolume


def test_written_files_are_valid_dicom(tmp_path: Path) -> None:
    study = "1.2.826.0.1.3680043.8.498.1234"
    mr = MultiEchoMR(mr_array(), np.diag([0.7, 0.8, 2.0, 1.0]), protocol=PROTOCOL)
    out = write_dicom_series(mr, tmp_path / "mr", patient_id="P7", study_instance_uid=study)
    files = [pydicom.dcmread(p) for p in dicom_files(out)]
    assert all(pydicom.misc.is_dicom(p) for p in dicom_files(out))
    assert {ds.file_meta.TransferSyntaxUID for ds in files} == {ExplicitVRLittleEndian}
    assert {ds.SOPClassUID for ds in files} == {MRImageStorage}
    assert all(ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID for ds in files)
    assert len({ds.SOPInstanceUID for ds in files}) == 8
    assert {ds.StudyInstanceUID for ds in files} == {study}
    assert len({ds.SeriesInstanceUID for ds in files}) == 1
    assert len({ds.FrameOfReferenceUID for ds in files}) == 1
    assert sorted(int(ds.InstanceNumber) for ds in files) == list(range(1, 9))
    assert sorted((int(ds.EchoNumbers), float(ds.EchoTime)) for ds in files)[::4] == [
        (1, 2.3),
        (2, 4.6),
    ]
    ds = files[0]
    assert ds.PatientID == "P7" and (ds.Rows, ds.Columns) == (5, 6)
    assert [float(v) for v in ds.PixelSpacing] == [0.8, 0.7]  # between rows, then columns
    assert float(ds.SliceThickness) == float(ds.SpacingBetweenSlices) == 2.0
    assert (float(ds.RepetitionTime), float(ds.FlipAngle)) == (7.0, 15.0)
    assert float(ds.MagneticFieldStrength) == 3.0
    ct_file = pydicom.dcmread(
        dicom_files(write_dicom_series(CTVolume(ct_array(), np.eye(4)), tmp_path / "ct"))[0]
    )
    assert ct_file.SOPClassUID == CTImageStorage
    assert (ct_file.PixelRepresentation, float(ct_file.RescaleSlope)) == (1, 1.0)
    assert float(ct_file.RescaleIntercept) == -1024.0


# -- writing: refusals and atomicity -----------------------------------------------------------


def test_label_maps_and_scalar_maps_are_refused(tmp_path: Path) -> None:
    with pytest.raises(WriteError, match="DICOM SEG"):
        write_dicom_series(LabelMap(np.ones((3, 3, 3), np.uint8), np.eye(4)), tmp_path / "seg")
    with pytest.raises(WriteError, match="NIfTI"):
        write_dicom_series(ScalarVolume(np.ones((3, 3, 3)), np.eye(4)), tmp_path / "map")
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_needs_overwrite(tmp_path: Path) -> None:
    first = CTVolume(ct_array(), np.eye(4))
    out = write_dicom_series(first, tmp_path / "ct")
    second = CTVolume(ct_array() + 1, np.eye(4))
    with pytest.raises(WriteError, match="already exists"):
        write_dicom_series(second, out)
    np.testing.assert_array_equal(read_dicom_series(out).array, first.array)
    write_dicom_series(second, out, overwrite=True)
    np.testing.assert_array_equal(read_dicom_series(out).array, second.array)
    assert len(dicom_files(out)) == 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(PARTIAL_PREFIX)]


def test_invalid_uid_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(WriteError, match="StudyInstanceUID"):
        write_dicom_series(
            CTVolume(ct_array(), np.eye(4)), tmp_path / "ct", study_instance_uid="1.02.abc"
        )
    assert list(tmp_path.iterdir()) == []


def test_several_echoes_without_echo_times_are_refused(tmp_path: Path) -> None:
    with pytest.raises(WriteError, match="echo times"):
        write_dicom_series(MultiEchoMR(mr_array(), np.eye(4)), tmp_path / "mr")


# -- choosing a series, and kinds --------------------------------------------------------------


def test_several_series_must_be_chosen(tmp_path: Path) -> None:
    ct_file, mr_file = local_testdata("CT_small.dcm"), local_testdata("MR_small.dcm")
    shutil.copy(ct_file, tmp_path / "a.dcm")
    shutil.copy(mr_file, tmp_path / "b.dcm")
    ct_uid = pydicom.dcmread(ct_file).SeriesInstanceUID
    mr_uid = pydicom.dcmread(mr_file).SeriesInstanceUID
    with pytest.raises(ReadError, match="2 image series") as err:
        read_dicom_series(tmp_path)
    message = str(err.value)
    assert ct_uid in message and mr_uid in message
    assert "CT" in message and "MR" in message and "1 file" in message
    assert "series_uid=" in message and "--series" in message

    ct = read_dicom_series(tmp_path, series_uid=ct_uid)
    ds = pydicom.dcmread(ct_file)
    assert type(ct) is CTVolume and ct.spatial_shape == (128, 128, 1)
    np.testing.assert_array_equal(ct.array[:, :, 0], ds.pixel_array.T.astype(int) - 1024)
    assert ct.spacing_mm[2] == 5.0  # one slice: SliceThickness
    mr = read_dicom_series(tmp_path, series_uid=mr_uid)
    assert isinstance(mr, MultiEchoMR) and mr.n_echoes == 1
    assert mr.protocol is not None and mr.protocol.echo_times_ms == (240.0,)
    with pytest.raises(ReadError, match="no series with UID"):
        read_dicom_series(tmp_path, series_uid="1.2.3")


def test_interleaved_echoes_in_one_series_are_split_by_echo_time(tmp_path: Path) -> None:
    source = pydicom.dcmread(local_testdata("MR_small.dcm"))
    base = source.pixel_array.astype(np.int16)
    normal = np.cross(
        np.array(source.ImageOrientationPatient[:3], float),
        np.array(source.ImageOrientationPatient[3:], float),
    )
    origin = np.array(source.ImagePositionPatient, float)
    expected = np.zeros((2, 64, 64, 3), np.int16)
    # File names and instance numbers interleave the echoes: slice 0 TE1, slice 0 TE2, ...
    for k in (2, 0, 1):
        for e, te in enumerate((2.3, 4.6)):
            pixels = (base // (e + 1) + 10 * k).astype(np.int16)
            expected[e, :, :, k] = pixels.T
            ds = source.copy()
            ds.EchoTime, ds.EchoNumbers = te, e + 1
            ds.InstanceNumber = 2 * k + e + 1
            ds.SOPInstanceUID = pydicom.uid.generate_uid()
            ds.ImagePositionPatient = [f"{v:.4f}" for v in origin + 0.8 * k * normal]
            ds.PixelData = pixels.tobytes()
            ds.save_as(tmp_path / f"IM{2 * k + e:03d}")
    (info,) = list_series(tmp_path)
    assert info.echo_times_ms == (2.3, 4.6) and info.n_files == 6
    mr = read_dicom_series(tmp_path)
    assert isinstance(mr, MultiEchoMR)
    assert mr.echo_times_ms == (2.3, 4.6)
    assert mr.protocol is not None and mr.protocol.repetition_time_ms == 4000.0
    np.testing.assert_array_equal(mr.array, expected)
    np.testing.assert_allclose(mr.spacing_mm, (0.3125, 0.3125, 0.8), atol=1e-4)


def test_mr_read_as_ct_fails_the_hu_check(tmp_path: Path) -> None:
    shutil.copy(local_testdata("MR_small.dcm"), tmp_path / "mr.dcm")
    with pytest.raises(VolumeKindError, match="Hounsfield"):
        read_dicom_series(tmp_path, kind="ct")
    assert isinstance(read_dicom_series(tmp_path, kind="ct", check_hu=False), CTVolume)


def test_multi_echo_mr_cannot_be_read_as_ct(tmp_path: Path) -> None:
    out = write_dicom_series(MultiEchoMR(mr_array(), np.eye(4), protocol=PROTOCOL), tmp_path / "mr")
    with pytest.raises(VolumeKindError, match="2 echoes"):
        read_dicom_series(out, kind="ct")


def test_compressed_pixels_pydicom_cannot_decode_are_read_by_gdcm(tmp_path: Path) -> None:
    # JPEG-LS needs pylibjpeg in pydicom; SimpleITK's GDCM decodes it.
    shutil.copy(local_testdata("MR_small_jpeg_ls_lossless.dcm"), tmp_path / "jls.dcm")
    mr = read_dicom_series(tmp_path)
    plain = pydicom.dcmread(local_testdata("MR_small.dcm")).pixel_array
    np.testing.assert_array_equal(mr.array[0, :, :, 0], plain.T)


# -- damaged or irregular series ---------------------------------------------------------------


def test_empty_folder_and_folder_without_dicom(tmp_path: Path) -> None:
    with pytest.raises(ReadError, match="no DICOM"):
        read_dicom_series(tmp_path)
    (tmp_path / "README").write_text("nothing here\n")
    assert list_series(tmp_path) == []
    with pytest.raises(ReadError, match="no DICOM"):
        read_dicom_series(tmp_path)
    with pytest.raises(ReadError, match="no such folder"):
        list_series(tmp_path / "missing")


@pytest.mark.parametrize("keep_bytes", [300, 60_000])
def test_truncated_file_is_named(totalseg: Path, tmp_path: Path, keep_bytes: int) -> None:
    folder = tmp_path / "ct"
    shutil.copytree(totalseg / "example_ct_dicom", folder)
    victim = sorted(folder.iterdir())[7]
    victim.write_bytes(victim.read_bytes()[:keep_bytes])
    for reader in (list_series, read_dicom_series):
        with pytest.raises(ReadError, match="truncated or corrupt") as err:
            reader(folder)
        assert victim.name in str(err.value)


def test_truncated_uncompressed_pixel_data_is_named(tmp_path: Path) -> None:
    out = write_dicom_series(CTVolume(ct_array((40, 40, 3)), np.eye(4)), tmp_path / "ct")
    victim = dicom_files(out)[1]
    victim.write_bytes(victim.read_bytes()[:-100])
    with pytest.raises(ReadError, match="cut short") as err:
        list_series(out)
    assert victim.name in str(err.value)


@pytest.fixture
def ct_series(tmp_path: Path) -> Path:
    """A written 6-slice CT series (2 mm apart, positions z = 0, 2, ..., 10)."""
    return write_dicom_series(
        CTVolume(ct_array((4, 4, 6)), np.eye(4) * [1, 1, 2, 1]), tmp_path / "ct"
    )


def test_missing_slice_is_reported(ct_series: Path) -> None:
    files = dicom_files(ct_series)
    files[3].unlink()
    with pytest.raises(ReadError, match=r"1 slice.*missing") as err:
        read_dicom_series(ct_series)
    assert files[2].name in str(err.value) and files[4].name in str(err.value)


def test_duplicate_position_is_reported(ct_series: Path) -> None:
    files = dicom_files(ct_series)
    edit(files[4], ImagePositionPatient=[0, 0, 6], SOPInstanceUID=pydicom.uid.generate_uid())
    with pytest.raises(ReadError, match="share a position"):
        read_dicom_series(ct_series)


def test_uneven_spacing_is_reported(ct_series: Path) -> None:
    edit(dicom_files(ct_series)[5], ImagePositionPatient=[0, 0, 10.7])
    with pytest.raises(ReadError, match="uneven slice spacing"):
        read_dicom_series(ct_series)


def test_gantry_tilt_is_reported(ct_series: Path) -> None:
    for k, path in enumerate(dicom_files(ct_series)):
        edit(path, ImagePositionPatient=[0, 0.35 * k, 2 * k])
    with pytest.raises(ReadError, match="not stacked along their normal"):
        read_dicom_series(ct_series)


def test_echo_with_a_slice_missing_is_reported(tmp_path: Path) -> None:
    out = write_dicom_series(MultiEchoMR(mr_array(), np.eye(4), protocol=PROTOCOL), tmp_path / "mr")
    dicom_files(out)[-1].unlink()  # the last slice of the second echo
    with pytest.raises(ReadError, match=r"TE 4\.6 ms is on another grid"):
        read_dicom_series(out)
