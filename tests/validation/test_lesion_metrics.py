"""Lesion-level metrics on phantoms with known answers, and on a real CT with an inserted lesion.

Phantoms: a sphere or ellipsoid of known HU and size (partial volume from 4^3 sub-samples per
voxel) in a CSF-like background of 10 HU with Gaussian noise (SD 10 HU), on LPS, RAS-stored,
anisotropic and oblique grids. The paper's finding is the reference case: a calcified lesion
that is on the CT but not on the sCT measures 0 x 0 mm with the sCT ROI at CSF level.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from known_geometry import AFFINES
from synthct.errors import GeometryMismatchError, VolumeKindError
from synthct.geometry import Geometry
from synthct.io import read_volume
from synthct.validation.lesion_image import measure_image_lesion, roi_statistics
from synthct.validation.lesion_metrics import (
    EmptyLesionMaskError,
    LesionAnnotationError,
    LesionPoint,
    LesionResult,
    LesionSettings,
    calcification_grade,
    contrast_to_noise,
    measure_lesion,
    measure_lesions,
)
from synthct.validation.lesion_roi import sphere_mask
from synthct.volume import CTVolume, LabelMap, MRProtocol, MultiEchoMR, SyntheticCT

CSF_HU = 10.0
NOISE_SD_HU = 10.0
LESION_HU = 600.0


def _grid(affine: np.ndarray, field_mm: float = 44.0) -> Geometry:
    """A grid with ``affine``'s spacing and directions covering ``field_mm`` along each axis."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    shape = tuple(math.ceil(field_mm / s) for s in spacing)
    return Geometry(shape, affine)


def _center(geometry: Geometry) -> np.ndarray:
    """A point near the middle of the grid, off the voxel lattice."""
    return geometry.index_to_lps((np.asarray(geometry.shape) - 1) / 2 + 0.27)


def _fraction_inside(
    geometry: Geometry, center: np.ndarray, semi_axes_lps_mm: tuple[float, float, float]
) -> np.ndarray:
    """Fraction of each voxel inside an LPS-aligned ellipsoid (4^3 sub-samples per voxel).

    Only voxels within a voxel diagonal of the surface are sub-sampled.
    """
    semi = np.asarray(semi_axes_lps_mm, dtype=float)
    index = np.indices(geometry.shape).reshape(3, -1).T.astype(float)
    p = (geometry.index_to_lps(index) - center) / semi
    radius = np.sqrt(np.einsum("ij,ij->i", p, p))
    margin = np.linalg.norm(geometry.spacing_mm) / 2 / semi.min()
    fraction = (radius <= 1.0).astype(float)
    edge = np.abs(radius - 1.0) <= margin
    sub = (np.arange(4) + 0.5) / 4 - 0.5
    offsets = np.stack(np.meshgrid(sub, sub, sub, indexing="ij"), -1).reshape(-1, 3)
    inside = np.zeros(int(edge.sum()))
    for offset in offsets:
        q = (geometry.index_to_lps(index[edge] + offset) - center) / semi
        inside += np.einsum("ij,ij->i", q, q) <= 1.0
    fraction[edge] = inside / len(offsets)
    return fraction.reshape(geometry.shape)


def _phantom(
    geometry: Geometry,
    semi_axes_lps_mm: tuple[float, float, float],
    *,
    lesion_hu: float = LESION_HU,
    noise_sd_hu: float = NOISE_SD_HU,
    seed: int = 0,
    partial_volume: bool = True,
) -> tuple[CTVolume, LabelMap, np.ndarray]:
    """CT with one lesion, its annotation (voxels at least half inside) and the lesion centre."""
    center = _center(geometry)
    fraction = _fraction_inside(geometry, center, semi_axes_lps_mm)
    if not partial_volume:
        fraction = (fraction >= 0.5).astype(float)
    rng = np.random.default_rng(seed)
    values = CSF_HU + fraction * (lesion_hu - CSF_HU) + rng.normal(0, noise_sd_hu, geometry.shape)
    ct = CTVolume(values.astype(np.float32), geometry.affine)
    annotation = LabelMap((fraction >= 0.5).astype(np.uint8), geometry.affine)
    return ct, annotation, center


