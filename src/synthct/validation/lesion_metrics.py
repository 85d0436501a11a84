"""Lesion-level validation of a synthetic CT: per lesion, on the CT and on the sCT, in one ROI.

This automates the lesion reading of Fischer et al. [1]_: visibility, maximal axial and
sagittal diameters and mean HU in a ROI set where the tumour shows on the MRI source. A
commercial sCT missed 5/5 calcified meningiomas there (0 x 0 mm, ~20 HU against 463.6 HU on
CT); :func:`measure_lesion` measures exactly that on any CT/sCT pair, lesion by lesion.

For one lesion, :func:`measure_lesion`

1. checks that the CT and the sCT share a grid (:func:`~synthct.geometry.require_same_geometry`);
2. places the annotation on the CT grid (:mod:`synthct.validation.lesion_roi`): a label map
   resampled with nearest neighbour, or a point with a radius (sphere ROI); it builds the
   background shell and the search region in a box around it;
3. measures the same ROI on the CT and on the sCT (:func:`measure_image_lesion`: ROI statistics,
   CNR against the shell, half-way-threshold segmentation, diameters, visibility);
4. grades the calcification from the CT mean and compares: differences ``sCT - CT`` and the
   Dice of the two segmentations;
5. with an MRI, measures the CNR of the same ROI on each echo (was the lesion on the source?).

Every rule and threshold is in :class:`LesionSettings`; :meth:`LesionResult.to_dict` gives a
flat row with units in the keys.

References
----------
.. [1] G. Fischer et al., "Evaluation of magnetic resonance imaging and deep learning-based
   synthetic computed tomography for calcified intradural tumors", Acta Neurochirurgica, 2025,
   doi:10.1007/s00701-025-06731-0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from synthct.errors import VolumeKindError
from synthct.geometry import Geometry, require_same_geometry
from synthct.imaging.body_mask import body_mask_from_ct
from synthct.imaging.lesion_size import dice_coefficient
from synthct.imaging.mri_noise import estimate_noise_sd
from synthct.resample import resample_to
from synthct.validation.lesion_image import (
    CalcificationGrade,
    ImageLesionMeasurement,
    RoiStatistics,
    calcification_grade,
    contrast_to_noise,
    measure_image_lesion,
    roi_statistics,
)
from synthct.validation.lesion_roi import (
    EmptyLesionMaskError,
    LesionAnnotationError,
    LesionPoint,
    Slices,
    annotation_on_grid,
    lesion_boxes,
    pad_box,
    search_region,
    shell_mask,
    single_label,
    sphere_mask,
)
from synthct.validation.lesion_settings import LesionSettings
from synthct.volume import CTVolume, LabelMap, Volume

__all__ = [
    "CalcificationGrade",
    "EmptyLesionMaskError",
    "ImageLesionMeasurement",
    "LesionAnnotationError",
    "LesionMasks",
    "LesionPoint",
    "LesionResult",
    "LesionSettings",
    "RoiStatistics",
    "calcification_grade",
    "contrast_to_noise",
    "measure_image_lesion",
    "measure_lesion",
    "measure_lesions",
    "roi_statistics",
]

#: |CT mean| below which the relative HU difference is not defined (NaN), in HU.
RELATIVE_DIFFERENCE_MIN_HU = 1.0

BackgroundMask = LabelMap | NDArray[np.bool_] | None


@dataclass(frozen=True, eq=False)
class LesionMasks:
    """The masks of one lesion, in a box of the CT grid.

    ``box`` holds the slices of the CT array; ``affine`` maps indices of the box to LPS mm.
    """

    box: Slices
    affine: NDArray[np.float64]
    roi: NDArray[np.bool_]
    shell: NDArray[np.bool_]
    search: NDArray[np.bool_]
    ct_segmentation: NDArray[np.bool_]
    sct_segmentation: NDArray[np.bool_]

    def on_grid(
        self,
        which: Literal["roi", "shell", "search", "ct_segmentation", "sct_segmentation"],
        shape: tuple[int, int, int],
    ) -> NDArray[np.bool_]:
        """One mask on the whole CT grid of ``shape``."""
        full = np.zeros(shape, dtype=bool)
        full[self.box] = getattr(self, which)
        return full


@dataclass(frozen=True, eq=False)
class LesionResult:
    """One lesion measured on CT and sCT; :meth:`to_dict` gives the flat row."""

    lesion_id: int
    name: str | None
    annotation_kind: Literal["label", "point"]
    roi_voxels: int
    roi_volume_mm3: float
    roi_center_lps_mm: tuple[float, float, float]
    shell_voxels: int
    ct: ImageLesionMeasurement
    sct: ImageLesionMeasurement
    calcification_grade: CalcificationGrade
    dice: float
    mri_cnr: float | None = None
    mri_cnr_echo: int | None = None
    mri_visible: bool | None = None
    truncated: bool = False
    masks: LesionMasks | None = field(default=None, repr=False)

    @property
    def mean_difference_hu(self) -> float:
        """sCT minus CT ROI mean, in HU."""
        return self.sct.roi.mean_hu - self.ct.roi.mean_hu

    @property
    def mean_relative_difference(self) -> float:
        """``(sCT - CT) / |CT|`` of the ROI means; NaN when ``|CT mean| < 1 HU``."""
        ct_mean = self.ct.roi.mean_hu
        if abs(ct_mean) < RELATIVE_DIFFERENCE_MIN_HU:
            return math.nan
        return self.mean_difference_hu / abs(ct_mean)

    @property
    def diameter_axial_difference_mm(self) -> float:
        """sCT minus CT maximal axial diameter, in mm."""
        return self.sct.diameter_axial_mm - self.ct.diameter_axial_mm

    @property
    def diameter_sagittal_difference_mm(self) -> float:
        """sCT minus CT maximal sagittal (cranio-caudal) diameter, in mm."""
        return self.sct.diameter_sagittal_mm - self.ct.diameter_sagittal_mm

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-ready row: units in the keys, ``ct_``/``sct_`` prefixes per image."""
        center = self.roi_center_lps_mm
        return {
            "lesion_id": self.lesion_id,
            "lesion_name": self.name,
            "annotation_kind": self.annotation_kind,
            "roi_voxels": self.roi_voxels,
            "roi_volume_mm3": self.roi_volume_mm3,
            "roi_center_l_mm": center[0],
            "roi_center_p_mm": center[1],
            "roi_center_s_mm": center[2],
            "shell_voxels": self.shell_voxels,
            **self.ct.to_dict("ct"),
            **self.sct.to_dict("sct"),
            "calcification_grade": self.calcification_grade,
            "mean_difference_hu": self.mean_difference_hu,
            "mean_relative_difference": self.mean_relative_difference,
            "diameter_axial_difference_mm": self.diameter_axial_difference_mm,
            "diameter_sagittal_difference_mm": self.diameter_sagittal_difference_mm,
            "dice": self.dice,
            "mri_cnr": self.mri_cnr,
            "mri_cnr_echo": self.mri_cnr_echo,
            "mri_visible": self.mri_visible,
            "truncated": self.truncated,
        }


