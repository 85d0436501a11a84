"""Phantom cohorts: determinism, manifest, ground truth, grids, resume and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from synthct.cli import app
from synthct.errors import WriteError
from synthct.imaging.labels import Tissue
from synthct.phantom.cohort import (
    PAPER_PATIENTS,
    CohortSpecError,
    case_plan,
    generate_cohort,
    load_cohort_spec,
    paper_cohort,
)
from synthct.phantom.cohort_files import PhantomCase, read_manifest
from synthct.volume import CTVolume, MultiEchoMR

# A small, coarse field of view keeps each case well under a second.
SMALL = {
    "protocol": "fast_3t",
    "voxel_size_mm": (2.0, 2.0, 2.0),
    "field_of_view_mm": (96.0, 128.0, 48.0),
    "supersample": 1,
}


def small_spec(**values: object) -> object:
    return load_cohort_spec(**{**SMALL, **values})


def test_same_seed_gives_identical_voxels_and_other_seed_differs(tmp_path: Path) -> None:
    spec = load_cohort_spec(n_cases=2, seed=7, **SMALL)
    a = generate_cohort(spec, tmp_path / "a")
    b = generate_cohort(spec, tmp_path / "b")
    c = generate_cohort(load_cohort_spec(n_cases=2, seed=8, **SMALL), tmp_path / "c")
    for case in ("case-000", "case-001"):
        sums_a = json.loads((a / case / "case.json").read_text())["checksums_sha256"]
        sums_b = json.loads((b / case / "case.json").read_text())["checksums_sha256"]
        sums_c = json.loads((c / case / "case.json").read_text())["checksums_sha256"]
        assert sums_a == sums_b
        assert sums_a["ct.nii.gz"] != sums_c["ct.nii.gz"]
    np.testing.assert_array_equal(
        PhantomCase(a / "case-000").ct().array, PhantomCase(b / "case-000").ct().array
    )


def test_manifest_and_case_files_are_consistent(tmp_path: Path) -> None:
    spec = load_cohort_spec(n_cases=2, seed=1, **SMALL)
    folder = generate_cohort(spec, tmp_path / "cohort")
    rows = read_manifest(folder)
    assert [r["case_id"] for r in rows] == ["case-000", "case-001"]
    case = PhantomCase(folder / "case-000")
    ct, mr = case.ct(), case.mr()
    assert isinstance(ct, CTVolume) and ct.dtype == np.int16
    assert isinstance(mr, MultiEchoMR) and mr.n_echoes == 2
    assert mr.echo_times_ms == (1.15, 2.3)
    assert mr.protocol is not None and mr.protocol.repetition_time_ms == 7.0
    ct.require_same_geometry(case.tissue_labels())
    assert rows[0]["mr_echoes"].split(";") == [
        "case-000/mr_echo-1.nii.gz",
        "case-000/mr_echo-2.nii.gz",
    ]


def test_lesion_ground_truth_matches_the_rendered_ct(tmp_path: Path) -> None:
    spec = load_cohort_spec(
        n_cases=1,
        seed=3,
        lesions={"types": ("meningioma",), "mean_hu": (600.0, 600.0)},
        ct_noise_sd_hu=0.0,
        **{
            **SMALL,
            "voxel_size_mm": (1.0, 1.0, 1.0),
            "field_of_view_mm": (64.0, 96.0, 40.0),
            "supersample": 2,
        },
    )
    folder = generate_cohort(spec, tmp_path / "cohort")
    case = PhantomCase(folder / "case-000")
    (lesion,) = case.lesions()
    assert lesion["type"] == "meningioma"
    mask = case.lesion_labels().mask(1)
    assert mask.sum() > 50
    ct = case.ct().array.astype(float)
    # The lesion's mean HU (partial volume at the rim included) is near its specification.
    assert abs(ct[mask].mean() - 600.0) < 0.2 * 600.0
    # The lesion sits inside the dural sac: its neighbourhood holds CSF on the tissue map.
    tissue = case.tissue_labels().array
    assert np.isin(tissue[mask], (Tissue.MENINGIOMA, Tissue.CALCIFICATION)).mean() > 0.9
    centre = case.tissue_labels().geometry.lps_to_index(lesion["centre_lps_mm"])
    i, j, k = np.rint(centre).astype(int)
    window = tissue[i - 8 : i + 9, j - 8 : j + 9, k - 8 : k + 9]
    assert np.any(window == Tissue.CSF)


def test_ct_on_its_own_grid_with_a_known_offset(tmp_path: Path) -> None:
    spec = load_cohort_spec(
        n_cases=1,
        seed=2,
        ct_rotation_deg=(0.0, 0.0, 5.0),
        ct_translation_mm=(3.0, -2.0, 4.0),
        ct_voxel_size_mm=(2.5, 2.5, 2.5),
        **SMALL,
    )
    folder = generate_cohort(spec, tmp_path / "cohort")
    case = PhantomCase(folder / "case-000")
    ct, mr = case.ct(), case.mr()
    assert not ct.same_geometry(mr)
    assert ct.spacing_mm == pytest.approx((2.5, 2.5, 2.5))
    # The same lesion on both grids lands at the same place in patient space.
    mr_lesion, ct_lesion = case.lesion_labels(grid="mr"), case.lesion_labels(grid="ct")
    c_mr = mr_lesion.geometry.index_to_lps(np.argwhere(mr_lesion.mask()).mean(axis=0))
    c_ct = ct_lesion.geometry.index_to_lps(np.argwhere(ct_lesion.mask()).mean(axis=0))
    np.testing.assert_allclose(c_ct, c_mr, atol=1.5)
    offset = case.meta["ct_to_mr"]
    assert offset["translation_mm"] == [3.0, -2.0, 4.0]


def test_existing_folder_needs_overwrite_or_resume(tmp_path: Path) -> None:
    spec = load_cohort_spec(n_cases=2, seed=1, **SMALL)
    folder = generate_cohort(spec, tmp_path / "cohort")
    with pytest.raises(WriteError, match="already exists"):
        generate_cohort(spec, folder)
    # Resume regenerates only what is missing, to the identical voxels.
    before = (folder / "case-000" / "ct.nii.gz").stat().st_mtime_ns
    reference = json.loads((folder / "case-001" / "case.json").read_text())
    for f in (folder / "case-001").iterdir():
        f.unlink()
    (folder / "case-001").rmdir()
    (folder / "manifest.csv").unlink()
    generate_cohort(spec, folder, resume=True)
    assert (folder / "case-000" / "ct.nii.gz").stat().st_mtime_ns == before
    again = json.loads((folder / "case-001" / "case.json").read_text())
    assert again["checksums_sha256"] == reference["checksums_sha256"]
    assert len(read_manifest(folder)) == 2
    with pytest.raises(WriteError, match="different cohort specification"):
        generate_cohort(load_cohort_spec(n_cases=2, seed=9, **SMALL), folder, resume=True)
    generate_cohort(load_cohort_spec(n_cases=1, seed=9, **SMALL), folder, overwrite=True)
    assert len(read_manifest(folder)) == 1
    assert not (folder / "case-001").exists()


def test_interrupted_case_leaves_no_complete_looking_folder(tmp_path: Path) -> None:
    spec = load_cohort_spec(n_cases=1, seed=1, **SMALL)

    def crash(case_id: str, done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_cohort(spec, tmp_path / "cohort", progress=crash)
    # The case was complete before the callback ran; the manifest was not written.
    assert (tmp_path / "cohort" / "case-000" / "case.json").exists()
    assert not (tmp_path / "cohort" / "manifest.csv").exists()
    assert not [p for p in (tmp_path / "cohort").iterdir() if p.name.startswith(".partial")]


def test_paper_cohort_reproduces_the_published_means() -> None:
    spec = paper_cohort()
    assert spec.case_count == 5
    assert [p["level"] for p in PAPER_PATIENTS] == ["C5/6", "T1/2", "T4/5", "T5-7", "T8/9"]
    assert np.mean([p["mean_hu"] for p in PAPER_PATIENTS]) == pytest.approx(463.6)
    assert np.mean([p["axial_diameter_mm"] for p in PAPER_PATIENTS]) == pytest.approx(11.6)
    assert np.mean([p["sagittal_diameter_mm"] for p in PAPER_PATIENTS]) == pytest.approx(19.6)
    spine, lesions, centre, _ = case_plan(spec, 3)
    assert centre == "T6" and lesions[0].level == "T5-7"
    assert spine.first_level <= "T6"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"n_cases": 0}, "n_cases"),
        ({"protocol": "paper_7t"}, "unknown protocol"),
        ({"levels": ("L2", "C4")}, "cranial to caudal"),
        ({"levels": ("C1", "T2")}, "levels"),
        ({"lesions": {"types": ("glioma",)}}, "unknown lesion type"),
        ({"lesions": {"mean_hu": (500.0, 100.0)}}, "low <= high"),
        ({"supersample": 9}, "supersample"),
        ({"mr_noise_sd": -1.0}, "mr_noise_sd"),
    ],
)
def test_bad_specifications_name_the_parameter(values: dict[str, object], message: str) -> None:
    with pytest.raises(CohortSpecError, match=message):
        load_cohort_spec(**values)


def test_cli_generates_a_cohort_with_montage(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cohort"
    result = runner.invoke(
        app,
        [
            "phantom",
            "--out",
            str(out),
            "--cases",
            "1",
            "--protocol",
            "fast_3t",
            "--voxel-size",
            "2,2,2",
            "--supersample",
            "1",
            "--montage",
        ],
    )
    assert result.exit_code == 0, result.output
    png = out / "case-000" / "montage.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = runner.invoke(app, ["phantom", "--out", str(out), "--cases", "1"])
    assert result.exit_code == 2
    assert "--overwrite" in result.stderr
    result = runner.invoke(app, ["phantom", "--out", str(tmp_path / "x"), "--voxel-size", "1,2"])
    assert result.exit_code == 2
    assert "--voxel-size" in result.stderr


def test_failure_sct_replaces_only_the_lesion_by_csf(tmp_path: Path) -> None:
    spec = load_cohort_spec(
        n_cases=1,
        seed=4,
        failure_sct=True,
        lesions={"mean_hu": (700.0, 700.0)},
        **{**SMALL, "voxel_size_mm": (1.0, 1.0, 1.0), "field_of_view_mm": (64.0, 96.0, 40.0)},
    )
    folder = generate_cohort(spec, tmp_path / "cohort")
    case = PhantomCase(folder / "case-000")
    ct, sct = case.ct(), case.failure_sct()
    sct.require_same_geometry(ct)
    lesion = case.lesion_labels(grid="ct").mask()
    assert ct.array[lesion].mean() > 400
    assert abs(float(sct.array[lesion].mean()) - 8.0) < 25  # CSF is ~5-15 HU
    from scipy import ndimage

    near = ndimage.binary_dilation(lesion, iterations=3)
    np.testing.assert_array_equal(sct.array[~near], ct.array[~near])
    assert read_manifest(folder)[0]["sct_failure"] == "case-000/sct_lesions_as_csf.nii.gz"
