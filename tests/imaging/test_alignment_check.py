"""The alignment check: a misaligned sCT is caught before any lesion is called missed.

Failing inputs of issue 17, rebuilt on the phantom case of :mod:`validation.test_pipeline` (a
450 HU calcified lesion in the canal) and on a real CT: an sCT holding the lesion but shifted
9 mm by its header (it used to pass as "visible on sCT 0/1", bone Dice 0.1), a wrong spacing
header (MAE ~300 HU) and a mirrored array. Known answers: an identical sCT, the paper's failure
sCT (lesion as CSF, aligned) and a blurred, biased, noisy sCT pass; a shift of known size is
measured within 1 mm.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from synthct.imaging.alignment_check import (
    AlignmentCheck,
    AlignmentCheckSettings,
    check_alignment,
)
from synthct.imaging.body_mask import body_mask_from_ct
from synthct.io import read_volume, write_volume
from synthct.resample import resample_to
from synthct.validation.case import ValidationSettings, validate_case
from synthct.volume import CTVolume, SyntheticCT
from validation.test_pipeline import phantom_arrays, phantom_geometry, spec, write_case


def _case_with_sct(tmp_path: Path, name: str, change: str) -> dict[str, str]:
    """The phantom case (one 450 HU lesion) with its sCT = the CT, changed as ``change`` says."""
    row = write_case(tmp_path, name, lesion_hu=[450.0], radius_mm=[4.0])
    path = tmp_path / row["sct"]
    sct = read_volume(path, kind="sct")
    affine, array = sct.affine.copy(), np.asarray(sct.array)
    if change == "shift_9mm":
        affine[:3, 3] += (9.0, 0.0, 0.0)
    elif change == "spacing":
        affine[:3, :3] *= 1.25  # 1.25 mm voxels written as 1 mm ones
    elif change == "mirror":
        array = np.flip(array, 0).copy()
    elif change == "no_bone":  # a poor model's sCT: bone and lesion rendered as soft tissue
        array = np.where(array >= 150.0, 10.0, array).astype(np.float32)
    elif change == "blurred":
        noise = np.random.default_rng(1).normal(0.0, 30.0, array.shape)
        array = (0.9 * gaussian_filter(array, 1.0) + 10.0 + noise).astype(np.float32)
    write_volume(SyntheticCT(array, affine), path)
    return row


# -- known answers on arrays --------------------------------------------------------------------
def test_identical_images_pass_with_perfect_figures() -> None:
    geometry = phantom_geometry()
    ct, _, _ = phantom_arrays(geometry, lesion_hu=[450.0], radius_mm=[4.0])
    body = body_mask_from_ct(ct)
    check = check_alignment(ct, ct, body, affine=geometry.affine)
    assert check.passed and check.reason == ""
    assert check.ncc == pytest.approx(1.0) and check.bone_dice == 1.0 and check.mae_hu == 0.0
    assert check.best_shift_mm < 0.5 and check.ncc_at_best_shift == pytest.approx(1.0)
    assert check.to_dict()["alignment_passed"] is True


def test_known_shift_is_measured_within_1mm() -> None:
    geometry = phantom_geometry()
    ct, _, _ = phantom_arrays(geometry, lesion_hu=[450.0], radius_mm=[4.0])
    # the sCT's anatomy lies 6 voxels (6 mm) toward +P: sct(x + 6 P) = ct(x)
    sct = np.full_like(ct, -1000.0)
    sct[:, 6:, :] = ct[:, :-6, :]
    check = check_alignment(ct, sct, body_mask_from_ct(ct), affine=geometry.affine)
    assert not check.passed and "shifted by" in check.reason
    l_mm, p_mm, s_mm = check.best_shift_lps_mm
    assert p_mm == pytest.approx(6.0, abs=1.0) and abs(l_mm) < 1.0 and abs(s_mm) < 1.0
    assert check.ncc_at_best_shift > 0.9 > check.ncc


def test_too_little_bone_leaves_bone_dice_out() -> None:
    geometry = phantom_geometry()
    ct = np.where(np.indices(geometry.shape)[0] < 24, 40.0, 0.0).astype(np.float32)
    ct += np.random.default_rng(0).normal(0, 10, ct.shape).astype(np.float32)
    body = np.ones(ct.shape, dtype=bool)
    check = check_alignment(ct, ct, body, affine=geometry.affine)
    assert math.isnan(check.bone_dice) and check.passed


# -- the failing inputs of issue 17 -------------------------------------------------------------
def test_sct_shifted_9mm_by_its_header_stops_the_case(tmp_path: Path) -> None:
    row = _case_with_sct(tmp_path, "shift", "shift_9mm")
    # what it used to report, measured anyway: lesion "missed" (sCT ~40 HU vs CT 450 HU)
    warned = validate_case(spec(tmp_path, row), ValidationSettings(alignment="warn"))
    assert warned.ok and warned.case_row["n_visible_sct"] == 0
    lesion = warned.lesion_rows[0]
    assert lesion["ct_mean_hu"] == pytest.approx(450.0, abs=5.0) and lesion["sct_mean_hu"] < 100
    assert warned.case_row["alignment_bone_dice"] < 0.3
    # ... but it is no longer called missed, and a warning says why
    assert lesion["sct_missed"] is None and not lesion["alignment_passed"]
    assert any("alignment check failed" in w for w in warned.warnings)
    # by default the case stops with the measured offset and the fix
    stopped = validate_case(spec(tmp_path, row))
    assert not stopped.ok and stopped.error_stage == "alignment_check"
    assert stopped.error_type == "MisalignmentError" and stopped.error_column == "sct"
    text = stopped.error or ""
    assert "misaligned" in text and "--register" in text and "--align auto" in text
    check = stopped.alignment_check
    assert check is not None and check["alignment_passed"] is False
    assert check["alignment_best_shift_l_mm"] == pytest.approx(9.0, abs=1.0)
    assert f"shifted by {check['alignment_best_shift_mm']:.1f} mm" in text
    assert stopped.to_json()["alignment_check"] == check
    # --align auto registers it and finds the lesion on the sCT
    auto = validate_case(spec(tmp_path, row), ValidationSettings(alignment="auto"))
    assert auto.ok, auto.error
    assert auto.case_row["alignment_action"] == "registered_after_check"
    assert auto.case_row["alignment_passed"] and auto.case_row["sct_registered"]
    assert auto.lesion_rows[0]["sct_visible"] and auto.lesion_rows[0]["sct_missed"] is False


def test_align_shift_stops_a_shifted_sct_and_measures_a_poor_one(tmp_path: Path) -> None:
    """An sCT with no bone (bone Dice 0) has its anatomy where the CT has it: 'check' stops it
    for its bone Dice, 'shift' (evaluate's default for a model's own sCTs) measures it, calls
    its lesion missed and says why; a 9 mm shift or a mirror still stops it."""
    poor = _case_with_sct(tmp_path, "poor", "no_bone")
    stopped = validate_case(spec(tmp_path, poor))
    assert not stopped.ok and "bone Dice" in (stopped.error or "")
    check = check_alignment  # the verdict's evidence, on arrays
    ct = read_volume(tmp_path / poor["ct"], kind="ct")
    sct = read_volume(tmp_path / poor["sct"], kind="sct")
    verdict = check(ct.array, sct.array, body_mask_from_ct(ct.array), affine=ct.affine)
    assert not verdict.passed and not verdict.displaced and verdict.best_shift_mm < 1.0
    measured = validate_case(spec(tmp_path, poor), ValidationSettings(alignment="shift"))
    assert measured.ok, measured.error
    assert measured.case_row["alignment_action"] == "measured_poor_match"
    assert measured.case_row["alignment_passed"] and measured.case_row["alignment_bone_dice"] == 0
    assert measured.lesion_rows[0]["sct_missed"] is True  # the pose is trusted: a real miss
    assert any("matches the CT poorly" in w and "no shift or mirror brings it" in w
               for w in measured.warnings)  # fmt: skip
    for change, needle in (("shift_9mm", "shifted by"), ("mirror", "mirrored")):
        row = _case_with_sct(tmp_path, change, change)
        still = validate_case(spec(tmp_path, row), ValidationSettings(alignment="shift"))
        assert not still.ok and needle in (still.error or "")
        assert still.error_stage == "alignment_check"


@pytest.mark.parametrize(("change", "needle"), [("spacing", "NCC"), ("mirror", "mirrored")])
def test_wrong_spacing_header_and_mirrored_array_stop_the_case(
    tmp_path: Path, change: str, needle: str
) -> None:
    row = _case_with_sct(tmp_path, change, change)
    warned = validate_case(spec(tmp_path, row), ValidationSettings(alignment="warn"))
    assert warned.ok and not warned.case_row["alignment_passed"]
    if change == "spacing":
        assert warned.case_row["mae_hu"] > 250.0  # the input: MAE ~300 HU
    stopped = validate_case(spec(tmp_path, row))
    assert not stopped.ok and stopped.error_stage == "alignment_check"
    assert needle in (stopped.error or "")


@pytest.mark.parametrize("change", ["identical", "blurred"])
def test_aligned_sct_passes_without_false_alarm(tmp_path: Path, change: str) -> None:
    row = _case_with_sct(tmp_path, change, change)
    result = validate_case(spec(tmp_path, row))
    assert result.ok, result.error
    assert result.case_row["alignment_passed"] and result.case_row["alignment_action"] == "none"
    assert result.case_row["alignment_best_shift_mm"] < 1.0
    assert result.lesion_rows[0]["sct_missed"] is False
    assert result.alignment_check is not None and result.alignment_check["alignment_passed"]


def test_paper_failure_sct_is_aligned_and_its_lesion_missed(tmp_path: Path) -> None:
    row = write_case(tmp_path, "csf", lesion_hu=[450.0], sct="csf")
    result = validate_case(spec(tmp_path, row))
    assert result.ok and result.case_row["alignment_passed"]
    assert result.lesion_rows[0]["sct_missed"] is True and result.case_row["n_missed_sct"] == 1


# -- real CT ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chest(totalseg: Path) -> CTVolume:
    ct = read_volume(totalseg / "chest_ct.nii.gz", kind="ct")
    assert isinstance(ct, CTVolume)
    return ct


def _check_on_ct_grid(ct: CTVolume, sct: SyntheticCT) -> AlignmentCheck:
    on_grid = resample_to(sct, ct.geometry)
    body = body_mask_from_ct(ct.array)
    return check_alignment(ct.array, on_grid.array, body, affine=ct.affine)


@pytest.mark.parametrize("axis", [1, 2])
def test_real_ct_shifted_9mm_is_caught(chest: CTVolume, axis: int) -> None:
    affine = chest.affine.copy()
    affine[axis, 3] += 9.0  # along P, then S
    check = _check_on_ct_grid(chest, SyntheticCT(chest.array, affine))
    assert not check.passed and "shifted by" in check.reason
    assert np.asarray(check.best_shift_lps_mm)[axis] == pytest.approx(9.0, abs=1.0)


def test_real_ct_mirrored_is_caught_and_a_poor_sct_passes(chest: CTVolume) -> None:
    mirrored = SyntheticCT(np.flip(chest.array, 0).copy(), chest.affine)
    check = _check_on_ct_grid(chest, mirrored)
    assert not check.passed and "mirrored along array axis 0" in check.reason
    rng = np.random.default_rng(2)
    poor = 0.85 * gaussian_filter(chest.array, 1.5) + rng.normal(0, 40, chest.array.shape)
    check = _check_on_ct_grid(chest, SyntheticCT(poor.astype(np.float32), chest.affine))
    assert check.passed, check.reason


def test_settings_are_recorded_in_words() -> None:
    rules = ValidationSettings().to_dict()["alignment_check"]["rules"]
    assert "best shift" in rules and "250 HU" in rules
    assert AlignmentCheckSettings().max_shift_mm >= 15.0


def test_cohort_tables_json_and_report_record_the_check(tmp_path: Path) -> None:
    import json

    import pandas as pd

    from synthct.validation.runner import run_validation

    rows = [
        write_case(tmp_path, "aligned", lesion_hu=[450.0], sct="csf"),
        _case_with_sct(tmp_path, "shifted", "shift_9mm"),
    ]
    out = tmp_path / "out"
    summary = run_validation(
        [spec(tmp_path, row) for row in rows], out, ValidationSettings(), n_workers=0
    )
    cases = pd.read_csv(out / "cases.csv")
    assert bool(cases.loc[0, "alignment_passed"]) and cases.loc[0, "n_missed_sct"] == 1
    lesions = pd.read_csv(out / "lesions.csv")
    assert bool(lesions.loc[0, "sct_missed"]) and not bool(lesions.loc[0, "truncated"])
    failures = pd.read_csv(out / "failures.csv")
    assert list(failures["case_id"]) == ["shifted"]
    assert (
        failures.loc[0, "stage"] == "alignment_check" and "shifted by" in failures.loc[0, "reason"]
    )
    stored = json.loads((out / "cases" / "shifted" / "result.json").read_text())["result"]
    assert stored["alignment_check"]["alignment_passed"] is False
    assert summary.report is not None
    html = summary.report.read_text()
    assert "Alignment of each sCT with its CT" in html and "Missed on sCT" in html
    assert "Cut by field of view" in html


def test_cli_align_option(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from synthct.cli import app

    row = _case_with_sct(tmp_path, "shifted", "shift_9mm")
    args = ["validate", "--ct", str(tmp_path / row["ct"]), "--sct", str(tmp_path / row["sct"])]
    args += ["--lesions", str(tmp_path / row["lesions"]), "--no-figures", "--no-report"]
    args += ["--workers", "0"]
    cli = CliRunner()
    stopped = cli.invoke(app, [*args, "--out", str(tmp_path / "check")])
    assert stopped.exit_code == 1, stopped.output
    assert "misaligned" in stopped.stdout and "--register" in stopped.stdout
    auto = cli.invoke(app, [*args, "--out", str(tmp_path / "auto"), "--align", "auto"])
    assert auto.exit_code == 0, auto.output
    assert "visible on sCT" in auto.stdout and "1/1" in auto.stdout
    bad = cli.invoke(app, [*args, "--out", str(tmp_path / "bad"), "--align", "sometimes"])
    assert bad.exit_code == 2 and "--align" in bad.output and "check, auto, warn" in bad.output


def test_partial_sct_field_of_view_passes_and_marks_the_cut_lesion_truncated(
    tmp_path: Path,
) -> None:
    row = write_case(tmp_path, "half", lesion_hu=[450.0], radius_mm=[4.0])
    sct = read_volume(tmp_path / row["sct"], kind="sct")
    # the sCT stops at slice 20 of 40, through the lesion (slices 16..24): same frame
    write_volume(SyntheticCT(sct.array[:, :, :20].copy(), sct.affine), tmp_path / row["sct"])
    result = validate_case(spec(tmp_path, row))
    assert result.ok, result.error
    assert result.case_row["alignment_passed"]  # a partial field of view is no misalignment
    lesion = result.lesion_rows[0]
    assert lesion["roi_in_sct_fov_fraction"] < 1.0 and lesion["truncated"] is True


def test_images_without_contrast_fall_back_to_mae() -> None:
    """A uniform body gives no NCC: an identical sCT passes, a grossly wrong one fails."""
    ct = np.full((12, 10, 8), -1000.0)
    ct[3:9, 2:8, :] = 40.0
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    same = check_alignment(ct, ct.copy(), ct > -500, affine=affine)
    assert same.passed, same.reason
    assert math.isnan(same.ncc) and same.mae_hu == 0.0
    assert all(math.isnan(v) for v in same.best_shift_lps_mm)
    wrong = ct.copy()
    wrong[ct > -500] = 600.0
    bad = check_alignment(ct, wrong, ct > -500, affine=affine)
    assert not bad.passed and "no contrast" in bad.reason