def measure_lesion(
    ct: CTVolume,
    sct: CTVolume,
    annotation: LabelMap | LesionPoint,
    *,
    lesion_id: int | None = None,
    mri: Volume | None = None,
    background_mask: BackgroundMask = None,
    settings: LesionSettings | None = None,
) -> LesionResult:
    """Measure one lesion on the CT and on the sCT, in the same physical ROI.

    Parameters
    ----------
    ct : CTVolume
        The reference CT in HU.
    sct : CTVolume
        The synthetic CT in HU, on the CT's grid.
    annotation : LabelMap or LesionPoint
        The lesion: a label map (any grid in the CT's patient frame; resampled with nearest
        neighbour onto the CT grid) or a point with a radius in LPS mm.
    lesion_id : int, optional
        Label of the lesion in a label map (may be omitted when it holds one label); for a
        point, overrides the point's own id in the result.
    mri : Volume, optional
        The MRI source (multi-echo or single image) in the CT's frame; resampled linearly onto
        the CT grid when needed. Adds the MRI CNR of the same ROI and shell.
    background_mask : LabelMap or (I, J, K) ndarray of bool, optional
        Restricts the shell to these voxels (e.g. CSF/canal); a label map counts all non-zero
        labels and is resampled onto the CT grid when needed.
    settings : LesionSettings, optional
        Rules and thresholds; defaults when omitted.

    Returns
    -------
    LesionResult

    Raises
    ------
    GeometryMismatchError
        The CT and the sCT (or a background array) are on different grids.
    EmptyLesionMaskError
        The annotation, or its shell, selects no voxel.
    LesionAnnotationError
        The lesion lies outside the CT field of view.
    """
    s = settings or LesionSettings()
    _check_pair(ct, sct)
    if isinstance(annotation, LabelMap):
        label = single_label(annotation, lesion_id)
        box, inside = lesion_boxes(annotation, ct.geometry, lesion_ids=[label])[label]
        return _measure_labelled(
            ct,
            sct,
            box,
            inside,
            lesion_id=label,
            name=annotation.label_names.get(label),
            mri=_on_ct_grid(mri, ct),
            background=_background_on_grid(background_mask, ct.geometry),
            settings=s,
        )
    if isinstance(annotation, LesionPoint):
        return _measure_point(
            ct,
            sct,
            annotation,
            lesion_id=annotation.lesion_id if lesion_id is None else lesion_id,
            mri=_on_ct_grid(mri, ct),
            background=_background_on_grid(background_mask, ct.geometry),
            settings=s,
        )
    raise LesionAnnotationError(
        f"a lesion annotation is a LabelMap or a LesionPoint, got {type(annotation).__name__}",
        path="annotation",
        fix="load masks as kind 'label', or give LesionPoint(center_lps_mm, radius_mm)",
    )


