"""CT-derived tissue maps: HU classes, TotalSegmentator refinements, serving labels on any grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from synthct.errors import SynthctError, VolumeKindError
from synthct.geometry import Geometry
from synthct.imaging.labels import MARROW_TISSUES, Tissue
from synthct.io import read_volume
from synthct.phantom.ct_derived import CTDerivedModel, HUClasses, tissue_map_from_ct
from synthct.volume import CTVolume, LabelMap

MARROW_IDS = [int(t) for t in MARROW_TISSUES]


def test_hu_classes_known_answers() -> None:
    hu = np.array([-1000, -301, -299, -100, -21, -19, 40, 149, 151, 599, 601, 1800], np.int16)
    ct = CTVolume(hu.reshape(12, 1, 1), np.eye(4))
    tissue = tissue_map_from_ct(ct).array.ravel()
    expected = [Tissue.AIR] * 2 + [Tissue.SUBCUTANEOUS_FAT] * 3 + [Tissue.SOFT_TISSUE] * 3
    expected += [Tissue.CANCELLOUS_BONE] * 2 + [Tissue.CORTICAL_BONE] * 2
    assert tissue.tolist() == [int(t) for t in expected]


def test_thresholds_must_increase() -> None:
    with pytest.raises(SynthctError, match="must increase"):
        HUClasses(air_below_hu=0.0, fat_below_hu=-100.0)


def test_mr_is_refused_as_ct_source(totalseg: Path) -> None:
    mr = read_volume(totalseg / "example_mr_sm.nii.gz")
    with pytest.raises(VolumeKindError, match="Hounsfield"):
        tissue_map_from_ct(CTVolume(mr.array[0], mr.affine, source=mr.source))


def test_real_ct_with_totalsegmentator_labels(totalseg: Path) -> None:
    ct = read_volume(totalseg / "example_ct_sm.nii.gz")
    seg = read_volume(totalseg / "example_seg.nii.gz")
    assert isinstance(ct, CTVolume) and isinstance(seg, LabelMap)
    tissue = tissue_map_from_ct(ct, seg).array
    assert np.array_equal(tissue == Tissue.SPINAL_CORD, seg.mask(79))
    csf = tissue == Tissue.CSF
    assert csf.any()
    # CSF sits around the cord: in the 3 mm sleeve or the vertebral foramen, so every CSF
    # voxel lies within two 3 mm voxels of the cord (the canal's radius exceeds the cord's by
    # a few mm), most of them in the sleeve.
    cord_idx = np.argwhere(seg.mask(79))
    steps = [np.min(np.abs(cord_idx - voxel).max(axis=1)) for voxel in np.argwhere(csf)]
    assert max(steps) <= 2 and np.mean(np.asarray(steps) == 1) > 0.8
    # Labelled back muscles become muscle, vertebrae bone (cortex or marrow); air voxels are
    # outside air, lung or bowel gas, never tissue.
    assert np.mean(tissue[seg.mask((86, 87))] == Tissue.MUSCLE) > 0.8
    vertebrae = seg.mask((30, 31, 32))
    bone = np.isin(tissue[vertebrae], [int(Tissue.CORTICAL_BONE), *MARROW_IDS])
    assert bone.mean() > 0.95
    air = (Tissue.AIR, Tissue.LUNG, Tissue.BOWEL_GAS)
    assert np.all(np.isin(tissue[ct.array < -300], air))


def test_model_serves_labels_on_other_grids() -> None:
    tissue = np.zeros((10, 10, 10), np.uint8)
    tissue[2:5, 3:7, 4:8] = Tissue.MUSCLE
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    model = CTDerivedModel(LabelMap(tissue, affine))
    np.testing.assert_array_equal(model.labels_on(model.geometry), tissue)
    # A 2x supersampled grid whose sub-voxel blocks tile the coarse voxels.
    fine_affine = np.eye(4)
    fine_affine[:3, 3] = -0.5
    labels = model.labels_on(Geometry((20, 20, 20), fine_affine))
    np.testing.assert_array_equal(labels[::2, ::2, ::2], tissue)
    np.testing.assert_array_equal(labels[1::2, 1::2, 1::2], tissue)
    # Outside the CT's field of view is air.
    far = np.eye(4)
    far[:3, 3] = 1000.0
    assert np.all(model.labels_on(Geometry((3, 3, 3), far)) == Tissue.AIR)
