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
    DICOM study folders, one per patient: ``<patient>/...`` holding one MR and one CT volume
    series at any depth (each in its own folder, or side by side in one), found by Modality.
    Localizers and scouts, secondary captures (dose pages) and series of fewer than 4 slices
    are skipped (:func:`synthct.io.dicom_headers.not_a_volume`), and so is a derived series
    (a reformat) beside an original one; the skipped series are listed in the case's
    ``dicom_skipped_series`` column, and the chosen ones' UIDs in ``mr_series_uid`` and
    ``ct_series_uid``. The case id is the folder's name. A study holding several MR (or CT)
    volume series (T1w, T2w, STIR, ...) is read with a :class:`SeriesChoice`: text matched
    against the SeriesDescription (``--mr-series``/``--ct-series``). A patient folder whose
    series cannot be chosen becomes a case with :data:`READ_ERROR_COLUMN` set, which QA reports
    as unreadable and splits leave out, so one such patient does not stop the others.
    PatientID never leaves the reader: the patient id is a pseudonym, ``pid-`` and the first
    10 hex digits of the SHA-256 of the CT's PatientID (the folder's name when absent), and
    :attr:`Case.extra <synthct.case.Case.extra>` holds the pseudonyms of the MR's and the CT's
    PatientID, so QA can tell an MR of another patient without printing who.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthct.case import SERIES_UID_COLUMNS, Case
from synthct.manifest import MANIFEST_NAMES, Manifest, ManifestError, read_manifest

__all__ = [
    "DICOM_SKIPPED_COLUMN",
    "IMAGE_EXTENSIONS",
    "PATIENTS_FILE",
    "READ_ERROR_COLUMN",
    "DatasetError",
    "SeriesChoice",
    "read_dataset",
    "read_error",
]

#: Column naming the series of a DICOM study that were not read (localizers, scouts, reformats).
DICOM_SKIPPED_COLUMN = "dicom_skipped_series"

#: Column holding why a patient folder of a DICOM study could not be read as a case.
READ_ERROR_COLUMN = "read_error"

#: Optional table of a SynthRAD-layout folder: which patient each case belongs to.
PATIENTS_FILE = "patients.csv"

#: Image file endings recognised in the SynthRAD layout, in order of preference.
IMAGE_EXTENSIONS: tuple[str, ...] = (".nii.gz", ".mha", ".nii", ".nrrd")


class DatasetError(ManifestError):
    """A dataset folder that cannot be read as cases (empty, unknown layout, incomplete case)."""


class _SeriesChoiceError(DatasetError):
    """A patient folder holds volume series of a modality, but not exactly one to read."""


@dataclass(frozen=True)
class SeriesChoice:
    """Which MR and CT series of a DICOM study to read where a patient holds several.

    Each is matched case-insensitively against the SeriesDescription: a part of it
    (``"t2"``), or a whole-description pattern when it holds ``*``, ``?`` or ``[``
    (``"t2_tse_sag*"``). None: the one volume series there is.
    """

    mr: str | None = None
    ct: str | None = None

    def wanted(self, modality: str) -> str | None:
        """The text naming the series of ``modality`` (``"MR"`` or ``"CT"``), if any."""
        return self.mr if modality == "MR" else self.ct

    def matches(self, modality: str, description: str) -> bool:
        """Whether a series of ``modality`` with ``description`` is the one chosen."""
        import fnmatch

        wanted = self.wanted(modality)
        if wanted is None:
            return True
        text, wanted = description.casefold(), wanted.casefold()
        if any(c in wanted for c in "*?["):
            return fnmatch.fnmatchcase(text, wanted)
        return wanted in text

    def option(self, modality: str) -> str:
        """The command-line option that names the series of ``modality``."""
        return "--mr-series" if modality == "MR" else "--ct-series"


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


@dataclass(frozen=True)
class _Series:
    """One image series of a patient folder and why it is no volume (None: it is one)."""

    folder: Path
    uid: str
    description: str
    n_files: int
    original: bool
    skipped: str | None
    files: tuple[Path, ...]

    def describe(self, patient: Path) -> str:
        where = self.folder.relative_to(patient).as_posix() or "."
        text = f"{where} {self.description or 'no description'!r} ({self.n_files} files"
        return text + (f"; {self.skipped})" if self.skipped else ")")


def _dicom_series(patient: Path) -> dict[str, list[_Series]]:
    """Image series below ``patient`` by modality (MR, CT)."""
    from synthct.io.dicom_headers import not_a_volume, scan_folder

    found: dict[str, list[_Series]] = {}
    for folder in sorted({patient, *(p for p in patient.rglob("*") if p.is_dir())}):
        for uid, headers in scan_folder(folder).items():
            modality = headers[0].modality
            if modality not in ("MR", "CT") or not all(h.has_pixels for h in headers):
                continue
            series = _Series(
                folder,
                uid,
                headers[0].description,
                len(headers),
                all(h.image_type[:1] == ("ORIGINAL",) for h in headers),
                not_a_volume(headers),
                tuple(h.path for h in headers),
            )
            found.setdefault(modality, []).append(series)
    return found


