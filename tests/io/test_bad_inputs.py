"""Bad input ends in a clear error naming the file or option and the fix, never a traceback.

Each test feeds one of the inputs that crashed or was silently accepted before (issue 17).
"""

from __future__ import annotations

import gzip
import shutil
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from synthct.cli import app
from synthct.errors import GeometryWarning, ReadError, SynthctError, VolumeKindError
from synthct.io import read_volume, write_volume
from synthct.volume import CTVolume

runner = CliRunner()
SHIPPED_AUDIT = Path(__file__).resolve().parents[2] / "src" / "synthct" / "models" / "audit"


def assert_clear_error(args: list[str], *needles: str) -> str:
    """Run the CLI; exit code 2, no traceback, every needle and a fix in the message."""
    result = runner.invoke(app, args)
    message = result.stderr
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    assert "Fix:" in message, message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


def small_ct(path: Path) -> Path:
    array = np.full((12, 10, 8), -1000, np.int16)
    array[3:9, 2:8, :] = 40
    return write_volume(CTVolume(array, np.diag([1.5, 1.5, 2.0, 1.0])), path)


# -- damaged image files -------------------------------------------------------------------------
def test_zero_byte_nifti(tmp_path: Path) -> None:
    empty = tmp_path / "scan.nii.gz"
    empty.touch()
    assert_clear_error(["info", str(empty)], "scan.nii.gz", "empty (0 bytes)")


def test_text_file_named_nifti(tmp_path: Path) -> None:
    text = tmp_path / "notes.nii.gz"
    text.write_text("these are my notes, not an image\n" * 20)
    assert_clear_error(["info", str(text)], "notes.nii.gz", "cannot be read as an image")


def test_header_claiming_20000_cubed_voxels_is_refused_before_allocation(tmp_path: Path) -> None:
    """NIfTI, NRRD and MHA headers claiming 20000^3 voxels over a few bytes of data."""
    nifti = tmp_path / "huge.nii.gz"
    header = nib.Nifti1Header()
    header.set_data_shape((20000, 20000, 20000))
    header.set_data_dtype(np.int16)
    header.set_sform(np.eye(4), code=1)
    header.set_qform(np.eye(4), code=1)
    with gzip.open(nifti, "wb") as handle:
        handle.write(header.binaryblock + b"\0" * 4 + b"\1" * 64)
    nrrd = tmp_path / "huge.nrrd"
    nrrd.write_bytes(
        b"NRRD0004\ntype: short\ndimension: 3\nsizes: 20000 20000 20000\n"
        b"spacings: 1 1 1\nencoding: raw\nendian: little\n\n" + b"\1" * 64
    )
    mha = tmp_path / "huge.mha"
    mha.write_bytes(
        b"ObjectType = Image\nNDims = 3\nDimSize = 20000 20000 20000\nElementType = MET_SHORT\n"
        b"ElementSpacing = 1 1 1\nElementDataFile = LOCAL\n" + b"\1" * 64
    )
    for path in (nifti, nrrd, mha):
        with pytest.raises(ReadError, match="20000 x 20000 x 20000 voxels") as caught:
            read_volume(path)
        assert caught.value.path == str(path) and caught.value.fix
    assert_clear_error(["info", str(mha)], "huge.mha", "truncated or its header is corrupt")


def test_truncated_uncompressed_nifti_is_refused(tmp_path: Path) -> None:
    whole = small_ct(tmp_path / "ct.nii")
    data = whole.read_bytes()
    whole.write_bytes(data[: len(data) - 100])
    with pytest.raises(ReadError, match="truncated") as caught:
        read_volume(whole)
    assert caught.value.path == str(whole)


def _nifti_with_forms(path: Path, qform: np.ndarray, sform: np.ndarray, code: int = 1) -> Path:
    image = nib.Nifti1Image(np.zeros((10, 10, 10), np.int16) - 1000, sform)
    image.set_qform(qform, code=code)
    image.set_sform(sform, code=code)
    nib.save(image, str(path))
    return path


def test_qform_and_sform_disagreeing_by_more_than_a_voxel_is_an_error(tmp_path: Path) -> None:
    sform = np.diag([2.0, 2.0, 2.0, 1.0])
    qform = sform.copy()
    qform[0, 3] = 9.0  # 9 mm apart, voxels of 2 mm
    path = _nifti_with_forms(tmp_path / "shifted.nii.gz", qform, sform)
    with pytest.raises(ReadError, match="qform and sform disagree") as caught:
        read_volume(path, kind="ct")
    assert "9 mm" in caught.value.problem