def _csf_only(ct: CTVolume, seed: int = 1) -> SyntheticCT:
    """An sCT that shows CSF where the lesion is (the paper's finding)."""
    rng = np.random.default_rng(seed)
    values = CSF_HU + rng.normal(0, NOISE_SD_HU, ct.spatial_shape)
    return SyntheticCT(values.astype(np.float32), ct.affine)


def _as_sct(ct: CTVolume) -> SyntheticCT:
    return SyntheticCT(ct.array.copy(), ct.affine)


def _one_voxel_mm(geometry: Geometry) -> tuple[float, float]:
    """Tolerance of one voxel: in the axial plane, and along S."""
    a = geometry.affine
    s_axis = int(np.argmax(np.abs(a[2, :3])))
    in_plane = [geometry.spacing_mm[i] for i in range(3) if i != s_axis]
    return max(in_plane), float(np.abs(a[2, :3]).max())


# -- known answers on phantoms ----------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(AFFINES))
@pytest.mark.parametrize("diameter_mm", [6.0, 12.0, 20.0])
def test_sphere_diameters_within_one_voxel(name: str, diameter_mm: float) -> None:
    geometry = _grid(AFFINES[name])
    r = diameter_mm / 2
    ct, annotation, _ = _phantom(geometry, (r, r, r))
    result = measure_lesion(ct, _as_sct(ct), annotation)
    tol_axial, tol_s = _one_voxel_mm(geometry)
    assert result.ct.visible
    assert result.ct.cnr > 3
    assert abs(result.ct.diameter_axial_mm - diameter_mm) <= tol_axial
    assert abs(result.ct.diameter_sagittal_mm - diameter_mm) <= tol_s
    assert result.calcification_grade == "dense"


@pytest.mark.parametrize("name", ["lps", "oblique"])
def test_ellipsoid_elongated_cranio_caudally(name: str) -> None:
    geometry = _grid(AFFINES[name])
    ct, annotation, _ = _phantom(geometry, (4.0, 4.0, 10.0))
    result = measure_lesion(ct, _as_sct(ct), annotation)
    tol_axial, tol_s = _one_voxel_mm(geometry)
    assert abs(result.ct.diameter_axial_mm - 8.0) <= tol_axial
    assert abs(result.ct.diameter_sagittal_mm - 20.0) <= tol_s


def test_ellipsoid_elongated_left_right() -> None:
    geometry = _grid(AFFINES["ras"])
    ct, annotation, _ = _phantom(geometry, (9.0, 4.0, 4.0))
    result = measure_lesion(ct, _as_sct(ct), annotation)
    tol_axial, tol_s = _one_voxel_mm(geometry)
    assert abs(result.ct.diameter_axial_mm - 18.0) <= tol_axial
    assert abs(result.ct.diameter_sagittal_mm - 8.0) <= tol_s


def test_roi_statistics_within_noise_of_truth() -> None:
    geometry = _grid(AFFINES["lps"])
    ct, annotation, _ = _phantom(geometry, (6.0, 6.0, 6.0), partial_volume=False)
    result = measure_lesion(ct, _as_sct(ct), annotation)
    roi = result.ct.roi
    standard_error = NOISE_SD_HU / math.sqrt(roi.n_voxels)
    assert roi.n_voxels == result.roi_voxels > 500
    assert abs(roi.mean_hu - LESION_HU) < 4 * standard_error
    assert abs(roi.median_hu - LESION_HU) < 6 * standard_error
    assert roi.sd_hu == pytest.approx(NOISE_SD_HU, rel=0.1)
    assert roi.p5_hu == pytest.approx(LESION_HU - 1.645 * NOISE_SD_HU, abs=2.0)
    assert roi.p95_hu == pytest.approx(LESION_HU + 1.645 * NOISE_SD_HU, abs=2.0)
    assert roi.calcified_fraction == 1.0
    assert result.ct.shell_mean_hu == pytest.approx(CSF_HU, abs=1.0)
    assert result.ct.shell_sd_hu == pytest.approx(NOISE_SD_HU, rel=0.1)
    expected_cnr = (LESION_HU - CSF_HU) / NOISE_SD_HU
    assert result.ct.cnr == pytest.approx(expected_cnr, rel=0.1)
    # The binary sphere is segmented exactly: the annotation itself.
    assert result.masks is not None
    np.testing.assert_array_equal(result.masks.ct_segmentation, result.masks.roi)


