"""Dataset readers, QA rules, splits and fingerprint on tiny pairs with known answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from dataset.small_cases import BODY_HU, MR_VALUES, SPACING_MM, write_pair
from synthct.case import Case
from synthct.cli import app
from synthct.dataset.check import check_dataset
from synthct.dataset.fingerprint import fingerprint
from synthct.dataset.qa import QASettings, overlap_fraction, run_qa
from synthct.dataset.readers import DatasetError, read_dataset
from synthct.dataset.split import SplitError, make_split, read_split
from synthct.geometry import Geometry
from synthct.manifest import Manifest

NO_REGISTRATION = QASettings(register=False)


def test_synthrad_layouts_with_and_without_region(tmp_path: Path) -> None:
    write_pair(tmp_path / "a" / "HN" / "1HNA001", channels=1)
    write_pair(tmp_path / "a" / "AB" / "1ABA002", channels=3)
    manifest, layout = read_dataset(tmp_path / "a")
    assert layout == "synthrad" and manifest.case_ids == ["1ABA002", "1HNA001"]
    ab, hn = manifest.cases
    assert ab.region == "AB" and hn.region == "HN" and hn.patient_id == "1HNA001"
    assert [p.name for p in ab.paths("mr")] == ["mr_1.nii.gz", "mr_2.nii.gz", "mr_3.nii.gz"]
    assert ab.path("body_mask") is not None and ab.path("body_mask").name == "mask.nii.gz"
    write_pair(tmp_path / "b" / "p1", mask=False)
    (case,) = read_dataset(tmp_path / "b")[0].cases
    assert case.region is None and not case.has("body_mask")


def test_bad_dataset_folders_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty"):
        read_dataset(tmp_path / "empty")
    with pytest.raises(DatasetError, match="no such dataset"):
        read_dataset(tmp_path / "absent")
    write_pair(tmp_path / "d" / "p1")
    (tmp_path / "d" / "p1" / "ct.nii.gz").unlink()
    with pytest.raises(DatasetError, match="'p1' has no ct image") as info:
        read_dataset(tmp_path / "d")
    assert "ct.nii.gz" in str(info.value)  # the fix names the file to add
    (tmp_path / "junk" / "x").mkdir(parents=True)
    (tmp_path / "junk" / "x" / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError, match="no case found"):
        read_dataset(tmp_path / "junk")
    result = CliRunner().invoke(
        app, ["dataset", "check", str(tmp_path / "empty"), "--out", str(tmp_path / "qa")]
    )
    assert result.exit_code == 2 and "empty" in result.stderr
    assert not (tmp_path / "qa").exists()  # nothing half-written


@pytest.mark.slow
def test_dicom_studies_are_found_by_modality(totalseg: Path, tmp_path: Path) -> None:
    from synthct.io import read_volume, write_volume

    ct = read_volume(totalseg / "example_ct_sm.nii.gz", kind="ct")  # the real CT, as DICOM
    studies = tmp_path / "studies"
    for name, mr_patient in (("patient-a", "PA-1"), ("patient-b", "PX-9")):
        study = studies / name
        study.mkdir(parents=True)
        write_volume(ct, study / "series-ct", patient_id="PA-1")
        write_volume(mr_like(ct), study / "series-mr", patient_id=mr_patient)
    manifest, layout = read_dataset(studies)
    a, b = manifest.cases
    assert layout == "dicom" and manifest.case_ids == ["patient-a", "patient-b"]
    assert a.path("ct") == studies / "patient-a" / "series-ct"
    assert a.path("mr") == studies / "patient-a" / "series-mr"
    assert a.patient_id == b.patient_id and a.patient_id.startswith("pid-")  # a pseudonym
    assert a.ct().spatial_shape == ct.spatial_shape
    rows = run_qa(manifest, NO_REGISTRATION)
    assert rows[0]["fov_overlap"] == pytest.approx(1.0) and rows[0]["mr_channels"] == 1
    mismatched = [r["case_id"] for r in rows if any("patient_mismatch" in i for i in r["issues"])]
    assert mismatched == ["patient-b"]
    assert any(i.startswith("duplicate_ct") for i in rows[0]["issues"])  # the same CT twice
    assert "PA-1" not in json.dumps(rows, default=str)  # no identifier in the QA output
    write_volume(mr_like(ct), studies / "patient-a" / "series-mr2", patient_id="PA-1")
    # two MR volume series: that patient cannot be read as it is, the other one still is
    manifest, _ = read_dataset(studies)
    (row_a, row_b) = run_qa(manifest, NO_REGISTRATION)
    assert "2 MR volume series" in row_a["error"] and "--mr-series" in row_a["error"]
    assert row_a["status"] == "error" and row_b["status"] != "error"
    # series folders named as the scanner named them: "mr" is no SynthRAD case without its ct
    (studies / "patient-a" / "series-mr2").rename(studies / "patient-a" / "mr")
    (studies / "patient-a" / "series-mr").rename(tmp_path / "moved-out")
    assert read_dataset(studies)[1] == "dicom"
    assert read_dataset(studies)[0]["patient-a"].path("mr") == studies / "patient-a" / "mr"
    (studies / "patient-a" / "series-ct").rename(tmp_path / "ct-moved-out")
    # a study without its CT is an unreadable row that says so; the complete one still reads
    manifest, _ = read_dataset(studies)
    assert "0 CT volume series" in manifest["patient-a"].extra["read_error"]
    assert "add the patient's CT series" in manifest["patient-a"].extra["read_error"]
    assert not manifest["patient-b"].extra.get("read_error")
    (studies / "patient-b" / "series-ct").rename(tmp_path / "ct-b-moved-out")
    with pytest.raises(DatasetError, match="has no ct image"):  # none complete: the SynthRAD
        read_dataset(studies)  # reading's message (an "mr" folder without its ct)


def _set_image_type(folder: Path, image_type: list[str]) -> None:
    import pydicom

    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.ImageType = image_type
        ds.save_as(path, enforce_file_format=True)


def _localizer(ct: Any, folder: Path, uid: str) -> None:
    """A 3-plane MR localizer: one slice of each orientation, one series, files in ``folder``."""
    import shutil

    from synthct.geometry import Geometry
    from synthct.io.dicom_write import write_dicom_series
    from synthct.volume import MultiEchoMR

    folder.mkdir(exist_ok=True)
    planes = ([1, 0, 0, 0, 1, 0], [0, 1, 0, 0, 0, -1], [1, 0, 0, 0, 0, -1])
    for n, (r, c) in enumerate(np.reshape(v, (2, 3)) for v in planes):
        affine = np.eye(4)
        affine[:3, :3] = np.stack([r, c, np.cross(r, c)], axis=1) * 2.0
        affine[:3, 3] = ct.geometry.index_to_lps((np.asarray(ct.spatial_shape) - 1) / 2)
        plane = MultiEchoMR(np.full((1, 16, 16, 1), 100.0, np.float32), affine)
        assert Geometry(plane.spatial_shape, plane.affine).shape == (16, 16, 1)
        scratch = folder.parent / f"scratch-{n}"
        write_dicom_series(plane, scratch, series_instance_uid=uid, series_description="loc")
        for f in scratch.iterdir():
            shutil.move(str(f), folder / f"LOC{n}_{f.name}")
        scratch.rmdir()


@pytest.mark.slow
def test_localizers_scouts_and_reformats_of_a_study_are_skipped_and_named(
    totalseg: Path, tmp_path: Path
) -> None:
    """A PACS export: the CT with its scout (LOCALIZER, one slice) and a dose page (secondary
    capture), a sagittal reformat (DERIVED) beside the original axial CT, the MR beside a
    3-plane localizer in the same folder. Each patient reads as its one MR and one CT volume;
    what was skipped is a QA note, and a flat export (every file in one folder) reads the same."""
    import shutil

    import pydicom

    from synthct.io import read_volume, write_volume
    from synthct.io.dicom_write import write_dicom_series
    from synthct.volume import CTVolume

    ct = read_volume(totalseg / "example_ct_sm.nii.gz", kind="ct")
    assert isinstance(ct, CTVolume)
    study = tmp_path / "studies" / "patient-c"
    study.mkdir(parents=True)
    write_volume(ct, study / "ct-axial", patient_id="PC-3")
    _set_image_type(study / "ct-axial", ["ORIGINAL", "PRIMARY", "AXIAL"])
    write_volume(ct, study / "ct-sagittal-mpr", patient_id="PC-3")  # DERIVED\SECONDARY
    scout = CTVolume(np.asarray(ct.array)[:, :, 10:11], ct.affine)
    write_dicom_series(scout, study / "ct-scout", patient_id="PC-3", series_description="Topo")
    _set_image_type(study / "ct-scout", ["ORIGINAL", "PRIMARY", "LOCALIZER"])
    dose = study / "ct-dose"
    write_dicom_series(scout, dose, patient_id="PC-3", series_description="Dose Report")
    for path in dose.iterdir():
        ds = pydicom.dcmread(path)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
        ds.save_as(path, enforce_file_format=True)
    write_volume(mr_like(ct), study / "mr-t2", patient_id="PC-3")
    _localizer(ct, study / "mr-t2", "1.2.826.0.1.3680043.8.498.1")

    manifest, layout = read_dataset(tmp_path / "studies")
    (case,) = manifest.cases
    assert layout == "dicom" and case.path("ct") == study / "ct-axial"
    assert case.mr().spatial_shape == ct.spatial_shape  # the scan, not the localizer beside it
    np.testing.assert_array_equal(case.ct().array, ct.array)
    skipped = case.extra["dicom_skipped_series"]
    for expected in ("localizer (ImageType LOCALIZER)", "secondary capture",
                     "slices in 3 orientations", "derived, beside an original"):  # fmt: skip
        assert expected in skipped, skipped
    (row,) = run_qa(manifest, NO_REGISTRATION)
    notes = [i for i in row["issues"] if i.startswith("dicom_skipped")]
    assert len(notes) == 1 and "ct-scout" in notes[0]
    assert not row.get("error")

    flat = tmp_path / "flat" / "patient-c"
    flat.mkdir(parents=True)
    for n, path in enumerate(sorted(p for p in study.rglob("*") if p.is_file())):
        shutil.copy(path, flat / f"{n:05d}.dcm")
    (case,) = read_dataset(tmp_path / "flat")[0].cases
    assert case.path("ct") == case.path("mr") == flat
    np.testing.assert_array_equal(case.ct().array, ct.array)
    assert case.mr().spatial_shape == ct.spatial_shape
    # a flat export whose MR belongs to someone else: each series' own PatientID is compared
    other = tmp_path / "flat" / "patient-d"
    shutil.copytree(flat, other)
    for path in other.iterdir():
        ds = pydicom.dcmread(path)
        if ds.Modality == "MR":
            ds.PatientID = "PD-4"
            ds.save_as(path, enforce_file_format=True)
    rows = run_qa(read_dataset(tmp_path / "flat")[0], NO_REGISTRATION)
    mismatched = [r["case_id"] for r in rows if any("patient_mismatch" in i for i in r["issues"])]
    assert mismatched == ["patient-d"]
    shutil.rmtree(other)
    # training reads the chosen series too, and a split writes such cases as NIfTI pairs
    from synthct.dataset.split import write_split_folder
    from synthct.synthesis.manifest import load_case, record_from_case

    loaded = load_case(record_from_case(case, manifest=flat))
    assert loaded.mr.spatial_shape == ct.spatial_shape
    np.testing.assert_array_equal(loaded.ct.array, ct.array)
    three = Manifest(
        [Case(f"p{n}", case.images, {"patient_id": f"p{n}"}, case.extra) for n in range(3)]
    )
    write_split_folder(three, tmp_path / "split", n_folds=2, test_fraction=0.34, unit="patient")
    from synthct.manifest import read_manifest

    for written in read_manifest(tmp_path / "split" / "fold-0.csv"):
        assert written.path("mr") == tmp_path / "split" / "pairs" / written.case_id / "mr.nii.gz"
        assert not written.extra.get("mr_series_uid") and not written.extra.get("ct_series_uid")
        assert written.mr().spatial_shape == ct.spatial_shape

    shutil.rmtree(study / "ct-axial")  # the reformat alone is the CT then
    assert read_dataset(tmp_path / "studies")[0].cases[0].path("ct") == study / "ct-sagittal-mpr"
    for path in (study / "mr-t2").iterdir():
        if not path.name.startswith("LOC"):
            path.unlink()  # the localizer alone is left
    with pytest.raises(DatasetError, match="0 MR volume series") as e:
        read_dataset(tmp_path / "studies")
    assert "slices in 3 orientations" in str(e.value)  # says what it found instead


@pytest.mark.slow
def test_a_study_with_several_mr_series_is_read_with_the_one_named(
    totalseg: Path, tmp_path: Path
) -> None:
    """A hospital export holds T1w, T2w and STIR series: without a choice that patient is an
    unreadable QA row (the others still read) whose fix names --mr-series; --mr-series picks
    the series by its description (text or pattern), the others are named as skipped; check
    and split leave the unreadable patient out."""
    from synthct.dataset.readers import SeriesChoice
    from synthct.io import read_volume, write_volume
    from synthct.io.dicom_write import write_dicom_series

    ct = read_volume(totalseg / "example_ct_sm.nii.gz", kind="ct")
    studies = tmp_path / "studies"
    contrasts = {"t1_vibe_tra": 0.5, "t2_tse_tra": 1.0, "stir_tra": 2.0}
    for name in ("patient-a", "patient-b"):
        study = studies / name
        study.mkdir(parents=True)
        write_volume(ct, study / "ct", patient_id=name)
        for n, (description, scale) in enumerate(contrasts.items()):
            mr = mr_like(ct)
            mr = mr.with_array(np.asarray(mr.array) * scale)
            write_dicom_series(
                mr, study / description, patient_id=name,
                series_description=description.upper(), series_number=n + 2,
            )  # fmt: skip
    # no patient readable: more likely a wrong choice or folder than a cohort of bad studies
    result = CliRunner().invoke(app, ["dataset", "check", str(studies), "-o", str(tmp_path / "q")])
    assert result.exit_code == 2 and "no patient folder" in result.stderr
    assert "3 MR volume series" in result.stderr and "--mr-series" in result.stderr
    assert not (tmp_path / "q").exists()
    with pytest.raises(DatasetError, match="0 MR volume series matching 'flair'"):
        read_dataset(studies, series=SeriesChoice(mr="flair"))

    t2, _ = read_dataset(studies, series=SeriesChoice(mr="T2"))
    assert [c.path("mr").name for c in t2] == ["t2_tse_tra"] * 2
    expected = np.asarray(mr_like(ct).array)
    np.testing.assert_allclose(t2["patient-a"].mr().array, expected, atol=0.5)
    assert "not 'T2'" in t2["patient-a"].extra["dicom_skipped_series"]
    stir, _ = read_dataset(studies, series=SeriesChoice(mr="stir_*"))  # a pattern
    np.testing.assert_allclose(stir["patient-b"].mr().array, 2.0 * expected, atol=1.0)
    with pytest.raises(DatasetError, match="3 MR volume series matching '_tra'"):
        read_dataset(studies, series=SeriesChoice(mr="_tra", ct="anything"))

    # one patient without a T2: check names it and goes on, split leaves it out
    import shutil

    shutil.rmtree(studies / "patient-b" / "t2_tse_tra")
    qa = tmp_path / "qa"
    args = ["dataset", "check", str(studies), "-o", str(qa), "--no-register", "--mr-series", "t2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "1 unreadable" in result.output and "patient-b: patient folder" in result.output
    split = CliRunner().invoke(app, ["dataset", "split", str(qa), "-o", str(tmp_path / "split"),
                                     "--unit", "slab"])  # fmt: skip
    assert split.exit_code == 0, split.output
    assert "left out patient-b: unreadable" in split.output


def mr_like(ct: object) -> Any:
    """An MR-like volume (non-negative) on the CT's grid."""
    from synthct.volume import CTVolume, MultiEchoMR

    assert isinstance(ct, CTVolume)
    return MultiEchoMR(np.clip(ct.array + 1000.0, 0, None)[None].astype(np.float32), ct.affine)


