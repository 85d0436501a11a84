"""k-space acquisition, transmit and receive fields, against known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import sici

from synthct.geometry import Geometry
from synthct.phantom.model import PhantomParameterError
from synthct.phantom.mri_acquisition import (
    TRANSMIT_RANGE_3T,
    acquire_kspace,
    acquired_shape,
    correlated_field,
    receive_field,
    transmit_field,
    typical_transmit_range,
)

#: Wilbraham-Gibbs overshoot of a truncated Fourier series at a unit jump: Si(pi)/pi - 1/2.
GIBBS_OVERSHOOT = float(sici(np.pi)[0] / np.pi - 0.5)


def test_truncating_kspace_of_a_step_overshoots_by_nine_percent() -> None:
    assert pytest.approx(0.0895, abs=1e-4) == GIBBS_OVERSHOOT
    n = 1024
    box = np.zeros(n, dtype=np.complex64)
    box[256:768] = 1.0  # two unit steps
    ringing = acquire_kspace(box, acquired=(129,), kspace_noise_sd=0.0, seed=0)
    assert np.abs(ringing.imag).max() < 1e-5  # odd, symmetric truncation keeps it real
    overshoot = float(ringing.real.max() - 1.0)
    undershoot = float(-ringing.real.min())
    assert overshoot == pytest.approx(GIBBS_OVERSHOOT, abs=0.004)
    assert undershoot == pytest.approx(GIBBS_OVERSHOOT, abs=0.004)
    # The full matrix gives the box back exactly.
    full = acquire_kspace(box, acquired=(n,), kspace_noise_sd=0.0, seed=0)
    np.testing.assert_array_equal(full, box)


@pytest.mark.parametrize("acquired", [(32, 32, 32), (17, 21, 25)])
def test_kspace_noise_gives_image_noise_of_sd_s_sqrt_m_over_n(acquired: tuple[int, ...]) -> None:
    s = 0.01
    image = np.zeros((32, 32, 32), dtype=np.complex64)
    out = acquire_kspace(image, acquired=acquired, kspace_noise_sd=s, seed=3, key=1)
    share = math.prod(acquired) / image.size
    expected = s * math.sqrt(share)
    assert out.real.std() == pytest.approx(expected, rel=0.04)
    assert out.imag.std() == pytest.approx(expected, rel=0.04)
    assert abs(out.real.mean()) < 0.05 * expected
    # Magnitude of pure noise is Rayleigh: mean sigma sqrt(pi / 2).
    assert np.abs(out).mean() == pytest.approx(expected * math.sqrt(math.pi / 2), rel=0.04)
    # Seeded: the same seed and key repeat, another key does not.
    again = acquire_kspace(image, acquired=acquired, kspace_noise_sd=s, seed=3, key=1)
    np.testing.assert_array_equal(out, again)
    other = acquire_kspace(image, acquired=acquired, kspace_noise_sd=s, seed=3, key=2)
    assert not np.array_equal(out, other)


def test_acquired_shape_is_odd_and_refuses_bad_fractions() -> None:
    assert acquired_shape((100, 64, 9), (0.8, 1.0, 0.5)) == (81, 64, 5)
    with pytest.raises(PhantomParameterError, match="acquired_fraction"):
        acquired_shape((10, 10, 10), (0.8, 0.0, 1.0))
    with pytest.raises(PhantomParameterError, match="acquired_fraction"):
        acquired_shape((10, 10, 10), (0.8, 1.0))


def test_transmit_field_spans_a_seeded_part_of_the_range() -> None:
    grid = Geometry.from_parameters((20, 16, 12), (5.0, 5.0, 5.0))
    lo, hi = TRANSMIT_RANGE_3T
    kappa = transmit_field(grid, transmit_range=(lo, hi), seed=2)
    assert kappa.dtype == np.float32 and kappa.shape == grid.shape
    assert lo - 1e-6 <= kappa.min() and kappa.max() <= hi + 1e-6
    assert kappa.max() - kappa.min() >= 0.5 * (hi - lo) - 1e-6
    assert np.max(np.abs(np.diff(kappa, axis=0))) < 0.1 * (hi - lo)  # smooth, body scale
    np.testing.assert_array_equal(kappa, transmit_field(grid, transmit_range=(lo, hi), seed=2))
    assert not np.array_equal(kappa, transmit_field(grid, transmit_range=(lo, hi), seed=3))
    assert np.all(transmit_field(grid, transmit_range=(1.0, 1.0), seed=2) == 1.0)
    assert typical_transmit_range(3.0) == TRANSMIT_RANGE_3T
    assert typical_transmit_range(1.5)[1] - typical_transmit_range(1.5)[0] < hi - lo
    with pytest.raises(PhantomParameterError, match="transmit_range"):
        transmit_field(grid, transmit_range=(1.2, 0.8))


def test_receive_field_is_the_loop_profile_over_depth_from_the_back() -> None:
    # Axial grid: array axis 1 runs along +P in 2 mm steps; the body fills P = 0..78 mm.
    grid = Geometry.from_parameters((4, 60, 4), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    body = np.zeros(grid.shape, dtype=np.float32)
    body[:, :40] = 1.0  # rows 0..39: P = 0..78 mm
    sens = receive_field(grid, body, loop_radius_mm=60.0, coil_offset_mm=10.0)
    p_mm = np.arange(60) * 2.0
    depth = np.maximum(78.0 + 10.0 - p_mm, 0.0)
    expected = (3600.0 / (3600.0 + depth**2)) ** 1.5
    np.testing.assert_allclose(sens[1, :, 2], expected, rtol=1e-6)
    assert np.all(np.diff(sens[1, :44, 2]) > 0)  # brighter towards the coil behind the back
    assert sens[1, 0, 2] < 0.5 * sens[1, 39, 2]  # anterior body much darker
    assert np.all(receive_field(grid, np.zeros(grid.shape)) == 1.0)
    # What an intensity normalisation leaves: the profile to a power.
    half = receive_field(grid, body, loop_radius_mm=60.0, coil_offset_mm=10.0, residual=0.5)
    np.testing.assert_allclose(half, np.sqrt(sens), rtol=1e-6)
    assert np.all(receive_field(grid, body, residual=0.0) == 1.0)


def test_correlated_field_is_unit_variance_smooth_and_seeded() -> None:
    grid = Geometry.from_parameters((40, 40, 20), (1.0, 1.0, 2.0))
    field = correlated_field(grid, correlation_mm=3.0, seed=1, key=5)
    assert float(field.std()) == pytest.approx(1.0, rel=1e-4)
    neighbour = np.corrcoef(field[:-1].ravel(), field[1:].ravel())[0, 1]
    assert neighbour > 0.9  # 1 mm apart at 3 mm correlation
    np.testing.assert_array_equal(field, correlated_field(grid, correlation_mm=3.0, seed=1, key=5))
    other = correlated_field(grid, correlation_mm=3.0, seed=1, key=6)
    assert abs(np.corrcoef(field.ravel(), other.ravel())[0, 1]) < 0.1
