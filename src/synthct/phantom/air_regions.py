"""Air voxels of a CT split into outside air, lung and bowel gas by HU and morphology.

Each 3-D connected region of air (HU below the air threshold) is classified on its own:

* **lung** when even its 10th HU percentile lies above :data:`LUNG_P10_ABOVE_HU`: lung
  parenchyma is air mixed with tissue and blood in every voxel (normal lung ~ -850 HU, with
  few voxels below -950; Gevenois PA et al. Am J Respir Crit Care Med 1996;154:187-192),
  whereas free gas and outside air hold many voxels of -1000 HU plus noise, however much
  partial volume their edges add (on the real CTs here: lung 5th percentile -896..-875 HU,
  gas and outside air -1000 HU or below);
* **bowel gas** when it lies inside the body: enclosed by tissue in its axial plane (holes of
  the body mask, plane by plane) and not touching the edge of the field of view;
* **outside air** otherwise.

Labels, where given, override this (lung lobes, bowel); this is the fallback that makes a CT
without labels usable, and the generator reports that lung and bowel gas came from HU alone.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from synthct.imaging.labels import Tissue

#: An air region whose 10th HU percentile is above this is lung (parenchyma, not free gas).
LUNG_P10_ABOVE_HU = -960.0
#: Smallest air region (mL) taken as lung; smaller dense-air regions are partial-volume gas.
LUNG_MIN_VOLUME_ML = 5.0


def _body_planes(tissue: NDArray[np.bool_], axis: int) -> NDArray[np.bool_]:
    """Tissue plus its enclosed holes, plane by plane perpendicular to ``axis``."""
    moved = np.moveaxis(tissue, axis, 0)
    filled = np.stack([ndimage.binary_fill_holes(plane) for plane in moved])
    return np.moveaxis(filled, 0, axis)


def _touches_edge(box: tuple[slice, ...], shape: tuple[int, ...]) -> bool:
    """Whether a region's tight bounding box reaches the edge of the grid."""
    return any(s.start == 0 or s.stop == n for s, n in zip(box, shape, strict=True))


def classify_air(
    hu: NDArray[np.generic],
    air: NDArray[np.bool_],
    *,
    voxel_volume_mm3: float,
    cranial_axis: int,
) -> NDArray[np.uint8]:
    """``AIR``, ``LUNG`` or ``BOWEL_GAS`` for every air voxel (0 elsewhere).

    Parameters
    ----------
    hu : ndarray
        CT numbers.
    air : ndarray of bool
        Voxels below the air threshold.
    voxel_volume_mm3 : float
        Volume of one voxel.
    cranial_axis : int
        Array axis closest to the patient's cranio-caudal axis (axial planes lie across it).
    """
    out = np.zeros(air.shape, dtype=np.uint8)
    if not air.any():
        return out
    values = np.asarray(hu, dtype=np.float64)
    inside_body = _body_planes(~air, cranial_axis)
    regions, _ = ndimage.label(air)
    objects = ndimage.find_objects(regions)
    min_voxels = LUNG_MIN_VOLUME_ML * 1000.0 / voxel_volume_mm3
    for number, box in enumerate(objects, start=1):
        if box is None:
            continue
        region = regions[box] == number
        p10 = float(np.percentile(values[box][region], 10))
        if p10 > LUNG_P10_ABOVE_HU and region.sum() >= min_voxels:
            tissue = Tissue.LUNG
        elif inside_body[box][region].all() and not _touches_edge(box, air.shape):
            tissue = Tissue.BOWEL_GAS
        else:
            tissue = Tissue.AIR
        out[box][region] = tissue
    return out
