"""Cortex and marrow inside labelled bones, by morphology and HU.

A labelled bone's cortex is its thin outer shell: the voxels on the label's surface (a face
neighbour with another label) and, on grids finer than the cortex, those within
``cortex_thickness_mm`` of it. A shell voxel is cortex when its HU shows dense bone; shell
voxels that do not (partial volume with fat or soft tissue, thin cortex) and all inner voxels
are trabecular bone, whose marrow fat fraction follows from HU (:mod:`synthct.imaging.marrow`).
Inner voxels of compact-bone density (sclerotic bone, long-bone shafts) are cortex as well.

Vertebral cortical shell thickness 0.2-0.5 mm (Silva MJ et al. Bone 1994;15:409-414;
Eswaran SK et al. J Bone Miner Res 2006;21:307-314): thinner than any clinical CT voxel, so
on such grids the shell is exactly the one-voxel surface layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from synthct.imaging.labels import Tissue
from synthct.imaging.marrow import DEFAULT_MARROW, MarrowModel, marrow_labels


@dataclass(frozen=True)
class BoneShellRule:
    """Parameters of the cortex/marrow split (see the module docstring).

    Attributes
    ----------
    cortex_thickness_mm : float
        Shell depth beyond the surface voxel layer (matters on sub-mm grids only).
    cortex_min_hu : float
        A shell voxel is cortex from this HU up: 30 HU above the densest marrow of the mixing
        model (221 HU at fat fraction 0), so trabecular bone alone never reaches it.
    compact_min_hu : float
        Any bone voxel from this HU up is cortex (compact bone; the HU-only cortical class).
    """

    cortex_thickness_mm: float = 0.5
    cortex_min_hu: float = float(DEFAULT_MARROW.hu_of_fat_fraction(0.0)) + 30.0
    compact_min_hu: float = 600.0


def surface_layer(labels: NDArray[np.integer]) -> NDArray[np.bool_]:
    """Labelled voxels (``labels > 0``) with a face neighbour of another label.

    The grid edge does not count as a neighbour: a bone cut by the field of view has no
    cortex on the cut.
    """
    padded = np.pad(labels, 1, mode="edge")
    inner = padded[1:-1, 1:-1, 1:-1]
    surface = np.zeros(labels.shape, dtype=bool)
    for axis in range(3):
        for step in (-1, 1):
            index: list[slice] = [slice(1, -1)] * 3
            index[axis] = slice(1 + step, padded.shape[axis] - 1 + step)
            surface |= padded[tuple(index)] != inner
    return surface & (labels > 0)


def split_bone(
    hu: NDArray[np.generic],
    bone_labels: NDArray[np.integer],
    spacing_mm: tuple[float, float, float],
    *,
    rule: BoneShellRule | None = None,
    marrow: MarrowModel = DEFAULT_MARROW,
) -> NDArray[np.uint8]:
    """Tissue labels for the voxels of labelled bones (0 elsewhere).

    Parameters
    ----------
    hu : ndarray
        CT numbers.
    bone_labels : ndarray of int
        One number per bone (0 = no bone), on the CT grid.
    spacing_mm : tuple of 3 float
        Voxel spacing along the array axes.
    rule : BoneShellRule, optional
        Thresholds; defaults documented on the class.
    marrow : MarrowModel
        HU to fat fraction relation of trabecular bone.

    Returns
    -------
    ndarray of uint8
        ``CORTICAL_BONE`` or one of the marrow tissues inside bones, 0 outside.
    """
    r = rule or BoneShellRule()
    bone = bone_labels > 0
    out = np.zeros(hu.shape, dtype=np.uint8)
    if not bone.any():
        return out
    values = np.asarray(hu, dtype=np.float64)
    shell = surface_layer(bone_labels)
    if r.cortex_thickness_mm > min(spacing_mm):
        depth = ndimage.distance_transform_edt(bone, sampling=spacing_mm)
        shell |= bone & (depth <= r.cortex_thickness_mm)
    cortex = bone & ((shell & (values >= r.cortex_min_hu)) | (values >= r.compact_min_hu))
    inner = bone & ~cortex
    out[inner] = marrow_labels(marrow.fat_fraction_of_hu(values[inner]))
    out[cortex] = Tissue.CORTICAL_BONE
    return out
