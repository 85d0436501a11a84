"""``--config FILE`` on every command: a value of the file takes effect, an option given on the
command line replaces it, and a key the command does not know is refused naming file and key."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audit.audit_cases import shapes_case
from dataset.small_cases import write_pair
from synthct.cli import app
from synthct.io import write_volume

runner = CliRunner()

#: Each command with the arguments it needs (paths that are never reached: the file is
#: read before anything else).
COMMANDS = {
    "phantom": ["phantom", "--out", "never"],
    "phantom-from-ct": ["phantom-from-ct", "ct.nii.gz", "--out", "never"],
    "synthesize": ["synthesize", "mr.nii.gz", "-m", "baseline", "-o", "never.nii.gz"],
    "audit": ["audit", "--mri", "mr.nii.gz", "--sct", "sct.nii.gz", "--out", "never"],
    "audit-train": ["audit-train", "--cohort", "cohort", "--out", "never"],
    "evaluate": ["evaluate", "manifest.csv", "--out", "never"],
    "dataset check": ["dataset", "check", "source", "--out", "never"],
    "dataset split": ["dataset", "split", "source", "--out", "never"],
    "demo": ["demo", "--out", "never"],
    "validate": ["validate", "manifest.csv", "--out", "never"],
}


def _config(tmp_path: Path, text: str, name: str = "config.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_refuses_an_unknown_key(command: str, tmp_path: Path) -> None:
    config = _config(tmp_path, "no_such_key: 1\n", "settings.yaml")
    result = runner.invoke(app, [*COMMANDS[command], "--config", config])
    assert result.exit_code == 2, result.output
    assert "no_such_key" in result.output and "settings.yaml" in result.output
    assert not (tmp_path / "never").exists()


def test_phantom_reads_the_cohort_spec_and_the_command_line_wins(tmp_path: Path) -> None:
    spec = (
        "n_cases: 1\nseed: 7\nsupersample: 1\nvoxel_size_mm: [2.0, 2.0, 2.0]\n"
        "field_of_view_mm: [40.0, 40.0, 20.0]\nlesions: null\n"
    )
    config = _config(tmp_path, spec)
    result = runner.invoke(app, ["phantom", "--config", config, "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "a" / "cohort_spec.json").read_text())
    assert (written["seed"], written["n_cases"], written["lesions"]) == (7, 1, None)
    again = runner.invoke(
        app, ["phantom", "--config", config, "--out", str(tmp_path / "b"), "--seed", "8"]
    )
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "b" / "cohort_spec.json").read_text())["seed"] == 8


def test_phantom_from_ct_takes_its_options_from_the_file(tmp_path: Path) -> None:
    # the file's --mr-grid value reaches the option (and its check), before the CT is read
    config = _config(tmp_path, "mr_grid: sideways\n")
    args = ["phantom-from-ct", str(tmp_path / "ct.nii.gz"), "--out", str(tmp_path / "o")]
    result = runner.invoke(app, [*args, "--config", config])
    assert result.exit_code == 2 and "unknown --mr-grid 'sideways'" in result.output
    result = runner.invoke(app, [*args, "--config", config, "--mr-grid", "protocol"])
    assert "--mr-grid" not in result.output  # the command line wins: now the CT is missing


@pytest.fixture(scope="module")
def shapes_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The multi-echo MRI (protocol in its sidecar) and the failure sCT of the shapes case."""
    folder = tmp_path_factory.mktemp("shapes")
    case = shapes_case(lesion=True)
    return {
        "mr": write_volume(case.mr, folder / "mr.nii.gz"),
        "sct": write_volume(case.failure, folder / "sct.nii.gz"),
    }


def test_synthesize_takes_its_options_from_the_file(
    shapes_files: dict[str, Path], tmp_path: Path
) -> None:
    config = _config(tmp_path, json.dumps({"uncertainty": True}), "config.json")  # JSON too
    args = ["synthesize", str(shapes_files["mr"]), "-m", "baseline", "--config", config]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "a.nii.gz")])
    assert result.exit_code == 2 and "the baseline gives no uncertainty maps" in result.output
    result = runner.invoke(app, [*args, "--no-uncertainty", "-o", str(tmp_path / "b.nii.gz")])
    assert result.exit_code == 0, result.output  # the command line wins
    assert (tmp_path / "b.nii.gz").is_file() and not (tmp_path / "a.nii.gz").exists()


