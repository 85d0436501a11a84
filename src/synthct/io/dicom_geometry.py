"""Slice geometry of DICOM series: per-slice position and orientation <-> one LPS affine.

DICOM stores a series slice by slice. Each file gives ImageOrientationPatient (IOP: the LPS
direction of a row, i.e. of increasing column index, then of a column, i.e. of increasing row
index), PixelSpacing ``[between rows, between columns]`` in mm and ImagePositionPatient (IPP:
the LPS centre of the first pixel). synthct's array axes are ``i`` along the IOP row direction
(DICOM columns), ``j`` along the IOP column direction (DICOM rows) and ``k`` across slices.

Reading convention (the one ITK, SimpleITK and GDCM use): slices are sorted by their position
along the IOP normal ``row x column``, so axis ``k`` always points along that normal and the
affine read back is right-handed. Writing accepts any orthogonal affine; a left-handed one (axis
``k`` against the normal) is written slice by slice at its true positions and therefore reads
back with ``k`` reversed: the same voxels at the same places, an equivalent affine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from synthct.errors import ReadError

#: Row and column directions whose dot product is below this are made exactly orthogonal.
ORTHOGONAL_TOL = 1e-3
#: Floor of the tolerance on slice spacing and stacking, in mm.
SPACING_TOL_MM = 1e-2
#: Relative tolerance on slice spacing (fraction of the spacing).
SPACING_TOL_REL = 1e-2


@dataclass(frozen=True)
class SlicePlane:
    """How a grid is written as DICOM slices.

    Attributes
    ----------
    orientation : tuple of 6 float
        ImageOrientationPatient (row direction, column direction), unit vectors in LPS.
    pixel_spacing_mm : tuple of 2 float
        PixelSpacing: spacing between rows (along ``j``), then between columns (along ``i``).
    slice_spacing_mm : float
        Distance between slice centres (along ``k``).
    positions_lps_mm : (n_slices, 3) ndarray
        ImagePositionPatient of slice ``k``.
    slice_locations_mm : (n_slices,) ndarray
        Signed distance of each slice along the IOP normal (SliceLocation).
    """

    orientation: tuple[float, float, float, float, float, float]
    pixel_spacing_mm: tuple[float, float]
    slice_spacing_mm: float
    positions_lps_mm: NDArray[np.float64]
    slice_locations_mm: NDArray[np.float64]


def plane_from_affine(affine: ArrayLike, n_slices: int) -> SlicePlane:
    """DICOM slice attributes for a grid of ``n_slices`` slices with voxel-to-LPS ``affine``."""
    a = np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(a[:3, :3], axis=0)
    direction = a[:3, :3] / spacing
    row, col = direction[:, 0], direction[:, 1]
    normal = np.cross(row, col)
    positions = a[:3, 3] + np.arange(n_slices)[:, np.newaxis] * a[:3, 2]
    return SlicePlane(
        orientation=(*(float(v) for v in row), *(float(v) for v in col)),  # type: ignore[arg-type]
        pixel_spacing_mm=(float(spacing[1]), float(spacing[0])),
        slice_spacing_mm=float(spacing[2]),
        positions_lps_mm=positions,
        slice_locations_mm=positions @ normal,
    )


def row_column_directions(
    orientation: Sequence[float], *, where: str | None = None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Unit row and column directions from an ImageOrientationPatient value.

    Values rounded by the scanner (a few decimals) are re-orthonormalised; directions further
    from orthogonal than :data:`ORTHOGONAL_TOL` are rejected.
    """
    iop = np.asarray(orientation, dtype=np.float64)
    row, col = iop[:3], iop[3:]
    if np.linalg.norm(row) == 0 or np.linalg.norm(col) == 0:
        raise ReadError(f"ImageOrientationPatient {iop.tolist()} has a zero vector", path=where)
    row = row / np.linalg.norm(row)
    col = col / np.linalg.norm(col)
    if abs(float(row @ col)) > ORTHOGONAL_TOL:
        raise ReadError(
            f"ImageOrientationPatient {iop.tolist()}: row and column directions are not "
            "perpendicular",
            path=where,
            fix="the header is corrupt; re-export the series from the scanner or PACS",
        )
    col = col - (row @ col) * row
    return row, col / np.linalg.norm(col)


