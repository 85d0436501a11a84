"""Lossless reorientation: the same voxels with their array axes permuted and flipped.

A network learns anatomy in the array layout it was trained in: with axis 1 running toward
posterior, a vertebral body lies at lower indices than its canal. A sagittal acquisition
(array axes P, S, L) or a NIfTI stored in RAS shows it the same anatomy transposed or
mirrored, which it has never seen. synthct therefore brings every training case and every
MRI a model is applied to into one orientation (``plan.orientation``, ``"LPS"`` by default;
:mod:`synthct.synthesis.config`) and the sCT back, as MONAI's ``Orientation`` and TorchIO's
``ToCanonical`` do. Permuting and flipping axes moves no voxel value, so the round trip is
exact; an oblique grid gets the nearest orientation (the assignment of array axes to
anatomical axes with the largest direction cosines) and stays oblique.

An orientation code names, for array axes 0, 1 and 2, the anatomical direction in which the
index increases: ``"LPS"`` (the ITK/DICOM identity), ``"RAS"`` (a NIfTI convention),
``"PSL"`` (a sagittal slab whose slices run left). It holds one letter of each pair L/R,
P/A, S/I.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from synthct.errors import GeometryError
from synthct.geometry import Geometry

# LPS axis index and sign of each letter: L, P, S point along +x, +y, +z of LPS.
_LETTERS = {"L": (0, 1), "R": (0, -1), "P": (1, 1), "A": (1, -1), "S": (2, 1), "I": (2, -1)}


def parse_orientation_code(code: str, *, where: str | None = None) -> str:
    """``code`` in upper case, checked: three letters, one of each pair L/R, P/A, S/I.

    Raises
    ------
    GeometryError
        Another string (the message names the pairs and an example).
    """
    text = str(code).strip().upper()
    axes = [_LETTERS[c][0] for c in text if c in _LETTERS]
    if len(text) != 3 or len(axes) != 3 or sorted(axes) != [0, 1, 2]:
        raise GeometryError(
            f"orientation code {code!r} is not three letters with one of each pair L/R, P/A, S/I",
            path=where,
            fix="give e.g. 'LPS' (the ITK identity), 'RAS' or 'PSL'",
        )
    return text


@dataclass(frozen=True)
class Reorientation:
    """How to bring arrays of one grid into an orientation, and back.

    Attributes
    ----------
    axes : tuple of 3 int
        New array axis ``t`` is old array axis ``axes[t]``.
    flips : tuple of 3 bool
        Whether new array axis ``t`` runs opposite to its old axis.
    source : Geometry
        The grid the arrays are on.
    geometry : Geometry
        The reoriented grid (same voxel centres, same field of view).
    """

    axes: tuple[int, int, int]
    flips: tuple[bool, bool, bool]
    source: Geometry
    geometry: Geometry

    @property
    def is_identity(self) -> bool:
        """True when the arrays need no change."""
        return self.axes == (0, 1, 2) and not any(self.flips)

    def apply(self, array: NDArray[Any], *, channel_axes: int = 0) -> NDArray[Any]:
        """``array`` (``[*channels, i, j, k]`` on :attr:`source`) on :attr:`geometry`."""
        lead = tuple(range(channel_axes))
        out = np.transpose(array, (*lead, *(channel_axes + a for a in self.axes)))
        flipped = tuple(channel_axes + t for t in range(3) if self.flips[t])
        return np.flip(out, axis=flipped) if flipped else out

    def undo(self, array: NDArray[Any], *, channel_axes: int = 0) -> NDArray[Any]:
        """``array`` on :attr:`geometry` back on :attr:`source` (the inverse of :meth:`apply`)."""
        flipped = tuple(channel_axes + t for t in range(3) if self.flips[t])
        out = np.flip(array, axis=flipped) if flipped else array
        inverse = np.argsort(self.axes)
        lead = tuple(range(channel_axes))
        return np.transpose(out, (*lead, *(channel_axes + int(a) for a in inverse)))

    def axis_on_source(self, axis: int) -> int:
        """The source array axis that new array axis ``axis`` comes from."""
        return self.axes[axis]


def reorientation(geometry: Geometry, code: str) -> Reorientation:
    """The permutation and flips that bring ``geometry``'s arrays into orientation ``code``.

    Each anatomical axis of ``code`` takes the array axis whose direction is closest to it
    (the assignment with the largest sum of absolute direction cosines over the six
    permutations), flipped where it points the other way.
    """
    wanted = [_LETTERS[c] for c in parse_orientation_code(code)]
    direction = geometry.direction  # columns: array axes in LPS
    best = max(
        itertools.permutations(range(3)),
        key=lambda p: sum(abs(direction[wanted[t][0], p[t]]) for t in range(3)),
    )
    axes = (int(best[0]), int(best[1]), int(best[2]))
    flips = tuple(bool(np.sign(direction[wanted[t][0], axes[t]]) != wanted[t][1]) for t in range(3))
    old = geometry.affine
    affine = np.eye(4)
    affine[:3, 3] = old[:3, 3]
    for t in range(3):
        column = old[:3, axes[t]]
        if flips[t]:
            # new index 0 is the old last voxel along that axis
            affine[:3, 3] += column * (geometry.shape[axes[t]] - 1)
            column = -column
        affine[:3, t] = column
    shape = tuple(geometry.shape[a] for a in axes)
    new = Geometry(shape, affine)  # type: ignore[arg-type]
    return Reorientation(axes, (flips[0], flips[1], flips[2]), geometry, new)
