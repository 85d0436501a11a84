"""Slabs: train, validation and test parts of one scan along its cranio-caudal axis.

With one scan pair (or a few), patients cannot be split; the slices can. :func:`slab_ranges`
cuts the part of a CT grid that the MR covers into three slabs in the order of
:data:`PART_NAMES`, with gaps between them so that no voxel, and no training patch drawn
inside a slab, belongs to two parts. ``synthct dataset split --unit slab`` writes each slab as
a registered pair (:func:`synthct.dataset.pairs.write_pair`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from synthct.errors import SynthctError
from synthct.geometry import Geometry

__all__ = ["PART_NAMES", "Slab", "cranio_caudal_axis", "slab_ranges"]

#: The parts of a slab split, in cranio-caudal order of increasing array index.
PART_NAMES: tuple[str, ...] = ("train", "validation", "test")


@dataclass(frozen=True)
class Slab:
    """One part of a slab split: CT-grid indices ``[start, stop)`` along ``axis``.

    Attributes
    ----------
    part : str
        ``train``, ``validation`` or ``test``.
    axis : int
        The CT array axis closest to the cranio-caudal (S) direction.
    start, stop : int
        Index range along ``axis`` (stop exclusive).
    """

    part: str
    axis: int
    start: int
    stop: int

    def to_dict(self, grid: Geometry) -> dict[str, Any]:
        """JSON form, with the slab's S range in mm (voxel centres) for the reader."""
        ends = np.zeros((2, 3))
        ends[:, self.axis] = (self.start, self.stop - 1)
        s_mm = sorted(float(v) for v in grid.index_to_lps(ends)[:, 2])
        return {
            "part": self.part, "axis": self.axis, "start": self.start, "stop": self.stop,
            "s_range_mm": s_mm,
        }  # fmt: skip


def cranio_caudal_axis(grid: Geometry) -> int:
    """The array axis of ``grid`` closest to the patient's S axis."""
    return int(np.argmax(np.abs(grid.direction[2, :])))


def slab_ranges(
    grid: Geometry,
    covered: NDArray[np.bool_],
    *,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    gap_mm: float = 6.0,
    min_slices: int = 4,
) -> list[Slab]:
    """Cut the MR-covered extent of a CT grid into train, validation and test slabs.

    The slabs follow each other along the cranio-caudal axis in the order of
    :data:`PART_NAMES` (increasing array index), separated by gaps of at least ``gap_mm`` so
    that no voxel, and no patch drawn inside a slab, belongs to two parts.

    Parameters
    ----------
    grid : Geometry
        The CT grid.
    covered : (I, J, K) bool ndarray
        Voxels with MR data (:func:`mr_coverage`).
    fractions : 3 floats
        Shares of the usable slices (the covered extent less the gaps) per part.
    gap_mm : float
        Distance left out between neighbouring slabs, mm.
    min_slices : int
        Fewest slices a slab may have.

    Raises
    ------
    SynthctError
        The covered extent is too short for three slabs and two gaps.
    """
    axis = cranio_caudal_axis(grid)
    others = tuple(a for a in range(3) if a != axis)
    slices = np.flatnonzero(covered.any(axis=others))
    n = 0 if slices.size == 0 else int(slices[-1] - slices[0] + 1)
    gap = math.ceil(gap_mm / grid.spacing_mm[axis])
    usable = n - 2 * gap
    shares = np.asarray(fractions, dtype=float) / float(np.sum(fractions))
    sizes = np.floor(shares * max(usable, 0)).astype(int)
    if len(fractions) != 3 or usable <= 0 or sizes.min() < min_slices:
        raise SynthctError(
            f"the MR covers {n} slice(s) of {grid.spacing_mm[axis]:.3g} mm along the CT's "
            f"cranio-caudal axis: too few for three slabs of at least {min_slices} slices "
            f"with {gap_mm:g} mm gaps",
            path="--slab-gap-mm",
            fix="lower --slab-gap-mm, or split by patient with more cases",
        )
    sizes[0] += usable - int(sizes.sum())  # rounding leftovers go to training
    out, start = [], int(slices[0])
    for part, size in zip(PART_NAMES, sizes, strict=True):
        out.append(Slab(part, axis, start, start + int(size)))
        start += int(size) + gap
    return out
