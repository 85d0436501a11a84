"""Reading a dataset folder as one manifest of :class:`~synthct.case.Case` objects.

Layouts recognised (:func:`read_dataset` picks the first that fits):

``manifest``
    A manifest file (CSV, YAML, JSON), or a folder holding ``manifest.csv``/``.yaml``
    (e.g. a ``synthct phantom`` cohort): read by :func:`synthct.manifest.read_manifest`.
``synthrad``
    The SynthRAD2023 / SynthRAD2025 layout: ``<region>/<case>/{mr,ct,mask}.<ext>`` or, without
    the region level, ``<case>/{mr,ct,mask}.<ext>``; ``<ext>`` is ``nii.gz`` (SynthRAD2023),
    ``mha`` (SynthRAD2025), ``nii`` or ``nrrd``; ``mr`` or ``ct`` may also be a folder holding
    one DICOM series (e.g. ``mr/`` from the scanner beside ``ct.nii.gz``). ``mask`` is
    optional. Several MR channels may be given as ``mr_<name>.<ext>`` files (e.g.
    ``mr_echo-1``, ``mr_water``), in name order.
    The case folder's name is the case id; the region folder's name the region. The patient
    id is the case id, unless ``patients.csv`` at the top (columns ``case_id, patient_id``, as
    ``synthct dataset export`` writes it) says that several cases belong to one patient.
``dicom``
    DICOM study folders, one per patient: ``<patient>/...`` holding one MR and one CT series,
    each in its own folder at any depth, found by Modality. The case id is the folder's name.
    PatientID never leaves the reader: the patient id is a pseudonym, ``pid-`` and the first
    10 hex digits of the SHA-256 of the CT's PatientID (the folder's name when absent), and
    :attr:`Case.extra <synthct.case.Case.extra>` holds the pseudonyms of the MR's and the CT's
    PatientID, so QA can tell an MR of another patient without printing who.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from synthct.case import Case
from synthct.manifest import MANIFEST_NAMES, Manifest, ManifestError, read_manifest

__all__ = ["IMAGE_EXTENSIONS", "PATIENTS_FILE", "DatasetError", "read_dataset"]

#: Optional table of a SynthRAD-layout folder: which patient each case belongs to.
PATIENTS_FILE = "patients.csv"

#: Image file endings recognised in the SynthRAD layout, in order of preference.
IMAGE_EXTENSIONS: tuple[str, ...] = (".nii.gz", ".mha", ".nii", ".nrrd")


class DatasetError(ManifestError):
    """A dataset folder that cannot be read as cases (empty, unknown layout, incomplete case)."""


def _image(folder: Path, stem: str) -> Path | None:
    for ext in IMAGE_EXTENSIONS:
        p = folder / f"{stem}{ext}"
        if p.is_file():
            return p
    series = folder / stem  # a DICOM series folder (e.g. the MR as exported by the scanner)
    if series.is_dir() and any(p.is_file() for p in series.iterdir()):
        return series
    return None


def _stem(path: Path) -> str:
    name = path.name
    for ext in IMAGE_EXTENSIONS:
        if name.endswith(ext):
            return name[: -len(ext)]
    return path.stem


def _mr_channels(folder: Path) -> list[Path]:
    single = _image(folder, "mr")
    if single is not None:
        return [single]
    files = [
        p
        for p in folder.iterdir()
        if p.is_file()
        and _stem(p).startswith("mr_")
        and any(p.name.endswith(e) for e in IMAGE_EXTENSIONS)
    ]
    return sorted(files, key=_natural)


def _natural(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _is_synthrad_case(folder: Path) -> bool:
    return _image(folder, "ct") is not None or bool(_mr_channels(folder))


def _synthrad_case(folder: Path, region: str | None) -> Case:
    mr = _mr_channels(folder)
    ct = _image(folder, "ct")
    if ct is None or not mr:
        missing = "ct" if ct is None else "mr"
        raise DatasetError(
            f"case folder {folder.name!r} has no {missing} image "
            f"({missing}{'|'.join(IMAGE_EXTENSIONS)})",
            path=folder,
            fix=f"add {missing}.nii.gz (or .mha, or a DICOM series folder {missing}/) to the "
            "case folder, or remove the folder",
        )
    images: dict[str, Any] = {"ct": ct, "mr": mr, "body_mask": _image(folder, "mask")}
    meta = {"patient_id": folder.name, "region": region}
    return Case(folder.name, images, meta)


def _synthrad_cases(root: Path) -> list[Case]:
    cases: list[Case] = []
    for child in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if _is_synthrad_case(child):
            cases.append(_synthrad_case(child, None))
            continue
        for grandchild in sorted(p for p in child.iterdir() if p.is_dir()):
            if _is_synthrad_case(grandchild):
                cases.append(_synthrad_case(grandchild, child.name))
    return cases


def _dicom_series_folders(patient: Path) -> dict[str, list[tuple[Path, str]]]:
    """Image series below ``patient`` by modality: ``(folder, SeriesInstanceUID)``."""
    from synthct.io.dicom_headers import list_series

    found: dict[str, list[tuple[Path, str]]] = {}
    for folder in sorted({patient, *(p for p in patient.rglob("*") if p.is_dir())}):
        for series in list_series(folder):
            if series.is_image and series.modality in ("MR", "CT"):
                found.setdefault(series.modality, []).append((folder, series.series_uid))
    return found


def _patient_id(folder: Path) -> str | None:
    import pydicom

    for p in sorted(folder.iterdir()):
        if p.is_file():
            try:
                ds = pydicom.dcmread(p, stop_before_pixels=True, specific_tags=["PatientID"])
            except Exception:  # not every file in a study folder is DICOM
                continue
            value = str(getattr(ds, "PatientID", "") or "").strip()
            if value:
                return value
    return None


def _pseudonym(value: str | None) -> str:
    import hashlib

    return f"pid-{hashlib.sha256(value.encode()).hexdigest()[:10]}" if value else ""


def _dicom_case(patient: Path) -> Case:
    series = _dicom_series_folders(patient)
    for modality in ("MR", "CT"):
        entries = series.get(modality, [])
        if len(entries) != 1:
            listed = ", ".join(f"{f.relative_to(patient)} ({uid})" for f, uid in entries)
            raise DatasetError(
                f"patient folder {patient.name!r} holds {len(entries)} {modality} series"
                + (f": {listed}" if listed else ""),
                path=patient,
                fix=f"keep exactly one {modality} series per patient folder (move the others "
                "out), or list the cases in a manifest",
            )
    (mr_folder, _), (ct_folder, _) = series["MR"][0], series["CT"][0]
    if mr_folder == ct_folder:
        raise DatasetError(
            "the MR and the CT series share one folder",
            path=mr_folder,
            fix="put each DICOM series in its own folder",
        )
    ids = {m: _pseudonym(_patient_id(f)) for m, f in (("MR", mr_folder), ("CT", ct_folder))}
    meta = {"patient_id": ids["CT"] or patient.name}
    extra = {"dicom_patient_mr": ids["MR"], "dicom_patient_ct": ids["CT"]}
    return Case(patient.name, {"ct": ct_folder, "mr": mr_folder}, meta, extra)


def _looks_like_dicom_study(root: Path) -> bool:
    for p in root.rglob("*"):
        if p.is_file():
            if p.suffix.lower() == ".dcm":
                return True
            with p.open("rb") as handle:
                head = handle.read(132)
            if head[128:132] == b"DICM":
                return True
    return False


def read_dataset(path: str | os.PathLike[str]) -> tuple[Manifest, str]:
    """Read a dataset folder (or manifest file) into cases.

    Parameters
    ----------
    path : path
        A manifest file, a folder with a manifest, a SynthRAD-layout folder, or a folder of
        DICOM study folders (see the module docstring).

    Returns
    -------
    manifest : Manifest
        The cases (paths absolute), in folder order.
    layout : str
        ``"manifest"``, ``"synthrad"`` or ``"dicom"``.

    Raises
    ------
    DatasetError
        The path does not exist, the folder is empty or holds no case of a known layout, or a
        case folder is incomplete.
    """
    root = Path(path)
    if not root.exists():
        raise DatasetError("no such dataset folder or manifest", path=root, fix="check the path")
    if root.is_file() or any((root / n).is_file() for n in MANIFEST_NAMES):
        return read_manifest(root), "manifest"
    if not any(root.iterdir()):
        raise DatasetError(
            "the dataset folder is empty",
            path=root,
            fix="point to a folder of cases (<region>/<case>/{mr,ct,mask}.nii.gz), of DICOM "
            "studies, or to a manifest",
        )
    cases = _synthrad_cases(root)
    if cases:
        return _checked(_with_patients(cases, root / PATIENTS_FILE), root), "synthrad"
    patients = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if patients and _looks_like_dicom_study(root):
        return _checked([_dicom_case(p) for p in patients], root), "dicom"
    raise DatasetError(
        "no case found: neither a manifest, nor case folders with ct and mr images, nor DICOM "
        "study folders",
        path=root,
        fix="use the layout <region>/<case>/{mr,ct,mask}.nii.gz (or .mha), one folder per "
        "patient of DICOM series, or a manifest (see `synthct dataset check --help`)",
    )


def _with_patients(cases: list[Case], table: Path) -> list[Case]:
    if not table.is_file():
        return cases
    from synthct.manifest import read_rows

    rows, columns, _ = read_rows(table)
    if not {"case_id", "patient_id"} <= set(columns):
        raise DatasetError(
            f"{PATIENTS_FILE} needs the columns case_id and patient_id, found {columns}",
            path=table,
            fix="write a header 'case_id,patient_id', or remove the file",
        )
    patients = {str(r["case_id"]): str(r["patient_id"]) for _, r in rows if r.get("patient_id")}
    return [
        c.with_meta(patient_id=patients[c.case_id]) if c.case_id in patients else c for c in cases
    ]


def _checked(cases: list[Case], root: Path) -> Manifest:
    seen: dict[str, Path] = {}
    for case in cases:
        where = case.path("ct") or root
        if case.case_id in seen:
            raise DatasetError(
                f"case id {case.case_id!r} appears twice (in {seen[case.case_id].parent} and "
                f"{where.parent})",
                path=root,
                fix="give every case folder a unique name",
            )
        seen[case.case_id] = where
    return Manifest(cases, source=None)
