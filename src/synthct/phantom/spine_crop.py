"""Crops of a real CT around its spine: small real-anatomy cases, cheap to make and train on.

A whole abdomen or chest CT is mostly organs far from the canal; a training cohort of many
subjects only needs the spine in context. :func:`spine_crop` cuts a box of a given size around
the spine (the labelled vertebrae, or else the most posterior dense bone), with a random offset
so that repeated crops of one CT differ, and cuts the labels with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from synthct.errors import PhantomParameterError
from synthct.phantom.ct_derived import TOTALSEGMENTATOR_V2
from synthct.volume import CTVolume, LabelMap

#: Cortical bone HU: contrast-enhanced blood in CTA stays below, so it finds bone in any CT.
CORTICAL_BONE_HU = 700.0

VolumeT = TypeVar("VolumeT", CTVolume, LabelMap)


def spine_centre_index(ct: CTVolume, labels: LabelMap | None = None) -> np.ndarray:
    """Voxel index (float, array axes) of the spine's centre in ``ct``.

    The mean index of the TotalSegmentator vertebra labels when ``labels`` hold any; otherwise,
    of the voxels at or above :data:`CORTICAL_BONE_HU`, the median of the most posterior
    quarter (the vertebral column lies behind heart, aorta, ribs and sternum). ``ct`` must be on
    an LPS-aligned grid (the second index grows posterior); the centre of the volume when there
    is no bone at all.
    """
    if labels is not None:
        vertebrae = np.isin(np.asarray(labels.array), TOTALSEGMENTATOR_V2["vertebrae"])
        if vertebrae.any():
            return np.argwhere(vertebrae).mean(axis=0)
    hu = np.asarray(ct.array)
    bone = np.argwhere(hu >= CORTICAL_BONE_HU)
    if len(bone) == 0:
        return (np.asarray(hu.shape, dtype=float) - 1) / 2.0
    posterior = bone[bone[:, 1] >= np.percentile(bone[:, 1], 75)]
    return np.median(posterior, axis=0).astype(float)


def crop_volume(volume: VolumeT, start: Sequence[int], size: Sequence[int]) -> VolumeT:
    """``volume[start : start + size]`` with the affine moved to the crop's first voxel.

    The crop is clipped at the volume's far edge (it may come out smaller than ``size``).
    """
    region = tuple(
        slice(int(s), int(s) + min(int(k), n - int(s)))
        for s, k, n in zip(start, size, volume.spatial_shape, strict=True)
    )
    affine = volume.affine.copy()
    affine[:3, 3] = volume.geometry.index_to_lps(np.asarray(start, dtype=float))
    return volume.on_grid(np.asarray(volume.array)[region], affine)


def spine_crop(
    ct: CTVolume,
    labels: LabelMap | None,
    size: Sequence[int],
    *,
    rng: np.random.Generator,
    jitter_mm: float = 0.0,
) -> tuple[CTVolume, LabelMap | None]:
    """A box of ``size`` voxels around the spine of ``ct`` (and ``labels``, cut alike).

    Parameters
    ----------
    ct : CTVolume
        The CT in HU, on an LPS-aligned grid.
    labels : LabelMap or None
        Its TotalSegmentator labels on the same grid.
    size : sequence of 3 int
        Crop size in voxels; an axis where ``ct`` is smaller keeps all of it.
    rng : numpy.random.Generator
        Draws the offset.
    jitter_mm : float
        The crop centre moves by up to this many mm per axis (uniform) from the spine centre.

    Returns
    -------
    (CTVolume, LabelMap or None)
        The cropped CT and labels.
    """
    if len(size) != 3 or min(size) < 1:
        raise PhantomParameterError(
            f"crop size must be three positive voxel counts, got {tuple(size)}",
            path="size",
            fix="give e.g. (96, 96, 64)",
        )
    if labels is not None and labels.spatial_shape != ct.spatial_shape:
        raise PhantomParameterError(
            f"labels {labels.spatial_shape} are not on the CT grid {ct.spatial_shape}",
            path=str(labels.source or "labels"),
            fix="resample the labels onto the CT grid (nearest neighbour) first",
        )
    spacing = np.asarray(ct.geometry.spacing_mm, dtype=float)
    centre = spine_centre_index(ct, labels) + rng.uniform(-1, 1, 3) * jitter_mm / spacing
    start = [
        int(np.clip(round(c - k / 2), 0, max(0, n - k)))
        for c, k, n in zip(centre, size, ct.spatial_shape, strict=True)
    ]
    cropped_labels = None if labels is None else crop_volume(labels, start, size)
    return crop_volume(ct, start, size), cropped_labels