def _pick_series(
    patient: Path, modality: str, entries: list[_Series], choice: SeriesChoice
) -> tuple[_Series, list[str]]:
    """The one volume series of ``modality`` (the one ``choice`` names), and what was skipped
    (localizers, scouts, dose pages; series not chosen; reformats beside an original)."""
    volumes = [e for e in entries if e.skipped is None]
    skipped = [f"{modality} {e.describe(patient)}" for e in entries if e.skipped is not None]
    wanted = choice.wanted(modality)
    if wanted is not None:
        chosen = [e for e in volumes if choice.matches(modality, e.description)]
        skipped += [f"{modality} {e.describe(patient)}: not {wanted!r}"
                    for e in volumes if e not in chosen]  # fmt: skip
        volumes = chosen
    if len(volumes) > 1 and any(e.original for e in volumes):
        for e in volumes:
            if not e.original:
                skipped.append(f"{modality} {e.describe(patient)}: derived, beside an original")
        volumes = [e for e in volumes if e.original]
    if len(volumes) != 1:
        listed = "; ".join(e.describe(patient) for e in entries)
        which = f" matching {wanted!r}" if wanted is not None else ""
        option = choice.option(modality)
        kind = _SeriesChoiceError if volumes or wanted is not None else DatasetError
        raise kind(
            f"patient folder {patient.name!r} holds {len(volumes)} {modality} volume "
            f"series{which}"
            + (f" (of {len(entries)} {modality} series: {listed})" if entries else ""),
            path=patient,
            fix=(
                f"name the {modality} series to read by its description ({option} TEXT, e.g. "
                f"{option} t2), keep exactly one {modality} volume series per patient folder, "
                "or list the cases in a manifest"
            )
            if volumes or wanted is not None
            else f"add the patient's {modality} series, or leave the folder out",
        )
    return volumes[0], skipped


def _patient_id(files: tuple[Path, ...]) -> str | None:
    """The PatientID of a series (its first file that has one)."""
    import pydicom

    for p in files:
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True, specific_tags=["PatientID"])
        except Exception:  # a file the header scan read but pydicom will not: no ID from it
            continue
        value = str(getattr(ds, "PatientID", "") or "").strip()
        if value:
            return value
    return None


def _pseudonym(value: str | None) -> str:
    import hashlib

    return f"pid-{hashlib.sha256(value.encode()).hexdigest()[:10]}" if value else ""


def _dicom_case(patient: Path, choice: SeriesChoice) -> Case:
    from synthct.io.dicom_headers import NO_SERIES_UID

    series = _dicom_series(patient)
    (mr, mr_skipped), (ct, ct_skipped) = (
        _pick_series(patient, m, series.get(m, []), choice) for m in ("MR", "CT")
    )
    # each series' own files: in a flat export the folder holds both
    ids = {m: _pseudonym(_patient_id(e.files)) for m, e in (("MR", mr), ("CT", ct))}
    meta = {"patient_id": ids["CT"] or patient.name}
    extra = {
        "dicom_patient_mr": ids["MR"],
        "dicom_patient_ct": ids["CT"],
        # the series by UID: a folder may hold others (a localizer beside the scan, a flat export)
        SERIES_UID_COLUMNS["mr"]: mr.uid or NO_SERIES_UID,
        SERIES_UID_COLUMNS["ct"]: ct.uid or NO_SERIES_UID,
        DICOM_SKIPPED_COLUMN: " | ".join(mr_skipped + ct_skipped),
    }
    return Case(patient.name, {"ct": ct.folder, "mr": mr.folder}, meta, extra)


def _dicom_cases(patients: list[Path], choice: SeriesChoice, root: Path) -> list[Case]:
    """One case per patient folder; a folder whose series cannot be chosen is a case that
    says why (:data:`READ_ERROR_COLUMN`), so the others are still read. None readable is an
    error: more likely the wrong folder level than a cohort of bad studies."""
    cases, errors = [], []
    for patient in patients:
        try:
            cases.append(_dicom_case(patient, choice))
        except DatasetError as exc:
            errors.append(exc)
            why = exc.problem + (f"; fix: {exc.fix}" if exc.fix else "")
            images: dict[str, Path | list[Path]] = {"ct": patient, "mr": [patient]}
            cases.append(
                Case(patient.name, images, {"patient_id": patient.name}, {READ_ERROR_COLUMN: why})
            )
    if len(errors) == len(patients):
        raise type(errors[0])(
            f"no patient folder of this DICOM study could be read; {patients[0].name}: "
            f"{errors[0].problem}",
            path=root,
            fix=f"{errors[0].fix}; the folder given must hold one folder per patient (pass the "
            "folder above a single patient's study)",
        )
    return cases


def read_error(case: Case) -> str | None:
    """Why the reader could not read ``case`` (None: it could)."""
    return str(case.extra.get(READ_ERROR_COLUMN) or "") or None


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


def read_dataset(
    path: str | os.PathLike[str], *, series: SeriesChoice | None = None
) -> tuple[Manifest, str]:
    """Read a dataset folder (or manifest file) into cases.

    Parameters
    ----------
    path : path
        A manifest file, a folder with a manifest, a SynthRAD-layout folder, or a folder of
        DICOM study folders (see the module docstring).
    series : SeriesChoice, optional
        Which series of a DICOM study to read where a patient holds several.

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
    root = Path(path).resolve()  # cases keep absolute paths, whatever the working folder
    choice = series or SeriesChoice()
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
    patients = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    try:
        cases = _synthrad_cases(root)
    except DatasetError as incomplete:
        # A DICOM study whose MR series folder happens to be called "mr" looks like a SynthRAD
        # case without its ct: read it as the study it is, else report the incomplete case.
        if not (patients and _looks_like_dicom_study(root)):
            raise
        try:
            return _checked(_dicom_cases(patients, choice, root), root), "dicom"
        except _SeriesChoiceError:
            raise  # a study it is, with series to choose from: say so
        except DatasetError:
            raise incomplete from None
    if cases:
        return _checked(_with_patients(cases, root / PATIENTS_FILE), root), "synthrad"
    if patients and _looks_like_dicom_study(root):
        return _checked(_dicom_cases(patients, choice, root), root), "dicom"
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
