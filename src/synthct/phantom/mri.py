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

Realism (``realism=MRIRealism()``, preset ``"realistic"``; ``None``, preset ``"classic"``, is the
rendering above, unchanged) adds, each switchable:

1. per-subject T1, T2*, PD and fat fraction per tissue (:mod:`synthct.phantom.mri_subject`);
2. a spatially correlated PD, T1 and fat-fraction texture inside each tissue;
3. a transmit field that scales the flip angle, and a posterior spine-array receive profile
   (:mod:`synthct.phantom.mri_acquisition`);
4. acquisition in k-space: truncation to the acquired matrix (Gibbs ringing) and complex
   noise added in k-space, then the magnitude;
5. CSF pulsation voids and in-plane flow dephasing of :data:`synthct.phantom.flow.FLOWING_TISSUES`.

Partial volume stays exact: every per-tissue quantity is a lookup table averaged over
sub-voxels. The dependence of each tissue's signal on ``kappa`` (B1+ over nominal) is expanded
on a few basis functions shared by all tissues (:class:`FlipAngleExpansion`), so the tables
stay linear and ``kappa = 1`` reproduces the nominal signal exactly. The texture enters to first
order (per-tissue derivatives of the signal by PD, log T1 and fat fraction, the last exact since
the signal is linear in the fat fraction).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

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
from synthct.phantom.flow import FLOWING_TISSUES, PATCH_CORRELATION_MM, flow_attenuation
from synthct.phantom.model import (
    DEFAULT_MAX_SUBVOXELS,
    PhantomParameterError,
    TissueModel,
    average_tables,
    check_seed,
    iter_slabs,
    rng_for,
)
from synthct.phantom.mri_acquisition import (
    RECEIVE_LOOP_RADIUS_MM,
    RECEIVE_RESIDUAL,
    TRANSMIT_SUPPORTED_RANGE,
    acquire_kspace,
    acquired_shape,
    correlated_field,
    receive_field,
    transmit_field,
    typical_transmit_range,
)
from synthct.phantom.mri_subject import (
    SubjectTissue,
    draw_subject_tissues,
    table_tissues,
    variability,
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
    realism: MRIRealism | None = None,
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
    realism : MRIRealism, optional
        Realism steps (:data:`REALISM_PRESETS`); ``None`` (default) renders the classic
        images. With realism, ``noise_sd`` is still the image-domain SD per channel, but the
        noise is added in k-space, and ``seed`` also draws the subject and its fields.

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
        realism=realism,
    )
    if realism is not None:
        _, mr = _render_realistic(
            model, geometry, options, supersample=supersample, max_subvoxels=max_subvoxels
        )
        return mr
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
    realism: MRIRealism | None = None

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
    realism: MRIRealism | None = None,
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
        realism=realism,
    )
    if realism is not None:
        ct_or_none, mr = _render_realistic(
            model,
            geometry,
            mri_options,
            supersample=supersample,
            max_subvoxels=max_subvoxels,
            ct_options=ct_options,
        )
        assert ct_or_none is not None
        return ct_or_none, mr
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


# -- realism ---------------------------------------------------------------------------------
#: Acquired share of the reconstructed matrix per axis in the realistic preset: assumption,
#: clinical 3D GRE are commonly reconstructed with zero-filling interpolation from about 80 %
#: of the displayed matrix.
DEFAULT_ACQUIRED_FRACTION = (0.8, 0.8, 0.8)
#: Correlation length of the within-tissue texture, mm: "a few mm" (see
#: :data:`synthct.phantom.mri_subject.VARIABILITY` for the amplitudes).
DEFAULT_TEXTURE_CORRELATION_MM = 2.0
#: Basis functions of the relative flip angle that carry the flip-angle dependence.
_KAPPA_BASIS = 6
# Keys of the correlated random fields (synthct.phantom.mri_acquisition.correlated_field).
_FIELD_PD, _FIELD_T1, _FIELD_FF, _FIELD_FLOW = 1, 2, 3, 4


