"""Lesion segmentation by a half-way threshold, and its diameters in patient millimetres.

Rules
-----
* Segmentation (:func:`segment_lesion`): threshold half-way between the lesion level and the
  background level, ``(lesion_level + background_level) / 2``; voxels on the lesion's side of
  it (``>=`` for a lesion brighter than its background, ``<=`` for a darker one) inside the
  search region are candidates; the connected components (26-connectivity by default) that
  overlap the annotation ROI are kept. Equal levels give an empty segmentation.
* Adjacent structures stay out: candidate voxels outside the ROI are kept only where their
  connected component (of candidates outside the ROI, over the whole image given) ends within
  the search region. A component that continues past the search region is another structure
  touching the lesion (the laminae, a vertebral body, a calcified ligament): without this rule a
  calcified lesion against bone grows into the bone up to the search margin (a 12 mm lesion
  against the laminae of a real CT was measured 18.6 mm across). Lesion voxels the annotation
  missed (partial volume, an outline a little too tight) form components that end within the
  margin and are kept.
* Maximal axial diameter (:func:`axial_diameter_mm`): axial means the plane perpendicular to
  the patient's S axis. Voxels are grouped by their index along the array axis closest to S
  (their axial slice); in each slice the centres of the four in-plane voxel edges (the two
  in-plane axes, +-half a voxel, at mid-slice) are mapped to LPS and projected onto the L-P
  plane; the largest distance between two of these points (the maximal Feret diameter [1]_,
  from the convex hull) is the slice's diameter; the maximum over slices is reported. A line of
  10 voxels of 1 mm is 10 mm; a single voxel is one voxel wide.
* Maximal sagittal diameter (:func:`craniocaudal_extent_mm`): the cranio-caudal extent, the
  range of the S coordinate over the centres of all voxel faces of the segmentation, i.e. the
  voxel extent along S (10 slices of 1 mm are 10 mm).
* Dice (:func:`dice_coefficient`): ``2 |A & B| / (|A| + |B|)``; 1 when both are empty (they
  agree that there is no lesion), 0 when exactly one is.

All distances are in mm and use the grid's affine (spacing and directions), so anisotropic and
oblique grids are measured in patient space.

References
----------
.. [1] L. R. Feret, "La grosseur des grains des matières pulvérulentes", Assoc. Internat. pour
   l'Essai des Matériaux, Zürich, 1930; see also ``skimage.measure.regionprops``
   (``feret_diameter_max``).
.. [2] L. R. Dice, "Measures of the amount of ecologic association between species", Ecology
   26(3), 1945.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist
from skimage.measure import label as label_components

__all__ = [
    "axial_axis",
    "axial_diameter_mm",
    "craniocaudal_extent_mm",
    "dice_coefficient",
    "half_way_threshold_hu",
    "segment_lesion",
]


def axial_axis(affine: ArrayLike) -> int:
    """The array axis whose direction is closest to the patient's S axis."""
    a = np.asarray(affine, dtype=np.float64)
    return int(np.argmax(np.abs(a[2, :3]) / np.linalg.norm(a[:3, :3], axis=0)))


def half_way_threshold_hu(lesion_level_hu: float, background_level_hu: float) -> float:
    """The segmentation threshold: half-way between the lesion and background levels."""
    return 0.5 * (float(lesion_level_hu) + float(background_level_hu))


