"""Building blocks for implicit (point-evaluated) phantoms: grid boxes, local frames, depths.

A structure is drawn by evaluating a function of LPS position at the voxel centres of a
grid, but only inside the index box that covers the structure's LPS bounding box, so the
cost follows the structure's size, not the grid's. Coordinates are kept as *broadcastable*
arrays: on an axis-aligned grid the L coordinate varies along one array axis only, so it
is stored with shape ``(n, 1, 1)`` (or a permutation) and full-size arrays appear only when
coordinates are combined.

The shape functions return an approximate signed distance in mm to the surface (positive
inside): ``(1 - F) / |grad F|`` for a gauge function ``F`` (``F = 1`` on the surface,
homogeneous of degree 1). It is exact along the axes of an ellipse and accurate to first order
near any surface, which is where it is used: shells (cortical bone, dura) are the points
whose depth is below a thickness.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from synthct.geometry import Geometry

FloatArray = NDArray[np.float32]
Box = tuple[slice, slice, slice]

# Keeps 0/0 at the very centre of a shape finite (see superellipse_depth).
_TINY = np.float32(1e-20)


class GridSampler:
    """Voxel-centre coordinates of a :class:`Geometry`, box by box.

    Parameters
    ----------
    geometry : Geometry
        The grid whose voxel centres are evaluated.
    """

    def __init__(self, geometry: Geometry) -> None:
        self.geometry = geometry
        self.shape = geometry.shape
        self._affine = np.asarray(geometry.affine, dtype=np.float64)
        self._inverse = np.linalg.inv(self._affine)

    def box(self, lo_lps_mm: ArrayLike, hi_lps_mm: ArrayLike) -> Box | None:
        """Index box of the voxels whose centres may fall in an LPS box (``None`` when empty).

        On an oblique grid the index box is the one around the LPS box's 8 corners: larger
        than needed but never too small.
        """
        lo = np.asarray(lo_lps_mm, dtype=np.float64)
        hi = np.asarray(hi_lps_mm, dtype=np.float64)
        corners = np.array(
            [
                [(lo, hi)[a][0], (lo, hi)[b][1], (lo, hi)[c][2]]
                for a in (0, 1)
                for b in (0, 1)
                for c in (0, 1)
            ]
        )
        ijk = corners @ self._inverse[:3, :3].T + self._inverse[:3, 3]
        first = np.maximum(np.ceil(ijk.min(axis=0) - 1e-6), 0).astype(int)
        last = np.minimum(np.floor(ijk.max(axis=0) + 1e-6), np.asarray(self.shape) - 1).astype(int)
        if np.any(last < first):
            return None
        return (
            slice(int(first[0]), int(last[0]) + 1),
            slice(int(first[1]), int(last[1]) + 1),
            slice(int(first[2]), int(last[2]) + 1),
        )

    def full_box(self) -> Box:
        """The box of the whole grid."""
        return (slice(0, self.shape[0]), slice(0, self.shape[1]), slice(0, self.shape[2]))

    def points(self, box: Box) -> tuple[NDArray[np.float64], ...]:
        """LPS coordinates ``(x, y, z)`` of the voxel centres in ``box``, as broadcastable arrays.

        Each coordinate only carries the array axes it depends on; together they broadcast to
        the box's shape.
        """
        index = []
        for axis, sl in enumerate(box):
            shape = [1, 1, 1]
            shape[axis] = sl.stop - sl.start
            index.append(np.arange(sl.start, sl.stop, dtype=np.float64).reshape(shape))
        coords = []
        for c in range(3):
            total: NDArray[np.float64] = np.full((1, 1, 1), self._affine[c, 3])
            for axis in range(3):
                step = self._affine[c, axis]
                if step != 0.0:
                    total = total + step * index[axis]
            coords.append(total)
        return tuple(coords)

    def corners_lps(self) -> NDArray[np.float64]:
        """LPS positions of the 8 corner voxel centres of the grid, shape ``(8, 3)``."""
        n = np.asarray(self.shape, dtype=np.float64) - 1
        ijk = np.array([[a, b, c] for a in (0, n[0]) for b in (0, n[1]) for c in (0, n[2])])
        return ijk @ self._affine[:3, :3].T + self._affine[:3, 3]

    def box_shape(self, box: Box) -> tuple[int, int, int]:
        """Number of voxels along each axis of ``box``."""
        return (box[0].stop - box[0].start, box[1].stop - box[1].start, box[2].stop - box[2].start)


def to_local(
    xyz: Sequence[NDArray[np.float64]], origin: NDArray[np.float64], axes: NDArray[np.float64]
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Coordinates in a local frame: ``axes[:, n] . (p - origin)`` for ``n = 0, 1, 2``.

    ``axes`` holds the frame's unit vectors in LPS as columns. The results are float32 and
    broadcast to the shape of ``xyz`` combined.
    """
    deltas = [(np.asarray(xyz[c]) - origin[c]).astype(np.float32) for c in range(3)]
    out = []
    for n in range(3):
        acc: FloatArray | None = None
        for c in range(3):
            weight = float(axes[c, n])
            if abs(weight) < 1e-12:
                continue
            term = deltas[c] * np.float32(weight)
            acc = term if acc is None else acc + term
        assert acc is not None
        out.append(acc)
    return out[0], out[1], out[2]


