"""Outputs never destroy inputs: no overwrite by default, foreign folders refused, one run per
folder, output paths checked before any work, a CT never replaced, resume checks what it keeps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from synthct.cli import app
from synthct.errors import WriteError
from synthct.io import read_volume, write_volume
from synthct.io.output_safety import (
    LOCK_FILE,
    MARKER_FILE,
    OutputLock,
    check_output_path,
    claim_output_folder,
)
from synthct.volume import CTVolume, MRProtocol, MultiEchoMR

runner = CliRunner()
SUFFIXES = (".nii.gz", ".nrrd", ".mha")


def small_ct(path: Path, value: int = 40) -> Path:
    array = np.full((12, 10, 8), -1000, np.int16)
    array[3:9, 2:8, :] = value
    return write_volume(CTVolume(array, np.diag([1.5, 1.5, 2.0, 1.0])), path)


def small_mr(path: Path) -> Path:
    rng = np.random.default_rng(0)
    body = np.zeros((16, 16, 6), bool)
    body[3:13, 3:13] = True
    echo = np.where(body, 800.0, 5.0) + rng.normal(0, 5, body.shape)
    mr = MultiEchoMR(
        np.abs(np.stack([echo, 0.8 * echo])),
        np.diag([2.0, 2.0, 3.0, 1.0]),
        protocol=MRProtocol((2.3, 4.6), 7.0, 10.0, 3.0),
    )
    return write_volume(mr, path)


# -- synthesize ----------------------------------------------------------------------------------
def test_synthesize_never_replaces_a_patient_ct(tmp_path: Path) -> None:
    mr = small_mr(tmp_path / "mr.nii.gz")
    ct = small_ct(tmp_path / "ct.nii.gz")
    before = ct.read_bytes()
    for extra in ([], ["--overwrite"]):
        result = runner.invoke(
            app, ["synthesize", str(mr), "-m", "baseline", "-o", str(ct), *extra]
        )
        assert result.exit_code == 2, result.output
        assert "points at a CT" in result.stderr and "Fix:" in result.stderr
    assert ct.read_bytes() == before


def test_library_writer_never_replaces_a_ct_with_another_kind(tmp_path: Path) -> None:
    ct = small_ct(tmp_path / "ct.nii.gz")
    sct = read_volume(ct, kind="sct")
    with pytest.raises(WriteError, match="is a CT"):
        write_volume(sct, ct, overwrite=True)
    assert read_volume(ct).kind == "ct"
    write_volume(read_volume(ct), ct, overwrite=True)  # a CT may replace itself


def test_synthesize_does_not_overwrite_by_default(tmp_path: Path) -> None:
    mr = small_mr(tmp_path / "mr.nii.gz")
    out = tmp_path / "sct.nii.gz"
    args = ["synthesize", str(mr), "-m", "baseline", "-o", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    first = out.stat().st_mtime_ns
    again = runner.invoke(app, args)
    assert (
        again.exit_code == 2 and "already exists" in again.stderr and "--overwrite" in again.stderr
    )
    assert out.stat().st_mtime_ns == first
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0  # an sCT may be replaced
    assert read_volume(out).kind == "sct"


def test_synthesize_checks_the_output_suffix_before_any_work(tmp_path: Path) -> None:
    mr = small_mr(tmp_path / "mr.nii.gz")
    for name, needle in (("out.png", "suffix"), ("missing/sct.nii.gz", "does not exist")):
        # a model that does not exist proves nothing was loaded: the path check comes first
        result = runner.invoke(
            app, ["synthesize", str(mr), "-m", str(tmp_path / "no-model"), "-o",
                  str(tmp_path / name)]
        )  # fmt: skip
        assert result.exit_code == 2 and needle in result.stderr, result.output
        assert "--output" in result.stderr and "Fix:" in result.stderr
    assert not (tmp_path / "out.png").exists()


def test_check_output_path_accepts_dicom_folders_and_refuses_a_dicom_ct(tmp_path: Path) -> None:
    assert check_output_path(
        tmp_path / "sct_series", option="-o", overwrite=False, suffixes=SUFFIXES,
        folder_allowed=True,
    ) == tmp_path / "sct_series"  # fmt: skip
    array = np.full((4, 4, 3), 10, np.int16)
    folder = write_volume(CTVolume(array, np.eye(4)), tmp_path / "ct_series")
    with pytest.raises(WriteError, match="points at a CT"):
        check_output_path(
            folder, option="-o", overwrite=True, suffixes=SUFFIXES, folder_allowed=True
        )


# -- validate ------------------------------------------------------------------------------------
def _validate(ct: Path, out: Path) -> object:
    return runner.invoke(
        app,
        ["validate", "--ct", str(ct), "--sct", str(ct), "--out", str(out), "--workers", "0",
         "--no-figures", "--no-report"],
    )  # fmt: skip


def test_validate_refuses_a_users_folder(tmp_path: Path) -> None:
    ct = small_ct(tmp_path / "ct.nii.gz")
    mine = tmp_path / "my_study"
    mine.mkdir()
    (mine / "lesions.csv").write_text("my own careful measurements\n")
    result = _validate(ct, mine)
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert "not made by synthct" in result.stderr  # type: ignore[attr-defined]
    assert (mine / "lesions.csv").read_text() == "my own careful measurements\n"
    assert sorted(p.name for p in mine.iterdir()) == ["lesions.csv"]
    # a folder synthct made is reused (a rerun resumes), an empty one is taken
    out = tmp_path / "out"
    assert _validate(ct, out).exit_code == 0  # type: ignore[attr-defined]
    assert json.loads((out / MARKER_FILE).read_text())["command"] == "validate"
    assert _validate(ct, out).exit_code == 0  # type: ignore[attr-defined]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _validate(ct, empty).exit_code == 0  # type: ignore[attr-defined]
    assert not (out / LOCK_FILE).exists()


def test_claim_refuses_another_commands_folder(tmp_path: Path) -> None:
    claim_output_folder(tmp_path / "a", command="audit")
    with pytest.raises(WriteError, match="output of `synthct audit`"):
        claim_output_folder(tmp_path / "a", command="validate")


_HOLD = """
import sys, time
from synthct.io.output_safety import OutputLock
with OutputLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_second_run_on_a_locked_folder_gets_a_clear_error(tmp_path: Path) -> None:
    ct = small_ct(tmp_path / "ct.nii.gz")
    out = tmp_path / "out"
    assert _validate(ct, out).exit_code == 0  # type: ignore[attr-defined]
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        before = (out / "cases.csv").stat().st_mtime_ns
        result = _validate(ct, out)
        assert result.exit_code == 2  # type: ignore[attr-defined]
        message = result.stderr  # type: ignore[attr-defined]
        assert "another synthct run" in message and f"pid {holder.pid}" in message
        assert (out / "cases.csv").stat().st_mtime_ns == before  # nothing of it was written
    finally:
        holder.kill()  # SIGKILL: the OS releases the lock, the file stays behind
        holder.wait()
    assert (out / LOCK_FILE).exists()
    with OutputLock(out):  # a killed holder's lock is taken over
        pass
    assert not (out / LOCK_FILE).exists()


