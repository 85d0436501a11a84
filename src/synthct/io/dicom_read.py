"""Reading one DICOM series from a folder into a volume (CT, synthetic CT or multi-echo MR).

Geometry comes from the slice headers (:mod:`synthct.io.dicom_geometry`): axis ``i`` along the
DICOM columns (ImageOrientationPatient row direction), ``j`` along the rows, ``k`` across
slices in order of position along the slice normal, as in ITK/SimpleITK. Pixel values are
decoded by pydicom and mapped through RescaleSlope/RescaleIntercept (HU for CT); compressed
transfer syntaxes pydicom has no decoder for here (JPEG-LS, JPEG lossless without pylibjpeg)
are decoded by GDCM through SimpleITK, which applies the rescale itself. The result is
``int16`` when every value is an integer that fits (else ``uint16`` or ``int32``), otherwise
``float32``.

An MR series holding several echoes (files with different EchoTime) is split by echo time;
each echo must be a complete stack on the same grid. Echoes are sorted by TE.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import pydicom
import SimpleITK as sitk
from numpy.typing import NDArray
from pydicom.pixels import get_decoder
from pydicom.uid import UID

from synthct.errors import ReadError, VolumeKindError
from synthct.geometry import Geometry
from synthct.io.dicom_geometry import stack_affine
from synthct.io.dicom_headers import NO_SERIES_UID, SliceHeader, scan_folder, series_info
from synthct.io.image_files import make_volume
from synthct.io.kinds import parse_kind
from synthct.volume import MRProtocol, Volume

#: ImageType value synthct writes on synthetic CT, so that it reads back as ``sct``.
SYNTHETIC_IMAGE_TYPE = "SYNTHETIC"
_ORIENTATION_ATOL = 1e-4
_SPACING_ATOL_MM = 1e-4
_SERIES_FIX = "pass series_uid= (command line: --series UID) with one of the UIDs above"


def read_dicom_series(
    folder: str | os.PathLike[str],
    *,
    kind: str | None = None,
    series_uid: str | None = None,
    check_hu: bool = True,
) -> Volume:
    """Read the DICOM series in ``folder`` as a volume.

    Parameters
    ----------
    folder : path
        Folder holding the files of the series (subfolders are not searched).
    kind : str, optional
        ``"ct"``, ``"sct"``, ``"mr"``, ``"label"`` or ``"scalar"``. When omitted: Modality CT
        gives ``"ct"`` (``"sct"`` when ImageType holds ``SYNTHETIC``, as synthct writes it),
        MR gives ``"mr"``, anything else ``"scalar"``.
    series_uid : str, optional
        SeriesInstanceUID to read; required when the folder holds several image series.
        :data:`~synthct.io.dicom_headers.NO_SERIES_UID` reads the files that have none.
    check_hu : bool
        For CT kinds, reject values that are not Hounsfield units
        (:func:`synthct.volume.check_hounsfield`).

    Returns
    -------
    Volume
        :class:`~synthct.volume.CTVolume`, :class:`~synthct.volume.SyntheticCT`,
        :class:`~synthct.volume.MultiEchoMR` (echoes sorted by TE, protocol from EchoTime,
        RepetitionTime, FlipAngle and MagneticFieldStrength) or the kind asked for.

    Raises
    ------
    ReadError
        No DICOM in the folder, several series and no ``series_uid``, a damaged file, or
        slices that do not form one regular grid (the message names the files).
    VolumeKindError
        The data do not fit ``kind`` (an MR read as CT fails the HU check).
    """
    root = Path(folder)
    headers = _choose_series(root, series_uid)
    first = headers[0]
    chosen = parse_kind(kind, where="kind") if kind else _default_kind(first)
    echoes = _split_echoes(headers, root)
    if len(echoes) > 1 and chosen != "mr":
        raise VolumeKindError(
            f"the series holds {len(echoes)} echoes (TE "
            f"{', '.join(f'{h[0].echo_time_ms:g}' for h in echoes)} ms), which only an MR "
            f"volume can hold, but it was asked for as {chosen}",
            path=root,
            fix="read it as MR (kind='mr' / --kind mr)",
        )
    affine, stacks = _echo_grid(echoes, root)
    array = _read_pixels(stacks)
    protocol = _protocol(echoes, root) if chosen == "mr" else None
    return make_volume(
        array if chosen == "mr" else array[0],
        affine,
        kind=chosen,
        source=str(root),
        protocol=protocol,
        check_hu=check_hu,
    )


def _choose_series(root: Path, series_uid: str | None) -> list[SliceHeader]:
    groups = scan_folder(root)
    if not groups:
        raise ReadError(
            "holds no DICOM files",
            path=root,
            fix="pass the folder that directly contains the series' files (subfolders are not "
            "searched); for NIfTI/NRRD/MHA pass the file itself",
        )
    infos = [series_info(uid, hs) for uid, hs in groups.items()]
    listing = "\n".join(f"  - {info.describe()}" for info in infos)
    if series_uid is not None:
        series_uid = "" if series_uid == NO_SERIES_UID else series_uid
        if series_uid not in groups:
            raise ReadError(
                f"has no series with UID {series_uid}; it holds:\n{listing}",
                path=root,
                fix=_SERIES_FIX,
            )
        headers = groups[series_uid]
        if not all(h.has_pixels for h in headers):
            raise ReadError(
                f"series {series_uid} ({headers[0].modality}) holds no images",
                path=root,
                fix="choose an image series: " + _SERIES_FIX,
            )
        return headers
    images = [info for info in infos if info.is_image]
    if not images:
        raise ReadError(f"holds DICOM files but no image series:\n{listing}", path=root)
    if len(images) > 1:
        raise ReadError(
            f"holds {len(images)} image series; say which one to read:\n{listing}",
            path=root,
            fix=_SERIES_FIX,
        )
    return groups[images[0].series_uid]


def _default_kind(header: SliceHeader) -> str:
    if header.modality == "CT":
        return "sct" if SYNTHETIC_IMAGE_TYPE in header.image_type else "ct"
    if header.modality == "MR":
        return "mr"
    return "scalar"


def _split_echoes(headers: list[SliceHeader], root: Path) -> list[list[SliceHeader]]:
    """Group the files by echo time, sorted by TE (one group when there is no EchoTime)."""
    with_te = [h for h in headers if h.echo_time_ms is not None]
    if not with_te:
        return [headers]
    if len(with_te) != len(headers):
        missing = next(h for h in headers if h.echo_time_ms is None)
        raise ReadError(
            f"some files of the series have an EchoTime and others ({missing.path.name}) do not",
            path=root,
            fix="the series is incomplete or mixed; re-export it",
        )
    groups: dict[float, list[SliceHeader]] = {}
    for h in headers:
        groups.setdefault(round(float(h.echo_time_ms or 0.0), 6), []).append(h)
    return [groups[te] for te in sorted(groups)]


def _echo_grid(
    echoes: list[list[SliceHeader]], root: Path
) -> tuple[NDArray[np.float64], list[list[SliceHeader]]]:
    """The common affine of the echoes and each echo's slices in ``k`` order."""
    grids = []
    stacks = []
    for group in echoes:
        affine, ordered = _stack(group, root)
        shape = (ordered[0].columns or 0, ordered[0].rows or 0, len(ordered))
        grids.append(Geometry(shape, affine))
        stacks.append(ordered)
        found = grids[0].differences(grids[-1])
        if found:
            raise ReadError(
                f"the echo at TE {group[0].echo_time_ms:g} ms is on another grid than the echo "
                f"at TE {echoes[0][0].echo_time_ms:g} ms ({'; '.join(found)})",
                path=root,
                fix="every echo must cover the same slices; copy the complete series",
            )
    return grids[0].affine, stacks


