"""Finding the DICOM series in a folder from the file headers (pixel data is not decoded).

Only the files directly inside the folder are looked at (not subfolders). Files that are not
DICOM (a README, a ``.json``) and the DICOMDIR index are skipped. A file that is DICOM but
truncated or corrupt raises :class:`~synthct.errors.ReadError` naming it, so a damaged copy is
never read as a series with a slice missing.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import UID, ImplicitVRLittleEndian, MediaStorageDirectoryStorage

from synthct.errors import ReadError

#: Stands for "the files without a SeriesInstanceUID" where a series is named by UID (a UID
#: holds digits and dots only, so it cannot collide); such files form one series.
NO_SERIES_UID = "none"
#: Header elements larger than this many bytes (the pixel data) are not loaded.
_DEFER_BYTES = 1024
_UNDEFINED_LENGTH = 0xFFFFFFFF
#: First bytes of a DICOM file written without the 128-byte preamble: group 0008 or 0002.
_NO_PREAMBLE_STARTS = (b"\x08\x00", b"\x02\x00")


@dataclass(frozen=True)
class SeriesInfo:
    """One DICOM series found in a folder.

    Attributes
    ----------
    series_uid : str
        SeriesInstanceUID; empty for files without one (e.g. after de-identification), which
        are then taken as one series.
    modality : str
        Modality (``"CT"``, ``"MR"``, ...), empty when absent.
    description : str
        SeriesDescription, empty when absent.
    n_files : int
        Number of files of the series in the folder.
    echo_times_ms : tuple of float
        The distinct echo times (EchoTime), sorted; empty when the files have none.
    is_image : bool
        Whether the files hold images (pixel data) that can be read as a volume.
    files : tuple of Path
        The files, sorted by name.
    """

    series_uid: str
    modality: str
    description: str
    n_files: int
    echo_times_ms: tuple[float, ...]
    is_image: bool = True
    files: tuple[Path, ...] = field(default=(), repr=False)

    def describe(self) -> str:
        """One line: UID, modality, description, file count and echo times."""
        text = (
            f"{self.series_uid or '<no SeriesInstanceUID>'} ({self.modality or 'no modality'}, "
            f"{self.description or 'no description'!r}, {self.n_files} file"
            f"{'' if self.n_files == 1 else 's'}"
        )
        if len(self.echo_times_ms) > 1:
            text += ", TE " + "/".join(f"{t:g}" for t in self.echo_times_ms) + " ms"
        return text + ")"


@dataclass(frozen=True)
class SliceHeader:
    """What synthct needs from one DICOM file's header (values as stored, units in names)."""

    path: Path
    series_uid: str
    modality: str
    description: str
    sop_class_uid: str
    transfer_syntax_uid: str
    has_pixels: bool
    rows: int | None = None
    columns: int | None = None
    n_frames: int = 1
    samples_per_pixel: int = 1
    position_lps_mm: tuple[float, ...] | None = None
    orientation: tuple[float, ...] | None = None
    pixel_spacing_mm: tuple[float, ...] | None = None
    slice_thickness_mm: float | None = None
    spacing_between_slices_mm: float | None = None
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    echo_time_ms: float | None = None
    echo_number: int | None = None
    repetition_time_ms: float | None = None
    flip_angle_deg: float | None = None
    field_strength_t: float | None = None
    instance_number: int | None = None
    image_type: tuple[str, ...] = ()


def list_series(folder: str | os.PathLike[str]) -> list[SeriesInfo]:
    """List the DICOM series in ``folder`` from the headers.

    Pixel data is neither loaded nor decoded; only its length is checked against the file
    size (uncompressed data against the image size too), so a truncated copy is caught here.

    Parameters
    ----------
    folder : path
        A folder holding DICOM files (subfolders are not searched).

    Returns
    -------
    list of SeriesInfo
        One entry per SeriesInstanceUID, sorted by modality, description and UID; empty when
        the folder holds no DICOM file.

    Raises
    ------
    ReadError
        The folder does not exist, or one of its DICOM files is truncated or corrupt (the
        message names the file).
    """
    groups = scan_folder(folder)
    return [series_info(uid, headers) for uid, headers in groups.items()]