def segment_lesion(
    image: ArrayLike,
    roi: ArrayLike,
    *,
    search: ArrayLike,
    lesion_level_hu: float,
    background_level_hu: float,
    connectivity: int = 3,
) -> NDArray[np.bool_]:
    """Segment a lesion with the half-way threshold, keeping components that touch the ROI.

    Parameters
    ----------
    image : (I, J, K) array_like
        Image values (HU, or any intensity).
    roi : (I, J, K) array_like of bool
        The annotation ROI; a kept component must share at least one voxel with it.
    search : (I, J, K) array_like of bool
        Where the lesion may be (the ROI dilated by a margin); nothing outside is segmented,
        and a structure that continues outside it is not part of the lesion (give the image a
        little beyond the search region so that this can be seen).
    lesion_level_hu, background_level_hu : float
        Lesion and background levels (e.g. the ROI and shell means).
    connectivity : {1, 2, 3}
        Neighbourhood of connected components: 1 faces (6), 2 edges (18), 3 corners (26).

    Returns
    -------
    (I, J, K) ndarray of bool
        The segmentation; empty when the levels are equal.
    """
    values = np.asarray(image)
    region = np.asarray(search, dtype=bool)
    inside = np.asarray(roi, dtype=bool)
    if values.shape != region.shape or values.shape != inside.shape:
        raise ValueError(
            f"image {values.shape}, roi {inside.shape} and search {region.shape} must share a shape"
        )
    if connectivity not in (1, 2, 3):
        raise ValueError(f"connectivity must be 1, 2 or 3, got {connectivity}")
    threshold = half_way_threshold_hu(lesion_level_hu, background_level_hu)
    if lesion_level_hu > background_level_hu:
        lesion_side = values >= threshold
    elif lesion_level_hu < background_level_hu:
        lesion_side = values <= threshold
    else:
        return np.zeros(values.shape, dtype=bool)
    outside = lesion_side & ~inside
    parts = label_components(outside, connectivity=connectivity)
    adjacent = np.unique(parts[outside & ~region])  # components that leave the search region
    candidate = region & lesion_side & ~np.isin(parts, adjacent[adjacent != 0])
    labels = label_components(candidate, connectivity=connectivity)
    touching = np.unique(labels[inside & candidate])
    touching = touching[touching != 0]
    return np.isin(labels, touching)


def _feret_2d_mm(points: NDArray[np.float64]) -> float:
    """Largest distance between two 2D points (from the convex hull when there is one)."""
    if len(points) < 2:
        return 0.0
    try:
        hull = ConvexHull(points)
        points = points[hull.vertices]
    except QhullError:  # collinear or too few points: use them all
        pass
    return float(pdist(points).max())


def axial_diameter_mm(mask: ArrayLike, *, affine: ArrayLike) -> float:
    """Maximal axial diameter of a mask: the largest in-plane Feret diameter over axial slices.

    Parameters
    ----------
    mask : (I, J, K) array_like of bool
        The segmentation.
    affine : (4, 4) array_like
        Voxel index to LPS mm of the mask's grid (gives spacing and orientation).

    Returns
    -------
    float
        Diameter in mm; 0 for an empty mask. See the module notes for the rule.
    """
    a = np.asarray(affine, dtype=np.float64)
    index = np.argwhere(np.asarray(mask, dtype=bool))
    if index.size == 0:
        return 0.0
    slice_axis = axial_axis(a)
    in_plane = [axis for axis in range(3) if axis != slice_axis]
    offsets = np.zeros((4, 3))
    for n, (axis, sign) in enumerate((ax, s) for ax in in_plane for s in (-0.5, 0.5)):
        offsets[n, axis] = sign
    edges = (index[:, None, :] + offsets[None]).reshape(-1, 3)
    edges_lp = (edges @ a[:2, :3].T) + a[:2, 3]
    slice_of_point = np.repeat(index[:, slice_axis], len(offsets))
    best = 0.0
    for k in np.unique(slice_of_point):
        points = np.unique(edges_lp[slice_of_point == k].round(9), axis=0)
        best = max(best, _feret_2d_mm(points))
    return best


def craniocaudal_extent_mm(mask: ArrayLike, *, affine: ArrayLike) -> float:
    """Maximal sagittal (cranio-caudal) diameter: the voxel extent of a mask along S, in mm.

    The range of S over the centres of all voxel faces, which equals the range of S over the
    voxel centres plus the largest S component of one voxel step. 0 for an empty mask.
    """
    a = np.asarray(affine, dtype=np.float64)
    index = np.argwhere(np.asarray(mask, dtype=bool))
    if index.size == 0:
        return 0.0
    s_centres = index @ a[2, :3] + a[2, 3]
    return float(np.ptp(s_centres) + np.abs(a[2, :3]).max())


def dice_coefficient(a: ArrayLike, b: ArrayLike) -> float:
    """Dice overlap of two masks: 1 when both are empty, 0 when only one is."""
    x = np.asarray(a, dtype=bool)
    y = np.asarray(b, dtype=bool)
    if x.shape != y.shape:
        raise ValueError(f"masks of shapes {x.shape} and {y.shape} cannot be compared")
    total = int(np.count_nonzero(x)) + int(np.count_nonzero(y))
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(x & y)) / total
