"""MRI consistency: does the measured MRI agree with what the sCT's tissues would show?

The sCT says which tissue is where (through its HU); the tissue table
(:mod:`synthct.imaging.tissues`) and the spoiled gradient-echo equation
(:func:`synthct.imaging.signal_equation.spgr_signal`) say what each tissue looks like on each
echo of the MRI's protocol. Where the MRI shows something no tissue mixture compatible with the
sCT could produce, the sCT probably omits (or invents) a structure. A calcified tumour rendered
as CSF is such a place: its voxels are darker (dense calcification, short T2*) or brighter (tumour
matrix, T1 shorter than CSF) and more heterogeneous than the CSF the sCT predicts.

Method (all settings in :class:`ConsistencySettings`)
-----------------------------------------------------
1. **Tissue classes by HU band** (:mod:`synthct.audit.tissue_classes`): air, fat, fluid (CSF), soft
   tissue, cancellous bone, cortical bone, each with the MR properties of one tissue of the
   table (and, alone, the range of the band's tissues: soft tissue may be muscle, cord or
   disc, which HU cannot tell apart). The sCT is smoothed by a Gaussian of
   ``smoothing_sigma_mm`` (noise and resolution).
2. **Predicted envelope.** A voxel may hold its own class or a two-class mixture (partial
   volume) of classes present within ``radius_mm`` in the sCT, with a mixture fraction that
   reproduces its HU to within ``hu_tolerance_sd`` local standard deviations of the smoothed
   sCT (edges, texture). The complex signal of a mixture is linear in the fraction, so the
   lowest and highest magnitude over the allowed fractions are exact. The envelope is then
   widened to the lowest and highest prediction within ``radius_mm`` (resolution and
   registration tolerance).
3. **Receive gain.** Coil sensitivity and receiver scale are unknown: a smooth gain
   ``exp(polynomial of degree gain_degree + constant per echo)`` in the grid coordinates is
   fitted robustly (iterative 3-MAD trimming) to ``log(measured / predicted)`` where the
   envelope is narrow, all echoes at once (the receive field is the same for every echo);
   then refined by interval regression: every voxel with signal whose measurement lies
   outside its gained envelope pulls the gain toward the value that brings it inside, so
   tissues with a range of signals (soft tissue) constrain the gain where no narrow class is.
4. **Standardised residual** per echo: ``z = (m - clip(m, g lo, g hi)) / sqrt(sd**2 +
   (kappa clip)**2)``: zero inside the envelope, signed outside (negative: the MRI is darker
   than anything the sCT allows). ``sd`` is the MRI noise (:func:`estimate_noise_sd`) and
   ``kappa`` the relative model error: the value that gives the residuals where the envelope
   is narrow a robust SD of 1 (:func:`relative_model_error`), at least
   ``min_relative_error``.
5. **Local score**: ``sqrt(G * mean_e z_e**2)`` with a Gaussian ``G`` of
   ``score_sigma_mm`` (a local chi statistic: mean shifts and heterogeneity both count), with
   the sign of ``G * mean_e z_e``.

The physics is that of the phantom (:mod:`synthct.phantom.mri`): on real data the tissue table
is an approximation, which step 3's gain and step 4's ``kappa`` absorb in part.

References
----------
.. [1] Buxton RB et al. Contrast in rapid MR imaging: T1- and T2-weighted imaging. J Comput
   Assist Tomogr 1987 (the steady-state spoiled gradient echo).
.. [2] Gudbjartsson H, Patz S. The Rician distribution of noisy MRI data. Magn Reson Med 1995
   (noise from the background: the median of a Rayleigh variable is ``sd sqrt(2 ln 2)``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from pydantic import field_serializer, field_validator
from scipy import ndimage

from synthct.audit.errors import AuditInputError
from synthct.audit.inputs import signal_protocol
from synthct.audit.tissue_classes import (
    DEFAULT_CLASSES,
    TissueClass,
    predicted_envelope,
    window_size,
)
from synthct.errors import SynthctError
from synthct.imaging.mri_noise import estimate_noise_sd
from synthct.settings import SettingsBase
from synthct.volume import CTVolume, MultiEchoMR, ScalarVolume

_F32 = NDArray[np.float32]


class ConsistencySettings(SettingsBase):
    """Settings of the MRI consistency signal (see the module docstring).

    Attributes
    ----------
    smoothing_sigma_mm : float
        Gaussian applied to the sCT before it is turned into tissue classes.
    radius_mm : float
        Neighbourhood of the envelope (classes present, spatial tolerance); at least one voxel.
    hu_tolerance_sd : float
        Allowed HU error in local standard deviations of the smoothed sCT.
    gain_degree : int
        Degree of the log-gain polynomial (0: one scale per echo).
    gain_iterations : int
        Interval-regression refinements of the gain (step 3).
    score_sigma_mm : float
        Gaussian of the local score.
    min_relative_error : float
        Lower bound of ``kappa``: a smooth polynomial gain does not follow the coil
        sensitivity better than a few percent.
    classes : tuple of TissueClass
        The HU bands.
    """

    invalid_error: ClassVar[type[SynthctError] | None] = AuditInputError
    settings_label: ClassVar[str] = "consistency settings"

    smoothing_sigma_mm: float = 0.75
    radius_mm: float = 1.0
    hu_tolerance_sd: float = 1.0
    gain_degree: int = 2
    gain_iterations: int = 3
    score_sigma_mm: float = 1.5
    min_relative_error: float = 0.03
    classes: tuple[TissueClass, ...] = DEFAULT_CLASSES

    @field_validator("classes", mode="before")
    @classmethod
    def _read_classes(cls, value: Any) -> Any:
        """Tissue classes as recorded (name, tissue, members, hu_band) or as objects."""
        from synthct.imaging.tissues import Tissue

        try:
            return tuple(
                c
                if isinstance(c, TissueClass)
                else TissueClass(
                    str(c["name"]),
                    Tissue[str(c["tissue"])],
                    float(c["hu_band"][0]),
                    float(c["hu_band"][1]),
                    tuple(Tissue[str(m)] for m in c.get("members", ())),
                )
                for c in value
            )
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise AuditInputError(
                f"consistency settings: malformed tissue class ({exc})",
                path="consistency_settings.classes",
                fix="write them with ConsistencySettings.to_dict()",
            ) from exc

    @field_serializer("classes")
    def _write_classes(self, classes: tuple[TissueClass, ...]) -> list[dict[str, Any]]:
        return [
            {
                "name": c.name,
                "tissue": c.tissue.name,
                "members": [t.name for t in c.members],
                "hu_band": [c.hu_low, c.hu_high],
            }
            for c in classes
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (as recorded with a calibration)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConsistencySettings:
        """Settings from :meth:`to_dict`'s output (as recorded with a calibration).

        Raises
        ------
        AuditInputError
            Unknown keys or tissues.
        """
        return cls.from_mapping(data, where="consistency_settings")


@dataclass
class ConsistencyResult:
    """The MRI consistency signal of one MRI and sCT.

    Attributes
    ----------
    score : ScalarVolume
        Signed local score (negative: the MRI is darker than the sCT allows); 0 outside the body.
    echo_z : list of ScalarVolume
        Standardised residual of each echo.
    noise_sd : float
        MRI noise standard deviation (signal units of the file).
    relative_error : list of float
        ``kappa`` of each echo.
    """

    score: ScalarVolume
    echo_z: list[ScalarVolume]
    noise_sd: float
    relative_error: list[float] = field(default_factory=list)


def fit_log_gain(
    log_ratios: Sequence[_F32],
    masks: Sequence[NDArray[np.bool_]],
    *,
    degree: int,
    max_samples: int = 200_000,
) -> list[_F32]:
    """Smooth gains ``exp(p(u, v, w) + c_e)`` fitted robustly to each echo's log ratio.

    The receive field is the same for every echo, so ``p`` (a polynomial of total degree
    ``degree`` in coordinates scaled to [-1, 1]) is shared and each echo ``e`` has its own
    constant ``c_e``. Least squares on at most ``max_samples`` voxels, repeated four times
    without the samples further than 3 robust SDs from the fit.

    Parameters
    ----------
    log_ratios : sequence of ndarray
        ``log(measured / predicted)`` of each echo.
    masks : sequence of ndarray of bool
        Where each echo's prediction is trusted.
    degree : int
        Polynomial degree (0: one scale per echo).
    max_samples : int
        Samples used, spread over the echoes.
    """
    shape = log_ratios[0].shape
    powers = [
        (a, b, c)
        for a in range(degree + 1)
        for b in range(degree + 1 - a)
        for c in range(degree + 1 - a - b)
        if a + b + c > 0
    ]
    n_echoes = len(log_ratios)
    rows, targets = [], []
    scale = np.maximum(np.asarray(shape, dtype=np.float64) - 1, 1)
    per_echo = max_samples // max(n_echoes, 1)
    for e, (ratio, mask) in enumerate(zip(log_ratios, masks, strict=True)):
        flat = np.flatnonzero(mask)
        if flat.size == 0:
            continue
        flat = flat[:: max(1, flat.size // per_echo)]
        index = np.stack(np.unravel_index(flat, shape), axis=1)
        u = index / scale * 2 - 1
        columns = [u[:, 0] ** a * u[:, 1] ** b * u[:, 2] ** c for a, b, c in powers]
        onehot = [np.full(len(index), 1.0 if k == e else 0.0) for k in range(n_echoes)]
        rows.append(np.stack([*onehot, *columns], axis=1))
        targets.append(ratio.ravel()[flat].astype(np.float64))
    if not rows:
        return [np.ones(shape, dtype=np.float32) for _ in log_ratios]
    design, y = np.concatenate(rows), np.concatenate(targets)
    keep = np.ones(len(y), dtype=bool)
    coefficients: NDArray[Any] = np.zeros(design.shape[1])
    for _ in range(4):
        kept = design[keep]
        # Normal equations (a few columns, many rows): much faster than an SVD.
        normal = kept.T @ kept + 1e-9 * np.eye(design.shape[1])
        coefficients = np.linalg.lstsq(normal, kept.T @ y[keep], rcond=None)[0]
        residual = y - design @ coefficients
        spread = 1.4826 * float(np.median(np.abs(residual[keep] - np.median(residual[keep]))))
        if spread <= 0:
            break
        keep = np.abs(residual) < 3 * spread
    tensor = np.zeros((degree + 1,) * 3, dtype=np.float32)
    for coefficient, (a, b, c) in zip(coefficients[n_echoes:], powers, strict=True):
        tensor[a, b, c] = coefficient
    bases = [  # (degree + 1, n): the powers of each axis coordinate
        np.power.outer(
            np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1), np.arange(degree + 1)
        ).T.astype(np.float32)
        for n in shape
    ]
    field = np.einsum("abc,ai,bj,ck->ijk", tensor, *bases, optimize=True).astype(np.float32)
    return [np.exp(field + np.float32(coefficients[e])) for e in range(n_echoes)]


def relative_model_error(
    residual: NDArray[Any], expected: NDArray[Any], noise_sd: float, *, minimum: float
) -> float:
    """The relative error ``kappa`` that gives ``residual`` a robust SD of 1.

    Solves ``median(|r| / sqrt(sd**2 + kappa**2 e**2)) = 0.6745`` (the median of ``|N(0, 1)|``)
    by bisection; ``minimum`` when the noise alone explains the residuals.
    """
    r = np.abs(np.asarray(residual, dtype=np.float64))
    e = np.asarray(expected, dtype=np.float64)
    target = 0.6744897501960817

    def median_z(kappa: float) -> float:
        return float(np.median(r / np.sqrt(noise_sd**2 + (kappa * e) ** 2)))

    if r.size == 0 or median_z(minimum) <= target:
        return minimum
    lo, hi = minimum, 1.0
    while median_z(hi) > target and hi < 1e3:
        hi *= 2
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if median_z(mid) > target else (lo, mid)
    return hi


def consistency_map(
    mr: MultiEchoMR,
    sct: CTVolume,
    *,
    body: NDArray[np.bool_] | None = None,
    settings: ConsistencySettings | None = None,
) -> ConsistencyResult:
    """The MRI consistency signal of an sCT (on the MRI grid) and its MRI.

    Parameters
    ----------
    mr : MultiEchoMR
        Echo magnitudes with a complete protocol (echo times, TR, flip angle, field).
    sct : CTVolume
        The sCT in HU on the MRI grid (:func:`~synthct.audit.inputs.sct_on_mri_grid`).
    body : ndarray of bool, optional
        Where to evaluate; the MRI body mask when omitted.
    settings : ConsistencySettings, optional
        Method settings.

    Raises
    ------
    AuditInputError
        The protocol lacks a value the signal equation needs (the message names the options).
    GeometryMismatchError
        The sCT is not on the MRI grid.
    """
    s = settings or ConsistencySettings()
    protocol = signal_protocol(mr)
    mr.require_same_geometry(sct, names=("MRI", "sCT"))
    data = mr.array
    if body is None:
        from synthct.synthesis.normalisation import body_mask_from_mri

        body, _ = body_mask_from_mri(data)
    noise_sd = max(estimate_noise_sd(data, body), 1e-12)
    box = _bounding_box(body, margin=4)
    crop_body = body[box]
    spacing = mr.spacing_mm
    sigma_vox = [s.smoothing_sigma_mm / sp for sp in spacing]
    hu = ndimage.gaussian_filter(np.asarray(sct.array[box], dtype=np.float32), sigma_vox)
    lo, hi = predicted_envelope(
        hu,
        sct.array[box],
        protocol,
        spacing,
        classes=s.classes,
        radius_mm=s.radius_mm,
        hu_tolerance_sd=s.hu_tolerance_sd,
    )
    size = window_size(spacing, s.radius_mm)
    n_echoes = mr.n_echoes
    z = np.zeros((n_echoes, *crop_body.shape), dtype=np.float32)
    kappas = []
    mids, narrows, ratios, smooths, usable = [], [], [], [], []
    for e in range(n_echoes):
        smooth = ndimage.gaussian_filter(np.asarray(data[e][box], dtype=np.float32), sigma_vox)
        mid = 0.5 * (lo[e] + hi[e])
        narrow = crop_body & (hi[e] - lo[e] <= 0.1 * hi[e]) & (mid > 10 * noise_sd)
        if np.count_nonzero(narrow) < 100:
            narrow = crop_body & (mid > 3 * noise_sd)
        mids.append(mid)
        narrows.append(narrow)
        smooths.append(np.maximum(smooth, 1e-30))
        usable.append(crop_body & (lo[e] > 10 * noise_sd))
        ratios.append(np.log(smooths[e] / np.maximum(mid, 1e-30)))
    gains = fit_log_gain(ratios, narrows, degree=s.gain_degree)
    for _ in range(s.gain_iterations):
        # Interval regression: a voxel pulls the gain only when its measurement falls outside
        # the gained envelope (the implied gain is then the one that would bring it inside).
        for e in range(n_echoes):
            inside = np.clip(smooths[e] / gains[e], lo[e], hi[e])
            ratios[e] = np.log(smooths[e] / np.maximum(inside, 1e-30))
        gains = fit_log_gain(ratios, usable, degree=s.gain_degree)
    del ratios, smooths
    for e in range(n_echoes):
        measured = np.asarray(data[e][box], dtype=np.float32)
        gain, mid, narrow = gains[e], mids[e], narrows[e]
        lower = ndimage.minimum_filter(gain * lo[e], size)
        upper = ndimage.maximum_filter(gain * hi[e], size)
        reference = np.clip(measured, lower, upper)
        expected = gain * mid
        kappa = relative_model_error(
            measured[narrow] - expected[narrow],
            expected[narrow],
            noise_sd,
            minimum=s.min_relative_error,
        )
        kappas.append(kappa)
        denominator = np.sqrt(np.float32(noise_sd) ** 2 + (np.float32(kappa) * reference) ** 2)
        z[e] = np.where(crop_body, (measured - reference) / denominator, 0)
    score_sigma = [s.score_sigma_mm / sp for sp in spacing]
    chi = np.sqrt(ndimage.gaussian_filter(np.mean(z * z, axis=0), score_sigma))
    sign = np.sign(ndimage.gaussian_filter(np.mean(z, axis=0), score_sigma))
    score = np.zeros(body.shape, dtype=np.float32)
    score[box] = np.where(crop_body, sign * chi, 0)
    echo_z = []
    for e in range(n_echoes):
        full = np.zeros(body.shape, dtype=np.float32)
        full[box] = z[e]
        echo_z.append(ScalarVolume(full, mr.affine))
    return ConsistencyResult(
        score=ScalarVolume(score, mr.affine),
        echo_z=echo_z,
        noise_sd=noise_sd,
        relative_error=kappas,
    )


def _bounding_box(mask: NDArray[np.bool_], *, margin: int) -> tuple[slice, slice, slice]:
    """Slices of the smallest box holding ``mask``, grown by ``margin`` voxels."""
    if not mask.any():
        return (slice(0, 0), slice(0, 0), slice(0, 0))
    out = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        out.append(slice(max(int(hits[0]) - margin, 0), int(hits[-1]) + margin + 1))
    return (out[0], out[1], out[2])