@dataclass(frozen=True)
class MRIRealism:
    """Which realism steps the MRI renderer applies (see the module docstring).

    Attributes
    ----------
    subject_variability : bool
        Draw the subject's tissue parameters (seeded by the render seed) instead of using the
        table's means.
    age_years : float, optional
        Subject age for the marrow fat fraction (:mod:`synthct.phantom.mri_subject`).
    texture : bool
        Correlated PD / T1 / fat-fraction texture inside tissues.
    texture_correlation_mm : float
        Smoothing of the texture field, mm.
    transmit : bool
        Apply a B1+ field (flip-angle scale).
    transmit_range : tuple of float, optional
        Relative B1+ range; ``None`` takes the typical range at the field strength
        (:func:`synthct.phantom.mri_acquisition.typical_transmit_range`), ``(1, 1)`` none.
    receive_coil : bool
        Multiply by the posterior spine-array sensitivity.
    receive_loop_radius_mm : float
        Loop radius of that array, mm.
    receive_residual : float
        Share of the log profile left after intensity normalisation (1: raw array).
    acquired_fraction : tuple of 3 float
        Share of the reconstructed matrix acquired per axis (1: no truncation).
    flow : bool
        Flow voids and dephasing of the flowing tissues.
    """

    subject_variability: bool = True
    age_years: float | None = None
    texture: bool = True
    texture_correlation_mm: float = DEFAULT_TEXTURE_CORRELATION_MM
    transmit: bool = True
    transmit_range: tuple[float, float] | None = None
    receive_coil: bool = True
    receive_loop_radius_mm: float = RECEIVE_LOOP_RADIUS_MM
    receive_residual: float = RECEIVE_RESIDUAL
    acquired_fraction: tuple[float, float, float] = DEFAULT_ACQUIRED_FRACTION
    flow: bool = True

    def __post_init__(self) -> None:
        acquired_shape((1, 1, 1), self.acquired_fraction)  # validates
        _check_range("texture_correlation_mm", self.texture_correlation_mm, 0.0, 1e3, lo_open=True)
        _check_range("receive_loop_radius_mm", self.receive_loop_radius_mm, 0.0, 1e4, lo_open=True)
        _check_range("receive_residual", self.receive_residual, 0.0, 1.0, lo_open=False)
        if self.age_years is not None:
            _check_range("age_years", self.age_years, 0.0, 120.0, lo_open=False)
        if self.transmit_range is not None:
            lo, hi = self.transmit_range
            s_lo, s_hi = TRANSMIT_SUPPORTED_RANGE
            if not s_lo <= lo <= hi <= s_hi:
                raise PhantomParameterError(
                    f"transmit_range must satisfy {s_lo} <= low <= high <= {s_hi}, got "
                    f"{self.transmit_range}",
                    path="transmit_range",
                )


#: Named realism settings: ``classic`` is the original cartoon rendering.
REALISM_PRESETS: dict[str, MRIRealism | None] = {"classic": None, "realistic": MRIRealism()}


def realism_preset(name: str) -> MRIRealism | None:
    """The realism settings called ``name`` (``classic`` or ``realistic``)."""
    try:
        return REALISM_PRESETS[name]
    except KeyError:
        raise PhantomParameterError(
            f"unknown MRI realism preset {name!r}; choose one of {sorted(REALISM_PRESETS)}",
            path="realism",
        ) from None


def _subject_signals(
    params: dict[Tissue, SubjectTissue],
    protocol: MRProtocol,
    *,
    flip_scale: float,
    separate_fat_t1: bool,
    fat_spectrum_model: FatSpectrum,
    t1_scale: float = 1.0,
    fat_fraction: float | None = None,
) -> NDArray[np.complex128]:
    """Complex signal ``(n_echoes, n_tissues)`` of the subject's tissues (optionally varied)."""
    assert protocol.repetition_time_ms is not None and protocol.flip_angle_deg is not None
    assert protocol.field_strength_t is not None
    values = list(params.values())
    relax = [v.relaxation for v in values]
    return spgr_signal(
        proton_density=[v.proton_density for v in values],
        fat_fraction=[v.fat_fraction if fat_fraction is None else fat_fraction for v in values],
        t1_ms=[r.t1_ms * t1_scale for r in relax],
        t2star_water_ms=[r.t2star_water_ms for r in relax],
        t2star_fat_ms=[r.t2star_fat_ms for r in relax],
        t1_fat_ms=[r.t1_fat_ms * t1_scale for r in relax] if separate_fat_t1 else None,
        echo_times_ms=protocol.echo_times_ms,
        repetition_time_ms=protocol.repetition_time_ms,
        flip_angle_deg=protocol.flip_angle_deg * flip_scale,
        field_strength_t=protocol.field_strength_t,
        fat_spectrum_model=fat_spectrum_model,
    )


