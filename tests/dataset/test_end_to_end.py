"""From the command line, on CT-derived cases of the real CTs: check, split, train, evaluate.

Two paths: a SynthRAD-layout dataset of several pairs (MR and CT on different grids with a known
rigid header offset, one MR of another patient, one MR far from its CT), and a single pair with
a T2-like single-channel MR on its own field of view, split into slabs.
"""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from synthct.cli import app
from synthct.dataset.pairs import TRANSFORM_COLUMN, read_transform
from synthct.dataset.registration import register_mr_to_ct
from synthct.io import write_volume
from synthct.manifest import read_manifest
from synthct.phantom.derived_pairs import rigid_about
from synthct.volume import MultiEchoMR

pytestmark = pytest.mark.slow

#: Small enough to train in seconds on 2 CPU cores; it is the path, not the accuracy, under test
#: (evaluation runs with --align warn: so early a model's sCT is too poor for the alignment
#: check to tell a shift from an error; the alignment itself is asserted on the pairs).
TINY = {
    "network": {"base_channels": 8, "levels": 2, "dropout": 0.0},
    "patches": {"size": [24, 24, 24]},
    "training": {
        "iterations": 40, "batch_size": 4, "learning_rate": 3e-3, "validation_interval": 20,
        "checkpoint_interval": 40, "validation_patches": 2, "device": "cpu",
        "volume_validation_interval": 20,
    },
    "inference": {"patch_size": [32, 32, 32], "overlap": 0.25, "batch_size": 2},
}  # fmt: skip


def _run(*args: str) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + str(result.stderr_bytes or b"")
    return result.output