def test_overlap_fraction_known_answers() -> None:
    a = Geometry((10, 10, 10), np.diag([2.0, 2.0, 2.0, 1.0]))
    shifted = np.diag([2.0, 2.0, 2.0, 1.0])
    shifted[0, 3] = 10.0  # half of the 20 mm field of view along L
    assert overlap_fraction(a, a) == 1.0
    assert overlap_fraction(Geometry((10, 10, 10), shifted), a) == pytest.approx(0.5)
    shifted[0, 3] = 500.0
    assert overlap_fraction(Geometry((10, 10, 10), shifted), a) == 0.0
    # a 20 mm CT slab across a 450 mm sagittal MR: 4.4 % of the MR lies in it, not 0 %
    mr = Geometry((9, 562, 562), np.diag([4.0, 0.8, 0.8, 1.0]))
    slab = np.diag([1.0, 1.0, 2.0, 1.0])
    slab[:3, 3] = (-200.0, 0.0, 215.0)  # 214-234 mm: between two points of a 12-point lattice
    ct = Geometry((512, 512, 10), slab)
    assert overlap_fraction(mr, ct) == pytest.approx(20.0 / 450.0, abs=0.01)


def test_qa_rows_for_the_bad_inputs(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    write_pair(root / "good1", seed=1)
    write_pair(root / "good2", seed=2)
    write_pair(root / "nomask", seed=3, mask=False)
    write_pair(root / "apart", seed=4, mr_origin_mm=(0.0, 0.0, 500.0))
    write_pair(root / "onechannel", seed=5, channels=1)
    write_pair(root / "mrasct", seed=6, mr_as_ct=True)
    write_pair(root / "copy", seed=1)  # the same voxels as good1 under another id
    result = check_dataset(root, tmp_path / "qa", settings=NO_REGISTRATION)
    rows = {r["case_id"]: r for r in result.rows}
    assert rows["good2"]["status"] == "ok" and rows["good2"]["issues"] == [], rows["good2"]
    assert rows["nomask"]["status"] == "ok" and rows["nomask"]["mask_source"] == "derived"
    assert result.cases_with("no_mask") == ["nomask"]
    assert result.cases_with("no_overlap") == ["apart"] and rows["apart"]["fov_overlap"] == 0
    assert result.cases_with("channel_count") == ["onechannel"]
    assert rows["mrasct"]["status"] == "error" and "Hounsfield" in rows["mrasct"]["error"]
    assert "; fix: " in rows["mrasct"]["error"]  # the row says what to do, not only what failed
    assert sorted(result.cases_with("duplicate_ct")) == ["copy", "good1"]
    assert rows["good1"]["mask_coverage"] == pytest.approx(1.0)
    assert rows["good1"]["mr_p99_5"] == f"{MR_VALUES[0]:.4g};{MR_VALUES[1]:.4g}"
    assert rows["good1"]["ct_min_hu"] == -1000.0 and rows["good1"]["ct_max_hu"] == 700.0
    # fingerprint: the readable, overlapping two-channel cases only
    fp = json.loads((tmp_path / "qa" / "fingerprint.json").read_text())
    assert fp["n_cases"] == 4 and fp["mr_channels"] == 2
    table = (tmp_path / "qa" / "qa.csv").read_text()
    assert table.splitlines()[0].startswith("case_id,patient_id") and "mrasct" in table
    with pytest.raises(Exception, match="already exists"):
        check_dataset(root, tmp_path / "qa", settings=NO_REGISTRATION)


def test_fingerprint_known_statistics(tmp_path: Path) -> None:
    cases = [
        Case(f"p{i}", {"ct": d / "ct.nii.gz", "mr": [d / "mr_1.nii.gz", d / "mr_2.nii.gz"],
                       "body_mask": d / "mask.nii.gz"})
        for i in range(2)
        for d in [write_pair(tmp_path / f"p{i}", seed=i)]
    ]  # fmt: skip
    fp = fingerprint(cases).to_dict()
    assert fp["format"] == "synthct-fingerprint/1" and fp["n_cases"] == 2
    assert fp["spacing_mm"]["mr"]["median"] == [SPACING_MM] * 3
    for channel, value in zip(fp["mr"], MR_VALUES, strict=False):
        assert channel["mean"] == pytest.approx(value) and channel["sd"] == pytest.approx(0.0)
    assert fp["ct_hu"]["p50"] == pytest.approx(BODY_HU) and fp["ct_hu"]["max"] == 700.0
    assert fp["body_mask"] == "given"
    assert fingerprint(cases).to_dict() == fp  # seeded: the same twice
    one = write_pair(tmp_path / "one", channels=1)
    odd = Case("odd", {"ct": one / "ct.nii.gz", "mr": one / "mr.nii.gz"})
    with pytest.raises(Exception, match="1 MR channel"):
        fingerprint([*cases, odd])


def manifest_of(patients: dict[str, str]) -> Manifest:
    return Manifest([Case(c, {}, {"patient_id": p}) for c, p in patients.items()])


def test_split_is_by_patient_and_deterministic() -> None:
    patients = {f"c{i:02d}": f"p{i // 2}" for i in range(20)}  # 10 patients, 2 cases each
    split = make_split(manifest_of(patients), n_folds=3, test_fraction=0.2, seed=7)
    assert len(split.test) == 4  # 2 patients
    for fold in split.folds:
        parts = [split.test, fold["train"], fold["val"]]
        assert sorted(part for p in parts for part in p) == sorted(patients)
        owners = [{patients[c] for c in part} for part in parts]
        assert not (owners[0] & owners[1]) and not (owners[0] & owners[2])
        assert not (owners[1] & owners[2])
    assert sorted(c for f in split.folds for c in f["val"]) == sorted(
        c for c in patients if c not in split.test
    )  # every non-test case is validated exactly once
    reordered = dict(reversed(list(patients.items())))
    assert make_split(manifest_of(reordered), n_folds=3, test_fraction=0.2, seed=7) == split
    assert make_split(manifest_of(patients), n_folds=3, test_fraction=0.2, seed=8) != split
    merged = make_split(
        manifest_of(patients), n_folds=3, test_fraction=0.2, seed=7, same_content=[["c00", "c19"]]
    )
    for fold in merged.folds:
        parts = [merged.test, fold["train"], fold["val"]]
        assert any({"c00", "c19"} <= set(p) for p in parts)
    with pytest.raises(SplitError, match="3 patient"):
        make_split(manifest_of({"a": "a", "b": "b", "c": "c"}), n_folds=3, test_fraction=0.2)


def test_a_split_with_one_patient_in_train_and_test_is_refused(tmp_path: Path) -> None:
    manifest = manifest_of({"a1": "A", "a2": "A", "b1": "B", "c1": "C"})
    bad = tmp_path / "split.json"
    bad.write_text(json.dumps({"test": ["a1"], "folds": [{"train": ["a2", "b1"], "val": ["c1"]}]}))
    with pytest.raises(SplitError, match="patient 'A' is in both test and train"):
        read_split(bad, manifest)
    bad.write_text(json.dumps({"test": ["zz"], "folds": [{"train": ["b1"], "val": ["c1"]}]}))
    with pytest.raises(SplitError, match="does not list"):
        read_split(bad, manifest)
    good = make_split(manifest, n_folds=2, test_fraction=0.0, seed=1)
    bad.write_text(json.dumps(good.to_dict()))
    assert read_split(bad, manifest) == good


def test_qa_names_a_patient_in_two_splits(tmp_path: Path) -> None:
    for name in ("a1", "a2", "b1"):
        write_pair(tmp_path / name, seed=len(name) + ord(name[0]) + int(name[1]))
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "case_id,ct,mr,body_mask,patient_id,split\n"
        + "".join(
            f"{c},{c}/ct.nii.gz,{c}/mr_1.nii.gz;{c}/mr_2.nii.gz,{c}/mask.nii.gz,{p},{s}\n"
            for c, p, s in (("a1", "A", "train"), ("a2", "A", "test"), ("b1", "B", "train"))
        )
    )
    rows = run_qa(read_dataset(manifest)[0], NO_REGISTRATION)
    leaked = [r["case_id"] for r in rows if any(i.startswith("patient_leak") for i in r["issues"])]
    assert leaked == ["a1", "a2"]


