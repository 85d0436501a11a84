"""NIfTI, NRRD and MetaImage (.mha) files, with a JSON sidecar.

NIfTI goes through nibabel (its RAS affine converted to LPS here): SimpleITK's NIfTI reader
silently turns NaN voxels into 0 and accepts truncated payloads, both of which must be errors.
NRRD and MHA go through SimpleITK, which works in LPS already. Multi-echo MR is stored 4D with
the echoes on the 4th axis. What a format cannot hold (the kind, echo times, TR, flip angle,
field strength, label names) goes to a sidecar ``<stem>.json`` next to the image; BIDS keys
(``EchoTime`` in seconds, ...) are read as well, so BIDS data loads with its protocol.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from synthct.errors import ReadError, SynthctError, VolumeKindError, WriteError
from synthct.geometry import lps_to_ras, ras_to_lps, validate_affine
from synthct.io.atomic import atomic_file, write_json_atomic
from synthct.io.header_checks import check_nifti_geometry, check_payload
from synthct.io.itk import array_to_sitk, sitk_to_array, stack_to_sitk
from synthct.io.kinds import infer_kind, parse_kind
from synthct.volume import (
    KINDS,
    CTVolume,
    LabelMap,
    MRProtocol,
    MultiEchoMR,
    SyntheticCT,
    Volume,
    check_hounsfield,
)

#: File name endings this module reads and writes, longest first.
SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
SIDECAR_SUFFIX = ".json"


def image_suffix(path: str | os.PathLike[str]) -> str | None:
    """The supported image suffix ``path`` ends with, or ``None``."""
    name = Path(path).name.lower()
    return next((s for s in SUFFIXES if name.endswith(s)), None)


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """Path of the JSON sidecar that belongs to an image file."""
    p = Path(path)
    suffix = image_suffix(p) or p.suffix
    return p.with_name(p.name[: len(p.name) - len(suffix)] + SIDECAR_SUFFIX)


def read_sidecar(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The sidecar of an image as a dict (empty when there is none)."""
    side = sidecar_path(path)
    if not side.is_file():
        return {}
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ReadError(
            f"the JSON sidecar is unreadable ({exc})",
            path=side,
            fix="repair or delete the sidecar (it holds the kind and MR protocol)",
        ) from exc
    if not isinstance(data, dict):
        raise ReadError("the JSON sidecar must hold an object", path=side)
    return data


def protocol_from_sidecar(meta: dict[str, Any], n_echoes: int) -> MRProtocol | None:
    """An :class:`MRProtocol` from synthct keys (``echo_times_ms``...) or BIDS keys (seconds)."""
    tes: Any = meta.get("echo_times_ms")
    if tes is None and "EchoTime" in meta:
        raw = meta["EchoTime"]
        tes = [1000.0 * t for t in (raw if isinstance(raw, list) else [raw])]
    if tes is None:
        return None
    tr = meta.get("repetition_time_ms")
    if tr is None and "RepetitionTime" in meta:
        tr = 1000.0 * float(meta["RepetitionTime"])
    flip = meta.get("flip_angle_deg", meta.get("FlipAngle"))
    b0 = meta.get("field_strength_t", meta.get("MagneticFieldStrength"))
    if len(tes) != n_echoes:
        raise VolumeKindError(
            f"the sidecar lists {len(tes)} echo times but the image has {n_echoes} echoes"
        )
    return MRProtocol(
        echo_times_ms=tuple(float(t) for t in tes),
        repetition_time_ms=None if tr is None else float(tr),
        flip_angle_deg=None if flip is None else float(flip),
        field_strength_t=None if b0 is None else float(b0),
        # what synthct wrote there (preset, MRI realism) travels on
        extra=dict(meta["extra"]) if isinstance(meta.get("extra"), dict) else {},
    )


def make_volume(
    array: np.ndarray,
    affine: np.ndarray,
    *,
    kind: str,
    source: str,
    protocol: MRProtocol | None = None,
    label_names: dict[int, str] | None = None,
    check_hu: bool = True,
) -> Volume:
    """Build a volume of ``kind`` from array and affine, checking HU for CT kinds."""
    cls = KINDS[kind]
    volume: Volume
    if cls is MultiEchoMR:
        data = array if array.ndim == 4 else array[np.newaxis]
        volume = MultiEchoMR(data, affine, protocol=protocol, source=source)
    elif cls is LabelMap:
        volume = LabelMap(array, affine, source=source, label_names=label_names)
    else:
        if array.ndim == 4:
            raise VolumeKindError(
                f"a 4D image with {array.shape[0]} channels cannot be read as {kind}",
                path=source,
                fix="read it as MR (--kind mr) or pass a 3D image",
            )
        volume = cls(array, affine, source=source)
    if check_hu and isinstance(volume, CTVolume):
        check_hounsfield(volume)
    return volume


