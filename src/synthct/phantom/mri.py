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

import numpy as np

from synthct.geometry import Geometry
from synthct.imaging.signal_equation import FatSpectrum, spgr_signal
from synthct.phantom.ct import CTOptions
from synthct.phantom.model import DEFAULT_MAX_SUBVOXELS, TissueModel, average_tables
from synthct.phantom.mri_options import (
    DEFAULT_ACQUIRED_FRACTION,
    DEFAULT_TEXTURE_CORRELATION_MM,
    REALISM_PRESETS,
    MRIOptions,
    MRIRealism,
    bias_field,
    mr_protocol,
    realism_preset,
)
from synthct.phantom.mri_realistic import (
    FlipAngleExpansion,
    flip_angle_expansion,
    kappa_limits,
    render_realistic,
)
from synthct.phantom.protocols import SpgrProtocol
from synthct.volume import CTVolume, MRProtocol, MultiEchoMR

# The options and the realistic renderer live in their own modules; their names stay
# importable from here.
__all__ = [
    "DEFAULT_ACQUIRED_FRACTION",
    "DEFAULT_TEXTURE_CORRELATION_MM",
    "REALISM_PRESETS",
    "FlipAngleExpansion",
    "MRIOptions",
    "MRIRealism",
    "bias_field",
    "flip_angle_expansion",
    "kappa_limits",
    "realism_preset",
    "render_ct_and_mri",
    "render_mri",
    "spgr_signal",
]


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
        protocol=mr_protocol(protocol),
        noise_sd=noise_sd,
        bias_field_strength=bias_field_strength,
        seed=seed,
        separate_fat_t1=separate_fat_t1,
        fat_spectrum_model=fat_spectrum_model,
        susceptibility_dephasing=susceptibility_dephasing,
        realism=realism,
    )
    if realism is not None:
        _, mr = render_realistic(
            model, geometry, options, supersample=supersample, max_subvoxels=max_subvoxels
        )
        return mr
    return _render_classic(model, geometry, options, supersample, max_subvoxels)


def _render_classic(
    model: TissueModel,
    geometry: Geometry,
    options: MRIOptions,
    supersample: int | Sequence[int],
    max_subvoxels: int,
) -> MultiEchoMR:
    """The classic images: tables averaged over sub-voxels, then dephasing, bias and noise."""
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
        protocol=mr_protocol(protocol),
        noise_sd=noise_sd,
        bias_field_strength=bias_field_strength,
        seed=seed,
        separate_fat_t1=separate_fat_t1,
        fat_spectrum_model=fat_spectrum_model,
        susceptibility_dephasing=susceptibility_dephasing,
        realism=realism,
    )
    if realism is not None:
        ct_or_none, mr = render_realistic(
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
