"""Noise power spectrum (NPS) of a CT in uniform regions, radially averaged.

Method (Boedeker KL, Cooper VN, McNitt-Gray MF. Application of the noise power spectrum in
modern diagnostic MDCT: part I. Measurement of noise power spectra and noise equivalent
quanta. Phys Med Biol 2007;52:4027-4046; ICRU Report 87, 2012, section 5.3): square axial ROIs
that lie wholly inside a uniform region are detrended, Fourier transformed, and their squared
magnitudes averaged::

    NPS(fx, fy) = dx dy / (Nx Ny) * < |DFT2(ROI - trend)|^2 >      [HU^2 mm^2]

so that the NPS integrated over the frequency plane is the noise variance, and white noise of
SD ``s`` on pixels of ``dx x dy`` mm has a flat NPS of ``s^2 dx dy``. The trend is the ROI mean
or a least-squares plane (``detrend``). Detrending zeroes the zero-frequency sample, so the
rings leave it out (their level then stays ``s^2 dx dy`` for white noise); the variance, the
NPS integrated over the plane, is multiplied by ``N / (N - k)`` for the ``k`` parameters fitted
to ``N`` pixels (the unbiased residual variance). The 2D NPS is averaged in rings of spatial
frequency (``|f| = sqrt(fx^2 + fy^2)``, in mm^-1), so scans on different grids compare on one
axis.

Uniform regions come from :mod:`synthct.phantom.realism.tissue_hu` (fat, muscle, air outside
the body); anatomy left inside a ROI after detrending shows up as low-frequency power, which is
part of what makes a real scan real.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from synthct.errors import SynthctError

__all__ = ["RadialNPS", "axial_roi_corners", "radial_nps"]

Detrend = Literal["mean", "plane"]


@dataclass(frozen=True)
class RadialNPS:
    """A radially averaged NPS with its summary figures.

    Attributes
    ----------
    frequency_per_mm : ndarray
        Centres of the frequency rings, mm^-1.
    nps_hu2_mm2 : ndarray
        Mean NPS in each ring, HU^2 mm^2 (NaN where a ring holds no frequency sample).
    variance_hu2 : float
        The 2D NPS integrated over the frequency plane: the noise variance in the ROIs.
    mean_frequency_per_mm : float
        NPS-weighted mean spatial frequency (white noise: high; smooth kernels: low).
    n_rois : int
        Number of ROIs averaged.
    roi_voxels : int
        ROI edge length in voxels.
    pixel_mm : tuple of 2 float
        In-plane pixel size of the ROIs (rows, columns).
    """

    frequency_per_mm: NDArray[np.float64]
    nps_hu2_mm2: NDArray[np.float64]
    variance_hu2: float
    mean_frequency_per_mm: float
    n_rois: int
    roi_voxels: int
    pixel_mm: tuple[float, float]

    @property
    def noise_sd_hu(self) -> float:
        """Noise SD in HU, the square root of :attr:`variance_hu2`."""
        return float(np.sqrt(self.variance_hu2))


def axial_roi_corners(
    mask: ArrayLike,
    *,
    axial_axis: int,
    roi_voxels: int,
    stride_voxels: int | None = None,
) -> NDArray[np.int64]:
    """Corners of the square axial ROIs that lie wholly inside ``mask``.

    Parameters
    ----------
    mask : (I, J, K) array_like of bool
        Where the ROIs may lie (a uniform region).
    axial_axis : int
        The array axis across which axial slices are stacked.
    roi_voxels : int
        ROI edge length in voxels.
    stride_voxels : int, optional
        Spacing of candidate corners (default ``roi_voxels // 2``: ROIs overlap by at most
        half, as Boedeker et al. 2007 allow).

    Returns
    -------
    (n, 3) ndarray of int
        ``(slice, row, column)`` of each ROI's first voxel, in the axial-first axis order.
    """
    m = np.moveaxis(np.asarray(mask, dtype=bool), axial_axis, 0)
    r = int(roi_voxels)
    step = max(1, int(stride_voxels if stride_voxels is not None else r // 2))
    if r < 2:
        raise SynthctError(f"roi_voxels must be >= 2, got {r}", path="roi_voxels")
    if m.shape[1] < r or m.shape[2] < r:
        return np.zeros((0, 3), dtype=np.int64)
    # Integral image: the count of mask voxels in every r x r window in O(1) each.
    summed = np.zeros((m.shape[0], m.shape[1] + 1, m.shape[2] + 1), dtype=np.int64)
    summed[:, 1:, 1:] = m.cumsum(axis=1).cumsum(axis=2)
    count = summed[:, r:, r:] - summed[:, :-r, r:] - summed[:, r:, :-r] + summed[:, :-r, :-r]
    full = count == r * r
    lattice = np.zeros_like(full)
    lattice[:, ::step, ::step] = True
    return np.argwhere(full & lattice).astype(np.int64)


def _detrended(roi: NDArray[np.float64], detrend: Detrend) -> tuple[NDArray[np.float64], int]:
    if detrend == "mean":
        return roi - roi.mean(), 1
    rows, cols = np.indices(roi.shape, dtype=np.float64)
    design = np.stack([np.ones(roi.size), rows.ravel(), cols.ravel()], axis=1)
    coef, *_ = np.linalg.lstsq(design, roi.ravel(), rcond=None)
    return roi - (design @ coef).reshape(roi.shape), 3


def radial_nps(
    hu: ArrayLike,
    mask: ArrayLike,
    *,
    spacing_mm: Sequence[float],
    axial_axis: int,
    roi_voxels: int = 16,
    max_rois: int = 200,
    detrend: Detrend = "plane",
    bin_width_per_mm: float = 0.05,
    max_frequency_per_mm: float | None = None,
    seed: int = 0,
) -> RadialNPS:
    """Radially averaged NPS of ``hu`` from axial ROIs inside ``mask`` (method above).

    Parameters
    ----------
    hu : (I, J, K) array_like
        CT in HU.
    mask : (I, J, K) array_like of bool
        The uniform region the ROIs must lie in.
    spacing_mm : sequence of 3 float
        Voxel size along the array axes.
    axial_axis : int
        The array axis across which axial slices are stacked.
    roi_voxels : int
        ROI edge length in voxels.
    max_rois : int
        At most this many ROIs, drawn at random (``seed``) when more fit.
    detrend : {"plane", "mean"}
        What is removed from each ROI before the transform.
    bin_width_per_mm : float
        Width of the frequency rings.
    max_frequency_per_mm : float, optional
        Last ring edge (default: the largest in-plane Nyquist frequency).
    seed : int
        Seeds the choice of ROIs.

    Returns
    -------
    RadialNPS

    Raises
    ------
    SynthctError
        When no ROI of ``roi_voxels`` fits inside ``mask``.
    """
    volume = np.moveaxis(np.asarray(hu, dtype=np.float64), axial_axis, 0)
    corners = axial_roi_corners(mask, axial_axis=axial_axis, roi_voxels=roi_voxels)
    if len(corners) == 0:
        raise SynthctError(
            f"no {roi_voxels} x {roi_voxels}-voxel axial ROI fits inside the uniform region",
            path="mask",
            fix="use a smaller roi_voxels or a larger (less eroded) region",
        )
    if len(corners) > max_rois:
        pick = np.random.default_rng(seed).choice(len(corners), max_rois, replace=False)
        corners = corners[np.sort(pick)]
    in_plane = [float(s) for i, s in enumerate(spacing_mm) if i != axial_axis % 3]
    dx, dy = in_plane
    r = int(roi_voxels)
    power = np.zeros((r, r), dtype=np.float64)
    fitted = 1
    for k, i, j in corners:
        residual, fitted = _detrended(volume[k, i : i + r, j : j + r], detrend)
        power += np.abs(np.fft.fft2(residual)) ** 2
    nps_2d = power / len(corners) * dx * dy / (r * r)
    fx = np.fft.fftfreq(r, d=dx)
    fy = np.fft.fftfreq(r, d=dy)
    radius = np.hypot(fx[:, None], fy[None, :])
    df = (1.0 / (r * dx)) * (1.0 / (r * dy))
    # N / (N - k): the unbiased variance of residuals after k fitted parameters.
    variance = float(nps_2d.sum() * df) * (r * r) / (r * r - fitted)
    mean_frequency = float((radius * nps_2d).sum() / nps_2d.sum()) if variance > 0 else 0.0
    top = max_frequency_per_mm or max(1.0 / (2 * dx), 1.0 / (2 * dy))
    edges = np.arange(0.0, top + bin_width_per_mm, bin_width_per_mm)
    which = np.digitize(radius.ravel(), edges) - 1
    which[0] = len(edges)  # the zero-frequency sample (flat index 0), zeroed by detrending
    sums = np.bincount(which, weights=nps_2d.ravel(), minlength=len(edges) + 1)[: len(edges) - 1]
    counts = np.bincount(which, minlength=len(edges) + 1)[: len(edges) - 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        ring = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return RadialNPS(
        frequency_per_mm=(edges[:-1] + edges[1:]) / 2.0,
        nps_hu2_mm2=ring,
        variance_hu2=variance,
        mean_frequency_per_mm=mean_frequency,
        n_rois=len(corners),
        roi_voxels=r,
        pixel_mm=(dx, dy),
    )
