"""Noise SD of magnitude MR images (synthct.imaging.mri_noise)."""

from __future__ import annotations

import numpy as np
import pytest

from synthct.imaging.mri_noise import estimate_noise_sd


def test_noise_sd_from_a_rician_background() -> None:
    rng = np.random.default_rng(1)
    sd = 0.02
    shape = (2, 40, 40, 40)
    body = np.zeros(shape[1:], dtype=bool)
    body[10:30, 10:30, 10:30] = True
    signal = np.where(body, 1.0, 0.0)
    data = np.hypot(signal + sd * rng.standard_normal(shape), sd * rng.standard_normal(shape))
    assert estimate_noise_sd(data, body) == pytest.approx(sd, rel=0.03)
    # Without background: differences of neighbours inside the body.
    full = np.ones(shape[1:], dtype=bool)
    noisy = 1.0 + sd * rng.standard_normal(shape)
    assert estimate_noise_sd(noisy, full) == pytest.approx(sd, rel=0.05)