def _stack(headers: list[SliceHeader], root: Path) -> tuple[NDArray[np.float64], list[SliceHeader]]:
    """Affine of one stack of slices and the slices sorted along the normal."""
    first = headers[0]
    for h in headers:
        _check_slice(h, first, root)
    # _check_slice has made sure these are present.
    affine, order = stack_affine(
        np.array([cast(tuple[float, ...], h.position_lps_mm) for h in headers]),
        cast(tuple[float, ...], first.orientation),
        cast(tuple[float, ...], first.pixel_spacing_mm),
        names=[h.path.name for h in headers],
        single_slice_spacing_mm=first.spacing_between_slices_mm or first.slice_thickness_mm,
        where=str(root),
    )
    return affine, [headers[o] for o in order]


def _check_slice(h: SliceHeader, first: SliceHeader, root: Path) -> None:
    if h.n_frames != 1:
        raise ReadError(
            f"multi-frame (enhanced) DICOM with {h.n_frames} frames is not supported yet",
            path=h.path,
            fix="convert the series to NIfTI (e.g. dcm2niix) or to single-frame DICOM",
        )
    if h.samples_per_pixel != 1:
        raise ReadError(
            f"colour images ({h.samples_per_pixel} samples per pixel) cannot be read as a volume",
            path=h.path,
        )
    for keyword, value in (
        ("ImagePositionPatient", h.position_lps_mm),
        ("ImageOrientationPatient", h.orientation),
        ("PixelSpacing", h.pixel_spacing_mm),
        ("Rows", h.rows),
        ("Columns", h.columns),
    ):
        if value is None:
            raise ReadError(
                f"has no usable {keyword}, so its place in the volume is unknown",
                path=h.path,
                fix="this is not a cross-sectional image series (or the header is damaged); "
                "choose another series or re-export it",
            )
    if (h.rows, h.columns) != (first.rows, first.columns):
        raise ReadError(
            f"is {h.rows} x {h.columns} pixels but {first.path.name} is "
            f"{first.rows} x {first.columns}",
            path=h.path,
            fix="keep one series of equally sized slices per folder",
        )
    if not np.allclose(h.orientation, first.orientation, atol=_ORIENTATION_ATOL):  # type: ignore[arg-type]
        raise ReadError(
            f"its ImageOrientationPatient {list(h.orientation or ())} differs from that of "
            f"{first.path.name} {list(first.orientation or ())} (a localizer or a reformat in "
            "the series?)",
            path=h.path,
            fix="remove the images of other orientations, or read them as their own series",
        )
    if not np.allclose(h.pixel_spacing_mm, first.pixel_spacing_mm, atol=_SPACING_ATOL_MM):  # type: ignore[arg-type]
        raise ReadError(
            f"its PixelSpacing {list(h.pixel_spacing_mm or ())} differs from that of "
            f"{first.path.name} {list(first.pixel_spacing_mm or ())}",
            path=h.path,
            fix="keep one series with equal pixel spacing per folder",
        )


