"""Calcification patterns: smooth, seeded scalar fields of LPS position, thresholded to a fraction.

A lesion of calcified fraction ``f`` is drawn as its base tissue plus dense sub-voxels where
a field is below the ``f``-quantile of that field over the lesion. The field is a
deterministic function of position (not per-sample noise), so CT and MRI rendered on
different grids see the same calcifications, and the fraction of calcified sub-voxels on any
fine grid approaches ``f``.

Patterns
--------
``partial``
    Scattered clusters (psammomatous foci): band-limited noise, wavelength ~2.5 mm.
``dense``
    A confluent mass from the centre out with an irregular margin: the normalised radius
    squared plus coarser noise (wavelength ~5 mm).
``rim``
    An outer shell (e.g. a calcified cyst wall): minus the normalised radius squared.
``none``
    No calcification (``f`` must be 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

Pattern = Literal["none", "partial", "dense", "rim"]
PATTERNS: tuple[str, ...] = ("none", "partial", "dense", "rim")

_N_MODES = 32
_WAVELENGTH_MM = {"partial": 2.5, "dense": 5.0, "rim": 4.0, "none": 4.0}


class SmoothField:
    """Band-limited random field: a normalised sum of plane waves with seeded directions.

    Parameters
    ----------
    seed : int
        Seeds the wave directions, wavelengths and phases.
    wavelength_mm : float
        Mean wavelength; each mode's wavelength is drawn within +-30% of it.
    n_modes : int
        Number of plane waves (the field is close to Gaussian with unit variance).
    """

    def __init__(self, seed: int, wavelength_mm: float, n_modes: int = _N_MODES) -> None:
        rng = np.random.default_rng(seed)
        directions = rng.standard_normal((n_modes, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        wavelengths = wavelength_mm * rng.uniform(0.7, 1.3, n_modes)
        self.wave_vectors = directions * (2 * np.pi / wavelengths)[:, None]
        self.phases = rng.uniform(0, 2 * np.pi, n_modes)
        self._scale = np.sqrt(2.0 / n_modes)

    def __call__(self, points_lps_mm: NDArray[np.float64]) -> NDArray[np.float64]:
        """Field values at points of shape ``(n, 3)`` (LPS mm)."""
        total = np.zeros(len(points_lps_mm))
        for k, phase in zip(self.wave_vectors, self.phases, strict=True):
            total += np.cos(points_lps_mm @ k + phase)
        return total * self._scale


def pattern_field(
    pattern: str,
    seed: int,
    points_lps_mm: NDArray[np.float64],
    radius2: NDArray[np.floating[Any]],
) -> NDArray[np.float64]:
    """The field of ``pattern`` at lesion points; calcified where it is below a threshold.

    Parameters
    ----------
    pattern : {"partial", "dense", "rim", "none"}
        Spatial arrangement of the calcification.
    seed : int
        Seeds the noise.
    points_lps_mm : (n, 3) ndarray
        Positions inside the lesion.
    radius2 : (n,) ndarray
        Normalised squared radius of each point (0 at the lesion centre, 1 at its surface).
    """
    radius2 = np.asarray(radius2, dtype=np.float64)
    if pattern == "rim":
        return -radius2 + 0.05 * SmoothField(seed, _WAVELENGTH_MM["rim"])(points_lps_mm)
    noise = SmoothField(seed, _WAVELENGTH_MM.get(pattern, 2.5))(points_lps_mm)
    if pattern == "dense":
        return radius2 + 0.35 * noise
    return noise


def threshold_for_fraction(values: NDArray[np.float64], fraction: float) -> float:
    """Threshold below which ``fraction`` of ``values`` lie (``-inf`` for 0, ``inf`` for 1)."""
    if fraction <= 0.0 or values.size == 0:
        return -np.inf
    if fraction >= 1.0:
        return np.inf
    return float(np.quantile(values, fraction))


def calibration_offsets(spacing_mm: Sequence[float]) -> NDArray[np.float64]:
    """Sub-voxel offset of the calibration grid, irrational in voxels to avoid aliasing."""
    return np.asarray(spacing_mm) * np.array([0.3819660, 0.2360680, 0.4142136])
