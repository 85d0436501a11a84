"""NIfTI, NRRD and MHA: exact round trips, sidecars, kind inference and bad input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from synthct.errors import ReadError, VolumeKindError, WriteError
from synthct.io import read_volume, write_volume
from synthct.io.atomic import PARTIAL_PREFIX, atomic_file
from synthct.io.image_files import sidecar_path
from synthct.volume import CTVolume, LabelMap, MRProtocol, MultiEchoMR, SyntheticCT

SUFFIXES = [".nii.gz", ".nii", ".nrrd", ".mha"]


def ct_array(shape: tuple[int, int, int] = (7, 6, 5)) -> np.ndarray:
    rng = np.random.default_rng(0)
    data = rng.integers(-1000, 2000, size=shape).astype(np.int16)
    data[0, 0, 0] = -1024
    return data


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_ct_round_trip_is_exact(tmp_path: Path, suffix: str, affine: np.ndarray) -> None:
    ct = CTVolume(ct_array(), affine)
    path = write_volume(ct, tmp_path / f"ct{suffix}")
    back = read_volume(path)
    assert isinstance(back, CTVolume)
    assert back.dtype == ct.dtype
    np.testing.assert_array_equal(back.array, ct.array)
    # NIfTI stores the affine in float32; NRRD and MHA in decimal text.
    np.testing.assert_allclose(back.affine, ct.affine, atol=1e-4)
    assert back.orientation_code == ct.orientation_code


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_multi_echo_round_trip_keeps_echoes_and_protocol(
    tmp_path: Path, suffix: str, affine: np.ndarray
) -> None:
    rng = np.random.default_rng(1)
    protocol = MRProtocol(
        (1.15, 2.3), repetition_time_ms=7.0, flip_angle_deg=10.0, field_strength_t=3.0
    )
    mr = MultiEchoMR(rng.random((2, 5, 4, 3), dtype=np.float32), affine, protocol=protocol)
    back = read_volume(write_volume(mr, tmp_path / f"mr{suffix}"))
    assert isinstance(back, MultiEchoMR)
    assert back.protocol == protocol
    np.testing.assert_array_equal(back.array, mr.array)
    np.testing.assert_allclose(back.affine, mr.affine, atol=1e-4)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_label_map_round_trip_keeps_names(tmp_path: Path, suffix: str) -> None:
    labels = LabelMap(np.arange(60).reshape(5, 4, 3) % 4, np.eye(4), label_names={1: "T12"})
    back = read_volume(write_volume(labels, tmp_path / f"seg{suffix}"))
    assert isinstance(back, LabelMap)
    assert back.label_names == {1: "T12"}
    np.testing.assert_array_equal(back.array, labels.array)


def test_kind_is_kept_by_sidecar_and_inferred_without(tmp_path: Path) -> None:
    sct = SyntheticCT(ct_array(), np.eye(4))
    path = write_volume(sct, tmp_path / "sct.nii.gz")
    assert isinstance(read_volume(path), SyntheticCT)
    assert json.loads(sidecar_path(path).read_text())["kind"] == "sct"
    sidecar_path(path).unlink()
    assert type(read_volume(path)) is CTVolume


def test_bids_sidecar_echo_times_in_seconds(tmp_path: Path) -> None:
    image = sitk.GetImageFromArray(np.ones((3, 4, 5, 2), np.float32), isVector=False)
    path = tmp_path / "sub-01_T1w.nii.gz"
    sitk.WriteImage(
        sitk.JoinSeries([sitk.GetImageFromArray(np.ones((3, 4, 5), np.float32))] * 2), str(path)
    )
    del image
    path.with_name("sub-01_T1w.json").write_text(
        json.dumps({"EchoTime": [0.00115, 0.0023], "RepetitionTime": 0.007, "FlipAngle": 10})
    )
    mr = read_volume(path)
    assert isinstance(mr, MultiEchoMR)
    assert mr.echo_times_ms == pytest.approx((1.15, 2.3))
    assert mr.protocol is not None and mr.protocol.repetition_time_ms == pytest.approx(7.0)


def test_real_ct_and_label_map_share_a_grid(totalseg: Path) -> None:
    ct = read_volume(totalseg / "example_ct_sm.nii.gz")
    seg = read_volume(totalseg / "example_seg.nii.gz")
    assert isinstance(ct, CTVolume)
    assert isinstance(seg, LabelMap)
    ct.require_same_geometry(seg)
    lo, hi = ct.value_range()
    assert (lo, hi) == (-1100.0, 1207.0)
    reference = sitk.ReadImage(str(totalseg / "example_ct_sm.nii.gz"))
    assert ct.spacing_mm == pytest.approx(reference.GetSpacing())
    assert ct.origin_lps_mm == pytest.approx(reference.GetOrigin())
    np.testing.assert_allclose(ct.geometry.direction.ravel(), reference.GetDirection())
    # A voxel's value sits at the same physical point in both libraries.
    i, j, k = 60, 40, 12
    point = ct.geometry.index_to_lps([i, j, k])
    assert reference.TransformIndexToPhysicalPoint((i, j, k)) == pytest.approx(tuple(point))
    assert ct.array[i, j, k] == reference.GetPixel(i, j, k)


def test_real_labels_sit_on_bone_in_anatomical_order(totalseg: Path) -> None:
    ct = read_volume(totalseg / "example_ct_sm.nii.gz")
    seg = read_volume(totalseg / "example_seg.nii.gz")
    assert isinstance(seg, LabelMap)
    # TotalSegmentator v2 classes: 30 vertebrae_L2, 31 vertebrae_L1, 32 vertebrae_T12.
    heights_mm = []
    for label in (30, 31, 32):
        mask = seg.mask(label)
        assert np.median(ct.array[mask]) > 130  # cancellous bone on the CT it belongs to
        heights_mm.append(seg.geometry.index_to_lps(np.argwhere(mask).mean(axis=0))[2])
    # L2 lies below L1 below T12, about one vertebral height (25-40 mm) apart.
    steps = np.diff(heights_mm)
    assert np.all((steps > 20) & (steps < 45))
    assert np.median(ct.array[~seg.mask()]) < -100  # air and fat outside the labelled organs


def test_real_mr_is_read_as_mr(totalseg: Path) -> None:
    mr = read_volume(totalseg / "example_mr_sm.nii.gz")
    assert isinstance(mr, MultiEchoMR)
    assert mr.n_echoes == 1
    assert mr.echo_times_ms is None
    with pytest.raises(VolumeKindError, match="Hounsfield"):
        read_volume(totalseg / "example_mr_sm.nii.gz", kind="ct")


def test_an_itk_vector_nifti_is_read_with_its_components_as_echoes(
    totalseg: Path, tmp_path: Path
) -> None:
    """SimpleITK writes a vector image as 5D NIfTI (one time point, a component per echo)."""
    real = sitk.ReadImage(str(totalseg / "example_mr_sm.nii.gz"), sitk.sitkFloat32)
    echo1 = sitk.GetArrayFromImage(real)
    vector = sitk.GetImageFromArray(np.stack([echo1, 0.5 * echo1], axis=-1), isVector=True)
    vector.CopyInformation(real)
    sitk.WriteImage(vector, str(tmp_path / "two.nii.gz"))
    mr = read_volume(tmp_path / "two.nii.gz", kind="mr")
    plain = read_volume(totalseg / "example_mr_sm.nii.gz", kind="mr")
    assert isinstance(mr, MultiEchoMR) and mr.n_echoes == 2
    assert mr.geometry.is_close(plain.geometry)
    np.testing.assert_allclose(mr.array[0], plain.array[0])
    np.testing.assert_allclose(mr.array[1], 0.5 * plain.array[0])


def test_truncated_file_is_reported_with_its_name(tmp_path: Path) -> None:
    path = write_volume(CTVolume(ct_array((40, 40, 40)), np.eye(4)), tmp_path / "ct.nii.gz")
    raw = gzip.decompress(path.read_bytes())
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    with pytest.raises(ReadError, match=r"broken\.nii\.gz.*truncated"):
        read_volume(broken)


def test_missing_and_unsupported_files(tmp_path: Path) -> None:
    with pytest.raises(ReadError, match="no such file"):
        read_volume(tmp_path / "absent.nii.gz")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ReadError, match="unsupported file type"):
        read_volume(tmp_path / "notes.txt")


def test_nan_ct_is_rejected(tmp_path: Path) -> None:
    data = np.full((4, 4, 4), -1000.0, np.float32)
    data[1, 1, 1] = np.nan
    path = tmp_path / "nan.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(data), str(path))
    with pytest.raises(VolumeKindError, match=r"1 voxels are NaN"):
        read_volume(path, kind="ct")


def test_non_orthogonal_nifti_is_rejected(tmp_path: Path) -> None:
    nib = pytest.importorskip("nibabel")
    sheared = np.eye(4)
    sheared[0, 1] = 0.3
    image = nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), sheared)
    image.set_qform(None, code=0)
    path = tmp_path / "sheared.nii.gz"
    nib.save(image, path)
    with pytest.raises(ReadError, match=r"sheared\.nii\.gz"):
        read_volume(path)


def test_writing_is_atomic(tmp_path: Path) -> None:
    final = tmp_path / "out.nii.gz"
    with pytest.raises(RuntimeError), atomic_file(final) as tmp:
        tmp.write_bytes(b"half a file")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    ct = CTVolume(ct_array(), np.eye(4))
    write_volume(ct, final)
    assert not any(p.name.startswith(PARTIAL_PREFIX) for p in tmp_path.iterdir())
    with pytest.raises(WriteError, match="already exists"):
        write_volume(ct, final, overwrite=False)
    with pytest.raises(WriteError, match="does not exist"):
        write_volume(ct, tmp_path / "missing" / "ct.nii.gz")


def test_sct_provenance_travels_in_the_sidecar_and_through_resampling(tmp_path: Path) -> None:
    from synthct.resample import resample_to

    provenance = {"model": "product-like", "out_of_domain": ["1 echo, the model needs 2"]}
    data = np.full((6, 5, 4), 40.0, np.float32)
    data[0] = -1000.0
    sct = SyntheticCT(data, np.diag([1.0, 1.0, 2.0, 1.0]), provenance=provenance)
    back = read_volume(write_volume(sct, tmp_path / "sct.nii.gz"))
    assert isinstance(back, SyntheticCT)
    assert back.provenance == provenance and back.out_of_domain == ["1 echo, the model needs 2"]
    coarse = resample_to(back, CTVolume(np.zeros((3, 3, 2), np.float32), np.diag([2.0] * 3 + [1])))
    assert isinstance(coarse, SyntheticCT) and coarse.out_of_domain == back.out_of_domain
    plain = read_volume(write_volume(SyntheticCT(data, np.eye(4)), tmp_path / "plain.nii.gz"))
    assert isinstance(plain, SyntheticCT) and plain.out_of_domain == []
    assert "synthesis" not in json.loads(sidecar_path(tmp_path / "plain.nii.gz").read_text())
