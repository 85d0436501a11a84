"""Manifests: CSV and YAML forms, relative paths, lesion points, and errors that name the place."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthct.validation.manifest import (
    CaseSpec,
    ManifestError,
    case_from_paths,
    parse_lesion_points,
    read_manifest,
)


def touch(folder: Path, *names: str) -> None:
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_csv_manifest_resolves_paths_and_parses_lesions(tmp_path: Path) -> None:
    manifest = tmp_path / "study" / "cases.csv"
    manifest.parent.mkdir()
    manifest.write_text(
        "# the paper's five patients\n"
        "case_id,ct,sct,mri,lesions,lesion_points,body_mask,notes\n"
        "p1,p1/ct.nii.gz,p1/sct.nii.gz,p1/e1.nii.gz;p1/e2.nii.gz,p1/seg.nii.gz,,,T8/9\n"
        'p2,/abs/ct,p2/sct.nii.gz,,,"10.5,-20,33,4; 1,2,3,2.5",p2/body.nii.gz,\n'
        "\n"
        "p3,p3/ct,p3/sct,p3/dicom,,,,\n"
    )
    cases = read_manifest(manifest).cases
    assert [c.case_id for c in cases] == ["p1", "p2", "p3"]
    p1, p2, p3 = cases
    base = manifest.parent.resolve()
    assert p1.ct == base / "p1/ct.nii.gz" and p1.mri == (
        base / "p1/e1.nii.gz",
        base / "p1/e2.nii.gz",
    )
    assert p1.lesions == base / "p1/seg.nii.gz" and p1.lesion_points is None
    assert p1.notes == "T8/9" and p1.points() == []
    assert p2.ct == Path("/abs/ct") and p2.mri == () and p2.body_mask == base / "p2/body.nii.gz"
    points = p2.points()
    assert [p.lesion_id for p in points] == [1, 2]
    assert points[0].center_lps_mm == (10.5, -20.0, 33.0) and points[0].radius_mm == 4.0
    assert points[1].radius_mm == 2.5
    assert p3.mri == (base / "p3/dicom",)


def test_yaml_manifest_with_lists_and_mappings(tmp_path: Path) -> None:
    manifest = tmp_path / "cases.yaml"
    manifest.write_text(
        """
cases:
  - case_id: a
    ct: a/ct.nrrd
    sct: a/sct.mha
    mri: [a/e1.nii.gz, a/e2.nii.gz]
    lesion_points:
      - [1, 2, 3, 4]
      - {center_lps_mm: [5, 6, 7], radius_mm: 3, name: T5-7 meningioma}
  - case_id: b
    ct: b/ct
    sct: b/sct
    lesion_points: "0,0,0,5"
