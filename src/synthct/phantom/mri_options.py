"""The options of the MRI renderer: :class:`MRIOptions` and its realism steps (:class:`MRIRealism`).

Below both renderers (:mod:`synthct.phantom.mri`, the classic images, and
:mod:`synthct.phantom.mri_realistic`, the realism steps), which read them: the per-tissue
signal tables, the coil bias field and the Rician noise of the classic rendering live with
the options that choose them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, ClassVar, Self

import numpy as np
from numpy.typing import NDArray
from pydantic import BeforeValidator, InstanceOf, model_validator

from synthct.errors import SynthctError
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
from synthct.phantom.model import PhantomParameterError, check_seed, rng_for
from synthct.phantom.mri_acquisition import (
    RECEIVE_LOOP_RADIUS_MM,
    RECEIVE_RESIDUAL,
    TRANSMIT_SUPPORTED_RANGE,
    acquired_shape,
)
from synthct.phantom.protocols import SpgrProtocol
from synthct.settings import SettingsBase
from synthct.volume import MRProtocol, MultiEchoMR

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


def mr_protocol(protocol: SpgrProtocol | MRProtocol) -> MRProtocol:
    """``protocol`` as an :class:`MRProtocol` with what the signal equation needs."""
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


def inclusion_tables(
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


def rician_magnitude(
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


#: Acquired share of the reconstructed matrix per axis in the realistic preset: assumption,
#: clinical 3D GRE are commonly reconstructed with zero-filling interpolation from about 80 %
#: of the displayed matrix.
DEFAULT_ACQUIRED_FRACTION = (0.8, 0.8, 0.8)
#: Correlation length of the within-tissue texture, mm: "a few mm" (see
#: :data:`synthct.phantom.mri_subject.VARIABILITY` for the amplitudes).
DEFAULT_TEXTURE_CORRELATION_MM = 2.0


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


class MRIOptions(SettingsBase):
    """Validated MRI rendering options (see :func:`render_mri`).

    Split into the per-tissue lookup tables averaged over sub-voxels (complex signal per echo,
    then static-dephasing exponents per echo) and the steps applied afterwards.
    """

    invalid_error: ClassVar[type[SynthctError] | None] = PhantomParameterError
    settings_label: ClassVar[str] = "MRI rendering options"

    protocol: Annotated[InstanceOf[MRProtocol], BeforeValidator(mr_protocol)]
    noise_sd: float = 1e-3
    bias_field_strength: float = 0.1
    seed: Annotated[int, BeforeValidator(check_seed)] = 0
    separate_fat_t1: bool = True
    fat_spectrum_model: FatSpectrum = "single"
    susceptibility_dephasing: bool = True
    realism: MRIRealism | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        _check_range("noise_sd", self.noise_sd, 0.0, np.inf, lo_open=False)
        _check_range("bias_field_strength", self.bias_field_strength, 0.0, 1.0, lo_open=False)
        return self

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
            tables.extend(inclusion_tables(tissues, mr.echo_times_ms, b0))
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
        magnitude = rician_magnitude(complex_signal, self.noise_sd, self.seed)
        return MultiEchoMR(magnitude, geometry.affine, protocol=self.protocol)
