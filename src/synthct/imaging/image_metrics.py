"""Image-level agreement between a CT and a synthetic CT, comparable with SynthRAD2025.

Every metric is computed in 3D inside a body mask. The plain functions take arrays in HU
(``ct_hu``, ``sct_hu``, optional boolean ``mask``; no mask means every voxel) and keyword-only
options; :func:`image_metrics` takes volumes, checks their grids first, derives the body mask
when none is given and returns an :class:`ImageMetrics` whose ``to_dict()`` records every
convention used.

Conventions
-----------
* Errors are ``sct - ct``: a positive mean error means the sCT is too dense.
* MAE and mean error use the raw HU inside the mask, no clipping.
* PSNR and MS-SSIM clip both images to ``hu_range`` = [-1024, 3071] HU (data range 4095 HU).
* MS-SSIM follows the SynthRAD2025 evaluation code exactly ([1]_, ``ImageMetrics.ms_ssim``,
  file ``image_metrics.py`` at commit 17cac47); see :func:`ms_ssim` for each detail.

References
----------
.. [1] SynthRAD2025 evaluation, https://github.com/SynthRAD2025/evaluation (image_metrics.py).
.. [2] Z. Wang, E. P. Simoncelli, A. C. Bovik, "Multiscale structural similarity for image
   quality assessment", 37th Asilomar Conference on Signals, Systems and Computers, 2003.
.. [3] Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, "Image quality assessment: from
   error visibility to structural similarity", IEEE TIP 13(4), 2004.
.. [4] T. Mitsiopoulos et al., "Cadaver validation of skeletal muscle measurement by magnetic
   resonance imaging and computerized tomography", J Appl Physiol 85(1), 1998 (adipose tissue
   -190 to -30 HU, skeletal muscle -29 to +150 HU).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.ndimage import uniform_filter

from synthct.errors import GeometryMismatchError, VolumeKindError
from synthct.imaging.body_mask import (
    DEFAULT_BODY_THRESHOLD_HU,
    EmptyMaskError,
    body_mask_from_ct,
)
from synthct.imaging.body_mask import axial_axis as _axial_axis
from synthct.volume import CTVolume, Volume

__all__ = [
    "BONE_THRESHOLDS_HU",
    "HU_RANGE",
    "MS_SSIM_WEIGHTS",
    "TISSUE_CLASSES",
    "TISSUE_EDGES_HU",
    "ImageMetrics",
    "bone_dice",
    "image_metrics",
    "mae_by_tissue_hu",
    "mae_hu",
    "mean_error_hu",
    "ms_ssim",
    "psnr_db",
]

#: HU window both images are clipped to for PSNR and MS-SSIM (SynthRAD2025's dynamic range).
HU_RANGE: tuple[float, float] = (-1024.0, 3071.0)
#: MS-SSIM scale weights, finest scale first (Wang et al. 2003, Eq. 7 and Sec. 3.2).
MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
#: Names of the tissue classes of :func:`mae_by_tissue_hu`, lowest HU first.
TISSUE_CLASSES: tuple[str, str, str] = ("air_fat", "soft_tissue", "bone")
#: CT HU edges between the classes: air/fat < -30 <= soft tissue < 150 <= bone.
TISSUE_EDGES_HU: tuple[float, float] = (-30.0, 150.0)
#: Default HU thresholds of :func:`bone_dice` in :func:`image_metrics`.
BONE_THRESHOLDS_HU: tuple[float, ...] = (150.0, 250.0)

_WIN_SIZE = 7
_MIN_SIZE = 97
_K1 = 0.01
_K2 = 0.03


# -- input handling ----------------------------------------------------------------------------
def _inputs(
    ct_hu: ArrayLike, sct_hu: ArrayLike, mask: ArrayLike | None
) -> tuple[NDArray[Any], NDArray[Any], NDArray[np.bool_]]:
    """Check shapes and the mask; the mask is binarised as ``mask > 0`` (as SynthRAD2025 does)."""
    ct = np.asarray(ct_hu)
    sct = np.asarray(sct_hu)
    if ct.shape != sct.shape:
        raise GeometryMismatchError(
            f"the CT array has shape {ct.shape} but the sCT array has shape {sct.shape}",
            fix="resample the sCT onto the CT grid first (synthct.resample.resample_to)",
        )
    for name, a in (("CT", ct), ("sCT", sct)):
        if a.dtype.kind not in "biuf":
            raise VolumeKindError(f"the {name} must hold real numbers, got dtype {a.dtype}")
    if mask is None:
        inside = np.ones(ct.shape, dtype=bool)
    else:
        m = np.asarray(mask)
        if m.shape != ct.shape:
            raise GeometryMismatchError(
                f"the mask has shape {m.shape} but the images have shape {ct.shape}",
                fix="resample the mask onto the CT grid (nearest neighbour)",
            )
        inside = m if m.dtype == np.bool_ else m > 0
    return ct, sct, inside


def _masked(
    ct_hu: ArrayLike, sct_hu: ArrayLike, mask: ArrayLike | None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """CT and sCT values inside the mask, as float64 vectors, checked finite and non-empty."""
    ct, sct, inside = _inputs(ct_hu, sct_hu, mask)
    ct_in = ct[inside].astype(np.float64, copy=False)
    if ct_in.size == 0:
        raise EmptyMaskError(
            "the mask selects no voxel",
            path="mask",
            fix="pass a mask with at least one voxel inside the body, or none to use every voxel",
        )
    sct_in = sct[inside].astype(np.float64, copy=False)
    _require_finite(ct_in, "CT")
    _require_finite(sct_in, "sCT")
    return ct_in, sct_in


def _require_finite(values: NDArray[np.float64], name: str) -> None:
    if not np.all(np.isfinite(values)):
        n_bad = int(np.count_nonzero(~np.isfinite(values)))
        raise VolumeKindError(
            f"the {name} has {n_bad} NaN or infinite voxels inside the mask",
            fix="replace them (e.g. with -1024 HU) or exclude them from the mask",
        )


def _data_range(hu_range: Sequence[float]) -> tuple[float, float, float]:
    lo, hi = float(hu_range[0]), float(hu_range[1])
    if not hi > lo:
        raise ValueError(f"hu_range must be (low, high) with high > low, got {tuple(hu_range)}")
    return lo, hi, hi - lo


# -- voxel-wise metrics ------------------------------------------------------------------------
def mae_hu(ct_hu: ArrayLike, sct_hu: ArrayLike, mask: ArrayLike | None = None) -> float:
    """Mean absolute error ``mean(|sct - ct|)`` inside the mask, in HU, without clipping.

    Parameters
    ----------
    ct_hu, sct_hu : ndarray
        Reference CT and synthetic CT in HU, same shape.
    mask : ndarray of bool, optional
        Voxels to include (``mask > 0`` for numeric masks); every voxel when omitted.

    Returns
    -------
    float
        MAE in HU; 0 when the images are equal.
    """
    ct_in, sct_in = _masked(ct_hu, sct_hu, mask)
    return float(np.mean(np.abs(sct_in - ct_in)))


def mean_error_hu(ct_hu: ArrayLike, sct_hu: ArrayLike, mask: ArrayLike | None = None) -> float:
    """Mean signed error ``mean(sct - ct)`` inside the mask, in HU, without clipping.

    Positive when the sCT is on average denser than the CT. Parameters as :func:`mae_hu`.
    """
    ct_in, sct_in = _masked(ct_hu, sct_hu, mask)
    return float(np.mean(sct_in - ct_in))


def _psnr_from(
    ct_in: NDArray[np.float64], sct_in: NDArray[np.float64], hu_range: Sequence[float]
) -> float:
    lo, hi, data_range = _data_range(hu_range)
    diff = np.clip(sct_in, lo, hi) - np.clip(ct_in, lo, hi)
    mse = float(np.mean(diff * diff))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range * data_range / mse)


def psnr_db(
    ct_hu: ArrayLike,
    sct_hu: ArrayLike,
    mask: ArrayLike | None = None,
    *,
    hu_range: Sequence[float] = HU_RANGE,
) -> float:
    """Peak signal-to-noise ratio in dB, as SynthRAD2025 computes it.

    Both images are clipped to ``hu_range``; the mean squared error is taken over the mask
    voxels and the peak is the width of ``hu_range`` (4095 HU by default):
    ``PSNR = 10 log10(range^2 / MSE)``.

    Parameters
    ----------
    ct_hu, sct_hu, mask
        As in :func:`mae_hu`.
    hu_range : (float, float)
        Clipping window in HU; its width is the data range.

    Returns
    -------
    float
        PSNR in dB; ``inf`` when the clipped images are equal inside the mask (MSE = 0), as
        ``skimage.metrics.peak_signal_noise_ratio`` gives (there with a divide warning).
    """
    ct_in, sct_in = _masked(ct_hu, sct_hu, mask)
    return _psnr_from(ct_in, sct_in, hu_range)


def _tissue_classes(
    ct_in: NDArray[np.float64], tissue_edges_hu: Sequence[float]
) -> dict[str, NDArray[np.bool_]]:
    low, high = float(tissue_edges_hu[0]), float(tissue_edges_hu[1])
    if not high > low:
        raise ValueError(f"tissue_edges_hu must be increasing, got {tuple(tissue_edges_hu)}")
    return {
        "air_fat": ct_in < low,
        "soft_tissue": (ct_in >= low) & (ct_in < high),
        "bone": ct_in >= high,
    }


def _mae_by_tissue_from(
    ct_in: NDArray[np.float64], sct_in: NDArray[np.float64], tissue_edges_hu: Sequence[float]
) -> tuple[dict[str, float], dict[str, int]]:
    abs_err = np.abs(sct_in - ct_in)
    maes, counts = {}, {}
    for name, selected in _tissue_classes(ct_in, tissue_edges_hu).items():
        n = int(np.count_nonzero(selected))
        counts[name] = n
        maes[name] = float(np.mean(abs_err[selected])) if n else math.nan
    return maes, counts


def mae_by_tissue_hu(
    ct_hu: ArrayLike,
    sct_hu: ArrayLike,
    mask: ArrayLike | None = None,
    *,
    tissue_edges_hu: Sequence[float] = TISSUE_EDGES_HU,
) -> dict[str, float]:
    """MAE in HU per tissue class, the classes being defined by the **CT** value.

    With ``tissue_edges_hu = (low, high)``: ``air_fat`` is ``ct < low``, ``soft_tissue`` is
    ``low <= ct < high`` and ``bone`` is ``ct >= high``. The defaults (-30, 150) HU follow the
    CT ranges of adipose tissue (-190 to -30 HU) and skeletal muscle (-29 to +150 HU) of
    Mitsiopoulos et al. (1998); everything denser than muscle is bone.

    Parameters
    ----------
    ct_hu, sct_hu, mask
        As in :func:`mae_hu`.
    tissue_edges_hu : (float, float)
        The two class edges in HU.

    Returns
    -------
    dict of str to float
        ``{"air_fat": ..., "soft_tissue": ..., "bone": ...}``; NaN for a class with no voxel
        inside the mask.
    """
    ct_in, sct_in = _masked(ct_hu, sct_hu, mask)
    return _mae_by_tissue_from(ct_in, sct_in, tissue_edges_hu)[0]


def _dice_from(
    ct_in: NDArray[np.float64], sct_in: NDArray[np.float64], threshold_hu: float
) -> float:
    bone_ct = ct_in >= threshold_hu
    bone_sct = sct_in >= threshold_hu
    total = int(np.count_nonzero(bone_ct)) + int(np.count_nonzero(bone_sct))
    if total == 0:
        return math.nan
    return 2.0 * int(np.count_nonzero(bone_ct & bone_sct)) / total


def bone_dice(
    ct_hu: ArrayLike,
    sct_hu: ArrayLike,
    mask: ArrayLike | None = None,
    *,
    threshold_hu: float = 150.0,
) -> float:
    """Dice coefficient of the bone masks ``ct >= threshold_hu`` and ``sct >= threshold_hu``.

    Only voxels inside the mask count. ``Dice = 2 |A & B| / (|A| + |B|)``.

    Parameters
    ----------
    ct_hu, sct_hu, mask
        As in :func:`mae_hu`.
    threshold_hu : float
        Bone threshold in HU (inclusive).

    Returns
    -------
    float
        Dice in [0, 1]; NaN when neither image has a voxel at or above the threshold (the
        coefficient is undefined; it is not counted as perfect agreement).
    """
    ct_in, sct_in = _masked(ct_hu, sct_hu, mask)
    return _dice_from(ct_in, sct_in, threshold_hu)


# -- MS-SSIM -----------------------------------------------------------------------------------
def _halve(a: NDArray[np.float64], axis: int) -> NDArray[np.float64]:
    """``(a[2m - 1] + a[2m]) / 2`` along ``axis`` with ``a[-1] = 0``: m = 0 .. ceil(n / 2) - 1."""
    a = np.moveaxis(a, axis, 0)
    out = a[0::2] * 0.5
    odd = a[1::2]
    out[1:] += 0.5 * odd[: out.shape[0] - 1]
    return np.moveaxis(out, 0, axis)


def _downsample(a: NDArray[np.float64]) -> NDArray[np.float64]:
    """2x2x2 mean then every other voxel, as ``fftconvolve(a, ones(2,2,2)/8, 'same')[::2,::2,::2]``.

    The 'same' convolution with an even kernel averages each voxel with its predecessor along
    every axis, a zero standing in before the first voxel.
    """
    for axis in range(a.ndim):
        a = _halve(a, axis)
    return np.ascontiguousarray(a)


def _local_means(
    xs: NDArray[np.float64],
    ys: NDArray[np.float64],
    selected: NDArray[np.bool_],
    *,
    win_size: int,
    workers: int,
) -> list[NDArray[np.float64]]:
    """Window means of x, y, x^2, y^2 and x*y at the selected voxels (5 box filters)."""
    shared = np.empty_like(xs) if workers == 1 else None

    def one(which: int) -> NDArray[np.float64]:
        if which == 0:
            a = xs
        elif which == 1:
            a = ys
        elif which == 2:
            a = xs * xs
        elif which == 3:
            a = ys * ys
        else:
            a = xs * ys
        out = shared if shared is not None else np.empty_like(xs)
        uniform_filter(a, size=win_size, output=out, mode="reflect")
        return out[selected]

    if workers == 1:
        return [one(which) for which in range(5)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, range(5)))


def _masked_ssim_mean(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    inside: NDArray[np.bool_],
    *,
    weight: float,
    win_size: int,
    c1: float,
    c2: float,
    workers: int,
) -> float:
    """Mean over ``inside`` (minus a border of win_size // 2) of the SSIM map ``(L C S)^weight``."""
    radius = (win_size - 1) // 2
    valid = np.zeros_like(inside)
    core = tuple(slice(radius, n - radius) for n in inside.shape)
    valid[core] = inside[core]
    # Bounding box of the valid voxels plus the window radius: the window never leaves the
    # array for a valid voxel, so filtering the box alone gives the same local statistics.
    box = []
    for axis in range(valid.ndim):
        others = tuple(d for d in range(valid.ndim) if d != axis)
        present = np.flatnonzero(np.any(valid, axis=others))
        if present.size == 0:
            return math.nan
        box.append(slice(present[0] - radius, present[-1] + radius + 1))
    region = tuple(box)
    mx, my, mxx, myy, mxy = _local_means(
        x[region], y[region], valid[region], win_size=win_size, workers=workers
    )
    n_window = win_size**x.ndim
    cov_norm = n_window / (n_window - 1)  # sample covariance, as skimage's default
    # The same operations as the reference, in place on the selected voxels only.
    mx_my = mx * my
    den = mx * mx
    mxx -= den
    mxx *= cov_norm  # var_x
    np.multiply(my, my, out=mx)
    den += mx
    den += c1  # mx^2 + my^2 + C1
    myy -= mx
    myy *= cov_norm  # var_y
    mxy -= mx_my
    mxy *= cov_norm  # cov_xy
    luminance = mx_my
    luminance *= 2.0
    luminance += c1
    luminance /= den
    np.maximum(luminance, 0.0, out=luminance)
    sd_xy = mx
    np.sqrt(np.maximum(mxx, 0.0, out=sd_xy), out=sd_xy)
    np.sqrt(np.maximum(myy, 0.0, out=my), out=my)
    sd_xy *= my
    contrast = np.multiply(sd_xy, 2.0, out=den)
    contrast += c2
    mxx += myy
    mxx += c2  # var_x + var_y + C2
    contrast /= mxx
    np.maximum(contrast, 0.0, out=contrast)
    c3 = c2 / 2.0
    structure = mxy
    structure += c3
    sd_xy += c3
    structure /= sd_xy
    np.maximum(structure, 0.0, out=structure)
    # L^w C^w S^w with one exponent for all three equals (L C S)^w since L, C, S >= 0.
    ssim_map = luminance
    ssim_map *= contrast
    ssim_map *= structure
    np.power(ssim_map, weight, out=ssim_map)
    return float(np.mean(ssim_map, dtype=np.float64))


def ms_ssim(
    ct_hu: ArrayLike,
    sct_hu: ArrayLike,
    mask: ArrayLike | None = None,
    *,
    hu_range: Sequence[float] = HU_RANGE,
    scale_weights: Sequence[float] = MS_SSIM_WEIGHTS,
    workers: int = 1,
) -> float:
    """Masked 3D multi-scale SSIM exactly as the SynthRAD2025 evaluation computes it.

    The steps of ``ImageMetrics.score_patient`` / ``ms_ssim`` in SynthRAD2025's
    ``image_metrics.py`` [1]_, reproduced to floating-point round-off:

    1. Voxels outside the mask are set to the low end of ``hu_range`` (-1024 HU); both images
       are clipped to ``hu_range`` and shifted by its low end, so values lie in [0, 4095].
    2. Images and mask are padded to at least 97 voxels along every axis by repeating the edge
       voxels (``np.pad(mode='edge')``; the extra voxels split as ``(97 - n) // 2`` before and
       the rest after).
    3. At each of the 5 scales, SSIM [3]_ is computed voxel-wise with a 7x7x7 uniform window,
       sample covariance (factor 343/342), data range 4095 (the width of ``hu_range``),
       ``K1 = 0.01``, ``K2 = 0.03``, ``C3 = C2 / 2``, and components
       ``L = (2 mx my + C1) / (mx^2 + my^2 + C1)``,
       ``C = (2 sx sy + C2) / (vx + vy + C2)``, ``S = (vxy + C3) / (sx sy + C3)``, each clipped
       below at 0 (``sx = sqrt(max(vx, 0))``). The voxel value is ``L^w C^w S^w`` with ``w``
       that scale's weight (0.0448, 0.2856, 0.3001, 0.2363, 0.1333): as in the reference code,
       luminance enters at **every** scale with the scale weight, not only at the coarsest.
    4. The scale's value is the mean of that map over the mask voxels lying at least 3 voxels
       (the window radius) from the faces of the padded array.
    5. Images are downsampled by a 2x2x2 mean followed by taking every other voxel
       (``fftconvolve(..., ones((2, 2, 2)) / 8, mode='same')[::2, ::2, ::2]``: the first voxel
       along each axis is averaged with a zero); the mask is subsampled ``[::2, ::2, ::2]``.
    6. Each scale's value is clipped to [0, 1] and the five are multiplied.

    The reference computes an unmasked value too and reports the masked one as ``ms_ssim``;
    only the masked one is computed here (with ``mask=None`` it equals the unmasked one).
    Everything runs in float64; the reference keeps float32 inputs in float32, which changes
    its results by round-off only.

    Parameters
    ----------
    ct_hu, sct_hu : (I, J, K) ndarray
        Reference CT and synthetic CT in HU.
    mask : (I, J, K) ndarray of bool, optional
        Body mask (``mask > 0`` for numeric masks); every voxel when omitted.
    hu_range : (float, float)
        Clipping window in HU; its low end fills the outside of the mask and its width is the
        SSIM data range.
    scale_weights : sequence of float
        Exponent of each scale, finest first; their number sets the number of scales.
    workers : int
        Threads for the five window filters of each scale (SciPy releases the GIL); the
        result does not depend on it. Keep 1 when cases already run in parallel.

    Returns
    -------
    float
        MS-SSIM in [0, 1], 1 for identical images; NaN when at some scale no mask voxel lies
        3 voxels or more inside the array, where the reference's mean of an empty selection
        gives NaN too. Beware: an axis of at most 112 voxels is 7 voxels long at the coarsest
        scale (after padding to 97 and four halvings), so only its central plane counts there;
        a mask that misses the image centre then gives NaN.

    References
    ----------
    .. [1] SynthRAD2025 evaluation, ``image_metrics.py``,
       https://github.com/SynthRAD2025/evaluation
    .. [2] Wang, Simoncelli, Bovik (2003), multiscale structural similarity.
    .. [3] Wang, Bovik, Sheikh, Simoncelli (2004), structural similarity.
    """
    ct, sct, inside = _inputs(ct_hu, sct_hu, mask)
    if ct.ndim != 3:
        raise VolumeKindError(f"MS-SSIM is defined here for 3D arrays, got shape {ct.shape}")
    if not inside.any():
        raise EmptyMaskError("the mask selects no voxel", path="mask")
    lo, hi, data_range = _data_range(hu_range)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    x = np.where(inside, np.clip(ct, lo, hi) - lo, 0.0).astype(np.float64, copy=False)
    y = np.where(inside, np.clip(sct, lo, hi) - lo, 0.0).astype(np.float64, copy=False)
    for name, a in (("CT", x), ("sCT", y)):
        _require_finite(a, name)
    pads = [
        (max((_MIN_SIZE - n) // 2, 0), max(_MIN_SIZE - n - (_MIN_SIZE - n) // 2, 0))
        for n in x.shape
    ]
    if any(before or after for before, after in pads):
        x, y = np.pad(x, pads, mode="edge"), np.pad(y, pads, mode="edge")
        inside = np.pad(inside, pads, mode="edge")
    c1 = (_K1 * data_range) ** 2
    c2 = (_K2 * data_range) ** 2
    result = 1.0
    for level, weight in enumerate(scale_weights):
        if level:
            x, y = _downsample(x), _downsample(y)
            inside = inside[::2, ::2, ::2]
        value = _masked_ssim_mean(
            x, y, inside, weight=float(weight), win_size=_WIN_SIZE, c1=c1, c2=c2, workers=workers
        )
        if math.isnan(value):
            return math.nan
        result *= min(max(value, 0.0), 1.0)
    return float(result)


# -- volumes -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageMetrics:
    """Image-level agreement of one case (see :func:`image_metrics`)."""

    mae_hu: float
    mean_error_hu: float
    psnr_db: float
    ms_ssim: float
    mae_by_tissue_hu: dict[str, float]
    tissue_voxels: dict[str, int]
    bone_dice: dict[float, float]
    body_voxels: int
    body_volume_ml: float
    conventions: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Flat, JSON-ready values (units in the keys) plus a ``conventions`` entry.

        ``psnr_db`` may be ``inf`` and class MAEs or Dice may be NaN (see the functions).
        """
        out: dict[str, Any] = {
            "mae_hu": self.mae_hu,
            "mean_error_hu": self.mean_error_hu,
            "psnr_db": self.psnr_db,
            "ms_ssim": self.ms_ssim,
        }
        for name, value in self.mae_by_tissue_hu.items():
            out[f"mae_{name}_hu"] = value
        for name, n in self.tissue_voxels.items():
            out[f"voxels_{name}"] = n
        for threshold, value in self.bone_dice.items():
            out[f"bone_dice_{threshold:g}hu"] = value
        out["body_voxels"] = self.body_voxels
        out["body_volume_ml"] = self.body_volume_ml
        out["conventions"] = self.conventions
        return out


def _conventions(
    *,
    mask_rule: str,
    hu_range: Sequence[float],
    tissue_edges_hu: Sequence[float],
    bone_thresholds_hu: Sequence[float],
) -> dict[str, Any]:
    lo, hi, data_range = _data_range(hu_range)
    low, high = float(tissue_edges_hu[0]), float(tissue_edges_hu[1])
    return {
        "dimensionality": "3D (whole volume; no slice-wise metric)",
        "mask": mask_rule,
        "error_sign": "sct - ct (positive: sCT denser than CT)",
        "mae_hu": "mean |sct - ct| over mask voxels, raw HU, no clipping",
        "mean_error_hu": "mean (sct - ct) over mask voxels, raw HU, no clipping",
        "psnr_db": {
            "clip_hu": [lo, hi],
            "data_range_hu": data_range,
            "mse": "over mask voxels after clipping both images",
            "formula": "10 log10(data_range^2 / mse)",
            "mse_zero": "inf",
        },
        "ms_ssim": {
            "reference": "SynthRAD2025/evaluation image_metrics.py (ImageMetrics.ms_ssim), "
            "masked value",
            "outside_mask_hu": lo,
            "clip_hu": [lo, hi],
            "shift_hu": -lo,
            "data_range": data_range,
            "min_size_voxels": _MIN_SIZE,
            "padding": "edge, (97 - n) // 2 before, the rest after, images and mask",
            "scales": len(MS_SSIM_WEIGHTS),
            "scale_weights": list(MS_SSIM_WEIGHTS),
            "exponents": "L^w C^w S^w with the scale weight w at every scale",
            "window": "7x7x7 uniform, sample covariance (343/342)",
            "K1": _K1,
            "K2": _K2,
            "C3": "C2 / 2",
            "component_clipping": "L, C, S clipped below at 0",
            "scale_value": "mean SSIM over mask voxels >= 3 voxels from the array faces",
            "downsampling": "2x2x2 mean (zero before the first voxel) then [::2, ::2, ::2]; "
            "mask [::2, ::2, ::2]",
            "aggregation": "product over scales of each scale value clipped to [0, 1]",
            "precision": "float64",
        },
        "mae_by_tissue_hu": {
            "classes_from": "CT HU",
            "air_fat": f"ct < {low:g}",
            "soft_tissue": f"{low:g} <= ct < {high:g}",
            "bone": f"ct >= {high:g}",
            "empty_class": "nan",
        },
        "bone_dice": {
            "rule": "Dice of (ct >= t) and (sct >= t) inside the mask",
            "thresholds_hu": [float(t) for t in bone_thresholds_hu],
            "both_empty": "nan",
        },
    }


def image_metrics(
    ct: CTVolume,
    sct: CTVolume,
    *,
    body_mask: Volume | None = None,
    hu_range: Sequence[float] = HU_RANGE,
    tissue_edges_hu: Sequence[float] = TISSUE_EDGES_HU,
    bone_thresholds_hu: Sequence[float] = BONE_THRESHOLDS_HU,
    body_threshold_hu: float = DEFAULT_BODY_THRESHOLD_HU,
    workers: int = 1,
) -> ImageMetrics:
    """All image-level metrics of an sCT against its CT, inside the body.

    Parameters
    ----------
    ct, sct : CTVolume
        Reference CT and synthetic CT (a :class:`~synthct.volume.SyntheticCT` or any CT kind),
        on the same grid (checked first).
    body_mask : Volume, optional
        Voxels to evaluate (non-zero), on the same grid. Derived from the CT with
        :func:`~synthct.imaging.body_mask.body_mask_from_ct` when omitted.
    hu_range : (float, float)
        Clipping window of PSNR and MS-SSIM.
    tissue_edges_hu : (float, float)
        Class edges of :func:`mae_by_tissue_hu`.
    bone_thresholds_hu : sequence of float
        Thresholds of :func:`bone_dice`.
    body_threshold_hu : float
        Threshold of the derived body mask.
    workers : int
        Threads for MS-SSIM (see :func:`ms_ssim`).

    Returns
    -------
    ImageMetrics

    Raises
    ------
    GeometryMismatchError
        When the CT, sCT and mask grids differ.
    EmptyMaskError
        When the body mask is empty.
    VolumeKindError
        When an input is not a CT or holds NaN/infinite values in the mask.
    """
    for name, volume in (("ct", ct), ("sct", sct)):
        if not isinstance(volume, CTVolume):
            raise VolumeKindError(
                f"{name} must be a CT volume in HU, got a "
                f"{getattr(volume, 'kind', type(volume).__name__)}",
                path=name,
                fix="load it as kind 'ct' or 'sct'",
            )
    ct.require_same_geometry(sct, names=("CT", "sCT"))
    if body_mask is None:
        inside = body_mask_from_ct(
            ct.array, threshold_hu=body_threshold_hu, axial_axis=_axial_axis(ct)
        )
        mask_rule = (
            f"derived from the CT: >= {body_threshold_hu:g} HU, largest 6-connected component, "
            "3D then axial 2D hole filling"
        )
    else:
        ct.require_same_geometry(body_mask, names=("CT", "body mask"))
        inside = np.asarray(body_mask.array) > 0
        mask_rule = "given (non-zero voxels)" + (
            f", {body_mask.source}" if body_mask.source else ""
        )
    ct_in, sct_in = _masked(ct.array, sct.array, inside)
    maes, counts = _mae_by_tissue_from(ct_in, sct_in, tissue_edges_hu)
    diff = sct_in - ct_in
    n_body = int(ct_in.size)
    return ImageMetrics(
        mae_hu=float(np.mean(np.abs(diff))),
        mean_error_hu=float(np.mean(diff)),
        psnr_db=_psnr_from(ct_in, sct_in, hu_range),
        ms_ssim=ms_ssim(ct.array, sct.array, inside, hu_range=hu_range, workers=workers),
        mae_by_tissue_hu=maes,
        tissue_voxels=counts,
        bone_dice={float(t): _dice_from(ct_in, sct_in, float(t)) for t in bone_thresholds_hu},
        body_voxels=n_body,
        body_volume_ml=n_body * ct.geometry.voxel_volume_mm3 / 1000.0,
        conventions=_conventions(
            mask_rule=mask_rule,
            hu_range=hu_range,
            tissue_edges_hu=tissue_edges_hu,
            bone_thresholds_hu=bone_thresholds_hu,
        ),
    )