def scan_folder(folder: str | os.PathLike[str]) -> dict[str, list[SliceHeader]]:
    """Headers of the DICOM files in ``folder`` grouped by series, in :func:`list_series` order."""
    root = Path(folder)
    if not root.is_dir():
        raise ReadError(
            "no such folder" if not root.exists() else "is not a folder",
            path=root,
            fix="pass the folder that holds the DICOM files of the series",
        )
    groups: dict[str, list[SliceHeader]] = {}
    for path in sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")):
        header = read_slice_header(path)
        if header is not None:
            groups.setdefault(header.series_uid, []).append(header)
    keys = sorted(groups, key=lambda u: (groups[u][0].modality, groups[u][0].description, u))
    return {uid: groups[uid] for uid in keys}


def series_info(series_uid: str, headers: Iterable[SliceHeader]) -> SeriesInfo:
    """Summarise the headers of one series."""
    items = list(headers)
    tes = {round(h.echo_time_ms, 6) for h in items if h.echo_time_ms is not None}
    first = items[0]
    return SeriesInfo(
        series_uid=series_uid,
        modality=first.modality,
        description=first.description,
        n_files=len(items),
        echo_times_ms=tuple(sorted(tes)),
        is_image=all(h.has_pixels for h in items),
        files=tuple(h.path for h in items),
    )


def read_slice_header(path: Path) -> SliceHeader | None:
    """The header of one file, or ``None`` when it is not DICOM or is a DICOMDIR.

    Raises
    ------
    ReadError
        The file is DICOM but cannot be parsed, misses its SOP class, or its
        pixel data is cut short.
    """
    has_preamble, candidate = _sniff(path)
    if not candidate:
        return None
    # pydicom warns (and carries on) where a damaged file ends early, and about odd values as
    # they are converted; the warnings explain a failure, and are noise when the file is fine.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(path, defer_size=_DEFER_BYTES, force=not has_preamble)
        except Exception as exc:  # pydicom raises many exception types on damaged files
            if not has_preamble:
                return None
            raise _corrupt(path, f"its header cannot be parsed ({exc})") from exc
        try:
            return _header(ds, path, has_preamble)
        except ReadError as exc:
            notes = "; ".join(dict.fromkeys(str(w.message) for w in caught))
            if not notes:
                raise
            raise ReadError(f"{exc.problem} (pydicom: {notes})", path=path, fix=exc.fix) from exc


def _header(ds: Dataset, path: Path, has_preamble: bool) -> SliceHeader | None:
    sop_class = str(ds.get("SOPClassUID", "") or _meta(ds, "MediaStorageSOPClassUID"))
    if sop_class == MediaStorageDirectoryStorage:
        return None
    if not sop_class:
        if not has_preamble:
            return None  # parsed by force but has no DICOM identity: not a DICOM file
        raise _corrupt(path, "it has no SOP Class UID")
    series_uid = str(ds.get("SeriesInstanceUID", "") or "")
    has_pixels = "PixelData" in ds
    if not has_pixels and "Image Storage" in UID(sop_class).name:
        raise _corrupt(path, f"it is a {UID(sop_class).name} file without pixel data")
    transfer_syntax = str(_meta(ds, "TransferSyntaxUID") or ImplicitVRLittleEndian)
    if has_pixels:
        _check_pixel_length(ds, path, transfer_syntax)
    return SliceHeader(
        path=path,
        series_uid=series_uid,
        modality=str(ds.get("Modality", "") or "").upper(),
        description=str(ds.get("SeriesDescription", "") or ""),
        sop_class_uid=sop_class,
        transfer_syntax_uid=transfer_syntax,
        has_pixels=has_pixels,
        rows=_int(ds, "Rows"),
        columns=_int(ds, "Columns"),
        n_frames=_int(ds, "NumberOfFrames") or 1,
        samples_per_pixel=_int(ds, "SamplesPerPixel") or 1,
        position_lps_mm=_floats(ds, "ImagePositionPatient", 3),
        orientation=_floats(ds, "ImageOrientationPatient", 6),
        pixel_spacing_mm=_floats(ds, "PixelSpacing", 2),
        slice_thickness_mm=_float(ds, "SliceThickness"),
        spacing_between_slices_mm=_float(ds, "SpacingBetweenSlices"),
        rescale_slope=_float(ds, "RescaleSlope") or 1.0,
        rescale_intercept=_float(ds, "RescaleIntercept") or 0.0,
        echo_time_ms=_float(ds, "EchoTime"),
        echo_number=_int(ds, "EchoNumbers"),
        repetition_time_ms=_float(ds, "RepetitionTime"),
        flip_angle_deg=_float(ds, "FlipAngle"),
        field_strength_t=_float(ds, "MagneticFieldStrength"),
        instance_number=_int(ds, "InstanceNumber"),
        image_type=tuple(str(v).upper() for v in _values(ds, "ImageType")),
    )


