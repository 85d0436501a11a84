"""Per-tissue HU statistics of a CT, from HU classes of the smoothed image.

A voxel's class comes from the CT smoothed by a Gaussian (``smoothing_mm``), so noise does not
move voxels across a class edge and each class is a set of contiguous tissue; the class is then
eroded by one voxel (partial volume at edges left out) and the mean and SD are taken of the
*unsmoothed* HU inside it. A threshold on the raw HU would truncate each tissue's distribution
and bias its SD low; this way the SD holds noise and texture, as it should when a phantom's
tissue is compared with a real one.

HU windows (:class:`HUWindows`), on the smoothed CT:

==============  =====================  =================================================
class           smoothed HU            source
==============  =====================  =================================================
air             < -900, outside body   air is -1000 HU by definition of the HU scale
lung            -950 .. -500, in body  Gevenois PA et al. Am J Respir Crit Care Med 1996;
                                       154:187-192 (-950 HU: emphysema below); the -500 HU
                                       upper edge is an assumption (vessel partial volume)
fat             -190 .. -30            Yoshizumi T et al. Radiology 1999;211:283-286
soft tissue     -29 .. 150             Mitsiopoulos N et al. J Appl Physiol 1998;85:
                                       115-122 (skeletal muscle window); organs included
bone            >= 200                 trabecular and cortical bone (Kalender W, Computed
                                       Tomography, 3rd ed., 2011, ch. 1)
==============  =====================  =================================================

Air outside the body leaves out constant regions (a 3 x 3 x 3 neighbourhood with one value):
padding outside a scanner's reconstruction circle has no noise and is no tissue.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from synthct.errors import SynthctError

__all__ = ["HUWindows", "TissueHU", "hu_class_masks", "tissue_hu_stats"]


@dataclass(frozen=True)
class HUWindows:
    """Smoothed-HU windows of the tissue classes (sources in the module docstring)."""

    air_below_hu: float = -900.0
    lung_hu: tuple[float, float] = (-950.0, -500.0)
    fat_hu: tuple[float, float] = (-190.0, -30.0)
    soft_hu: tuple[float, float] = (-29.0, 150.0)
    bone_from_hu: float = 200.0
    smoothing_mm: float = 2.0
    erosion_voxels: int = 1

    def __post_init__(self) -> None:
        for name in ("lung_hu", "fat_hu", "soft_hu"):
            low, high = getattr(self, name)
            if not low < high:
                raise SynthctError(
                    f"{name} must be (low, high) with low < high, got {(low, high)}",
                    path=f"HUWindows.{name}",
                    fix="give the lower edge first",
                )
        if self.smoothing_mm < 0 or self.erosion_voxels < 0:
            raise SynthctError(
                "smoothing_mm and erosion_voxels must be >= 0",
                path="HUWindows",
                fix="use 0 to switch smoothing or erosion off",
            )


@dataclass(frozen=True)
class TissueHU:
    """HU statistics of one tissue class."""

    mean_hu: float
    sd_hu: float
    median_hu: float
    voxels: int


def hu_class_masks(
    hu: ArrayLike,
    body: ArrayLike,
    *,
    spacing_mm: Sequence[float],
    windows: HUWindows | None = None,
) -> dict[str, NDArray[np.bool_]]:
    """Masks of air (outside the body), lung, fat, soft tissue and bone (rules above).

    Parameters
    ----------
    hu : (I, J, K) array_like
        CT in HU.
    body : (I, J, K) array_like of bool
        The body mask (e.g. :func:`synthct.imaging.body_mask.body_mask_from_ct`).
    spacing_mm : sequence of 3 float
        Voxel size along the array axes (for the smoothing).
    windows : HUWindows, optional
        The class windows, smoothing and erosion.

    Returns
    -------
    dict of str to ndarray of bool
        Keys ``air``, ``lung``, ``fat``, ``soft_tissue``, ``bone``; a class may be empty.
    """
    w = windows or HUWindows()
    raw = np.asarray(hu, dtype=np.float32)
    inside = np.asarray(body, dtype=bool)
    if raw.shape != inside.shape or raw.ndim != 3:
        raise SynthctError(
            f"the CT {raw.shape} and the body mask {inside.shape} must be one 3D grid",
            path="body",
            fix="compute the body mask on the same CT array",
        )
    sigma = [w.smoothing_mm / float(s) for s in spacing_mm]
    smooth = ndimage.gaussian_filter(raw, sigma) if w.smoothing_mm > 0 else raw
    local_range = ndimage.maximum_filter(raw, size=3) - ndimage.minimum_filter(raw, size=3)
    masks = {
        "air": (~inside) & (smooth < w.air_below_hu) & (local_range > 0),
        "lung": inside & (smooth >= w.lung_hu[0]) & (smooth < w.lung_hu[1]),
        "fat": inside & (smooth >= w.fat_hu[0]) & (smooth < w.fat_hu[1]),
        "soft_tissue": inside & (smooth >= w.soft_hu[0]) & (smooth < w.soft_hu[1]),
        "bone": inside & (smooth >= w.bone_from_hu),
    }
    if w.erosion_voxels > 0:
        masks = {
            name: ndimage.binary_erosion(mask, iterations=w.erosion_voxels)
            for name, mask in masks.items()
        }
    return {name: np.asarray(mask, dtype=bool) for name, mask in masks.items()}


def tissue_hu_stats(
    hu: ArrayLike, masks: Mapping[str, ArrayLike], *, min_voxels: int = 50
) -> dict[str, TissueHU]:
    """HU mean, SD and median of ``hu`` inside each mask.

    Parameters
    ----------
    hu : (I, J, K) array_like
        CT in HU.
    masks : mapping of str to array_like of bool
        Tissue masks on the same grid (e.g. from :func:`hu_class_masks`, or tissue labels).
    min_voxels : int
        Classes with fewer voxels are left out (their SD would say little).

    Returns
    -------
    dict of str to TissueHU
        One entry per class with at least ``min_voxels`` voxels.
    """
    values = np.asarray(hu, dtype=np.float64)
    out: dict[str, TissueHU] = {}
    for name, mask in masks.items():
        m = np.asarray(mask, dtype=bool)
        if m.shape != values.shape:
            raise SynthctError(
                f"mask {name!r} has shape {m.shape}, the CT {values.shape}",
                path=name,
                fix="give masks on the CT's grid",
            )
        picked = values[m]
        if picked.size < min_voxels:
            continue
        out[name] = TissueHU(
            mean_hu=float(picked.mean()),
            sd_hu=float(picked.std(ddof=1)),
            median_hu=float(np.median(picked)),
            voxels=int(picked.size),
        )
    return out