def kappa_limits(flip_angle_deg: float) -> tuple[float, float]:
    """Relative flip angles the expansion covers: the supported range, at most 90 degrees."""
    lo, hi = TRANSMIT_SUPPORTED_RANGE
    return lo, min(hi, 90.0 / float(flip_angle_deg))


@dataclass(frozen=True)
class FlipAngleExpansion:
    """Each tissue's signal as a function of the relative flip angle ``kappa``.

    ``S_t(kappa) = c[0, t] + sum_j c[j, t] B_j(kappa)``: ``c[0]`` is the nominal signal and the
    ``B_j`` are shared basis functions of ``kappa`` (tabulated on ``kappa_grid``, each 0 at
    ``kappa = 1``), the leading singular vectors of all tissues' signal changes
    (:func:`flip_angle_expansion`). Shared functions keep partial volume exact: a voxel's
    coefficients are the partial-volume means of its tissues' coefficients.

    Attributes
    ----------
    kappa_grid : ndarray
        Relative flip angles where the basis is tabulated (includes 1).
    basis : ndarray, shape (n_basis, n_grid)
        The basis functions on the grid.
    coefficients : ndarray of complex, shape (n_echoes, n_basis + 1, n_tissues)
        Per echo and tissue: the nominal signal, then the basis weights.
    """

    kappa_grid: NDArray[np.float64]
    basis: NDArray[np.float64]
    coefficients: NDArray[np.complex128]

    def basis_values(self, kappa: NDArray[np.floating] | float) -> list[NDArray[np.float32]]:
        """The basis functions at ``kappa`` (linear interpolation on the fine grid)."""
        k = np.asarray(kappa, dtype=np.float32)
        return [np.interp(k, self.kappa_grid, b).astype(np.float32, copy=False) for b in self.basis]

    def signal(
        self, coefficients: Sequence[ArrayLike], kappa: NDArray[np.floating] | float
    ) -> NDArray[np.complex64]:
        """``c_0 + sum_j c_j B_j(kappa)`` for coefficient arrays (e.g. averaged tables)."""
        out = np.array(coefficients[0], dtype=np.complex64)
        for c, b in zip(coefficients[1:], self.basis_values(kappa), strict=True):
            out = out + b * np.asarray(c, dtype=np.complex64)
        return out


def flip_angle_expansion(
    params: dict[Tissue, SubjectTissue],
    protocol: MRProtocol,
    *,
    separate_fat_t1: bool = True,
    fat_spectrum_model: FatSpectrum = "single",
    n_basis: int = _KAPPA_BASIS,
) -> FlipAngleExpansion:
    """The flip-angle dependence of every tissue's SPGR signal over :func:`kappa_limits`.

    The signal changes ``S_t(kappa) - S_t(1)`` of all tissues and echoes (real and imaginary
    parts) are sampled on a fine grid of ``kappa``; their leading ``n_basis`` left singular
    vectors are the basis, the projections the coefficients. The signal depends on ``kappa``
    only through each component's T1 weighting, so a handful of functions carry it (error
    below 1e-4 of the signal for the paper's protocols; see the tests).
    """
    assert protocol.flip_angle_deg is not None
    kwargs: dict[str, Any] = {
        "separate_fat_t1": separate_fat_t1,
        "fat_spectrum_model": fat_spectrum_model,
    }
    lo, hi = kappa_limits(protocol.flip_angle_deg)
    grid = np.union1d(np.linspace(lo, hi, 201), [1.0])
    samples = np.stack(
        [_subject_signals(params, protocol, flip_scale=float(k), **kwargs) for k in grid]
    )  # (n_kappa, n_echoes, n_tissues)
    nominal = samples[int(np.flatnonzero(grid == 1.0)[0])]
    change = (samples - nominal[None]).reshape(len(grid), -1)
    stacked = np.concatenate([change.real, change.imag], axis=1)
    u, sv, vt = np.linalg.svd(stacked, full_matrices=False)
    significant = int(np.count_nonzero(sv > sv[0] * 1e-12)) if sv.size and sv[0] > 0 else 0
    keep = min(int(n_basis), significant)
    weights = sv[:keep, None] * vt[:keep]  # (n_basis, 2 * n_echoes * n_tissues)
    half = weights.shape[1] // 2
    complex_weights = (weights[:, :half] + 1j * weights[:, half:]).reshape(keep, *nominal.shape)
    coefficients = np.concatenate([nominal[:, None], complex_weights.transpose(1, 0, 2)], axis=1)
    return FlipAngleExpansion(grid, u[:, :keep].T.copy(), coefficients)


