"""De-identification: nothing synthct writes carries a planted patient identifier unless asked.

The identifiers are planted in a copy of the real CT series (and in an MRI series for
`synthesize`); every output file (DICOM bytes, JSON, CSV, Parquet, HTML, PNG, text) is searched.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, generate_uid
from typer.testing import CliRunner

from synthct.cli import app
from synthct.io import read_volume, write_volume
from synthct.io.deidentify import deidentify_dataset, relative_path, replace_uid
from synthct.io.dicom_write import write_dicom_series
from synthct.volume import MRProtocol, MultiEchoMR

runner = CliRunner()

#: Planted values, each distinctive enough that finding it in an output is a leak.
PLANTED = {
    "PatientName": "Zzplanted^Janet",
    "PatientID": "ZZPID-804211",
    "PatientBirthDate": "19420817",
    "AccessionNumber": "ZZACC-55731",
    "StudyID": "ZZSTUDY-42",
    "InstitutionName": "Zz Hidden Valley Hospital",
    "InstitutionAddress": "Zz 17 Quiet Lane, Nowhere",
    "StationName": "ZZSTATION-7",
    "DeviceSerialNumber": "ZZSERIAL-90210",
    "ReferringPhysicianName": "Zzreferrer^Paul",
}
#: What a derived series keeps with --keep-identifiers (patient and study, not the equipment).
PATIENT_AND_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "AccessionNumber",
    "StudyID",
)


def plant(source: Path, target: Path) -> dict[str, str]:
    """Copy a series into ``target`` with the planted identifiers and fresh UIDs."""
    target.mkdir()
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for path in sorted(p for p in source.iterdir() if p.is_file()):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        for keyword, value in PLANTED.items():
            setattr(ds, keyword, value)
        ds.save_as(target / path.name)
    return {"StudyInstanceUID": study, "SeriesInstanceUID": series, **PLANTED}


def leaks(folder: Path, values: dict[str, str]) -> dict[str, list[str]]:
    """Planted value name -> output files (relative) whose bytes contain it."""
    found: dict[str, list[str]] = {}
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert files, f"nothing written in {folder}"
    for path in files:
        data = path.read_bytes()
        for keyword, value in values.items():
            if value.encode() in data or value.replace("^", " ").encode() in data:
                found.setdefault(keyword, []).append(str(path.relative_to(folder)))
    return found


# -- the profile ---------------------------------------------------------------------------------
def test_profile_empties_removes_and_replaces_uids_consistently() -> None:
    ds = Dataset()
    for keyword, value in PLANTED.items():
        setattr(ds, keyword, value)
    ds.SOPClassUID = CTImageStorage
    ds.StudyInstanceUID = study = generate_uid()
    ds.StudyDate = "20240102"
    ds.add_new(0x00091001, "LO", "private vendor data")
    item = Dataset()
    item.ReferencedSOPInstanceUID = study
    item.PatientName = PLANTED["PatientName"]
    ds.ReferencedImageSequence = [item]

    out = deidentify_dataset(ds)
    assert ds.PatientName == PLANTED["PatientName"]  # the input is untouched
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "StudyID"):
        assert keyword in out and str(out.get(keyword)) == "", keyword
    for keyword in ("InstitutionName", "InstitutionAddress", "StationName", "DeviceSerialNumber"):
        assert keyword not in out, keyword
    assert 0x00091001 not in out  # private element
    assert out.StudyDate == ""
    assert out.SOPClassUID == CTImageStorage  # a registered UID is kept
    assert out.StudyInstanceUID == replace_uid(study) != study
    # the same UID inside a sequence maps to the same replacement: references stay valid
    assert out.ReferencedImageSequence[0].ReferencedSOPInstanceUID == out.StudyInstanceUID
    assert out.ReferencedImageSequence[0].PatientName == ""
    assert out.PatientIdentityRemoved == "YES"
    assert out.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert deidentify_dataset(ds).StudyInstanceUID == out.StudyInstanceUID  # reproducible


def test_relative_path_is_relative_to_the_output_folder(tmp_path: Path) -> None:
    out = tmp_path / "results" / "run1"
    assert relative_path(tmp_path / "data" / "ct.nii.gz", out) == "../../data/ct.nii.gz"
    assert relative_path(out / "cases" / "a", out) == "cases/a"


# -- validate ------------------------------------------------------------------------------------
def _validate(ct: Path, out: Path, *extra: str) -> None:
    volume = read_volume(ct)
    centre = volume.geometry.index_to_lps((np.asarray(volume.spatial_shape) - 1) / 2)
    point = ",".join(f"{v:.2f}" for v in centre) + ",6"
    result = runner.invoke(
        app,
        ["validate", "--ct", str(ct), "--sct", str(ct), "--lesion-points", point,
         "--out", str(out), "--workers", "0", *extra],
    )  # fmt: skip
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_validate_outputs_carry_no_identifier_unless_kept(totalseg: Path, tmp_path: Path) -> None:
    ct = tmp_path / "patient_ct"
    planted = plant(totalseg / "example_ct_dicom", ct)
    out = tmp_path / "validated"
    _validate(ct, out)
    seg_path, sr_path = out / "cases/case/lesions.seg.dcm", out / "cases/case/lesions.sr.dcm"
    assert seg_path.is_file() and sr_path.is_file()
    assert {p.suffix for p in out.rglob("*")} >= {".csv", ".json", ".html", ".dcm", ".png"}
    assert leaks(out, planted) == {}
    # no absolute input path either: result.json etc. hold paths relative to the output
    assert leaks(out, {"ct folder": str(ct)}) == {}
    result = (out / "cases/case/result.json").read_text()
    assert '"../patient_ct"' in result
    # references between the de-identified outputs stay valid
    seg, sr = pydicom.dcmread(seg_path), pydicom.dcmread(sr_path)
    new_series = replace_uid(planted["SeriesInstanceUID"])
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == new_series
    assert seg.StudyInstanceUID == sr.StudyInstanceUID == replace_uid(planted["StudyInstanceUID"])
    evidence = {
        s.SeriesInstanceUID
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for s in study.ReferencedSeriesSequence
    }
    assert evidence == {new_series, seg.SeriesInstanceUID}
    assert seg.PatientIdentityRemoved == sr.PatientIdentityRemoved == "YES"

    kept = tmp_path / "kept"
    _validate(ct, kept, "--keep-identifiers")
    found = leaks(kept, planted)
    for keyword in (*PATIENT_AND_STUDY, "StudyInstanceUID", "SeriesInstanceUID"):
        assert any(f.endswith(".seg.dcm") for f in found.get(keyword, [])), keyword
        assert any(f.endswith(".sr.dcm") for f in found.get(keyword, [])), keyword

    # a stored case whose SEG carries identifiers (an older synthct wrote it) is not reused
    seg_path.write_bytes((kept / "cases/case/lesions.seg.dcm").read_bytes())
    _validate(ct, out)
    assert leaks(out, planted) == {}


# -- synthesize ----------------------------------------------------------------------------------
def _planted_mr_series(folder: Path) -> dict[str, str]:
    rng = np.random.default_rng(3)
    shape = (24, 24, 8)
    body = np.zeros(shape, bool)
    body[4:20, 4:20, :] = True
    echo1 = np.where(body, 800.0, 5.0) + rng.normal(0, 5, shape)
    mr = MultiEchoMR(
        np.abs(np.stack([echo1, 0.8 * echo1])),
        np.diag([2.0, 2.0, 3.0, 1.0]),
        protocol=MRProtocol((2.3, 4.6), 7.0, 10.0, 3.0),
    )
    plain = folder.parent / "plain_mr"
    write_dicom_series(mr, plain)
    return plant(plain, folder)


def test_synthesize_dicom_carries_no_identifier_unless_kept(tmp_path: Path) -> None:
    mr = tmp_path / "patient_mr"
    planted = _planted_mr_series(mr)
    out = tmp_path / "out"
    out.mkdir()
    args = ["synthesize", str(mr), "-m", "baseline"]
    result = runner.invoke(app, [*args, "-o", str(out / "sct")])
    assert result.exit_code == 0, result.output
    assert read_volume(out / "sct").kind == "sct"
    assert leaks(out, planted) == {}
    first = pydicom.dcmread(next((out / "sct").iterdir()))
    # the sCT joins the (de-identified) study of its MRI, in the MRI's frame of reference
    assert first.StudyInstanceUID == replace_uid(planted["StudyInstanceUID"])
    assert first.PatientIdentityRemoved == "YES"

    result = runner.invoke(app, [*args, "-o", str(out / "sct_kept"), "--keep-identifiers"])
    assert result.exit_code == 0, result.output
    found = leaks(out / "sct_kept", planted)
    for keyword in (*PATIENT_AND_STUDY, "StudyInstanceUID"):
        assert keyword in found, keyword
    assert "StationName" not in found and "DeviceSerialNumber" not in found  # not the MR's device


def test_write_volume_keeps_the_default_patient_without_source(tmp_path: Path) -> None:
    mr = MultiEchoMR(np.ones((1, 4, 4, 2)), np.eye(4), protocol=MRProtocol((2.0,)))
    folder = write_volume(mr, tmp_path / "mr")
    assert pydicom.dcmread(next(folder.iterdir())).PatientID == "SYNTHCT"