def read_image_file(
    path: str | os.PathLike[str], *, kind: str | None = None, check_hu: bool = True
) -> Volume:
    """Read a NIfTI, NRRD or MHA file as a volume.

    Parameters
    ----------
    path : path
        The image file.
    kind : str, optional
        ``"ct"``, ``"sct"``, ``"mr"``, ``"label"`` or ``"scalar"``; from the sidecar, or inferred
        from the values (:func:`synthct.io.kinds.infer_kind`) when omitted.
    check_hu : bool
        Reject a CT/sCT whose values are not Hounsfield units.
    """
    p = Path(path)
    if not p.is_file():
        raise ReadError(
            "no such file" if not p.exists() else "is not a file",
            path=p,
            fix="check the path (DICOM series are read from their folder)",
        )
    if image_suffix(p) is None:
        raise ReadError(
            f"unsupported file type {p.suffix!r}",
            path=p,
            fix=f"use one of {', '.join(SUFFIXES)} or a DICOM series folder",
        )
    if p.stat().st_size == 0:
        raise ReadError(
            "the file is empty (0 bytes)",
            path=p,
            fix="re-export or re-copy the file; the copy or the export did not finish",
        )
    try:
        array, affine = _read_nifti(p) if _is_nifti(p) else _read_itk(p)
    except SynthctError:
        raise
    except MemoryError as exc:
        raise ReadError(
            "not enough memory to read this image",
            path=p,
            fix="crop or downsample it first, or use a machine with more memory",
        ) from exc
    except Exception as exc:  # any decoder failure of a damaged file (nibabel, ITK, zlib, ...)
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ReadError(
            f"cannot be read as an image; it is truncated, corrupt or not what its name says "
            f"({first})",
            path=p,
            fix="re-export or re-copy the file",
        ) from exc
    try:
        validate_affine(affine)
    except SynthctError as exc:
        raise ReadError(f"unusable image geometry: {exc.problem}", path=p, fix=exc.fix) from exc
    meta = read_sidecar(p)
    chosen = kind or meta.get("kind") or infer_kind(array)
    chosen = parse_kind(chosen, where=f"{p} (kind)")
    if chosen == "label":
        _check_label_file(array, p, meta)
    protocol = None
    if chosen == "mr":
        n = array.shape[0] if array.ndim == 4 else 1
        try:
            protocol = protocol_from_sidecar(meta, n)
        except VolumeKindError as exc:
            raise VolumeKindError(exc.problem, path=sidecar_path(p)) from exc
    names = {int(k): str(v) for k, v in meta.get("label_names", {}).items()}
    volume = make_volume(
        array,
        affine,
        kind=chosen,
        source=str(p),
        protocol=protocol,
        label_names=names or None,
        check_hu=check_hu,
    )
    if isinstance(volume, SyntheticCT) and isinstance(meta.get("synthesis"), dict):
        volume.provenance = dict(meta["synthesis"])
    return volume


def _check_label_file(array: np.ndarray, path: Path, meta: dict[str, Any]) -> None:
    """Refuse an image read as a label map that is something else (e.g. a CT given as lesions)."""
    declared = meta.get("kind")
    if declared is not None and parse_kind(declared, where=f"{sidecar_path(path)} (kind)") not in (
        "label",
    ):
        raise VolumeKindError(
            f"was given as a label map, but its sidecar says it is {declared!r}",
            path=path,
            fix="pass the lesion (or other) label map here, e.g. lesion_labels.nii.gz, not the "
            "image itself",
        )
    if array.size and np.issubdtype(array.dtype, np.number) and np.nanmin(array) < 0:
        raise VolumeKindError(
            f"was given as a label map, but holds negative values (min {np.nanmin(array):g}); "
            "it looks like an image (a CT in HU?), not labels",
            path=path,
            fix="pass the lesion label map (0 = background, 1, 2, ... = lesions)",
        )


def sidecar_for(volume: Volume) -> dict[str, Any]:
    """What a volume's sidecar records: kind, and protocol or label names where present."""
    meta: dict[str, Any] = {"kind": volume.kind}
    if isinstance(volume, MultiEchoMR) and volume.protocol is not None:
        meta.update(volume.protocol.to_dict())
        meta.pop("extra", None)
        if volume.protocol.extra:
            meta["extra"] = volume.protocol.extra
    if isinstance(volume, LabelMap) and volume.label_names:
        meta["label_names"] = {str(k): v for k, v in volume.label_names.items()}
    if isinstance(volume, SyntheticCT) and volume.provenance:
        meta["synthesis"] = volume.provenance
    return meta


