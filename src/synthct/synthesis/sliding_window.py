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

Speed: windows are copied from the input straight into one preallocated batch tensor (no
per-window arrays), the network runs under :func:`torch.inference_mode`, the blend is
accumulated in place with torch (on the GPU when the windows run there), the Gaussian is built
once per window size, and on CUDA the network may run under bfloat16 autocast. The predictors
of :mod:`synthct.synthesis.uncertainty` feed the network channels-last (``benchmarks/
synthesis_inference.py`` compares all of it with MONAI's ``sliding_window_inference``).

References
----------
.. [1] Isensee F et al. nnU-Net: a self-configuring method for deep learning-based biomedical
   image segmentation. Nat Methods 2021;18:203-211 (Gaussian importance weighting).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from numpy.typing import NDArray

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
    weights: NDArray[np.float32] | None = None,
    autocast_bf16: bool = False,
    needed: NDArray[np.bool_] | None = None,
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
        Where the windows are sent (the input, the blend and the weights live there too).
    progress : callable, optional
        Called with (windows done, windows in total) after each batch.
    weights : (patch_size) ndarray of float32, optional
        Blending weights instead of the Gaussian (e.g. ones: plain averaging); positive.
    autocast_bf16 : bool
        On CUDA, run the predictor under bfloat16 autocast (the blend stays float32);
        ignored on the CPU.
    needed : (I, J, K) ndarray of bool, optional
        The voxels whose prediction will be used (e.g. the body, when everything outside it is
        set to air afterwards): windows holding none of them are not computed, and voxels that
        no computed window covers are 0. Every needed voxel gets exactly the value it gets
        without ``needed``.

    Returns
    -------
    (n_outputs, I, J, K) ndarray of float32
        The weighted mean of the window predictions at each voxel.
    """
    if inputs.ndim != 4:
        raise ValueError(f"inputs must be [echo, i, j, k], got shape {inputs.shape}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must lie in [0, 1), got {overlap}")
    size = tuple(int(s) for s in patch_size)
    shape = inputs.shape[1:]
    dev = torch.device(device)
    blend = (
        _cached_gaussian(size, float(sigma_scale))
        if weights is None
        else torch.tensor(np.asarray(weights, dtype=np.float32))
    ).to(dev)
    if tuple(blend.shape) != size:
        raise ValueError(f"weights must have the window's shape {size}, got {tuple(blend.shape)}")
    # No copy on the CPU: windows are read straight from the caller's array.
    array = np.ascontiguousarray(inputs, dtype=np.float32)
    source = torch.from_numpy(array if array.flags.writeable else array.copy()).to(dev)
    out = torch.zeros((n_outputs, *shape), dtype=torch.float32, device=dev)
    weight_sum = torch.zeros(shape, dtype=torch.float32, device=dev)
    batch = torch.empty((batch_size, inputs.shape[0], *size), dtype=torch.float32, device=dev)
    use_autocast = autocast_bf16 and dev.type == "cuda"
    windows: Iterator[tuple[int, int, int]] = iter_windows(shape, size, overlap)
    if needed is not None:
        if tuple(needed.shape) != tuple(shape):
            raise ValueError(f"needed must have the volume's shape {shape}, got {needed.shape}")
        kept = [w for w in windows if needed[_placement(w, shape, size)[1]].any()]
        windows = iter(kept)
        total = len(kept)
    else:
        total = count_windows(shape, size, overlap)
    done = 0
    with torch.inference_mode():
        while True:
            batch_starts = list(itertools.islice(windows, batch_size))
            if not batch_starts:
                break
            places = [_placement(start, shape, size) for start in batch_starts]
            for b, (src, dst) in enumerate(places):
                if any(s.stop - s.start != n for s, n in zip(src, size, strict=True)):
                    batch[b].zero_()  # padding: zeros, normalised air
                batch[(b, slice(None), *src)] = source[(slice(None), *dst)]
            windows_in = batch[: len(batch_starts)]
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_autocast):
                predicted = predictor(windows_in)
            predicted = predicted.to(torch.float32)
            for b, (src, dst) in enumerate(places):
                local = blend[src]
                out[(slice(None), *dst)].addcmul_(predicted[(b, slice(None), *src)], local)
                weight_sum[dst] += local
            done += len(batch_starts)
            if progress is not None:
                progress(done, total)
        if needed is not None:  # voxels no window covered: 0 / 1 = 0
            weight_sum[weight_sum == 0] = 1.0
        out /= weight_sum
    return np.asarray(out.cpu().numpy())


Slices = tuple[slice, slice, slice]


def _placement(
    start: Sequence[int], shape: Sequence[int], size: Sequence[int]
) -> tuple[Slices, Slices]:
    """(slices into the window, slices into the volume) of the part of a window inside it."""
    src, dst = [], []
    for s, n_axis, w in zip(start, shape, size, strict=True):
        lo, hi = max(s, 0), min(s + w, n_axis)
        dst.append(slice(lo, hi))
        src.append(slice(lo - s, hi - s))
    return (src[0], src[1], src[2]), (dst[0], dst[1], dst[2])


@functools.lru_cache(maxsize=8)
def _cached_gaussian(size: tuple[int, ...], sigma_scale: float) -> torch.Tensor:
    """The Gaussian of :func:`gaussian_weights`, built once per window (never written to)."""
    return torch.from_numpy(gaussian_weights(size, sigma_scale))
