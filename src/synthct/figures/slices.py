"""Display slices through a point in patient space, in radiological orientation.

Any volume (sagittal acquisitions, oblique grids included) is resampled onto a 2D display grid
in LPS so that figures are comparable across modalities and grids:

* axial: patient right on the viewer's left, anterior at the top;
* sagittal: anterior on the viewer's left, superior at the top;
* coronal: patient right on the viewer's left, superior at the top.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from synthct.errors import SynthctError
from synthct.geometry import Geometry
from synthct.resample import resample_to
from synthct.volume import Volume

Plane = Literal["axial", "sagittal", "coronal"]

# Display axes in LPS: (column direction, row direction, normal). Rows grow downwards in an image.
_PLANES: dict[str, tuple[tuple[float, float, float], ...]] = {
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0), (1.0, 0.0, 0.0)),
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0)),
}


def display_geometry(
    volume: Volume,
    plane: Plane,
    point_lps_mm: ArrayLike,
    *,
    pixel_mm: float | None = None,
    half_width_mm: float | None = None,
) -> Geometry:
    """A one-voxel-thick display grid through ``point_lps_mm`` in the given plane.

    Parameters
    ----------
    volume : Volume
        The volume to be shown; its field of view sets the extent unless ``half_width_mm``.
    plane : {"axial", "sagittal", "coronal"}
        Display plane.
    point_lps_mm : array_like of 3 float
        A point the plane passes through (and the centre of the view when cropping).
    pixel_mm : float, optional
        Display pixel size; the volume's smallest spacing by default.
    half_width_mm : float, optional
        Crop the view to this half-width around the point (a zoom on a lesion).
    """
    if plane not in _PLANES:
        raise SynthctError(
            f"unknown plane {plane!r}", path="plane", fix=f"use one of {', '.join(_PLANES)}"
        )
    u, v, n = (np.asarray(a) for a in _PLANES[plane])
    point = np.asarray(point_lps_mm, dtype=np.float64)
    pixel = float(pixel_mm or min(volume.spacing_mm))
    if half_width_mm is not None:
        lo_u = lo_v = -float(half_width_mm)
        hi_u = hi_v = float(half_width_mm)
    else:
        corners = _corners_lps(volume.geometry) - point
        lo_u, hi_u = float((corners @ u).min()), float((corners @ u).max())
        lo_v, hi_v = float((corners @ v).min()), float((corners @ v).max())
    n_u = max(int(np.ceil((hi_u - lo_u) / pixel)), 1)
    n_v = max(int(np.ceil((hi_v - lo_v) / pixel)), 1)
    origin = point + lo_u * u + lo_v * v
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2] = u * pixel, v * pixel, n * pixel
    affine[:3, 3] = origin
    return Geometry((n_u, n_v, 1), affine)


def extract_slice(
    volume: Volume,
    plane: Plane,
    point_lps_mm: ArrayLike,
    *,
    channel: int | None = None,
    pixel_mm: float | None = None,
    half_width_mm: float | None = None,
) -> tuple[NDArray[np.float64], tuple[float, float, float, float]]:
    """A 2D image (rows, columns) through a point, and its extent in display mm.

    The extent ``(left, right, bottom, top)`` is in mm relative to the point, for
    ``matplotlib.pyplot.imshow(image, extent=extent)``. Multi-echo MR needs ``channel``.
    """
    grid = display_geometry(
        volume, plane, point_lps_mm, pixel_mm=pixel_mm, half_width_mm=half_width_mm
    )
    source = volume
    if volume.channel_axes:
        if channel is None:
            raise SynthctError(
                f"a {volume.kind} volume has several channels",
                path="channel",
                fix="pass channel=0 for the first echo",
            )
        source = volume.echo(channel)  # type: ignore[attr-defined]
    resampled = resample_to(source, grid)
    image = np.asarray(resampled.array[:, :, 0], dtype=np.float64).T  # rows = v, columns = u
    pixel = grid.spacing_mm[0]
    point = np.asarray(point_lps_mm, dtype=np.float64)
    u, v, _ = (np.asarray(a) for a in _PLANES[plane])
    start_u = float((grid.origin_lps_mm - point) @ u)
    start_v = float((grid.origin_lps_mm - point) @ v)
    left = start_u - pixel / 2
    right = left + image.shape[1] * pixel
    top = start_v - pixel / 2
    bottom = top + image.shape[0] * pixel
    return image, (left, right, bottom, top)


def _corners_lps(geometry: Geometry) -> NDArray[np.float64]:
    n = np.asarray(geometry.shape) - 1
    corners = np.array([[i, j, k] for i in (0, n[0]) for j in (0, n[1]) for k in (0, n[2])])
    return geometry.index_to_lps(corners)
