"""Resolution augmentation: the interpolation texture of an MRI acquired at another voxel size."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from synthct.synthesis.config import NormalisationConfig, PatchConfig, SynthesisConfig
from synthct.synthesis.errors import TrainingConfigError
from synthct.synthesis.normalisation import EchoScaling
from synthct.synthesis.patches import PatchSampler, PreparedCase
from synthct.synthesis.resolution_augmentation import resample_through


def test_factor_one_at_phase_zero_is_the_identity() -> None:
    x = np.random.default_rng(0).normal(size=(2, 9, 8, 7)).astype(np.float32)
    np.testing.assert_array_equal(resample_through(x, (1.0, 1.0, 1.0)), x)


def test_a_linear_ramp_survives_inside_the_patch() -> None:
    # linear interpolation reproduces a linear function exactly, away from the clamped edge
    i, j, k = np.meshgrid(np.arange(20), np.arange(18), np.arange(16), indexing="ij")
    ramp = (2.0 * i - 1.5 * j + 0.5 * k).astype(np.float32)[np.newaxis]
    out = resample_through(ramp, (1.5, 1.3, 2.0), (0.7, 0.2, 1.1))
    np.testing.assert_allclose(out[0, 2:-3, 2:-3, 2:-3], ramp[0, 2:-3, 2:-3, 2:-3], atol=1e-4)


def test_white_noise_comes_back_smoother_and_correlated() -> None:
    # known answer for a factor of 2 at phase 0.5 along one axis: coarse sample c_m is
    # (x_2m + x_2m+1) / 2; voxel 2m+1 is 3/4 c_m + 1/4 c_m+1 and voxel 2m+2 is 1/4 c_m + 3/4 c_m+1,
    # weights (3/8, 3/8, 1/8, 1/8) on four voxels: variance 5/16 of the input's; neighbours
    # within a coarse interval share weights 2 x 3/8 x 1/8 + 2 x 1/8 x 3/8 (correlation 0.6),
    # across one 2 x 3/8 x 3/8 (0.9): 0.75 on average
    x = np.random.default_rng(1).normal(size=(1, 64, 64, 64)).astype(np.float32)
    out = resample_through(x, (2.0, 1.0, 1.0), (0.5, 0.0, 0.0))[0, 2:-2]
    assert out.var() == pytest.approx(5 / 16, rel=0.03)
    lag1 = np.corrcoef(out[:-1].ravel(), out[1:].ravel())[0, 1]
    assert lag1 == pytest.approx(0.75, abs=0.02)
    # the other axes are untouched: no correlation along them
    assert abs(np.corrcoef(out[:, :-1].ravel(), out[:, 1:].ravel())[0, 1]) < 0.02


@pytest.mark.parametrize(
    ("factors", "phases"),
    [((0.9, 1.0, 1.0), None), ((1.5, 1.5), None), ((1.5, 1.5, 1.5), (0.0, 0.0, 1.5))],
)
def test_bad_factors_or_phases_are_refused(factors: tuple, phases: tuple | None) -> None:
    with pytest.raises(ValueError, match="factor"):
        resample_through(np.zeros((1, 4, 4, 4), np.float32), factors, phases)


def _case() -> PreparedCase:
    shape = (24, 24, 24)
    rng = np.random.default_rng(2)
    return PreparedCase(
        case_id="c",
        inputs=rng.normal(size=(2, *shape)).astype(np.float32),
        # voxel index as the target: equal targets mean the same windows, untouched
        target=np.arange(np.prod(shape), dtype=np.float32).reshape(shape),
        body=np.ones(shape, bool),
        lesions=None,
        scaling=EchoScaling((1.0, 1.0), 1.0, 0.0),
        cumulative_weights=np.cumsum(np.ones(np.prod(shape))),
    )


def test_the_sampler_applies_it_to_the_share_asked_and_leaves_the_target_sharp() -> None:
    case = _case()
    plain = PatchSampler(
        [case], PatchConfig(size=(12, 12, 12), intensity_jitter=0.0), NormalisationConfig()
    )
    always = PatchSampler(
        [case],
        PatchConfig(
            size=(12, 12, 12),
            intensity_jitter=0.0,
            resample_probability=1.0,
            resample_factor_max=2.0,
        ),
        NormalisationConfig(),
    )

    # one generator per sample, so the augmentation's own draws do not move later windows
    def rngs() -> list[np.random.Generator]:
        return [np.random.default_rng(seed) for seed in range(8)]

    x0, y0 = plain.sample_from(rngs())
    x1, y1 = always.sample_from(rngs())
    np.testing.assert_array_equal(y0, y1)
    # white-noise inputs: every resampled patch has lost variance
    assert np.all(x1.var(axis=(1, 2, 3, 4)) < 0.95 * x0.var(axis=(1, 2, 3, 4)))
    # probability 0 (the default) draws exactly the patches of before
    x2, _ = PatchSampler(
        [case],
        PatchConfig(size=(12, 12, 12), intensity_jitter=0.0, resample_probability=0.0),
        NormalisationConfig(),
    ).sample_from(rngs())
    np.testing.assert_array_equal(x0, x2)


def test_config_bounds() -> None:
    with pytest.raises(ValidationError):
        PatchConfig(resample_probability=1.5)
    with pytest.raises(ValidationError):
        PatchConfig(resample_factor_max=0.8)
    # the randomised MRI source draws its own resolutions: both at once is refused
    with pytest.raises(TrainingConfigError, match="resample_probability"):
        SynthesisConfig().with_updates(
            {
                "data": {"mr_source": "randomised"},
                "normalisation": {"channels": ["any_contrast"]},
                "patches": {"resample_probability": 0.5},
            }
        )
