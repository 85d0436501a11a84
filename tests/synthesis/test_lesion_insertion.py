"""Lesion-aware training: lesions inserted consistently into MRI and CT patches."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from synthct.imaging.labels import Tissue
from synthct.phantom.anatomy import SpineModel, SpineSpec
from synthct.phantom.ct_insertion import EllipsoidLesion
from synthct.phantom.mri import render_ct_and_mri
from synthct.phantom.protocols import FAST_3T
from synthct.synthesis.config import LesionInsertionConfig, SynthesisConfig
from synthct.synthesis.lesion_insertion import (
    has_placement_site,
    insert_lesion_into_patch,
    patch_geometry,
    prepare_insertion_source,
)
from synthct.synthesis.manifest import Case
from synthct.synthesis.patches import PatchSampler, prepare_case

#: 1 mm voxels around T5: small enough to render in a second, fine enough for volumes.
ONE_MM = FAST_3T.with_changes(
    name="one_mm_3t", voxel_size_mm=(1.0, 1.0, 1.0), field_of_view_mm=(72.0, 72.0, 40.0)
)
INSERTION = LesionInsertionConfig(enabled=True, probability=1.0, ct_noise_sd_hu=0.0)


@pytest.fixture(scope="module")
def phantom():  # type: ignore[no-untyped-def]
    model = SpineModel(SpineSpec(first_level="T3", last_level="T7", seed=4))
    geometry = ONE_MM.geometry(center_lps_mm=model.level_centre_lps_mm("T5"), orientation="axial")
    ct, mr = render_ct_and_mri(model, geometry, ONE_MM, supersample=2, seed=4)
    tissue = model.labels_on(geometry)
    return ct, mr, np.asarray(tissue, dtype=np.uint8)


def _cord_centre(mr, tissue):  # type: ignore[no-untyped-def]
    ijk = np.argwhere(tissue == Tissue.SPINAL_CORD).mean(axis=0)
    return mr.geometry.index_to_lps(ijk)


def _insert(phantom, lesion, config=INSERTION, seed=0):  # type: ignore[no-untyped-def]
    ct, mr, tissue = phantom
    source = prepare_insertion_source(mr.array, tissue, mr.affine, mr.protocol, config)
    shape = ct.spatial_shape
    return insert_lesion_into_patch(
        mr.array.astype(np.float32),
        ct.array.astype(np.float32),
        tissue,
        patch_geometry(mr.affine, (0, 0, 0), shape),
        lesion,
        source,
        config,
        np.random.default_rng(seed),
    )


def test_ct_lesion_mean_hu_and_volume(phantom) -> None:  # type: ignore[no-untyped-def]
    ct, mr, tissue = phantom
    lesion = EllipsoidLesion(
        "meningioma", tuple(_cord_centre(mr, tissue)), 10.0, 7.0, 14.0, mean_hu=600.0, seed=3
    )
    _, ct_out, occ = _insert(phantom, lesion)
    before = ct.array.astype(np.float64)
    lesion_part = ct_out - (1.0 - occ) * before  # = occ * lesion HU (no noise)
    mean_hu = lesion_part.sum() / occ.sum()
    assert mean_hu == pytest.approx(600.0, rel=0.05)
    volume = occ.sum() * float(np.prod(ct.geometry.spacing_mm))
    assert volume == pytest.approx(4 / 3 * np.pi * 5.0 * 3.5 * 7.0, rel=0.05)
    assert np.array_equal(ct_out[occ == 0], ct.array[occ == 0])


def test_dense_meningioma_darker_than_csf_on_both_echoes(phantom) -> None:  # type: ignore[no-untyped-def]
    _, mr, tissue = phantom
    lesion = EllipsoidLesion(
        "meningioma", tuple(_cord_centre(mr, tissue)), 10.0, 7.0, 14.0, mean_hu=900.0, seed=1
    )
    mr_out, _, occ = _insert(phantom, lesion)
    core = occ >= 0.999
    assert core.sum() > 50
    for echo in range(mr.n_echoes):
        csf = np.median(mr.array[echo][tissue == Tissue.CSF])
        assert mr_out[echo][core].mean() < 0.7 * csf
    assert np.array_equal(mr_out[:, occ == 0], mr.array[:, occ == 0].astype(np.float32))


def _prepared(phantom, config):  # type: ignore[no-untyped-def]
    ct, mr, tissue = phantom
    settings = SynthesisConfig().with_updates({"patches": {"size": (16, 16, 16)}})
    case = Case("c", mr, ct)
    return settings, prepare_case(
        case, settings.normalisation, settings.patches, insertion=config, tissue_labels=tissue
    )


def test_probability_zero_changes_nothing(phantom) -> None:  # type: ignore[no-untyped-def]
    zero = LesionInsertionConfig(enabled=True, probability=0.0)
    settings, prepared = _prepared(phantom, zero)
    plain = PatchSampler([prepared], settings.patches, settings.normalisation)
    with_zero = PatchSampler([prepared], settings.patches, settings.normalisation, insertion=zero)
    a = plain.sample(np.random.default_rng(5), 3)
    b = with_zero.sample(np.random.default_rng(5), 3)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_insertion_is_deterministic_for_a_seed(phantom) -> None:  # type: ignore[no-untyped-def]
    settings, prepared = _prepared(phantom, INSERTION)
    sampler = PatchSampler(
        [prepared], settings.patches, settings.normalisation, insertion=INSERTION
    )
    a = sampler.sample(np.random.default_rng(7), 2)
    b = sampler.sample(np.random.default_rng(7), 2)
    c = sampler.sample(np.random.default_rng(8), 2)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    # An inserted lesion raises the target inside the canal above what the case holds there.
    assert float(a[1].max()) > 0.0


def test_sham_insertion_centres_patches_in_the_canal_without_a_lesion(  # type: ignore[no-untyped-def]
    phantom,
) -> None:
    # The ablation's control: the same canal-centred patches, nothing inserted, so every patch
    # is an unchanged window of the case holding canal voxels.
    sham = LesionInsertionConfig(enabled=True, sham=True, probability=1.0)
    settings, prepared = _prepared(phantom, sham)
    shape = prepared.target.shape
    # Voxel index as the target: a patch's first value says where its window starts.
    indexed = dataclasses.replace(
        prepared, target=np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    )
    sampler = PatchSampler([indexed], settings.patches, settings.normalisation, insertion=sham)
    _, _, tissue = phantom
    canal = np.isin(tissue, [int(Tissue.CSF), int(Tissue.SPINAL_CORD)])
    size = settings.patches.size
    rng = np.random.default_rng(3)
    for _ in range(8):
        _, y = sampler.sample(rng, 1)
        start = np.unravel_index(int(y[0, 0, 0, 0, 0]), shape)
        window = tuple(slice(int(s), int(s) + n) for s, n in zip(start, size, strict=True))
        np.testing.assert_array_equal(y[0, 0], indexed.target[window])
        assert canal[window].any()
    # Without sham the same draws insert lesions: the targets change.
    real = PatchSampler(
        [prepared], settings.patches, settings.normalisation, insertion=INSERTION
    ).sample(np.random.default_rng(3), 1)[1]
    control = PatchSampler(
        [prepared], settings.patches, settings.normalisation, insertion=sham
    ).sample(np.random.default_rng(3), 1)[1]
    assert not np.array_equal(real, control)


def test_sham_fraction_leaves_that_share_of_canal_patches_without_a_lesion(  # type: ignore[no-untyped-def]
    phantom,
) -> None:
    # Known answer: with every patch canal-centred (probability 1) and half of them sham, about
    # half of the patches are unchanged windows of the case, the others hold an inserted lesion
    half = LesionInsertionConfig(enabled=True, probability=1.0, sham_fraction=0.5)
    settings, prepared = _prepared(phantom, half)
    sampler = PatchSampler([prepared], settings.patches, settings.normalisation, insertion=half)
    unchanged, n = 0, 40
    for seed in range(n):
        _, y = sampler.sample_from([np.random.default_rng(seed)])
        # a sham patch is a window of the target: its values all occur in the case's target
        # (an inserted lesion brings new HU values and CT noise)
        unchanged += bool(np.isin(y[0, 0], prepared.target).all())
    assert 0.3 * n <= unchanged <= 0.7 * n
    # sham_fraction 0 (the default) draws exactly the patches of before
    zero = LesionInsertionConfig(enabled=True, probability=1.0, sham_fraction=0.0)
    a = PatchSampler([prepared], settings.patches, settings.normalisation, insertion=zero).sample(
        np.random.default_rng(9), 2
    )
    b = PatchSampler(
        [prepared],
        settings.patches,
        settings.normalisation,
        insertion=LesionInsertionConfig(enabled=True, probability=1.0),
    ).sample(np.random.default_rng(9), 2)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_a_case_without_a_canal_trains_without_lesion_patches(phantom) -> None:  # type: ignore[no-untyped-def]
    ct, mr, tissue = phantom
    assert has_placement_site(tissue, INSERTION)
    # A CT-derived case made from HU alone has no CSF or cord class: the canal is muscle.
    no_canal = np.where(np.isin(tissue, [Tissue.CSF, Tissue.SPINAL_CORD]), Tissue.MUSCLE, tissue)
    assert not has_placement_site(no_canal.astype(np.uint8), INSERTION)
    with pytest.raises(ValueError, match="no csf/spinal_cord voxel"):
        prepare_insertion_source(mr.array, no_canal, mr.affine, mr.protocol, INSERTION)
    settings, prepared = _prepared((ct, mr, no_canal.astype(np.uint8)), INSERTION)
    assert prepared.insertion is None
    sampler = PatchSampler(
        [prepared], settings.patches, settings.normalisation, insertion=INSERTION
    )
    plain = PatchSampler([prepared], settings.patches, settings.normalisation)
    a = sampler.sample(np.random.default_rng(2), 2)
    b = plain.sample(np.random.default_rng(2), 2)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])  # no lesion anywhere
