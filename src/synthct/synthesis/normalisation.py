"""Input checks, the MRI body mask and robust per-echo intensity normalisation.

MR magnitudes have no absolute unit: the same tissue reads differently on two scanners, coils
or gain settings. Every volume is therefore scaled by statistics of its own body voxels before
it enters the network: each echo is divided by its 99th percentile (or median) inside a body
mask found on the echo sum, then clipped to ``[0, clip_max]``
(:class:`~synthct.synthesis.config.NormalisationConfig`). The 99th percentile of a T1-weighted
body is fat signal, present in every patient, so the scaling does not depend on how much
muscle or bone the field of view holds. With ``reference_smoothing_mm`` it is taken on the
echo smoothed by a Gaussian of that SD, so that it measures the fat's signal, not its noise
(a noisier scan of the same body would otherwise be scaled darker). The per-volume reference
values are recorded (:class:`EchoScaling`) and a model folder keeps those of its training cases.

The HU target is scaled as ``(HU - hu_offset) / hu_scale`` (1000 by default), so soft tissue
is ~0.04, cortical bone ~1.8 and air -1 in network units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage
from skimage.filters import threshold_otsu

from synthct.synthesis.config import NormalisationConfig
from synthct.synthesis.errors import SynthesisInputError

#: Synthesis needs at least this many echoes (e.g. fat opposed and in phase).
MIN_ECHOES = 2
#: An "MRI" with more than this fraction of voxels below :data:`CT_LIKE_HU` is a CT in HU.
CT_LIKE_FRACTION = 1e-3
CT_LIKE_HU = -200.0
#: Otsu's threshold is computed on at most this many voxels (a regular subsample).
_OTSU_MAX_VOXELS = 2_000_000


@dataclass(frozen=True)
class EchoScaling:
    """How one MRI volume was scaled: the divisor of each echo and the body it came from.

    Parameters
    ----------
    reference_values : tuple of float
        Each echo is divided by its value (signal units of the input).
    body_fraction : float
        Fraction of the field of view inside the MRI body mask.
    body_threshold : float
        Threshold on the echo sum that defined the body mask.
    offsets : tuple of float
        Subtracted from each channel before the division (its body mean for ``zscore``);
        empty: none.
    """

    reference_values: tuple[float, ...]
    body_fraction: float
    body_threshold: float
    offsets: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        d = asdict(self)
        d["reference_values"] = list(self.reference_values)
        d["offsets"] = list(self.offsets)
        return d


def check_mr_array(
    array: ArrayLike, *, source: str | None = None, channels: tuple[str, ...] = ()
) -> NDArray[Any]:
    """Return ``array`` as ``[echo, i, j, k]`` after checking it can be synthesised from.

    Parameters
    ----------
    array : array_like
        The MRI, channels first.
    source : str, optional
        File name for error messages.
    channels : tuple of str
        Declared channel names (:attr:`NormalisationConfig.channels`): the input must have
        exactly that many channels (1 is allowed). Empty: multi-echo magnitudes, at least
        :data:`MIN_ECHOES`.

    Raises
    ------
    SynthesisInputError
        Fewer than :data:`MIN_ECHOES` echoes (or not the declared channel count), NaN or
        infinite voxels, an echo with no signal, or values that look like a CT in HU (air at
        -1000) rather than MR magnitudes.
    """
    data = np.asarray(array)
    if data.ndim != 4:
        raise SynthesisInputError(
            f"expected a multi-echo MRI [echo, i, j, k], got an array of shape {data.shape}",
            path=source,
            fix="pass a 4D MRI or the echo files in order (one 3D file per echo)",
        )
    if channels and data.ndim == 4 and data.shape[0] != len(channels):
        raise SynthesisInputError(
            f"the MRI has {data.shape[0]} channel(s) but the configuration declares "
            f"{len(channels)}: {', '.join(channels)}",
            path=source,
            fix=f"pass exactly the channels {', '.join(channels)} in this order, or change "
            "normalisation.channels",
        )
    if not channels and data.shape[0] < MIN_ECHOES:
        raise SynthesisInputError(
            f"the MRI has {data.shape[0]} echo; synthesis needs at least {MIN_ECHOES} echo "
            "magnitudes (e.g. fat opposed and in phase)",
            path=source,
            fix="pass every echo of the multi-echo gradient echo; for a single contrast (a T1w "
            "or T2w) name it in the configuration (normalisation: {method: zscore, channels: "
            "[T2w]}) or let training plan it (synthct train ... --plan auto)",
        )
    if data.dtype.kind not in "biuf":
        raise SynthesisInputError(f"MR values must be real numbers, got {data.dtype}", path=source)
    if data.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(data)))
        if bad:
            raise SynthesisInputError(
                f"{bad} voxels of the MRI are NaN or infinite",
                path=source,
                fix="replace them with 0 (background) or re-export the series",
            )
    negative = int(np.count_nonzero(data < CT_LIKE_HU))
    if negative > CT_LIKE_FRACTION * data.size:
        lo = float(data.min())
        raise SynthesisInputError(
            f"{negative} voxels are below {CT_LIKE_HU:g} (minimum {lo:.6g}): this looks like a "
            "CT in Hounsfield units, not MR echo magnitudes",
            path=source,
            fix="pass the MRI echoes (magnitude images) as input; the CT is the training target",
        )
    for echo in range(data.shape[0]):
        if not float(data[echo].max()) > 0.0:
            raise SynthesisInputError(
                f"echo {echo + 1} of {data.shape[0]} holds no signal (maximum "
                f"{float(data[echo].max()):.6g})",
                path=source,
                fix="check that the echoes were exported as magnitudes and are not empty",
            )
    return data


def _fill_holes(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Fill background regions enclosed by the body, in 3D and in every 2D slice.

    The spine leaves the field of view cranially and caudally, so cortical bone (dark on every
    echo) touches the border and is no 3D hole; in slices across the spine it is enclosed by
    soft tissue. Slices along all three axes are filled because the array axis that runs
    cranio-caudally depends on the acquisition (sagittal, axial or coronal).
    """
    background, n = ndimage.label(~mask)
    if n == 0:
        return mask
    border = np.zeros(n + 1, dtype=bool)
    for axis in range(3):
        for index in (0, -1):
            border[np.unique(np.take(background, index, axis=axis))] = True
    border[0] = True  # label 0 is the mask itself
    filled = mask | ~border[background]
    for axis in range(3):
        for index in range(filled.shape[axis]):
            plane = np.take(filled, index, axis=axis)
            closed = ndimage.binary_fill_holes(plane)
            if closed.sum() != plane.sum():
                slicer: list[slice | int] = [slice(None)] * 3
                slicer[axis] = index
                filled[tuple(slicer)] = closed
    return filled


