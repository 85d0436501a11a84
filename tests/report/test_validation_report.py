"""The HTML validation report, from an output folder laid out as the pipeline writes it.

The folder is made here with the documented files: ``lesions.csv`` of real ``measure_lesion``
rows, ``cases.csv`` of real ``image_metrics`` rows, ``statistics.json`` from
``cohort_statistics`` plus ``results_paragraph``, ``settings.json``, ``failures.csv`` and the
per-lesion figures under ``cases/<case_id>/``. One case id is hostile HTML.
"""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from markupsafe import escape

from report.lesion_cases import Case, make_case
from synthct.errors import ReadError
from synthct.imaging.image_metrics import image_metrics
from synthct.report.report_tables import format_value
from synthct.report.validation_report import read_validation_outputs, write_validation_report
from synthct.validation.lesion_figure import lesion_figure
from synthct.validation.lesion_settings import LesionSettings
from synthct.validation.statistics import cohort_statistics, results_paragraph

HOSTILE_ID = "<script>alert('x')"
FAILED_ID = "case-04"
FAILED_REASON = "registration did not converge: <b>MI 0.01</b>"
#: A CT mean that only the stray lesion row of the failed case holds.
STRAY_HU = 4321.9


@dataclass(frozen=True)
class Folder:
    """A validation output folder and what was written into it."""

    root: Path
    lesions: list[dict[str, Any]]
    cases: list[dict[str, Any]]
    paragraph: str


def _write_folder(root: Path) -> Folder:
    specs = {
        "case-01": make_case(lesion_hu=600.0, seed=0),
        "case-02": make_case(lesion_hu=150.0, radius_mm=3.5, seed=1),
        "case-03": make_case(lesion_hu=250.0, missed=False, seed=2),
        HOSTILE_ID: make_case(lesion_hu=400.0, seed=3),
    }
    lesions, cases = [], []
    for case_id, case in specs.items():
        lesions.append({"case_id": case_id, **case.result.to_dict()})
        metrics = image_metrics(case.ct, case.sct).to_dict()
        metrics["conventions"] = json.dumps(metrics["conventions"])
        extra = {"n_lesions": 1, "ct_spacing_i_mm": 0.8}  # pipeline columns, not metrics
        cases.append({"case_id": case_id, "status": "ok", **extra, **metrics})
        folder = root / "cases" / case_id
        folder.mkdir(parents=True)
        _figure(folder, case)
    cases.append({"case_id": FAILED_ID, "status": "failed"})
    stray = {**lesions[0], "case_id": FAILED_ID, "ct_mean_hu": STRAY_HU}
    pd.DataFrame([*lesions, stray]).to_csv(root / "lesions.csv", index=False)
    pd.DataFrame(cases).to_csv(root / "cases.csv", index=False)
    pd.DataFrame([{"case_id": FAILED_ID, "stage": "alignment", "reason": FAILED_REASON}]).to_csv(
        root / "failures.csv", index=False
    )
    cohort = cohort_statistics(lesions, n_resamples=999)
    paragraph = results_paragraph(cohort)
    statistics = {
        "available": True,
        "error": None,
        "cohort": cohort.to_dict(),
        "results_paragraph": paragraph,
    }
    (root / "statistics.json").write_text(
        json.dumps(_strict(statistics), allow_nan=False), encoding="utf-8"
    )
    settings = {
        "lesion": LesionSettings().to_dict(),
        "alignment": {"registration": "none", "note": "CT and sCT on one grid"},
        "synthct_version": "0.1.0",
    }
    (root / "settings.json").write_text(json.dumps(settings), encoding="utf-8")
    return Folder(root, lesions, cases, paragraph)


def _strict(value: Any) -> Any:
    """Strict JSON as the pipeline writes it: NaN and infinities become null."""
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _figure(folder: Path, case: Case) -> None:
    lesion_figure(
        folder / f"lesion-{case.result.lesion_id}.png",
        ct=case.ct,
        sct=case.sct,
        mri=case.mri,
        lesion=case.result,
        dpi=40,
    )


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Folder:
    return _write_folder(tmp_path_factory.mktemp("validation"))


@pytest.fixture(scope="module")
def html(folder: Folder) -> str:
    path = write_validation_report(folder.root, dpi=40)
    assert path == folder.root / "report.html"
    return path.read_text(encoding="utf-8")


def _text(html: str) -> str:
    """The HTML without tags, entities decoded (for searching numbers)."""
    return unescape(re.sub(r"<[^>]+>", " ", html))


def test_report_holds_the_results_paragraph_and_every_case(folder: Folder, html: str) -> None:
    assert str(escape(folder.paragraph)) in html
    for case in folder.cases:
        if case["case_id"] != HOSTILE_ID:
            assert case["case_id"] in html
    assert "5 case(s): 4 succeeded, 1 failed; 4 lesion(s) measured" in html


