"""Intervertebral discs and the spinal canal from labelled vertebrae, by morphology.

* The **vertebral body** of a labelled vertebra is its part anterior to the canal: the
  labelled cord's front less ~3 mm, else the vertebral foramen (the largest hole of the
  vertebra's mask in an axial plane, behind its median), else the front third of the vertebra.
* A **disc** voxel lies between the bodies of two adjacent labelled vertebrae: along the
  cranio-caudal axis, within ``max_disc_height_mm`` of the lower body below it and of the upper
  body above it, outside every bone, with a soft-tissue CT number.
* The **canal** is the vertebral foramen of each vertebra plus, between adjacent vertebrae,
  the voxels lying between the two foramina.

Disc heights: lumbar ~8-12 mm, cervical ~4-6 mm (Gilad I, Nissan M. Spine 1986;11:154-157,
as in :mod:`synthct.phantom.levels`); ``max_disc_height_mm = 16`` leaves room for tall and
tilted discs and the 3 mm voxels of clinical CT.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from synthct.geometry import Geometry

#: Largest disc height searched between two vertebral bodies, mm.
MAX_DISC_HEIGHT_MM = 16.0
#: Smallest cross-section (mm^2) of a hole in a vertebra's mask taken as the canal: the adult
#: canal is ~150-300 mm^2 (AP ~12-18 mm by ~15-25 mm wide, as in synthct.phantom.levels).
MIN_FORAMEN_AREA_MM2 = 40.0
#: Distance (mm) from the cord's anterior surface to the posterior wall of the vertebral body:
#: ventral CSF and dura, ~2-4 mm in adults (cf. the canal and cord columns of
#: synthct.phantom.levels: canal AP minus cord AP, split front and back).
CORD_TO_BODY_MM = 3.0
#: Without cord or foramen: the body takes this anterior fraction of the vertebra's AP depth
#: (body depth ~30-35 mm of a ~80-100 mm vertebra including the spinous process, levels table).
BODY_DEPTH_FRACTION = 0.35
#: CT numbers a disc voxel may have (disc ~70-90 HU; partial volume with fat or end plate).
DISC_HU_RANGE = (-30.0, 250.0)


def cranial_axis(geometry: Geometry) -> tuple[int, int]:
    """Array axis closest to S (cranial) and the index step (+1/-1) that moves cranially."""
    direction = geometry.direction
    axis = int(np.argmax(np.abs(direction[2])))
    return axis, (1 if direction[2, axis] > 0 else -1)


def _posterior_mm(geometry: Geometry) -> NDArray[np.float64]:
    """LPS y (posterior, mm) of every voxel centre."""
    a = geometry.affine
    idx = [np.arange(n, dtype=np.float64) for n in geometry.shape]
    return np.asarray(
        a[1, 0] * idx[0][:, None, None]
        + a[1, 1] * idx[1][None, :, None]
        + a[1, 2] * idx[2][None, None, :]
        + a[1, 3]
    )


def foramen(mask: NDArray[np.bool_], axis: int, geometry: Geometry) -> NDArray[np.bool_]:
    """The vertebral foramen: in each plane across ``axis``, the largest hole of ``mask``.

    Holes smaller than :data:`MIN_FORAMEN_AREA_MM2` are gaps in the label (low-HU marrow),
    not the canal.
    """
    moved = np.moveaxis(mask, axis, 0)
    holes = np.zeros_like(moved)
    in_plane = [sp for i, sp in enumerate(geometry.spacing_mm) if i != axis]
    min_voxels = MIN_FORAMEN_AREA_MM2 / (in_plane[0] * in_plane[1])
    for k in np.flatnonzero(moved.any(axis=(1, 2))):
        found, count = ndimage.label(ndimage.binary_fill_holes(moved[k]) & ~moved[k])
        if count == 0:
            continue
        sizes = np.bincount(found.ravel())[1:]
        if sizes.max() >= min_voxels:
            holes[k] = found == 1 + int(np.argmax(sizes))
    return np.moveaxis(holes, 0, axis)


def _reach(mask: NDArray[np.bool_], axis: int, step: int, voxels: int) -> NDArray[np.bool_]:
    """Voxels that have a ``mask`` voxel within ``voxels`` steps in direction ``-step``.

    ``step`` is the index direction in which the mask is carried (the result lies on that
    side of the mask).
    """
    out = np.zeros_like(mask)
    n = mask.shape[axis]
    for k in range(1, voxels + 1):
        if k >= n:
            break
        src: list[slice] = [slice(None)] * 3
        dst: list[slice] = [slice(None)] * 3
        if step > 0:
            src[axis], dst[axis] = slice(0, n - k), slice(k, n)
        else:
            src[axis], dst[axis] = slice(k, n), slice(0, n - k)
        out[tuple(dst)] |= mask[tuple(src)]
    return out


class SpineColumns:
    """Bodies, foramina, discs and canal of labelled vertebrae on one grid.

    Parameters
    ----------
    labels : ndarray of int
        Label map on the CT grid.
    vertebrae : sequence of int
        Vertebra label numbers in caudal-to-cranial order (neighbours are adjacent levels).
    geometry : Geometry
        The CT grid.
    cord_label : int, optional
        Label number of the spinal cord (locates the canal best).
    """

    def __init__(
        self,
        labels: NDArray[np.integer],
        vertebrae: Sequence[int],
        geometry: Geometry,
        *,
        cord_label: int | None = None,
    ) -> None:
        self.geometry = geometry
        self.axis, self.step = cranial_axis(geometry)
        self.present = [v for v in vertebrae if np.any(labels == v)]
        self._order = {v: i for i, v in enumerate(vertebrae)}
        posterior = _posterior_mm(geometry)
        cord = labels == cord_label if cord_label is not None else None
        self.bodies: dict[int, NDArray[np.bool_]] = {}
        self.foramina: dict[int, NDArray[np.bool_]] = {}
        for v in self.present:
            mask = labels == v
            hole = foramen(mask, self.axis, geometry)
            y = posterior[mask]
            # Keep only holes behind the vertebra's median: a hole in the body is low-HU marrow.
            hole &= posterior > np.median(y)
            self.foramina[v] = hole
            self.bodies[v] = mask & (posterior < self._canal_front_mm(mask, hole, cord, posterior))
        self.bone = np.isin(labels, self.present)

    def _canal_front_mm(
        self,
        mask: NDArray[np.bool_],
        hole: NDArray[np.bool_],
        cord: NDArray[np.bool_] | None,
        posterior: NDArray[np.float64],
    ) -> float:
        """LPS y of the canal's anterior edge at a vertebra (= its body's posterior wall).

        From the labelled cord within the vertebra's planes (less a CSF and dura layer), else
        from the foramen, else at :data:`BODY_DEPTH_FRACTION` of the vertebra's depth.
        """
        planes = np.moveaxis(mask, self.axis, 0).any(axis=(1, 2))
        if cord is not None:
            near = np.moveaxis(cord, self.axis, 0)[planes]
            if near.any():
                front = np.moveaxis(posterior, self.axis, 0)[planes][near].min()
                return float(front) - CORD_TO_BODY_MM
        if hole.any():
            return float(np.median(posterior[hole]) - 0.5 * np.ptp(posterior[hole]))
        y = posterior[mask]
        return float(y.min() + BODY_DEPTH_FRACTION * np.ptp(y))

    def adjacent_pairs(self) -> list[tuple[int, int]]:
        """(lower, upper) label pairs of adjacent levels that are both labelled."""
        return [
            (a, b)
            for a, b in zip(self.present, self.present[1:], strict=False)
            if self._order[b] - self._order[a] == 1
        ]

    def _between(self, lower: NDArray[np.bool_], upper: NDArray[np.bool_]) -> NDArray[np.bool_]:
        reach = int(np.ceil(MAX_DISC_HEIGHT_MM / self.geometry.spacing_mm[self.axis]))
        above_lower = _reach(lower, self.axis, self.step, reach)
        below_upper = _reach(upper, self.axis, -self.step, reach)
        return above_lower & below_upper

    def discs(self, hu: NDArray[np.generic], *, other_bone: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """Disc voxels between adjacent labelled bodies (see the module docstring)."""
        values = np.asarray(hu)
        soft = (values >= DISC_HU_RANGE[0]) & (values <= DISC_HU_RANGE[1])
        out = np.zeros(values.shape, dtype=bool)
        for lower, upper in self.adjacent_pairs():
            out |= self._between(self.bodies[lower], self.bodies[upper])
        return out & soft & ~self.bone & ~other_bone

    def canal(self) -> NDArray[np.bool_]:
        """Canal voxels: the foramina and what lies between adjacent foramina, not bone."""
        out = np.zeros(self.bone.shape, dtype=bool)
        for v in self.present:
            out |= self.foramina[v]
        for lower, upper in self.adjacent_pairs():
            if self.foramina[lower].any() and self.foramina[upper].any():
                out |= self._between(self.foramina[lower], self.foramina[upper])
        return out & ~self.bone
