"""The paper's failure on a small spine phantom cohort: flagged; evaluation and training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from synthct.audit.combine import load_calibration
from synthct.audit.evaluation import evaluate_cohort, failure_sct
from synthct.audit.novelty import load_novelty_model
from synthct.audit.pipeline import run_audit
from synthct.audit.training import phantom_lesion_free_cases, train_audit_model
from synthct.phantom.cohort import generate_cohort, load_cohort_spec
from synthct.phantom.cohort_files import PhantomCase

pytestmark = pytest.mark.slow

#: A dense calcified intradural meningioma at T6 (like the paper's T5-7 and T8/9 patients).
LESION = {
    "type": "meningioma",
    "level": "T6",
    "mean_hu": 766.0,
    "axial_diameter_mm": 10.0,
    "sagittal_diameter_mm": 14.0,
    "thickness_mm": 7.0,
    "position": "dorsal",
    "pattern": "dense",
}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three cases at 0.8 mm around the canal: one meningioma, two lesion-free."""
    spec = load_cohort_spec(
        cases=[
            {"centre_level": "T6", "lesions": [LESION]},
            {"centre_level": "T6"},
            {"centre_level": "T7"},
        ],
        seed=5,
        protocol="paper_3t",
        voxel_size_mm=(0.8, 0.8, 0.8),
        field_of_view_mm=(64.0, 96.0, 40.0),
        supersample=2,
        failure_sct=True,
    )
    return generate_cohort(spec, tmp_path_factory.mktemp("cohort") / "cohort")


def test_paper_failure_is_flagged_at_the_tumour(cohort: Path) -> None:
    case = PhantomCase(cohort / "case-000")
    truth = case.lesions()[0]
    sct = failure_sct(case)
    lesion = case.lesion_labels().array > 0
    assert float(np.mean(sct.array[lesion])) < 30.0  # the sCT shows CSF there
    assert float(np.mean(case.ct().array[lesion])) > 600.0  # the CT shows the calcification
    result = run_audit(case.mr(), sct)
    assert result.n_flags >= 1
    region = result.regions[0]
    distance = np.linalg.norm(np.asarray(region.centre_lps_mm) - truth["centre_lps_mm"])
    assert distance < 3.0  # mm
    assert "consistency" in region.signals_fired
    assert np.any((result.region_labels.array == region.id) & lesion)


def test_correct_sct_of_lesion_free_cases_gives_no_flag(cohort: Path) -> None:
    for name in ("case-001", "case-002"):
        case = PhantomCase(cohort / name)
        assert run_audit(case.mr(), case.ct()).n_flags == 0


def test_evaluation_and_training(cohort: Path, tmp_path: Path) -> None:
    cases = phantom_lesion_free_cases([cohort])
    assert [c.name for c in cases] == ["cohort/case-001", "cohort/case-002"]
    folder = train_audit_model(
        cases,
        tmp_path / "audit-model",
        novelty_options={"n_components": 6, "patches_per_volume": 3000},
    )
    calibration = load_calibration(folder)
    novelty = load_novelty_model(folder)
    assert calibration.signals["consistency"].in_rule
    assert not calibration.signals["novelty"].in_rule
    assert calibration.info["held_out_volumes"] == ["cohort/case-002"]
    assert calibration.info["held_out_false_flags_per_volume"]["consistency"] <= 0.1
    evaluation = evaluate_cohort(cohort, novelty=novelty)  # default thresholds
    lesion = evaluation.lesions[0]
    assert lesion["detected"] and lesion["omitted"] and lesion["calcified"]
    assert lesion["centre_error_mm"] < 3.0
    assert lesion["fired_consistency"]
    summary = evaluation.summary
    assert summary["target"]["sensitivity"] == 1.0
    assert summary["false_flags_per_lesion_free_volume"] == 0.0
    # merging can only join flags: never more flags than the unmerged components
    assert all(v["false_flags"] <= v["false_flags_unmerged"] for v in evaluation.volumes)
    assert summary["signal_carrying_the_result"] == "consistency"
    assert summary["per_signal"]["consistency"]["auc_voxel"] > 0.95
    assert set(evaluation.roc["voxel"]) == {"consistency", "novelty", "combined"}
    assert evaluation.lesion_table().shape[0] == 1


def test_train_evaluate_and_audit_from_the_command_line(cohort: Path, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from synthct.cli import app

    runner = CliRunner()
    model = tmp_path / "model"
    result = runner.invoke(
        app,
        ["audit-train", "--cohort", str(cohort), "--out", str(model), "--components", "6",
         "--merge-gap-mm", "7.5"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (model / "novelty.npz").is_file() and (model / "calibration.json").is_file()
    assert json.loads((model / "calibration.json").read_text())["merge_gap_mm"] == 7.5
    evaluation = tmp_path / "evaluation.json"
    result = runner.invoke(
        app,
        ["audit-evaluate", "--cohort", str(cohort), "--audit-model", str(model),
         "--out", str(evaluation)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(evaluation.read_text())["summary"]["target"]["n"] == 1
    case = cohort / "case-000"
    out = tmp_path / "audit"
    result = runner.invoke(
        app,
        ["audit", "--mri", str(case / "mr_echo-1.nii.gz"), "--mri", str(case / "mr_echo-2.nii.gz"),
         "--sct", str(case / "sct_lesions_as_csf.nii.gz"), "--novelty", str(model),
         "--out", str(out), "--no-figures"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((out / "audit.json").read_text())
    assert report["calibration"]["merge_gap_mm"] == 7.5  # the model's, used for the regions
    # novelty is outside the calibrated rule: computed only with --all-signals
    assert report["signals_used"] == ["consistency"]
    assert report["calibration"]["signals"]["novelty"]["in_rule"] is False
    assert report["n_flagged_regions"] >= 1
    everything = tmp_path / "audit-all"
    result = runner.invoke(
        app,
        ["audit", "--mri", str(case / "mr_echo-1.nii.gz"), "--mri", str(case / "mr_echo-2.nii.gz"),
         "--sct", str(case / "sct_lesions_as_csf.nii.gz"), "--novelty", str(model),
         "--out", str(everything), "--no-figures", "--all-signals"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report_all = json.loads((everything / "audit.json").read_text())
    assert report_all["signals_used"] == ["consistency", "novelty"]
    assert report_all["n_flagged_regions"] == report["n_flagged_regions"]
