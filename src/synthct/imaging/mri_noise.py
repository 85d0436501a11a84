"""Noise of magnitude MR images, shared by the validation (MRI CNR) and the audit.

References
----------
.. [1] Gudbjartsson H, Patz S. The Rician distribution of noisy MRI data. Magn Reson Med 1995
   (outside the body a magnitude is Rayleigh: its median is ``sd sqrt(2 ln 2)``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

#: Fewest background voxels for the Rayleigh estimate.
MIN_BACKGROUND_VOXELS = 1000


def estimate_noise_sd(data: NDArray[Any], body: NDArray[np.bool_]) -> float:
    """Noise SD of magnitude images: the smaller of a background and a difference estimate.

    Background: ``median / sqrt(2 ln 2)`` of the magnitudes outside the body dilated by 3
    voxels (Rayleigh), when there are at least 1000 such voxels. Differences: the robust SD
    (1.4826 MAD) of differences of neighbours along the first spatial axis inside the body,
    over ``sqrt(2)``. Both can only be inflated (tissue left in the background of a cropped
    field of view; edges and texture in the body), so the smaller is kept.

    Parameters
    ----------
    data : (echo, I, J, K) ndarray
        Magnitudes (all echoes pooled: give one echo as ``data[e:e + 1]`` for its own SD).
    body : (I, J, K) ndarray of bool
        Body mask.

    Returns
    -------
    float
        The noise SD in the images' units; 0 when neither estimate is possible.
    """
    estimates = []
    background = ~ndimage.binary_dilation(body, iterations=3)
    if np.count_nonzero(background) >= MIN_BACKGROUND_VOXELS:
        values = data[:, background]
        estimates.append(float(np.median(values) / np.sqrt(2.0 * np.log(2.0))))
    pairs = body[1:] & body[:-1]
    if pairs.any():
        diffs = np.diff(np.asarray(data, dtype=np.float32), axis=1)[:, pairs]
        mad = float(np.median(np.abs(diffs - np.median(diffs))))
        estimates.append(1.4826 * mad / float(np.sqrt(2.0)))
    return min(estimates) if estimates else 0.0
