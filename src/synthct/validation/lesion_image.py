"""One lesion measured on one image (CT or sCT): ROI statistics, CNR, segmentation, size.

Plain functions on arrays (an image in HU and boolean masks of the same shape, plus the affine
wherever a distance is measured); :mod:`synthct.validation.lesion_metrics` applies them to the
CT and the sCT of a case.

* ROI statistics (:func:`roi_statistics`): mean, SD (``ddof=1``), median, 5th and 95th
  percentiles in HU, and the calcified fraction (voxels ``>= calcified_threshold_hu``).
* Visibility (:func:`contrast_to_noise`): ``CNR = (mean_roi - mean_shell) / SD_shell`` with the
  shell of :func:`~synthct.validation.lesion_roi.shell_mask`; with ``SD_shell = 0`` the CNR is
  ``+-inf`` (0 when the means are equal too). A lesion is visible when ``|CNR| >=
  rose_threshold`` (Rose criterion, 3 by default [2]_) **and** its segmentation has at least
  ``min_voxels`` voxels and a largest diameter of at least ``min_diameter_mm``.
* Size (:mod:`synthct.imaging.lesion_size`): half-way threshold between the ROI mean and the
  shell mean inside the search region, components that overlap the ROI; maximal axial Feret
  diameter and cranio-caudal extent in mm. A lesion that is not visible has an empty
  segmentation and 0 x 0 mm, as Fischer et al. report [1]_.
* Calcification grade from the CT ROI mean (:func:`calcification_grade`).

References
----------
.. [1] G. Fischer et al., "Evaluation of magnetic resonance imaging and deep learning-based
   synthetic computed tomography for calcified intradural tumors", Acta Neurochirurgica, 2025,
   doi:10.1007/s00701-025-06731-0.
.. [2] A. Rose, "The sensitivity performance of the human eye on an absolute scale", JOSA 38(2),
   1948.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from synthct.errors import VolumeKindError
from synthct.imaging.lesion_size import (
    axial_diameter_mm,
    craniocaudal_extent_mm,
    half_way_threshold_hu,
    segment_lesion,
)
from synthct.validation.lesion_settings import LesionSettings

__all__ = [
    "CalcificationGrade",
    "ImageLesionMeasurement",
    "RoiStatistics",
    "calcification_grade",
    "contrast_to_noise",
    "measure_image_lesion",
    "roi_statistics",
]

CalcificationGrade = Literal["none_or_barely", "partial", "dense"]


@dataclass(frozen=True)
class RoiStatistics:
    """HU statistics of the voxels of a ROI (see :func:`roi_statistics`)."""

    mean_hu: float
    sd_hu: float
    median_hu: float
    p5_hu: float
    p95_hu: float
    calcified_fraction: float
    n_voxels: int


def _values_in(image: ArrayLike, mask: ArrayLike, what: str) -> NDArray[np.float64]:
    data = np.asarray(image)
    region = np.asarray(mask, dtype=bool)
    if data.shape != region.shape:
        raise ValueError(f"image {data.shape} and {what} mask {region.shape} differ in shape")
    values = data[region].astype(np.float64)
    if values.size == 0:
        raise VolumeKindError(f"the {what} mask selects no voxel", path=what)
    if not np.all(np.isfinite(values)):
        raise VolumeKindError(
            f"{int(np.count_nonzero(~np.isfinite(values)))} voxels of the {what} are NaN or "
            "infinite",
            path=what,
            fix="replace NaNs in the image (e.g. with -1024 HU) before measuring",
        )
    return values


def roi_statistics(
    image_hu: ArrayLike, mask: ArrayLike, *, calcified_threshold_hu: float = 130.0
) -> RoiStatistics:
    """Mean, SD, median, 5th/95th percentiles and calcified fraction of HU inside a mask.

    Parameters
    ----------
    image_hu : (I, J, K) array_like
        Image in HU (NaNs raise :class:`~synthct.errors.VolumeKindError`).
    mask : (I, J, K) array_like of bool
        The ROI; must select at least one voxel.
    calcified_threshold_hu : float
        Voxels ``>=`` this count as calcified.

    Notes
    -----
    The SD is the sample SD (``ddof=1``); it is NaN for a single voxel. Percentiles use numpy's
    default linear interpolation.
    """
    values = _values_in(image_hu, mask, "ROI")
    p5, median, p95 = np.percentile(values, [5.0, 50.0, 95.0])
    return RoiStatistics(
        mean_hu=float(values.mean()),
        sd_hu=float(values.std(ddof=1)) if values.size > 1 else math.nan,
        median_hu=float(median),
        p5_hu=float(p5),
        p95_hu=float(p95),
        calcified_fraction=float(np.count_nonzero(values >= calcified_threshold_hu) / values.size),
        n_voxels=int(values.size),
    )


def contrast_to_noise(lesion_mean: float, background_mean: float, background_sd: float) -> float:
    """``(lesion_mean - background_mean) / background_sd``; ``+-inf`` (or 0) when the SD is 0."""
    contrast = float(lesion_mean) - float(background_mean)
    if not math.isfinite(background_sd) or background_sd < 0:
        raise ValueError(f"the background SD must be finite and >= 0, got {background_sd}")
    if background_sd == 0:
        return 0.0 if contrast == 0 else math.copysign(math.inf, contrast)
    return contrast / float(background_sd)


def calcification_grade(
    ct_mean_hu: float, *, partial_min_hu: float = 130.0, dense_min_hu: float = 400.0
) -> CalcificationGrade:
    """Grade of calcification from the CT ROI mean: ``none_or_barely``, ``partial``, ``dense``."""
    if not math.isfinite(ct_mean_hu):
        raise ValueError(f"the CT mean must be finite, got {ct_mean_hu}")
    if ct_mean_hu >= dense_min_hu:
        return "dense"
    if ct_mean_hu >= partial_min_hu:
        return "partial"
    return "none_or_barely"


@dataclass(frozen=True)
class ImageLesionMeasurement:
    """One lesion measured on one image (CT or sCT)."""

    roi: RoiStatistics
    shell_mean_hu: float
    shell_sd_hu: float
    cnr: float
    threshold_hu: float
    visible: bool
    segmented_voxels: int
    segmented_volume_mm3: float
    diameter_axial_mm: float
    diameter_sagittal_mm: float

    def to_dict(self, prefix: str) -> dict[str, Any]:
        """Flat dictionary, keys prefixed (e.g. ``ct_mean_hu``)."""
        roi = self.roi
        values: dict[str, Any] = {
            "mean_hu": roi.mean_hu,
            "sd_hu": roi.sd_hu,
            "median_hu": roi.median_hu,
            "p5_hu": roi.p5_hu,
            "p95_hu": roi.p95_hu,
            "calcified_fraction": roi.calcified_fraction,
            "shell_mean_hu": self.shell_mean_hu,
            "shell_sd_hu": self.shell_sd_hu,
            "cnr": self.cnr,
            "visible": self.visible,
            "threshold_hu": self.threshold_hu,
            "segmented_voxels": self.segmented_voxels,
            "segmented_volume_mm3": self.segmented_volume_mm3,
            "diameter_axial_mm": self.diameter_axial_mm,
            "diameter_sagittal_mm": self.diameter_sagittal_mm,
        }
        return {f"{prefix}_{key}": value for key, value in values.items()}


def measure_image_lesion(
    image_hu: ArrayLike,
    roi: ArrayLike,
    *,
    affine: ArrayLike,
    shell: ArrayLike,
    search: ArrayLike,
    settings: LesionSettings | None = None,
) -> tuple[ImageLesionMeasurement, NDArray[np.bool_]]:
    """Measure one lesion on one image: ROI statistics, CNR, segmentation, diameters.

    Parameters
    ----------
    image_hu : (I, J, K) array_like
        The image in HU (may be a crop of the volume).
    roi, shell, search : (I, J, K) array_like of bool
        Annotation ROI, background shell and search region on the same array.
    affine : (4, 4) array_like
        Voxel index of this array to LPS mm (of the crop, when cropped).
    settings : LesionSettings, optional
        Thresholds; defaults when omitted.

    Returns
    -------
    measurement : ImageLesionMeasurement
    segmentation : (I, J, K) ndarray of bool
        Empty when the lesion is not visible.
    """
    s = settings or LesionSettings()
    data = np.asarray(image_hu)
    a = np.asarray(affine, dtype=np.float64)
    stats = roi_statistics(data, roi, calcified_threshold_hu=s.calcified_threshold_hu)
    background = _values_in(data, shell, "shell")
    if background.size < 2:
        raise VolumeKindError(
            "the background shell holds a single voxel; its SD is undefined",
            path="shell",
            fix="widen the shell (shell_outer_mm) or the background mask",
        )
    shell_mean = float(background.mean())
    shell_sd = float(background.std(ddof=1))
    cnr = contrast_to_noise(stats.mean_hu, shell_mean, shell_sd)
    segmentation = segment_lesion(
        data,
        roi,
        search=search,
        lesion_level_hu=stats.mean_hu,
        background_level_hu=shell_mean,
        connectivity=s.connectivity,
    )
    n_voxels = int(np.count_nonzero(segmentation))
    axial = axial_diameter_mm(segmentation, affine=a)
    sagittal = craniocaudal_extent_mm(segmentation, affine=a)
    visible = (
        abs(cnr) >= s.rose_threshold
        and n_voxels >= s.min_voxels
        and max(axial, sagittal) >= s.min_diameter_mm
    )
    if not visible:
        segmentation = np.zeros_like(segmentation)
        n_voxels, axial, sagittal = 0, 0.0, 0.0
    voxel_mm3 = float(abs(np.linalg.det(a[:3, :3])))
    measurement = ImageLesionMeasurement(
        roi=stats,
        shell_mean_hu=shell_mean,
        shell_sd_hu=shell_sd,
        cnr=cnr,
        threshold_hu=half_way_threshold_hu(stats.mean_hu, shell_mean),
        visible=bool(visible),
        segmented_voxels=n_voxels,
        segmented_volume_mm3=n_voxels * voxel_mm3,
        diameter_axial_mm=axial,
        diameter_sagittal_mm=sagittal,
    )
    return measurement, segmentation
