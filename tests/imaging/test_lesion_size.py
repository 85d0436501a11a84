"""Known answers for lesion segmentation, Feret diameters, cranio-caudal extent and Dice."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from synthct.geometry import affine_from_parameters
from synthct.imaging.lesion_size import (
    axial_axis,
    axial_diameter_mm,
    craniocaudal_extent_mm,
    dice_coefficient,
    half_way_threshold_hu,
    segment_lesion,
)

IDENTITY_1MM = affine_from_parameters((1.0, 1.0, 1.0))


def _line(axis: int, n: int = 10, shape: tuple[int, int, int] = (16, 16, 16)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    index = [3, 3, 3]
    for step in range(n):
        index[axis] = 3 + step
        mask[tuple(index)] = True
    return mask


def test_single_voxel_is_one_voxel_wide() -> None:
    mask = np.zeros((5, 5, 5), dtype=bool)
    mask[2, 2, 2] = True
    affine = affine_from_parameters((0.74, 0.8, 2.5))
    assert axial_diameter_mm(mask, affine=affine) == pytest.approx(0.8)
    assert craniocaudal_extent_mm(mask, affine=affine) == pytest.approx(2.5)


def test_ten_voxel_line_is_ten_voxels_long() -> None:
    affine = affine_from_parameters((1.0, 0.5, 2.0))
    assert axial_diameter_mm(_line(0), affine=affine) == pytest.approx(10.0)
    assert axial_diameter_mm(_line(1), affine=affine) == pytest.approx(5.0)
    assert craniocaudal_extent_mm(_line(0), affine=affine) == pytest.approx(2.0)
    # A line along S: one voxel wide in the axial plane, 10 slices of 2 mm long.
    assert axial_diameter_mm(_line(2), affine=affine) == pytest.approx(1.0)
    assert craniocaudal_extent_mm(_line(2), affine=affine) == pytest.approx(20.0)


def test_empty_mask_measures_zero() -> None:
    empty = np.zeros((4, 4, 4), dtype=bool)
    assert axial_diameter_mm(empty, affine=IDENTITY_1MM) == 0.0
    assert craniocaudal_extent_mm(empty, affine=IDENTITY_1MM) == 0.0


def test_flipped_axes_measure_the_same() -> None:
    ras = affine_from_parameters((1.5, 1.25, 2.0), (80.0, 95.5, -40.0), np.diag([-1, -1, 1]))
    assert axial_diameter_mm(_line(0), affine=ras) == pytest.approx(15.0)
    assert craniocaudal_extent_mm(_line(2), affine=ras) == pytest.approx(20.0)


def test_axial_axis_is_the_one_closest_to_s() -> None:
    # Array axis 0 points to S (a sagittal acquisition stored S-first).
    direction = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    affine = affine_from_parameters((2.0, 1.0, 1.0), direction=direction)
    assert axial_axis(affine) == 0
    assert craniocaudal_extent_mm(_line(0), affine=affine) == pytest.approx(20.0)
    assert axial_diameter_mm(_line(0), affine=affine) == pytest.approx(1.0)
    assert axial_diameter_mm(_line(1), affine=affine) == pytest.approx(10.0)


def test_rotation_about_s_keeps_the_diameter() -> None:
    rotation = Rotation.from_euler("z", 30, degrees=True).as_matrix()
    affine = affine_from_parameters((1.0, 1.0, 1.0), direction=rotation)
    assert axial_diameter_mm(_line(0), affine=affine) == pytest.approx(10.0)


def test_tilted_slices_project_on_the_axial_plane() -> None:
    tilt = math.radians(20.0)
    rotation = Rotation.from_euler("x", 20, degrees=True).as_matrix()
    affine = affine_from_parameters((1.0, 1.0, 1.0), direction=rotation)
    assert axial_axis(affine) == 2
    # Along axis 0 (L, untouched by a tilt about L): 10 mm.
    assert axial_diameter_mm(_line(0), affine=affine) == pytest.approx(10.0)
    # Along axis 1 (P tilted 20 degrees toward S): its projection on L-P.
    assert axial_diameter_mm(_line(1), affine=affine) == pytest.approx(10.0 * math.cos(tilt))
    # Its S extent: 9 steps of sin(20) between centres plus the largest S step of a voxel.
    expected = 9 * math.sin(tilt) + math.cos(tilt)
    assert craniocaudal_extent_mm(_line(1), affine=affine) == pytest.approx(expected)


def test_diagonal_line_lies_between_its_bounds() -> None:
    mask = np.zeros((12, 12, 3), dtype=bool)
    for i in range(10):
        mask[i, i, 1] = True
    value = axial_diameter_mm(mask, affine=IDENTITY_1MM)
    assert 9 * math.sqrt(2) < value <= 10 * math.sqrt(2)


@pytest.mark.parametrize("diameter_mm", [5.0, 9.0, 16.0])
def test_digital_disc_diameter_within_one_voxel(diameter_mm: float) -> None:
    n = 24
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    disc = (i - 11.3) ** 2 + (j - 11.6) ** 2 <= (diameter_mm / 2) ** 2
    mask = np.repeat(disc[:, :, None], 3, axis=2)
    assert abs(axial_diameter_mm(mask, affine=IDENTITY_1MM) - diameter_mm) <= 1.0


def test_half_way_threshold() -> None:
    assert half_way_threshold_hu(600.0, 10.0) == pytest.approx(305.0)
    assert half_way_threshold_hu(-100.0, 20.0) == pytest.approx(-40.0)


def _two_blobs() -> tuple[np.ndarray, np.ndarray]:
    image = np.zeros((20, 20, 20))
    image[4:8, 4:8, 4:8] = 100.0
    image[12:15, 12:15, 12:15] = 100.0
    roi = np.zeros(image.shape, dtype=bool)
    roi[5:7, 5:7, 5:7] = True
    return image, roi


def test_segmentation_keeps_the_component_overlapping_the_roi() -> None:
    image, roi = _two_blobs()
    search = np.ones(image.shape, dtype=bool)
    seg = segment_lesion(image, roi, search=search, lesion_level_hu=100, background_level_hu=0)
    expected = np.zeros(image.shape, dtype=bool)
    expected[4:8, 4:8, 4:8] = True
    np.testing.assert_array_equal(seg, expected)


def test_segmentation_stays_in_the_search_region() -> None:
    image, roi = _two_blobs()
    search = np.zeros(image.shape, dtype=bool)
    search[5:8, 4:8, 4:8] = True
    seg = segment_lesion(image, roi, search=search, lesion_level_hu=100, background_level_hu=0)
    assert not (seg & ~search).any()
    # the blob continues past the search region (at index 4 of axis 0): outside the ROI it is
    # taken as an adjacent structure (bone against a lesion), so only the ROI's voxels remain
    np.testing.assert_array_equal(seg, roi)


def test_lesion_a_little_beyond_its_outline_is_kept_whole() -> None:
    image, roi = _two_blobs()  # the 4^3 blob around a 2^3 ROI: an outline one voxel too tight
    search = np.zeros(image.shape, dtype=bool)
    search[3:9, 3:9, 3:9] = True  # ends within the margin: the lesion's own voxels
    seg = segment_lesion(image, roi, search=search, lesion_level_hu=100, background_level_hu=0)
    expected = np.zeros(image.shape, dtype=bool)
    expected[4:8, 4:8, 4:8] = True
    np.testing.assert_array_equal(seg, expected)


def test_bone_touching_the_lesion_is_not_segmented() -> None:
    # a 6^3 lesion (450 HU) whose face touches a bone slab (700 HU) that runs past the search
    image = np.zeros((24, 24, 24))
    image[:, :, 14:17] = 700.0  # the bone: a slab, like a lamina
    image[6:12, 6:12, 8:14] = 450.0
    roi = image == 450.0
    search = np.zeros(image.shape, dtype=bool)
    search[3:15, 3:15, 5:17] = True  # the ROI dilated by 3 voxels
    seg = segment_lesion(image, roi, search=search, lesion_level_hu=450, background_level_hu=0)
    np.testing.assert_array_equal(seg, roi)  # before: the slab within 3 voxels was counted


def test_dark_lesion_is_segmented_below_the_threshold() -> None:
    image, roi = _two_blobs()
    image = 100.0 - image  # lesions at 0 in a background of 100
    search = np.ones(image.shape, dtype=bool)
    seg = segment_lesion(image, roi, search=search, lesion_level_hu=0, background_level_hu=100)
    assert seg.sum() == 4**3


def test_equal_levels_segment_nothing() -> None:
    image, roi = _two_blobs()
    search = np.ones(image.shape, dtype=bool)
    seg = segment_lesion(image, roi, search=search, lesion_level_hu=50, background_level_hu=50)
    assert not seg.any()


def test_connectivity_decides_on_corner_neighbours() -> None:
    image = np.zeros((6, 6, 6))
    image[1, 1, 1] = image[2, 2, 2] = 100.0
    roi = np.zeros(image.shape, dtype=bool)
    roi[1, 1, 1] = True
    search = np.ones(image.shape, dtype=bool)

    def segment(connectivity: int) -> np.ndarray:
        return segment_lesion(
            image,
            roi,
            search=search,
            lesion_level_hu=100.0,
            background_level_hu=0.0,
            connectivity=connectivity,
        )

    assert segment(3).sum() == 2
    assert segment(1).sum() == 1
    with pytest.raises(ValueError, match="connectivity"):
        segment(4)


def test_segmentation_shapes_must_match() -> None:
    with pytest.raises(ValueError, match="share a shape"):
        segment_lesion(
            np.zeros((4, 4, 4)),
            np.ones((4, 4, 3), dtype=bool),
            search=np.ones((4, 4, 4), dtype=bool),
            lesion_level_hu=1.0,
            background_level_hu=0.0,
        )


def test_dice_identities() -> None:
    a = np.zeros((4, 4, 4), dtype=bool)
    b = a.copy()
    assert dice_coefficient(a, b) == 1.0  # both empty: agreement that nothing is there
    a[0, 0, 0] = True
    assert dice_coefficient(a, b) == 0.0  # one empty
    assert dice_coefficient(a, a) == 1.0
    b[0, 0, :2] = True
    assert dice_coefficient(a, b) == pytest.approx(2 * 1 / 3)
    with pytest.raises(ValueError, match="cannot be compared"):
        dice_coefficient(a, b[:3])