def test_qform_and_sform_disagreeing_within_a_voxel_is_a_warning(tmp_path: Path) -> None:
    sform = np.diag([2.0, 2.0, 2.0, 1.0])
    qform = sform.copy()
    qform[1, 3] = 0.5
    path = _nifti_with_forms(tmp_path / "nudged.nii.gz", qform, sform)
    with pytest.warns(GeometryWarning, match="disagree.*0.5 mm"):
        volume = read_volume(path, kind="ct")
    np.testing.assert_allclose(volume.affine[:3, 3], [0.0, 0.0, 0.0])  # the sform is used


def test_nifti_without_spatial_code_warns(tmp_path: Path) -> None:
    path = _nifti_with_forms(tmp_path / "nocode.nii.gz", np.eye(4), np.eye(4), code=0)
    with pytest.warns(GeometryWarning, match="no spatial code"):
        read_volume(path, kind="ct")
    good = small_ct(tmp_path / "good.nii.gz")
    with warnings.catch_warnings():
        warnings.simplefilter("error", GeometryWarning)
        read_volume(good)  # a file synthct wrote has both codes and equal forms


# -- wrong files for an option -------------------------------------------------------------------
def test_ct_passed_as_lesions(tmp_path: Path) -> None:
    ct = small_ct(tmp_path / "ct.nii.gz")
    with pytest.raises(VolumeKindError, match="sidecar says it is 'ct'"):
        read_volume(ct, kind="label")
    ct.with_name("ct.json").unlink()  # no sidecar: the HU values give it away
    with pytest.raises(VolumeKindError, match="negative values"):
        read_volume(ct, kind="label")
    result = runner.invoke(
        app,
        ["validate", "--ct", str(ct), "--sct", str(ct), "--lesions", str(ct),
         "--out", str(tmp_path / "out"), "--workers", "0", "--no-figures", "--no-report"],
    )  # fmt: skip
    assert (result.exit_code == 1 and result.exception is None) or isinstance(
        result.exception, SystemExit
    )
    assert "Traceback" not in result.output
    assert "lesions" in result.output and "not labels" in result.output


# -- audit model ---------------------------------------------------------------------------------
def test_shipped_audit_model_has_a_checksum_that_is_verified(tmp_path: Path) -> None:
    from synthct.audit.novelty import load_novelty_model
    from synthct.io.checksums import CHECKSUM_FILE, verify_checksums

    assert verify_checksums(SHIPPED_AUDIT)  # present and matching
    copy = tmp_path / "audit"
    shutil.copytree(SHIPPED_AUDIT, copy)
    load_novelty_model(copy)
    data = bytearray((copy / "novelty.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "novelty.npz").write_bytes(bytes(data))
    with pytest.raises(ReadError, match=r"damaged: novelty.npz") as caught:
        load_novelty_model(copy)
    assert caught.value.fix
    (copy / CHECKSUM_FILE).unlink()  # a folder without checksums: the archive itself fails
    (copy / "novelty.npz").write_bytes(bytes(data[:200]))
    with pytest.raises(SynthctError, match="damaged"):
        load_novelty_model(copy)


def test_corrupt_novelty_npz_in_validate(tmp_path: Path) -> None:
    folder = tmp_path / "audit"
    shutil.copytree(SHIPPED_AUDIT, folder)
    (folder / "novelty.npz").write_bytes(b"PK\x03\x04 not really a zip archive")
    ct = small_ct(tmp_path / "ct.nii.gz")
    assert_clear_error(
        ["validate", "--ct", str(ct), "--sct", str(ct), "--out", str(tmp_path / "out"),
         "--audit-model", str(folder)],
        "novelty.npz",
    )  # fmt: skip
    assert not (tmp_path / "out").exists()


# -- options -------------------------------------------------------------------------------------
def test_phantom_voxel_size_too_fine(tmp_path: Path) -> None:
    out = tmp_path / "cohort"
    assert_clear_error(
        ["phantom", "--out", str(out), "--voxel-size", "0.01,0.01,0.01"], "--voxel-size", "voxels"
    )
    assert not out.exists()


def test_validate_scheduler_not_an_address(tmp_path: Path) -> None:
    ct = small_ct(tmp_path / "ct.nii.gz")
    out = tmp_path / "out"
    assert_clear_error(
        ["validate", "--ct", str(ct), "--sct", str(ct), "--out", str(out),
         "--scheduler", "not-an-address"],
        "--scheduler", "not a Dask scheduler address",
    )  # fmt: skip
    assert not out.exists()  # checked before anything is created


def test_version() -> None:
    from synthct import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"synthct {__version__}"
