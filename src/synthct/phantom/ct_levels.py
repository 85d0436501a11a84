"""Vertebral levels on a labelled real CT, and whether a lesion fits there.

A lesion requested "at L1" of a CT-derived case is placed in the canal at the labelled L1
vertebra; the CT must hold that vertebra and the whole lesion, or the request is refused with
what the CT does cover.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from synthct.geometry import Geometry
from synthct.phantom.model import PhantomParameterError
from synthct.phantom.spine_columns import cranial_axis
from synthct.volume import LabelMap

#: Vertebra names in TotalSegmentator v2 order (class 26 = S1 ... class 50 = C1).
_NAMES = (
    "S1",
    *(f"L{n}" for n in range(5, 0, -1)),
    *(f"T{n}" for n in range(12, 0, -1)),
    *(f"C{n}" for n in range(7, 0, -1)),
)
#: TotalSegmentator v2 class number of each vertebra name.
VERTEBRA_LABELS: dict[str, int] = {name: 26 + i for i, name in enumerate(_NAMES)}
_CORD = 79


def labelled_levels(labels: LabelMap) -> list[str]:
    """Names of the vertebrae present in ``labels``, cranial first."""
    present = set(np.unique(labels.array).tolist())
    return [name for name in reversed(_NAMES) if VERTEBRA_LABELS[name] in present]


def level_centre_lps_mm(labels: LabelMap, level: str) -> NDArray[np.float64]:
    """Centre of the canal at a labelled vertebra, in LPS mm.

    The labelled cord's centre within the vertebra's axial planes; without a cord label, the
    vertebra's centre shifted dorsally by a third of its depth (the canal lies behind the
    body).

    Raises
    ------
    PhantomParameterError
        When ``level`` is not a vertebra name or the label map does not hold it.
    """
    name = level.strip().upper()
    if name not in VERTEBRA_LABELS:
        raise PhantomParameterError(
            f"{level!r} is not a vertebra", path="level", fix="write e.g. 'T12', 'L1' or 'C5'"
        )
    vertebra = labels.array == VERTEBRA_LABELS[name]
    if not vertebra.any():
        have = labelled_levels(labels)
        covered = f"{have[0]}-{have[-1]}" if have else "no vertebrae"
        raise PhantomParameterError(
            f"the CT's labels do not hold {name} (they hold {covered}): the CT is too small for "
            f"a lesion at {name}, or the vertebra was not segmented",
            path=labels.source or "labels",
            fix="choose a level the CT covers, or give a CT that reaches this level",
        )
    geometry = labels.geometry
    axis, _ = cranial_axis(geometry)
    planes = np.moveaxis(vertebra, axis, 0).any(axis=(1, 2))
    cord = np.moveaxis(labels.array == _CORD, axis, 0).copy()
    cord[~planes] = False
    if cord.any():
        ijk = np.argwhere(np.moveaxis(cord, 0, axis))
        return np.asarray(geometry.index_to_lps(ijk).mean(axis=0))
    points = geometry.index_to_lps(np.argwhere(vertebra))
    centre = points.mean(axis=0)
    centre[1] += np.ptp(points[:, 1]) / 3.0  # +P is dorsal
    return np.asarray(centre)


def check_lesion_fits(
    geometry: Geometry,
    centre_lps_mm: NDArray[np.float64] | tuple[float, float, float],
    semi_axes_mm: NDArray[np.float64],
    *,
    where: str = "the requested site",
) -> None:
    """Refuse a lesion whose bounding box leaves the CT's field of view.

    Raises
    ------
    PhantomParameterError
        Naming the axis and how many mm of the lesion lie outside the CT.
    """
    centre = np.asarray(centre_lps_mm, dtype=np.float64)
    corners = np.array(
        [
            centre + np.array([sx, sy, sz]) * semi_axes_mm
            for sx in (-1, 1)
            for sy in (-1, 1)
            for sz in (-1, 1)
        ]
    )
    ijk = geometry.lps_to_index(corners)
    shape = np.asarray(geometry.shape)
    below = np.maximum(-0.5 - ijk.min(axis=0), 0.0)
    above = np.maximum(ijk.max(axis=0) - (shape - 0.5), 0.0)
    outside_mm = np.maximum(below, above) * np.asarray(geometry.spacing_mm)
    if np.any(outside_mm > 0):
        axis = int(np.argmax(outside_mm))
        raise PhantomParameterError(
            f"the CT is too small for this lesion at {where}: it reaches "
            f"{outside_mm[axis]:.1f} mm beyond the CT's field of view along array axis {axis} "
            f"(CT extent {', '.join(f'{e:.0f}' for e in geometry.extent_mm)} mm)",
            path="lesion",
            fix="choose a smaller lesion or another level, or give a CT that covers the site",
        )
