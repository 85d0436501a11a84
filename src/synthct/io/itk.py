"""Conversion between synthct volumes and SimpleITK images (both LPS; axes reversed in numpy)."""

from __future__ import annotations

from typing import Any

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray

from synthct.geometry import affine_from_parameters


def array_to_sitk(array: NDArray[Any], affine: NDArray[np.float64]) -> sitk.Image:
    """A 3D SimpleITK image from an ``[i, j, k]`` array and LPS affine."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array, (2, 1, 0))))
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(o) for o in affine[:3, 3]])
    image.SetDirection([float(d) for d in (affine[:3, :3] / spacing).ravel()])
    return image


def sitk_to_array(image: sitk.Image) -> tuple[NDArray[Any], NDArray[np.float64]]:
    """``(array, affine)`` from a 3D or 4D SimpleITK image.

    3D images give an ``[i, j, k]`` array; 4D images (echoes or time along ITK's 4th axis) give
    ``[channel, i, j, k]`` with the spatial part of the 4D geometry. Vector images are returned
    channel-first as well.
    """
    dim = image.GetDimension()
    data = sitk.GetArrayFromImage(image)
    if dim == 3 and image.GetNumberOfComponentsPerPixel() > 1:
        data = np.transpose(data, (3, 2, 1, 0))
    elif dim == 3:
        data = np.transpose(data, (2, 1, 0))
    elif dim == 4:
        data = np.transpose(data, (0, 3, 2, 1))
    elif dim == 2:
        data = np.transpose(data, (1, 0))[:, :, np.newaxis]
    else:
        raise ValueError(f"unsupported image dimension {dim}")
    spacing = list(image.GetSpacing())[:3]
    origin = list(image.GetOrigin())[:3]
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(dim, dim)
    if dim == 2:
        spacing, origin = [*spacing, 1.0], [*origin, 0.0]
        full = np.eye(3)
        full[:2, :2] = direction
        direction = full
    affine = affine_from_parameters(spacing, origin, direction[:3, :3])
    return data, affine


def stack_to_sitk(array: NDArray[Any], affine: NDArray[np.float64]) -> sitk.Image:
    """A 4D SimpleITK image from a ``[channel, i, j, k]`` array (channel on ITK's 4th axis)."""
    return sitk.JoinSeries([array_to_sitk(channel, affine) for channel in array])
