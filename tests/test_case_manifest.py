"""One Case and one manifest: old column names, paths, round trips, lazy volumes, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from synthct.case import Case
from synthct.errors import ReadError
from synthct.io import write_volume
from synthct.manifest import Manifest, ManifestError, read_manifest, write_manifest
from synthct.volume import CTVolume, MultiEchoMR

OLD_PHANTOM = (
    "case_id,ct,mr_echoes,tissue_labels,lesion_labels,lesion_labels_ct,n_lesions,lesion_types,"
    "sct_failure\n"
    "case-000,case-000/ct.nii.gz,case-000/mr_echo-1.nii.gz;case-000/mr_echo-2.nii.gz,"
    "case-000/t.nii.gz,case-000/l.nii.gz,case-000/l.nii.gz,1,meningioma,\n"
)


def test_old_column_names_map_to_one_case(tmp_path: Path) -> None:
    (tmp_path / "phantom.csv").write_text(OLD_PHANTOM)
    (case,) = read_manifest(tmp_path / "phantom.csv").cases
    base = tmp_path.resolve()
    assert case.paths("mr") == (
        base / "case-000/mr_echo-1.nii.gz",
        base / "case-000/mr_echo-2.nii.gz",
    )
    assert case.path("lesion_labels") == base / "case-000/l.nii.gz" and not case.has("sct_failure")
    assert case.meta == {"n_lesions": "1", "lesion_types": "meningioma"}
    assert case.patient_id == "case-000" and case.extra == {}
    (tmp_path / "validation.yaml").write_text(
        "cases:\n  - {case_id: p1, ct: /abs/ct.nii.gz, sct: s.nii.gz, mri: [e1.nii, e2.nii],"
        " lesions: seg.nii.gz, mask: body.nii.gz, patient: P-7, scanner: X}\n"
    )
    (p1,) = read_manifest(tmp_path / "validation.yaml").cases
    assert p1.path("ct") == Path("/abs/ct.nii.gz") and len(p1.paths("mr")) == 2
    assert p1.path("lesion_labels") == base / "seg.nii.gz"
    assert p1.path("body_mask") == base / "body.nii.gz"
    assert p1.patient_id == "P-7" and p1.extra == {"scanner": "X"}


@pytest.mark.parametrize("suffix", [".csv", ".yaml", ".json"])
def test_round_trip_keeps_every_column_and_moves_with_its_folder(
    tmp_path: Path, suffix: str
) -> None:
    source = tmp_path / "a" / "m.csv"
    source.parent.mkdir()
    source.write_text(
        "case_id,mri,ct,scanner,split,patient_id\n"
        "x1,x1/e1.nii.gz;x1/e2.nii.gz,x1/ct.nii.gz,Prisma,train,P1\n"
        "x2,x2/t1.nii.gz,/data/x2/ct.nii.gz,,test,P2\n"
    )
    manifest = read_manifest(source)
    assert manifest.columns == ["case_id", "mr", "ct", "scanner", "split", "patient_id"]
    written = write_manifest(manifest, tmp_path / "a" / f"copy{suffix}")
    text = written.read_text()
    assert "x1/e1.nii.gz" in text and "/data/x2/ct.nii.gz" in text  # relative inside, absolute out
    again = read_manifest(written)
    assert again.cases == manifest.cases
    assert again.cases[0].extra == {"scanner": "Prisma"} and again.cases[1].split == "test"
    if suffix == ".csv":
        assert text.splitlines()[0] == "case_id,mr,ct,scanner,split,patient_id"
    moved = tmp_path / "b"
    (tmp_path / "a").rename(moved)
    assert (
        read_manifest(moved / f"copy{suffix}").cases[0].path("ct")
        == moved.resolve() / "x1/ct.nii.gz"
    )


def test_top_level_keys_of_yaml_and_json_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"synthct_version": "1", "cases": [{"case_id": "a", "ct": "c"}]}))
    manifest = read_manifest(path)
    assert manifest.info == {"synthct_version": "1"}
    out = write_manifest(manifest, tmp_path / "o.yaml")
    assert read_manifest(out).info == {"synthct_version": "1"}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("ct,mr\na,b\n", "lacks the required column(s) ['case_id']"),
        ("case_id,ct\n", "lists no case"),
        ("case_id,ct\na,x\na,y\n", "'a' appears twice (cases 1 and 2)"),
        ("case_id,mri,mr_echoes\na,x,y\n", "gives mr twice (as 'mri' and 'mr_echoes')"),
        ("case_id,ct\n,x\n", "has no case_id"),
        ("case_id,ct,ct\na,x,y\n", "repeats column(s) ['ct']"),
    ],
)
def test_bad_manifests_name_file_and_problem(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ManifestError) as info:
        read_manifest(path)
    assert needle in str(info.value) and str(path) in str(info.value)


def test_a_cohort_folder_is_read_through_its_manifest(tmp_path: Path) -> None:
    (tmp_path / "manifest.csv").write_text(OLD_PHANTOM)
    assert read_manifest(tmp_path).source == tmp_path / "manifest.csv"
    (tmp_path / "x").mkdir()
    with pytest.raises(ManifestError, match="holds no manifest"):
        read_manifest(tmp_path / "x")


def test_case_reads_volumes_lazily_and_once(tmp_path: Path) -> None:
    ct = CTVolume(np.full((4, 4, 4), -1000.0, np.float32), np.eye(4))
    mr = MultiEchoMR(np.ones((2, 4, 4, 4), np.float32), np.eye(4))
    write_volume(ct, tmp_path / "ct.nii.gz")
    write_volume(mr, tmp_path / "mr.nii.gz")
    case = Case("c", {"ct": tmp_path / "ct.nii.gz", "mr": [tmp_path / "mr.nii.gz"], "sct": ""})
    assert not case.has("sct") and "not read" in repr(case)
    first = case.ct()
    assert case.ct() is first and "CTVolume" in repr(case)
    assert case.mr().array.shape == (2, 4, 4, 4)
    case.unload()
    assert case.ct() is not first and np.array_equal(case.ct().array, first.array)
    with pytest.raises(ReadError, match="case 'c' has no sct image"):
        case.sct()
    with pytest.raises(ValueError, match="unknown image role"):
        Case("c", {"cbct": "x"})
    assert Manifest([case]).patients() == {"c": ["c"]}


def test_validation_asks_for_the_sct_of_a_phantom_manifest_without_one(tmp_path: Path) -> None:
    from synthct.validation.manifest import read_manifest as read_validation_manifest

    (tmp_path / "manifest.csv").write_text(OLD_PHANTOM)
    with pytest.raises(ManifestError, match=r"'case-000' .* has no sCT") as info:
        read_validation_manifest(tmp_path / "manifest.csv")
    assert "--failure-sct" in str(info.value)
    (tmp_path / "manifest.csv").write_text(
        OLD_PHANTOM.replace("meningioma,\n", "meningioma,s.nii\n")
    )
    (case,) = read_validation_manifest(tmp_path / "manifest.csv").cases
    base = tmp_path.resolve()
    assert case.sct == base / "s.nii" and case.lesions == base / "case-000/l.nii.gz"
    assert len(case.mri) == 2
