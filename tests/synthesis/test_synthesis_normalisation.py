"""Input checks, the MRI body mask and intensity normalisation on rendered phantoms."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from synthct.imaging.body_mask import body_mask_from_ct
from synthct.synthesis.config import NormalisationConfig
from synthct.synthesis.errors import SynthesisInputError
from synthct.synthesis.normalisation import (
    body_mask_from_mri,
    check_mr_array,
    hu_to_target,
    normalise_mr,
    target_to_hu,
)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def test_mri_body_mask_matches_the_ct_body(render: Callable[..., Any]) -> None:
    ct, mr = render(7)
    mask, threshold = body_mask_from_mri(mr.array)
    assert threshold > 0
    assert _dice(mask, body_mask_from_ct(ct.array)) > 0.97


def test_body_mask_keeps_dark_tissue_when_the_field_of_view_has_no_air(
    render: Callable[..., Any],
) -> None:
    ct, mr = render(7)
    inner = (slice(12, 36), slice(12, 36), slice(None))  # all inside the body
    assert np.all(ct.array[inner] > -500)
    mask, _ = body_mask_from_mri(mr.array[(slice(None), *inner)])
    assert mask.mean() > 0.98


def test_normalisation_is_invariant_to_the_scanner_gain(render: Callable[..., Any]) -> None:
    _, mr = render(7)
    config = NormalisationConfig()
    base, mask, scaling = normalise_mr(mr.array, config)
    gain = np.array([3.7, 0.02], dtype=np.float32)[:, None, None, None]
    scaled, mask2, scaling2 = normalise_mr(mr.array * gain, config)
    np.testing.assert_array_equal(mask, mask2)
    np.testing.assert_allclose(scaled, base, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(scaling2.reference_values) / scaling.reference_values, gain.ravel(), rtol=1e-5
    )
    for echo in range(2):  # the 99th percentile inside the body maps to 1
        assert np.percentile(base[echo][mask], 99) == pytest.approx(1.0, abs=1e-3)
    assert base.dtype == np.float32 and base.min() >= 0 and base.max() <= config.clip_max


def test_shared_scaling_keeps_the_echo_ratio(render: Callable[..., Any]) -> None:
    _, mr = render(7)
    normalised, mask, scaling = normalise_mr(mr.array, NormalisationConfig(per_echo=False))
    assert scaling.reference_values[0] == scaling.reference_values[1]
    inside = mask & (mr.array[1] > 0.02)
    np.testing.assert_allclose(
        normalised[0][inside] / normalised[1][inside],
        mr.array[0][inside] / mr.array[1][inside],
        rtol=1e-4,
    )


def test_hu_scaling_round_trips() -> None:
    config = NormalisationConfig(hu_offset=-24.0, hu_scale=500.0)
    hu = np.array([-1000.0, 0.0, 1850.0])
    np.testing.assert_allclose(hu_to_target(hu, config), (hu + 24.0) / 500.0, rtol=1e-6)
    np.testing.assert_allclose(target_to_hu(hu_to_target(hu, config), config), hu, atol=1e-3)


def _mr(n_echoes: int = 2) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(0.0, 1.0, size=(n_echoes, 8, 8, 8)).astype(np.float32)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (_mr(1), "needs at least 2 echo"),
        (_mr(2)[0], "multi-echo MRI"),
        (np.where(np.arange(2 * 512).reshape(2, 8, 8, 8) == 5, np.nan, _mr(2)), "NaN"),
        (np.stack([_mr(2)[0], np.zeros((8, 8, 8), np.float32)]), "echo 2 of 2 holds no signal"),
        (np.full((2, 8, 8, 8), -1000.0, np.float32), "CT in Hounsfield units"),
    ],
    ids=["one-echo", "3d", "nan", "zero-echo", "ct"],
)
def test_bad_mri_raises_with_the_reason(array: np.ndarray, message: str) -> None:
    with pytest.raises(SynthesisInputError) as info:
        check_mr_array(array, source="scan.nii.gz")
    assert message in str(info.value)
    assert "scan.nii.gz" in str(info.value) and "Fix:" in str(info.value)
