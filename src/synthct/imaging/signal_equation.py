"""The spoiled gradient-echo signal equation and its fat and static-dephasing models.

Signal equation (the BRIEF's, per sub-voxel of one tissue)::

    S(TE) = PD sin(a) (1 - E1) / (1 - cos(a) E1)
            x [(1 - ff) exp(-TE / T2*w) + ff exp(-TE / T2*f) exp(i 2 pi df TE)],
    E1 = exp(-TR / T1),  df = -3.4 ppm x gamma B0.

:func:`spgr_signal` returns this complex signal; its magnitude is the BRIEF's expression.
Two documented generalisations are available: a separate T1 for the fat component and the
6-peak fat spectrum of Hamilton 2011. :func:`static_dephasing_exponent` is the signal decay
around microscopic calcifications (Yablonskiy 1994). The phantom renderer
(:mod:`synthct.phantom.mri`), the synthesis lesion insertion and the audit's tissue classes all
use these, so they live in the shared imaging layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import sici

from synthct.errors import PhantomParameterError

#: Proton gyromagnetic ratio over 2 pi, Hz/T (CODATA).
GYROMAGNETIC_RATIO_HZ_PER_T = 42.577478e6
#: Chemical shift of the main (methylene) fat peak relative to water, ppm.
FAT_SHIFT_PPM = -3.4
#: 6-peak fat spectrum relative to water (ppm) and relative amplitudes (Hamilton 2011, as used
#: by the ISMRM fat-water toolbox); amplitudes are normalised to sum to 1 where used.
HAMILTON_FAT_PEAKS_PPM = (-3.80, -3.40, -2.60, -1.94, -0.39, 0.60)
HAMILTON_FAT_AMPLITUDES = (0.087, 0.693, 0.128, 0.004, 0.039, 0.048)

FatSpectrum = Literal["single", "hamilton"]


def check_range(name: str, values: ArrayLike, lo: float, hi: float, *, lo_open: bool) -> None:
    a = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(a) & (a > lo if lo_open else a >= lo) & (a <= hi)
    if not np.all(ok):
        bound = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
        bad = a[~ok].ravel()[:3].tolist()
        raise PhantomParameterError(f"{name} must lie in {bound}, got {bad}", path=name)


def fat_spectrum(
    field_strength_t: float, spectrum: FatSpectrum = "single"
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Fat resonance frequencies (Hz, relative to water) and amplitudes (summing to 1)."""
    if spectrum == "single":
        ppm, amp = np.array([FAT_SHIFT_PPM]), np.array([1.0])
    elif spectrum == "hamilton":
        ppm = np.asarray(HAMILTON_FAT_PEAKS_PPM)
        amp = np.asarray(HAMILTON_FAT_AMPLITUDES) / np.sum(HAMILTON_FAT_AMPLITUDES)
    else:
        raise PhantomParameterError(
            f"fat_spectrum must be 'single' or 'hamilton', got {spectrum!r}", path="fat_spectrum"
        )
    return ppm * 1e-6 * GYROMAGNETIC_RATIO_HZ_PER_T * field_strength_t, amp