def _corners(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    ends = [(0, n - 1) for n in shape]
    ijk = np.array(np.meshgrid(*ends, indexing="ij")).reshape(3, -1).T
    return np.asarray(ijk @ affine[:3, :3].T + affine[:3, 3])


def _truth(case: object) -> np.ndarray:
    """The known MR-to-CT transform of a derived case (see synthct.phantom.derived_pairs)."""
    ct = case.ct()  # type: ignore[attr-defined]
    extra = case.extra  # type: ignore[attr-defined]
    shift = np.asarray([float(v) for v in extra["offset_shift_mm"].split(";")])
    centre_moved = ct.geometry.index_to_lps((np.asarray(ct.spatial_shape) - 1) / 2)
    return rigid_about(float(extra["offset_rotation_deg"]), shift, centre_moved - shift)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def test_a_dataset_goes_through_check_split_train_evaluate(
    derived_source: Path, config: Path, tmp_path: Path
) -> None:
    data, qa, split, run, ev = (tmp_path / n for n in ("Task1", "qa", "split", "run", "ev"))
    _run("dataset", "export", derived_source, "--out", data)
    out = _run("dataset", "check", data, "--out", qa)
    # far01 (MR header 600 mm away) is registered by the global search: a crop of soft tissue
    # alone, its MI is below the cohort's, but its anatomy stood out along the CT: kept
    assert "wrong01: mi_outlier" in out and "far01: header_offset" in out
    checked = read_manifest(qa / "manifest.csv")
    truth = read_manifest(derived_source)
    for case_id in ("ex01", "ch01", "cta01", "cta02"):
        case = checked[case_id]
        assert case.extra["qa_status"] == "ok" and case.extra[TRANSFORM_COLUMN], case.extra
        # the transform applied: CT-frame points to MR-frame points; its inverse vs the truth
        found = read_transform(case.extra[TRANSFORM_COLUMN])
        mr = case.mr()
        corners = _corners(mr.spatial_shape, mr.affine)
        moved = corners @ _truth(truth[case_id])[:3, :3].T + _truth(truth[case_id])[:3, 3]
        back = np.array([found.TransformPoint(p.tolist()) for p in moved])
        assert np.linalg.norm(back - corners, axis=1).max() < 1.5, case_id  # mm
    out = _run("dataset", "split", qa / "manifest.csv", "--out", split, "--folds", "1",
               "--test-fraction", "0.34", "--unit", "patient", "--seed", "7")  # fmt: skip
    assert "left out wrong01: mi_outlier" in out and "left out far01" not in out
    plan = json.loads((split / "split.json").read_text())
    assert sorted(plan["excluded"]) == ["wrong01"] and plan["unit"] == "patient"
    assert plan["test"] == ["ch01"] and plan["folds"][0]["val"] == ["ex01"]  # seed 7
    assert plan["folds"][0]["train"] == ["cta01", "cta02", "far01"]  # cta: in one part
    fold = read_manifest(split / "fold-0.csv")
    assert sorted(fold.case_ids) == ["ch01", "cta01", "cta02", "ex01", "far01"]
    pair = fold["cta01"]
    mr, ct = pair.mr(), pair.ct()
    assert mr.same_geometry(ct) and pair.path("mr").is_relative_to(split / "pairs")
    # x against x: registering the written pair again finds (almost) nothing left to undo
    again = register_mr_to_ct(mr, mr.array[0], ct)
    assert again.displacement_mm(_corners(ct.spatial_shape, ct.affine)).max() < 1.5
    native = truth["cta01"]
    before = register_mr_to_ct(native.mr(), native.mr().array[0], native.ct())
    assert before.displacement_mm(_corners(ct.spatial_shape, ct.affine)).max() > 5.0
    pair.unload()
    _run("train", split / "fold-0.csv", "-o", run, "-c", config)
    _assert_best_model_folder(run)
    _run("evaluate", split / "fold-0.csv", "-o", ev, "-m", run / "model",
         "--split", split / "split.json", "--subset", "test", "--align", "warn")  # fmt: skip
    rows = list(csv.DictReader((ev / "evaluation.csv").open()))
    assert [r["case_id"] for r in rows] == ["ch01"]  # the held-out case only
    assert rows[0]["status"] == "ok" and 0 < float(rows[0]["mae_hu"]) < 400, rows


def _assert_best_model_folder(run: Path) -> None:
    """``model-best/`` loads (checksum verified) and holds the weights of ``best.pt``."""
    import torch

    from synthct.synthesis.model_folder import load_model_folder

    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    folder = load_model_folder(run / "model-best")
    assert folder.card["training"]["weights"] == {
        "checkpoint": "best", "iteration": best["iteration"], "metric": best["metric"],
        "value": best["value"],
    }  # fmt: skip
    assert load_model_folder(run / "model").card["training"]["weights"] == {"checkpoint": "last"}
    for key, value in folder.network.state_dict().items():
        torch.testing.assert_close(value, best["model"][key])


def _t2_like(mr: MultiEchoMR) -> MultiEchoMR:
    """One channel, contrast inverted inside the body (fat dark, water bright) and a smaller
    field of view: the first echo's 99th percentile minus the echo, 0 in air."""
    echo = mr.array[0]
    body = echo > 0.1 * np.percentile(echo, 99)
    inverted = np.where(body, np.percentile(echo, 99) - echo + 0.05 * echo.max(), 0.0)
    keep = (*(slice(n // 10, n - n // 10) for n in echo.shape[:2]), slice(None))
    affine = mr.affine.copy()
    affine[:3, 3] = mr.geometry.index_to_lps([s.start or 0 for s in keep])
    return MultiEchoMR(np.clip(inverted, 0, None)[keep][None].astype(np.float32), affine)


def test_one_t2_like_pair_trains_on_some_slices_and_is_evaluated_on_others(
    derived_source: Path, config: Path, tmp_path: Path
) -> None:
    source = read_manifest(derived_source)["cta01"]
    folder = tmp_path / "single" / "pair1"
    folder.mkdir(parents=True)
    write_volume(source.ct(), folder / "ct.nii.gz")
    write_volume(_t2_like(source.mr()), folder / "mr.nii.gz")  # no mask: one is derived
    qa, split, run, ev = (tmp_path / n for n in ("qa", "split", "run", "ev"))
    _run("dataset", "check", tmp_path / "single", "--out", qa)
    (row,) = csv.DictReader((qa / "qa.csv").open())
    assert row["registration"] == "applied" and row["mr_channels"] == "1"
    assert float(row["mi_after"]) > 1.3 * float(row["mi_before"])
    found = read_transform(read_manifest(qa / "manifest.csv")["pair1"].extra[TRANSFORM_COLUMN])
    mr = source.mr()
    corners = _corners(mr.spatial_shape, mr.affine)
    truth = _truth(source)
    back = np.array([found.TransformPoint(p.tolist()) for p in corners @ truth[:3, :3].T
                     + truth[:3, 3]])  # fmt: skip
    assert np.linalg.norm(back - corners, axis=1).max() < 1.5  # mm, across contrasts
    out = _run("dataset", "split", qa, "--out", split)  # one patient: slabs (auto)
    assert "split by slabs" in out
    plan = json.loads((split / "split.json").read_text())
    assert plan["test"] == ["pair1-slab-test"] and plan["unit"] == "slab"
    ranges = sorted(v["s_range_mm"] for v in plan["slabs"].values())
    assert all(b[0] - a[1] >= 6.0 for a, b in itertools.pairwise(ranges))  # gaps
    # one channel without echo times: planning picks the per-channel normalisation
    _run("train", split / "fold-0.csv", "-o", run, "-c", config, "--plan", "auto")
    trained = json.loads((run / "split.json").read_text())
    assert trained == {"train": ["pair1-slab-train"], "validation": ["pair1-slab-validation"]}
    _run("evaluate", split / "fold-0.csv", "-o", ev, "-m", run / "model", "--subset", "test",
         "--align", "warn")  # fmt: skip
    rows = list(csv.DictReader((ev / "evaluation.csv").open()))
    assert [r["case_id"] for r in rows] == ["pair1-slab-test"] and rows[0]["status"] == "ok"
