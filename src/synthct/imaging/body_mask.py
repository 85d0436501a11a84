"""Body (patient outline) masks from CT: the region inside which image metrics are computed.

The rule, in order:

1. **Threshold**: voxels at or above ``threshold_hu`` (default -500 HU, half-way between air at
   -1000 HU and water at 0 HU, so skin, fat and every denser tissue are in; air is out).
2. **Largest component**: the largest 3D connected component of the thresholded voxels, with
   face connectivity (6 neighbours). This drops the couch, cushions and noise, provided they do
   not touch the patient.
3. **3D hole filling**: enclosed cavities (bowel gas, sinuses) are filled.
4. **Axial hole filling**: holes are also filled slice by slice across the axial axis, so the
   lungs and airways, which open to the outside in 3D through the trachea, are inside the body.

This mirrors, with a fixed HU threshold instead of a relative one, the outline rule of the
SynthRAD2025 preprocessing (``segment_outline`` in ``preprocessing_utils.py`` of
github.com/SynthRAD2025/preprocessing: threshold, largest component, 3D then 2D axial hole
filling). SynthRAD2025 then dilates its evaluation masks by 10 voxels in plane and limits them to
the MR field of view; this module does not, so pass the challenge's own mask to compare with
published numbers.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from synthct.errors import SynthctError, VolumeKindError
from synthct.volume import CTVolume, LabelMap

__all__ = [
    "CT_PADDING_BELOW_HU",
    "DEFAULT_BODY_THRESHOLD_HU",
    "OBJECT_MEDIAN_MIN_HU",
    "OBJECT_MIN_VOLUME_ML",
    "EmptyMaskError",
    "axial_axis",
    "body_mask_from_ct",
    "body_mask_volume",
    "external_objects",
]

#: Default HU threshold between air and body.
DEFAULT_BODY_THRESHOLD_HU = -500.0

#: CT values below this are scanner padding, not tissue: many scanners store -2048 or -3024 HU
#: outside the reconstruction circle (air itself is -1000 HU; SynthRAD clips CT at -1024 HU).
CT_PADDING_BELOW_HU = -1024.0


class EmptyMaskError(SynthctError, ValueError):
    """A mask that selects no voxel where at least one is needed."""


def body_mask_from_ct(
    ct_hu: ArrayLike,
    *,
    threshold_hu: float = DEFAULT_BODY_THRESHOLD_HU,
    axial_axis: int = 2,
    fill_holes_3d: bool = True,
    fill_holes_axial: bool = True,
) -> NDArray[np.bool_]:
    """Body mask of a CT array: threshold, largest component, hole filling.

    Parameters
    ----------
    ct_hu : (I, J, K) array_like
        CT in Hounsfield units.
    threshold_hu : float
        Voxels with ``ct_hu >= threshold_hu`` are candidate body voxels.
    axial_axis : int
        Array axis across which axial slices are stacked (the one closest to
        superior-inferior), used for slice-wise hole filling. :func:`body_mask_volume` finds it from
        the affine.
    fill_holes_3d : bool
        Fill cavities enclosed in 3D.
    fill_holes_axial : bool
        Fill holes enclosed within each axial slice (lungs, airways).

    Returns
    -------
    (I, J, K) ndarray of bool
        True inside the body.

    Raises
    ------
    EmptyMaskError
        When no voxel reaches ``threshold_hu``.
    VolumeKindError
        When the array is not 3D or holds NaNs.

    References
    ----------
    .. [1] SynthRAD2025 preprocessing, ``segment_outline``,
       https://github.com/SynthRAD2025/preprocessing
    """
    ct = np.asarray(ct_hu)
    if ct.ndim != 3:
        raise VolumeKindError(f"a body mask needs a 3D CT array, got shape {ct.shape}")
    if not -3 <= axial_axis < 3:
        raise ValueError(f"axial_axis must be 0, 1 or 2, got {axial_axis}")
    with np.errstate(invalid="ignore"):
        candidate = ct >= threshold_hu
    if ct.dtype.kind == "f" and not np.all(np.isfinite(ct)):
        raise VolumeKindError(
            "the CT holds NaN or infinite values", fix="replace them with -1024 HU (air)"
        )
    labels, n_components = ndimage.label(candidate)
    if n_components == 0:
        raise EmptyMaskError(
            f"no voxel of the CT reaches {threshold_hu:g} HU, so there is no body to outline",
            path="threshold_hu",
            fix="check that the image is a CT in HU, lower threshold_hu, or pass a body mask",
        )
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    mask = labels == int(np.argmax(sizes))
    del labels
    if fill_holes_3d:
        mask = ndimage.binary_fill_holes(mask)
    if fill_holes_axial:
        moved = np.moveaxis(mask, axial_axis, 0)
        for index in range(moved.shape[0]):
            moved[index] = ndimage.binary_fill_holes(moved[index])
    return np.asarray(mask, dtype=bool)


def axial_axis(ct: CTVolume) -> int:
    """The array axis of ``ct`` closest to the superior-inferior direction."""
    return int(np.argmax(np.abs(ct.geometry.direction[2, :])))


def body_mask_volume(
    ct: CTVolume,
    *,
    threshold_hu: float = DEFAULT_BODY_THRESHOLD_HU,
    fill_holes_3d: bool = True,
    fill_holes_axial: bool = True,
) -> LabelMap:
    """Body mask of a CT volume as a label map (1 = body) on the CT's grid.

    The axial axis is taken from the affine (:func:`axial_axis`); see
    :func:`body_mask_from_ct` for the rule and the other parameters.
    """
    if not isinstance(ct, CTVolume):
        raise VolumeKindError(
            f"a body mask is derived from a CT, got a {getattr(ct, 'kind', type(ct).__name__)}",
            fix="pass the CT volume (Hounsfield units)",
        )
    mask = body_mask_from_ct(
        ct.array,
        threshold_hu=threshold_hu,
        axial_axis=axial_axis(ct),
        fill_holes_3d=fill_holes_3d,
        fill_holes_axial=fill_holes_axial,
    )
    return LabelMap(mask.astype(np.uint8), ct.affine, label_names={1: "body"})


#: A dense object apart from the body is the couch (or another device) from this volume (mL)
#: up; smaller dense pieces are bone cut off by the field of view.
OBJECT_MIN_VOLUME_ML = 5.0
#: ... and when its median HU is at least this (dense throughout: carbon-fibre shells, metal;
#: body parts such as arms are soft tissue with a median of tens of HU).
OBJECT_MEDIAN_MIN_HU = 150.0


def external_objects(
    ct_hu: ArrayLike, *, air_below_hu: float, voxel_volume_mm3: float
) -> NDArray[np.bool_]:
    """Dense objects apart from the body: the patient couch and other devices.

    Each 3D connected region of non-air voxels (``ct_hu >= air_below_hu``, face connectivity)
    other than the largest (the body) is an external object when it is dense throughout (median
    HU >= :data:`OBJECT_MEDIAN_MIN_HU`) and not small (>= :data:`OBJECT_MIN_VOLUME_ML`). MRI does
    not see them, so neither a tissue map nor a synthesis target should hold them.

    Parameters
    ----------
    ct_hu : (I, J, K) array_like
        CT in Hounsfield units.
    air_below_hu : float
        Voxels below this are air, which separates the objects from the body.
    voxel_volume_mm3 : float
        Volume of one voxel, for the minimum object volume.

    Returns
    -------
    (I, J, K) ndarray of bool
        True on external objects.
    """
    values = np.asarray(ct_hu, dtype=np.float64)
    regions, count = ndimage.label(values >= air_below_hu)
    out = np.zeros(values.shape, dtype=bool)
    if count < 2:
        return out
    sizes = np.bincount(regions.ravel())
    sizes[0] = 0
    body = int(np.argmax(sizes))
    min_voxels = OBJECT_MIN_VOLUME_ML * 1000.0 / voxel_volume_mm3
    for number, box in enumerate(ndimage.find_objects(regions), start=1):
        if box is None or number == body or sizes[number] < min_voxels:
            continue
        region = regions[box] == number
        if np.median(values[box][region]) >= OBJECT_MEDIAN_MIN_HU:
            out[box] |= region
    return out