@dataclass(frozen=True)
class _RealisticTables:
    """Per-tissue quantities of one subject and the layout of their 256-entry tables."""

    tissues: list[Tissue]
    expansion: FlipAngleExpansion
    kappa_coefficients: NDArray[np.complex128]  # (n_echoes, n_basis + 1, n_tissues)
    texture: NDArray[np.complex128] | None  # (n_echoes, 3, n_tissues): PD, T1, fat terms
    flowing: list[Tissue]
    n_inclusion: int

    def _table(self, values: ArrayLike, dtype: type) -> NDArray[np.generic]:
        table: NDArray[np.generic] = np.full(256, np.nan, dtype=dtype)
        table[[int(t) for t in self.tissues]] = values
        return table

    def per_echo_count(self) -> int:
        """Tables per echo: the flip-angle coefficients and the texture terms."""
        return self.kappa_coefficients.shape[1] + (0 if self.texture is None else 3)

    def lookup_tables(self, inclusion: list[NDArray[np.generic]]) -> list[NDArray[np.generic]]:
        """Per echo the coefficient and texture tables; inclusions; flow, cord and body."""
        tables: list[NDArray[np.generic]] = []
        for e in range(self.kappa_coefficients.shape[0]):
            tables.extend(self._table(c, np.complex64) for c in self.kappa_coefficients[e])
            if self.texture is not None:
                tables.extend(self._table(c, np.complex64) for c in self.texture[e])
        tables.extend(inclusion)
        for tissue in self.flowing:
            tables.append(self._table([float(t == tissue) for t in self.tissues], np.float32))
        tables.append(
            self._table([float(t == Tissue.SPINAL_CORD) for t in self.tissues], np.float32)
        )
        tables.append(self._table([float(t != Tissue.AIR) for t in self.tissues], np.float32))
        return tables


def _realistic_tables(options: MRIOptions) -> _RealisticTables:
    realism = options.realism
    assert realism is not None
    mr = options.protocol
    assert mr.field_strength_t is not None
    b0 = float(mr.field_strength_t)
    if realism.subject_variability:
        params = draw_subject_tissues(options.seed, b0, age_years=realism.age_years)
    else:
        params = table_tissues(b0)
    tissues = list(params)
    kwargs: dict[str, Any] = {
        "separate_fat_t1": options.separate_fat_t1,
        "fat_spectrum_model": options.fat_spectrum_model,
    }
    expansion = flip_angle_expansion(params, mr, **kwargs)
    coefficients = expansion.coefficients
    if not realism.transmit:
        coefficients = coefficients[:, :1]  # the nominal signal only
    texture = None
    if realism.texture:
        # Fluids (the flowing tissues) carry no texture, so flow acts on their plain signal.
        var = [variability(t) for t in tissues]
        fluid = np.array([t in FLOWING_TISSUES for t in tissues])
        pd_cv = np.where(fluid, 0.0, [v.texture_pd_cv for v in var])
        t1_cv = np.where(fluid, 0.0, [v.texture_t1_cv for v in var])
        ff_sd = np.where(fluid, 0.0, [v.texture_fat_fraction_sd for v in var])
        eps = 1e-3
        up = _subject_signals(params, mr, flip_scale=1.0, t1_scale=1.0 + eps, **kwargs)
        down = _subject_signals(params, mr, flip_scale=1.0, t1_scale=1.0 - eps, **kwargs)
        d_log_t1 = (up - down) / (np.log1p(eps) - np.log1p(-eps))
        d_ff = _subject_signals(params, mr, flip_scale=1.0, fat_fraction=1.0, **kwargs)
        d_ff -= _subject_signals(params, mr, flip_scale=1.0, fat_fraction=0.0, **kwargs)
        texture = np.stack([pd_cv * coefficients[:, 0], t1_cv * d_log_t1, ff_sd * d_ff], axis=1)
    flowing = [t for t in FLOWING_TISSUES if t in params] if realism.flow else []
    n_inclusion = len(_inclusion_tables(tissues, mr.echo_times_ms, b0))
    if not options.susceptibility_dephasing:
        n_inclusion = 0
    return _RealisticTables(tissues, expansion, coefficients, texture, flowing, n_inclusion)


