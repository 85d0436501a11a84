"""Subjects drawn from one CT: identity at zero strength, seeded, CT and tissue map aligned."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from synthct.errors import SynthctError
from synthct.imaging.labels import MARROW_TISSUES, Tissue
from synthct.imaging.marrow import DEFAULT_MARROW
from synthct.phantom.ct_derived import tissue_map_from_ct
from synthct.phantom.ct_insertion import (
    EllipsoidLesion,
    LesionOverlayModel,
    insert_lesions_into_ct,
)
from synthct.phantom.subject_variation import SubjectVariation, make_subject, shift_marrow
from synthct.volume import CTVolume, LabelMap

MARROW_IDS = [int(t) for t in MARROW_TISSUES]


def sphere_ct() -> CTVolume:
    """A 24^3 CT of 2 mm voxels: fat with a 14 mm marrow sphere of fat fraction 0.5."""
    ijk = np.indices((24, 24, 24)) - 11.5
    r_mm = 2.0 * np.sqrt((ijk**2).sum(axis=0))
    hu = np.where(r_mm <= 14.0, float(DEFAULT_MARROW.hu_of_fat_fraction(0.5)), -100.0)
    return CTVolume(hu.astype(np.float32), np.diag([2.0, 2.0, 2.0, 1.0]), source="sphere")


def sphere_labels(ct: CTVolume) -> LabelMap:
    ijk = np.indices(ct.spatial_shape) - 11.5
    inside = 2.0 * np.sqrt((ijk**2).sum(axis=0)) <= 14.0
    return LabelMap(np.where(inside, 31, 0).astype(np.uint8), ct.affine, source="sphere_seg")


def test_zero_strength_is_the_identity() -> None:
    ct = sphere_ct()
    subject = make_subject(ct, sphere_labels(ct), seed=3, variation=SubjectVariation.none())
    np.testing.assert_allclose(subject.ct.array, ct.array, atol=1e-3)
    expected = tissue_map_from_ct(ct, sphere_labels(ct)).array
    np.testing.assert_array_equal(subject.tissue_map.array, expected)
    assert subject.scale == (1.0, 1.0, 1.0) and subject.marrow_fat_shift == 0.0


def test_seeded_and_distinct_subjects_keep_ct_and_tissue_aligned() -> None:
    ct = sphere_ct()
    labels = sphere_labels(ct)
    variation = SubjectVariation(elastic_sd_mm=3.0, control_spacing_mm=20.0, vary_marrow=False)
    a = make_subject(ct, labels, seed=1, variation=variation)
    again = make_subject(ct, labels, seed=1, variation=variation)
    b = make_subject(ct, labels, seed=2, variation=variation)
    np.testing.assert_array_equal(a.ct.array, again.ct.array)
    np.testing.assert_array_equal(a.tissue_map.array, again.tissue_map.array)
    assert a.scale == again.scale
    assert np.mean(a.tissue_map.array != b.tissue_map.array) > 0.005
    source = tissue_map_from_ct(ct, labels).array
    assert np.mean(a.tissue_map.array != source) > 0.005  # it did move
    for subject in (a, b):
        # Bone in the tissue map is where the moved CT shows the sphere's HU (interpolated
        # edge voxels aside): the two moved alike.
        bone = np.isin(subject.tissue_map.array, [*MARROW_IDS, int(Tissue.CORTICAL_BONE)])
        dense = subject.ct.array > 100.0
        assert np.mean(bone != dense) < 0.02
        assert np.mean(bone == dense) > 0.98


def test_marrow_shift_moves_ct_and_bins_together() -> None:
    ct = sphere_ct()
    tissue = tissue_map_from_ct(ct, sphere_labels(ct))
    inside = np.isin(tissue.array, MARROW_IDS)
    assert np.all(tissue.array[inside] == Tissue.MARROW_FF50)
    fat_ct, fat_map = shift_marrow(ct, tissue, 0.2)
    # Fat fraction 0.5 -> 0.7: 0.2 * -126 HU = -25.2 HU, and the FF70 bin.
    np.testing.assert_allclose(fat_ct.array[inside], ct.array[inside] - 25.2, atol=1e-3)
    assert np.all(fat_map.array[inside] == Tissue.MARROW_FF70)
    np.testing.assert_array_equal(fat_ct.array[~inside], ct.array[~inside])


def test_lesions_insert_into_a_subject_consistently() -> None:
    ct = sphere_ct()
    subject = make_subject(ct, sphere_labels(ct), seed=5)
    lesion = EllipsoidLesion("meningioma", (23.0, 23.0, 23.0), 8.0, 8.0, 8.0, mean_hu=600.0)
    model = LesionOverlayModel(subject.model(), [lesion])
    out = insert_lesions_into_ct(subject.ct, model, noise_sd_hu=0.0)
    inside = model.lesion_labels_on(subject.ct.geometry) == 1
    assert inside.any()
    assert np.isin(model.labels_on(subject.ct.geometry)[inside], (20, 21)).all()
    # Voxels the lesion covers whole get its mean HU in the CT; the rest is the subject's CT.
    assert out.array[inside].mean() > 300.0
    far = ~np.isin(np.arange(24), range(8, 17))
    np.testing.assert_array_equal(out.array[far], subject.ct.array[far])


def test_bad_variation_is_refused() -> None:
    with pytest.raises(SynthctError, match="elastic_sd_mm"):
        SubjectVariation(elastic_sd_mm=-1.0)
    with pytest.raises(SynthctError, match="control_spacing_mm"):
        SubjectVariation(control_spacing_mm=0.0)


def test_real_ct_subject(totalseg: Path) -> None:
    from synthct.io import read_volume

    ct = read_volume(totalseg / "example_ct_sm.nii.gz", kind="ct")
    seg = read_volume(totalseg / "example_seg.nii.gz", kind="label")
    assert isinstance(ct, CTVolume) and isinstance(seg, LabelMap)
    subject = make_subject(ct, seg, seed=2)  # age ~85: fattier marrow than the source
    assert subject.marrow_fat_shift > 0.1
    source = tissue_map_from_ct(ct, seg).array
    fatty = int(Tissue.MARROW_FF90)
    share = [
        np.mean(t[np.isin(t, MARROW_IDS)] == fatty) for t in (source, subject.tissue_map.array)
    ]
    assert share[1] > share[0]
    assert subject.ct.same_geometry(ct) and subject.hu_only == ("heart",)


def test_a_cohort_of_subjects_from_one_ct(tmp_path: Path) -> None:
    from synthct.phantom.cohort_files import PhantomCase, read_manifest, verify_case
    from synthct.phantom.ct_cohort import write_ct_derived_cohort

    ct = sphere_ct()
    out = write_ct_derived_cohort(
        [(ct, sphere_labels(ct))], tmp_path / "cohort", subjects_per_ct=3, supersample=1
    )
    rows = read_manifest(out)
    assert [r["case_id"] for r in rows] == ["case-000", "case-001", "case-002"]
    cases = [PhantomCase(out / r["case_id"]) for r in rows]
    for case in cases:
        assert verify_case(case.folder) == []
        assert case.mr().same_geometry(ct) and case.mr().n_echoes == 2
        assert case.meta["derived_from_hu_alone"][0] == "intervertebral discs"
    # Distinct subjects: the tissue maps differ, and each CT matches its own tissue map.
    maps = [case.tissue_labels().array for case in cases]
    assert np.mean(maps[0] != maps[1]) > 0.005
    for case, tissue in zip(cases, maps, strict=True):
        bone = np.isin(tissue, [*MARROW_IDS, int(Tissue.CORTICAL_BONE)])
        assert np.mean(bone == (case.ct().array > 100)) > 0.97
    with pytest.raises(SynthctError, match="subjects_per_ct"):
        write_ct_derived_cohort([(ct, None)], tmp_path / "none", subjects_per_ct=0)


def test_deformation_keeps_the_ct_noise_level_and_texture() -> None:
    # Uniform muscle with white noise of SD 25 HU on 1 mm voxels: linear resampling through a
    # deformation would average neighbouring noise samples (SD about 0.6x); the subject's CT
    # must keep the source's noise level and its (white) spectrum.
    rng = np.random.default_rng(0)
    shape = (64, 64, 48)
    hu = (50.0 + 25.0 * rng.standard_normal(shape)).astype(np.float32)
    hu[:3] -= 1050.0  # a slab of air, so that the values read as a CT; not measured below
    ct = CTVolume(hu, np.diag([1.0, 1.0, 1.0, 1.0]), source="noise")
    labels = LabelMap(np.zeros(shape, np.uint8), ct.affine, source="none")
    variation = SubjectVariation(elastic_sd_mm=3.0, control_spacing_mm=30.0, vary_marrow=False)
    subject = make_subject(ct, labels, seed=4, variation=variation)
    moved = np.asarray(subject.ct.array, dtype=np.float64)[16:-8, 8:-8, 8:-8]
    assert abs(moved.std() / 25.0 - 1.0) < 0.05
    assert abs(moved.mean() - 50.0) < 1.0
    # white noise: neighbouring voxels stay uncorrelated (linear interpolation correlates them)
    neighbours = np.corrcoef(moved[:-1].ravel(), moved[1:].ravel())[0, 1]
    assert abs(neighbours) < 0.1
    assert not np.array_equal(subject.ct.array, ct.array)  # it did move


def test_deformation_moves_smooth_anatomy_as_linear_resampling_does() -> None:
    # Without noise the subject's CT is the linearly resampled CT (the noise is all the
    # nearest-neighbour part adds): the sphere's edge moves, its HU stay within the source's.
    ct = sphere_ct()
    variation = SubjectVariation(elastic_sd_mm=3.0, control_spacing_mm=20.0, vary_marrow=False)
    subject = make_subject(ct, sphere_labels(ct), seed=1, variation=variation)
    moved = np.asarray(subject.ct.array)
    lo, hi = float(ct.array.min()), float(ct.array.max())
    assert moved.min() >= lo - 1e-3 and moved.max() <= hi + 1e-3
    inner = float(DEFAULT_MARROW.hu_of_fat_fraction(0.5))
    np.testing.assert_allclose(moved[11:13, 11:13, 11:13], inner, atol=1e-3)