def test_identical_sct_agrees_perfectly() -> None:
    geometry = _grid(AFFINES["oblique"])
    ct, annotation, _ = _phantom(geometry, (5.0, 5.0, 7.0))
    result = measure_lesion(ct, _as_sct(ct), annotation)
    row = result.to_dict()
    assert row["mean_difference_hu"] == 0.0
    assert row["mean_relative_difference"] == 0.0
    assert row["diameter_axial_difference_mm"] == 0.0
    assert row["diameter_sagittal_difference_mm"] == 0.0
    assert row["dice"] == 1.0
    for key in [k for k in row if k.startswith("ct_")]:
        assert row["s" + key] == row[key], key


def test_lesion_missing_on_sct_measures_zero_by_zero() -> None:
    geometry = _grid(AFFINES["lps"])
    ct, annotation, _ = _phantom(geometry, (6.0, 6.0, 8.0))
    result = measure_lesion(ct, _csf_only(ct), annotation)
    row = result.to_dict()
    assert row["ct_visible"] is True
    assert row["sct_visible"] is False
    assert abs(row["sct_cnr"]) < 3
    assert row["sct_diameter_axial_mm"] == 0.0
    assert row["sct_diameter_sagittal_mm"] == 0.0
    assert row["sct_segmented_voxels"] == 0
    assert row["sct_mean_hu"] == pytest.approx(CSF_HU, abs=3.0)
    assert row["dice"] == 0.0
    assert row["mean_difference_hu"] < -400
    assert row["diameter_axial_difference_mm"] == -row["ct_diameter_axial_mm"]


def test_point_annotation_equals_the_equivalent_mask() -> None:
    geometry = _grid(AFFINES["oblique"])
    ct, _, center = _phantom(geometry, (6.0, 6.0, 6.0))
    point = LesionPoint(tuple(center), 6.0, lesion_id=4, name="T8/9")
    mask = LabelMap(sphere_mask(geometry, center, 6.0).astype(np.uint8) * 4, geometry.affine)
    from_point = measure_lesion(ct, _csf_only(ct), point).to_dict()
    from_mask = measure_lesion(ct, _csf_only(ct), mask).to_dict()
    assert from_point.pop("annotation_kind") == "point"
    assert from_mask.pop("annotation_kind") == "label"
    assert from_point.pop("lesion_name") == "T8/9"
    assert from_mask.pop("lesion_name") is None
    assert from_point.keys() == from_mask.keys()
    for key, value in from_point.items():
        if isinstance(value, float):
            assert value == pytest.approx(from_mask[key], rel=1e-12, abs=1e-9), key
        else:
            assert value == from_mask[key], key


def test_mask_on_a_finer_grid_measures_the_same() -> None:
    geometry = Geometry.from_parameters((30, 30, 24), (1.5, 1.5, 2.0), (-20.0, -30.0, 50.0))
    ct, annotation, center = _phantom(geometry, (6.0, 6.0, 7.0))
    # The same lesion outlined on an MRI-like grid of a third of the spacing, same frame.
    fine = Geometry.from_parameters(
        (90, 90, 72),
        (0.5, 0.5, 2.0 / 3.0),
        tuple(np.asarray(geometry.origin_lps_mm) - (0.5, 0.5, 2.0 / 3.0)),
    )
    fine_mask = _fraction_inside(fine, center, (6.0, 6.0, 7.0)) >= 0.5
    fine_annotation = LabelMap(fine_mask.astype(np.uint8), fine.affine)
    sct = _as_sct(ct)
    on_ct_grid = measure_lesion(ct, sct, annotation)
    resampled = measure_lesion(ct, sct, fine_annotation)
    assert resampled.ct.diameter_axial_mm == on_ct_grid.ct.diameter_axial_mm
    assert resampled.ct.diameter_sagittal_mm == on_ct_grid.ct.diameter_sagittal_mm
    assert resampled.ct.visible
    assert resampled.ct.roi.mean_hu == pytest.approx(on_ct_grid.ct.roi.mean_hu, rel=0.05)
    assert resampled.roi_volume_mm3 == pytest.approx(on_ct_grid.roi_volume_mm3, rel=0.2)


