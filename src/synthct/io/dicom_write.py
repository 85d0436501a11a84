"""Writing a volume as a DICOM series folder (one file per slice, Explicit VR Little Endian).

What is written, and how values are stored:

- :class:`~synthct.volume.CTVolume` and :class:`~synthct.volume.SyntheticCT`: CT Image Storage,
  signed 16-bit, RescaleSlope 1 and RescaleIntercept -1024 (0, or a shift, when the HU range
  needs it), so integer HU round-trip exactly. Fractional HU are rounded to the nearest
  integer (at most 0.5 HU error, below CT noise). A synthetic CT gets ImageType
  ``DERIVED\\SECONDARY\\AXIAL\\SYNTHETIC`` and "synthetic CT" in its SeriesDescription, and
  reads back as ``sct``.
- :class:`~synthct.volume.MultiEchoMR`: MR Image Storage, one series holding every echo
  (EchoTime, EchoNumbers, RepetitionTime, FlipAngle, MagneticFieldStrength per file), unsigned
  16-bit. Non-negative integers up to 65535 are stored exactly (slope 1, intercept 0); other
  data are stored as ``round((value - intercept) / slope)`` with one RescaleSlope/Intercept for
  the whole series (intercept 0 for non-negative data, so 0 stays 0 and the ratio between
  echoes is kept), an error of at most slope / 2. ScanningSequence is ``GR`` and
  SequenceVariant ``SP``: synthct's MRI is a multi-echo spoiled gradient echo.
- Label maps belong in DICOM SEG (a later feature) or NIfTI and are refused here.

Geometry: ImageOrientationPatient from the affine's first two columns, ImagePositionPatient
slice by slice, so any orthogonal affine (oblique, left-handed) is written at its true place;
see :mod:`synthct.io.dicom_geometry` for how it reads back. The folder appears only once every
file is written (:func:`synthct.io.atomic.atomic_directory`).
"""

from __future__ import annotations

import copy
import datetime as dt
import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    RE_VALID_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

from synthct.errors import WriteError
from synthct.io.atomic import atomic_directory
from synthct.io.dicom_geometry import plane_from_affine
from synthct.io.dicom_read import SYNTHETIC_IMAGE_TYPE
from synthct.version import __version__
from synthct.volume import CTVolume, LabelMap, MultiEchoMR, SyntheticCT, Volume

#: Patient and study attributes a new series takes from ``source_headers``.
COPIED_FROM_SOURCE = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "DeidentificationMethodCodeSequence",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyDescription",
    "InstitutionName",
    "InstitutionAddress",
)
_UINT16_MAX = 65535
_LO_MAX_CHARS = 64
_UID_MAX_CHARS = 64


def write_dicom_series(
    volume: Volume,
    folder: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    patient_id: str = "SYNTHCT",
    patient_name: str | None = None,
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    series_description: str | None = None,
    series_number: int = 1,
    source_headers: Dataset | None = None,
) -> Path:
    """Write ``volume`` as a DICOM series into the new folder ``folder``.

    Parameters
    ----------
    volume : Volume
        A CT, synthetic CT or multi-echo MR volume (see the module notes for value storage).
    folder : path
        Folder to create; its parent must exist.
    overwrite : bool
        Replace ``folder`` if it exists (only once the new series is complete).
    patient_id, patient_name : str
        PatientID and PatientName (the name defaults to the ID).
    study_instance_uid, series_instance_uid, frame_of_reference_uid : str, optional
        UIDs to use, e.g. the study and frame of reference of the MRI a synthetic CT was made
        from; new UIDs are generated when omitted.
    series_description : str, optional
        SeriesDescription; a default names the kind. A synthetic CT's description always
        says "synthetic CT".
    series_number : int
        SeriesNumber.
    source_headers : pydicom.Dataset, optional
        A header of the series the volume was made from (e.g. the MRI of a synthetic CT): its
        patient and study attributes (:data:`COPIED_FROM_SOURCE`), study and frame of reference
        UIDs are copied, so the new series joins that patient's study. Pass a de-identified
        header (:func:`synthct.io.deidentify.deidentify_dataset`) to write a de-identified
        series; ``patient_id``/``patient_name`` are then ignored.

    Returns
    -------
    Path
        The folder written.

    Raises
    ------
    WriteError
        The kind cannot be written as DICOM, the folder exists and ``overwrite`` is false,
        a UID is invalid, values do not fit 16 bits, or the disk refuses the files.
    """
    final = Path(folder)
    if isinstance(volume, LabelMap):
        raise WriteError(
            "label maps are not written as image series: DICOM stores segmentations as DICOM "
            "SEG, which synthct will write in a later version",
            path=final,
            fix="write the labels as NIfTI/NRRD/MHA (e.g. labels.nii.gz) for now",
        )
    if not isinstance(volume, CTVolume | MultiEchoMR):
        raise WriteError(
            f"a {volume.kind} volume has no DICOM image type synthct writes (CT, synthetic CT "
            "and MR are supported)",
            path=final,
            fix="write it as NIfTI/NRRD/MHA, or build a CTVolume/MultiEchoMR if it is one",
        )
    source = source_headers if source_headers is not None else Dataset()
    uids = {
        "StudyInstanceUID": study_instance_uid or source.get("StudyInstanceUID") or generate_uid(),
        "SeriesInstanceUID": series_instance_uid or generate_uid(),
        "FrameOfReferenceUID": frame_of_reference_uid
        or source.get("FrameOfReferenceUID")
        or generate_uid(),
    }
    for keyword, uid in uids.items():
        _check_uid(uid, keyword, final)
    # A family^given name (DICOM PN) even when only an id is known: "SYNTHCT^".
    name = patient_name or f"{patient_id}^"
    base = _base_dataset(volume, patient_id, name, series_number)
    for keyword in COPIED_FROM_SOURCE:
        if keyword in source:
            setattr(base, keyword, source.get(keyword))
    for keyword, uid in uids.items():
        setattr(base, keyword, uid)
    base.SeriesDescription = _description(volume, series_description)
    if isinstance(volume, MultiEchoMR):
        stored, slope, intercept = _mr_stored(volume, final)
    else:
        stored, slope, intercept = _ct_stored(volume, final)
    _set_pixel_format(base, stored.dtype, slope, intercept)
    try:
        with atomic_directory(final, overwrite=overwrite) as tmp:
            _write_slices(volume, base, stored, tmp)
    except OSError as exc:
        if isinstance(exc, WriteError):
            raise
        raise WriteError(f"the DICOM files could not be written ({exc})", path=final) from exc
    return final


