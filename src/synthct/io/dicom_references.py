"""What a lesion SEG and SR reference: the CT series headers, tracking UIDs, private codes.

Shared by :mod:`synthct.validation.dicom_seg` and :mod:`synthct.validation.dicom_sr` (see
:mod:`synthct.validation.dicom_seg_sr` for the outputs and the codes).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import generate_uid

from synthct.errors import ReadError, WriteError
from synthct.io.atomic import atomic_file

__all__ = [
    "PRIVATE_SCHEME",
    "CTSource",
    "lesion_tracking_uid",
    "private_code",
    "read_ct_datasets",
    "save_dataset",
]

#: Designator of synthct's private codes (DICOM reserves "99" prefixes for private schemes).
PRIVATE_SCHEME = "99SYNTHCT"
MANUFACTURER = "synthct"
_REFERENCED_UIDS = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "FrameOfReferenceUID",
)
_FILE_META_UIDS = {
    "SOPClassUID": "MediaStorageSOPClassUID",
    "SOPInstanceUID": "MediaStorageSOPInstanceUID",
}

CTSource = str | os.PathLike[str] | Sequence[Dataset]


def private_code(value: str, meaning: str) -> Any:
    """A code of synthct's private coding scheme :data:`PRIVATE_SCHEME`."""
    import highdicom as hd

    return hd.sr.CodedConcept(value=value, scheme_designator=PRIVATE_SCHEME, meaning=meaning)


def lesion_tracking_uid(series_instance_uid: str, lesion_id: int) -> str:
    """The lesion's tracking UID: derived from the CT series UID and the lesion id."""
    return str(generate_uid(entropy_srcs=[str(series_instance_uid), f"lesion-{int(lesion_id)}"]))


def read_ct_datasets(
    source: CTSource, *, series_uid: str | None = None, deidentify: bool = False
) -> list[Dataset]:
    """The headers of one CT series (pixel data not loaded), sorted along the slice normal.

    Parameters
    ----------
    source : path or sequence of pydicom.Dataset
        A folder of DICOM files, or the datasets themselves.
    series_uid : str, optional
        Which series, when the folder holds several.
    deidentify : bool
        Return de-identified copies (:func:`synthct.io.deidentify.deidentify_dataset`: Basic
        Profile, UIDs replaced consistently), checked and sorted like the originals.

    Raises
    ------
    ReadError
        No DICOM image, several series and no ``series_uid``, or that series is absent.
    """
    if isinstance(source, str | os.PathLike):
        folder = Path(source)
        datasets: list[Dataset] = []
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            except (InvalidDicomError, OSError):
                continue
            if "ImagePositionPatient" in ds and "SeriesInstanceUID" in ds:
                datasets.append(ds)
        where = str(folder)
    else:
        datasets, where = list(source), "datasets"
    series = sorted({str(ds.SeriesInstanceUID) for ds in datasets})
    if series_uid is not None:
        datasets = [ds for ds in datasets if str(ds.SeriesInstanceUID) == series_uid]
    elif len(series) > 1:
        raise ReadError(
            f"{len(series)} series found: {series}",
            path=where,
            fix="pass series_uid= to choose one",
        )
    if not datasets:
        raise ReadError(
            "no DICOM image slice of the series found",
            path=where,
            fix="point to the folder of the CT series the lesions were measured on",
        )
    datasets = [_with_sop_uids(ds) for ds in datasets]
    missing = [
        k for k in _REFERENCED_UIDS if any(not str(ds.get(k, "")).strip() for ds in datasets)
    ]
    if missing:
        raise ReadError(
            f"the CT headers have empty {', '.join(missing)}, which a SEG or SR must reference "
            "(an anonymiser may have blanked them)",
            path=where,
            fix="give the series valid UIDs (e.g. pydicom.uid.generate_uid(), one per study and "
            "series) in a copy, and measure on that copy",
        )
    if deidentify:
        from synthct.io.deidentify import deidentify_dataset

        datasets = [deidentify_dataset(ds) for ds in datasets]
    normal = np.cross(*np.reshape(np.asarray(datasets[0].ImageOrientationPatient, float), (2, 3)))
    return sorted(
        datasets, key=lambda ds: float(np.asarray(ds.ImagePositionPatient, float) @ normal)
    )


def _with_sop_uids(ds: Dataset) -> Dataset:
    """The dataset, with empty SOP Class/Instance UIDs taken from its file meta (a copy)."""
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        return ds
    fixed = ds
    for keyword, meta_keyword in _FILE_META_UIDS.items():
        if not str(ds.get(keyword, "")).strip() and str(meta.get(meta_keyword, "")).strip():
            if fixed is ds:
                fixed = copy.deepcopy(ds)
            setattr(fixed, keyword, meta.get(meta_keyword))
    return fixed


def save_dataset(ds: Dataset, path: str | os.PathLike[str], overwrite: bool) -> Path:
    """Write a dataset as a DICOM file, atomically."""
    final = Path(path)
    try:
        with atomic_file(final, overwrite=overwrite) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
    except OSError as exc:
        if isinstance(exc, WriteError):
            raise
        raise WriteError(f"the DICOM file could not be written ({exc})", path=final) from exc
    return final