def test_barely_calcified_lesion_is_graded_and_still_visible_on_ct() -> None:
    geometry = _grid(AFFINES["lps"])
    ct, annotation, _ = _phantom(geometry, (6.0, 6.0, 6.0), lesion_hu=113.0)
    result = measure_lesion(ct, _csf_only(ct), annotation)
    assert result.calcification_grade == "none_or_barely"
    assert result.ct.visible
    assert abs(result.ct.diameter_axial_mm - 12.0) <= 1.0


def test_calcification_grade_thresholds() -> None:
    assert calcification_grade(129.9) == "none_or_barely"
    assert calcification_grade(130.0) == "partial"
    assert calcification_grade(399.9) == "partial"
    assert calcification_grade(400.0) == "dense"
    assert calcification_grade(-20.0) == "none_or_barely"
    assert calcification_grade(250.0, partial_min_hu=50, dense_min_hu=200) == "dense"
    with pytest.raises(ValueError, match="finite"):
        calcification_grade(math.nan)
    geometry = _grid(AFFINES["lps"], field_mm=36.0)
    ct, annotation, _ = _phantom(geometry, (5.0, 5.0, 5.0), lesion_hu=300.0)
    custom = LesionSettings(grade_partial_min_hu=50.0, grade_dense_min_hu=200.0)
    assert measure_lesion(ct, _as_sct(ct), annotation).calcification_grade == "partial"
    assert measure_lesion(ct, _as_sct(ct), annotation, settings=custom).calcification_grade == (
        "dense"
    )


def test_noise_free_images_give_an_infinite_cnr() -> None:
    geometry = _grid(AFFINES["lps"], field_mm=30.0)
    ct, annotation, _ = _phantom(geometry, (4.0, 4.0, 4.0), noise_sd_hu=0.0, partial_volume=False)
    flat = SyntheticCT(np.full(ct.spatial_shape, CSF_HU, np.float32), ct.affine)
    result = measure_lesion(ct, flat, annotation)
    assert result.ct.cnr == math.inf
    assert result.ct.visible
    assert result.sct.cnr == 0.0
    assert not result.sct.visible
    assert contrast_to_noise(0.0, 5.0, 0.0) == -math.inf


def test_minimum_size_rule() -> None:
    geometry = Geometry.from_parameters((21, 21, 21), (1.0, 1.0, 1.0))
    values = np.full(geometry.shape, CSF_HU, np.float32)
    values[10, 10, 10:12] = LESION_HU  # two voxels: contrast, but below the minimum size
    ct = CTVolume(values, geometry.affine)
    annotation = LabelMap((values > 100).astype(np.uint8), geometry.affine)
    result = measure_lesion(ct, _as_sct(ct), annotation)
    assert result.ct.cnr == math.inf
    assert not result.ct.visible
    assert result.ct.diameter_axial_mm == 0.0
    relaxed = LesionSettings(min_voxels=2)
    result = measure_lesion(ct, _as_sct(ct), annotation, settings=relaxed)
    assert result.ct.visible
    assert (result.ct.diameter_axial_mm, result.ct.diameter_sagittal_mm) == (1.0, 2.0)