def test_validate_removes_stale_partial_files(tmp_path: Path) -> None:
    ct = small_ct(tmp_path / "ct.nii.gz")
    out = tmp_path / "out"
    assert _validate(ct, out).exit_code == 0  # type: ignore[attr-defined]
    (out / ".partial-1234abcd-lesions.csv").write_text("half")
    (out / "cases" / "case" / ".partial-deadbeef-result.json").write_text("{")
    (out / "cases" / ".partial-0badf00d-case").mkdir()
    assert _validate(ct, out).exit_code == 0  # type: ignore[attr-defined]
    assert not list(out.rglob(".partial-*"))


# -- phantom resume ------------------------------------------------------------------------------
SMALL = ["--protocol", "fast_3t", "--voxel-size", "4,4,4", "--cases", "3", "--seed", "5"]


@pytest.mark.slow
def test_phantom_resume_redoes_damaged_cases_and_removes_partials(tmp_path: Path) -> None:
    out = tmp_path / "cohort"
    first = runner.invoke(app, ["phantom", "--out", str(out), *SMALL])
    assert first.exit_code == 0, first.output
    sums = {c: json.loads((out / c / "case.json").read_text()) for c in ("case-000", "case-001")}
    echo = out / "case-000" / "mr_echo-2.nii.gz"
    echo.write_bytes(echo.read_bytes()[:-300])  # truncated
    (out / "case-001" / "ct.nii.gz").unlink()  # deleted
    stale = out / ".partial-0123abcd-case-002"
    stale.mkdir()
    (stale / "ct.nii.gz").write_bytes(b"half")
    untouched = (out / "case-002" / "ct.nii.gz").stat().st_mtime_ns

    again = runner.invoke(app, ["phantom", "--out", str(out), *SMALL, "--resume"])
    assert again.exit_code == 0, again.output
    text = " ".join(again.stdout.split())
    assert "case-000 was damaged (mr_echo-2.nii.gz does not match its checksum" in text
    assert "case-001 was damaged (ct.nii.gz is missing" in text
    assert "2 damaged case(s) regenerated" in text
    assert not stale.exists()
    for case, meta in sums.items():
        redone = json.loads((out / case / "case.json").read_text())
        assert redone["checksums_sha256"] == meta["checksums_sha256"]  # identical voxels
    assert (out / "case-002" / "ct.nii.gz").stat().st_mtime_ns == untouched
    from synthct.phantom.cohort_files import verify_case

    assert all(verify_case(out / c) == [] for c in ("case-000", "case-001", "case-002"))


def test_phantom_checks_options_before_creating_anything(tmp_path: Path) -> None:
    out = tmp_path / "cohort"
    result = runner.invoke(app, ["phantom", "--out", str(out), "--voxel-size", "1,1"])
    assert result.exit_code == 2 and "--voxel-size" in result.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
