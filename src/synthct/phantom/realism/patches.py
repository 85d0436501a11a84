"""CT patches for the realism classifier: one common grid, centres drawn inside the body.

Real CTs and phantoms come on different grids (3 mm, 1.5 mm, 0.98 x 0.98 x 2 mm, the phantom's
0.74 x 0.74 x 0.9 mm in sagittal orientation). A classifier fed native patches would learn the
voxel size and orientation, not the anatomy, so every CT is first resampled (linear) onto an
axis-aligned LPS grid of one isotropic spacing (:func:`common_grid`); patches are then cubes of
that grid, their axes L, P and S.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from synthct.errors import SynthctError
from synthct.geometry import Geometry
from synthct.resample import resample_to
from synthct.volume import CTVolume

__all__ = ["common_grid", "on_common_grid", "sample_patches"]


def common_grid(geometry: Geometry, spacing_mm: float | Sequence[float]) -> Geometry:
    """An LPS-aligned grid of ``spacing_mm`` covering ``geometry``'s bounding box.

    Parameters
    ----------
    geometry : Geometry
        The grid to cover (any orientation, oblique included).
    spacing_mm : float or sequence of 3 floats
        Voxel size of the new grid: one value (isotropic) or one per L, P, S axis (e.g. a
        model's planned 0.74 x 0.74 x 0.9 mm, so that its inference does not resample).

    Returns
    -------
    Geometry
        Identity direction, origin at the bounding box's lowest LPS corner.
    """
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    if spacing.ndim == 0:
        spacing = np.full(3, float(spacing))
    if spacing.shape != (3,) or not np.all(spacing > 0):
        raise SynthctError(
            f"spacing_mm must be one value or three, all > 0, got {spacing_mm}",
            path="spacing_mm",
        )
    corners = np.array(
        [[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=np.float64
    ) * (np.asarray(geometry.shape, dtype=np.float64) - 1)
    points = geometry.index_to_lps(corners)
    low, high = points.min(axis=0), points.max(axis=0)
    shape = np.floor((high - low) / spacing).astype(int) + 1
    return Geometry.from_parameters(
        (int(shape[0]), int(shape[1]), int(shape[2])),
        (float(spacing[0]), float(spacing[1]), float(spacing[2])),
        tuple(low),
    )


def on_common_grid(ct: CTVolume, spacing_mm: float | Sequence[float]) -> CTVolume:
    """``ct`` resampled (linear) onto :func:`common_grid` of ``spacing_mm``.

    Parameters
    ----------
    ct : CTVolume
        The CT in HU.
    spacing_mm : float or sequence of 3 floats
        Voxel size of the common grid (see :func:`common_grid`).

    Returns
    -------
    CTVolume
        On the common grid; -1024 HU outside ``ct``'s field of view.
    """
    return resample_to(ct, common_grid(ct.geometry, spacing_mm))


def sample_patches(
    hu: ArrayLike,
    mask: ArrayLike,
    *,
    patch_voxels: int,
    count: int,
    rng: np.random.Generator,
    min_mask_fraction: float = 0.5,
) -> NDArray[np.float32]:
    """Cubic patches of ``hu`` whose centre lies in ``mask`` and that are mostly inside it.

    Parameters
    ----------
    hu : (I, J, K) array_like
        CT in HU on the common grid.
    mask : (I, J, K) array_like of bool
        Where patches may be centred (e.g. the body).
    patch_voxels : int
        Edge length of a patch.
    count : int
        Number of patches (drawn with replacement of centres when the mask is small).
    rng : numpy.random.Generator
        The random stream (seeded by the caller).
    min_mask_fraction : float
        A patch must have at least this fraction of its voxels in ``mask``.

    Returns
    -------
    (count, p, p, p) ndarray of float32

    Raises
    ------
    SynthctError
        When the volume is smaller than a patch or no centre qualifies.
    """
    values = np.asarray(hu, dtype=np.float32)
    inside = np.asarray(mask, dtype=bool)
    p = int(patch_voxels)
    if min(values.shape) < p:
        raise SynthctError(
            f"the volume {values.shape} is smaller than a {p}-voxel patch",
            path="patch_voxels",
            fix="use a smaller patch or a finer common grid",
        )
    fraction = ndimage.uniform_filter(inside.astype(np.float32), size=p, mode="constant")
    half = p // 2
    valid = np.zeros_like(inside)
    core = tuple(slice(half, n - (p - half) + 1) for n in values.shape)
    valid[core] = True
    centres = np.argwhere(valid & inside & (fraction >= min_mask_fraction))
    if len(centres) == 0:
        raise SynthctError(
            f"no {p}-voxel patch is {min_mask_fraction:.0%} inside the mask",
            path="mask",
            fix="lower min_mask_fraction or patch_voxels",
        )
    chosen = centres[rng.choice(len(centres), size=count, replace=len(centres) < count)]
    starts = chosen - half
    return np.stack([values[i : i + p, j : j + p, k : k + p] for i, j, k in starts])