def _write_slices(volume: Volume, base: Dataset, stored: NDArray[Any], folder: Path) -> None:
    """One file per (echo, slice); InstanceNumber runs slice by slice within each echo."""
    n_k = volume.spatial_shape[2]
    plane = plane_from_affine(volume.affine, n_k)
    base.ImageOrientationPatient = [format_number_as_ds(v) for v in plane.orientation]
    base.PixelSpacing = [format_number_as_ds(v) for v in plane.pixel_spacing_mm]
    base.SliceThickness = format_number_as_ds(plane.slice_spacing_mm)
    base.SpacingBetweenSlices = format_number_as_ds(plane.slice_spacing_mm)
    tes = volume.echo_times_ms if isinstance(volume, MultiEchoMR) else None
    for e, echo in enumerate(stored):
        for k in range(n_k):
            ds = copy.deepcopy(base)
            number = e * n_k + k + 1
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.InstanceNumber = number
            ds.ImagePositionPatient = [format_number_as_ds(v) for v in plane.positions_lps_mm[k]]
            ds.SliceLocation = format_number_as_ds(float(plane.slice_locations_mm[k]))
            if isinstance(volume, MultiEchoMR):
                ds.EchoNumbers = e + 1
                ds.EchoTime = "" if tes is None else format_number_as_ds(tes[e])
            # DICOM pixels are [row, column] with columns along synthct's axis i.
            ds.PixelData = (
                np.ascontiguousarray(echo[:, :, k].T).astype(echo.dtype.newbyteorder("<")).tobytes()
            )
            ds.save_as(folder / f"{ds.Modality}_{number:05d}.dcm", enforce_file_format=True)


def _base_dataset(volume: Volume, patient_id: str, patient_name: str, number: int) -> Dataset:
    is_mr = isinstance(volume, MultiEchoMR)
    sop_class = MRImageStorage if is_mr else CTImageStorage
    now = dt.datetime.now()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta.ImplementationVersionName = f"SYNTHCT_{__version__}"[:16]
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    image_type = ["DERIVED", "SECONDARY", "OTHER" if is_mr else "AXIAL"]
    if isinstance(volume, SyntheticCT):
        image_type.append(SYNTHETIC_IMAGE_TYPE)
        ds.DerivationDescription = "synthetic CT computed from MRI"
    ds.ImageType = image_type
    for keyword in ("StudyDate", "SeriesDate", "ContentDate"):
        setattr(ds, keyword, now.strftime("%Y%m%d"))
    for keyword in ("StudyTime", "SeriesTime", "ContentTime"):
        setattr(ds, keyword, now.strftime("%H%M%S"))
    ds.Modality = "MR" if is_mr else "CT"
    ds.Manufacturer = "synthct"
    ds.SoftwareVersions = __version__
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    for keyword in ("PatientBirthDate", "PatientSex", "ReferringPhysicianName", "StudyID"):
        setattr(ds, keyword, "")
    ds.AccessionNumber = ""
    ds.PatientPosition = ""
    ds.PositionReferenceIndicator = ""
    ds.SeriesNumber = number
    ds.AcquisitionNumber = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = volume.spatial_shape[1]
    ds.Columns = volume.spatial_shape[0]
    if is_mr:
        _set_mr_protocol(ds, volume)  # type: ignore[arg-type]
    else:
        ds.KVP = ""
        ds.RescaleType = "HU"
    return ds


