"""De-identification of what synthct writes: DICOM PS3.15 Annex E Basic Profile, and paths.

Everything synthct writes from a patient's data is de-identified unless the user asks to keep
identifiers (``--keep-identifiers``):

- DICOM headers that an output copies from an input (the CT series a SEG/SR references, the
  MRI series a synthetic CT joins) first go through :func:`deidentify_dataset`, the Basic
  Application Level Confidentiality Profile of DICOM PS3.15 Annex E [1]_ (Table E.1-1) as far
  as synthct's outputs can carry it: the attributes in :data:`EMPTIED` are kept but emptied
  (action Z: they are type 2 in the modules a SEG or SR copies), those in :data:`REMOVED` and
  every private element are removed (action X), every date and time is emptied, and every
  instance UID is replaced (action U) by :func:`replace_uid`. The replacement is a
  deterministic function of the original UID, so the SEG and the SR of one case (and a rerun)
  reference the same de-identified series, study and frame of reference: references between
  the outputs stay valid. Registered UIDs (SOP classes, transfer syntaxes, coding schemes)
  are kept. The result is marked ``PatientIdentityRemoved = YES`` with the profile's code
  (113100, DCM, "Basic Application Confidentiality Profile") in
  ``DeidentificationMethodCodeSequence``.
- Paths that tables and JSON record are written relative to the output folder
  (:func:`relative_path`), so the location of a patient's files (often named after the patient)
  does not leave with the results.

References
----------
.. [1] DICOM PS3.15 2024e, Annex E "Attribute Confidentiality Profiles", Table E.1-1.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.uid import UID

__all__ = [
    "DEIDENTIFICATION_METHOD",
    "EMPTIED",
    "REMOVED",
    "deidentify_dataset",
    "mark_deidentified",
    "relative_path",
    "replace_uid",
    "source_headers",
]

DEIDENTIFICATION_METHOD = "synthct: DICOM PS3.15 E.1 Basic Profile"
#: Kept but emptied (action Z): type 2 attributes of the patient and study modules.
EMPTIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "ReferringPhysicianName",
    "ContentCreatorName",
)
#: Removed (action X, or X/Z/D where removal is allowed).
REMOVED = (
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "StationName",
    "DeviceSerialNumber",
    "DeviceUID",
    "OperatorsName",
    "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy",
    "PhysiciansOfRecord",
    "RequestingPhysician",
    "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers",
    "IssuerOfPatientID",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "MilitaryRank",
    "BranchOfService",
    "EthnicGroup",
    "Occupation",
    "MedicalRecordLocator",
    "AdditionalPatientHistory",
    "PatientComments",
    "CountryOfResidence",
    "RegionOfResidence",
    "AdmittingDiagnosesDescription",
    "StudyDescription",
    "SeriesDescription",
    "ProtocolName",
    "ImageComments",
    "RequestAttributesSequence",
    "PerformedProcedureStepID",
    "PerformedProcedureStepDescription",
    "RequestedProcedureDescription",
    "ScheduledProcedureStepDescription",
    "DerivationDescription",
    "ReferencedPatientSequence",
    "ReferencedStudySequence",
    "ReferencedPerformedProcedureStepSequence",
    "StudyComments",
    "InstanceCreatorUID",
)
_DATE_TIME_VRS = ("DA", "DT", "TM")
#: Salt of the UID replacement: a fixed, documented value (the map must be reproducible so
#: reruns and sibling outputs agree); an original UID is needed to compute its replacement.
_UID_SALT = "synthct-deidentified-uid-v1"


def replace_uid(uid: str) -> str:
    """The de-identified replacement of an instance UID (same input, same output).

    A ``2.25.`` UID (PS3.5 B.2: a 128-bit integer) from the SHA-256 of the salted original, so
    it cannot be turned back into the original.
    """
    digest = hashlib.sha256(f"{_UID_SALT}:{uid}".encode()).hexdigest()
    return f"2.25.{int(digest[:32], 16)}"


def _is_instance_uid(value: str) -> bool:
    """True for a UID that identifies an instance (not a registered class, syntax or scheme)."""
    uid = UID(value)
    return bool(value) and uid.name == value and not value.startswith("1.2.840.10008.")


def _walk(ds: Dataset, visit: Callable[[Dataset, DataElement], None]) -> None:
    for element in list(ds):
        if element.VR == "SQ":
            for item in element.value:
                _walk(item, visit)
        visit(ds, element)


def _replace_uids(ds: Dataset, element: DataElement) -> None:
    if element.VR != "UI" or element.value in (None, ""):
        return
    if element.VM > 1:
        element.value = [replace_uid(v) if _is_instance_uid(v) else v for v in element.value]
    elif _is_instance_uid(str(element.value)):
        element.value = replace_uid(str(element.value))


def _scrub(ds: Dataset, element: DataElement) -> None:
    keyword = element.keyword
    if element.tag.is_private or keyword in REMOVED:
        del ds[element.tag]
    elif keyword in EMPTIED:
        element.value = ""


def _empty_dates(ds: Dataset, element: DataElement) -> None:
    if element.VR in _DATE_TIME_VRS and element.tag in ds:
        element.value = ""


def mark_deidentified(ds: Dataset) -> Dataset:
    """Record in ``ds`` that the Basic Profile was applied (PS3.15 E.1.1); returns ``ds``."""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = DEIDENTIFICATION_METHOD
    code = Dataset()
    code.CodeValue = "113100"
    code.CodingSchemeDesignator = "DCM"
    code.CodeMeaning = "Basic Application Confidentiality Profile"
    ds.DeidentificationMethodCodeSequence = [code]
    return ds


def deidentify_dataset(ds: Dataset) -> Dataset:
    """A de-identified copy of ``ds`` (Basic Profile; see the module notes).

    Identifying attributes are emptied or removed, private elements removed, dates and times
    emptied and instance UIDs replaced consistently (:func:`replace_uid`), in nested sequences
    and the file meta information too. The input is not changed.
    """
    out = copy.deepcopy(ds)
    _walk(out, _scrub)
    _walk(out, _empty_dates)
    _walk(out, _replace_uids)
    meta = getattr(out, "file_meta", None)
    if meta is not None:
        _walk(meta, _replace_uids)
    return mark_deidentified(out)


def source_headers(
    folder: str | os.PathLike[str], *, keep_identifiers: bool = False
) -> Dataset | None:
    """The header of the first DICOM file in ``folder`` with a study (``None`` if there is none).

    De-identified (:func:`deidentify_dataset`) unless ``keep_identifiers``; for a series made
    from that one (``write_dicom_series(..., source_headers=...)``).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    root = Path(folder)
    if not root.is_dir():
        return None
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError):
            continue
        if "StudyInstanceUID" in ds:
            return ds if keep_identifiers else deidentify_dataset(ds)
    return None


def relative_path(path: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> str:
    """``path`` relative to the output folder ``out_dir`` (POSIX separators).

    Paths on another drive (Windows) cannot be made relative and are reduced to their file
    name, so no absolute input location is written either way.
    """
    absolute = Path(path).absolute()
    try:
        return Path(os.path.relpath(absolute, Path(out_dir).absolute())).as_posix()
    except ValueError:
        return absolute.name


def relative_paths_in(value: Any, replacements: dict[str, str]) -> Any:
    """``value`` (JSON-ready) with every occurrence of each key of ``replacements`` replaced.

    Used to rewrite absolute input paths inside recorded results and messages; longer keys are
    replaced first so a folder does not shadow the files inside it.
    """
    if isinstance(value, str):
        for old in sorted(replacements, key=len, reverse=True):
            if old in value:
                value = value.replace(old, replacements[old])
        return value
    if isinstance(value, dict):
        return {
            relative_paths_in(k, replacements): relative_paths_in(v, replacements)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [relative_paths_in(v, replacements) for v in value]
    return value
