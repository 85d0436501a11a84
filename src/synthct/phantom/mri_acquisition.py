"""Fields and k-space of an MR acquisition: B1+ transmit, B1- receive, truncation and noise.

* :func:`transmit_field` - the relative flip angle ``kappa = B1+ / B1+_nominal``: a smooth,
  seeded body-scale field spanning a drawn sub-range of the typical range at the field strength
  (3 T body: about 0.7 to 1.2, Sacolick 2010; Bernstein 2006; 1.5 T much flatter). It scales the
  flip angle, so it changes contrast, not only gain (see :mod:`synthct.phantom.mri`).
* :func:`receive_field` - the magnitude sensitivity of a posterior spine array: the on-axis
  field of a circular loop (Biot-Savart) over the depth from a coil plane behind the back,
  so the signal falls off anteriorly as in a phased-array image (Roemer 1990).
* :func:`acquire_kspace` - the complex image to k-space (orthonormal FFT), truncated to the
  acquired matrix (zero-filled: Gibbs ringing at sharp edges), complex Gaussian noise on the
  acquired samples, back to the image. Its magnitude has Rician statistics.

References
----------
Sacolick 2010
    Sacolick LI et al. B1 mapping by Bloch-Siegert shift. Magn Reson Med 2010;63:1315-1322
    (in vivo B1+ maps at 3 T; body fields of roughly 70-120 % of nominal).
Bernstein 2006
    Bernstein MA, Huston J, Ward HA. Imaging artifacts at 3.0T. J Magn Reson Imaging
    2006;24:735-746 (B1 inhomogeneity from the shorter RF wavelength; small at 1.5 T).
Roemer 1990
    Roemer PB et al. The NMR phased array. Magn Reson Med 1990;16:192-225.
Gibbs / Wilbraham
    a Fourier series truncated at a jump overshoots by ~ 8.95 % of the jump
    (Si(pi) / pi - 1/2 = 0.0895).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.fft
from numpy.typing import NDArray
from scipy.ndimage import gaussian_filter

from synthct.geometry import Geometry
from synthct.phantom.model import PhantomParameterError, check_seed, rng_for

# Random stream ids (see synthct.phantom.model.rng_for); the MRI renderer owns 3..9.
_STREAM_TRANSMIT = 6
_STREAM_KSPACE_NOISE = 7
_STREAM_FIELDS = 8  # correlated random fields (texture, flow), keyed further by the caller
_STREAM_RECEIVE = 9

#: Typical whole-range of the relative B1+ over a body at 3 T (Sacolick 2010, Bernstein 2006).
TRANSMIT_RANGE_3T = (0.7, 1.2)
#: At 1.5 T the wavelength is twice as long and B1+ is much flatter (Bernstein 2006);
#: +-10 % is an assumption within that statement.
TRANSMIT_RANGE_1P5T = (0.9, 1.1)
#: Relative flip angles the renderer's flip-angle expansion covers (values are clipped to it).
TRANSMIT_SUPPORTED_RANGE = (0.5, 1.5)

#: Radius of one spine-array loop, mm: assumption, elements of about 10-15 cm as in the linear
#: spine arrays of Roemer 1990.
RECEIVE_LOOP_RADIUS_MM = 60.0
#: Distance from the posterior skin to the coil plane (table pad and housing), mm: assumption.
RECEIVE_COIL_OFFSET_MM = 15.0
#: Share of the log receive profile left after the scanner's intensity normalisation
#: (prescan normalise / PURE / CLEAR divide by a body-coil reference): assumption. 0.1 leaves
#: about 20 % fall-off 10 cm in front of the coil and 35 % at 20 cm, the mild anterior
#: darkening of clinical spine images; the raw array profile (1.0) would make vertebral marrow
#: darker than the back muscles on T1w, against Carroll 1997 (JMRI 7:394).
RECEIVE_RESIDUAL = 0.1


def typical_transmit_range(field_strength_t: float) -> tuple[float, float]:
    """The typical relative-B1+ range at ``field_strength_t`` (linear between 1.5 and 3 T)."""
    w = float(np.clip((float(field_strength_t) - 1.5) / 1.5, 0.0, 1.0))
    lo = (1 - w) * TRANSMIT_RANGE_1P5T[0] + w * TRANSMIT_RANGE_3T[0]
    hi = (1 - w) * TRANSMIT_RANGE_1P5T[1] + w * TRANSMIT_RANGE_3T[1]
    return lo, hi


def correlated_field(
    geometry: Geometry, *, correlation_mm: float, seed: int, key: int
) -> NDArray[np.float32]:
    """Zero-mean, unit-variance Gaussian random field with ``correlation_mm`` smoothing.

    White noise drawn plane by plane (so it does not depend on slab sizes), smoothed by a
    Gaussian of standard deviation ``correlation_mm`` and scaled to unit sample variance.
    ``key`` separates independent fields of one seed.
    """
    if not (np.isfinite(correlation_mm) and correlation_mm > 0):
        raise PhantomParameterError(
            f"correlation_mm must be > 0 mm, got {correlation_mm}", path="correlation_mm"
        )
    check_seed(seed)
    shape = geometry.shape
    field = np.empty(shape, dtype=np.float32)
    for i in range(shape[0]):
        field[i] = rng_for(seed, _STREAM_FIELDS, key, i).standard_normal(shape[1:], np.float32)
    gaussian_filter(field, [correlation_mm / s for s in geometry.spacing_mm], output=field)
    field -= np.float32(field.mean(dtype=np.float64))
    sd = float(field.std(dtype=np.float64))
    if sd > 0:
        field /= np.float32(sd)
    return field


def _normalised_coordinates(geometry: Geometry) -> list[NDArray[np.float64]]:
    return [np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1) for n in geometry.shape]


def transmit_field(
    geometry: Geometry,
    *,
    transmit_range: tuple[float, float],
    seed: int = 0,
) -> NDArray[np.float32]:
    """Relative flip angle ``kappa`` (B1+ over nominal) on ``geometry``.

    A seeded random quadratic in the grid's normalised coordinates (the body-scale standing
    wave pattern: bright centre or bright sides, a left-right or antero-posterior tilt) mapped
    linearly onto a sub-range of ``transmit_range``: a subject's field spans between half and
    all of the typical range, placed at random within it.

    Parameters
    ----------
    geometry : Geometry
        The grid.
    transmit_range : tuple of float
        Lowest and highest relative B1+ (e.g. :func:`typical_transmit_range`); equal values
        give a uniform field (``(1, 1)``: the nominal flip angle everywhere).
    seed : int
        Subject seed.

    Returns
    -------
    ndarray of float32
        ``kappa`` within ``transmit_range``.
    """
    lo, hi = (float(v) for v in transmit_range)
    s_lo, s_hi = TRANSMIT_SUPPORTED_RANGE
    if not (s_lo <= lo <= hi <= s_hi):
        raise PhantomParameterError(
            f"transmit_range must satisfy {s_lo} <= low <= high <= {s_hi}, got {transmit_range}",
            path="transmit_range",
            fix="use e.g. typical_transmit_range(field_strength_t), or (1, 1) for no B1+ effect",
        )
    if hi == lo:
        return np.full(geometry.shape, lo, dtype=np.float32)
    rng = rng_for(check_seed(seed), _STREAM_TRANSMIT)
    span = (hi - lo) * rng.uniform(0.5, 1.0)
    start = lo + rng.uniform(0.0, (hi - lo) - span)
    u = _normalised_coordinates(geometry)
    a = rng.standard_normal(3)  # linear tilts
    q = rng.standard_normal(3)  # quadratic (centre brightening or darkening)
    g = np.zeros(geometry.shape, dtype=np.float32)
    for axis in range(3):
        shape = [1, 1, 1]
        shape[axis] = geometry.shape[axis]
        ramp = u[axis].reshape(shape)
        g += (a[axis] * ramp + q[axis] * (ramp * ramp - 1.0 / 3.0)).astype(np.float32)
    g_lo, g_hi = float(g.min()), float(g.max())
    if g_hi - g_lo <= 0:
        return np.full(geometry.shape, start + span / 2.0, dtype=np.float32)
    g -= np.float32(g_lo)
    g *= np.float32(span / (g_hi - g_lo))
    g += np.float32(start)
    return g


def receive_field(
    geometry: Geometry,
    body_fraction: NDArray[np.floating],
    *,
    loop_radius_mm: float = RECEIVE_LOOP_RADIUS_MM,
    coil_offset_mm: float = RECEIVE_COIL_OFFSET_MM,
    residual: float = 1.0,
) -> NDArray[np.float32]:
    """Receive sensitivity of a posterior spine array, 1 at the coil plane.

    The coil plane is perpendicular to the posterior (LPS +P) direction, ``coil_offset_mm``
    behind the most posterior voxel of the body. At depth ``d`` in front of it the sensitivity
    is the on-axis field of a loop of radius ``a``: ``(a^2 / (a^2 + d^2))^(3/2)``
    (Biot-Savart; the array tiles the back, so there is no left-right or cranio-caudal
    fall-off).

    Parameters
    ----------
    geometry : Geometry
        The grid.
    body_fraction : ndarray
        Fraction of each voxel inside the body (non-air), shape ``geometry.shape``.
    loop_radius_mm, coil_offset_mm : float
        Loop radius and skin-to-coil distance, mm.
    residual : float
        Exponent applied to the profile (0..1): 1 is the raw array, smaller values what an
        intensity normalisation leaves (e.g. :data:`RECEIVE_RESIDUAL`), 0 a flat field.

    Returns
    -------
    ndarray of float32
        Sensitivity in (0, 1]; all ones when the grid holds no body.
    """
    if body_fraction.shape != geometry.shape:
        raise PhantomParameterError(
            f"body_fraction has shape {body_fraction.shape}, the grid {geometry.shape}",
            path="body_fraction",
        )
    for name, value in (("loop_radius_mm", loop_radius_mm), ("coil_offset_mm", coil_offset_mm)):
        if not (np.isfinite(value) and value > 0):
            raise PhantomParameterError(f"{name} must be > 0 mm, got {value}", path=name)
    if not (np.isfinite(residual) and 0.0 <= residual <= 1.0):
        raise PhantomParameterError(
            f"residual must lie in 0..1, got {residual}", path="receive_residual"
        )
    body = body_fraction > 0.5
    if not np.any(body) or residual == 0.0:
        return np.ones(geometry.shape, dtype=np.float32)
    # P coordinate of every voxel: an affine function of the indices.
    step = geometry.affine[1, :3]
    ramps = [
        (step[a] * np.arange(n, dtype=np.float64)).reshape([n if b == a else 1 for b in range(3)])
        for a, n in enumerate(geometry.shape)
    ]
    p_mm = geometry.affine[1, 3] + ramps[0] + ramps[1] + ramps[2]
    coil_p_mm = float(np.max(np.broadcast_to(p_mm, geometry.shape)[body])) + coil_offset_mm
    depth = np.maximum(coil_p_mm - p_mm, 0.0)
    a2 = float(loop_radius_mm) ** 2
    sensitivity = (a2 / (a2 + depth * depth)) ** (1.5 * float(residual))
    return np.broadcast_to(sensitivity, geometry.shape).astype(np.float32)


def acquired_shape(shape: Sequence[int], fraction: Sequence[float]) -> tuple[int, ...]:
    """The acquired matrix: ``fraction`` of each axis of ``shape``, odd (centred on k = 0).

    An odd count keeps the kept frequencies symmetric about k = 0, so a real image stays real
    after truncation.
    """
    if len(fraction) != len(shape) or not all(0.0 < f <= 1.0 for f in fraction):
        raise PhantomParameterError(
            f"acquired_fraction needs {len(shape)} values in (0, 1], got {list(fraction)}",
            path="acquired_fraction",
            fix="use e.g. (1, 0.8, 0.8): the share of the reconstructed matrix acquired",
        )
    out = []
    for n, f in zip(shape, fraction, strict=True):
        m = int(np.rint(n * f))
        if m < n and m % 2 == 0:
            m += 1
        out.append(max(1, min(n, m)))
    return tuple(out)


def _kept(n: int, m: int) -> NDArray[np.bool_]:
    """Which of ``n`` FFT-ordered frequencies an acquisition of ``m`` samples keeps."""
    if m >= n:
        return np.ones(n, dtype=bool)
    k = np.rint(scipy.fft.fftfreq(n) * n).astype(int)
    return np.abs(k) <= (m - 1) // 2


def acquire_kspace(
    image: NDArray[np.complexfloating],
    *,
    acquired: Sequence[int],
    kspace_noise_sd: float,
    seed: int,
    key: int = 0,
) -> NDArray[np.complex64]:
    """Acquire ``image`` in k-space: truncation, complex noise, zero-filled reconstruction.

    ``image -> FFT (orthonormal) -> keep the central acquired matrix -> add complex Gaussian
    noise of SD kspace_noise_sd per channel on the kept samples -> zero-fill -> inverse FFT``.
    With the orthonormal transform, noise of SD ``s`` on ``M`` of ``N`` samples gives image
    noise of SD ``s * sqrt(M / N)`` per channel (white noise over the kept band).

    Parameters
    ----------
    image : ndarray of complex
        The ideal complex image on the reconstruction grid (any number of axes, all Fourier
        encoded).
    acquired : sequence of int
        Acquired samples per axis (see :func:`acquired_shape`); equal to ``image.shape`` for a
        full acquisition.
    kspace_noise_sd : float
        Noise SD per channel (real and imaginary) of each k-space sample (0: none).
    seed, key : int
        Seed and an extra key (e.g. the echo index) for the noise.

    Returns
    -------
    ndarray of complex64
        The reconstructed complex image (take ``np.abs`` for the magnitude).
    """
    if len(acquired) != image.ndim:
        raise PhantomParameterError(
            f"acquired has {len(acquired)} axes, the image {image.ndim}", path="acquired"
        )
    if not (np.isfinite(kspace_noise_sd) and kspace_noise_sd >= 0):
        raise PhantomParameterError(
            f"kspace_noise_sd must be >= 0, got {kspace_noise_sd}", path="kspace_noise_sd"
        )
    full = all(m >= n for m, n in zip(acquired, image.shape, strict=True))
    if full and kspace_noise_sd == 0:
        return image.astype(np.complex64, copy=False)
    k = scipy.fft.fftn(image.astype(np.complex64, copy=False), norm="ortho", workers=1)
    masks = [
        _kept(n, int(m)).reshape([n if b == a else 1 for b in range(image.ndim)])
        for a, (n, m) in enumerate(zip(image.shape, acquired, strict=True))
    ]
    keep = masks[0]
    for m in masks[1:]:
        keep = keep & m
    if not full:
        k *= keep
    if kspace_noise_sd > 0:
        rng = rng_for(check_seed(seed), _STREAM_KSPACE_NOISE, key)
        sd = np.float32(kspace_noise_sd)
        noise = rng.standard_normal(image.shape, np.float32) * sd
        k.real += noise * keep
        noise = rng.standard_normal(image.shape, np.float32) * sd
        k.imag += noise * keep
        del noise
    return scipy.fft.ifftn(k, norm="ortho", workers=1, overwrite_x=True).astype(
        np.complex64, copy=False
    )
