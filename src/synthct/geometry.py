"""Voxel grids in patient space: a shape plus a float64 4x4 affine in LPS millimetres.

The affine maps a voxel index ``(i, j, k, 1)`` (array axis 0, 1, 2) to a point in LPS
(DICOM/ITK) millimetres: ``x_L``, ``y_P``, ``z_S``. Column ``n`` of its upper 3x3 block is
the step in mm taken by one voxel along array axis ``n``; its length is the spacing and its
direction the axis direction. RAS affines (NIfTI, nibabel) are converted only at the I/O
boundary, with :func:`ras_to_lps`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from synthct.errors import GeometryError, GeometryMismatchError

#: Tolerance on positions and spacings, in mm, when two grids are compared.
DEFAULT_ATOL_MM = 1e-3
#: Tolerance on direction cosines when two grids are compared.
DEFAULT_ATOL_DIRECTION = 1e-5
#: How far from orthonormal a direction matrix may be before it is rejected.
ORTHOGONALITY_ATOL = 1e-4

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# The anatomical direction an LPS axis points to, for a positive and a negative step.
_AXIS_LABELS = (("L", "R"), ("P", "A"), ("S", "I"))


def ras_to_lps(affine_ras: ArrayLike) -> NDArray[np.float64]:
    """Convert a RAS voxel-to-world affine (NIfTI, nibabel) to LPS (DICOM, ITK).

    The conversion is its own inverse, so it also turns LPS into RAS.
    """
    return _LPS_TO_RAS @ np.asarray(affine_ras, dtype=np.float64)


lps_to_ras = ras_to_lps


def affine_from_parameters(
    spacing_mm: Sequence[float],
    origin_lps_mm: Sequence[float] = (0.0, 0.0, 0.0),
    direction: ArrayLike | None = None,
) -> NDArray[np.float64]:
    """Build an LPS affine from spacing, origin and a direction matrix (ITK's parameters).

    Parameters
    ----------
    spacing_mm : sequence of 3 float
        Voxel size along array axes 0, 1, 2, in mm.
    origin_lps_mm : sequence of 3 float
        LPS position of the centre of voxel (0, 0, 0), in mm.
    direction : (3, 3) array_like, optional
        Orthonormal matrix whose columns are the directions of array axes 0, 1, 2.
        Identity (axes pointing L, P, S) when omitted.
    """
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    if spacing.shape != (3,):
        raise GeometryError(
            f"spacing_mm must have 3 values, got {spacing.tolist()}", path="spacing_mm"
        )
    rotation = np.eye(3) if direction is None else np.asarray(direction, dtype=np.float64)
    if rotation.shape == (9,):
        rotation = rotation.reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing)
    affine[:3, 3] = np.asarray(origin_lps_mm, dtype=np.float64)
    return affine


def validate_affine(affine: ArrayLike, *, where: str | None = None) -> NDArray[np.float64]:
    """Return ``affine`` as a read-only float64 4x4 array, or raise a :class:`GeometryError`.

    Checks the shape, finiteness, the last row ``[0, 0, 0, 1]``, positive spacing and an
    orthonormal direction matrix (ITK and DICOM cannot represent sheared grids).
    """
    a = np.array(affine, dtype=np.float64, copy=True)
    if a.shape != (4, 4):
        raise GeometryError(
            f"an affine must be a 4x4 matrix, got shape {a.shape}",
            path=where,
            fix="pass the full homogeneous 4x4 voxel-to-LPS matrix",
        )
    if not np.all(np.isfinite(a)):
        raise GeometryError("the affine contains NaN or infinite values", path=where)
    if not np.allclose(a[3], (0.0, 0.0, 0.0, 1.0), atol=1e-9):
        raise GeometryError(
            f"the last row of an affine must be [0, 0, 0, 1], got {a[3].tolist()}",
            path=where,
            fix="pass an affine (voxel index to mm), not a projective matrix",
        )
    spacing = np.linalg.norm(a[:3, :3], axis=0)
    if np.any(spacing <= 0):
        raise GeometryError(
            f"voxel spacing must be positive along every axis, got {spacing.tolist()} mm",
            path=where,
        )
    direction = a[:3, :3] / spacing
    gram = direction.T @ direction
    if not np.allclose(gram, np.eye(3), atol=ORTHOGONALITY_ATOL):
        angles = np.degrees(np.arccos(np.clip(gram[np.triu_indices(3, 1)], -1, 1)))
        raise GeometryError(
            "the direction matrix is not orthogonal (axes meet at "
            f"{np.round(angles, 3).tolist()} degrees instead of 90): a sheared grid cannot be "
            "represented in DICOM or ITK",
            path=where,
            fix="resample the image onto an orthogonal grid (e.g. with the scanner software "
            "or nibabel) or correct the header's sform/qform",
        )
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Geometry:
    """A 3D voxel grid: spatial shape and LPS affine.

    Parameters
    ----------
    shape : tuple of 3 int
        Number of voxels along array axes 0, 1, 2.
    affine : (4, 4) array_like
        Voxel index to LPS mm, validated by :func:`validate_affine`.
    """

    shape: tuple[int, int, int]
    affine: NDArray[np.float64]

    def __post_init__(self) -> None:
        shape = tuple(int(n) for n in self.shape)
        if len(shape) != 3 or min(shape) < 1:
            raise GeometryError(f"a grid needs 3 positive dimensions, got {self.shape}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "affine", validate_affine(self.affine))

    @classmethod
    def from_parameters(
        cls,
        shape: Sequence[int],
        spacing_mm: Sequence[float],
        origin_lps_mm: Sequence[float] = (0.0, 0.0, 0.0),
        direction: ArrayLike | None = None,
    ) -> Geometry:
        """Grid from ITK-style spacing, origin and direction (:func:`affine_from_parameters`)."""
        affine = affine_from_parameters(spacing_mm, origin_lps_mm, direction)
        return cls(tuple(shape), affine)  # type: ignore[arg-type]

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size along array axes 0, 1, 2, in mm."""
        s = np.linalg.norm(self.affine[:3, :3], axis=0)
        return (float(s[0]), float(s[1]), float(s[2]))

    @property
    def origin_lps_mm(self) -> tuple[float, float, float]:
        """LPS position of the centre of voxel (0, 0, 0), in mm."""
        o = self.affine[:3, 3]
        return (float(o[0]), float(o[1]), float(o[2]))

    @property
    def direction(self) -> NDArray[np.float64]:
        """Orthonormal 3x3 matrix whose columns are the directions of the array axes in LPS."""
        return self.affine[:3, :3] / np.asarray(self.spacing_mm)

    @property
    def orientation_code(self) -> str:
        """Three letters: the anatomical direction each array axis increases toward.

        An ITK identity direction gives ``"LPS"``; a NIfTI stored in RAS gives ``"RAS"``.
        Oblique axes are labelled by their dominant component.
        """
        letters = []
        for column in self.direction.T:
            axis = int(np.argmax(np.abs(column)))
            letters.append(_AXIS_LABELS[axis][0 if column[axis] > 0 else 1])
        return "".join(letters)

    @property
    def is_oblique(self) -> bool:
        """True when some axis is not aligned with L, P or S (within 1e-6)."""
        return bool(np.any(np.abs(np.abs(self.direction).max(axis=0) - 1.0) > 1e-6))

    @property
    def voxel_volume_mm3(self) -> float:
        """Volume of one voxel in mm^3."""
        return float(np.prod(self.spacing_mm))

    @property
    def extent_mm(self) -> tuple[float, float, float]:
        """Size of the field of view along each array axis, in mm (voxel edges included)."""
        e = np.asarray(self.shape) * np.asarray(self.spacing_mm)
        return (float(e[0]), float(e[1]), float(e[2]))

    def index_to_lps(self, index: ArrayLike) -> NDArray[np.float64]:
        """Map voxel indices (shape ``(..., 3)``, may be fractional) to LPS mm."""
        ijk = np.asarray(index, dtype=np.float64)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def lps_to_index(self, points_lps_mm: ArrayLike) -> NDArray[np.float64]:
        """Map LPS points in mm (shape ``(..., 3)``) to fractional voxel indices."""
        p = np.asarray(points_lps_mm, dtype=np.float64)
        inverse = np.linalg.inv(self.affine)
        return p @ inverse[:3, :3].T + inverse[:3, 3]

    def contains_lps(self, points_lps_mm: ArrayLike) -> NDArray[np.bool_]:
        """Whether LPS points fall inside the grid (within half a voxel of a voxel centre)."""
        ijk = self.lps_to_index(points_lps_mm)
        upper = np.asarray(self.shape) - 0.5
        return np.all((ijk >= -0.5) & (ijk <= upper), axis=-1)

    def differences(
        self,
        other: Geometry,
        *,
        atol_mm: float = DEFAULT_ATOL_MM,
        atol_direction: float = DEFAULT_ATOL_DIRECTION,
    ) -> list[str]:
        """List how this grid differs from ``other`` beyond the tolerances (empty when equal)."""
        found = []
        if self.shape != other.shape:
            found.append(f"shape {self.shape} vs {other.shape}")
        if not np.allclose(self.spacing_mm, other.spacing_mm, rtol=0, atol=atol_mm):
            found.append(f"spacing {_fmt(self.spacing_mm)} vs {_fmt(other.spacing_mm)} mm")
        if not np.allclose(self.origin_lps_mm, other.origin_lps_mm, rtol=0, atol=atol_mm):
            found.append(
                f"origin {_fmt(self.origin_lps_mm)} vs {_fmt(other.origin_lps_mm)} mm (LPS)"
            )
        if not np.allclose(self.direction, other.direction, rtol=0, atol=atol_direction):
            found.append(f"orientation {self.orientation_code} vs {other.orientation_code}")
        return found

    def is_close(
        self,
        other: Geometry,
        *,
        atol_mm: float = DEFAULT_ATOL_MM,
        atol_direction: float = DEFAULT_ATOL_DIRECTION,
    ) -> bool:
        """True when both grids have the same shape and affine within the tolerances."""
        return not self.differences(other, atol_mm=atol_mm, atol_direction=atol_direction)

    def describe(self) -> str:
        """One line with shape, spacing, orientation and origin."""
        text = (
            f"shape {self.shape}, spacing {_fmt(self.spacing_mm)} mm, "
            f"orientation {self.orientation_code}{' (oblique)' if self.is_oblique else ''}, "
            f"origin {_fmt(self.origin_lps_mm)} mm LPS"
        )
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description of the grid."""
        return {
            "shape": list(self.shape),
            "spacing_mm": list(self.spacing_mm),
            "origin_lps_mm": list(self.origin_lps_mm),
            "direction_lps": self.direction.round(12).tolist(),
            "orientation_code": self.orientation_code,
            "affine_lps": self.affine.tolist(),
        }

    def __repr__(self) -> str:
        return f"Geometry({self.describe()})"


def require_same_geometry(
    a: Geometry,
    b: Geometry,
    *,
    names: tuple[str, str] = ("first", "second"),
    atol_mm: float = DEFAULT_ATOL_MM,
    atol_direction: float = DEFAULT_ATOL_DIRECTION,
) -> None:
    """Raise :class:`GeometryMismatchError` unless ``a`` and ``b`` are the same grid.

    The message prints both geometries, what differs, and how to fix it.
    """
    found = a.differences(b, atol_mm=atol_mm, atol_direction=atol_direction)
    if not found:
        return
    raise GeometryMismatchError(
        f"{names[0]} and {names[1]} are on different voxel grids ({'; '.join(found)}).\n"
        f"  {names[0]}: {a.describe()}\n"
        f"  {names[1]}: {b.describe()}",
        fix=(
            "if both are in the same patient frame, resample one onto the other's grid "
            "(synthct.resample.resample_to, or the CLI's automatic resampling); if they come "
            "from different scans, register them first (--register)"
        ),
    )


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"
