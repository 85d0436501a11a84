"""Registered pairs and slab splits on tiny volumes with known transforms and extents."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dataset.small_cases import write_pair as write_small_pair
from synthct.case import Case
from synthct.cli import app
from synthct.dataset.pairs import (
    TRANSFORM_COLUMN,
    mr_coverage,
    read_transform,
    write_pair,
    write_transform,
)
from synthct.dataset.slabs import slab_ranges
from synthct.dataset.split import SplitError, read_split, split_from_dict, write_split_folder
from synthct.errors import SynthctError
from synthct.geometry import Geometry
from synthct.io import read_volume, write_volume
from synthct.manifest import Manifest, read_manifest
from synthct.phantom.derived_pairs import rigid_about
from synthct.volume import CTVolume, MultiEchoMR

CENTRE_LPS_MM = np.array([30.0, 34.0, 32.0])  # the sphere's centre in the CT frame
RADIUS_MM = 10.0
#: MR frame to CT frame: 5 degrees about S around the sphere, then (4, -2, 6) mm.
MR_TO_CT = rigid_about(5.0, (4.0, -2.0, 6.0), np.array([20.0, 20.0, 20.0]))


def _sphere(grid: Geometry, centre_lps_mm: np.ndarray) -> np.ndarray:
    ijk = np.stack(np.indices(grid.shape), axis=-1).reshape(-1, 3)
    distance = np.linalg.norm(grid.index_to_lps(ijk) - centre_lps_mm, axis=1)
    return np.asarray((distance <= RADIUS_MM).reshape(grid.shape))


def _known_pair(folder: Path) -> Case:
    """CT (2 mm) with a 500 HU sphere; MR (3 x 2.5 x 2 mm, its own frame) of the same sphere."""
    folder.mkdir(parents=True)
    ct_grid = Geometry((32, 32, 32), np.diag([2.0, 2.0, 2.0, 1.0]))
    i, j, _ = np.indices(ct_grid.shape)
    body = np.hypot(2.0 * i - 31.0, 2.0 * j - 31.0) <= 28.0  # a 28 mm cylinder along S
    body[:, :, :2] = False  # and air below it
    ct = np.where(_sphere(ct_grid, CENTRE_LPS_MM), 500.0, np.where(body, 0.0, -1000.0))
    mr_affine = np.diag([3.0, 2.5, 2.0, 1.0])
    mr_affine[:3, 3] = (-4.0, -6.0, -2.0)
    mr_grid = Geometry((24, 28, 34), mr_affine)
    centre_in_mr = (np.linalg.inv(MR_TO_CT) @ np.append(CENTRE_LPS_MM, 1.0))[:3]
    mr = np.where(_sphere(mr_grid, centre_in_mr), 300.0, 50.0)[None].astype(np.float32)
    write_volume(CTVolume(ct.astype(np.float32), ct_grid.affine), folder / "ct.nii.gz")
    write_volume(MultiEchoMR(mr, mr_affine), folder / "mr.nii.gz")
    write_transform(folder / "mr_to_ct.tfm", MR_TO_CT)
    extra = {TRANSFORM_COLUMN: folder / "mr_to_ct.tfm"}
    return Case("known", {"ct": folder / "ct.nii.gz", "mr": folder / "mr.nii.gz"}, {}, extra)


def _centroid_lps_mm(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    ijk = np.argwhere(mask).mean(axis=0)
    return np.asarray(ijk @ affine[:3, :3].T + affine[:3, 3])


def test_the_transform_file_resamples_the_mr_onto_the_ct_frame(tmp_path: Path) -> None:
    path = write_transform(tmp_path / "t.tfm", MR_TO_CT)
    transform = read_transform(path)
    # ITK's resampling transform: CT-frame points to MR-frame points (the inverse)
    for point in ([0.0, 0.0, 0.0], [30.0, 34.0, 32.0], [-50.0, 12.5, 80.0]):
        expected = (np.linalg.inv(MR_TO_CT) @ np.append(point, 1.0))[:3]
        assert np.allclose(transform.TransformPoint(point), expected, atol=1e-6)
    assert not list(tmp_path.glob(".partial-*"))  # written atomically
    (tmp_path / "junk.tfm").write_text("not a transform")
    with pytest.raises(SynthctError, match="not an ITK transform"):
        read_transform(tmp_path / "junk.tfm")
    with pytest.raises(SynthctError, match="missing"):
        read_transform(tmp_path / "absent.tfm")


def test_a_registered_pair_puts_the_mr_sphere_on_the_ct_sphere(tmp_path: Path) -> None:
    case = _known_pair(tmp_path / "in")
    native = case.mr()
    before = _centroid_lps_mm(native.array[0] > 175, native.affine)
    assert np.linalg.norm(before - CENTRE_LPS_MM) > 5.0  # misaligned as read
    pair = write_pair(case, tmp_path / "pair")
    mr, ct = pair.mr(), pair.ct()
    assert mr.same_geometry(ct) and mr.n_echoes == 1
    after = _centroid_lps_mm(mr.array[0] > 175, mr.affine)
    assert np.linalg.norm(after - CENTRE_LPS_MM) < 0.5  # mm, voxels of 2 mm
    assert np.linalg.norm(_centroid_lps_mm(ct.array > 250, ct.affine) - CENTRE_LPS_MM) < 0.5
    # no mask was given: the body mask is derived from the CT, within the MR's field of view
    mask = pair.labels("body_mask").array > 0
    assert mask.shape == ct.spatial_shape and not mask[..., ct.spatial_shape[2] - 1 :].all()
    assert mask[ct.array > 250].all() and not mask[ct.array < -500].any()
    assert pair.extra[TRANSFORM_COLUMN] == "" and pair.path("mr") == tmp_path / "pair" / "mr.nii.gz"


def test_a_pair_without_overlap_is_a_clear_error_and_nothing_is_written(tmp_path: Path) -> None:
    case = _known_pair(tmp_path / "in")
    far = case.mr()
    moved = far.affine.copy()
    moved[2, 3] += 600.0  # the MR 600 mm above its CT
    write_volume(MultiEchoMR(far.array, moved), tmp_path / "far.nii.gz")
    apart = case.with_images(mr=tmp_path / "far.nii.gz")
    with pytest.raises(SynthctError, match="does not overlap the CT") as info:
        write_pair(apart, tmp_path / "pair")
    assert "no_overlap" in str(info.value) and not (tmp_path / "pair").exists()


def test_evaluate_refuses_an_unknown_align_mode(tmp_path: Path) -> None:
    args = ["evaluate", str(tmp_path / "m.csv"), "-o", str(tmp_path / "out"), "--align", "x"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "--align 'x' is not a mode" in result.stderr
    assert not (tmp_path / "out").exists()


def test_slab_ranges_known_extents() -> None:
    grid = Geometry((10, 10, 40), np.diag([1.0, 1.0, 2.0, 1.0]))
    covered = np.ones(grid.shape, bool)
    slabs = slab_ranges(grid, covered, fractions=(0.6, 0.2, 0.2), gap_mm=6.0)
    # 40 slices, two gaps of 3 slices (6 mm / 2 mm): 34 usable -> 20 + 2 leftover, 6, 6
    assert [(s.part, s.axis, s.start, s.stop) for s in slabs] == [
        ("train", 2, 0, 22), ("validation", 2, 25, 31), ("test", 2, 34, 40)
    ]  # fmt: skip
    assert slabs[2].to_dict(grid)["s_range_mm"] == [68.0, 78.0]
    # S along array axis 0 (a sagittal-like grid), MR covering slices 5..34 only
    direction = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    tilted = Geometry.from_parameters((40, 10, 10), (2.0, 1.0, 1.0), direction=direction)
    part = np.zeros(tilted.shape, bool)
    part[5:35, 3, 3] = True
    slabs = slab_ranges(tilted, part, gap_mm=2.0)
    assert [(s.axis, s.start, s.stop) for s in slabs] == [(0, 5, 23), (0, 24, 29), (0, 30, 35)]
    with pytest.raises(SynthctError, match="too few"):
        slab_ranges(grid, covered, gap_mm=30.0)


def test_a_single_pair_is_split_into_slabs_with_gaps(tmp_path: Path) -> None:
    case = _known_pair(tmp_path / "in")
    split = write_split_folder(Manifest([case]), tmp_path / "split", unit="auto", seed=0)
    assert split.unit == "slab" and split.test == ["known-slab-test"]
    assert split.folds == [{"train": ["known-slab-train"], "val": ["known-slab-validation"]}]
    fold = read_manifest(tmp_path / "split" / "fold-0.csv")
    grid = case.ct().geometry
    s_ranges = []
    for c in fold:
        ct, mr = c.ct(), c.mr()
        assert mr.same_geometry(ct) and c.split == c.case_id.split("-slab-")[1]
        assert c.path("ct").parent == tmp_path / "split" / "pairs" / c.case_id
        ends = grid.lps_to_index(ct.geometry.index_to_lps([[0, 0, 0], list(ct.spatial_shape)]))
        s_ranges.append(sorted(ends[:, 2]))
    s_ranges.sort()
    for (_, top), (bottom, _) in itertools.pairwise(s_ranges):
        assert bottom - top >= 3 - 1e-6  # the 6 mm gap: three 2 mm slices between slabs
    recorded = json.loads((tmp_path / "split" / "split.json").read_text())
    assert recorded["unit"] == "slab" and recorded["slabs"]["known-slab-test"]["of"] == "known"
    assert read_split(tmp_path / "split" / "split.json", fold).test == ["known-slab-test"]


def test_hand_made_slab_splits_that_leak_are_refused() -> None:
    slabs = {
        "a-train": {"of": "a", "axis": 2, "start": 0, "stop": 20},
        "a-test": {"of": "a", "axis": 2, "start": 20, "stop": 30},
    }
    data = {
        "unit": "slab", "test": ["a-test"], "folds": [{"train": ["a-train"], "val": []}],
        "slabs": slabs, "patients": {"a-train": "A", "a-test": "A"},
    }  # fmt: skip
    with pytest.raises(SplitError, match="touch or overlap"):
        split_from_dict(data, where="split.json")
    slabs["a-test"]["start"] = 22
    assert split_from_dict(data, where="split.json").unit == "slab"
    data["folds"] = [{"train": ["a-train", "b1"], "val": []}]
    with pytest.raises(SplitError, match="not slabs"):
        split_from_dict(data, where="split.json")
    # the same two cases as a patient split: one patient in train and test
    with pytest.raises(SplitError, match="patient 'A' is in both test and train"):
        split_from_dict({**data, "unit": "patient", "folds": [{"train": ["a-train"], "val": []}]},
                        where="split.json")  # fmt: skip


def test_split_of_a_checked_dataset_leaves_out_what_qa_ruled_out(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    for n in range(5):
        write_small_pair(root / f"good{n}", seed=n + 1)
    write_small_pair(root / "apart", seed=7, mr_origin_mm=(0.0, 0.0, 500.0))
    write_small_pair(root / "onechannel", seed=8, channels=1)
    write_small_pair(root / "nomask", seed=9, mask=False)
    runner = CliRunner()
    qa = tmp_path / "qa"
    result = runner.invoke(app, ["dataset", "check", str(root), "-o", str(qa), "--no-register"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "split"
    args = ["dataset", "split", str(qa), "-o", str(out), "--folds", "2", "--unit", "patient"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "left out apart: no_overlap" in result.output
    assert "left out onechannel: channel_count" in result.output
    split = json.loads((out / "split.json").read_text())
    assert sorted(split["excluded"]) == ["apart", "onechannel"]
    listed = read_manifest(out / "manifest.csv")
    assert sorted(listed.case_ids) == [*(f"good{n}" for n in range(5)), "nomask"]
    # without a registration nothing is resampled: the files are the dataset's own
    assert listed["good0"].path("ct") == root / "good0" / "ct.nii.gz"
    # a slab split of a dataset whose scans are too short is refused, nothing written
    refused = runner.invoke(
        app, ["dataset", "split", str(qa), "-o", str(tmp_path / "s2"), "--unit", "slab"]
    )
    assert refused.exit_code == 2 and "too few" in refused.stderr
    assert not (tmp_path / "s2").exists()
    (tmp_path / "empty").mkdir()
    empty = runner.invoke(app, ["dataset", "split", str(tmp_path / "empty"), "-o", str(out)])
    assert empty.exit_code == 2 and "empty" in empty.stderr


def test_check_writes_the_transform_only_where_it_is_applied(tmp_path: Path) -> None:
    case = _known_pair(tmp_path / "in")
    aligned = tmp_path / "aligned"
    aligned.mkdir()
    ct = case.ct()
    mr = MultiEchoMR(np.clip(ct.array + 1000.0, 0, None)[None].astype(np.float32), ct.affine)
    write_volume(ct, aligned / "ct.nii.gz")
    write_volume(mr, aligned / "mr.nii.gz")
    manifest = Manifest(
        [
            Case("moved", case.images),
            Case("aligned", {"ct": aligned / "ct.nii.gz", "mr": aligned / "mr.nii.gz"}),
        ]
    )
    manifest.write(tmp_path / "m.csv")
    from synthct.dataset.check import check_dataset
    from synthct.dataset.qa import QASettings

    result = check_dataset(tmp_path / "m.csv", tmp_path / "qa", settings=QASettings(
        registration_spacing_mm=2.0))  # fmt: skip
    rows = {r["case_id"]: r for r in result.rows}
    assert rows["aligned"]["registration"] == "identity", rows["aligned"]
    assert rows["moved"]["registration"] == "applied", rows["moved"]
    checked = read_manifest(tmp_path / "qa" / "manifest.csv")
    assert checked["moved"].extra[TRANSFORM_COLUMN] == tmp_path / "qa" / "transforms" / "moved.tfm"
    assert not str(checked["aligned"].extra.get(TRANSFORM_COLUMN) or "")
    text = (tmp_path / "qa" / "manifest.csv").read_text()
    assert "transforms/moved.tfm" in text and str(tmp_path / "qa") not in text  # relative
    # training and evaluation refuse the pending registration rather than pair misaligned images
    from synthct.evaluation.cases import EvaluationInputError, read_evaluation_manifest
    from synthct.manifest import ManifestError
    from synthct.synthesis.manifest import read_manifest as read_training_manifest

    with pytest.raises(ManifestError, match="'moved': its MR is not registered") as info:
        read_training_manifest(tmp_path / "qa" / "manifest.csv")
    assert "synthct dataset split" in str(info.value)
    with pytest.raises(EvaluationInputError, match="'moved': its MR is not registered"):
        read_evaluation_manifest(tmp_path / "qa" / "manifest.csv")
    found = read_transform(checked["moved"].extra[TRANSFORM_COLUMN])
    # the registered sphere: the transform found maps the CT centre onto the MR's sphere
    centre_in_mr = (np.linalg.inv(MR_TO_CT) @ np.append(CENTRE_LPS_MM, 1.0))[:3]
    found_centre = np.asarray(found.TransformPoint(CENTRE_LPS_MM.tolist()))
    assert np.linalg.norm(found_centre - centre_in_mr) < 1.5
    covered = mr_coverage(read_volume(case.path("mr"), kind="mr"), ct.geometry, found)
    assert covered[tuple(np.round(ct.geometry.lps_to_index(CENTRE_LPS_MM)).astype(int))]


def test_a_written_pair_rechecks_without_a_mask_coverage_flag(tmp_path: Path) -> None:
    """A small MR turned 30 degrees inside a CT slab: the pair's box holds body voxels the MR
    does not image, outside its mask. QA judges the mask where the MR images the body (a
    re-check of a split's pairs read 65 % before); a mask that misses half of that is still
    flagged."""
    from synthct.dataset.qa import QASettings, qa_case
    from synthct.volume import LabelMap

    (tmp_path / "in").mkdir()
    ct = np.full((32, 32, 32), -1000.0, np.float32)
    ct[2:30, 2:20, 2:30] = 0.0  # body: a slab, air beyond it
    mr_affine = np.diag([2.0, 2.0, 2.0, 1.0])
    mr_affine[:3, 3] = (20.0, 20.0, 20.0)
    mr = np.random.default_rng(0).normal(100.0, 5.0, (1, 12, 12, 12)).astype(np.float32)
    write_volume(CTVolume(ct, np.diag([2.0, 2.0, 2.0, 1.0])), tmp_path / "in" / "ct.nii.gz")
    write_volume(MultiEchoMR(mr, mr_affine), tmp_path / "in" / "mr.nii.gz")
    turn = rigid_about(30.0, (0.0, 0.0, 0.0), np.array([31.0, 31.0, 31.0]))
    write_transform(tmp_path / "in" / "t.tfm", turn)
    images = {"ct": tmp_path / "in" / "ct.nii.gz", "mr": tmp_path / "in" / "mr.nii.gz"}
    case = Case("turned", images, {}, {TRANSFORM_COLUMN: tmp_path / "in" / "t.tfm"})
    pair = write_pair(case, tmp_path / "pair")
    mask = pair.labels("body_mask").array > 0
    body = pair.ct().array > -500
    assert 0.3 < mask.sum() / body.sum() < 0.9  # the box holds body the MR does not image
    row = qa_case(pair, QASettings(register=False))
    assert row["mask_coverage"] == pytest.approx(1.0) and row["issues"] == []
    half = mask.copy()
    half[: half.shape[0] // 2] = False
    write_volume(LabelMap(half.astype(np.uint8), pair.ct().affine), tmp_path / "half.nii.gz")
    row = qa_case(pair.with_images(body_mask=tmp_path / "half.nii.gz"), QASettings(register=False))
    assert row["mask_coverage"] < 0.7 and row["issues"][0].startswith("mask_coverage")