def plane_side(
    xyz: Sequence[NDArray[np.float64]], point: NDArray[np.float64], normal: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Signed distance (mm, float64) of LPS points from a plane, positive along ``normal``.

    Computed in float64 from LPS coordinates so that two segments sharing a plane classify
    every point identically (each point lies in exactly one slab).
    """
    acc: NDArray[np.float64] = np.zeros((1, 1, 1))
    for c in range(3):
        if normal[c] != 0.0:
            acc = acc + (np.asarray(xyz[c]) - point[c]) * normal[c]
    return acc


def local_box_to_lps(
    origin: NDArray[np.float64],
    axes: NDArray[np.float64],
    lo_local: Sequence[float],
    hi_local: Sequence[float],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """LPS bounding box of a box given in a local frame (see :func:`to_local`)."""
    lo = np.asarray(lo_local, dtype=np.float64)
    hi = np.asarray(hi_local, dtype=np.float64)
    corners = np.array(
        [
            [(lo, hi)[a][0], (lo, hi)[b][1], (lo, hi)[c][2]]
            for a in (0, 1)
            for b in (0, 1)
            for c in (0, 1)
        ]
    )
    lps = corners @ axes.T + origin
    return lps.min(axis=0), lps.max(axis=0)


def superellipse_depth(
    x: ArrayLike, y: ArrayLike, a: ArrayLike, b: ArrayLike, n: int = 2
) -> FloatArray:
    """Approximate signed distance (mm, positive inside) to ``|x/a|^n + |y/b|^n = 1``.

    Parameters
    ----------
    x, y : array_like
        In-plane coordinates relative to the centre, in mm.
    a, b : array_like
        Semi-axes in mm (scalars or arrays broadcasting with ``x``).
    n : {2, 3, 4}
        Exponent: 2 is an ellipse, larger values give a rounded rectangle.
    """
    a, b = _f32(a), _f32(b)
    ax = np.abs(x) / a
    ay = np.abs(y) / b
    if n == 2:
        q = ax * ax + ay * ay
        f = np.sqrt(q)
        gx, gy = ax / a, ay / b
    elif n == 3:
        q = ax * ax * ax + ay * ay * ay
        f = np.cbrt(q)
        gx, gy = ax * ax / a, ay * ay / b
    elif n == 4:
        ax2, ay2 = ax * ax, ay * ay
        q = ax2 * ax2 + ay2 * ay2
        f = np.sqrt(np.sqrt(q))
        gx, gy = ax2 * ax / a, ay2 * ay / b
    else:
        raise ValueError(f"superellipse exponent must be 2, 3 or 4, got {n}")
    g = np.sqrt(gx * gx + gy * gy)
    # |grad F| = F g / q; the ratio q / (F g) stays finite at the centre, where it tends to a
    # length between the semi-axes: _TINY * max semi-axis supplies that limit at 0/0.
    big = np.maximum(a, b)
    depth = (1.0 - f) * (q + _TINY * big) / (f * g + _TINY)
    return np.asarray(depth, dtype=np.float32)


def ellipsoid_depth(
    x: ArrayLike, y: ArrayLike, z: ArrayLike, rx: float, ry: float, rz: float
) -> FloatArray:
    """Approximate signed distance (mm, positive inside) to an axis-aligned ellipsoid."""
    r = _f32([rx, ry, rz])
    ax, ay, az = _f32(x) / r[0], _f32(y) / r[1], _f32(z) / r[2]
    f = np.sqrt(ax * ax + ay * ay + az * az)
    gx, gy, gz = ax / r[0], ay / r[1], az / r[2]
    g = np.sqrt(gx * gx + gy * gy + gz * gz)
    depth = (1.0 - f) * (f + _TINY * r.max()) / (g + _TINY)
    return np.asarray(depth, dtype=np.float32)


def _f32(value: ArrayLike) -> FloatArray:
    """``value`` as float32, so that numpy scalars do not promote float32 arrays to float64."""
    return np.asarray(value, dtype=np.float32)


def paint(out: NDArray[np.uint8], box: Box, mask: NDArray[np.bool_], label: int) -> None:
    """Set ``out[box]`` to ``label`` where ``mask`` (broadcast to the box) is true."""
    view = out[box]
    np.copyto(view, np.asarray(label, dtype=out.dtype), where=np.broadcast_to(mask, view.shape))