def test_audit_uses_the_consistency_settings_of_the_file(
    shapes_files: dict[str, Path], tmp_path: Path
) -> None:
    config = _config(tmp_path, "consistency_settings:\n  score_sigma_mm: 2.5\nfigures: false\n")
    args = ["audit", "--mri", str(shapes_files["mr"]), "--sct", str(shapes_files["sct"])]
    result = runner.invoke(
        app, [*args, "--no-audit-model", "--config", config, "--out", str(tmp_path / "a")]
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert '"score_sigma_mm": 2.5' in json.dumps(report)
    assert not (tmp_path / "a" / "figures").exists()  # figures: false, an option by name
    bad = _config(tmp_path, "reference_settings:\n  floor_hu: 0\n", "bad.yaml")
    result = runner.invoke(app, [*args, "--config", bad, "--out", str(tmp_path / "b")])
    assert result.exit_code == 2 and "floor_hu" in result.output


def test_audit_train_takes_its_options_from_the_file(tmp_path: Path) -> None:
    # --cohort is required: the file's value satisfies it (and is then read)
    config = _config(tmp_path, f"cohort: [{tmp_path / 'no_cohort_here'}]\n")
    result = runner.invoke(
        app, ["audit-train", "--config", config, "--out", str(tmp_path / "model")]
    )
    assert result.exit_code == 2 and "no_cohort_here" in result.output


def test_evaluate_takes_its_options_from_the_file(tmp_path: Path) -> None:
    config = _config(tmp_path, "align: sideways\nvalidation:\n  body_threshold_hu: -300\n")
    args = ["evaluate", str(tmp_path / "m.csv"), "--out", str(tmp_path / "o"), "--config", config]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "--align 'sideways' is not a mode" in result.output


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six tiny MR/CT pairs in the SynthRAD layout (air -1000 HU around a 40 HU body)."""
    task = tmp_path_factory.mktemp("synthrad") / "Task1"
    for n in range(6):
        write_pair(task / "TH" / f"1THA{n:03d}", seed=n)
    return task


def test_dataset_check_reads_the_qa_settings_of_the_file(pairs: Path, tmp_path: Path) -> None:
    # air at -1000 HU lies above a -1500 HU ceiling: every case gets the no_air note
    config = _config(tmp_path, "air_ceiling_hu: -1500\nregister: false\n")
    result = runner.invoke(
        app, ["dataset", "check", str(pairs), "--out", str(tmp_path / "qa"), "--config", config]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "qa" / "qa.csv").open()))
    assert len(rows) == 6 and all("no_air" in r["issues"] for r in rows)
    assert all(r["mi_after"] == "" for r in rows)  # register: false


def test_dataset_split_takes_its_options_from_the_file(pairs: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, "folds: 2\nseed: 3\nunit: patient\ntest-fraction: 0.34\n")
    args = ["dataset", "split", str(pairs), "--config", config]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    split = json.loads((tmp_path / "a" / "split.json").read_text())
    assert len(split["folds"]) == 2 and split["seed"] == 3 and len(split["test"]) == 2
    result = runner.invoke(app, [*args, "--folds", "3", "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert len(json.loads((tmp_path / "b" / "split.json").read_text())["folds"]) == 3


def test_demo_reads_its_settings_from_the_file(tmp_path: Path) -> None:
    # a folder the demo did not make is refused: the file's out_dir is the one claimed
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep", encoding="utf-8")
    config = _config(tmp_path, f"out_dir: {mine}\nquick: true\nmc_passes: 2\n")
    result = runner.invoke(app, ["demo", "--config", config])
    assert result.exit_code == 2 and "mine" in result.output
    bad = _config(tmp_path, "mc_passes: many\n", "bad.yaml")
    result = runner.invoke(app, ["demo", "--config", bad, "--out", str(tmp_path / "d")])
    assert result.exit_code == 2 and "mc_passes" in result.output