def _set_mr_protocol(ds: Dataset, volume: MultiEchoMR) -> None:
    protocol = volume.protocol
    ds.ScanningSequence = "GR"
    ds.SequenceVariant = "SP"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "3D"
    ds.EchoTrainLength = volume.n_echoes
    tr = None if protocol is None else protocol.repetition_time_ms
    ds.RepetitionTime = "" if tr is None else format_number_as_ds(tr)
    if protocol is not None and protocol.flip_angle_deg is not None:
        ds.FlipAngle = format_number_as_ds(protocol.flip_angle_deg)
    if protocol is not None and protocol.field_strength_t is not None:
        ds.MagneticFieldStrength = format_number_as_ds(protocol.field_strength_t)


def _set_pixel_format(ds: Dataset, dtype: np.dtype[Any], slope: float, intercept: float) -> None:
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if dtype == np.int16 else 0
    ds.RescaleSlope = format_number_as_ds(slope)
    ds.RescaleIntercept = format_number_as_ds(intercept)


def _ct_stored(volume: CTVolume, where: Path) -> tuple[NDArray[Any], float, float]:
    """Stored int16 values (with a leading echo axis of 1), slope 1 and the intercept."""
    hu = np.rint(volume.array) if volume.dtype.kind == "f" else volume.array
    lo, hi = int(hu.min()), int(hu.max())
    if hi - lo > _UINT16_MAX:
        raise WriteError(
            f"HU range {lo}..{hi} is wider than 16-bit DICOM pixels can hold",
            path=where,
            fix="clip the CT to a realistic range (e.g. -1024..30000 HU) before writing",
        )
    # -1024 puts air at stored 0, the usual CT convention; otherwise shift into int16.
    candidates = (-1024, 0, lo + 32768)
    intercept = next(c for c in candidates if lo - c >= -32768 and hi - c <= 32767)
    stored = (hu.astype(np.int64) - intercept).astype(np.int16)
    return stored[np.newaxis], 1.0, float(intercept)


def _mr_stored(volume: MultiEchoMR, where: Path) -> tuple[NDArray[Any], float, float]:
    """Stored uint16 values ``[echo, i, j, k]`` with the series' slope and intercept."""
    if volume.n_echoes > 1 and volume.echo_times_ms is None:
        raise WriteError(
            f"{volume.n_echoes} echoes without echo times: readers tell echoes apart by EchoTime",
            path=where,
            fix="attach an MRProtocol with the echo times to the volume",
        )
    data = volume.array
    lo, hi = float(data.min()), float(data.max())
    if lo >= 0 and hi <= _UINT16_MAX and np.array_equal(data, np.rint(data)):
        return data.astype(np.uint16), 1.0, 0.0
    intercept = min(lo, 0.0)
    # The slope is rounded to its DICOM text first, so the stored values use the slope read back.
    slope = float(format_number_as_ds((hi - intercept) / _UINT16_MAX)) if hi > intercept else 1.0
    stored = np.rint((data.astype(np.float64) - intercept) / slope)
    return np.clip(stored, 0, _UINT16_MAX).astype(np.uint16), slope, intercept


def _description(volume: Volume, given: str | None) -> str:
    if isinstance(volume, SyntheticCT):
        text = given or "synthetic CT (synthct)"
        if "synthetic ct" not in text.lower():
            text = f"synthetic CT: {text}"
    elif isinstance(volume, MultiEchoMR):
        text = given or f"multi-echo MR, {volume.n_echoes} echoes (synthct)"
    else:
        text = given or "CT (synthct)"
    return text[:_LO_MAX_CHARS]


def _check_uid(uid: str, keyword: str, where: Path) -> None:
    if len(uid) > _UID_MAX_CHARS or not RE_VALID_UID.match(uid):
        raise WriteError(
            f"{keyword} {uid!r} is not a valid DICOM UID (digits and dots, no leading zeros, "
            "at most 64 characters)",
            path=where,
            fix="pass the UID exactly as the source series has it, or leave it out to "
            "generate a new one",
        )