"""
    )
    a, b = read_manifest(manifest).cases
    assert a.mri == (tmp_path.resolve() / "a/e1.nii.gz", tmp_path.resolve() / "a/e2.nii.gz")
    first, second = a.points()
    assert first.center_lps_mm == (1.0, 2.0, 3.0) and second.name == "T5-7 meningioma"
    assert second.lesion_id == 2
    assert b.points()[0].radius_mm == 5.0
    plain_list = tmp_path / "list.yml"
    plain_list.write_text("- {case_id: c, ct: c.nii, sct: s.nii}\n")
    assert read_manifest(plain_list).cases[0].case_id == "c"


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("case_id,ct,sct,extra\np1,a,b,c\n", ["unknown column", "extra"]),
        ("case_id,ct\np1,a\n", ["lacks the required column", "sct"]),
        ("case_id,ct,sct\np1,a,b\np1,c,d\n", ["'p1' appears twice", "cases 1 and 2"]),
        ("case_id,ct,sct\np1,a,\n", ["case 'p1'", "column sct"]),
        ("case_id,ct,sct\np/1,a,b\n", ["case 'p/1'", "case_id", "letters"]),
        (
            'case_id,ct,sct,lesion_points\np1,a,b,"1,2,3"\n',
            ["case 'p1'", "lesion_points", "lesion point 1", "L,P,S,r"],
        ),
        (
            'case_id,ct,sct,lesion_points\np1,a,b,"1,2,3,-4"\n',
            ["case 'p1'", "lesion_points", "positive radius"],
        ),
        (
            'case_id,ct,sct,lesions,lesion_points\np1,a,b,m.nii,"1,2,3,4"\n',
            ["case 'p1'", "not both"],
        ),
        ("case_id,ct,sct\n", ["lists no case"]),
        ("case_id,ct,sct\np1,a,b,c\n", ["more cells than the header"]),
    ],
)
def test_bad_csv_manifests_name_file_case_and_column(
    tmp_path: Path, text: str, needles: list[str]
) -> None:
    manifest = tmp_path / "bad.csv"
    manifest.write_text(text)
    with pytest.raises(ManifestError) as info:
        read_manifest(manifest)
    message = str(info.value)
    assert str(manifest) in message
    for needle in needles:
        assert needle in message, message


def test_bad_yaml_and_missing_manifests(tmp_path: Path) -> None:
    for text, needle in (
        ("cases: [1, 2]\n", "not a mapping"),
        ("cases:\n  - {case_id: a, ct: x, sct: y, colour: red}\n", "unknown column"),
        ("study: x\ncases: []\n", "unknown top-level key"),
        ("cases: {a: b}\n", "list of cases"),
        ("cases: [\n", "not valid YAML"),
    ):
        manifest = tmp_path / "bad.yaml"
        manifest.write_text(text)
        with pytest.raises(ManifestError, match=needle):
            read_manifest(manifest)
    with pytest.raises(ManifestError, match="no such manifest"):
        read_manifest(tmp_path / "absent.csv")
    (tmp_path / "m.txt").write_text("case_id,ct,sct\np1,a,b\n")
    with pytest.raises(ManifestError, match="unsupported manifest type"):
        read_manifest(tmp_path / "m.txt")
    # JSON is read by the one manifest reader (synthct.manifest); an object without cases is not
    (tmp_path / "m.json").write_text("{}")
    with pytest.raises(ManifestError, match="list of cases"):
        read_manifest(tmp_path / "m.json")


def test_missing_files_are_listed_per_case_and_column(tmp_path: Path) -> None:
    touch(tmp_path, "p1/ct.nii.gz", "p1/sct.nii.gz", "p2/ct.nii.gz")
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "case_id,ct,sct,lesions\np1,p1/ct.nii.gz,p1/sct.nii.gz,\np2,p2/ct.nii.gz,p2/sct.nii.gz,p2/l.nii\n"
    )
    loaded = read_manifest(manifest)  # not checked by default: the case fails when it runs
    assert loaded.missing_inputs() == [
        ("p2", "sct", tmp_path.resolve() / "p2/sct.nii.gz"),
        ("p2", "lesions", tmp_path.resolve() / "p2/l.nii"),
    ]
    with pytest.raises(ManifestError) as info:
        read_manifest(manifest, require_files=True)
    message = str(info.value)
    assert "2 input file(s)" in message and "case 'p2', sct:" in message
    assert "p2/l.nii" in message and "case 'p1'" not in message


def test_single_case_from_the_command_line_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    case = case_from_paths(
        case_id="one",
        ct="ct.nii.gz",
        sct="sct.nii.gz",
        mri=["e1.nii.gz", "e2.nii.gz"],
        lesion_points="1,2,3,4",
    )
    assert case.ct == tmp_path / "ct.nii.gz" and len(case.mri) == 2
    assert case.points()[0].radius_mm == 4.0
    with pytest.raises(ManifestError, match="lesion_points"):
        case_from_paths(case_id="one", ct="a", sct="b", lesion_points="1,2")
    described = case.describe()
    assert described["ct"] == str(tmp_path / "ct.nii.gz")
    assert CaseSpec.model_validate(described) == case


def test_parse_lesion_points_forms() -> None:
    assert parse_lesion_points("1,2,3,4;") == parse_lesion_points([[1, 2, 3, 4]])
    assert parse_lesion_points(" 1, 2, 3, 4 ; 5,6,7,8 ")[1].center_lps_mm == (5.0, 6.0, 7.0)
    with pytest.raises(ValueError, match="lesion point 2"):
        parse_lesion_points("1,2,3,4; a,b,c,d")
    with pytest.raises(ValueError, match="lesion point 1"):
        parse_lesion_points("1,2,3,nan")
