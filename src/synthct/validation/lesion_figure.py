"""The per-lesion figure of a validation, like Fig. 1 of Fischer et al. [1]_.

One row per plane (axial through the lesion centre, then sagittal through it), columns
CT | sCT | MRI source (the echo with the best lesion contrast), zoomed around the lesion and
shown in radiological orientation (:mod:`synthct.figures.slices`). On every panel the ROI is
outlined (dashed yellow); on the CT and sCT panels the lesion segmentation of that image is
outlined (cyan) and the measured diameters are drawn as red lines: the maximal axial Feret
diameter on the axial row and the cranio-caudal extent on the sagittal row. Each panel states
the ROI mean in HU, "visible" or "not visible" with the CNR, and the diameters (0 x 0 mm when
not visible, as the paper reports).

The line endpoints are computed from the segmentation by the same rule as the measurement
(:mod:`synthct.imaging.lesion_size`): :func:`axial_feret_line` returns the two points whose
distance *is* the measured axial diameter and :func:`craniocaudal_line` the segment whose
length is the measured sagittal diameter. An axial line is drawn in the slice where the
maximum was found; when that is not the displayed slice (the view goes through the ROI
centre), its label gives the slice's S coordinate.

The CT and sCT share one window, :data:`CALCIFICATION_WINDOW_HU` by default (level 250 HU,
width 1000 HU: -250 to 750 HU), in which CSF (~10 HU), a barely calcified (~110 HU) and a
densely calcified (~460-770 HU) lesion are told apart while bone saturates. The MRI is shown
from 0 to its 99.5th percentile in the view.

References
----------
.. [1] G. Fischer et al., "Evaluation of magnetic resonance imaging and deep learning-based
   synthetic computed tomography for calcified intradural tumors", Acta Neurochirurgica, 2025,
   doi:10.1007/s00701-025-06731-0.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import cdist

from synthct.figures.plots import save_figure
from synthct.figures.slices import Plane, display_geometry, extract_slice
from synthct.geometry import Geometry
from synthct.imaging.lesion_size import axial_axis
from synthct.resample import resample_to
from synthct.validation.lesion_metrics import LesionMasks, LesionResult
from synthct.volume import CTVolume, LabelMap, Volume

__all__ = [
    "CALCIFICATION_WINDOW_HU",
    "MeasuredLine",
    "Panel",
    "axial_feret_line",
    "craniocaudal_line",
    "lesion_figure",
    "lesion_panels",
]

#: CT/sCT display window (level, width) in HU: -250 to 750 HU, for calcification.
CALCIFICATION_WINDOW_HU = (250.0, 1000.0)
#: Size of one panel in inches, and the extra height for the title.
PANEL_INCHES = 3.0
TITLE_INCHES = 0.6
#: The smallest half-width of the zoomed view, in mm.
MIN_HALF_WIDTH_MM = 12.0

_ROI_COLOR = "yellow"
_SEGMENTATION_COLOR = "cyan"
_LINE_COLOR = "red"
_TEXT_BOX = {"facecolor": "black", "alpha": 0.6, "pad": 2, "linewidth": 0}


@dataclass(frozen=True)
class MeasuredLine:
    """A measured distance: two LPS points (mm) whose distance is ``length_mm``.

    ``slice_index`` is the index along the axial array axis of the slice an axial diameter was
    found in (None for the cranio-caudal extent).
    """

    start_lps_mm: tuple[float, float, float]
    end_lps_mm: tuple[float, float, float]
    length_mm: float
    slice_index: int | None = None


@dataclass(frozen=True)
class Panel:
    """One panel of the figure: a display image with its overlays, all in display mm.

    ``image`` is (rows, columns) with ``extent`` ``(left, right, bottom, top)`` relative to the
    lesion centre; masks are on the image's pixel grid; ``lines`` are ``((x0, x1), (y0, y1),
    label)`` in the same coordinates.
    """

    title: str
    text: str
    image: NDArray[np.float64]
    extent: tuple[float, float, float, float]
    window: tuple[float, float]
    roi: NDArray[np.bool_] | None = None
    segmentation: NDArray[np.bool_] | None = None
    lines: list[tuple[tuple[float, float], tuple[float, float], str]] = field(default_factory=list)


def _voxel_points(mask: ArrayLike, affine: ArrayLike) -> tuple[NDArray[np.int64], NDArray[Any]]:
    return np.argwhere(np.asarray(mask, dtype=bool)), np.asarray(affine, dtype=np.float64)


def axial_feret_line(mask: ArrayLike, *, affine: ArrayLike) -> MeasuredLine | None:
    """Endpoints of the maximal axial Feret diameter of a mask (None when the mask is empty).

    The rule of :func:`synthct.imaging.lesion_size.axial_diameter_mm`: per axial slice (the
    array axis closest to S), the centres of the in-plane voxel edges projected on the L-P
    plane; the two farthest apart over all slices. The endpoints carry the mean S of their
    slice's edge centres, so ``length_mm`` equals the measured axial diameter.
    """
    index, a = _voxel_points(mask, affine)
    if index.size == 0:
        return None
    slice_axis = axial_axis(a)
    in_plane = [axis for axis in range(3) if axis != slice_axis]
    offsets = np.zeros((4, 3))
    for n, (axis, sign) in enumerate((ax, s) for ax in in_plane for s in (-0.5, 0.5)):
        offsets[n, axis] = sign
    edges = (index[:, None, :] + offsets[None]).reshape(-1, 3)
    edges_lps = edges @ a[:3, :3].T + a[:3, 3]
    slice_of_point = np.repeat(index[:, slice_axis], len(offsets))
    best: MeasuredLine | None = None
    for k in np.unique(slice_of_point):
        in_slice = edges_lps[slice_of_point == k]
        points = np.unique(in_slice[:, :2].round(9), axis=0)
        if len(points) < 2:
            continue
        candidates = points
        with contextlib.suppress(QhullError):  # collinear points have no hull: use them all
            candidates = points[ConvexHull(points).vertices]
        distances = cdist(candidates, candidates)
        i, j = np.unravel_index(int(np.argmax(distances)), distances.shape)
        length = float(distances[i, j])
        if best is None or length > best.length_mm:
            s_mm = float(in_slice[:, 2].mean())
            p, q = candidates[i], candidates[j]
            best = MeasuredLine(
                (float(p[0]), float(p[1]), s_mm), (float(q[0]), float(q[1]), s_mm), length, int(k)
            )
    return best


def craniocaudal_line(mask: ArrayLike, *, affine: ArrayLike) -> MeasuredLine | None:
    """The cranio-caudal extent of a mask as a segment along S (None when empty).

    From the lowest to the highest voxel face along S (the rule of
    :func:`~synthct.imaging.lesion_size.craniocaudal_extent_mm`), at the mean L and P of the
    voxel centres; ``length_mm`` equals the measured sagittal diameter.
    """
    index, a = _voxel_points(mask, affine)
    if index.size == 0:
        return None
    centres = index @ a[:3, :3].T + a[:3, 3]
    half = float(np.abs(a[2, :3]).max()) / 2
    low, high = float(centres[:, 2].min()) - half, float(centres[:, 2].max()) + half
    l_mm, p_mm = (float(v) for v in centres[:, :2].mean(axis=0))
    return MeasuredLine((l_mm, p_mm, low), (l_mm, p_mm, high), high - low)


def _get(lesion: Mapping[str, Any], key: str, default: Any = None) -> Any:
    value = lesion.get(key, default)
    if isinstance(value, float) and math.isnan(value):
        return default
    return value


def _number(value: Any) -> str:
    """One decimal; "n/a" for a missing value or NaN, "+inf"/"-inf"; no "-0.0"."""
    if value is None:
        return "n/a"
    number = float(value)
    if math.isnan(number):
        return "n/a"
    if math.isinf(number):
        return "+inf" if number > 0 else "-inf"
    text = f"{number:.1f}"
    return text.lstrip("-") if float(text) == 0 else text


def _visibility_text(visible: Any, cnr: Any) -> str:
    word = "visible" if visible in (True, "True", "true", 1) else "not visible"
    return f"{word} (CNR {_number(cnr)})"


def _ct_text(lesion: Mapping[str, Any], prefix: str) -> str:
    return "\n".join(
        (
            f"mean {_number(_get(lesion, f'{prefix}_mean_hu'))} HU",
            _visibility_text(_get(lesion, f"{prefix}_visible"), _get(lesion, f"{prefix}_cnr")),
            f"{_number(_get(lesion, f'{prefix}_diameter_axial_mm'))} x "
            f"{_number(_get(lesion, f'{prefix}_diameter_sagittal_mm'))} mm (axial x sagittal)",
        )
    )


def _best_echo(mri: Volume, masks: LesionMasks | None, lesion: Mapping[str, Any]) -> int | None:
    """The echo with the largest |CNR| of ROI against shell: from the row, else measured."""
    if not mri.channel_axes:
        return None
    echo = _get(lesion, "mri_cnr_echo")
    if echo is not None:
        return int(echo)
    if masks is None or not masks.shell.any():
        return 0
    box = Geometry(masks.roi.shape, masks.affine)
    best, best_cnr = 0, -1.0
    for n in range(mri.shape[0]):
        values = resample_to(mri.echo(n), box).array  # type: ignore[attr-defined]
        shell = values[masks.shell]
        sd = float(shell.std(ddof=1)) if shell.size > 1 else 0.0
        cnr = abs(float(values[masks.roi].mean()) - float(shell.mean())) / sd if sd else 0.0
        if cnr > best_cnr:
            best, best_cnr = n, cnr
    return best


def _half_width_mm(lesion: Mapping[str, Any], masks: LesionMasks | None) -> float:
    sizes = [MIN_HALF_WIDTH_MM / 2]
    for key in ("ct_diameter_axial_mm", "ct_diameter_sagittal_mm"):
        value = _get(lesion, key)
        if value is not None:
            sizes.append(float(value))
    volume = _get(lesion, "roi_volume_mm3")
    if volume is not None:
        sizes.append(2 * (3 * float(volume) / (4 * math.pi)) ** (1 / 3))
    if masks is not None:
        extent = np.asarray(masks.roi.shape) * np.linalg.norm(masks.affine[:3, :3], axis=0)
        sizes.append(float(extent.max()) / 2)
    return max(MIN_HALF_WIDTH_MM, 1.5 * max(sizes))


def _mask_slice(
    mask: NDArray[np.bool_] | None,
    masks: LesionMasks | None,
    plane: Plane,
    center: NDArray[np.float64],
    pixel_mm: float,
    half_width_mm: float,
) -> NDArray[np.bool_] | None:
    if mask is None or masks is None or not mask.any():
        return None
    labels = LabelMap(mask.astype(np.uint8), masks.affine)
    image, _ = extract_slice(labels, plane, center, pixel_mm=pixel_mm, half_width_mm=half_width_mm)
    return image > 0


def _display_xy(
    axes: tuple[NDArray[np.float64], NDArray[np.float64]],
    center: NDArray[np.float64],
    line: MeasuredLine,
) -> tuple[tuple[float, float], tuple[float, float]]:
    u, v = axes
    start = np.asarray(line.start_lps_mm) - center
    end = np.asarray(line.end_lps_mm) - center
    return (float(start @ u), float(end @ u)), (float(start @ v), float(end @ v))


def _lines(
    segmentation: NDArray[np.bool_] | None,
    masks: LesionMasks | None,
    plane: Plane,
    axes: tuple[NDArray[np.float64], NDArray[np.float64]],
    center: NDArray[np.float64],
) -> list[tuple[tuple[float, float], tuple[float, float], str]]:
    if segmentation is None or masks is None or not segmentation.any():
        return []
    if plane == "axial":
        line = axial_feret_line(segmentation, affine=masks.affine)
        kind = "axial"
    else:
        line = craniocaudal_line(segmentation, affine=masks.affine)
        kind = "sagittal"
    if line is None:
        return []
    label = f"{kind} {line.length_mm:.1f} mm"
    half_slice_mm = float(np.abs(masks.affine[2, :3]).max()) / 2
    if plane == "axial" and abs(line.start_lps_mm[2] - center[2]) > half_slice_mm:
        label += f" (max in the slice at S {line.start_lps_mm[2]:.1f} mm)"
    x, y = _display_xy(axes, center, line)
    return [(x, y, label)]


def lesion_panels(
    *,
    ct: CTVolume,
    sct: CTVolume,
    lesion: LesionResult | Mapping[str, Any],
    mri: Volume | None = None,
    masks: LesionMasks | None = None,
    half_width_mm: float | None = None,
    ct_window_hu: tuple[float, float] = CALCIFICATION_WINDOW_HU,
) -> list[list[Panel]]:
    """The panels of :func:`lesion_figure`: rows axial and sagittal, columns CT | sCT | MRI.

    Parameters are those of :func:`lesion_figure`. Returns one list of panels per row.
    """
    row = lesion.to_dict() if isinstance(lesion, LesionResult) else dict(lesion)
    if masks is None and isinstance(lesion, LesionResult):
        masks = lesion.masks
    center = np.array(
        [float(row[f"roi_center_{axis}_mm"]) for axis in ("l", "p", "s")], dtype=np.float64
    )
    half = float(half_width_mm) if half_width_mm is not None else _half_width_mm(row, masks)
    pixel = float(min(ct.spacing_mm))
    level, width = ct_window_hu
    window = (level - width / 2, level + width / 2)
    echo = None if mri is None else _best_echo(mri, masks, row)
    rows: list[list[Panel]] = []
    for plane in ("axial", "sagittal"):
        grid = display_geometry(ct, plane, center, pixel_mm=pixel, half_width_mm=half)
        axes = (grid.affine[:3, 0] / pixel, grid.affine[:3, 1] / pixel)
        roi = _mask_slice(None if masks is None else masks.roi, masks, plane, center, pixel, half)
        panels = []
        for prefix, volume, title in (("ct", ct, "CT"), ("sct", sct, "synthetic CT")):
            image, extent = extract_slice(volume, plane, center, pixel_mm=pixel, half_width_mm=half)
            seg_3d = None if masks is None else getattr(masks, f"{prefix}_segmentation")
            panels.append(
                Panel(
                    title=title,
                    text=_ct_text(row, prefix),
                    image=image,
                    extent=extent,
                    window=window,
                    roi=roi,
                    segmentation=_mask_slice(seg_3d, masks, plane, center, pixel, half),
                    lines=_lines(seg_3d, masks, plane, axes, center),
                )
            )
        if mri is not None:
            image, extent = extract_slice(
                mri, plane, center, channel=echo, pixel_mm=pixel, half_width_mm=half
            )
            panels.append(_mri_panel(mri, echo, row, image, extent, roi))
        rows.append(panels)
    return rows


def _mri_panel(
    mri: Volume,
    echo: int | None,
    row: Mapping[str, Any],
    image: NDArray[np.float64],
    extent: tuple[float, float, float, float],
    roi: NDArray[np.bool_] | None,
) -> Panel:
    title = "MRI source"
    if echo is not None:
        title += f", echo {echo + 1}"
        tes = getattr(mri, "echo_times_ms", None)
        if tes:
            title += f" (TE {tes[echo]:g} ms)"
    cnr = _get(row, "mri_cnr")
    text = "" if cnr is None else _visibility_text(_get(row, "mri_visible"), cnr)
    vmax = float(np.percentile(image, 99.5)) if image.size else 1.0
    return Panel(
        title=title,
        text=text,
        image=image,
        extent=extent,
        window=(min(0.0, float(image.min())), vmax if vmax > 0 else 1.0),
        roi=roi,
    )


def _contour(ax: Any, mask: NDArray[np.bool_], extent: tuple[float, ...], **style: Any) -> None:
    rows, cols = mask.shape
    left, right, bottom, top = extent
    xs = left + (np.arange(cols) + 0.5) * (right - left) / cols
    ys = top + (np.arange(rows) + 0.5) * (bottom - top) / rows
    ax.contour(xs, ys, mask.astype(float), levels=[0.5], **style)


def lesion_figure(
    path: str | os.PathLike[str],
    *,
    ct: CTVolume,
    sct: CTVolume,
    lesion: LesionResult | Mapping[str, Any],
    mri: Volume | None = None,
    masks: LesionMasks | None = None,
    title: str | None = None,
    half_width_mm: float | None = None,
    ct_window_hu: tuple[float, float] = CALCIFICATION_WINDOW_HU,
    dpi: int = 100,
) -> Path:
    """Write the lesion's figure (PNG, atomically): CT | sCT | MRI, axial and sagittal.

    Parameters
    ----------
    path : path
        Output PNG; its folder must exist.
    ct, sct : CTVolume
        Reference and synthetic CT in HU (the grid the lesion was measured on).
    lesion : LesionResult or mapping
        The measured lesion, or its row (:meth:`LesionResult.to_dict` keys: ``roi_center_*``,
        ``ct_mean_hu``, ``ct_visible``, ``ct_cnr``, diameters, ``mri_cnr_echo`` ...).
    mri : Volume, optional
        The MRI source in the CT's frame (any grid); adds a third column with the echo of best
        lesion contrast (``mri_cnr_echo`` of the row, else measured on ROI and shell).
    masks : LesionMasks, optional
        ROI and segmentations (taken from a LesionResult when omitted); without them the
        panels carry no outlines and no lines.
    title : str, optional
        Figure title; by default the lesion id, name and calcification grade.
    half_width_mm : float, optional
        Half-width of the zoomed view; by default 1.5 x the largest lesion size, >= 12 mm.
    ct_window_hu : (level, width)
        CT/sCT window in HU (default :data:`CALCIFICATION_WINDOW_HU`).
    dpi : int
        Resolution: the PNG is ``3 * columns * dpi`` x ``6.6 * dpi`` pixels.

    Returns
    -------
    Path
        The PNG written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = lesion_panels(
        ct=ct,
        sct=sct,
        lesion=lesion,
        mri=mri,
        masks=masks,
        half_width_mm=half_width_mm,
        ct_window_hu=ct_window_hu,
    )
    row = lesion.to_dict() if isinstance(lesion, LesionResult) else dict(lesion)
    n_cols = len(rows[0])
    fig = plt.figure(figsize=(PANEL_INCHES * n_cols, PANEL_INCHES * len(rows) + TITLE_INCHES))
    top = 1 - TITLE_INCHES / (PANEL_INCHES * len(rows) + TITLE_INCHES)
    grid = fig.add_gridspec(len(rows), n_cols, left=0.01, right=0.99, bottom=0.01, top=top)
    for r, panels in enumerate(rows):
        plane = ("axial", "sagittal")[r]
        for c, panel in enumerate(panels):
            ax = fig.add_subplot(grid[r, c])
            _draw(ax, panel, f"{panel.title}, {plane}")
    if title is None:
        name = _get(row, "lesion_name")
        title = f"lesion {row.get('lesion_id', '?')}" + (f" ({name})" if name else "")
        grade = _get(row, "calcification_grade")
        if grade:
            title += f"; CT calcification: {str(grade).replace('_', ' ')}"
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, dpi=dpi)