def write_image_file(
    volume: Volume, path: str | os.PathLike[str], *, overwrite: bool = True
) -> Path:
    """Write a volume to NIfTI, NRRD or MHA (by suffix), atomically, with its sidecar.

    The sidecar is written first, so a present image always has its metadata beside it.
    """
    p = Path(path)
    if image_suffix(p) is None:
        raise WriteError(
            f"unsupported file type {p.suffix!r}",
            path=p,
            fix=f"use one of {', '.join(SUFFIXES)} or write a DICOM series to a folder",
        )
    if p.exists() and not overwrite:
        raise WriteError(
            "already exists and would be overwritten",
            path=p,
            fix="choose another path, delete it, or pass overwrite=True / --overwrite",
        )
    if p.exists() and volume.kind != "ct" and read_sidecar(p).get("kind") == "ct":
        raise WriteError(
            f"is a CT (its sidecar says so); synthct does not replace a CT with a {volume.kind}",
            path=p,
            fix="choose another output path",
        )
    data = volume.array
    if data.dtype == np.float16:
        data = data.astype(np.float32)
    elif data.dtype == np.bool_:
        data = data.astype(np.uint8)
    write_json_atomic(sidecar_path(p), sidecar_for(volume))
    with atomic_file(p, overwrite=overwrite) as tmp:
        try:
            if _is_nifti(p):
                _write_nifti(data, volume.affine, tmp)
            else:
                image = (
                    stack_to_sitk(data, volume.affine)
                    if volume.channel_axes
                    else array_to_sitk(data, volume.affine)
                )
                sitk.WriteImage(image, str(tmp), useCompression=True)
        except (RuntimeError, OSError) as exc:
            raise WriteError(f"the image could not be written ({exc})", path=p) from exc
    return p


def _is_nifti(path: Path) -> bool:
    return image_suffix(path) in (".nii", ".nii.gz")


def _read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Array ``[i, j, k]`` (``[echo, i, j, k]`` for 4D) and LPS affine of a NIfTI file."""
    image = nib.load(str(path))
    if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
        raise ValueError(f"not a NIfTI-1/2 image ({type(image).__name__})")
    header = image.header
    check_payload(
        path,
        tuple(int(n) for n in header.get_data_shape()),
        header.get_data_dtype().itemsize,
        offset=int(header["vox_offset"]),
        compressed=path.name.lower().endswith(".gz"),
    )
    check_nifti_geometry(path, header)
    # dataobj applies scl_slope/scl_inter only when set, so integer files stay integer.
    data = np.asanyarray(image.dataobj)
    if data.ndim == 5 and data.shape[3] == 1:
        # ITK writes a vector image (one component per echo) as 5D with a single time point
        data = data[:, :, :, 0, :]
    if data.ndim == 4:
        data = np.moveaxis(data, 3, 0)
    elif data.ndim == 2:
        data = data[:, :, np.newaxis]
    elif data.ndim != 3:
        raise ValueError(
            f"{data.ndim}D NIfTI images of shape {data.shape} are not supported (3D, 4D with "
            "echoes last, or 5D with one time point and the echoes as vector components)"
        )
    return np.ascontiguousarray(data), ras_to_lps(image.affine)


_COMPRESSED = re.compile(
    rb"(CompressedData\s*=\s*True)|(^encoding:\s*(gz|gzip|bz2|bzip2))", re.IGNORECASE | re.M
)
_DATA_FILE = re.compile(rb"^(?:ElementDataFile\s*=|data file:)\s*(\S+)\s*$", re.IGNORECASE | re.M)


def _read_itk(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Array and LPS affine of an NRRD or MHA file, its header checked against the file first."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    with path.open("rb") as handle:
        head = handle.read(8192)
    data_bytes = None
    found = _DATA_FILE.search(head)
    if found and found.group(1).upper() != b"LOCAL":
        detached = path.parent / found.group(1).decode("utf-8", "replace")
        data_bytes = detached.stat().st_size if detached.is_file() else 0
    itemsize = np.dtype(
        sitk.GetArrayViewFromImage(
            sitk.Image([1] * reader.GetDimension(), reader.GetPixelID())
        ).dtype
    ).itemsize
    components = reader.GetNumberOfComponents()
    shape = (*reader.GetSize(), *((components,) if components > 1 else ()))
    check_payload(
        path,
        shape,
        itemsize,
        offset=0,
        compressed=bool(_COMPRESSED.search(head)),
        data_bytes=data_bytes,
    )
    return sitk_to_array(sitk.ReadImage(str(path)))


def _write_nifti(data: np.ndarray, affine_lps: np.ndarray, path: Path) -> None:
    spatial = np.moveaxis(data, 0, 3) if data.ndim == 4 else data
    image = nib.Nifti1Image(spatial, lps_to_ras(affine_lps), dtype=spatial.dtype)
    # Both qform and sform carry the affine (code 1, scanner), as ITK and scanners write them.
    image.set_qform(lps_to_ras(affine_lps), code=1)
    image.set_sform(lps_to_ras(affine_lps), code=1)
    image.header.set_xyzt_units("mm", "sec")
    nib.save(image, str(path))
