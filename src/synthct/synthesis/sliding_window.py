"""Sliding-window inference with Gaussian blending, in bounded memory.

A volume of any size is covered by windows of the network's patch size that overlap by a
fraction ``overlap``; the last window along an axis is aligned with the volume's end, so sizes
that are not a multiple of the stride need no padding of the volume. An axis shorter than the
window gets one window centred on it, padded with zeros (normalised air) on the fly. Each
window's prediction is weighted by a Gaussian centred in the window (standard deviation
``sigma_scale`` times the window size, as nnU-Net and MONAI do [1]_) and the weighted sum is
divided by the sum of the weights, so overlapping windows blend without seams: a network that
predicts a constant gives exactly that constant everywhere.

Memory: windows go through the network ``batch_size`` at a time and are accumulated into one
float32 array per output channel plus one float32 weight array, so the peak is the input, the
outputs and one batch of windows, whatever the volume size.

References
----------
.. [1] Isensee F et al. nnU-Net: a self-configuring method for deep learning-based biomedical
   image segmentation. Nat Methods 2021;18:203-211 (Gaussian importance weighting).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from numpy.typing import NDArray

from synthct.synthesis.patches import extract_patch

#: A function from a batch of windows ``[B, echo, *size]`` to predictions ``[B, K, *size]``.
WindowPredictor = Callable[[torch.Tensor], torch.Tensor]
#: Called with (windows done, windows in total).
WindowProgress = Callable[[int, int], None]


def window_starts(length: int, size: int, overlap: float) -> list[int]:
    """First index of each window along one axis of ``length`` voxels.

    Windows are ``size`` long and step by ``max(1, round(size * (1 - overlap)))``; the last
    one ends at the last voxel. An axis shorter than a window gets one window centred on it
    (negative start).
    """
    if length <= size:
        return [(length - size) // 2]
    stride = max(1, round(size * (1.0 - overlap)))
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts


def gaussian_weights(size: Sequence[int], sigma_scale: float = 0.125) -> NDArray[np.float32]:
    """Separable Gaussian blending weights over a window, 1 at its centre, positive everywhere."""
    axes = []
    for n in size:
        x = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
        sigma = max(sigma_scale * n, 1e-6)
        axes.append(np.exp(-0.5 * (x / sigma) ** 2))
    w = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    w /= w.max()
    # Keep every weight positive so that voxels seen by a single window edge stay defined.
    return np.maximum(w, 1e-6).astype(np.float32)


def iter_windows(
    shape: Sequence[int], size: Sequence[int], overlap: float
) -> Iterator[tuple[int, int, int]]:
    """Start index of every window covering ``shape``."""
    starts = [window_starts(n, s, overlap) for n, s in zip(shape, size, strict=True)]
    for index in itertools.product(*starts):
        yield (index[0], index[1], index[2])


def count_windows(shape: Sequence[int], size: Sequence[int], overlap: float) -> int:
    """Number of windows :func:`iter_windows` yields."""
    return int(
        np.prod([len(window_starts(n, s, overlap)) for n, s in zip(shape, size, strict=True)])
    )


def sliding_window_predict(
    inputs: NDArray[np.float32],
    predictor: WindowPredictor,
    *,
    n_outputs: int,
    patch_size: Sequence[int],
    overlap: float = 0.5,
    batch_size: int = 2,
    sigma_scale: float = 0.125,
    device: str | torch.device = "cpu",
    progress: WindowProgress | None = None,
) -> NDArray[np.float32]:
    """Blend window predictions over a whole volume.

    Parameters
    ----------
    inputs : (echo, I, J, K) ndarray of float32
        Normalised input channels.
    predictor : callable
        Batch of windows ``[B, echo, *patch_size]`` (on ``device``) to ``[B, n_outputs,
        *patch_size]``.
    n_outputs : int
        Channels the predictor returns.
    patch_size : sequence of 3 int
        Window size in voxels.
    overlap : float
        Fraction of a window shared with its neighbour, in [0, 1).
    batch_size : int
        Windows per predictor call.
    sigma_scale : float
        Gaussian standard deviation as a fraction of the window size.
    device : str or torch.device
        Where the windows are sent.
    progress : callable, optional
        Called with (windows done, windows in total) after each batch.

    Returns
    -------
    (n_outputs, I, J, K) ndarray of float32
        The Gaussian-weighted mean of the window predictions at each voxel.
    """
    if inputs.ndim != 4:
        raise ValueError(f"inputs must be [echo, i, j, k], got shape {inputs.shape}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must lie in [0, 1), got {overlap}")
    size = tuple(int(s) for s in patch_size)
    shape = inputs.shape[1:]
    weights = gaussian_weights(size, sigma_scale)
    out = np.zeros((n_outputs, *shape), dtype=np.float32)
    weight_sum = np.zeros(shape, dtype=np.float32)
    total = count_windows(shape, size, overlap)
    done = 0
    windows = iter_windows(shape, size, overlap)
    while True:
        batch_starts = list(itertools.islice(windows, batch_size))
        if not batch_starts:
            break
        batch = np.stack([extract_patch(inputs, s, size, 0.0) for s in batch_starts])
        with torch.no_grad():
            predicted = predictor(torch.from_numpy(batch).to(device))
        result = predicted.detach().to("cpu", torch.float32).numpy()
        for start, window in zip(batch_starts, result, strict=True):
            src, dst = [], []
            for s, n_axis, w in zip(start, shape, size, strict=True):
                lo, hi = max(s, 0), min(s + w, n_axis)
                dst.append(slice(lo, hi))
                src.append(slice(lo - s, hi - s))
            local = weights[tuple(src)]
            out[(slice(None), *dst)] += window[(slice(None), *src)] * local
            weight_sum[tuple(dst)] += local
        done += len(batch_starts)
        if progress is not None:
            progress(done, total)
    np.divide(out, weight_sum, out=out)
    return out