def _draw(ax: Any, panel: Panel, title: str) -> None:
    vmin, vmax = panel.window
    ax.imshow(
        panel.image,
        cmap="gray",
        vmin=vmin,
        vmax=vmax,
        extent=panel.extent,
        interpolation="nearest",
    )
    if panel.roi is not None and panel.roi.any():
        _contour(
            ax, panel.roi, panel.extent, colors=_ROI_COLOR, linewidths=0.8, linestyles="dashed"
        )
    if panel.segmentation is not None and panel.segmentation.any():
        _contour(ax, panel.segmentation, panel.extent, colors=_SEGMENTATION_COLOR, linewidths=0.8)
    for n, (xs, ys, label) in enumerate(panel.lines):
        ax.plot(xs, ys, color=_LINE_COLOR, linewidth=1.5, marker="o", markersize=2.5)
        ax.text(
            0.02,
            0.02 + 0.07 * n,
            label,
            transform=ax.transAxes,
            color=_LINE_COLOR,
            fontsize=7,
            va="bottom",
            bbox=_TEXT_BOX,
        )
    if panel.text:
        ax.text(
            0.02,
            0.98,
            panel.text,
            transform=ax.transAxes,
            color="white",
            fontsize=7,
            va="top",
            bbox=_TEXT_BOX,
        )
    left, right, bottom, top = panel.extent
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.set_title(title, fontsize=8, pad=2)
    ax.set_xticks([])
    ax.set_yticks([])
