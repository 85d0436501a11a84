"""Montages: axial and sagittal views of CT and every MR echo, with lesion outlines.

Used by ``synthct phantom --montage`` and the docs, so a reader sees what a case looks like.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from synthct.figures.slices import Plane, extract_slice
from synthct.io.atomic import atomic_file
from synthct.volume import CTVolume, LabelMap, MultiEchoMR

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: CT display window (level, width) in HU: wide enough for bone and calcification.
CT_WINDOW_HU = (300.0, 1800.0)


def save_montage(
    path: str | os.PathLike[str],
    *,
    ct: CTVolume,
    mr: MultiEchoMR,
    point_lps_mm: ArrayLike,
    lesions: LabelMap | None = None,
    planes: Sequence[Plane] = ("axial", "sagittal"),
    title: str = "",
    half_width_mm: float | None = None,
    dpi: int = 110,
) -> Path:
    """Write a PNG: one row per plane, columns CT | echo 1 | echo 2 ..., lesions outlined.

    Parameters
    ----------
    path : path
        Output PNG (written atomically).
    ct, mr : CTVolume, MultiEchoMR
        The images; they may sit on different grids (both are resampled onto display planes).
    point_lps_mm : array_like
        Where the planes cross (e.g. a lesion centre).
    lesions : LabelMap, optional
        Lesion labels, drawn as outlines on every panel.
    half_width_mm : float, optional
        Zoom to this half-width around the point.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tes = mr.echo_times_ms or tuple(float("nan") for _ in range(mr.n_echoes))
    columns = 1 + mr.n_echoes
    fig, axes = plt.subplots(
        len(planes), columns, figsize=(3.2 * columns, 3.4 * len(planes)), squeeze=False
    )
    level, width = CT_WINDOW_HU
    for row, plane in enumerate(planes):
        image, extent = extract_slice(ct, plane, point_lps_mm, half_width_mm=half_width_mm)
        ax = axes[row, 0]
        ax.imshow(
            image,
            cmap="gray",
            vmin=level - width / 2,
            vmax=level + width / 2,
            extent=extent,
            interpolation="nearest",
        )
        ax.set_title(f"CT, {plane}", fontsize=9)
        _outline(ax, lesions, plane, point_lps_mm, half_width_mm)
        for echo in range(mr.n_echoes):
            image, extent = extract_slice(
                mr, plane, point_lps_mm, channel=echo, half_width_mm=half_width_mm
            )
            ax = axes[row, 1 + echo]
            vmax = float(np.percentile(image, 99.5)) or 1.0
            ax.imshow(image, cmap="gray", vmin=0, vmax=vmax, extent=extent, interpolation="nearest")
            ax.set_title(f"MR echo {echo + 1} (TE {tes[echo]:g} ms), {plane}", fontsize=9)
            _outline(ax, lesions, plane, point_lps_mm, half_width_mm)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    final = Path(path)
    with atomic_file(final) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return final


def _outline(
    ax: Axes,
    lesions: LabelMap | None,
    plane: Plane,
    point_lps_mm: ArrayLike,
    half_width_mm: float | None,
) -> None:
    if lesions is None or not lesions.labels():
        return
    mask, extent = extract_slice(lesions, plane, point_lps_mm, half_width_mm=half_width_mm)
    if not np.any(mask > 0):
        return
    rows, cols = mask.shape
    left, right, bottom, top = extent
    xs = np.linspace(left, right, cols, endpoint=False) + (right - left) / cols / 2
    ys = np.linspace(top, bottom, rows, endpoint=False) + (bottom - top) / rows / 2
    ax.contour(xs, ys, (mask > 0).astype(float), levels=[0.5], colors="red", linewidths=0.8)
