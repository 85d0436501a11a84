"""Patch geometry and sampling towards bone and lesions."""

from __future__ import annotations

import numpy as np
import pytest

from synthct.synthesis.config import NormalisationConfig, PatchConfig
from synthct.synthesis.normalisation import EchoScaling
from synthct.synthesis.patches import (
    PatchSampler,
    PreparedCase,
    extract_patch,
    patch_start,
    sampling_weights,
)


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
