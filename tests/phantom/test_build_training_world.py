"""scripts/build_training_world.py: the shipped models' training world, built small."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from synthct.imaging.labels import Tissue
from synthct.io import read_volume

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build_training_world.py"


def _script(totalseg: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_training_world", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "build_training_world", module)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "REAL", totalseg)
    return module


def _rows(manifest: Path) -> list[dict[str, str]]:
    with manifest.open(newline="") as f:
        return list(csv.DictReader(f))


def _labels(out: Path, row: dict[str, str]) -> set[int]:
    volume = read_volume(out / row["tissue_labels"], kind="label")
    return set(np.unique(np.asarray(volume.array)).tolist())


@pytest.mark.slow
def test_world_has_both_patients_textured_and_plain_phantoms_and_resumes(
    totalseg: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    script = _script(totalseg, monkeypatch)
    out = tmp_path / "world"
    argv = ["--out", str(out), "--ct-subjects", "3", "--procedural", "2"]
    argv += ["--plain-procedural", "1", "--grid-mm", "3", "--crop", "24", "24", "16"]
    manifest = script.main(argv)
    rows = _rows(manifest)
    ids = [r["case_id"] for r in rows]
    # Patient A twice per round (one labelled CT weighs as much as B's two), then B.
    assert ids[:3] == [
        "real_anatomy_example_ct_sm-000_case-000",
        "real_anatomy_example_ct_sm-001_case-000",
        "real_anatomy_chest_ct-002_case-000",
    ]
    assert [i.split("_case")[0] for i in ids[3:]] == [
        "procedural_classic",
        "procedural_realistic",
        "procedural_plain",
    ]
    assert all((out / r["ct"]).exists() and (out / r["tissue_labels"]).exists() for r in rows)
    textured = _labels(out, rows[3]) | _labels(out, rows[4])
    plain = _labels(out, rows[5])
    assert int(Tissue.LUNG) in textured and int(Tissue.LUNG) not in plain
    assert int(Tissue.SPINAL_CORD) in plain
    summary = json.loads((out / "world.json").read_text())
    assert summary["n_cases"] == 6 and summary["plain_procedural_cases"] == 1
    # A rerun keeps every finished case (resume) and writes the same manifest.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("ct.nii.gz")}
    assert _rows(script.main(argv)) == rows
    assert {p: p.stat().st_mtime_ns for p in out.rglob("ct.nii.gz")} == before


def test_held_out_subjects_on_a_grid_per_axis(
    totalseg: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # the models' planned grid is anisotropic (0.74 x 0.74 x 0.9 mm); a coarse one of the same
    # kind keeps the test small: every volume of the case is on it, crop voxels as asked
    # (patient C's CT is 38 mm tall: 10 slices of 3 mm fit)
    script = _script(totalseg, monkeypatch)
    out = tmp_path / "held_out"
    argv = ["--out", str(out), "--held-out", "--ct-subjects", "1"]
    argv += ["--grid-mm", "2.5", "2.5", "3", "--crop", "20", "20", "10"]
    rows = _rows(script.main(argv))
    assert len(rows) == 1
    for column in ("ct", "tissue_labels"):
        volume = read_volume(out / rows[0][column])
        assert volume.spacing_mm == pytest.approx((2.5, 2.5, 3.0))
        assert volume.spatial_shape == (20, 20, 10)
    assert json.loads((out / "world.json").read_text())["grid_mm"] == [2.5, 2.5, 3.0]
    with pytest.raises(SystemExit):
        script.main(["--out", str(tmp_path / "bad"), "--grid-mm", "1", "2"])
