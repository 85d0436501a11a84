"""The omission audit as a column of `synthct validate`, on the audit's shapes phantom.

Known answers (:func:`audit.audit_cases.shapes_case`): a 9 mm calcification (1400 HU) in a
CSF canal, a two-echo MRI with its protocol, and the failure sCT that renders the lesion as
CSF (~0 HU) and equals the CT elsewhere. The audit flags one region there, and the CT confirms
it; the correct sCT (the CT itself) gives no flag.
"""

from __future__ import annotations

import hashlib
import json
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from audit.audit_cases import LESION_CENTRE_LPS_MM, shapes_case
from synthct.cli import app
from synthct.errors import SynthctError
from synthct.io import write_volume
from synthct.validation import case as validation_case
from synthct.validation import runner
from synthct.validation.audit_column import (
    AUDIT_CASE_COLUMNS,
    AUDIT_FLAG_COLUMNS,
    AUDIT_LESION_COLUMNS,
    AuditColumnSettings,
)
from synthct.validation.case import CaseResult, ValidationSettings
from synthct.validation.manifest import CaseSpec, LesionPointSpec
from synthct.validation.runner import case_fingerprint
from synthct.volume import LabelMap, MultiEchoMR, SyntheticCT
from synthct.workflows.audit_column import audit_case_columns

# validation does not import the audit: the audit stage is passed in, as `synthct validate` does
compute_case = partial(validation_case.compute_case, auditor=audit_case_columns)
run_validation = partial(runner.run_validation, auditor=audit_case_columns)

