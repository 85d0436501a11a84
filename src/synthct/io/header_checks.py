"""Checks of an image header before its voxels are read: size against file, NIfTI geometry codes.

A header can claim any size; reading it would allocate that much memory before noticing the file
is too short (a 20000^3 header makes a MemoryError, not an error message). :func:`check_payload`
compares what the header claims with what the file can hold: exactly for uncompressed data, and
for compressed data with the largest ratio deflate reaches (about 1032:1, [1]_), and with the
machine's memory. :func:`check_nifti_geometry` compares a NIfTI's qform and sform (both may
define the voxel-to-world mapping; nibabel, like ITK, uses the sform) and warns when neither is
set.

References
----------
.. [1] M. Adler, "zlib technical details: maximum compression factor", zlib FAQ,
   https://zlib.net/zlib_tech.html.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from synthct.errors import GeometryWarning, ReadError

__all__ = ["MAX_DEFLATE_RATIO", "check_nifti_geometry", "check_payload", "physical_memory_bytes"]

#: Upper bound of deflate's compression ratio (1032:1 for a long run of one byte value).
MAX_DEFLATE_RATIO = 1032
#: Geometry differences below this (mm) are rounding, not disagreement.
_SAME_MM = 1e-3


def physical_memory_bytes() -> int | None:
    """The machine's physical memory in bytes, or ``None`` when the OS does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def _gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB"


def check_payload(
    path: Path,
    shape: tuple[int, ...],
    itemsize: int,
    *,
    offset: int,
    compressed: bool,
    data_bytes: int | None = None,
) -> None:
    """Refuse a header whose voxel data cannot fit in the file, or in memory.

    Parameters
    ----------
    path : Path
        The image file (for messages).
    shape : tuple of int
        Voxels per axis (channels included) that the header claims.
    itemsize : int
        Bytes per voxel value.
    offset : int
        Bytes before the voxel data (header), for uncompressed data in the same file.
    compressed : bool
        Whether the voxel data are deflate/gzip compressed.
    data_bytes : int, optional
        Size of the data on disk (default: the file's size).

    Raises
    ------
    ReadError
        The claimed data are larger than the file can hold or than the machine's memory.
    """
    if any(int(n) < 0 for n in shape):
        raise ReadError(
            f"the header claims a negative size {tuple(shape)}",
            path=path,
            fix="re-export the image; the header is corrupt",
        )
    needed = int(np.prod([int(n) for n in shape], dtype=object)) * int(itemsize)
    on_disk = path.stat().st_size if data_bytes is None else data_bytes
    available = on_disk * MAX_DEFLATE_RATIO + 1024 if compressed else max(on_disk - offset, 0)
    dims = " x ".join(str(int(n)) for n in shape)
    if needed > available:
        raise ReadError(
            f"the header claims {dims} voxels ({_gb(needed)}) but the file holds only "
            f"{on_disk} bytes{' (compressed)' if compressed else ''}: it is truncated or its "
            "header is corrupt",
            path=path,
            fix="re-export or re-copy the file",
        )
    memory = physical_memory_bytes()
    if memory is not None and needed > memory:
        raise ReadError(
            f"the image is {dims} voxels ({_gb(needed)}), more than this machine's memory "
            f"({_gb(memory)})",
            path=path,
            fix="crop or downsample it first (e.g. with SimpleITK), or use a larger machine",
        )


def _corners(shape: tuple[int, ...]) -> np.ndarray:
    n = [max(int(s) - 1, 0) for s in shape[:3]] + [0] * (3 - len(shape[:3]))
    grid = np.array([[i, j, k, 1.0] for i in (0, n[0]) for j in (0, n[1]) for k in (0, n[2])])
    return grid.T


def check_nifti_geometry(path: Path, header: Any) -> None:
    """qform vs sform of a NIfTI header: warn, or refuse when they differ by more than a voxel.

    A header with neither code set (both 0) has no defined position or orientation: a warning
    says so (nibabel then uses the voxel sizes only).

    Raises
    ------
    ReadError
        qform and sform place a corner of the volume more than one voxel apart.
    """
    qform, qcode = header.get_qform(coded=True)
    sform, scode = header.get_sform(coded=True)
    if not qcode and not scode:
        warnings.warn(
            f"{path}: the NIfTI header sets no spatial code (qform_code = sform_code = 0), so "
            "its position and orientation are unknown; synthct uses the voxel sizes with an "
            "identity orientation. Fix: re-export it from the scanner data or set the sform.",
            GeometryWarning,
            stacklevel=3,
        )
        return
    if not qcode or not scode or qform is None or sform is None:
        return
    shape = tuple(int(n) for n in header.get_data_shape())
    corners = _corners(shape)
    apart_mm = float(np.max(np.linalg.norm((qform @ corners - sform @ corners)[:3], axis=0)))
    if apart_mm <= _SAME_MM:
        return
    voxel_mm = float(np.min(np.linalg.norm(sform[:3, :3], axis=0)))
    message = (
        f"the NIfTI qform and sform disagree: they place the volume up to {apart_mm:.3g} mm "
        f"apart (voxel {voxel_mm:.3g} mm)"
    )
    fix = (
        "find out which one is right and rewrite the header with both equal (e.g. nibabel: "
        "img.set_qform(img.get_sform()))"
    )
    if apart_mm > voxel_mm:
        raise ReadError(message + "; which one is right cannot be told", path=path, fix=fix)
    warnings.warn(
        f"{path}: {message}; the sform is used. Fix: {fix}", GeometryWarning, stacklevel=3
    )
