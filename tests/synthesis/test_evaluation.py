"""`synthct evaluate`: sCTs of a cohort's subset scored against CT, SynthRAD2025-style."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from synthct.cli import app
from synthct.dataset.split import Split
from synthct.evaluation.cases import (
    EvaluationCase,
    EvaluationInputError,
    read_evaluation_manifest,
    read_split,
    select_subset,
)
from synthct.evaluation.run import evaluate_cohort
from synthct.evaluation.tables import METRICS
from synthct.imaging.image_metrics import image_metrics
from synthct.io import read_volume
from synthct.synthesis.shipped import shipped_model_path
from synthct.volume import CTVolume

SYNTHRAD_COLUMNS = ["case_id", "status", "mae_hu", "psnr_db", "ms_ssim", "bone_dice_250hu"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory, make_cohort: Callable[..., Path]) -> Path:
    """Three tiny phantoms (48 x 48 x 32 voxels of 3 mm); case002 has an annotated lesion."""
    return make_cohort(tmp_path_factory.mktemp("cohort"), (1, 2, 3), lesion_case=2)


def _split(folder: Path, data: dict[str, object]) -> Path:
    path = folder / "split.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_subsets_of_a_split_file_and_of_the_manifest_column(tmp_path: Path) -> None:
    cases = [
        EvaluationCase(f"c{n}", tmp_path / "ct.nii.gz", split=s)
        for n, s in enumerate(["train", "validation", "test", "test"])
    ]
    split = read_split(
        _split(tmp_path, {"test": ["c3", "c2"], "folds": [{"train": ["c0"], "val": ["c1"]}]})
    )
    assert [c.case_id for c in select_subset(cases, "test", split=split)] == ["c2", "c3"]
    assert [c.case_id for c in select_subset(cases, "fold0-val", split=split)] == ["c1"]
    assert [c.case_id for c in select_subset(cases, "fold0-train", split=split)] == ["c0"]
    assert len(select_subset(cases, "all", split=split)) == 4
    assert [c.case_id for c in select_subset(cases, "val")] == ["c1"]  # manifest column
    with pytest.raises(EvaluationInputError, match="fold0-val"):
        select_subset(cases, "fold1-val", split=split)
    with pytest.raises(EvaluationInputError, match="not in the manifest"):
        select_subset(cases, "test", split=Split(test=["c9"], folds=[], seed=0))


def test_a_split_that_leaks_test_cases_into_a_fold_is_refused(tmp_path: Path) -> None:
    path = _split(tmp_path, {"test": ["a"], "folds": [{"train": ["a", "b"], "val": ["c"]}]})
    with pytest.raises(EvaluationInputError, match="'a' is in both test and train"):
        read_split(path)


def test_the_ct_as_its_own_sct_scores_perfectly(cohort: Path, tmp_path: Path) -> None:
    rows = list(csv.DictReader(cohort.read_text(encoding="utf-8").splitlines()))
    for row in rows:
        row["sct"] = row["ct"]
    manifest = cohort.parent / "perfect.csv"
    with manifest.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = evaluate_cohort(read_evaluation_manifest(manifest), tmp_path / "out")
    table = pd.read_csv(summary.files["evaluation"])
    assert list(table.columns[: len(SYNTHRAD_COLUMNS)]) == SYNTHRAD_COLUMNS
    assert (table["status"] == "ok").all() and len(table) == 3
    np.testing.assert_allclose(table["mae_hu"], 0.0, atol=1e-9)
    np.testing.assert_allclose(table["ms_ssim"], 1.0, atol=1e-9)
    np.testing.assert_allclose(table["bone_dice_250hu"], 1.0)
    assert np.isinf(table["psnr_db"]).all()  # identical images: infinite PSNR
    assert summary.cohort["mae_hu"]["mean"] == pytest.approx(0.0, abs=1e-9)
    assert summary.cohort["psnr_db"]["n"] == 0 and summary.cohort["psnr_db"]["n_nonfinite"] == 3
    assert table.loc[table["case_id"] == "case002", "n_lesions"].item() == 1
    lesions = pd.read_csv(tmp_path / "out" / "lesions.csv")
    assert list(lesions["case_id"]) == ["case002"]
    assert lesions["sct_mean_hu"].item() == pytest.approx(lesions["ct_mean_hu"].item())


@pytest.mark.slow
def test_evaluate_a_shipped_model_on_the_test_subset_with_tta(cohort: Path, tmp_path: Path) -> None:
    split = _split(
        tmp_path, {"test": ["case002", "case003"], "folds": [{"train": ["case001"], "val": []}]}
    )
    out = tmp_path / "eval"
    args = [
        "evaluate", str(cohort), "--out", str(out), "--model",
        str(shipped_model_path("product_like")), "--split", str(split), "--subset", "test",
        "--tta", "--tta-axes", "0", "--uncertainty",
    ]  # fmt: skip
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    table = pd.read_csv(out / "evaluation.csv")
    assert list(table["case_id"]) == ["case002", "case003"]
    assert list(table.columns[: len(SYNTHRAD_COLUMNS)]) == SYNTHRAD_COLUMNS
    assert set(METRICS) <= set(table.columns)
    for row in table.itertuples():
        # validation's own metric on the written pair (same body-mask rule) gives the same
        ct = read_volume(cohort.parent / f"{row.case_id}_ct.nii.gz", kind="ct")
        sct = read_volume(out / "cases" / str(row.case_id) / "sct.nii.gz", kind="sct")
        assert isinstance(ct, CTVolume) and isinstance(sct, CTVolume)
        direct = image_metrics(ct, sct)
        assert row.mae_hu == pytest.approx(direct.mae_hu, rel=1e-9)
        assert row.ms_ssim == pytest.approx(direct.ms_ssim, rel=1e-9)
        assert row.bone_dice_250hu == pytest.approx(direct.bone_dice[250.0], rel=1e-9)
        assert 5.0 < row.mae_hu < 300.0  # a real model on 3 mm phantoms: off but not absurd
        assert (out / "cases" / str(row.case_id) / "sct_epistemic_sd.nii.gz").is_file()
        # 3 mm phantoms, run at the model's planned spacing: the voxel size is no mismatch
        # (the column itself: tests/validation/test_pipeline.py)
        assert "voxel size" not in str(row.sct_out_of_domain)
    summary = (out / "evaluation_summary.md").read_text(encoding="utf-8")
    assert "| mae_hu | 2 |" in summary and "subset: test" in summary
    assert (out / "evaluation_summary.html").is_file()
    assert pd.read_csv(out / "lesions.csv")["case_id"].tolist() == ["case002"]
    # resume: nothing is synthesised again and the table is the same
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "synthesised" not in again.output and "case003: reused" in again.output
    pd.testing.assert_frame_equal(pd.read_csv(out / "evaluation.csv"), table)


def test_bad_evaluation_input_is_a_clear_error(cohort: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    leak = _split(tmp_path, {"test": ["case001"], "folds": [{"train": ["case001"], "val": []}]})
    done = runner.invoke(app, ["evaluate", str(cohort), "--out", str(tmp_path / "o"),
                               "--split", str(leak), "--subset", "test"])  # fmt: skip
    assert done.exit_code == 2 and "'case001' is in both" in done.output
    assert "Traceback" not in done.output
    done = runner.invoke(app, ["evaluate", str(cohort), "--out", str(tmp_path / "o"),
                               "--subset", "fold3-val"])  # fmt: skip
    assert done.exit_code == 2 and "--split" in done.output
    # no model and no sct column: every case is a failed row with the reason, nothing else
    summary = evaluate_cohort(read_evaluation_manifest(cohort), tmp_path / "none")
    assert {r["status"] for r in summary.rows} == {"failed"}
    assert "no sct and no model" in str(summary.rows[0]["error"])


def test_an_evaluation_that_measures_no_case_exits_non_zero(cohort: Path, tmp_path: Path) -> None:
    """Every sCT is the CT mirrored left-right: the alignment check refuses each, nothing is
    measured, and the exit code says so (1; `--align warn` measures them anyway)."""
    from synthct.io import write_volume

    rows = list(csv.DictReader(cohort.read_text(encoding="utf-8").splitlines()))
    for row in rows:
        ct = read_volume(cohort.parent / row["ct"], kind="ct")
        assert isinstance(ct, CTVolume)
        mirrored = tmp_path / f"{row['case_id']}_mirrored.nii.gz"
        write_volume(
            CTVolume(np.ascontiguousarray(np.asarray(ct.array)[::-1]), ct.affine), mirrored
        )
        row["sct"] = str(mirrored)
    manifest = cohort.parent / "mirrored.csv"
    with manifest.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = CliRunner().invoke(app, ["evaluate", str(manifest), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    assert "no case was measured" in result.stderr
    warned = ["evaluate", str(manifest), "-o", str(tmp_path / "warned"), "--align", "warn"]
    assert CliRunner().invoke(app, warned).exit_code == 0


@pytest.mark.slow
def test_a_poor_model_is_measured_and_a_shifted_sct_still_stopped(
    cohort: Path, tmp_path: Path
) -> None:
    """A model of two training iterations renders no bone: its sCTs are where the CTs are, so
    evaluate's default for a model (--align shift) measures them (the poor figures are the
    result), while --align check stops each for its bone Dice; a manifest's sCT shifted 9 mm
    is still stopped by the default for given sCTs."""
    from synthct.io import write_volume
    from tiny_config import tiny_config

    config = tiny_config(tmp_path, iterations=2, validation_interval=2, checkpoint_interval=2)
    run = tmp_path / "run"
    trained = CliRunner().invoke(app, ["train", str(cohort), "-o", str(run), "-c", str(config)])
    assert trained.exit_code == 0, trained.output
    model = ["--model", str(run / "model")]
    done = CliRunner().invoke(app, ["evaluate", str(cohort), "-o", str(tmp_path / "e"), *model])
    assert done.exit_code == 0, done.output
    table = pd.read_csv(tmp_path / "e" / "evaluation.csv")
    assert set(table["status"]) == {"ok"} and (table["bone_dice_250hu"] < 0.3).all()
    result = json.loads((tmp_path / "e" / "cases" / "case001" / "result.json").read_text())
    assert result["result"]["alignment_check"]["alignment_action"] == "measured_poor_match"
    strict = ["evaluate", str(cohort), "-o", str(tmp_path / "c"), *model, "--align", "check"]
    stopped = CliRunner().invoke(app, strict)
    assert stopped.exit_code == 1 and "bone Dice" in stopped.output

    rows = list(csv.DictReader(cohort.read_text(encoding="utf-8").splitlines()))[:1]
    ct = read_volume(cohort.parent / rows[0]["ct"], kind="ct")
    moved = ct.affine.copy()
    moved[0, 3] += 9.0
    write_volume(CTVolume(np.asarray(ct.array), moved), tmp_path / "shifted.nii.gz")
    rows[0]["sct"] = str(tmp_path / "shifted.nii.gz")
    manifest = cohort.parent / "shifted_given.csv"  # beside the cohort: its relative paths
    with manifest.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    given = CliRunner().invoke(app, ["evaluate", str(manifest), "-o", str(tmp_path / "g")])
    assert given.exit_code == 1 and "shifted by" in given.output
    assert "case001: given sCT" in given.output