def _render_realistic(
    model: TissueModel,
    geometry: Geometry,
    options: MRIOptions,
    *,
    supersample: int | Sequence[int],
    max_subvoxels: int,
    ct_options: CTOptions | None = None,
) -> tuple[CTVolume | None, MultiEchoMR]:
    """The realistic MRI (and optionally the CT) of ``model`` in one sampling pass."""
    realism = options.realism
    assert realism is not None
    plan = _realistic_tables(options)
    kappa = _transmit(geometry, options)
    fields: list[NDArray[np.float32]] = []
    if plan.texture is not None:
        fields = [
            correlated_field(
                geometry, correlation_mm=realism.texture_correlation_mm, seed=options.seed, key=k
            )
            for k in (_FIELD_PD, _FIELD_T1, _FIELD_FF)
        ]
    ct_tables = [] if ct_options is None else ct_options.tables()
    signal, extra, ct_buffers = _sample_realistic(
        model,
        geometry,
        options,
        plan,
        ct_tables,
        kappa=kappa,
        fields=fields,
        supersample=supersample,
        max_subvoxels=max_subvoxels,
    )
    del fields
    exponents = extra[: plan.n_inclusion]
    flow_fractions = extra[plan.n_inclusion : plan.n_inclusion + len(plan.flowing)]
    cord_fraction, body_fraction = extra[-2], extra[-1]
    if plan.flowing and float(flow_fractions.max(initial=0.0)) > 0:
        _apply_flow(signal, geometry, options, plan, kappa, flow_fractions, cord_fraction)
    if plan.n_inclusion:
        np.negative(exponents, out=exponents)
        np.exp(exponents, out=exponents)
        signal *= exponents
    gain: NDArray[np.float32] | None = None
    if realism.receive_coil:
        gain = receive_field(
            geometry,
            body_fraction,
            loop_radius_mm=realism.receive_loop_radius_mm,
            residual=realism.receive_residual,
        )
    if options.bias_field_strength > 0:
        bias = bias_field(geometry, strength=options.bias_field_strength, seed=options.seed)
        gain = bias if gain is None else gain * bias
    if gain is not None:
        signal *= gain
    del extra, gain
    magnitude = _acquire(signal, geometry, options)
    del signal
    ct = None if ct_options is None else ct_options.finish(ct_buffers, geometry)
    return ct, MultiEchoMR(magnitude, geometry.affine, protocol=options.protocol)


def _transmit(geometry: Geometry, options: MRIOptions) -> NDArray[np.float32] | None:
    """The relative flip angle on ``geometry`` (None when the transmit field is off)."""
    realism, mr = options.realism, options.protocol
    assert realism is not None and mr.flip_angle_deg is not None
    if not realism.transmit:
        return None
    span = realism.transmit_range or typical_transmit_range(float(mr.field_strength_t or 3.0))
    lo, hi = kappa_limits(float(mr.flip_angle_deg))
    return np.clip(transmit_field(geometry, transmit_range=span, seed=options.seed), lo, hi)


