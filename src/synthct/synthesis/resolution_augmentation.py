"""Training augmentation: the interpolation texture of an MRI acquired at another voxel size.

A model runs on its planned grid (e.g. 0.74 x 0.74 x 0.9 mm) and resamples any MRI that is not
within 1 % of it (:mod:`synthct.synthesis.inference_grid`). Linear interpolation leaves a
texture the training patches never had: noise correlated between neighbours, its variance
varying with the sampling phase, edges softer. Measured in session 20, a model trained only on
native-grid patches paints calcium into CSF when its input was resampled from 0.8 mm (the
lesion-aware reference's largest score per lesion-free volume 0.42 median at the planned grid,
1.19 at 0.8 mm), and the real-anatomy subjects it was trained on at 1 mm render worse on their
native planned grid than resampled (body MAE 80 against 66 HU, session 21): each model learnt
the texture of its training grid.

:func:`resample_through` reproduces that texture on a patch: each channel is sampled (linear)
on a coarser grid of ``factors`` times the patch's voxel per axis, at a random sampling phase,
then interpolated (linear) back onto the patch's grid; the target CT is left sharp, so the
network learns to render the same CT from either texture (the idea of SynthSR's resolution
randomisation, Iglesias et al. 2023, applied only to the resampling a model's own inference
does). Off by default. A 1500-iteration stage 3 of the shipped pair with it (session 21) cost
accuracy and did not remove the calcium in CSF, so it is not in the shipped models
(``docs/world_models.md``).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

__all__ = ["resample_through"]


def resample_through(
    x: NDArray[np.float32],
    factors: ArrayLike,
    phases: ArrayLike | None = None,
) -> NDArray[np.float32]:
    """``x`` sampled on a coarser grid and interpolated back (linear both ways), per channel.

    Parameters
    ----------
    x : ndarray, shape (C, X, Y, Z)
        Channels of one patch on its grid.
    factors : array_like of 3 floats, each >= 1
        Voxel size of the coarse grid per axis, in voxels of ``x`` (1: that axis untouched).
    phases : array_like of 3 floats, optional
        Where the coarse grid's first sample lies on each axis, in voxels of ``x``, in
        ``[0, factor)``; 0 by default.

    Returns
    -------
    ndarray, shape (C, X, Y, Z), float32
        The patch with the interpolation texture of that coarse acquisition. Factors of 1 and
        phases of 0 return ``x`` unchanged.
    """
    array = np.asarray(x, dtype=np.float32)
    if array.ndim != 4:
        raise ValueError(f"x must be (channel, X, Y, Z), got shape {array.shape}")
    f = np.asarray(factors, dtype=np.float64)
    p = np.zeros(3) if phases is None else np.asarray(phases, dtype=np.float64)
    if f.shape != (3,) or p.shape != (3,):
        raise ValueError(f"factors and phases need 3 values each, got {f.tolist()}, {p.tolist()}")
    if np.any(f < 1.0) or np.any(p < 0.0) or np.any(p >= f):
        raise ValueError(
            f"need factors >= 1 and 0 <= phase < factor, got {f.tolist()}, {p.tolist()}"
        )
    shape = np.asarray(array.shape[1:])
    # coarse sample positions (in voxels of x) per axis: from the phase to past the last voxel
    coarse = [
        phase + factor * np.arange(int(np.ceil((n - 1 - phase) / factor)) + 1)
        for n, factor, phase in zip(shape, f, p, strict=True)
    ]
    down_grid = np.meshgrid(*coarse, indexing="ij")
    # back: each voxel of x at its position on the coarse grid
    up_axes = [
        (np.arange(n) - phase) / factor for n, factor, phase in zip(shape, f, p, strict=True)
    ]
    up_grid = np.meshgrid(*up_axes, indexing="ij")
    out = np.empty_like(array)
    for c in range(array.shape[0]):
        low = ndimage.map_coordinates(array[c], down_grid, order=1, mode="nearest")
        out[c] = ndimage.map_coordinates(low, up_grid, order=1, mode="nearest")
    return out