def test_background_mask_restricts_the_shell() -> None:
    geometry = _grid(AFFINES["lps"], field_mm=36.0)
    ct, annotation, _ = _phantom(geometry, (5.0, 5.0, 5.0))
    left = np.zeros(geometry.shape, dtype=bool)
    left[: geometry.shape[0] // 2] = True
    full = measure_lesion(ct, _as_sct(ct), annotation)
    restricted = measure_lesion(ct, _as_sct(ct), annotation, background_mask=left)
    assert 0 < restricted.shell_voxels < full.shell_voxels
    as_labels = LabelMap(left.astype(np.uint8), geometry.affine)
    assert measure_lesion(ct, _as_sct(ct), annotation, background_mask=as_labels).to_dict() == (
        restricted.to_dict()
    )
    with pytest.raises(EmptyLesionMaskError, match="background mask"):
        measure_lesion(ct, _as_sct(ct), annotation, background_mask=np.zeros_like(left))
    with pytest.raises(VolumeKindError, match="background mask has shape"):
        measure_lesion(ct, _as_sct(ct), annotation, background_mask=left[1:])


def test_mri_source_contrast() -> None:
    geometry = _grid(AFFINES["lps"], field_mm=36.0)
    ct, annotation, center = _phantom(geometry, (5.0, 5.0, 5.0))
    fraction = _fraction_inside(geometry, center, (5.0, 5.0, 5.0))
    rng = np.random.default_rng(3)
    # Calcification is dark on gradient echo; the second echo shows it best.
    echoes = [300.0 - fraction * drop + rng.normal(0, 10, geometry.shape) for drop in (60, 200)]
    mri = MultiEchoMR(np.stack(echoes), geometry.affine, protocol=MRProtocol((2.3, 4.6), 7.0))
    result = measure_lesion(ct, _csf_only(ct), annotation, mri=mri)
    assert result.mri_cnr is not None and result.mri_cnr < -3
    assert result.mri_cnr_echo == 1
    assert result.mri_visible is True
    assert measure_lesion(ct, _csf_only(ct), annotation).to_dict()["mri_visible"] is None
    # The same MRI on a larger grid of the same frame is resampled onto the CT grid.
    larger = np.array(geometry.affine)
    larger[:3, 3] = geometry.index_to_lps([-2, -3, -1])
    padded = np.pad(mri.array, ((0, 0), (2, 2), (3, 3), (1, 1)), constant_values=300.0)
    other_grid = MultiEchoMR(padded, larger, protocol=mri.protocol)
    resampled = measure_lesion(ct, _csf_only(ct), annotation, mri=other_grid)
    assert resampled.mri_cnr == pytest.approx(result.mri_cnr, rel=1e-4)


def test_measure_lesions_of_a_label_map_and_of_points() -> None:
    geometry = Geometry.from_parameters((40, 30, 30), (1.0, 1.0, 1.0))
    values = np.full(geometry.shape, CSF_HU, np.float32)
    labels = np.zeros(geometry.shape, np.uint8)
    values[5:12, 10:17, 10:17] = 600.0
    labels[5:12, 10:17, 10:17] = 1
    values[25:33, 10:18, 10:20] = 113.0
    labels[25:33, 10:18, 10:20] = 2
    ct = CTVolume(values, geometry.affine)
    annotation = LabelMap(labels, geometry.affine, label_names={1: "dense", 2: "barely"})
    results = measure_lesions(ct, _as_sct(ct), annotation)
    assert [r.lesion_id for r in results] == [1, 2]
    assert [r.name for r in results] == ["dense", "barely"]
    assert [r.calcification_grade for r in results] == ["dense", "none_or_barely"]
    assert [r.ct.diameter_sagittal_mm for r in results] == [7.0, 10.0]
    assert [r.lesion_id for r in measure_lesions(ct, _as_sct(ct), annotation, lesion_ids=[2])] == [
        2
    ]
    # Radii that cover each lesion: a shell that overlaps the lesion would lower the CNR.
    points = [LesionPoint((8.0, 13.0, 13.0), 4.5, lesion_id=7), LesionPoint((29, 14, 15), 5.5)]
    from_points = measure_lesions(ct, _as_sct(ct), points)
    assert [r.lesion_id for r in from_points] == [7, 1]
    assert all(r.ct.visible for r in from_points)
    assert all(isinstance(r, LesionResult) for r in from_points)


def test_a_lesion_that_is_not_on_the_ct_grid_is_a_warning_on_that_lesion_only() -> None:
    # issue 17: one bad lesion used to fail the whole case; with a warnings list it is left out
    geometry = Geometry.from_parameters((40, 30, 30), (1.0, 1.0, 1.0))
    values = np.full(geometry.shape, CSF_HU, np.float32)
    values[5:12, 10:17, 10:17] = 600.0
    ct = CTVolume(values, geometry.affine)
    big = Geometry.from_parameters((80, 30, 30), (1.0, 1.0, 1.0))  # same frame, twice as long
    labels = np.zeros(big.shape, np.uint8)
    labels[5:12, 10:17, 10:17] = 1
    labels[60:66, 10:16, 10:16] = 2  # beyond the CT's field of view
    annotation = LabelMap(labels, big.affine)
    with pytest.raises(LesionAnnotationError, match="outside the CT field of view"):
        measure_lesions(ct, _as_sct(ct), annotation)
    warnings: list[str] = []
    results = measure_lesions(ct, _as_sct(ct), annotation, warnings=warnings)
    assert [r.lesion_id for r in results] == [1] and results[0].ct.visible
    assert len(warnings) == 1 and warnings[0].startswith("lesion 2 not measured")
    empty: list[str] = []
    blank = LabelMap(np.zeros(geometry.shape, np.uint8), geometry.affine)
    assert measure_lesions(ct, _as_sct(ct), blank, warnings=empty) == []
    assert len(empty) == 1 and "empty" in empty[0]


def test_lesion_at_the_grid_edge_is_truncated() -> None:
    geometry = Geometry.from_parameters((30, 30, 30), (1.0, 1.0, 1.0))
    values = np.full(geometry.shape, CSF_HU, np.float32)
    labels = np.zeros(geometry.shape, np.uint8)
    values[0:6, 10:17, 10:17] = 600.0  # cut by the first plane of axis 0
    labels[0:6, 10:17, 10:17] = 1
    values[15:21, 10:17, 10:17] = 600.0  # whole
    labels[15:21, 10:17, 10:17] = 2
    ct = CTVolume(values, geometry.affine)
    results = measure_lesions(ct, _as_sct(ct), LabelMap(labels, geometry.affine))
    assert [r.truncated for r in results] == [True, False]
    assert [r.to_dict()["truncated"] for r in results] == [True, False]


def test_result_row_is_flat_json_with_units_in_keys() -> None:
    geometry = _grid(AFFINES["lps"], field_mm=30.0)
    ct, annotation, _ = _phantom(geometry, (4.0, 4.0, 4.0))
    row = measure_lesion(ct, _csf_only(ct), annotation).to_dict()
    for key in (
        "lesion_id",
        "ct_mean_hu",
        "sct_mean_hu",
        "ct_sd_hu",
        "ct_median_hu",
        "ct_p5_hu",
        "ct_p95_hu",
        "ct_calcified_fraction",
        "ct_visible",
        "ct_cnr",
        "sct_cnr",
        "ct_diameter_axial_mm",
        "sct_diameter_sagittal_mm",
        "dice",
        "calcification_grade",
        "mean_difference_hu",
        "diameter_axial_difference_mm",
    ):
        assert key in row, key
    assert all(not isinstance(v, dict | list | np.generic) for v in row.values())
    json.dumps(row)


def test_settings_document_every_rule() -> None:
    settings = LesionSettings()
    described = settings.to_dict()
    assert described["rose_threshold"] == 3.0
    assert described["calcified_threshold_hu"] == 130.0
    assert described["grade_dense_min_hu"] == 400.0
    assert (described["shell_inner_mm"], described["shell_outer_mm"]) == (2.0, 5.0)
    for rule in ("cnr", "visible", "segmentation", "diameter_axial_mm", "diameter_sagittal_mm"):
        assert rule in described["rules"]
    assert "3 (Rose" in described["rules"]["visible"] or ">= 3" in described["rules"]["visible"]
    json.dumps(described)
    with pytest.raises(ValidationError):
        LesionSettings(shell_inner_mm=5.0, shell_outer_mm=2.0)
    with pytest.raises(ValidationError):
        LesionSettings(grade_partial_min_hu=500.0)
    with pytest.raises(ValidationError):
        LesionSettings(rose_threshold=math.nan)
    with pytest.raises(ValidationError):
        LesionSettings(unknown_option=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        settings.rose_threshold = 5.0


# -- errors -------------------------------------------------------------------------------------
def test_error_cases() -> None:
    geometry = _grid(AFFINES["lps"], field_mm=30.0)
    ct, annotation, center = _phantom(geometry, (4.0, 4.0, 4.0))
    sct = _as_sct(ct)
    with pytest.raises(EmptyLesionMaskError):
        measure_lesion(ct, sct, LabelMap(np.zeros(geometry.shape, np.uint8), geometry.affine))
    with pytest.raises(LesionAnnotationError, match="outside the CT field of view"):
        measure_lesion(ct, sct, LesionPoint(tuple(center + np.array([0.0, 0.0, 100.0])), 4.0))
    with pytest.raises(LesionAnnotationError, match="finite"):
        measure_lesion(ct, sct, LesionPoint((math.nan, 0.0, 0.0), 4.0))
    moved = SyntheticCT(sct.array, geometry.affine + np.diag([0, 0, 0, 0]) + _shift(2.0))
    with pytest.raises(GeometryMismatchError, match="CT and sCT"):
        measure_lesion(ct, moved, annotation)
    with pytest.raises(VolumeKindError, match="CT volume in HU"):
        measure_lesion(ct, annotation, annotation)  # type: ignore[arg-type]
    with pytest.raises(LesionAnnotationError, match="LabelMap or a LesionPoint"):
        measure_lesion(ct, sct, center)  # type: ignore[arg-type]
    with pytest.raises(EmptyLesionMaskError):
        measure_lesions(ct, sct, LabelMap(np.zeros(geometry.shape, np.uint8), geometry.affine))
    beyond = np.array(geometry.affine)
    beyond[2, 3] += 25.0  # the outline was drawn 25 mm further S, past the CT's last slice
    with pytest.raises(LesionAnnotationError, match="outside the CT field of view"):
        measure_lesion(ct, sct, LabelMap(annotation.array, beyond))
    two = LabelMap(annotation.array * 1 + np.roll(annotation.array, 1, axis=0) * 2, ct.affine)
    with pytest.raises(LesionAnnotationError, match="say which one"):
        measure_lesion(ct, sct, two)
    # NaNs cannot enter a volume; the array functions check them too.
    nan_image = ct.array.astype(float)
    roi = annotation.mask()
    nan_image[np.argwhere(roi)[0].tolist()[0], ...] = math.nan
    with pytest.raises(VolumeKindError, match="NaN"):
        roi_statistics(nan_image, roi)
    with pytest.raises(VolumeKindError, match="NaN"):
        CTVolume(nan_image, geometry.affine)
    with pytest.raises(VolumeKindError, match="NaN"):
        measure_image_lesion(nan_image, roi, affine=geometry.affine, shell=roi, search=roi)
    with pytest.raises(VolumeKindError, match="selects no voxel"):
        roi_statistics(ct.array, np.zeros(geometry.shape, dtype=bool))


def _shift(mm: float) -> np.ndarray:
    shift = np.zeros((4, 4))
    shift[2, 3] = mm
    return shift


# -- real data ----------------------------------------------------------------------------------
def test_inserted_calcified_sphere_in_a_real_ct(totalseg: Path) -> None:
    """A 12 mm, 600 HU sphere inserted into the paraspinal muscle of a real CT (3 mm voxels)."""
    ct = read_volume(totalseg / "example_ct.nii.gz", kind="ct")
    assert isinstance(ct, CTVolume)
    geometry = ct.geometry
    # Left erector spinae at the lumbar level: soft tissue all around (checked below).
    center = geometry.index_to_lps((45.0, 20.0, 80.0)) + np.array([0.7, -0.4, 1.1])
    neighbourhood = ct.array[41:50, 16:25, 76:85].astype(float)
    assert -50 < neighbourhood.mean() < 100 and neighbourhood.max() < 200
    fraction = _fraction_inside(geometry, center, (6.0, 6.0, 6.0))
    values = ct.array.astype(np.float32)
    values = values + fraction * (600.0 - values)
    with_lesion = ct.with_array(values)
    sct = SyntheticCT(ct.array.astype(np.float32), ct.affine)  # the sCT misses the lesion
    result = measure_lesion(with_lesion, sct, LesionPoint(tuple(center), 6.0, name="inserted"))
    assert result.ct.visible
    assert abs(result.ct.diameter_axial_mm - 12.0) <= 3.0
    assert abs(result.ct.diameter_sagittal_mm - 12.0) <= 3.0
    assert result.ct.roi.mean_hu > 400
    assert result.calcification_grade == "dense"
    assert not result.sct.visible
    assert (result.sct.diameter_axial_mm, result.sct.diameter_sagittal_mm) == (0.0, 0.0)
    assert -50 < result.sct.roi.mean_hu < 100
    assert result.dice == 0.0


def test_bone_next_to_the_lesion_stays_out_of_the_shell() -> None:
    """A calcified lesion in the canal with a lamina 3 mm away is visible against CSF.

    Without the HU window the bone's 1000 HU enter the 2-5 mm shell, its SD explodes and the
    lesion would pass as invisible; with the default window the shell is CSF only.
    """
    geometry = _grid(np.eye(4), field_mm=40.0)
    ct, annotation, center = _phantom(geometry, (4.0, 4.0, 4.0), lesion_hu=300.0)
    lps = geometry.index_to_lps(np.indices(geometry.shape).reshape(3, -1).T)
    bone = (lps[:, 1] - center[1] >= 7.0).reshape(geometry.shape)  # a bony wall behind
    values = ct.array.copy()
    values[bone] = 1000.0
    ct = CTVolume(values, geometry.affine)
    windowed = measure_lesion(ct, _csf_only(ct), annotation, lesion_id=1)
    assert windowed.ct.visible
    assert windowed.ct.shell_sd_hu == pytest.approx(NOISE_SD_HU, rel=0.25)
    plain = measure_lesion(
        ct, _csf_only(ct), annotation, lesion_id=1, settings=LesionSettings(shell_hu_window=None)
    )
    assert not plain.ct.visible
    assert plain.ct.shell_sd_hu > 100


def test_mri_cnr_uses_the_noise_not_the_heterogeneous_shell() -> None:
    # T1w GRE around an intradural lesion: dark CSF on one side, bright cord on the other. The
    # shell's SD is tissue contrast, not noise; the MRI CNR divides by the noise SD (known: a
    # Rician background outside the body).
    geometry = _grid(AFFINES["lps"], field_mm=36.0)
    ct, annotation, center = _phantom(geometry, (5.0, 5.0, 5.0))
    fraction = _fraction_inside(geometry, center, (5.0, 5.0, 5.0))
    shape = geometry.shape
    body = np.zeros(shape, dtype=bool)
    body[4:-4, 4:-4, :] = True
    tissue = np.where(np.arange(shape[1])[None, :, None] < shape[1] // 2, 100.0, 500.0)
    lesion_signal = 200.0
    clean = np.where(body, tissue * (1 - fraction) + lesion_signal * fraction, 0.0)
    sd = 5.0
    rng = np.random.default_rng(4)
    echo = np.hypot(clean + sd * rng.standard_normal(shape), sd * rng.standard_normal(shape))
    ct_values = np.where(body, ct.array, -1000.0).astype(np.float32)
    ct_body = CTVolume(ct_values, geometry.affine)
    mri = MultiEchoMR(echo[None], geometry.affine, protocol=MRProtocol((2.3,), 7.0))
    result = measure_lesion(ct_body, _csf_only(ct_body), annotation, mri=mri)
    assert result.mri_cnr is not None and result.mri_visible is True
    # Known answer: (ROI mean - shell mean) / sd, with means of the clean signal in the ROI and
    # shell the CT used.
    masks = result.masks
    assert masks is not None
    roi_mean = clean[masks.box][masks.roi].mean()
    shell_mean = clean[masks.box][masks.shell].mean()
    assert result.mri_cnr == pytest.approx((roi_mean - shell_mean) / sd, rel=0.1, abs=0.5)
    # The shell SD (tissue contrast) would have hidden it.
    assert clean[masks.box][masks.shell].std() > 10 * sd
