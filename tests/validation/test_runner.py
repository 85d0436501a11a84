"""The cohort runner and `synthct validate`: tables, JSON, Dask, resume, the CLI.

The cohort is the paper's design on phantoms: five cases with one calcified lesion each
(113 to 766 HU, as barely to densely calcified meningiomas) and the failure sCT that shows CSF
where the lesions are, so CT sees 5/5 and the sCT 0/5.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from typer.testing import CliRunner

from synthct.cli import app
from synthct.validation.case import ValidationSettings
from synthct.validation.manifest import ManifestError, read_manifest
from synthct.validation.outputs import default_report_writer
from synthct.validation.runner import (
    CaseProgress,
    RunSummary,
    case_fingerprint,
    read_lesion_masks,
    run_validation,
)
from validation.test_pipeline import write_case

LESION_HU = [113.0, 300.0, 463.6, 600.0, 766.0]
RADII_MM = [3.5, 4.0, 4.0, 4.5, 5.0]
TABLES = ("lesions", "cases", "image_metrics_long", "failures")


def write_cohort(folder: Path, *, sct: str = "csf") -> Path:
    """Five one-lesion cases and their CSV manifest; returns the manifest path."""
    rows = [
        write_case(folder, f"p{n + 1}", lesion_hu=[hu], radius_mm=[r], sct=sct, seed=n)  # type: ignore[arg-type]
        for n, (hu, r) in enumerate(zip(LESION_HU, RADII_MM, strict=True))
    ]
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["case_id", "ct", "sct", "lesions"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def run(manifest: Path, out: Path, **options: object) -> tuple[RunSummary, list[CaseProgress]]:
    events: list[CaseProgress] = []
    options.setdefault("figures", False)
    options.setdefault("report_writer", None)
    options.setdefault("n_workers", 0)
    summary = run_validation(
        read_manifest(manifest),
        out,
        progress=events.append,
        **options,  # type: ignore[arg-type]
    )
    return summary, events


def tables(out: Path) -> dict[str, str]:
    return {name: (out / f"{name}.csv").read_text() for name in TABLES}


def strict_load(path: Path) -> dict:
    def refuse(token: str) -> None:
        raise AssertionError(f"{path.name} holds the non-JSON token {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


def _nulls_as_none(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype(object).where(frame.notna(), None)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cohort(tmp_path_factory.mktemp("cohort"))


@pytest.fixture(scope="module")
def serial_run(cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[RunSummary, Path]:
    out = tmp_path_factory.mktemp("serial") / "out"
    summary, _ = run(cohort, out)
    return summary, out


# -- the paper's finding, and the tables ----------------------------------------------------------
def test_failure_sct_cohort_gives_5_of_5_vs_0_of_5(serial_run: tuple[RunSummary, Path]) -> None:
    summary, out = serial_run
    assert summary.n_ok == 5 and not summary.failures
    assert summary.visibility == {"ct": (5, 5), "sct": (0, 5)}
    lesions = pd.read_csv(out / "lesions.csv")
    assert list(lesions.columns[:2]) == ["case_id", "lesion_id"]
    assert list(lesions["case_id"]) == ["p1", "p2", "p3", "p4", "p5"]
    assert lesions["ct_visible"].all() and not lesions["sct_visible"].any()
    assert (lesions["sct_diameter_axial_mm"] == 0).all()
    assert (lesions["sct_diameter_sagittal_mm"] == 0).all()
    np.testing.assert_allclose(lesions["ct_mean_hu"], LESION_HU, atol=25)
    assert list(lesions["calcification_grade"]) == [
        "none_or_barely",
        "partial",
        "dense",
        "dense",
        "dense",
    ]
    parquet = pd.read_parquet(out / "lesions.parquet")
    pd.testing.assert_frame_equal(_nulls_as_none(parquet), _nulls_as_none(lesions))
    assert "5/5 CT" in summary.results_paragraph and "0/5 sCT" in summary.results_paragraph


def test_statistics_equal_direct_scipy_calls(serial_run: tuple[RunSummary, Path]) -> None:
    _, out = serial_run
    lesions = pd.read_csv(out / "lesions.csv")
    statistics = strict_load(out / "statistics.json")
    assert statistics["available"] and statistics["n_lesions"] == 5
    cohort = statistics["cohort"]
    visibility = cohort["visibility"]
    table = [[5, 0], [0, 5]]  # modality (CT, sCT) x visible (yes, no)
    assert visibility["chi_square_p"] == pytest.approx(
        stats.chi2_contingency(table, correction=False).pvalue, rel=1e-12
    )
    assert visibility["mcnemar_p"] == pytest.approx(mcnemar([[0, 5], [0, 0]], exact=True).pvalue)
    for quantity in ("mean_hu", "diameter_axial_mm", "diameter_sagittal_mm"):
        ct, sct = lesions[f"ct_{quantity}"].to_numpy(), lesions[f"sct_{quantity}"].to_numpy()
        found = cohort["comparisons"][quantity]
        assert found["t_test_p"] == pytest.approx(stats.ttest_rel(sct, ct).pvalue, rel=1e-9)
        unit = quantity.rsplit("_", 1)[1]
        assert found[f"mean_difference_{unit}"] == pytest.approx(np.mean(sct - ct), rel=1e-9)
    d = lesions["sct_mean_hu"] - lesions["ct_mean_hu"]
    assert cohort["comparisons"]["mean_hu"]["wilcoxon_p"] == pytest.approx(
        stats.wilcoxon(d, method="exact").pvalue
    )
    assert statistics["results_paragraph"].startswith("The lesions were visible on 5/5 CT")


def test_outputs_are_long_strict_and_documented(serial_run: tuple[RunSummary, Path]) -> None:
    _, out = serial_run
    cases = pd.read_csv(out / "cases.csv")
    assert list(cases["case_id"]) == ["p1", "p2", "p3", "p4", "p5"]
    assert (cases["status"] == "ok").all() and (cases["n_visible_sct"] == 0).all()
    long = pd.read_csv(out / "image_metrics_long.csv")
    assert list(long.columns) == ["case_id", "metric", "value", "unit"]
    units = dict(zip(long["metric"], long["unit"], strict=False))
    assert units["mae_hu"] == "HU" and units["psnr_db"] == "dB" and units["ms_ssim"] == "1"
    assert units["body_volume_ml"] == "mL" and units["bone_dice_150hu"] == "1"
    mae = long[long["metric"] == "mae_hu"].set_index("case_id")["value"]
    np.testing.assert_allclose(mae.loc[cases["case_id"]], cases["mae_hu"])
    metrics = strict_load(out / "metrics.json")
    aggregate = metrics["image_metrics"]["aggregate"]["mae_hu"]
    assert aggregate["n"] == 5
    assert aggregate["mean"] == pytest.approx(cases["mae_hu"].mean())
    assert aggregate["sd"] == pytest.approx(cases["mae_hu"].std(ddof=1))
    assert aggregate["p25"] == pytest.approx(np.percentile(cases["mae_hu"], 25))
    assert metrics["visibility"] == {"ct": {"visible": 5, "n": 5}, "sct": {"visible": 0, "n": 5}}
    assert set(metrics["image_metrics"]["per_case"]) == {"p1", "p2", "p3", "p4", "p5"}
    settings = strict_load(out / "settings.json")
    conventions = settings["conventions"]
    assert "null" in conventions["json"] and "sCT minus CT" in conventions["tables"]["differences"]
    assert conventions["image_metrics"]["psnr_db"]["data_range_hu"] == 4095
    assert "Rose" in conventions["lesion_metrics"]["visible"]
    assert settings["versions"]["synthct"] and settings["versions"]["dask"]
    assert pd.read_csv(out / "failures.csv").empty
    masks = read_lesion_masks(out / "cases" / "p3")
    assert [lesion_id for lesion_id, _ in masks] == [1]
    assert masks[0][1].ct_segmentation.any() and not masks[0][1].sct_segmentation.any()


def test_identical_sct_writes_psnr_inf_as_null(tmp_path: Path) -> None:
    row = write_case(tmp_path, "same", lesion_hu=[600.0])
    manifest = tmp_path / "m.csv"
    manifest.write_text("case_id,ct,sct,lesions\n" + ",".join(row.values()) + "\n")
    summary, _ = run(manifest, tmp_path / "out")
    assert summary.n_ok == 1
    metrics = strict_load(tmp_path / "out" / "metrics.json")
    per_case = metrics["image_metrics"]["per_case"]["same"]
    assert per_case["psnr_db"] is None and per_case["mae_hu"] == 0 and per_case["ms_ssim"] == 1
    assert metrics["image_metrics"]["aggregate"]["psnr_db"]["n_nonfinite"] == 1
    cases = pd.read_csv(tmp_path / "out" / "cases.csv")
    assert math.isinf(cases.loc[0, "psnr_db"])  # the tables keep inf; only JSON writes null
    assert pd.read_parquet(tmp_path / "out" / "cases.parquet").loc[0, "psnr_db"] == np.inf
    statistics = strict_load(tmp_path / "out" / "statistics.json")
    assert not statistics["available"] and "at least 2" in statistics["error"]


# -- Dask -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_dask_with_1_and_2_workers_gives_the_same_tables(
    cohort: Path, serial_run: tuple[RunSummary, Path], tmp_path: Path
) -> None:
    _, serial = serial_run
    one, _ = run(cohort, tmp_path / "one", n_workers=1)
    two, events_two = run(cohort, tmp_path / "two", n_workers=2)
    assert one.workers == 1 and two.workers == 2
    assert sorted(e.case_id for e in events_two) == ["p1", "p2", "p3", "p4", "p5"]
    assert [e.done for e in events_two] == [1, 2, 3, 4, 5]
    assert tables(tmp_path / "one") == tables(tmp_path / "two") == tables(serial)
    for name in ("metrics.json", "statistics.json"):
        assert strict_load(tmp_path / "two" / name) == strict_load(serial / name)


def test_existing_scheduler_address(cohort: Path, tmp_path: Path) -> None:
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        summary, events = run(
            cohort, tmp_path / "out", n_workers=None, scheduler_address=cluster.scheduler_address
        )
    assert summary.n_ok == 5 and summary.workers == 1 and len(events) == 5


def test_all_cases_failing_still_writes_every_file(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("case_id,ct,sct\na,none.nii.gz,none.nii.gz\nb,x.nrrd,y.nrrd\n")
    summary, _ = run(manifest, tmp_path / "out")
    assert summary.n_ok == 0 and [r.case_id for r in summary.failures] == ["a", "b"]
    for name in ("lesions", "cases", "image_metrics_long"):
        assert pd.read_csv(tmp_path / "out" / f"{name}.csv").empty
        assert pd.read_parquet(tmp_path / "out" / f"{name}.parquet").empty
    assert list(pd.read_csv(tmp_path / "out" / "failures.csv")["case_id"]) == ["a", "b"]
    metrics = strict_load(tmp_path / "out" / "metrics.json")
    assert metrics["n_ok"] == 0 and metrics["n_failed"] == 2
    assert not strict_load(tmp_path / "out" / "statistics.json")["available"]


# -- resume ------------------------------------------------------------------------------------
def test_resume_after_a_missing_file_recomputes_only_that_case(
    cohort: Path, serial_run: tuple[RunSummary, Path], tmp_path: Path
) -> None:
    _, serial = serial_run
    folder = cohort.parent
    moved = folder / "p2" / "sct.moved.nii.gz"
    (folder / "p2" / "sct.nii.gz").rename(moved)
    try:
        first, _ = run(cohort, tmp_path / "out")
    finally:
        moved.rename(folder / "p2" / "sct.nii.gz")
    assert [r.case_id for r in first.failures] == ["p2"]
    failures = pd.read_csv(tmp_path / "out" / "failures.csv")
    assert list(failures["case_id"]) == ["p2"] and list(failures["column"]) == ["sct"]
    assert "sct.nii.gz" in failures.loc[0, "reason"] and "no such file" in failures.loc[0, "reason"]
    assert "p2" not in set(pd.read_csv(tmp_path / "out" / "cases.csv")["case_id"])
    assert "p2" not in set(pd.read_csv(tmp_path / "out" / "lesions.csv")["case_id"])

    second, events = run(cohort, tmp_path / "out")
    assert second.computed == ["p2"] and second.reused == ["p1", "p3", "p4", "p5"]
    assert [e.status for e in events] == ["reused"] * 4 + ["ok"]
    assert tables(tmp_path / "out") == tables(serial)

    (tmp_path / "out" / "cases" / "p4" / "result.json").unlink()
    third, _ = run(cohort, tmp_path / "out")
    assert third.computed == ["p4"]
    assert tables(tmp_path / "out") == tables(serial)


def test_interrupted_run_resumes_without_losing_or_duplicating(
    cohort: Path, serial_run: tuple[RunSummary, Path], tmp_path: Path
) -> None:
    _, serial = serial_run
    out = tmp_path / "out"
    seen: list[str] = []

    def interrupt_after_two(event: CaseProgress) -> None:
        seen.append(event.case_id)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_validation(
            read_manifest(cohort),
            out,
            n_workers=0,
            progress=interrupt_after_two,
            figures=False,
            report_writer=None,
        )
    assert not (out / "lesions.csv").exists()
    # a half-written result (a crash during the write) counts as missing
    (out / "cases" / "p3").mkdir(parents=True)
    (out / "cases" / "p3" / "result.json").write_text('{"fingerprint": {"dig')
    resumed, _ = run(cohort, out)
    assert resumed.reused == seen and resumed.computed == ["p3", "p4", "p5"]
    assert tables(out) == tables(serial)


def test_changed_inputs_or_settings_are_recomputed(
    cohort: Path, serial_run: tuple[RunSummary, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run(cohort, out)
    manifest = read_manifest(cohort)
    p5 = manifest.cases[4]
    before = case_fingerprint(p5, ValidationSettings())["digest"]
    stat = p5.ct.stat()
    os.utime(p5.ct, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert case_fingerprint(p5, ValidationSettings())["digest"] != before
    again, _ = run(cohort, out)
    assert again.computed == ["p5"]
    stricter = ValidationSettings(lesion={"rose_threshold": 5.0})
    redone, _ = run(cohort, out, settings=stricter)
    assert len(redone.computed) == 5


def test_duplicate_case_ids_are_refused(cohort: Path, tmp_path: Path) -> None:
    case = read_manifest(cohort).cases[0]
    with pytest.raises(ManifestError, match="'p1' appears twice"):
        run_validation([case, case], tmp_path / "out", report_writer=None)
    assert not (tmp_path / "out").exists()


def test_report_writer_is_called_after_the_tables(
    cohort: Path, serial_run: tuple[RunSummary, Path], tmp_path: Path
) -> None:
    _, serial = serial_run
    out = tmp_path / "copy"
    shutil.copytree(serial, out)
    called: list[Path] = []

    def writer(folder: Path) -> Path:
        assert (folder / "lesions.csv").is_file() and (folder / "statistics.json").is_file()
        called.append(folder)
        return folder / "report.html"

    summary, _ = run(cohort, out, report_writer=writer)
    assert called == [out] and summary.report == out / "report.html"
    assert summary.computed == [] or summary.computed == ["p5"]  # p5's CT may have been touched
    assert tables(out) == tables(serial)
    found = default_report_writer()
    assert found is None or callable(found)


# -- command line --------------------------------------------------------------------------------
def test_cli_single_case_and_errors(tmp_path: Path) -> None:
    row = write_case(tmp_path, "one", lesion_hu=[600.0], sct="csf")
    cli = CliRunner()
    args = [
        "validate",
        "--ct",
        str(tmp_path / row["ct"]),
        "--sct",
        str(tmp_path / row["sct"]),
        "--lesions",
        str(tmp_path / row["lesions"]),
        "--out",
        str(tmp_path / "out"),
        "--no-figures",
        "--no-report",
    ]
    result = cli.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "visible on CT" in result.stdout and "1/1" in result.stdout and "0/1" in result.stdout
    assert (tmp_path / "out" / "lesions.csv").is_file()

    both = cli.invoke(app, ["validate", str(tmp_path / "m.csv"), *args[1:]])
    assert both.exit_code == 2 and "not both" in both.output
    nothing = cli.invoke(app, ["validate", "--out", str(tmp_path / "x")])
    assert nothing.exit_code == 2 and "nothing to validate" in nothing.output
    missing = cli.invoke(app, ["validate", str(tmp_path / "none.csv"), "--out", str(tmp_path)])
    assert missing.exit_code == 2 and "no such manifest" in missing.output


def test_cli_exits_1_when_a_case_fails(tmp_path: Path) -> None:
    good = write_case(tmp_path, "good", lesion_hu=[600.0])
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "case_id,ct,sct,lesions\n"
        + ",".join(good.values())
        + "\nbad,good/ct.nii.gz,bad/nothing.nii.gz,good/lesions.nii.gz\n"
    )
    result = CliRunner().invoke(
        app,
        ["validate", str(manifest), "-o", str(tmp_path / "out"), "--workers", "0", "--no-figures"],
    )
    assert result.exit_code == 1, result.output
    assert "1 case(s) failed" in result.stdout and "case 'bad', sct" in result.stdout
    assert list(pd.read_csv(tmp_path / "out" / "cases.csv")["case_id"]) == ["good"]
