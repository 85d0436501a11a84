"""The reduced demo end to end: its report's table matches the validation outputs."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from synthct.demo.pipeline import run_demo
from synthct.demo.report import comparison_rows
from synthct.demo.settings import METHODS, DemoSettings
from synthct.io import read_volume


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    run_demo(DemoSettings(out_dir=out, quick=True))
    return out


@pytest.mark.slow
def test_report_tables_match_the_validation_outputs(quick_demo: Path) -> None:
    summary = json.loads((quick_demo / "demo_summary.json").read_text())
    html = (quick_demo / "demo_report.html").read_text()
    assert "Paper (reported)" in html and "463.6" in html and "20.9" in html
    for method in METHODS:
        lesions = pd.read_csv(quick_demo / "validation" / method / "lesions.csv")
        values = summary["methods"][method]
        assert values["n_lesions"] == len(lesions) == 2
        assert values["ct_visible"] == int(lesions["ct_visible"].sum())
        assert values["sct_visible"] == int(lesions["sct_visible"].sum())
        assert values["ct_mean_hu"] == pytest.approx(lesions["ct_mean_hu"].mean())
        assert values["sct_mean_hu"] == pytest.approx(lesions["sct_mean_hu"].mean())
        # The numbers in the HTML table are the ones computed from the tables.
        assert f"{values['sct_mean_hu']:.1f}" in html
        assert f"{values['ct_visible']}/{values['n_lesions']}" in html
    # The phantom lesions are calcified: CT shows them for every method's run.
    assert summary["methods"]["product_like"]["ct_visible"] == 2
    rows = comparison_rows(summary)
    assert rows[0]["paper"] == "5" and len(rows[0]["values"]) == len(METHODS)
    assert summary["audit"]["available"]
    assert {r["case_id"] for r in summary["audit"]["rows"]} == set(summary["cases"])
    # "missed" as in the paper: shown by CT (2/2 here), absent from the sCT
    product = pd.read_csv(quick_demo / "validation" / "product_like" / "lesions.csv")
    for row in summary["audit"]["rows"]:
        same = (product.case_id == row["case_id"]) & (product.lesion_id == row["lesion_id"])
        measured = product[same]
        assert row["ct_visible"] == bool(measured.ct_visible.iloc[0])
        assert row["missed"] == (row["ct_visible"] and not bool(measured.sct_visible.iloc[0]))
    # Flags off the lesions, checked against the CT from the written files.
    elsewhere = confirmed = 0
    for case_id in summary["cases"]:
        case_dir = quick_demo / "cohort" / case_id
        regions = read_volume(quick_demo / "audit" / case_id / "flag_regions.nii.gz").array
        lesions = read_volume(case_dir / "lesion_labels.nii.gz").array
        ct = read_volume(case_dir / "ct.nii.gz").array
        sct = read_volume(quick_demo / "sct" / "product_like" / f"{case_id}.nii.gz").array
        on_lesion = set(np.unique(regions[lesions > 0]).tolist())
        for r in set(np.unique(regions).tolist()) - on_lesion - {0}:
            elsewhere += 1
            confirmed += float(np.abs(sct - ct)[regions == r].mean()) >= 100.0
    assert summary["audit"]["false_flags"] == elsewhere
    assert summary["audit"]["flags_elsewhere_confirmed_by_ct"] == confirmed
    assert summary["audit"]["discrepancy_hu"] == 100.0  # validate --audit's default
    assert "least 100 HU inside the region" in html
    # What each model was trained on and its held-out figures, read from its own card.
    from synthct.synthesis.shipped import shipped_model_path

    assert set(summary["model_worlds"]) == {"product_like", "lesion_aware"}
    for name, world in summary["model_worlds"].items():
        card = json.loads((shipped_model_path(name) / "model_card.json").read_text())
        assert world["training_cases"] == card["domain"]["n_training_cases"]
        assert world["description"] == card["description"]
        procedural = world["held_out"]["procedural phantoms"]
        assert procedural["body_mae_hu"] == card["held_out_validation"]["body_mae_hu"]
        assert escape(procedural["calcified_lesions_visible"], quote=False) in html
    assert "what they were trained on" in html


@pytest.mark.slow
def test_same_seed_gives_the_same_tables(quick_demo: Path, tmp_path: Path) -> None:
    run_demo(DemoSettings(out_dir=tmp_path, quick=True))
    for method in METHODS:
        a = pd.read_csv(quick_demo / "validation" / method / "lesions.csv")
        b = pd.read_csv(tmp_path / "validation" / method / "lesions.csv")
        pd.testing.assert_frame_equal(a, b)