def _protocol(echoes: list[list[SliceHeader]], root: Path) -> MRProtocol | None:
    first = echoes[0][0]
    if first.echo_time_ms is None:
        return None
    try:
        return MRProtocol(
            echo_times_ms=tuple(float(g[0].echo_time_ms or 0.0) for g in echoes),
            repetition_time_ms=first.repetition_time_ms,
            flip_angle_deg=first.flip_angle_deg,
            field_strength_t=first.field_strength_t,
        )
    except VolumeKindError as exc:
        raise ReadError(exc.problem, path=root) from exc


# -- pixels --------------------------------------------------------------------------------


def _read_pixels(stacks: Sequence[Sequence[SliceHeader]]) -> NDArray[Any]:
    """Values after rescale, shape ``[echo, i, j, k]``, in the narrowest exact dtype."""
    slices = [[_slice_values(h) for h in stack] for stack in stacks]
    flat = [s for stack in slices for s in stack]
    integral = all(
        v.dtype.kind in "iu" and float(m).is_integer() and float(b).is_integer() for v, m, b in flat
    )
    dtype: np.dtype[Any] = np.dtype(np.float32)
    if integral:
        ranges = [_int_range(v, int(m), int(b)) for v, m, b in flat]
        lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
        dtype = next(
            (np.dtype(t) for t in (np.int16, np.uint16, np.int32) if _fits(lo, hi, t)),
            np.dtype(np.int64),
        )
    first = flat[0][0]
    out = np.empty((len(stacks), *first.shape, len(stacks[0])), dtype=dtype)
    work = np.int64 if integral else np.float64
    for e, stack in enumerate(slices):
        for k, (stored, slope, intercept) in enumerate(stack):
            out[e, :, :, k] = stored.astype(work) * work(slope) + work(intercept)
    return out


def _int_range(values: NDArray[Any], slope: int, intercept: int) -> tuple[int, int]:
    ends = (int(values.min()) * slope + intercept, int(values.max()) * slope + intercept)
    return min(ends), max(ends)


def _fits(lo: int, hi: int, dtype: type[np.integer[Any]]) -> bool:
    info = np.iinfo(dtype)
    return bool(info.min <= lo and hi <= info.max)


def _slice_values(h: SliceHeader) -> tuple[NDArray[Any], float, float]:
    """``(values [i, j], slope, intercept)``; values are stored values (or rescaled by GDCM)."""
    if not _pydicom_decodes(h.transfer_syntax_uid):
        return _slice_values_gdcm(h), 1.0, 0.0
    try:
        pixels = pydicom.dcmread(h.path).pixel_array
    except Exception as exc:  # pydicom raises many exception types on damaged pixel data
        raise ReadError(
            f"its pixel data cannot be decoded ({exc})",
            path=h.path,
            fix="the file is truncated or corrupt: copy it again from its source",
        ) from exc
    return _oriented(pixels, h), h.rescale_slope, h.rescale_intercept


def _pydicom_decodes(transfer_syntax: str) -> bool:
    try:
        return bool(get_decoder(UID(transfer_syntax)).is_available)
    except (NotImplementedError, ValueError):
        return False


def _slice_values_gdcm(h: SliceHeader) -> NDArray[Any]:
    try:
        image = sitk.ReadImage(str(h.path))
    except RuntimeError as exc:
        raise ReadError(
            f"its pixel data ({UID(h.transfer_syntax_uid).name}) cannot be decoded by pydicom "
            f"or GDCM ({str(exc).strip().splitlines()[-1] if str(exc).strip() else exc})",
            path=h.path,
            fix="install a decoder (pip install pylibjpeg pylibjpeg-libjpeg) or re-export "
            "the series uncompressed",
        ) from exc
    pixels = sitk.GetArrayFromImage(image)
    return _oriented(pixels[0] if pixels.ndim == 3 and pixels.shape[0] == 1 else pixels, h)


def _oriented(pixels: NDArray[Any], h: SliceHeader) -> NDArray[Any]:
    if pixels.shape != (h.rows, h.columns):
        raise ReadError(
            f"decoded pixel data has shape {pixels.shape}, the header says {h.rows} x {h.columns}",
            path=h.path,
        )
    return pixels.T  # DICOM pixels are [row, column]; synthct's i runs along the columns
