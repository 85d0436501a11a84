"""Lesion measures on a real CT: they stay in the lesion, and a lesion cut by the edge says so.

Input that failed before (issue 17): a 12 mm calcified meningioma (450 HU) inserted into a real
thoracic CT (0.98 x 0.98 x 2 mm) against the laminae, its mask as the annotation. The CT
segmentation spilled into the bone (measured 16.6 mm across, 119 voxels outside the lesion, 81
of them bone); now the diameter is within one voxel of 12 mm and no bone voxel is counted. The
same lesion two slices from the top of the field of view is flagged as truncated.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import binary_dilation

from synthct.io import read_volume
from synthct.phantom.ct_insertion import (
    EllipsoidLesion,
    LesionOverlayModel,
    insert_lesions_into_ct,
)
from synthct.resample import resample_to
from synthct.validation.lesion_metrics import LesionResult, measure_lesions
from synthct.volume import CTVolume, LabelMap, SyntheticCT

CORD_LABEL = 79  # TotalSegmentator's spinal cord
BONE_HU = 300.0
DIAMETER_MM = 12.0


@pytest.fixture(scope="module")
def thoracic(totalseg: Path) -> tuple[CTVolume, np.ndarray]:
    """The real thoracic CT and its spinal cord mask on the CT grid."""
    ct = read_volume(totalseg / "example_ct_dicom", kind="ct")
    labels = read_volume(totalseg / "example_seg_dicom.nii.gz", kind="label")
    assert isinstance(ct, CTVolume) and isinstance(labels, LabelMap)
    cord = resample_to(labels, ct.geometry, fill_value=0).array == CORD_LABEL
    return ct, cord


def _laminae_point(ct: CTVolume, cord: np.ndarray, k: int) -> np.ndarray:
    """The first bone voxel (>= 300 HU) dorsal (+P) of the cord's centre in axial slice ``k``."""
    index = np.argwhere(cord)
    centre = ct.geometry.index_to_lps(index[index[:, 2] == k].mean(axis=0))
    for step in np.arange(0.0, 30.0, 0.25):
        point = centre + np.array([0.0, step, 0.0])
        if ct.array[tuple(np.rint(ct.geometry.lps_to_index(point)).astype(int))] >= BONE_HU:
            return point
    raise AssertionError(f"no lamina dorsal of the cord in slice {k}")


def _lesion_against_laminae(
    ct: CTVolume, cord: np.ndarray, k: int
) -> tuple[CTVolume, np.ndarray, LesionResult]:
    """A 12 mm calcified lesion touching the laminae in slice ``k``, measured on CT = sCT."""
    centre = _laminae_point(ct, cord, k) - np.array([0.0, DIAMETER_MM / 2, 0.0])
    lesion = EllipsoidLesion(
        "meningioma", tuple(centre), DIAMETER_MM, DIAMETER_MM, DIAMETER_MM, mean_hu=450.0
    )
    model = LesionOverlayModel(None, [lesion])  # type: ignore[arg-type]  # base unused here
    with_lesion = insert_lesions_into_ct(ct, model, seed=0)
    truth = model.lesion_labels_on(ct.geometry) > 0
    annotation = LabelMap(truth.astype(np.uint8), ct.affine)
    sct = SyntheticCT(with_lesion.array, ct.affine)
    return with_lesion, truth, measure_lesions(with_lesion, sct, annotation)[0]


@pytest.mark.slow
def test_lesion_against_the_laminae_is_measured_without_the_bone(
    thoracic: tuple[CTVolume, np.ndarray],
) -> None:
    ct, cord = thoracic
    _, truth, result = _lesion_against_laminae(ct, cord, k=12)
    # the lesion touches bone: some voxel next to it is bone
    near = np.zeros_like(truth)
    near[1:, :, :] |= truth[:-1]
    near[:, 1:, :] |= truth[:, :-1]
    assert np.any(near & ~truth & (ct.array >= BONE_HU))
    assert result.ct.visible and not result.truncated
    voxel_mm = max(ct.spacing_mm)
    assert abs(result.ct.diameter_axial_mm - DIAMETER_MM) <= voxel_mm  # was 16.6 mm
    assert result.masks is not None
    segmentation = result.masks.on_grid("ct_segmentation", ct.geometry.shape)
    bone = (ct.array >= BONE_HU) & ~truth
    assert not np.any(segmentation & bone)  # was 81 bone voxels
    # outside the mask only the lesion's partial-volume rim (face neighbours of the mask)
    assert not np.any(segmentation & ~binary_dilation(truth))
    assert result.dice == 1.0  # CT = sCT here


@pytest.mark.slow
def test_lesion_cut_by_the_field_of_view_is_flagged_truncated(
    thoracic: tuple[CTVolume, np.ndarray],
) -> None:
    ct, cord = thoracic
    _, truth, result = _lesion_against_laminae(ct, cord, k=1)  # 6 mm sphere, 2 mm slices
    assert truth[:, :, 0].any()  # the lesion reaches the first slice
    assert result.truncated and result.to_dict()["truncated"] is True
    assert result.ct.diameter_sagittal_mm < DIAMETER_MM  # only a lower bound
