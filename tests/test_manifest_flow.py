"""What one command writes, the next reads: `synthct phantom`'s manifest, as it is, goes to
`synthct validate`, `synthct train` and `synthct audit-train`, and to `synthct dataset`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synthct.cli import app
from tiny_config import tiny_config

pytestmark = pytest.mark.slow
runner = CliRunner()
SPEC = """
seed: 5
protocol: fast_3t
voxel_size_mm: [1.6, 1.6, 1.6]
ct_voxel_size_mm: [2.0, 2.0, 2.0]
field_of_view_mm: [64.0, 96.0, 40.0]
supersample: 1
failure_sct: true
cases:
  - centre_level: T6
    lesions:
      - type: meningioma
        level: T6
        axial_diameter_mm: 10.0
        sagittal_diameter_mm: 12.0
        mean_hu: 500.0
  - centre_level: T6
  - centre_level: T7
"""


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three small cases from `synthct phantom` (one meningioma), CT on its own 2 mm grid."""
    folder = tmp_path_factory.mktemp("flow")
    spec = folder / "spec.yaml"
    spec.write_text(SPEC)
    out = folder / "cohort"
    result = runner.invoke(app, ["phantom", "--config", str(spec), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_validate_reads_the_phantom_manifest_as_it_is(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "validation"
    result = runner.invoke(
        app,
        ["validate", str(cohort / "manifest.csv"), "--out", str(out), "--workers", "0",
         "--no-figures", "--no-report"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lesions = list(csv.DictReader((out / "lesions.csv").open()))
    # the meningioma of case-000, judged on the failure sCT (rendered as CSF): visible on CT only
    assert [r["case_id"] for r in lesions] == ["case-000"]
    assert lesions[0]["ct_visible"] == "True" and lesions[0]["sct_visible"] == "False"
    assert len(list(csv.DictReader((out / "cases.csv").open()))) == 3


def test_train_reads_the_phantom_manifest_as_it_is(cohort: Path, tmp_path: Path) -> None:
    config = tiny_config(tmp_path, iterations=2, validation_interval=2, checkpoint_interval=2)
    run = tmp_path / "run"
    manifest = cohort / "manifest.csv"
    result = runner.invoke(app, ["train", str(manifest), "-o", str(run), "-c", str(config)])
    assert result.exit_code == 0, result.output
    card = json.loads((run / "model" / "model_card.json").read_text())
    assert "meningioma" in json.dumps(card)  # the lesion types of the manifest reach the card


def test_audit_train_reads_any_lesion_free_manifest(cohort: Path, tmp_path: Path) -> None:
    model = tmp_path / "audit"
    args = ["--out", str(model), "--components", "4"]
    result = runner.invoke(app, ["audit-train", "--cohort", str(cohort / "manifest.csv"), *args])
    assert result.exit_code == 0, result.output
    info = json.loads((model / "calibration.json").read_text())["info"]
    used = sorted(info["fit_volumes"] + info["held_out_volumes"])
    assert used == ["cohort/case-001", "cohort/case-002"]  # case-000 has the meningioma
    # a YAML manifest with the validation's column names and no n_lesions: lesion-free cases
    # are those whose lesion label map is empty
    rows = list(csv.DictReader((cohort / "manifest.csv").open()))
    entries = "".join(
        f"  - {{case_id: {r['case_id']}, ct: {cohort / r['ct']}, "
        f"mri: [{', '.join(str(cohort / e) for e in r['mr_echoes'].split(';'))}], "
        f"lesions: {cohort / r['lesion_labels']}}}\n"
        for r in rows
    )
    yaml_manifest = tmp_path / "free.yaml"
    yaml_manifest.write_text("cases:\n" + entries)
    from synthct.audit.training import phantom_lesion_free_cases

    used = sorted(c.name.split("/")[1] for c in phantom_lesion_free_cases([yaml_manifest]))
    assert used == ["case-001", "case-002"]  # found by their empty lesion label maps


def test_dataset_commands_read_the_phantom_cohort(cohort: Path, tmp_path: Path) -> None:
    exported = tmp_path / "synthrad"
    result = runner.invoke(
        app, ["dataset", "export", str(cohort), "--out", str(exported), "--region", "SP"]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (exported / "SP").iterdir()) == [
        "case-000", "case-001", "case-002"
    ]  # fmt: skip
    qa = tmp_path / "qa"
    result = runner.invoke(app, ["dataset", "check", str(cohort), "--out", str(qa)])
    assert result.exit_code == 0, result.output
    summary = json.loads((qa / "summary.json").read_text())
    assert summary["layout"] == "manifest" and summary["status"]["error"] == 0
