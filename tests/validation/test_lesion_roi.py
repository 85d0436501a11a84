"""Lesion ROIs: sphere masks, label maps on other grids, shells, search regions, crops."""

from __future__ import annotations

import numpy as np
import pytest

from known_geometry import oblique_affine
from synthct.geometry import Geometry
from synthct.validation.lesion_roi import (
    EmptyLesionMaskError,
    LesionAnnotationError,
    LesionPoint,
    crop_around,
    lesion_boxes,
    lesion_mask,
    search_region,
    shell_mask,
    sphere_mask,
)
from synthct.volume import LabelMap


def _brute_force_sphere(geometry: Geometry, center: np.ndarray, radius: float) -> np.ndarray:
    index = np.indices(geometry.shape).reshape(3, -1).T
    distance = np.linalg.norm(geometry.index_to_lps(index) - center, axis=1)
    return (distance <= radius).reshape(geometry.shape)


def test_sphere_mask_matches_brute_force_on_an_oblique_grid() -> None:
    geometry = Geometry((20, 18, 12), oblique_affine())
    center = geometry.index_to_lps([9.3, 8.1, 6.4])
    mask = sphere_mask(geometry, center, 4.0)
    np.testing.assert_array_equal(mask, _brute_force_sphere(geometry, center, 4.0))
    box = (slice(2, 18), slice(1, 16), slice(0, 12))
    np.testing.assert_array_equal(sphere_mask(geometry, center, 4.0, region=box), mask[box])


def test_tiny_sphere_keeps_the_voxel_holding_the_point() -> None:
    geometry = Geometry.from_parameters((5, 5, 5), (3.0, 3.0, 3.0))
    mask = sphere_mask(geometry, (4.4, 6.2, 5.9), 0.1)
    assert np.argwhere(mask).tolist() == [[1, 2, 2]]


def test_point_outside_the_field_of_view_is_rejected() -> None:
    geometry = Geometry.from_parameters((5, 5, 5), (1.0, 1.0, 1.0))
    with pytest.raises(LesionAnnotationError, match="outside the CT field of view"):
        sphere_mask(geometry, (2.0, 2.0, 9.0), 2.0)


def test_lesion_point_validates_its_values() -> None:
    with pytest.raises(LesionAnnotationError, match="3 finite"):
        LesionPoint((1.0, float("nan"), 3.0), 2.0)
    with pytest.raises(LesionAnnotationError, match="3 finite"):
        LesionPoint((1.0, 2.0), 2.0)  # type: ignore[arg-type]
    with pytest.raises(LesionAnnotationError, match="positive"):
        LesionPoint((1.0, 2.0, 3.0), 0.0)
    point = LesionPoint(np.array([1, 2, 3]), 5)  # type: ignore[arg-type]
    assert point.center_lps_mm == (1.0, 2.0, 3.0)
    assert isinstance(point.radius_mm, float)


def test_shell_uses_millimetres_on_anisotropic_grids() -> None:
    spacing = (0.5, 1.0, 3.0)
    roi = np.zeros((40, 21, 9), dtype=bool)
    roi[20, 10, 4] = True
    shell = shell_mask(roi, spacing_mm=spacing, inner_mm=2.0, outer_mm=5.0)
    offsets = (np.indices(roi.shape).reshape(3, -1).T - [20, 10, 4]) * spacing
    distance = np.linalg.norm(offsets, axis=1).reshape(roi.shape)
    np.testing.assert_array_equal(shell, (distance > 2.0) & (distance <= 5.0))


def test_shell_restricted_to_a_background_mask() -> None:
    roi = np.zeros((15, 15, 15), dtype=bool)
    roi[6:9, 6:9, 6:9] = True
    half = np.zeros(roi.shape, dtype=bool)
    half[:7] = True
    full = shell_mask(roi, spacing_mm=(1, 1, 1), inner_mm=2, outer_mm=5)
    restricted = shell_mask(roi, spacing_mm=(1, 1, 1), inner_mm=2, outer_mm=5, restrict_to=half)
    np.testing.assert_array_equal(restricted, full & half)
    nowhere = np.zeros(roi.shape, dtype=bool)
    with pytest.raises(EmptyLesionMaskError, match="background mask"):
        shell_mask(roi, spacing_mm=(1, 1, 1), inner_mm=2, outer_mm=5, restrict_to=nowhere)
    with pytest.raises(ValueError, match="inner_mm < outer_mm"):
        shell_mask(roi, spacing_mm=(1, 1, 1), inner_mm=5, outer_mm=2)
    with pytest.raises(EmptyLesionMaskError):
        shell_mask(np.zeros((3, 3, 3), dtype=bool), spacing_mm=(1, 1, 1), inner_mm=0, outer_mm=1)