def _sniff(path: Path) -> tuple[bool, bool]:
    """``(has_preamble, could_be_dicom)`` from the first bytes of the file."""
    try:
        with path.open("rb") as f:
            head = f.read(132)
    except OSError as exc:
        raise ReadError(f"cannot be opened ({exc})", path=path) from exc
    if head[128:132] == b"DICM":
        return True, True
    return False, head[:2] in _NO_PREAMBLE_STARTS


def _check_pixel_length(ds: Dataset, path: Path, transfer_syntax: str) -> None:
    element = ds.get_item("PixelData", keep_deferred=True)
    if element is None:
        return
    if isinstance(element, RawDataElement) and element.value is None:
        declared = int(element.length)
        if declared != _UNDEFINED_LENGTH:
            available = path.stat().st_size - int(element.value_tell)
            if available < declared:
                raise _corrupt(
                    path, f"its pixel data is cut short ({available} of {declared} bytes)"
                )
        length = declared
    else:
        length = len(element.value or b"")
    if UID(transfer_syntax).is_compressed or length == _UNDEFINED_LENGTH:
        return
    rows, columns = _int(ds, "Rows") or 0, _int(ds, "Columns") or 0
    bits = _int(ds, "BitsAllocated") or 0
    frames, samples = _int(ds, "NumberOfFrames") or 1, _int(ds, "SamplesPerPixel") or 1
    expected = (rows * columns * frames * samples * bits + 7) // 8
    if length < expected:
        raise _corrupt(
            path,
            f"its pixel data holds {length} bytes but {rows} x {columns} pixels of {bits} bits "
            f"need {expected}",
        )


def _corrupt(path: Path, why: str) -> ReadError:
    return ReadError(
        f"DICOM file is truncated or corrupt: {why}",
        path=path,
        fix="copy the file again from its source (PACS, scanner export), or remove it from "
        "the folder if the series is complete without it",
    )


def _meta(ds: Dataset, keyword: str) -> Any:
    meta = getattr(ds, "file_meta", None)
    return None if meta is None else meta.get(keyword)


def _values(ds: Dataset, keyword: str) -> list[Any]:
    value = ds.get(keyword)
    if value is None or value == "":
        return []
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        return [value]
    return list(value)


def _float(ds: Dataset, keyword: str) -> float | None:
    values = _values(ds, keyword)
    try:
        return float(values[0]) if values else None
    except (TypeError, ValueError):
        return None


def _int(ds: Dataset, keyword: str) -> int | None:
    value = _float(ds, keyword)
    return None if value is None else int(value)


def _floats(ds: Dataset, keyword: str, n: int) -> tuple[float, ...] | None:
    values = _values(ds, keyword)
    if len(values) != n:
        return None
    try:
        return tuple(float(v) for v in values)
    except (TypeError, ValueError):
        return None


#: A series needs this many slices (frames) to be read as a volume: fewer is a scout or a single
#: slice (registration and the networks need at least 4 voxels along every axis).
MIN_VOLUME_SLICES = 4
#: SOP classes of screenshots and other secondary captures (the dose page of a CT study).
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def not_a_volume(headers: Iterable[SliceHeader]) -> str | None:
    """Why a series is no 3D volume to train or validate on, or None when it is one.

    A localizer or scout (ImageType ``LOCALIZER``; the 3-plane MR localizer, whose slices lie in
    several orientations), a secondary capture (a dose page, a screenshot), a series without
    pixel data or with fewer than :data:`MIN_VOLUME_SLICES` slices. DICOM studies from a PACS
    hold these beside the scan; they are skipped, and said so, rather than read.
    """
    items = list(headers)
    if not items or not all(h.has_pixels for h in items):
        return "no pixel data"
    if any("LOCALIZER" in h.image_type for h in items):
        return "localizer (ImageType LOCALIZER)"
    if any(h.sop_class_uid.startswith(_SECONDARY_CAPTURE) for h in items):
        return "secondary capture"
    orientations = {tuple(round(v, 3) for v in h.orientation) for h in items if h.orientation}
    if len(orientations) > 1:
        return f"slices in {len(orientations)} orientations (a localizer)"
    slices = sum(h.n_frames for h in items)
    if slices < MIN_VOLUME_SLICES:
        return f"{slices} slice{'' if slices == 1 else 's'}, too few for a volume"
    return None
