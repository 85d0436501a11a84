"""The realistic MRI renderer: subject variability, texture, B1+ and receive fields, k-space, flow.

:func:`render_realistic` is what :func:`synthct.phantom.mri.render_mri` runs when its options
carry :class:`~synthct.phantom.mri_options.MRIRealism` (the steps are listed in the docstring of
:mod:`synthct.phantom.mri`). Partial volume stays exact: every per-tissue quantity is a lookup
table averaged over sub-voxels, and the flip-angle dependence of each tissue's signal is
expanded on basis functions shared by all tissues (:class:`FlipAngleExpansion`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from synthct.geometry import Geometry
from synthct.imaging.labels import Tissue
from synthct.imaging.signal_equation import FatSpectrum, spgr_signal
from synthct.phantom.ct import CTOptions
from synthct.phantom.flow import FLOWING_TISSUES, PATCH_CORRELATION_MM, flow_attenuation
from synthct.phantom.model import TissueModel, average_tables, iter_slabs
from synthct.phantom.mri_acquisition import (
    TRANSMIT_SUPPORTED_RANGE,
    acquire_kspace,
    acquired_shape,
    correlated_field,
    receive_field,
    transmit_field,
    typical_transmit_range,
)
from synthct.phantom.mri_options import MRIOptions, bias_field, inclusion_tables
from synthct.phantom.mri_subject import (
    SubjectTissue,
    draw_subject_tissues,
    table_tissues,
    variability,
)
from synthct.volume import CTVolume, MRProtocol, MultiEchoMR

#: Basis functions of the relative flip angle that carry the flip-angle dependence.
_KAPPA_BASIS = 6
# Keys of the correlated random fields (synthct.phantom.mri_acquisition.correlated_field).
_FIELD_PD, _FIELD_T1, _FIELD_FF, _FIELD_FLOW = 1, 2, 3, 4


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
    n_inclusion = len(inclusion_tables(tissues, mr.echo_times_ms, b0))
    if not options.susceptibility_dephasing:
        n_inclusion = 0
    return _RealisticTables(tissues, expansion, coefficients, texture, flowing, n_inclusion)


def render_realistic(
    model: TissueModel,
    geometry: Geometry,
    options: MRIOptions,
    *,
    supersample: int | Sequence[int],
    max_subvoxels: int,
    ct_options: CTOptions | None = None,
) -> tuple[CTVolume | None, MultiEchoMR]:
    """The realistic MRI (and optionally the CT) of ``model`` in one sampling pass.

    ``options.realism`` says which steps; ``ct_options`` adds the CT of the same pass.
    """
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
        inclusion_tables(plan.tissues, mr.echo_times_ms, float(mr.field_strength_t or 0))
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