def measure_lesions(
    ct: CTVolume,
    sct: CTVolume,
    annotations: LabelMap | Sequence[LesionPoint],
    *,
    lesion_ids: Sequence[int] | None = None,
    mri: Volume | None = None,
    background_mask: BackgroundMask = None,
    settings: LesionSettings | None = None,
    warnings: list[str] | None = None,
) -> list[LesionResult]:
    """Measure every lesion of a label map (or of a list of points), in label order.

    The label map, MRI and background mask are resampled onto the CT grid once. ``lesion_ids``
    selects labels of a label map (all non-zero labels by default). With a ``warnings`` list,
    an empty label map, a lesion that selects no voxel on the CT grid and a lesion without a
    background shell are appended to it as warnings and left out, and the other lesions are
    measured; without it they raise. Other parameters as in :func:`measure_lesion`.
    """
    s = settings or LesionSettings()
    _check_pair(ct, sct)
    mri_on_grid = _on_ct_grid(mri, ct)
    background = _background_on_grid(background_mask, ct.geometry)
    tolerant = warnings is not None
    jobs: list[tuple[int, Callable[[], LesionResult]]]
    if isinstance(annotations, LabelMap):
        failures: dict[int, LesionAnnotationError] | None = {} if tolerant else None
        try:
            boxes = lesion_boxes(annotations, ct.geometry, lesion_ids=lesion_ids, failures=failures)
        except EmptyLesionMaskError as exc:
            if warnings is None:
                raise
            warnings.append(f"no lesion measured: {exc.problem} ({exc.path})")
            return []
        for label, error in (failures or {}).items():
            _warn_empty(warnings, label, error)
        jobs = [
            (
                label,
                partial(
                    _measure_labelled,
                    ct,
                    sct,
                    box,
                    inside,
                    lesion_id=label,
                    name=annotations.label_names.get(label),
                    mri=mri_on_grid,
                    background=background,
                    settings=s,
                ),
            )
            for label, (box, inside) in boxes.items()
        ]
    else:
        jobs = [
            (
                point.lesion_id,
                partial(
                    _measure_point,
                    ct,
                    sct,
                    point,
                    lesion_id=point.lesion_id,
                    mri=mri_on_grid,
                    background=background,
                    settings=s,
                ),
            )
            for point in annotations
        ]
    results = []
    for label, job in jobs:
        try:
            results.append(job())
        except EmptyLesionMaskError as exc:
            if warnings is None:
                raise
            _warn_empty(warnings, label, exc)
    return results


def _warn_empty(warnings: list[str] | None, label: int, error: LesionAnnotationError) -> None:
    assert warnings is not None
    warnings.append(
        f"lesion {label} not measured: {error.problem}"
        + (f" (fix: {error.fix})" if error.fix else "")
    )


def _check_pair(ct: CTVolume, sct: CTVolume) -> None:
    for volume, what in ((ct, "ct"), (sct, "sct")):
        if not isinstance(volume, CTVolume):
            raise VolumeKindError(
                f"{what} must be a CT volume in HU, got {type(volume).__name__}",
                path=what,
                fix="read it with kind='ct' or kind='sct'",
            )
    require_same_geometry(ct.geometry, sct.geometry, names=("CT", "sCT"))


