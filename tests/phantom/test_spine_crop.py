"""Crops around the spine of a CT: known centres, known affines, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from synthct.errors import PhantomParameterError
from synthct.phantom.ct_derived import TOTALSEGMENTATOR_V2
from synthct.phantom.spine_crop import crop_volume, spine_centre_index, spine_crop
from synthct.volume import CTVolume, LabelMap

SPACING_MM = (1.5, 1.5, 2.0)
ORIGIN_MM = (-60.0, -40.0, 100.0)


def _ct_with_bone() -> CTVolume:
    """Soft tissue with an anterior 'sternum' and a posterior 'vertebra' of cortical HU."""
    hu = np.full((80, 60, 30), 40.0, dtype=np.float32)
    hu[36:44, 5:9, 10:20] = 1200.0  # anterior (small second index in LPS)
    hu[30:40, 40:50, 5:25] = 1200.0  # posterior: the spine, centre index (34.5, 44.5, 14.5)
    affine = np.diag([*SPACING_MM, 1.0])
    affine[:3, 3] = ORIGIN_MM
    return CTVolume(hu, affine)


def test_spine_centre_from_hu_is_the_posterior_bone() -> None:
    centre = spine_centre_index(_ct_with_bone())
    # left-right and cranio-caudal: the vertebra's centre; anterior-posterior: inside the
    # vertebra (the median of the most posterior quarter of all bone voxels), not the sternum
    assert centre[0] == 34.5 and centre[2] == 14.5
    assert 44.5 <= centre[1] <= 49


def test_spine_centre_from_vertebra_labels() -> None:
    ct = _ct_with_bone()
    labels = np.zeros(ct.spatial_shape, dtype=np.uint16)
    labels[10:20, 20:30, 0:10] = TOTALSEGMENTATOR_V2["vertebrae"][0]
    centre = spine_centre_index(ct, LabelMap(labels, ct.affine))
    assert np.allclose(centre, (14.5, 24.5, 4.5))


def test_crop_moves_the_affine_to_its_first_voxel() -> None:
    ct = _ct_with_bone()
    crop = crop_volume(ct, (10, 20, 5), (16, 16, 8))
    assert crop.spatial_shape == (16, 16, 8)
    expected = np.asarray(ORIGIN_MM) + np.asarray(SPACING_MM) * (10, 20, 5)
    assert np.allclose(crop.affine[:3, 3], expected)
    assert np.array_equal(crop.array, ct.array[10:26, 20:36, 5:13])
    assert crop.geometry.index_to_lps((0, 0, 0)) == pytest.approx(
        ct.geometry.index_to_lps((10, 20, 5))
    )


def test_spine_crop_is_centred_on_the_spine_and_clipped_to_the_volume() -> None:
    ct = _ct_with_bone()
    crop, labels = spine_crop(ct, None, (20, 20, 40), rng=np.random.default_rng(0))
    assert labels is None
    assert crop.spatial_shape == (20, 20, 30)  # the CT has 30 slices only
    hu = np.asarray(crop.array)
    assert hu[10, 10, 15] == 1200.0  # the spine's centre is the crop's centre
    jittered, _ = spine_crop(ct, None, (20, 20, 20), rng=np.random.default_rng(1), jitter_mm=6.0)
    shift = jittered.affine[:3, 3] - crop.affine[:3, 3]
    assert np.all(np.abs(shift[:2]) <= 6.0 + 1.5) and np.any(shift != 0)


def test_spine_crop_errors_name_the_problem() -> None:
    ct = _ct_with_bone()
    with pytest.raises(PhantomParameterError, match="three positive voxel counts"):
        spine_crop(ct, None, (20, 20), rng=np.random.default_rng(0))
    other = LabelMap(np.zeros((10, 10, 10), np.uint16), ct.affine)
    with pytest.raises(PhantomParameterError, match="not on the CT grid"):
        spine_crop(ct, other, (20, 20, 20), rng=np.random.default_rng(0))
