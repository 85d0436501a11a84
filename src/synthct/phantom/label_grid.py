"""Bringing a label map onto its CT's grid, or refusing it with the reason and the fix."""

from __future__ import annotations

import numpy as np

from synthct.errors import GeometryMismatchError
from synthct.resample import resample_to
from synthct.volume import CTVolume, LabelMap

#: Labels on another grid are resampled when they cover at least this fraction of the CT's
#: field of view; below it they are taken to belong to another image and refused.
MIN_COVERED_FRACTION = 0.5
#: Every how many voxels (per axis) the CT's field of view is probed for the coverage.
_PROBE_STEP = 4


def covered_fraction(labels: LabelMap, ct: CTVolume) -> float:
    """Fraction of the CT's voxel centres (probed on a sparse lattice) inside the label grid."""
    axes = [np.arange(0, n, min(_PROBE_STEP, n)) for n in ct.spatial_shape]
    ijk = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    inside = labels.geometry.contains_lps(ct.geometry.index_to_lps(ijk))
    return float(np.mean(inside))


def labels_on_ct_grid(labels: LabelMap, ct: CTVolume) -> tuple[LabelMap, str | None]:
    """``labels`` on the CT's grid, and a note when they had to be resampled.

    Parameters
    ----------
    labels : LabelMap
        Anatomical labels meant for ``ct``.
    ct : CTVolume
        The CT whose grid the labels must share.

    Returns
    -------
    LabelMap, str or None
        The labels on the CT grid (nearest-neighbour resampling when their grid differs but
        covers the CT) and a sentence saying so (None when nothing was resampled).

    Raises
    ------
    GeometryMismatchError
        When the label grid covers less than :data:`MIN_COVERED_FRACTION` of the CT.
    """
    if labels.same_geometry(ct):
        return labels, None
    covered = covered_fraction(labels, ct)
    name = labels.source or "the label map"
    if covered < MIN_COVERED_FRACTION:
        raise GeometryMismatchError(
            f"the label map lies on another grid than the CT ({labels.geometry.describe()} vs "
            f"{ct.geometry.describe()}) and covers only {covered:.0%} of the CT's field of "
            "view: it belongs to another image, or one header places it wrongly in space",
            path=name,
            fix=f"give the labels made for {ct.source or 'this CT'} (e.g. TotalSegmentator run "
            "on this very file), or resample them onto the CT grid with nearest-neighbour "
            "interpolation first",
        )
    note = (
        f"labels {name} lay on another grid ({labels.geometry.describe()}); resampled onto the "
        f"CT grid by nearest neighbour (they cover {covered:.0%} of the CT)"
    )
    return resample_to(labels, ct), note
