"""Resampling a volume onto another grid, with the interpolator its kind calls for."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import SimpleITK as sitk

from synthct.geometry import Geometry
from synthct.io.itk import array_to_sitk, sitk_to_array
from synthct.volume import Volume

V = TypeVar("V", bound=Volume)

_INTERPOLATORS = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor}


def resample_to(
    volume: V,
    reference: Volume | Geometry,
    *,
    transform: sitk.Transform | None = None,
    fill_value: float | None = None,
) -> V:
    """Resample ``volume`` onto the grid of ``reference``; the result keeps the volume's kind.

    Linear interpolation for intensity kinds (CT, sCT, MR, scalar maps), nearest neighbour for
    label maps, chosen by the volume's type. Multi-echo MR is resampled echo by echo.

    Parameters
    ----------
    volume : Volume
        The data to move.
    reference : Volume or Geometry
        The target grid.
    transform : SimpleITK.Transform, optional
        Maps points of the reference frame into the volume's frame (ITK's convention, e.g. the
        result of a registration with the reference as fixed image). Identity when omitted.
    fill_value : float, optional
        Value outside the volume's field of view; the kind's default (-1024 HU for CT, 0
        otherwise) when omitted.
    """
    target = reference.geometry if isinstance(reference, Volume) else reference
    fill = volume.fill_value if fill_value is None else fill_value
    ref_image = array_to_sitk(np.zeros(target.shape, dtype=np.uint8), target.affine)
    interpolator = _INTERPOLATORS[volume.interpolation]
    tx = transform if transform is not None else sitk.Transform()
    dtype = volume.dtype if volume.interpolation == "nearest" else np.dtype(np.float32)

    def one(channel: np.ndarray) -> np.ndarray:
        moving = array_to_sitk(channel, volume.affine)
        out = sitk.Resample(moving, ref_image, tx, interpolator, float(fill))
        data, _ = sitk_to_array(out)
        return data.astype(dtype, copy=False)

    if volume.channel_axes:
        resampled = np.stack([one(c) for c in volume.array])
    else:
        resampled = one(volume.array)
    return volume.on_grid(resampled, target.affine)