def test_the_real_mr_of_another_subject_is_flagged(totalseg: Path, tmp_path: Path) -> None:
    import shutil

    case = tmp_path / "real" / "r1"
    case.mkdir(parents=True)
    shutil.copy(totalseg / "example_mr_sm.nii.gz", case / "mr.nii.gz")
    shutil.copy(totalseg / "example_ct_sm.nii.gz", case / "ct.nii.gz")
    (row,) = check_dataset(tmp_path / "real", tmp_path / "qa").rows
    assert row["mr_channels"] == 1 and row["mr_shape"] == "117x91x20"
    assert row["ct_orientation"] == "RAS" and row["mr_orientation"] == "LPS"
    assert -1030 < row["ct_p0_5_hu"] < -1000 and row["mask_source"] == "derived"
    assert row["fov_overlap"] == 0.0 and row["status"] == "flag"  # another subject's frame
    # the global search tried and found no position that stands out: nothing applied
    assert any(i.startswith("no_overlap") and "stands out" in i for i in row["issues"])
    assert row["registration"] == "identity" and row["registration_matrix"] is None
    assert row["search_peak_ratio"] < 1.5


@pytest.mark.slow
def test_a_ct_series_without_uid_beside_the_mr_in_one_folder(
    totalseg: Path, tmp_path: Path
) -> None:
    """The real DICOM CT here has no SeriesInstanceUID. Exported into one folder with an MR
    series, each is still found by Modality and read back, and a split writes the pair."""
    import shutil

    from synthct.io import read_volume, write_volume

    ct = read_volume(totalseg / "example_ct_dicom", kind="ct")
    patient = tmp_path / "studies" / "p1"
    patient.mkdir(parents=True)
    for path in (totalseg / "example_ct_dicom").iterdir():
        shutil.copy(path, patient / f"CT_{path.name}")
    write_volume(mr_like(ct), tmp_path / "mr-series")
    for path in (tmp_path / "mr-series").iterdir():
        shutil.copy(path, patient / path.name)
    (case,) = read_dataset(tmp_path / "studies")[0].cases
    assert case.extra["ct_series_uid"] == "none" and case.path("ct") == patient
    np.testing.assert_array_equal(case.ct().array, ct.array)
    assert case.mr().spatial_shape == ct.spatial_shape