AUDIT = ValidationSettings(audit=AuditColumnSettings(), metric_threads=1)
SHIPPED_AUDIT_MODEL = Path(__file__).parents[2] / "src" / "synthct" / "models" / "audit"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The shapes case as NIfTI files (the MRI's protocol in its JSON sidecar)."""
    case = shapes_case(lesion=True)
    folder = tmp_path_factory.mktemp("shapes")
    paths = {
        name: folder / f"{name}.nii.gz"
        for name in ("ct", "failure_sct", "correct_sct", "mri", "mri_no_protocol", "lesions")
    }
    write_volume(case.ct, paths["ct"])
    write_volume(case.failure, paths["failure_sct"])
    write_volume(SyntheticCT(case.ct.array, case.ct.affine), paths["correct_sct"])
    write_volume(case.mr, paths["mri"])
    write_volume(MultiEchoMR(case.mr.array, case.mr.affine), paths["mri_no_protocol"])
    write_volume(LabelMap(case.lesion.astype(np.uint8), case.ct.affine), paths["lesions"])
    return paths


def spec(files: dict[str, Path], sct: str = "failure_sct", **extra: object) -> CaseSpec:
    fields: dict[str, object] = {
        "case_id": "shapes",
        "ct": files["ct"],
        "sct": files[sct],
        "mri": (files["mri"],),
        "lesions": files["lesions"],
    }
    fields.update(extra)
    return CaseSpec(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def failure_result(files: dict[str, Path]) -> CaseResult:
    return compute_case(spec(files), AUDIT)


def test_omitted_lesion_is_flagged_and_the_flag_is_confirmed_by_ct(
    failure_result: CaseResult,
) -> None:
    result = failure_result
    assert result.ok and "audit" in result.timings_s
    (lesion,) = result.lesion_rows
    assert lesion["ct_visible"] and not lesion["sct_visible"]
    assert lesion["audit_flagged"] is True
    assert lesion["audit_score"] >= 1.0
    assert lesion["audit_signals"] == "consistency"
    assert result.audit_flags is not None
    (flag,) = result.audit_flags
    assert list(flag) == list(AUDIT_FLAG_COLUMNS)
    assert flag["case_id"] == "shapes" and flag["flag_id"] == 1
    centre = np.array([flag["centre_l_mm"], flag["centre_p_mm"], flag["centre_s_mm"]])
    assert np.linalg.norm(centre - LESION_CENTRE_LPS_MM) < 2.0
    assert flag["matched_lesion_ids"] == "1"
    assert flag["signals"] == "consistency" and flag["direction"] == "darker"
    # calcification (~1250 HU in its partial-volume ROI) rendered as CSF: a large difference
    assert flag["mean_abs_diff_hu"] > 500.0
    assert flag["ct_mean_hu"] - flag["sct_mean_hu"] > 500.0
    assert flag["true_discrepancy"] is True
    assert "not on sCT" in flag["discrepancy_reason"] and "HU" in flag["discrepancy_reason"]
    row = result.case_row
    assert row["audit_n_flags"] == 1
    assert row["audit_n_true_discrepancies"] == 1
    assert row["audit_n_false_flags"] == 0
    assert row["audit_signals_used"] == "consistency"
    assert row["audit_refused"] == ""  # no domain recorded by the default calibration


def test_correct_sct_gives_no_flag(files: dict[str, Path]) -> None:
    result = compute_case(spec(files, "correct_sct"), AUDIT)
    (lesion,) = result.lesion_rows
    assert lesion["sct_visible"]
    assert lesion["audit_flagged"] is False
    assert lesion["audit_score"] is None and lesion["audit_signals"] == ""
    assert result.audit_flags == []
    assert result.case_row["audit_n_flags"] == 0
    assert result.case_row["audit_n_false_flags"] == 0


def test_flag_where_ct_agrees_with_sct_is_a_false_flag(files: dict[str, Path]) -> None:
    # The failure sCT as the CT too: the MRI still shows the calcification, the CT does not.
    case = spec(files, ct=files["failure_sct"], lesions=None)
    result = compute_case(case, AUDIT)
    assert result.audit_flags is not None
    (flag,) = result.audit_flags
    assert flag["mean_abs_diff_hu"] == pytest.approx(0.0, abs=1e-3)
    assert flag["matched_lesion_ids"] == ""
    assert flag["true_discrepancy"] is False and flag["discrepancy_reason"] == ""
    assert result.case_row["audit_n_true_discrepancies"] == 0
    assert result.case_row["audit_n_false_flags"] == 1


def test_match_margin_decides_which_lesion_a_flag_belongs_to(files: dict[str, Path]) -> None:
    # A 2 mm lesion 12 mm above the calcification along S: ~5 mm from the flag's edge.
    above = LesionPointSpec(
        center_lps_mm=(LESION_CENTRE_LPS_MM[0], LESION_CENTRE_LPS_MM[1], 12.0), radius_mm=2.0
    )
    case = spec(files, lesions=None, lesion_points=(above,))
    for margin_mm, matched in ((2.0, False), (10.0, True)):
        settings = AUDIT.model_copy(
            update={"audit": AuditColumnSettings(match_margin_mm=margin_mm)}
        )
        result = compute_case(case, settings)
        assert result.lesion_rows[0]["audit_flagged"] is matched
        assert result.audit_flags is not None
        (flag,) = result.audit_flags
        assert flag["matched_lesion_ids"] == ("1" if matched else "")
        # not an omitted lesion (CSF on CT too), but the HU difference confirms the flag
        assert flag["true_discrepancy"] is True
        assert flag["discrepancy_reason"] == "mean |sCT - CT| >= 100 HU"


@pytest.mark.parametrize(
    ("mri", "expected"),
    [((), "the case has no MRI"), (("mri_no_protocol",), "repetition_time_ms")],
)
def test_case_without_mri_or_protocol_gets_empty_audit_columns(
    files: dict[str, Path], mri: tuple[str, ...], expected: str
) -> None:
    result = compute_case(spec(files, mri=tuple(files[m] for m in mri)), AUDIT)
    assert result.ok and result.audit_flags is None
    (lesion,) = result.lesion_rows
    assert all(lesion[c] is None for c in AUDIT_LESION_COLUMNS)
    assert lesion["ct_visible"] and not lesion["sct_visible"]  # the validation itself stands
    assert all(result.case_row[c] is None for c in AUDIT_CASE_COLUMNS)
    (warning,) = [w for w in result.warnings if w.startswith("audit not run")]
    assert expected in warning


def test_without_audit_settings_there_are_no_audit_columns(files: dict[str, Path]) -> None:
    result = compute_case(spec(files), ValidationSettings(metric_threads=1))
    assert result.audit_flags is None
    assert not set(AUDIT_LESION_COLUMNS) & set(result.lesion_rows[0])
    assert not set(AUDIT_CASE_COLUMNS) & set(result.case_row)


def test_audit_settings_change_the_fingerprint(files: dict[str, Path]) -> None:
    plain = ValidationSettings()
    # without the audit, the fingerprint is the one earlier versions gave (resume still works)
    before = plain.model_dump(mode="json", exclude={"metric_threads", "audit"})
    before["registration"].pop("threads", None)
    text = json.dumps(before, sort_keys=True).encode("utf-8")
    assert plain.fingerprint() == hashlib.sha256(text).hexdigest()
    prints = {
        plain.fingerprint(),
        AUDIT.fingerprint(),
        ValidationSettings(audit=AuditColumnSettings(match_margin_mm=3.0)).fingerprint(),
        ValidationSettings(audit=AuditColumnSettings(discrepancy_hu=50.0)).fingerprint(),
        ValidationSettings(audit=AuditColumnSettings(model=str(SHIPPED_AUDIT_MODEL))).fingerprint(),
    }
    assert len(prints) == 5
    with_model = ValidationSettings(audit=AuditColumnSettings(model=str(SHIPPED_AUDIT_MODEL)))
    files_seen = case_fingerprint(spec(files), with_model)["files"]
    assert isinstance(files_seen[str(SHIPPED_AUDIT_MODEL)], list)  # the model's files count


def test_cohort_run_writes_the_flag_table_and_resumes_with_it(
    files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    cases = [spec(files), spec(files, "correct_sct", case_id="correct")]
    first = run_validation(cases, out, AUDIT, n_workers=0, figures=False, report_writer=None)
    assert first.n_ok == 2 and first.computed == ["shapes", "correct"]
    flags = pd.read_csv(out / "audit_flags.csv")
    assert list(flags.columns) == list(AUDIT_FLAG_COLUMNS)
    assert len(flags) == 1 and bool(flags.loc[0, "true_discrepancy"])
    assert len(pd.read_parquet(out / "audit_flags.parquet")) == 1
    lesions = pd.read_parquet(out / "lesions.parquet")
    assert list(lesions["audit_flagged"]) == [True, False]
    cases_csv = pd.read_csv(out / "cases.csv")
    assert list(cases_csv["audit_n_flags"]) == [1, 0]
    audit = json.loads((out / "metrics.json").read_text())["audit"]
    assert audit["lesions_flagged"] == {"flagged": 1, "n": 2}
    assert audit["omitted_lesions_flagged"]["flagged"] == 1
    assert audit["omitted_lesions_flagged"]["n"] == 1
    assert audit["n_true_discrepancies"] == 1 and audit["false_flags_per_case"] == 0.0
    assert json.loads((out / "statistics.json").read_text())["audit"] == audit
    settings = json.loads((out / "settings.json").read_text())
    assert settings["settings"]["audit"]["match_margin_mm"] == 2.0
    assert "true discrepancy" in settings["conventions"]["audit"]

    (out / "audit_flags.csv").unlink()
    again = run_validation(cases, out, AUDIT, n_workers=0, figures=False, report_writer=None)
    assert again.reused == ["shapes", "correct"] and not again.computed
    assert again.results[0].audit_flags == first.results[0].audit_flags
    assert pd.read_csv(out / "audit_flags.csv").equals(flags)

    # without the audit the fingerprint differs: recomputed, and the stale flag table goes
    plain = ValidationSettings(metric_threads=1)
    third = run_validation(cases, out, plain, n_workers=0, figures=False, report_writer=None)
    assert third.computed == ["shapes", "correct"]
    assert not (out / "audit_flags.csv").exists()
    assert "audit_flagged" not in pd.read_csv(out / "lesions.csv").columns


def test_report_shows_the_audit_column(files: dict[str, Path], tmp_path: Path) -> None:
    from synthct.report.validation_report import write_validation_report

    out = tmp_path / "out"
    run_validation([spec(files)], out, AUDIT, n_workers=0, figures=False, report_writer=None)
    html = write_validation_report(out).read_text(encoding="utf-8")
    assert "Flagged by audit" in html and "yes (" in html


def test_cli_audit_with_the_shipped_audit_model(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [
        "validate",
        "--ct", str(files["ct"]),
        "--sct", str(files["failure_sct"]),
        "--mri", str(files["mri"]),
        "--lesions", str(files["lesions"]),
        "--out", str(out),
        "--workers", "0",
        "--no-figures",
        "--no-report",
    ]  # fmt: skip
    # The shipped audit model's rule: MRI consistency + the lesion-aware reference (which runs
    # at its planned 0.74 x 0.74 x 0.9 mm spacing, so this 1.5 mm block phantom is in its domain).
    shipped = [*args, "--audit-model", str(SHIPPED_AUDIT_MODEL)]
    # The shipped calibration's domain is that of those phantoms too: by default the audit
    # refuses this MRI and says why; computed anyway, it flags the omitted lesion.
    refused = CliRunner().invoke(app, [*shipped, "--out", str(tmp_path / "refused")])
    assert refused.exit_code == 0, refused.output
    cases = pd.read_csv(tmp_path / "refused" / "cases.csv")
    assert "voxel size" in str(cases.loc[0, "audit_refused"])
    result = CliRunner().invoke(app, [*shipped, "--no-audit-domain-check"])
    assert result.exit_code == 0, result.output
    assert "1/1 lesions flagged" in result.output
    flags = pd.read_csv(out / "audit_flags.csv")
    assert len(flags) == 1 and bool(flags.loc[0, "true_discrepancy"])
    settings = json.loads((out / "settings.json").read_text())["settings"]["audit"]
    assert settings["model"] == str(SHIPPED_AUDIT_MODEL.resolve())
    assert settings["reference"] is True

    bad = CliRunner().invoke(app, [*args, "--audit-model", str(tmp_path / "nowhere")])
    assert bad.exit_code == 2
    assert "no novelty model here" in bad.output
    unknown = CliRunner().invoke(app, [*args, "--audit-reference-model", "no_such_model"])
    assert unknown.exit_code == 2
    assert "neither a shipped model nor a folder" in unknown.output

    no_protocol = [*args[:6], str(files["mri_no_protocol"]), *args[7:]]
    skipped = CliRunner().invoke(app, [*no_protocol, "--audit", "--no-resume"])
    assert skipped.exit_code == 0, skipped.output
    assert "audit not run" in skipped.output and "sidecar" in skipped.output


def test_flags_reach_a_ct_on_another_grid_and_through_a_registration(
    files: dict[str, Path], tmp_path: Path
) -> None:
    # CT and lesion map on a finer grid of the same frame: the audit's labels are resampled
    # onto it (nearest neighbour); with --register, through the sCT's registration.
    from synthct.geometry import Geometry
    from synthct.io import read_volume
    from synthct.resample import resample_to

    ct, lesions = read_volume(files["ct"], kind="ct"), read_volume(files["lesions"], kind="label")
    g = ct.geometry
    fine = Geometry.from_parameters((80, 80, 40), (1.2, 1.2, 1.2), g.index_to_lps((0, 0, 0)))
    write_volume(resample_to(ct, fine), tmp_path / "ct.nii.gz")
    write_volume(resample_to(lesions, fine), tmp_path / "lesions.nii.gz")
    case = spec(files, ct=tmp_path / "ct.nii.gz", lesions=tmp_path / "lesions.nii.gz")
    for register in (False, True):
        result = compute_case(case, AUDIT.model_copy(update={"rigid_registration": register}))
        assert result.case_row["sct_registered"] is register
        assert result.lesion_rows[0]["audit_flagged"] is True
        assert result.audit_flags is not None
        (flag,) = result.audit_flags
        assert flag["matched_lesion_ids"] == "1" and flag["true_discrepancy"] is True
        assert flag["ct_voxels"] > 137  # more, smaller voxels than the MRI's 137
        assert flag["mean_abs_diff_hu"] > 500.0


def test_flag_outside_the_ct_is_not_compared(files: dict[str, Path], tmp_path: Path) -> None:
    # A CT covering only the caudal third of the MRI: the flag (at S = 0 mm) lies outside it.
    from synthct.geometry import Geometry
    from synthct.io import read_volume
    from synthct.resample import resample_to

    ct = read_volume(files["ct"], kind="ct")
    g = ct.geometry
    caudal = Geometry.from_parameters((64, 64, 10), g.spacing_mm, g.index_to_lps((0, 0, 0)))
    write_volume(resample_to(ct, caudal), tmp_path / "ct.nii.gz")
    result = compute_case(spec(files, ct=tmp_path / "ct.nii.gz", lesions=None), AUDIT)
    assert result.audit_flags is not None
    (flag,) = result.audit_flags
    assert flag["ct_voxels"] == 0 and flag["mean_abs_diff_hu"] is None
    assert flag["true_discrepancy"] is None
    assert result.case_row["audit_n_flags"] == 1
    assert result.case_row["audit_n_true_discrepancies"] == 0
    assert result.case_row["audit_n_false_flags"] == 0
    assert any("flag 1 lies outside the CT" in w for w in result.warnings)


def test_the_audit_column_needs_its_stage(files: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(SynthctError, match="no audit stage") as err:
        validation_case.validate_case(spec(files), AUDIT)
    assert "audit_case_columns" in str(err.value)
    with pytest.raises(SynthctError, match="no audit stage"):
        runner.run_validation([spec(files)], tmp_path / "out", AUDIT, n_workers=0)
    assert not (tmp_path / "out").exists()