def mri_signal_mask(
    array: ArrayLike, *, threshold_fraction: float = 0.2
) -> tuple[NDArray[np.bool_], float]:
    """Voxels with MR signal, in every connected part, and the threshold on the echo sum.

    Rule: threshold the sum of the echoes (each divided by its 99.9th percentile, so that the mask
    does not depend on per-echo gains) at Otsu's value, capped at ``threshold_fraction`` of its 99th
    percentile (so a field of view without air keeps its dark tissue such as CSF).

    Parameters
    ----------
    array : (echo, I, J, K) array_like
        Echo magnitudes, checked by :func:`check_mr_array`.
    threshold_fraction : float
        Cap of the threshold as a fraction of the 99th percentile of the echo sum.
    """
    data = np.asarray(array)
    spatial = data.shape[1:]
    step = max(1, int(np.ceil((int(np.prod(spatial)) / _OTSU_MAX_VOXELS) ** (1 / 3))))
    total = np.zeros(spatial, dtype=np.float32)
    for echo in data:
        # Each echo in units of its own 99.9th percentile, so the mask ignores per-echo gains.
        top = float(np.percentile(echo[::step, ::step, ::step], 99.9))
        total += echo.astype(np.float32, copy=False) * np.float32(1.0 / top if top > 0 else 0.0)
    sample = total[::step, ::step, ::step]
    high = float(np.percentile(sample, 99.0))
    try:
        otsu = float(threshold_otsu(sample))
    except ValueError:  # a constant image has no threshold
        otsu = high
    threshold = min(otsu, threshold_fraction * high)
    return total > threshold, threshold


def body_mask_from_mri(
    array: ArrayLike, *, threshold_fraction: float = 0.2
) -> tuple[NDArray[np.bool_], float]:
    """Body mask of a multi-echo MRI and the threshold on the echo sum that made it.

    Rule: the voxels with signal (:func:`mri_signal_mask`), their largest connected component,
    with the holes (cortical bone and other tissue dark on every echo) filled in 3D and slice by
    slice (see :func:`_fill_holes`). The parameters are :func:`mri_signal_mask`'s.
    """
    candidate, threshold = mri_signal_mask(array, threshold_fraction=threshold_fraction)
    labels, n = ndimage.label(candidate)
    if n == 0:
        raise SynthesisInputError(
            "no body found in the MRI (no voxel above the signal threshold)",
            fix="check that the image holds MR echo magnitudes of a body",
        )
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    mask = labels == int(np.argmax(sizes))
    del labels
    return _fill_holes(mask), threshold