@dataclass(frozen=True)
class _MRIOnGrid:
    """The MRI on the CT grid, as channels, with each channel's noise SD."""

    channels: NDArray[Any]
    noise_sd: tuple[float, ...]


def _on_ct_grid(mri: Volume | None, ct: CTVolume) -> _MRIOnGrid | None:
    if mri is None:
        return None
    if not mri.geometry.is_close(ct.geometry):
        mri = resample_to(mri, ct.geometry)
    channels = mri.array if mri.channel_axes else mri.array[None]
    # Noise outside the CT's body (Rayleigh background), per echo: the MRI CNR's denominator.
    body = body_mask_from_ct(ct.array)
    noise = tuple(estimate_noise_sd(channels[e : e + 1], body) for e in range(channels.shape[0]))
    return _MRIOnGrid(channels, noise)


def _background_on_grid(mask: BackgroundMask, geometry: Geometry) -> NDArray[np.bool_] | None:
    if mask is None:
        return None
    if isinstance(mask, LabelMap):
        return annotation_on_grid(mask, geometry).mask()
    array = np.asarray(mask, dtype=bool)
    if array.shape != geometry.shape:
        raise VolumeKindError(
            f"the background mask has shape {array.shape}, the CT {geometry.shape}",
            path="background_mask",
            fix="pass a LabelMap (resampled automatically) or an array on the CT grid",
        )
    return array


def _box_affine(geometry: Geometry, box: Slices) -> NDArray[np.float64]:
    affine = np.array(geometry.affine, dtype=np.float64)
    affine[:3, 3] = geometry.index_to_lps([s.start for s in box])
    return affine


def _measure_point(
    ct: CTVolume,
    sct: CTVolume,
    point: LesionPoint,
    *,
    lesion_id: int,
    mri: _MRIOnGrid | None,
    background: NDArray[np.bool_] | None,
    settings: LesionSettings,
) -> LesionResult:
    geometry = ct.geometry
    margin_mm = point.radius_mm + max(settings.shell_outer_mm, settings.search_margin_mm)
    center = geometry.lps_to_index(point.center_lps_mm)
    box_list = []
    for axis, (n, step) in enumerate(zip(geometry.shape, geometry.spacing_mm, strict=True)):
        pad = math.ceil(margin_mm / step) + 1
        c = int(np.clip(np.rint(center[axis]), 0, n - 1))
        box_list.append(slice(max(c - pad, 0), min(c + pad + 1, n)))
    box: Slices = (box_list[0], box_list[1], box_list[2])
    roi = sphere_mask(geometry, point.center_lps_mm, point.radius_mm, region=box)
    return _measure_box(
        ct,
        sct,
        roi,
        box,
        lesion_id=lesion_id,
        name=point.name,
        kind="point",
        mri=mri,
        background=background,
        settings=settings,
    )


def _measure_labelled(
    ct: CTVolume,
    sct: CTVolume,
    tight_box: Slices,
    inside: NDArray[np.bool_],
    *,
    lesion_id: int,
    name: str | None,
    mri: _MRIOnGrid | None,
    background: NDArray[np.bool_] | None,
    settings: LesionSettings,
) -> LesionResult:
    margin_mm = max(settings.shell_outer_mm, settings.search_margin_mm)
    box = pad_box(tight_box, ct.spatial_shape, spacing_mm=ct.spacing_mm, margin_mm=margin_mm)
    roi = np.zeros(tuple(s.stop - s.start for s in box), dtype=bool)
    offset = [t.start - b.start for t, b in zip(tight_box, box, strict=True)]
    roi[tuple(slice(o, o + n) for o, n in zip(offset, inside.shape, strict=True))] = inside
    return _measure_box(
        ct,
        sct,
        roi,
        box,
        lesion_id=lesion_id,
        name=name,
        kind="label",
        mri=mri,
        background=background,
        settings=settings,
    )


