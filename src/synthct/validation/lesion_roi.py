"""Where a lesion is: its annotation mask (ROI), the background shell and the search region.

A lesion is annotated either as a :class:`~synthct.volume.LabelMap` holding one id per lesion
(on any grid that shares the CT's patient frame; it is resampled with nearest neighbour onto
the CT grid) or as a :class:`LesionPoint`, a centre in LPS mm with a radius (a sphere ROI).
The ROI is the same physical region on the CT and on the sCT, as in the validation study of
Fischer et al. [1]_, where the sCT ROI was set where the tumour showed on the MRI source.

Rules
-----
* Sphere ROI: voxels whose centre lies within ``radius_mm`` of the point (LPS distance). When
  no voxel centre is that close, the voxel containing the point is the ROI.
* Shell: voxels whose centre lies more than ``inner_mm`` and at most ``outer_mm`` from the
  nearest ROI voxel centre (exact Euclidean distance transform in mm, scipy [2]_), optionally
  kept only inside a background mask (e.g. the canal or CSF).
* Search region: voxels within ``margin_mm`` of the ROI (same distance), ROI included.
* A label-map lesion that keeps less than half of its physical volume after resampling onto
  the CT grid is rejected: it lies (partly) outside the CT field of view.

The annotation should cover the whole lesion (outline it, or give the lesion's radius): the
shell is the background, so a shell that still holds lesion voxels lowers the CNR, and the
segmentation does not reach further than the search margin beyond the annotation.

References
----------
.. [1] G. Fischer et al., "Evaluation of magnetic resonance imaging and deep learning-based
   synthetic computed tomography for calcified intradural tumors", Acta Neurochirurgica, 2025,
   doi:10.1007/s00701-025-06731-0.
.. [2] C. R. Maurer, R. Qi, V. Raghavan, "A linear time algorithm for computing exact
   Euclidean distance transforms of binary images in arbitrary dimensions", IEEE TPAMI 25(2),
   2003 (``scipy.ndimage.distance_transform_edt``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.ndimage import distance_transform_edt, find_objects

from synthct.errors import SynthctError
from synthct.geometry import Geometry
from synthct.imaging.body_mask import EmptyMaskError
from synthct.resample import resample_to
from synthct.volume import LabelMap

__all__ = [
    "EmptyLesionMaskError",
    "LesionAnnotationError",
    "LesionPoint",
    "annotation_on_grid",
    "crop_around",
    "lesion_boxes",
    "lesion_mask",
    "pad_box",
    "search_region",
    "shell_mask",
    "single_label",
    "sphere_mask",
]

#: A label-map lesion must keep at least this fraction of its volume on the CT grid.
MIN_KEPT_VOLUME_FRACTION = 0.5

Slices = tuple[slice, slice, slice]


class LesionAnnotationError(SynthctError, ValueError):
    """A lesion annotation that cannot be placed on the CT grid."""


class EmptyLesionMaskError(LesionAnnotationError, EmptyMaskError):
    """A lesion annotation (or a region derived from it) that selects no voxel."""


@dataclass(frozen=True)
class LesionPoint:
    """A lesion given as a point and a radius: a sphere ROI.

    Parameters
    ----------
    center_lps_mm : sequence of 3 float
        Centre of the lesion in LPS mm.
    radius_mm : float
        Radius of the sphere ROI in mm: half the lesion's diameter as seen on the MRI, so that
        the sphere covers the lesion.
    lesion_id : int
        Identifier carried into the results.
    name : str, optional
        Free text, e.g. ``"T8/9 meningioma"``.
    """

    center_lps_mm: tuple[float, float, float]
    radius_mm: float
    lesion_id: int = 1
    name: str | None = None

    def __post_init__(self) -> None:
        center = tuple(float(c) for c in np.asarray(self.center_lps_mm, dtype=float).ravel())
        if len(center) != 3 or not all(math.isfinite(c) for c in center):
            raise LesionAnnotationError(
                f"a lesion point needs 3 finite LPS coordinates in mm, got {self.center_lps_mm}",
                path=f"lesion {self.lesion_id}",
                fix="give the centre as (L, P, S) in mm",
            )
        if not (math.isfinite(self.radius_mm) and self.radius_mm > 0):
            raise LesionAnnotationError(
                f"the radius of a lesion point must be positive and finite, got {self.radius_mm}",
                path=f"lesion {self.lesion_id}",
                fix="give the lesion's radius in mm (half its diameter on the MRI)",
            )
        object.__setattr__(self, "center_lps_mm", center)
        object.__setattr__(self, "radius_mm", float(self.radius_mm))


def sphere_mask(
    geometry: Geometry,
    center_lps_mm: ArrayLike,
    radius_mm: float,
    *,
    region: Slices | None = None,
) -> NDArray[np.bool_]:
    """Voxels of ``geometry`` whose centre lies within ``radius_mm`` of a point.

    Parameters
    ----------
    geometry : Geometry
        The grid.
    center_lps_mm : (3,) array_like
        Centre in LPS mm; it must fall inside the grid.
    radius_mm : float
        Radius in mm. When no voxel centre is that close, the voxel containing the centre is
        returned, so the ROI is never empty.
    region : tuple of 3 slices, optional
        Compute only this box of the grid (the result has the box's shape).

    Raises
    ------
    LesionAnnotationError
        When the centre is not finite or lies outside the grid.
    """
    center = np.asarray(center_lps_mm, dtype=np.float64)
    if center.shape != (3,) or not np.all(np.isfinite(center)):
        raise LesionAnnotationError(
            f"a sphere centre needs 3 finite LPS coordinates, got {center.tolist()}",
            path="center_lps_mm",
        )
    if not bool(geometry.contains_lps(center)):
        raise LesionAnnotationError(
            f"the lesion point {np.round(center, 2).tolist()} mm (LPS) lies outside the CT "
            f"field of view ({geometry.describe()})",
            path="center_lps_mm",
            fix="check that the point is in LPS millimetres (not RAS, not voxel indices) and "
            "that it was taken on an image registered to this CT",
        )
    box = region if region is not None else tuple(slice(0, n) for n in geometry.shape)
    starts = np.array([s.start for s in box], dtype=np.float64)
    axes = [np.arange(s.start, s.stop, dtype=np.float64) for s in box]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    offsets = geometry.index_to_lps(grid) - center
    mask = np.einsum("...i,...i->...", offsets, offsets) <= radius_mm**2
    if not mask.any():
        nearest = np.rint(geometry.lps_to_index(center)).astype(int) - starts.astype(int)
        if np.all(nearest >= 0) and np.all(nearest < mask.shape):
            mask[tuple(nearest)] = True
    return mask


def annotation_on_grid(annotation: LabelMap, geometry: Geometry) -> LabelMap:
    """The label map on ``geometry`` (nearest neighbour; unchanged when already there).

    The label map and the grid must share the patient frame (same scanner session or a
    registration applied before); the resampling does no registration.
    """
    if annotation.geometry.is_close(geometry):
        return annotation
    return resample_to(annotation, geometry, fill_value=0)


def _label_counts(array: NDArray[np.integer]) -> dict[int, int]:
    """Voxel count of every non-zero label (one pass: bincount, or unique for negatives)."""
    flat = array.ravel()
    if flat.size and flat.min() < 0:
        values, counts = np.unique(flat, return_counts=True)
    else:
        counts = np.bincount(flat)
        values = np.flatnonzero(counts)
        counts = counts[values]
    return {int(v): int(c) for v, c in zip(values, counts, strict=True) if v != 0}


def _label_slices(array: NDArray[np.integer], labels: Sequence[int]) -> dict[int, Slices | None]:
    """Bounding box of each label (``None`` when absent), with scipy's ``find_objects``."""
    if array.size and array.min() < 0:
        found = {}
        for label in labels:
            found.update(_label_slices((array == label).astype(np.uint8), [1]))
            found[label] = found.pop(1)
        return found
    objects = find_objects(array, max_label=max(labels))
    return {label: objects[label - 1] for label in labels}


def _pick_labels(
    counts: dict[int, int], lesion_ids: Sequence[int] | None, source: str | None
) -> list[int]:
    labels = sorted(counts)
    if not labels:
        raise EmptyLesionMaskError(
            "the lesion label map is empty (no non-zero voxel)",
            path=source,
            fix="pass a mask that outlines the lesion, or give the lesion as a point and radius",
        )
    if lesion_ids is None:
        return labels
    missing = [int(i) for i in lesion_ids if int(i) not in counts]
    if missing:
        raise EmptyLesionMaskError(
            f"lesion(s) {missing} not in the label map (labels present: {labels})",
            path=source,
            fix="pass labels that are present",
        )
    return [int(i) for i in lesion_ids]


def lesion_boxes(
    annotation: LabelMap,
    geometry: Geometry,
    *,
    lesion_ids: Sequence[int] | None = None,
    failures: dict[int, LesionAnnotationError] | None = None,
) -> dict[int, tuple[Slices, NDArray[np.bool_]]]:
    """Each lesion of a label map on the CT grid: its bounding box and its mask inside the box.

    The label map is resampled onto ``geometry`` once (nearest neighbour) when it is on
    another grid of the same frame.

    Parameters
    ----------
    annotation : LabelMap
        One label per lesion.
    geometry : Geometry
        The CT grid.
    lesion_ids : sequence of int, optional
        The lesions wanted; every non-zero label when omitted.
    failures : dict, optional
        When given, a lesion that cannot be placed on the grid is stored here under its
        label (and left out of the result) instead of raising.

    Raises
    ------
    EmptyLesionMaskError
        The label map is empty, or a requested label is absent.
    LesionAnnotationError
        A lesion keeps less than half of its volume on the CT grid (it lies (partly) outside
        the CT field of view, or is smaller than a CT voxel).
    """
    counts = _label_counts(annotation.array)
    labels = _pick_labels(counts, lesion_ids, annotation.source)
    on_grid = annotation_on_grid(annotation, geometry)
    slices = _label_slices(on_grid.array, labels)
    boxes = {}
    for label in labels:
        box = slices[label]
        mask = on_grid.array[box] == label if box is not None else np.zeros((0, 0, 0), bool)
        before_mm3 = counts[label] * annotation.geometry.voxel_volume_mm3
        after_mm3 = float(np.count_nonzero(mask)) * geometry.voxel_volume_mm3
        if box is None or after_mm3 < MIN_KEPT_VOLUME_FRACTION * before_mm3:
            error = LesionAnnotationError(
                f"lesion {label} covers {before_mm3:.4g} mm^3 on its own grid but "
                f"{after_mm3:.4g} mm^3 on the CT grid: it lies (partly) outside the CT field of "
                f"view or is smaller than a CT voxel (CT: {geometry.describe()}; label map: "
                f"{annotation.geometry.describe()})",
                path=annotation.source or f"lesion {label}",
                fix="check that the label map and the CT share the patient frame (register "
                "them first) and that the lesion is inside the CT's field of view",
            )
            if failures is None:
                raise error
            failures[label] = error
            continue
        boxes[label] = ((box[0], box[1], box[2]), mask)
    return boxes


def lesion_mask(
    annotation: LabelMap | LesionPoint,
    geometry: Geometry,
    *,
    lesion_id: int | None = None,
) -> NDArray[np.bool_]:
    """Boolean ROI of one lesion on the whole of ``geometry``.

    Parameters
    ----------
    annotation : LabelMap or LesionPoint
        A label map (any grid in the same frame; resampled with nearest neighbour) or a point
        with a radius.
    geometry : Geometry
        The CT grid.
    lesion_id : int, optional
        Label of the lesion in a label map. May be omitted when the map holds one label.

    Raises
    ------
    EmptyLesionMaskError
        The label is absent or the label map is empty.
    LesionAnnotationError
        The point lies outside the grid, the label map holds several lesions and no
        ``lesion_id`` is given, or the lesion lands (partly) outside the CT field of view.
    """
    if isinstance(annotation, LesionPoint):
        return sphere_mask(geometry, annotation.center_lps_mm, annotation.radius_mm)
    label = single_label(annotation, lesion_id)
    box, inside = lesion_boxes(annotation, geometry, lesion_ids=[label])[label]
    mask = np.zeros(geometry.shape, dtype=bool)
    mask[box] = inside
    return mask


def single_label(annotation: LabelMap, lesion_id: int | None) -> int:
    """``lesion_id``, or the only label of ``annotation`` when it is omitted."""
    if lesion_id is not None:
        return int(lesion_id)
    labels = sorted(_label_counts(annotation.array))
    if len(labels) > 1:
        raise LesionAnnotationError(
            f"the label map holds {len(labels)} lesions {labels}; say which one",
            path=annotation.source,
            fix="pass lesion_id=..., or use measure_lesions for all of them",
        )
    return _pick_labels(dict.fromkeys(labels, 1), None, annotation.source)[0]


def pad_box(
    box: Slices, shape: Sequence[int], *, spacing_mm: Sequence[float], margin_mm: float
) -> Slices:
    """``box`` grown by ``margin_mm`` plus one voxel on every side, clipped to ``shape``."""
    grown = []
    for s, n, step in zip(box, shape, spacing_mm, strict=True):
        pad = math.ceil(margin_mm / step) + 1
        grown.append(slice(max(int(s.start) - pad, 0), min(int(s.stop) + pad, int(n))))
    return (grown[0], grown[1], grown[2])


def crop_around(
    mask: NDArray[np.bool_], *, spacing_mm: Sequence[float], margin_mm: float
) -> Slices:
    """Box of array slices holding ``mask`` plus ``margin_mm`` (plus one voxel) on every side.

    Raises
    ------
    EmptyLesionMaskError
        When ``mask`` is empty.
    """
    found = np.nonzero(mask)
    if found[0].size == 0:
        raise EmptyLesionMaskError("the lesion mask is empty", path="mask")
    tight = tuple(slice(int(f.min()), int(f.max()) + 1) for f in found)
    return pad_box(
        (tight[0], tight[1], tight[2]), mask.shape, spacing_mm=spacing_mm, margin_mm=margin_mm
    )


def _distance_to_mask_mm(
    mask: NDArray[np.bool_], spacing_mm: Sequence[float]
) -> NDArray[np.float64]:
    if not mask.any():
        raise EmptyLesionMaskError("the lesion mask is empty", path="mask")
    distance: NDArray[np.float64] = distance_transform_edt(
        ~mask, sampling=[float(s) for s in spacing_mm]
    )
    return distance


def shell_mask(
    mask: ArrayLike,
    *,
    spacing_mm: Sequence[float],
    inner_mm: float,
    outer_mm: float,
    restrict_to: ArrayLike | None = None,
) -> NDArray[np.bool_]:
    """Background shell around a lesion ROI: ``inner_mm < distance <= outer_mm``.

    Parameters
    ----------
    mask : (I, J, K) array_like of bool
        The lesion ROI.
    spacing_mm : sequence of 3 float
        Voxel size along each array axis, in mm (the grid's directions are orthonormal, so the
        distance in index space scaled by the spacing is the physical distance).
    inner_mm, outer_mm : float
        Distance range from the nearest ROI voxel centre, in mm.
    restrict_to : (I, J, K) array_like of bool, optional
        Keep only shell voxels inside this mask (e.g. CSF, the canal).

    Raises
    ------
    EmptyLesionMaskError
        When the ROI or the resulting shell is empty.
    """
    roi = np.asarray(mask, dtype=bool)
    if not 0 <= inner_mm < outer_mm:
        raise ValueError(f"need 0 <= inner_mm < outer_mm, got {inner_mm} and {outer_mm}")
    distance = _distance_to_mask_mm(roi, spacing_mm)
    shell = (distance > inner_mm) & (distance <= outer_mm)
    if restrict_to is not None:
        shell &= np.asarray(restrict_to, dtype=bool)
    if not shell.any():
        raise EmptyLesionMaskError(
            f"the background shell {inner_mm:g}-{outer_mm:g} mm around the lesion holds no voxel"
            + (" inside the background mask" if restrict_to is not None else ""),
            path="shell",
            fix="widen the shell (shell_outer_mm) or check the background mask",
        )
    return shell


def search_region(
    mask: ArrayLike, *, spacing_mm: Sequence[float], margin_mm: float
) -> NDArray[np.bool_]:
    """Voxels within ``margin_mm`` of the ROI (ROI included), where the lesion is segmented."""
    roi = np.asarray(mask, dtype=bool)
    if margin_mm < 0:
        raise ValueError(f"margin_mm must be >= 0, got {margin_mm}")
    return _distance_to_mask_mm(roi, spacing_mm) <= margin_mm