def spgr_signal(
    *,
    proton_density: ArrayLike,
    fat_fraction: ArrayLike,
    t1_ms: ArrayLike,
    t2star_water_ms: ArrayLike,
    t2star_fat_ms: ArrayLike,
    echo_times_ms: Sequence[float],
    repetition_time_ms: float,
    flip_angle_deg: float,
    field_strength_t: float,
    t1_fat_ms: ArrayLike | None = None,
    fat_spectrum_model: FatSpectrum = "single",
) -> NDArray[np.complex128]:
    """Complex steady-state signal of an RF-spoiled gradient echo (water + fat).

    Tissue parameters broadcast against each other. Signal units: the fully relaxed
    magnetisation of pure water is 1.

    Parameters
    ----------
    proton_density : array_like
        Relative to water.
    fat_fraction : array_like
        Fraction of the proton density in fat, 0 to 1.
    t1_ms, t2star_water_ms, t2star_fat_ms : array_like
        T1 (of the water component, or of both when ``t1_fat_ms`` is None) and T2* of the water
        and fat components, ms.
    echo_times_ms : sequence of float
        Echo times, ms (each 0 <= TE < TR).
    repetition_time_ms, flip_angle_deg, field_strength_t : float
        TR (ms), flip angle (degrees, (0, 90]) and main field (T).
    t1_fat_ms : array_like, optional
        T1 of the fat component. ``None`` uses ``t1_ms`` for both (the BRIEF's equation).
    fat_spectrum_model : {"single", "hamilton"}
        Single fat peak at -3.4 ppm (the BRIEF) or the 6-peak spectrum of Hamilton 2011.

    Returns
    -------
    ndarray of complex128, shape ``(n_echoes, *broadcast_shape)``
        Its magnitude is the image intensity; the phase of water is 0 at every echo.

    References
    ----------
    Buxton RB et al., "Contrast in rapid MR imaging: T1- and T2-weighted imaging",
    J Comput Assist Tomogr 1987 (steady-state spoiled gradient echo).
    """
    tr = float(repetition_time_ms)
    check_range("repetition_time_ms", tr, 0.0, np.inf, lo_open=True)
    check_range("echo_times_ms", echo_times_ms, 0.0, tr - 1e-12, lo_open=False)
    check_range("flip_angle_deg", flip_angle_deg, 0.0, 90.0, lo_open=True)
    check_range("field_strength_t", field_strength_t, 0.0, 20.0, lo_open=True)
    check_range("proton_density", proton_density, 0.0, np.inf, lo_open=False)
    check_range("fat_fraction", fat_fraction, 0.0, 1.0, lo_open=False)
    for name, value in (
        ("t1_ms", t1_ms),
        ("t2star_water_ms", t2star_water_ms),
        ("t2star_fat_ms", t2star_fat_ms),
        ("t1_fat_ms", t1_ms if t1_fat_ms is None else t1_fat_ms),
    ):
        check_range(name, value, 0.0, np.inf, lo_open=True)

    pd, ff, t1, t2w, t2f = np.broadcast_arrays(
        *(
            np.asarray(v, dtype=np.float64)
            for v in (proton_density, fat_fraction, t1_ms, t2star_water_ms, t2star_fat_ms)
        )
    )
    t1f = t1 if t1_fat_ms is None else np.broadcast_to(np.asarray(t1_fat_ms, np.float64), t1.shape)
    alpha = np.deg2rad(flip_angle_deg)

    def t1_weight(t1_values: NDArray[np.float64]) -> NDArray[np.float64]:
        e1 = np.exp(-tr / t1_values)
        return np.sin(alpha) * (1.0 - e1) / (1.0 - np.cos(alpha) * e1)

    freqs_hz, amps = fat_spectrum(field_strength_t, fat_spectrum_model)
    te = np.asarray(echo_times_ms, dtype=np.float64).reshape((-1,) + (1,) * pd.ndim)
    te_s = te * 1e-3
    # Sum of the fat peaks' phasors at each echo: shape (n_echoes, 1, ...).
    phasor = np.sum(
        amps[:, None] * np.exp(2j * np.pi * freqs_hz[:, None] * te_s.ravel()[None, :]), axis=0
    ).reshape(te.shape)
    water = (1.0 - ff) * t1_weight(t1) * np.exp(-te / t2w)
    fat = ff * t1_weight(t1f) * np.exp(-te / t2f) * phasor
    return pd * (water + fat)


def static_dephasing_exponent(x: ArrayLike) -> NDArray[np.float64]:
    """Signal decay exponent of water around randomly placed magnetised spheres, per unit ζ.

    The magnitude of the signal is ``exp(-zeta * f(x))`` with ``zeta`` the volume fraction of
    the spheres and ``x = delta_omega * TE``, ``delta_omega = gamma * |dchi| * B0 / 3`` (SI).
    ``f`` goes from ``0.4 x**2`` at short times to ``2 pi x / (3 sqrt 3) - 1`` at long times
    (Yablonskiy 1994). Computed as ``f(x) = int_0^1 g(x (3c^2 - 1)) dc`` with
    ``g(k) = cos k - 1 + k Si(k)``.
    """
    xs = np.abs(np.asarray(x, dtype=np.float64))
    nodes, weights = np.polynomial.legendre.leggauss(96)
    # Split [0, 1] at the magic angle, where the dipole field changes sign.
    magic = 1.0 / np.sqrt(3.0)
    total = np.zeros_like(xs)
    for lo, hi in ((0.0, magic), (magic, 1.0)):
        c = lo + (hi - lo) * (nodes + 1.0) / 2.0
        k = xs[..., None] * (3.0 * c * c - 1.0)
        si, _ = sici(k)
        g = np.cos(k) - 1.0 + k * si
        total += (hi - lo) / 2.0 * np.sum(weights * g, axis=-1)
    return total