def test_report_holds_the_numbers_of_the_tables(folder: Folder, html: str) -> None:
    text = _text(html)
    for row in folder.lesions:
        assert format_value(row["ct_mean_hu"]) in text
        assert format_value(row["sct_mean_hu"]) in text
        assert (
            f"{format_value(row['ct_diameter_axial_mm'])} x "
            f"{format_value(row['ct_diameter_sagittal_mm'])}"
        ) in text
        assert f"CNR {format_value(row['ct_cnr'])}" in text
    statistics = json.loads((folder.root / "statistics.json").read_text())["cohort"]
    visibility = statistics["visibility"]
    assert f"{visibility['ct_visible_count']}/4 (100%)" in text
    assert f"{visibility['sct_visible_count']}/4 (25%)" in text  # case-03 is shown by the sCT
    mean_hu = statistics["comparisons"]["mean_hu"]
    assert f"{format_value(mean_hu['ct_mean_hu'])} (SD {format_value(mean_hu['ct_sd_hu'])})" in text
    assert f"Wilcoxon p = {mean_hu['wilcoxon_p']:.3f}" in text
    assert f"paired t-test p = {mean_hu['t_test_p']:.3f}" in text
    assert f"exact McNemar p = {visibility['mcnemar_p']:.3f}" in text
    # image-level metrics of each successful case, and no pipeline bookkeeping column
    metrics_table = html.split('id="image-metrics"')[1].split("</section>")[0]
    assert "<th>mae_hu</th>" in metrics_table and "<th>bone_dice_150hu</th>" in metrics_table
    assert "n_lesions" not in metrics_table and "ct_spacing_i_mm" not in metrics_table
    for case in folder.cases[:4]:
        assert format_value(case["mae_hu"]) in text
        assert format_value(case["ms_ssim"], 3) in text


def test_report_lists_failed_cases_without_claiming_results(folder: Folder, html: str) -> None:
    assert "registration did not converge: &lt;b&gt;MI 0.01&lt;/b&gt;" in html
    assert "<b>MI" not in html
    assert "alignment" in html  # the extra column of failures.csv
    assert format_value(STRAY_HU) not in _text(html)
    assert "row(s) of failed cases; they are left out" in html
    failures = html.split('id="failures"')[1]
    assert FAILED_ID in failures
    lesion_table = html.split('id="lesions"')[1].split("</section>")[0]
    assert FAILED_ID not in lesion_table
    outputs = read_validation_outputs(folder.root)
    assert outputs.failed == {FAILED_ID: FAILED_REASON}
    assert FAILED_ID not in set(outputs.lesions["case_id"])


def test_report_states_the_settings(html: str) -> None:
    rules = LesionSettings().rules()
    assert str(escape(rules["visible"])) in html
    assert "rose_threshold" in html and "CT and sCT on one grid" in html
    assert "Image-metric conventions" in html and "SynthRAD2025" in html


def test_report_escapes_user_text(html: str) -> None:
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#39;x&#39;)" in html


def test_report_embeds_every_figure(folder: Folder, html: str) -> None:
    sources = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    # 4 lesion figures, 2 plots per quantity (3 quantities), 1 CNR plot
    assert len(sources) == 4 + 6 + 1
    assert all(base64.b64decode(s)[:8] == b"\x89PNG\r\n\x1a\n" for s in sources)
    lesion_png = (folder.root / "cases" / "case-01" / "lesion-1.png").read_bytes()
    assert base64.b64encode(lesion_png).decode() in sources
    assert "figure not found" not in html
    assert sorted(p.name for p in (folder.root / "report_figures").iterdir()) == sorted(
        [
            f"{kind}_{q}.png"
            for kind in ("bland_altman", "values")
            for q in ("mean_hu", "diameter_axial_mm", "diameter_sagittal_mm")
        ]
        + ["visibility_cnr.png"]
    )


def test_report_can_link_images_instead(folder: Folder, tmp_path: Path) -> None:
    path = write_validation_report(
        folder.root, path=folder.root / "linked.html", embed_images=False, dpi=40
    )
    html = path.read_text(encoding="utf-8")
    assert "data:image" not in html
    links = re.findall(r'<img src="([^"]+)"', html)
    assert "cases/case-01/lesion-1.png" in links
    assert "cases/%3Cscript%3Ealert%28%27x%27%29/lesion-1.png" in links
    assert "report_figures/bland_altman_mean_hu.png" in links
    assert "linked relative to this file" in html


def test_missing_inputs(tmp_path: Path) -> None:
    with pytest.raises(ReadError, match=r"lesions\.csv"):
        write_validation_report(tmp_path)
    assert not (tmp_path / "report.html").exists()


def test_a_run_where_every_case_failed(tmp_path: Path) -> None:
    """Empty lesions table, no statistics: the report says so and lists the failures."""
    (tmp_path / "lesions.csv").write_text("", encoding="utf-8")
    pd.DataFrame([{"case_id": "a", "status": "failed", "error": "CT and sCT grids differ"}]).to_csv(
        tmp_path / "cases.csv", index=False
    )
    (tmp_path / "statistics.json").write_text(
        json.dumps({"error": "fewer than 2 lesions"}), encoding="utf-8"
    )
    (tmp_path / "settings.json").write_text("{}", encoding="utf-8")
    html = write_validation_report(tmp_path).read_text(encoding="utf-8")
    assert "No cohort statistics: fewer than 2 lesions" in html
    assert "CT and sCT grids differ" in html
    assert "No lesion was measured" in html
    assert "<img" not in html
