"""The grid a model runs on: the input's own, or the model's spacing with the sCT brought back.

A network learns anatomy at the voxel size it was trained at; a 1.5 mm input shows it every
structure at two thirds of the size it knows. nnU-Net therefore resamples every input to the
spacing it planned from the training data and the prediction back [1]_. synthct does the same:

* a model whose card declares ``planned_spacing_mm``
  (:class:`~synthct.synthesis.domain.TrainingDomain`) always runs at that spacing;
* an older model, without a planned spacing, runs at the input's voxel size, unless inference
  is asked to resample (``resample=True``): it then runs at the middle of its card's
  ``voxel_size_mm`` ranges;
* ``resample=False`` never resamples.

Spacings are matched to the input's axes by rank (the smallest planned size to the input's
finest axis), as the card sorts voxel sizes, so axial and sagittal acquisitions are treated
alike. An input already within 1% of the target spacing on every axis is not resampled (the
result is then exactly that of the native run). The working grid keeps the input's
orientation and physical extent (voxel edges); the MRI is resampled linearly echo by echo, and
the network outputs (mean and variances, in network units) linearly back onto the input grid.

References
----------
.. [1] Isensee F et al. nnU-Net: a self-configuring method for deep learning-based biomedical
   image segmentation. Nat Methods 2021;18:203-211 (target spacing, resampling).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from synthct.geometry import Geometry
from synthct.synthesis.domain import TrainingDomain
from synthct.volume import ScalarVolume

#: Relative spacing difference below which an input is run on its own grid.
SPACING_TOLERANCE = 0.01

Spacing = tuple[float, float, float]


def inference_spacing(
    domain: TrainingDomain, spacing_mm: Sequence[float], *, resample: bool | None = None
) -> Spacing | None:
    """The spacing (per input axis, mm) to run the network at, or None for the input's own.

    Parameters
    ----------
    domain : TrainingDomain
        The model's training domain (``planned_spacing_mm``, ``voxel_size_mm``).
    spacing_mm : sequence of 3 float
        The input's voxel size along its array axes.
    resample : bool, optional
        ``None``: resample exactly when the model declares a planned spacing. ``True``: also
        resample for an older model, to the middle of its training voxel sizes. ``False``:
        never.
    """
    if resample is False:
        return None
    if domain.planned_spacing_mm is not None:
        sizes = sorted(float(s) for s in domain.planned_spacing_mm)
    elif resample and domain.voxel_size_mm is not None:
        sizes = sorted(0.5 * (lo + hi) for lo, hi in domain.voxel_size_mm)
    else:
        return None
    target = spacing_by_rank(sizes, spacing_mm)
    if all(abs(t - s) <= SPACING_TOLERANCE * s for t, s in zip(target, spacing_mm, strict=True)):
        return None
    return (target[0], target[1], target[2])


def spacing_by_rank(sizes: Sequence[float], spacing_mm: Sequence[float]) -> Spacing:
    """``sizes`` given to the axes of a grid of ``spacing_mm`` by rank: the smallest size to
    its finest axis (ties in axis order), so a sagittal and an axial acquisition of the same
    voxel get the same grid."""
    ordered = sorted(float(s) for s in sizes)
    order = np.argsort(np.asarray(spacing_mm, dtype=float), kind="stable")
    target = [0.0, 0.0, 0.0]
    for rank, axis in enumerate(order):
        target[int(axis)] = ordered[rank]
    return (target[0], target[1], target[2])


def grid_with_spacing(geometry: Geometry, spacing_mm: Sequence[float]) -> Geometry:
    """A grid of ``spacing_mm`` over the same box (voxel edges) and orientation as ``geometry``.

    The number of voxels per axis is the extent divided by the new spacing, rounded (at least
    1); the first voxel's edge sits on the original first voxel's edge.
    """
    old = np.asarray(geometry.spacing_mm)
    new = np.asarray(spacing_mm, dtype=float)
    shape = [max(1, round(n * s / t)) for n, s, t in zip(geometry.shape, old, new, strict=True)]
    direction = geometry.direction
    corner = np.asarray(geometry.origin_lps_mm) - direction @ (0.5 * old)
    origin = corner + direction @ (0.5 * new)
    return Geometry.from_parameters(shape, tuple(new.tolist()), tuple(origin.tolist()), direction)


def outputs_to_grid(
    out: NDArray[np.float32],
    source: Geometry,
    target: Geometry,
    *,
    fill_values: Sequence[float],
) -> NDArray[np.float32]:
    """Network outputs ``[channel, ...]`` on ``source`` resampled linearly onto ``target``.

    ``fill_values`` (one per channel) apply outside the source grid's extent.
    """
    from synthct.resample import resample_to

    channels = []
    for n, channel in enumerate(out):
        volume = ScalarVolume(channel, source.affine)
        moved = resample_to(volume, target, fill_value=float(fill_values[n]))
        channels.append(np.asarray(moved.array, dtype=np.float32))
    return np.stack(channels)