def fit_scaling(
    array: ArrayLike,
    mask: NDArray[np.bool_],
    config: NormalisationConfig,
    threshold: float,
    *,
    spacing_mm: Sequence[float] | None = None,
) -> EchoScaling:
    """The per-echo divisors of a volume inside ``mask`` (see the module docstring).

    ``spacing_mm`` (voxel size, array axis order) is needed when the configuration smooths the
    echoes before taking the reference (``reference_smoothing_mm``).
    """
    data = np.asarray(array)
    if config.method == "zscore":
        return _fit_zscore(data, mask, threshold)
    sigma = _smoothing_sigma_voxels(config, spacing_mm)
    refs = []
    for echo in range(data.shape[0]):
        channel = data[echo]
        if sigma is not None:
            channel = ndimage.gaussian_filter(channel.astype(np.float32), sigma, mode="nearest")
        inside = channel[mask]
        if config.method == "median":
            value = float(np.median(inside))
        else:
            value = float(np.percentile(inside, config.percentile))
        refs.append(value)
    if not config.per_echo:
        refs = [refs[0]] * len(refs)
    if not all(r > 0 for r in refs):
        raise SynthesisInputError(
            f"the body's reference intensities {refs} are not positive; the echoes carry no "
            "usable signal inside the body",
            fix="check the MRI (magnitude images, not phase or empty series)",
        )
    return EchoScaling(
        reference_values=tuple(refs),
        body_fraction=float(np.count_nonzero(mask)) / mask.size,
        body_threshold=float(threshold),
    )


def _smoothing_sigma_voxels(
    config: NormalisationConfig, spacing_mm: Sequence[float] | None
) -> tuple[float, ...] | None:
    """Per-axis Gaussian SD in voxels for ``reference_smoothing_mm``; None: no smoothing."""
    if not config.reference_smoothing_mm:
        return None
    if spacing_mm is None or len(spacing_mm) != 3 or not all(s > 0 for s in spacing_mm):
        raise ValueError(
            "normalisation.reference_smoothing_mm needs the voxel size of the MRI "
            f"(spacing_mm), got {spacing_mm!r}"
        )
    return tuple(config.reference_smoothing_mm / float(s) for s in spacing_mm)


def _fit_zscore(data: NDArray[Any], mask: NDArray[np.bool_], threshold: float) -> EchoScaling:
    """Per-channel mean and SD inside ``mask`` (z-score normalisation)."""
    means, sds = [], []
    for channel in data:
        inside = channel[mask].astype(np.float64)
        means.append(float(inside.mean()))
        sds.append(float(inside.std()))
    if not all(sd > 0 for sd in sds):
        raise SynthesisInputError(
            f"a channel is constant inside the body (SDs {sds}); z-score normalisation needs "
            "signal variation",
            fix="check the MRI (magnitude images, not empty series)",
        )
    return EchoScaling(
        reference_values=tuple(sds),
        body_fraction=float(np.count_nonzero(mask)) / mask.size,
        body_threshold=float(threshold),
        offsets=tuple(means),
    )


def apply_scaling(
    array: ArrayLike, scaling: EchoScaling, config: NormalisationConfig
) -> NDArray[np.float32]:
    """Scale each channel (``(x - offset) / reference``) and clip (float32).

    The clip range is ``[0, clip_max]``, or ``[-clip_max, clip_max]`` with ``zscore``.
    """
    data = np.asarray(array)
    out = np.empty(data.shape, dtype=np.float32)
    low = -config.clip_max if config.method == "zscore" else 0.0
    offsets = scaling.offsets or (0.0,) * len(scaling.reference_values)
    for echo, (ref, offset) in enumerate(zip(scaling.reference_values, offsets, strict=True)):
        if offset:
            np.subtract(data[echo], np.float32(offset), out=out[echo], casting="unsafe")
            out[echo] *= np.float32(1.0 / ref)
        else:
            np.multiply(data[echo], np.float32(1.0 / ref), out=out[echo], casting="unsafe")
        np.clip(out[echo], low, config.clip_max, out=out[echo])
    return out


def normalise_mr(
    array: ArrayLike,
    config: NormalisationConfig,
    *,
    source: str | None = None,
    spacing_mm: Sequence[float] | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.bool_], EchoScaling]:
    """Check, mask and scale an MRI: ``(normalised [echo, i, j, k], body mask, scaling)``.

    ``spacing_mm``: the voxel size, needed with ``reference_smoothing_mm``.
    """
    data = check_mr_array(array, source=source, channels=config.channels)
    mask, threshold = body_mask_from_mri(data, threshold_fraction=config.body_threshold_fraction)
    scaling = fit_scaling(data, mask, config, threshold, spacing_mm=spacing_mm)
    return apply_scaling(data, scaling, config), mask, scaling


def hu_to_target(hu: ArrayLike, config: NormalisationConfig) -> NDArray[np.float32]:
    """HU to the network's target units, ``(HU - hu_offset) / hu_scale``."""
    return ((np.asarray(hu, dtype=np.float32) - config.hu_offset) / config.hu_scale).astype(
        np.float32, copy=False
    )


def target_to_hu(values: ArrayLike, config: NormalisationConfig) -> NDArray[np.float32]:
    """Network units back to HU."""
    return (np.asarray(values, dtype=np.float32) * config.hu_scale + config.hu_offset).astype(
        np.float32, copy=False
    )