def _sample_realistic(
    model: TissueModel,
    geometry: Geometry,
    options: MRIOptions,
    plan: _RealisticTables,
    ct_tables: list[NDArray[np.generic]],
    *,
    kappa: NDArray[np.float32] | None,
    fields: list[NDArray[np.float32]],
    supersample: int | Sequence[int],
    max_subvoxels: int,
) -> tuple[NDArray[np.complex64], NDArray[np.float32], list[NDArray[np.generic]]]:
    """Slab by slab: average the tables, then combine them into each echo's complex signal.

    Returns the signal per echo, the other averaged maps (inclusion exponents, flowing-tissue,
    cord and body fractions) and the CT tables' averages.
    """
    mr = options.protocol
    inclusion = (
        _inclusion_tables(plan.tissues, mr.echo_times_ms, float(mr.field_strength_t or 0))
        if plan.n_inclusion
        else []
    )
    mr_tables = plan.lookup_tables(inclusion)
    n_echoes, per_echo = options.n_echoes, plan.per_echo_count()
    n_poly = plan.kappa_coefficients.shape[1]
    signal = np.empty((n_echoes, *geometry.shape), dtype=np.complex64)
    extra = np.empty((len(mr_tables) - n_echoes * per_echo, *geometry.shape), dtype=np.float32)
    ct_buffers = [np.empty(geometry.shape, dtype=t.dtype) for t in ct_tables]
    per_voxel = _subvoxels_per_voxel(supersample)
    # The coefficient tables are combined per slab, so only the slab holds all of them.
    for index, slab in iter_slabs(geometry, max_voxels=max(1, max_subvoxels // per_voxel)):
        averaged = average_tables(
            model,
            slab,
            [*ct_tables, *mr_tables],
            supersample=supersample,
            max_subvoxels=max_subvoxels,
        )
        for buffer, values in zip(ct_buffers, averaged, strict=False):
            buffer[index] = values
        mr_values = averaged[len(ct_tables) :]
        for e in range(n_echoes):
            block = mr_values[e * per_echo : (e + 1) * per_echo]
            if kappa is None:
                echo = np.asarray(block[0], dtype=np.complex64)
            else:
                echo = plan.expansion.signal(block[:n_poly], kappa[index])
            for field, term in zip(fields, block[n_poly:], strict=True):
                echo += field[index] * np.asarray(term, dtype=np.complex64)
            signal[e, index] = echo
        for k, values in enumerate(mr_values[n_echoes * per_echo :]):
            extra[k, index] = values
        del averaged, mr_values
    return signal, extra, ct_buffers


def _apply_flow(
    signal: NDArray[np.complex64],
    geometry: Geometry,
    options: MRIOptions,
    plan: _RealisticTables,
    kappa: NDArray[np.float32] | None,
    flow_fractions: NDArray[np.float32],
    cord_fraction: NDArray[np.float32],
) -> None:
    """Remove the lost part of each flowing tissue's own signal, in place."""
    patches = correlated_field(
        geometry, correlation_mm=PATCH_CORRELATION_MM, seed=options.seed, key=_FIELD_FLOW
    )
    kept = flow_attenuation(
        geometry,
        patches=patches,
        cord_fraction=cord_fraction,
        echo_times_ms=options.protocol.echo_times_ms,
        flowing={t: FLOWING_TISSUES[t] for t in plan.flowing},
    )
    del patches
    for n, tissue in enumerate(plan.flowing):
        column = plan.tissues.index(tissue)
        for e in range(options.n_echoes):
            own_coefficients = plan.kappa_coefficients[e, :, column]
            own = (
                own_coefficients[0].astype(np.complex64)
                if kappa is None
                else plan.expansion.signal(list(own_coefficients), kappa)
            )
            signal[e] -= flow_fractions[n] * own * (np.float32(1.0) - kept[tissue][e])


def _acquire(
    signal: NDArray[np.complex64], geometry: Geometry, options: MRIOptions
) -> NDArray[np.float32]:
    """k-space truncation and noise per echo; the magnitude images."""
    assert options.realism is not None
    acquired = acquired_shape(geometry.shape, options.realism.acquired_fraction)
    # noise_sd keeps its meaning (image-domain SD per channel): with an orthonormal FFT, k-space
    # noise of SD s on M of N samples gives s * sqrt(M / N) in the image.
    kept_share = float(np.prod(acquired)) / float(np.prod(geometry.shape))
    kspace_sd = options.noise_sd / np.sqrt(kept_share)
    magnitude = np.empty(signal.shape, dtype=np.float32)
    for e in range(signal.shape[0]):
        image = acquire_kspace(
            signal[e], acquired=acquired, kspace_noise_sd=kspace_sd, seed=options.seed, key=e
        )
        np.abs(image, out=magnitude[e])
        del image
    return magnitude


def _subvoxels_per_voxel(supersample: int | Sequence[int]) -> int:
    if isinstance(supersample, int | np.integer):
        return max(1, int(supersample)) ** 3
    return max(1, int(np.prod([int(f) for f in supersample])))
