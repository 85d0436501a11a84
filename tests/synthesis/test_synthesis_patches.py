"""Patch geometry and sampling towards bone and lesions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from synthct.synthesis.config import NormalisationConfig, PatchConfig
from synthct.synthesis.manifest import Case
from synthct.synthesis.normalisation import EchoScaling
from synthct.synthesis.patches import (
    OBJECT_AIR_BELOW_HU,
    PatchSampler,
    PreparedCase,
    extract_patch,
    mr_invisible_objects,
    patch_start,
    prepare_case,
    sampling_weights,
)
from synthct.volume import CTVolume, MultiEchoMR


def test_patch_start_stays_inside_and_centres_on_short_axes() -> None:
    assert patch_start((10, 0, 99), (100, 100, 100), (16, 16, 16)) == (2, 0, 84)
    assert patch_start((3, 3, 3), (10, 100, 7), (16, 16, 16)) == (-3, 0, -5)


def test_extract_patch_pads_outside_the_volume() -> None:
    array = np.arange(2 * 4 * 5 * 6, dtype=np.float32).reshape(2, 4, 5, 6)
    patch = extract_patch(array, (-1, 1, 2), (6, 3, 3), fill=-7.0)
    assert patch.shape == (2, 6, 3, 3)
    np.testing.assert_array_equal(patch[:, 1:5], array[:, :, 1:4, 2:5])
    assert np.all(patch[:, 0] == -7.0) and np.all(patch[:, 5] == -7.0)


def test_sampling_weights_rank_lesion_over_bone_over_body() -> None:
    ct = np.array([[[-1000.0, 40.0, 400.0, 40.0]]])
    body = np.array([[[False, True, True, True]]])
    lesions = np.array([[[False, False, False, True]]])
    config = PatchConfig(background_weight=0.1, body_weight=1.0, bone_weight=4.0)
    np.testing.assert_array_equal(
        sampling_weights(ct, body, lesions, config), [[[0.1, 1.0, 4.0, 20.0]]]
    )


def _case(weights: np.ndarray) -> PreparedCase:
    shape = weights.shape
    return PreparedCase(
        case_id="c",
        inputs=np.zeros((2, *shape), np.float32),
        target=np.arange(np.prod(shape), dtype=np.float32).reshape(shape),
        body=np.ones(shape, bool),
        lesions=None,
        scaling=EchoScaling((1.0, 1.0), 1.0, 0.0),
        cumulative_weights=np.cumsum(weights.ravel()),
    )


def test_centres_are_drawn_in_proportion_to_the_weights() -> None:
    weights = np.ones((20, 20, 20))
    weights[5, 5, 5] = 800.0  # one voxel with the weight of 800 others: half of the draws
    case = _case(weights)
    sampler = PatchSampler([case], PatchConfig(size=(4, 4, 4)), NormalisationConfig())
    rng = np.random.default_rng(0)
    hits = sum(sampler.centre(case, rng) == (5, 5, 5) for _ in range(4000))
    assert hits / 4000 == pytest.approx(800 / (800 + 7999), abs=0.03)


def test_batches_have_the_patch_shape_and_padding_is_air() -> None:
    case = _case(np.ones((6, 20, 20)))
    config = PatchConfig(size=(8, 8, 8), flip_axes=(0, 1, 2), intensity_jitter=0.2)
    sampler = PatchSampler([case], config, NormalisationConfig())
    x, y = sampler.sample(np.random.default_rng(1), 3)
    assert x.shape == (3, 2, 8, 8, 8) and y.shape == (3, 1, 8, 8, 8)
    assert np.all(y[:, :, 0] == -1.0) and np.all(y[:, :, 7] == -1.0)  # -1000 HU / 1000


def _mr_and_ct(hu: np.ndarray, signal: np.ndarray) -> Case:
    """A case on a 2 mm grid: CT ``hu`` and a two-echo MRI with signal 100 where ``signal``."""
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    echoes = np.stack([np.where(signal, 100.0, 1.0)] * 2).astype(np.float32)
    rng = np.random.default_rng(0)
    echoes += rng.uniform(0.0, 1.0, echoes.shape).astype(np.float32)
    return Case("c", MultiEchoMR(echoes, affine), CTVolume(hu.astype(np.float32), affine))


def test_a_couch_without_mr_signal_is_air_in_the_target_and_draws_no_patch() -> None:
    """Known answer: a trunk, an arm apart from it (MR signal, with a dense bone whose cortex has
    no signal), a couch slab and a small couch piece (300 HU, no signal). Only the couch pieces
    become air; every other voxel of the target is the CT."""
    hu = np.full((40, 40, 12), -1000.0)
    signal = np.zeros(hu.shape, bool)
    hu[8:30, 6:26, :] = 40.0  # trunk
    signal[8:30, 6:26, :] = True
    hu[32:38, 10:20, :] = 30.0  # arm, apart from the trunk by air
    signal[32:38, 10:20, :] = True
    hu[34:36, 14:16, :] = 1200.0  # arm bone: dense cortex, dark on MRI
    signal[34:36, 14:16, :] = False
    hu[4:36, 30:32, :] = 300.0  # couch slab
    hu[2:4, 34:36, 0:2] = 300.0  # a small couch piece (8 voxels, 0.06 mL)
    couch = np.zeros(hu.shape, bool)
    couch[4:36, 30:32, :] = True
    couch[2:4, 34:36, 0:2] = True
    case = _mr_and_ct(hu, signal)

    np.testing.assert_array_equal(mr_invisible_objects(hu, signal), couch)
    config = NormalisationConfig()
    patches = PatchConfig(background_weight=0.1, body_weight=1.0, bone_weight=4.0)
    prepared = prepare_case(case, config, patches)
    target_hu = prepared.target * config.hu_scale + config.hu_offset
    np.testing.assert_allclose(target_hu[couch], -1000.0, atol=1e-3)
    np.testing.assert_allclose(target_hu[~couch], hu[~couch], atol=1e-3)
    weights = np.diff(prepared.cumulative_weights, prepend=0.0).reshape(hu.shape)
    np.testing.assert_allclose(weights[couch], 0.1)  # background, not bone
    assert np.all(weights[34:36, 14:16, :] == 4.0)  # the arm's bone is still bone
    # the CT itself is not changed
    assert np.count_nonzero(np.asarray(case.ct.array) == 300.0) == couch.sum()


def test_a_ct_with_the_body_alone_is_left_as_it_is() -> None:
    hu = np.full((12, 12, 6), -1000.0)
    hu[2:10, 2:10, :] = 50.0
    assert not mr_invisible_objects(hu, hu > 0).any()
    assert not mr_invisible_objects(np.full((4, 4, 4), -1000.0), np.zeros((4, 4, 4), bool)).any()


def test_the_couch_of_a_real_ct_is_no_target_against_its_simulated_mri(
    totalseg: Path, tmp_path: Path
) -> None:
    """The DICOM thorax keeps its couch (two carbon-fibre shells under the patient). With an MRI
    of the same anatomy, where the couch has no signal, the prepared target holds no couch; the
    trunk and the arms (humerus included) are the CT."""
    from synthct.io import read_volume
    from synthct.phantom.cohort_files import CT_FILE, PhantomCase
    from synthct.phantom.ct_insertion import write_ct_derived_case

    ct = read_volume(totalseg / "example_ct_dicom")
    assert isinstance(ct, CTVolume)
    folder = write_ct_derived_case(ct, tmp_path / "pair", supersample=1, seed=0) / "case-000"
    mr = PhantomCase(folder).mr()
    ct = read_volume(folder / CT_FILE, kind="ct")
    assert isinstance(ct, CTVolume)
    hu = np.asarray(ct.array, np.float32)
    regions, _ = ndimage.label(hu >= OBJECT_AIR_BELOW_HU)
    sizes = np.bincount(regions.ravel())
    sizes[0] = 0
    trunk = regions == int(np.argmax(sizes))
    config = NormalisationConfig()
    prepared = prepare_case(Case("thorax", mr, ct), config, PatchConfig())
    target_hu = prepared.target * config.hu_scale + config.hu_offset
    couch = np.abs(target_hu - hu) > 1e-2
    assert np.count_nonzero(couch & (hu >= 150.0)) > 50_000  # the couch was dense
    assert not np.any(couch & trunk)
    assert np.all(target_hu[couch] == pytest.approx(-1000.0, abs=1e-3))
    # the couch lies under the patient: posterior (array j increases posteriorly in LPS)
    assert np.argwhere(couch)[:, 1].min() > np.argwhere(trunk)[:, 1].mean()
    arms = (regions > 0) & ~trunk & ~couch
    assert np.count_nonzero(arms & (target_hu >= 150.0)) > 5_000  # each humerus stays bone