def _measure_box(
    ct: CTVolume,
    sct: CTVolume,
    roi: NDArray[np.bool_],
    box: Slices,
    *,
    lesion_id: int,
    name: str | None,
    kind: Literal["label", "point"],
    mri: _MRIOnGrid | None,
    background: NDArray[np.bool_] | None,
    settings: LesionSettings,
) -> LesionResult:
    if not roi.any():
        raise EmptyLesionMaskError(
            f"lesion {lesion_id} selects no voxel", path=f"lesion {lesion_id}"
        )
    spacing = ct.spacing_mm
    restrict = None if background is None else background[box]
    shell = shell_mask(
        roi,
        spacing_mm=spacing,
        inner_mm=settings.shell_inner_mm,
        outer_mm=settings.shell_outer_mm,
        restrict_to=restrict,
    )
    if settings.shell_hu_window is not None:
        # The paper's reference tissue is the CSF/cord around the tumour: bone, fat and air
        # within a few mm (laminae, vertebral body, epidural fat) would swamp the shell SD.
        low, high = settings.shell_hu_window
        reference = ct.array[box]
        windowed = shell & (reference >= low) & (reference <= high)
        if np.count_nonzero(windowed) >= settings.min_shell_voxels:
            shell = windowed
    search = search_region(roi, spacing_mm=spacing, margin_mm=settings.search_margin_mm)
    affine = _box_affine(ct.geometry, box)
    measured = {}
    segmentations = {}
    for what, volume in (("ct", ct), ("sct", sct)):
        measured[what], segmentations[what] = measure_image_lesion(
            volume.array[box], roi, affine=affine, shell=shell, search=search, settings=settings
        )
    mri_cnr, mri_echo = _mri_contrast(mri, box, roi, shell)
    index = np.argwhere(roi)
    truncated = _touches_edge(roi | segmentations["ct"], box, ct.spatial_shape)
    center = ct.geometry.index_to_lps(index.mean(axis=0) + [s.start for s in box])
    return LesionResult(
        lesion_id=int(lesion_id),
        name=name,
        annotation_kind=kind,
        roi_voxels=len(index),
        roi_volume_mm3=float(len(index) * ct.geometry.voxel_volume_mm3),
        roi_center_lps_mm=(float(center[0]), float(center[1]), float(center[2])),
        shell_voxels=int(np.count_nonzero(shell)),
        ct=measured["ct"],
        sct=measured["sct"],
        calcification_grade=calcification_grade(
            measured["ct"].roi.mean_hu,
            partial_min_hu=settings.grade_partial_min_hu,
            dense_min_hu=settings.grade_dense_min_hu,
        ),
        dice=dice_coefficient(segmentations["ct"], segmentations["sct"]),
        mri_cnr=mri_cnr,
        mri_cnr_echo=mri_echo,
        mri_visible=None if mri_cnr is None else abs(mri_cnr) >= settings.rose_threshold,
        truncated=truncated,
        masks=LesionMasks(
            box=box,
            affine=affine,
            roi=roi,
            shell=shell,
            search=search,
            ct_segmentation=segmentations["ct"],
            sct_segmentation=segmentations["sct"],
        ),
    )


def _touches_edge(mask: NDArray[np.bool_], box: Slices, shape: Sequence[int]) -> bool:
    """True when ``mask`` (in ``box`` of a grid of ``shape``) reaches the grid's outer face."""
    for axis, (s, n) in enumerate(zip(box, shape, strict=True)):
        faces = ([0] if s.start == 0 else []) + ([-1] if s.stop == n else [])
        if any(np.take(mask, face, axis=axis).any() for face in faces):
            return True
    return False


def _mri_contrast(
    mri: _MRIOnGrid | None, box: Slices, roi: NDArray[np.bool_], shell: NDArray[np.bool_]
) -> tuple[float | None, int | None]:
    """CNR of the ROI against the shell on each echo; the echo with the largest |CNR|.

    MRI convention: (ROI mean - shell mean) / noise SD of the echo (Rayleigh background).
    The shell's own SD is no noise on MRI: CSF and cord around an intradural lesion differ
    several-fold on T1w. Without a noise estimate the shell SD is the denominator.
    """
    if mri is None:
        return None, None
    best: tuple[float, int] | None = None
    for echo, channel in enumerate(mri.channels):
        crop = np.asarray(channel[box], dtype=np.float64)
        background = crop[shell]
        sd = mri.noise_sd[echo]
        if not sd > 0:
            sd = float(background.std(ddof=1)) if background.size > 1 else 0.0
        cnr = contrast_to_noise(float(crop[roi].mean()), float(background.mean()), sd)
        if best is None or abs(cnr) > abs(best[0]):
            best = (cnr, echo)
    assert best is not None
    return best
