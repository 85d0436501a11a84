"""Multi-echo RF-spoiled gradient-echo MRI of a tissue model.

Signal equation (the BRIEF's, per sub-voxel of one tissue)::

    S(TE) = PD sin(a) (1 - E1) / (1 - cos(a) E1)
            x [(1 - ff) exp(-TE / T2*w) + ff exp(-TE / T2*f) exp(i 2 pi df TE)],
    E1 = exp(-TR / T1),  df = -3.4 ppm x gamma B0.

:func:`spgr_signal` returns this complex signal; its magnitude is the BRIEF's expression.
Two documented generalisations are available: a separate T1 for the fat component (the
renderer's default, because marrow fat relaxes much faster than marrow water) and the 6-peak
fat spectrum of Hamilton 2011. With ``t1_fat_ms=None`` and ``fat_spectrum="single"`` the
result is exactly the BRIEF's equation.

:func:`render_mri` samples the tissue model on sub-voxels, averages the complex signal over
each voxel (partial volume, including fat-water cancellation inside a voxel), attenuates it by
static dephasing around microscopic calcifications (Yablonskiy 1994), multiplies by a smooth
coil bias field and adds complex Gaussian noise before taking the magnitude (Rician noise).
:func:`render_ct_and_mri` renders the CT and the MRI of one model from a single sampling pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from synthct.geometry import Geometry
from synthct.imaging.labels import Tissue
from synthct.imaging.signal_equation import (
    GYROMAGNETIC_RATIO_HZ_PER_T,
    FatSpectrum,
    spgr_signal,
    static_dephasing_exponent,
)
from synthct.imaging.signal_equation import check_range as _check_range
from synthct.imaging.tissues import TISSUES
from synthct.phantom.ct import CTOptions
from synthct.phantom.model import (
    DEFAULT_MAX_SUBVOXELS,
    PhantomParameterError,
    TissueModel,
    average_tables,
    check_seed,
    rng_for,
)
from synthct.phantom.protocols import SpgrProtocol
from synthct.volume import CTVolume, MRProtocol, MultiEchoMR

# Random stream ids (see synthct.phantom.model.rng_for).
_STREAM_BIAS = 3
_STREAM_NOISE = 4
_BIAS_DEGREE = 3


def bias_field(geometry: Geometry, *, strength: float, seed: int = 0) -> NDArray[np.float32]:
    """A smooth, positive, multiplicative coil sensitivity field on ``geometry``.

    ``exp(strength * g)``, with ``g`` a random combination (seeded) of Legendre polynomials of
    total degree 1 to 3 in the grid's normalised coordinates, scaled so that ``max |g| = 1``:
    the field spans at most ``exp(-strength)`` to ``exp(strength)`` and reaches one of them.

    Parameters
    ----------
    geometry : Geometry
        The grid.
    strength : float
        Log-amplitude, 0 (flat field) to 1.
    seed : int
        Random seed.
    """
    _check_range("bias_field_strength", strength, 0.0, 1.0, lo_open=False)
    if strength == 0.0:
        return np.ones(geometry.shape, dtype=np.float32)
    rng = rng_for(seed, _STREAM_BIAS)
    d = _BIAS_DEGREE + 1
    degree = np.add.outer(np.add.outer(np.arange(d), np.arange(d)), np.arange(d))
    coefficients = rng.standard_normal((d, d, d)) * ((degree >= 1) & (degree <= _BIAS_DEGREE))
    basis = []
    for n in geometry.shape:
        u = np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1)
        basis.append(np.polynomial.legendre.legvander(u, _BIAS_DEGREE).T)  # (degree, n)
    # float32 keeps the full-size intermediates at 4 bytes per voxel.
    g = np.einsum(
        "abc,ai,bj,ck->ijk",
        coefficients.astype(np.float32),
        *(b.astype(np.float32) for b in basis),
        optimize=True,
    )
    peak = float(np.max(np.abs(g)))
    if peak > 0:
        g *= np.float32(strength / peak)
    return np.exp(g, out=g)


def _mr_protocol(protocol: SpgrProtocol | MRProtocol) -> MRProtocol:
    if isinstance(protocol, SpgrProtocol):
        return protocol.to_mr_protocol()
    missing = [
        name
        for name in ("repetition_time_ms", "flip_angle_deg", "field_strength_t")
        if getattr(protocol, name) is None
    ]
    if missing:
        raise PhantomParameterError(
            f"the MR protocol lacks {missing}, which the signal equation needs",
            path="protocol",
            fix="pass an SpgrProtocol preset (synthct.phantom.protocols) or fill these fields",
        )
    return protocol


def render_mri(
    model: TissueModel,
    geometry: Geometry,
    protocol: SpgrProtocol | MRProtocol,
    *,
    supersample: int | Sequence[int] = 3,
    noise_sd: float = 1e-3,
    bias_field_strength: float = 0.1,
    seed: int = 0,
    separate_fat_t1: bool = True,
    fat_spectrum_model: FatSpectrum = "single",
    susceptibility_dephasing: bool = True,
    max_subvoxels: int = DEFAULT_MAX_SUBVOXELS,
) -> MultiEchoMR:
    """Render the multi-echo spoiled-GRE magnitude images of ``model`` on ``geometry``.

    Parameters
    ----------
    model : TissueModel
        The phantom.
    geometry : Geometry
        Output grid (e.g. ``PAPER_3T.geometry()``).
    protocol : SpgrProtocol or MRProtocol
        TR, echo times, flip angle and field strength.
    supersample : int or sequence of 3 int
        Sub-voxels per voxel edge for partial volume (1 samples voxel centres only).
    noise_sd : float
        Standard deviation of the complex Gaussian noise in each channel (real and imaginary),
        in signal units (fully relaxed water = 1). 0 gives noise-free images. The default,
        1e-3, gives spinal cord an SNR of about 40 with ``PAPER_3T`` (scale it with the
        field and voxel volume for other protocols, e.g. about 2e-3 at 1.5 T).
    bias_field_strength : float
        Log-amplitude of the smooth coil sensitivity field (0: none), see :func:`bias_field`.
    seed : int
        Seeds the bias field and the noise; the same seed gives identical images.
    separate_fat_t1 : bool
        Relax the fat component with the fat T1 of the tissue table (default). False uses one
        T1 per tissue, the BRIEF's equation verbatim.
    fat_spectrum_model : {"single", "hamilton"}
        Fat spectrum, see :func:`spgr_signal`.
    susceptibility_dephasing : bool
        Attenuate voxels that contain microscopic calcification by static dephasing
        (see :func:`static_dephasing_exponent`).
    max_subvoxels : int
        Sub-voxels processed at once (bounds memory).

    Returns
    -------
    MultiEchoMR
        float32 magnitudes ``[echo, i, j, k]`` with the protocol attached.
    """
    options = MRIOptions(
        protocol=_mr_protocol(protocol),
        noise_sd=noise_sd,
        bias_field_strength=bias_field_strength,
        seed=seed,
        separate_fat_t1=separate_fat_t1,
        fat_spectrum_model=fat_spectrum_model,
        susceptibility_dephasing=susceptibility_dephasing,
    )
    tables = options.tables()
    buffers = options.buffers(geometry, n_tables=len(tables))
    average_tables(
        model,
        geometry,
        tables,
        supersample=supersample,
        max_subvoxels=max_subvoxels,
        out=[*buffers[0], *buffers[1]],
    )
    return options.finish(*buffers, geometry=geometry)


@dataclass(frozen=True)
class MRIOptions:
    """Validated MRI rendering options (see :func:`render_mri`).

    Split into the per-tissue lookup tables averaged over sub-voxels (complex signal per echo,
    then static-dephasing exponents per echo) and the steps applied afterwards.
    """

    protocol: MRProtocol
    noise_sd: float = 1e-3
    bias_field_strength: float = 0.1
    seed: int = 0
    separate_fat_t1: bool = True
    fat_spectrum_model: FatSpectrum = "single"
    susceptibility_dephasing: bool = True

    def __post_init__(self) -> None:
        _mr_protocol(self.protocol)
        _check_range("noise_sd", self.noise_sd, 0.0, np.inf, lo_open=False)
        _check_range("bias_field_strength", self.bias_field_strength, 0.0, 1.0, lo_open=False)
        check_seed(self.seed)

    @property
    def n_echoes(self) -> int:
        """Number of echoes."""
        return len(self.protocol.echo_times_ms)

    def tables(self) -> list[NDArray[np.generic]]:
        """One complex signal table per echo, then one dephasing table per echo (if any)."""
        mr = self.protocol
        assert mr.repetition_time_ms is not None and mr.flip_angle_deg is not None
        assert mr.field_strength_t is not None
        b0 = float(mr.field_strength_t)
        tissues = list(TISSUES)
        props = [TISSUES[t] for t in tissues]
        relax = [p.relaxation(b0) for p in props]
        signal = spgr_signal(
            proton_density=[p.proton_density for p in props],
            fat_fraction=[p.fat_fraction for p in props],
            t1_ms=[r.t1_ms for r in relax],
            t2star_water_ms=[r.t2star_water_ms for r in relax],
            t2star_fat_ms=[r.t2star_fat_ms for r in relax],
            t1_fat_ms=[r.t1_fat_ms for r in relax] if self.separate_fat_t1 else None,
            echo_times_ms=mr.echo_times_ms,
            repetition_time_ms=mr.repetition_time_ms,
            flip_angle_deg=mr.flip_angle_deg,
            field_strength_t=b0,
            fat_spectrum_model=self.fat_spectrum_model,
        )
        labels = np.array([int(t) for t in tissues])
        tables: list[NDArray[np.generic]] = []
        for echo_signal in signal:
            table = np.full(256, np.nan + 0j, dtype=np.complex64)
            table[labels] = echo_signal
            tables.append(table)
        if self.susceptibility_dephasing:
            tables.extend(_inclusion_tables(tissues, mr.echo_times_ms, b0))
        return tables

    def buffers(
        self, geometry: Geometry, *, n_tables: int
    ) -> tuple[NDArray[np.complex64], NDArray[np.float32]]:
        """Arrays that :func:`average_tables` fills: complex signal and dephasing exponents."""
        signal = np.empty((self.n_echoes, *geometry.shape), dtype=np.complex64)
        exponents = np.empty((n_tables - self.n_echoes, *geometry.shape), dtype=np.float32)
        return signal, exponents

    def finish(
        self,
        complex_signal: NDArray[np.complex64],
        exponents: NDArray[np.float32],
        *,
        geometry: Geometry,
    ) -> MultiEchoMR:
        """Dephasing, bias field and Rician noise; the magnitude images."""
        if exponents.shape[0]:
            # exponents[e] holds the sum over inclusion tissues of zeta_t * f_t(TE_e).
            np.negative(exponents, out=exponents)
            np.exp(exponents, out=exponents)
            complex_signal *= exponents
        if self.bias_field_strength > 0:
            complex_signal *= bias_field(
                geometry, strength=self.bias_field_strength, seed=self.seed
            )
        magnitude = _rician_magnitude(complex_signal, self.noise_sd, self.seed)
        return MultiEchoMR(magnitude, geometry.affine, protocol=self.protocol)


def render_ct_and_mri(
    model: TissueModel,
    geometry: Geometry,
    protocol: SpgrProtocol | MRProtocol,
    *,
    supersample: int | Sequence[int] = 3,
    seed: int = 0,
    noise_sd_hu: float = 12.0,
    blur_fwhm_mm: float = 0.7,
    texture: bool = True,
    texture_correlation_mm: float = 0.8,
    noise_sd: float = 1e-3,
    bias_field_strength: float = 0.1,
    separate_fat_t1: bool = True,
    fat_spectrum_model: FatSpectrum = "single",
    susceptibility_dephasing: bool = True,
    max_subvoxels: int = DEFAULT_MAX_SUBVOXELS,
) -> tuple[CTVolume, MultiEchoMR]:
    """CT and MRI of the same model from one sampling pass.

    Identical to ``render_ct(...)`` and ``render_mri(...)`` with the same options and seed,
    but the model is asked for its labels once instead of twice (the labels dominate the cost
    of an anatomical phantom). Parameters are those of :func:`synthct.phantom.ct.render_ct`
    and :func:`render_mri`.
    """
    ct_options = CTOptions(
        noise_sd_hu=noise_sd_hu,
        blur_fwhm_mm=blur_fwhm_mm,
        texture=texture,
        texture_correlation_mm=texture_correlation_mm,
        seed=seed,
    )
    mri_options = MRIOptions(
        protocol=_mr_protocol(protocol),
        noise_sd=noise_sd,
        bias_field_strength=bias_field_strength,
        seed=seed,
        separate_fat_t1=separate_fat_t1,
        fat_spectrum_model=fat_spectrum_model,
        susceptibility_dephasing=susceptibility_dephasing,
    )
    ct_tables, mr_tables = ct_options.tables(), mri_options.tables()
    ct_buffers = [np.empty(geometry.shape, dtype=t.dtype) for t in ct_tables]
    signal, exponents = mri_options.buffers(geometry, n_tables=len(mr_tables))
    average_tables(
        model,
        geometry,
        [*ct_tables, *mr_tables],
        supersample=supersample,
        max_subvoxels=max_subvoxels,
        out=[*ct_buffers, *signal, *exponents],
    )
    ct = ct_options.finish(ct_buffers, geometry)
    del ct_buffers
    return ct, mri_options.finish(signal, exponents, geometry=geometry)


def _inclusion_tables(
    tissues: Sequence[Tissue], echo_times_ms: Sequence[float], field_strength_t: float
) -> list[NDArray[np.generic]]:
    """Per echo, a table of each tissue's static-dephasing exponent per unit volume fraction."""
    chi = np.array([abs(TISSUES[t].inclusion_susceptibility_ppm) for t in tissues]) * 1e-6
    if not np.any(chi > 0):
        return []
    gamma_rad = 2.0 * np.pi * GYROMAGNETIC_RATIO_HZ_PER_T
    delta_omega = gamma_rad * chi * field_strength_t / 3.0  # rad/s, sphere field amplitude
    labels = np.array([int(t) for t in tissues])
    tables: list[NDArray[np.generic]] = []
    for te_ms in echo_times_ms:
        table = np.full(256, np.nan, dtype=np.float32)
        table[labels] = static_dephasing_exponent(delta_omega * te_ms * 1e-3)
        tables.append(table)
    return tables


def _rician_magnitude(
    signal: NDArray[np.complex64], noise_sd: float, seed: int
) -> NDArray[np.float32]:
    """``|signal + n|`` with ``n`` complex Gaussian, drawn plane by plane along axis 1."""
    if noise_sd == 0:
        return np.abs(signal).astype(np.float32)
    out = np.empty(signal.shape, dtype=np.float32)
    sd = np.float32(noise_sd)
    for i in range(signal.shape[1]):
        noise = rng_for(seed, _STREAM_NOISE, i).standard_normal(
            (2, signal.shape[0], *signal.shape[2:]), dtype=np.float32
        )
        plane = signal[:, i]
        out[:, i] = np.hypot(plane.real + sd * noise[0], plane.imag + sd * noise[1])
    return out