def test_search_region_contains_the_roi() -> None:
    roi = np.zeros((11, 11, 11), dtype=bool)
    roi[5, 5, 5] = True
    np.testing.assert_array_equal(search_region(roi, spacing_mm=(1, 1, 1), margin_mm=0), roi)
    grown = search_region(roi, spacing_mm=(1, 1, 1), margin_mm=1.0)
    assert grown.sum() == 7  # the voxel and its 6 face neighbours


def test_crop_around_pads_and_clips() -> None:
    mask = np.zeros((30, 30, 10), dtype=bool)
    mask[1, 15, 5] = True
    box = crop_around(mask, spacing_mm=(1.0, 1.0, 2.0), margin_mm=4.0)
    assert box == (slice(0, 7), slice(10, 21), slice(2, 9))
    with pytest.raises(EmptyLesionMaskError):
        crop_around(np.zeros_like(mask), spacing_mm=(1, 1, 1), margin_mm=1.0)


def _label_map(geometry: Geometry, labels: dict[int, tuple[slice, ...]]) -> LabelMap:
    array = np.zeros(geometry.shape, dtype=np.uint8)
    for value, where in labels.items():
        array[where] = value
    return LabelMap(array, geometry.affine)


def test_label_map_on_a_finer_grid_is_resampled() -> None:
    coarse = Geometry.from_parameters((10, 10, 10), (2.0, 2.0, 2.0))
    # Same frame, a third of the spacing: coarse centre c sits on fine centre 3c + 1.
    third = 2.0 / 3.0
    fine = Geometry.from_parameters((30, 30, 30), (third,) * 3, (-third,) * 3)
    labels = _label_map(fine, {3: (slice(9, 18), slice(12, 18), slice(6, 15))})
    mask = lesion_mask(labels, coarse)
    expected = np.zeros(coarse.shape, dtype=bool)
    expected[3:6, 4:6, 2:5] = True
    np.testing.assert_array_equal(mask, expected)


def test_label_map_errors() -> None:
    geometry = Geometry.from_parameters((10, 10, 10), (2.0, 2.0, 2.0))
    two = _label_map(geometry, {1: (slice(1, 3),) * 3, 2: (slice(5, 7),) * 3})
    assert lesion_mask(two, geometry, lesion_id=2).sum() == 8
    with pytest.raises(LesionAnnotationError, match="say which one"):
        lesion_mask(two, geometry)
    with pytest.raises(EmptyLesionMaskError, match="not in the label map"):
        lesion_mask(two, geometry, lesion_id=7)
    with pytest.raises(EmptyLesionMaskError, match="empty"):
        lesion_mask(_label_map(geometry, {}), geometry)
    # The same lesion drawn 30 mm beyond the CT's field of view.
    shifted = Geometry.from_parameters((10, 10, 10), (2.0, 2.0, 2.0), (0.0, 0.0, 30.0))
    outside = _label_map(shifted, {1: (slice(2, 5), slice(2, 5), slice(0, 4))})
    with pytest.raises(LesionAnnotationError, match="outside the CT field of view"):
        lesion_mask(outside, geometry)


def test_lesion_boxes_find_every_label_once() -> None:
    geometry = Geometry.from_parameters((12, 10, 8), (1.0, 1.0, 2.0))
    array = np.zeros(geometry.shape, dtype=np.int16)
    array[1:3, 2:5, 1:2] = 4
    array[6:9, 1:2, 3:6] = -2  # negative labels are labels too
    boxes = lesion_boxes(LabelMap(array, geometry.affine), geometry)
    assert sorted(boxes) == [-2, 4]
    box, inside = boxes[4]
    assert box == (slice(1, 3), slice(2, 5), slice(1, 2))
    assert inside.all()
    assert boxes[-2][0] == (slice(6, 9), slice(1, 2), slice(3, 6))
    only = lesion_boxes(LabelMap(array, geometry.affine), geometry, lesion_ids=[4])
    assert list(only) == [4]