def stack_affine(
    positions_lps_mm: ArrayLike,
    orientation: Sequence[float],
    pixel_spacing_mm: Sequence[float],
    *,
    names: Sequence[str],
    single_slice_spacing_mm: float | None = None,
    where: str | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """The LPS affine of a stack of slices and the order that sorts them along ``k``.

    Parameters
    ----------
    positions_lps_mm : (n, 3) array_like
        ImagePositionPatient of each slice, in any order.
    orientation : sequence of 6 float
        ImageOrientationPatient shared by the slices.
    pixel_spacing_mm : sequence of 2 float
        PixelSpacing shared by the slices (between rows, between columns).
    names : sequence of str
        A name per slice (its file), used in error messages.
    single_slice_spacing_mm : float, optional
        Spacing along ``k`` when there is only one slice (SpacingBetweenSlices or
        SliceThickness); 1 mm when omitted.
    where : str, optional
        The series folder, for error messages.

    Returns
    -------
    affine : (4, 4) ndarray
        Voxel index to LPS mm; axis ``k`` points along the IOP normal.
    order : (n,) ndarray of int
        ``order[k]`` is the index (into ``positions_lps_mm``) of slice ``k``.

    Raises
    ------
    ReadError
        Two slices at one position, a gap (missing slices), uneven spacing, or slices that
        are not stacked along the normal (gantry tilt).
    """
    pos = np.asarray(positions_lps_mm, dtype=np.float64).reshape(-1, 3)
    row, col = row_column_directions(orientation, where=where)
    normal = np.cross(row, col)
    distance = pos @ normal
    order = np.argsort(distance, kind="stable")
    d = distance[order]
    if len(d) == 1:
        spacing = single_slice_spacing_mm or 1.0
    else:
        spacing = _check_spacing(d, [names[o] for o in order], where)
        _check_stacking(pos[order], d, normal, spacing, [names[o] for o in order], where)
    affine = np.eye(4)
    affine[:3, 0] = row * float(pixel_spacing_mm[1])
    affine[:3, 1] = col * float(pixel_spacing_mm[0])
    affine[:3, 2] = normal * spacing
    affine[:3, 3] = pos[order[0]]
    return affine, order


def _tolerance_mm(spacing_mm: float) -> float:
    return max(SPACING_TOL_MM, SPACING_TOL_REL * spacing_mm)


def _check_spacing(d: NDArray[np.float64], names: list[str], where: str | None) -> float:
    gaps = np.diff(d)
    typical = float(np.median(gaps))
    tol = _tolerance_mm(typical)
    dup = np.flatnonzero(gaps <= tol)
    if dup.size:
        n = int(dup[0])
        raise ReadError(
            f"slices share a position: {names[n]} and {names[n + 1]} both lie at "
            f"{d[n]:.4g} mm along the slice normal",
            path=where,
            fix="the folder mixes several images per position (another series copied in, "
            "phase and magnitude, or repeated acquisitions); keep one set of slices per folder",
        )
    spacing = float((d[-1] - d[0]) / (len(d) - 1))
    bad = np.flatnonzero(np.abs(gaps - typical) > tol)
    if bad.size == 0:
        return spacing
    n = int(bad[0])
    if gaps[n] > 1.5 * typical:
        missing = round(gaps[n] / typical) - 1
        problem = (
            f"about {missing} slice(s) missing between {names[n]} and {names[n + 1]}: "
            f"they are {gaps[n]:.4g} mm apart, the other slices {typical:.4g} mm"
        )
        fix = "copy the complete series (every file) into the folder"
    else:
        problem = (
            f"uneven slice spacing: {names[n]} and {names[n + 1]} are {gaps[n]:.4g} mm apart, "
            f"most slices {typical:.4g} mm"
        )
        fix = "resample the series to even spacing (e.g. with the scanner console or dcm2niix)"
    raise ReadError(problem, path=where, fix=fix)


def _check_stacking(
    pos: NDArray[np.float64],
    d: NDArray[np.float64],
    normal: NDArray[np.float64],
    spacing: float,
    names: list[str],
    where: str | None,
) -> None:
    # Each slice must sit on the line through the first one along the normal; a tilted gantry
    # shifts slices sideways and makes a sheared grid that an affine cannot represent.
    expected = pos[0] + (d - d[0])[:, np.newaxis] * normal
    offset = np.linalg.norm(pos - expected, axis=1)
    worst = int(np.argmax(offset))
    if offset[worst] > _tolerance_mm(spacing):
        raise ReadError(
            f"slices are not stacked along their normal: {names[worst]} is shifted "
            f"{offset[worst]:.4g} mm sideways from {names[0]} (gantry tilt or a sheared stack)",
            path=where,
            fix="resample the series onto an orthogonal grid (e.g. dcm2niix corrects gantry "
            "tilt) and read the NIfTI",
        )
