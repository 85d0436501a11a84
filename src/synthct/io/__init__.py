"""Reading and writing volumes: NIfTI, NRRD, MHA (SimpleITK) and DICOM series (pydicom).

:func:`read_volume` and :func:`write_volume` pick the format from the path: a folder is a DICOM
series, a file is chosen by its suffix (``.nii``, ``.nii.gz``, ``.nrrd``, ``.mha``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from synthct.errors import ReadError, SynthctError
from synthct.io.image_files import image_suffix, read_image_file, write_image_file
from synthct.volume import Volume

__all__ = ["read_volume", "write_volume"]


def read_volume(
    path: str | os.PathLike[str],
    *,
    kind: str | None = None,
    check_hu: bool = True,
    series_uid: str | None = None,
) -> Volume:
    """Read a volume from an image file or a DICOM series folder.

    Parameters
    ----------
    path : path
        NIfTI/NRRD/MHA file, or a folder holding one DICOM series.
    kind : str, optional
        ``"ct"``, ``"sct"``, ``"mr"``, ``"label"`` or ``"scalar"``. Inferred when omitted (sidecar,
        DICOM modality, then the values).
    check_hu : bool
        For CT kinds, reject values that are not Hounsfield units.
    series_uid : str, optional
        Which series to read when a DICOM folder holds several.
    """
    p = Path(path)
    if not p.is_dir():
        return read_image_file(p, kind=kind, check_hu=check_hu)
    from synthct.io.dicom_series import read_dicom_series

    try:
        return read_dicom_series(p, kind=kind, series_uid=series_uid, check_hu=check_hu)
    except SynthctError:
        raise
    except MemoryError as exc:
        raise ReadError(
            "not enough memory to read this DICOM series",
            path=p,
            fix="read a smaller series, or use a machine with more memory",
        ) from exc
    except Exception as exc:  # a damaged file that pydicom or a decoder chokes on
        raise ReadError(
            f"a file of this DICOM series cannot be decoded ({type(exc).__name__}: {exc})",
            path=p,
            fix="re-export or re-copy the series; remove damaged files from the folder",
        ) from exc


def write_volume(
    volume: Volume, path: str | os.PathLike[str], *, overwrite: bool = True, **dicom: Any
) -> Path:
    """Write a volume; a path without an image suffix is written as a DICOM series folder.

    Extra keyword arguments go to :func:`synthct.io.dicom_series.write_dicom_series`.
    """
    p = Path(path)
    if image_suffix(p) is None:
        from synthct.io.dicom_series import write_dicom_series

        return write_dicom_series(volume, p, overwrite=overwrite, **dicom)
    return write_image_file(volume, p, overwrite=overwrite)
