"""Flagged regions: connected components of the flag map, with where, how big and why.

A region is a 26-connected component of ``flag_score >= 1`` with at least the calibration's
minimum volume; components closer than the calibration's ``merge_gap_mm`` are one region (one
finding to review: the reference model's picture of a tumour can break into fragments a few
millimetres apart around it). For each: voxel count and volume, the bounding box (voxel indices
and LPS corners), its size in mm along the MRI's array axes, the centre (flag-score-weighted
centroid) and the peak in LPS mm, peak and mean flag score, the signals that fired (those whose
``z_s / t_s`` reaches 1 in the region) with their peak ratios, and, when the MRI consistency
signal fired, whether the MRI is darker or brighter than the sCT allows there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from synthct.geometry import Geometry

_STRUCTURE = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True)
class FlaggedRegion:
    """One flagged region (see the module docstring); lengths in mm, positions in LPS mm."""

    id: int
    n_voxels: int
    volume_mm3: float
    centre_lps_mm: tuple[float, float, float]
    peak_lps_mm: tuple[float, float, float]
    bbox_index: tuple[tuple[int, int, int], tuple[int, int, int]]
    bbox_lps_mm: tuple[tuple[float, float, float], tuple[float, float, float]]
    size_mm: tuple[float, float, float]
    peak_score: float
    mean_score: float
    signals_fired: tuple[str, ...]
    signal_peaks: dict[str, float]
    direction: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id": self.id,
            "n_voxels": self.n_voxels,
            "volume_mm3": self.volume_mm3,
            "centre_lps_mm": list(self.centre_lps_mm),
            "peak_lps_mm": list(self.peak_lps_mm),
            "bbox_index": [list(self.bbox_index[0]), list(self.bbox_index[1])],
            "bbox_lps_mm": [list(self.bbox_lps_mm[0]), list(self.bbox_lps_mm[1])],
            "size_mm": list(self.size_mm),
            "peak_score": self.peak_score,
            "mean_score": self.mean_score,
            "signals_fired": list(self.signals_fired),
            "signal_peaks": dict(self.signal_peaks),
            "direction": self.direction,
        }


def find_regions(
    score: NDArray[np.float32],
    ratios: Mapping[str, NDArray[np.float32]],
    geometry: Geometry,
    *,
    min_voxels: int,
    consistency_sign: NDArray[np.float32] | None = None,
    merge_gap_mm: float = 0.0,
) -> tuple[NDArray[np.uint16], list[FlaggedRegion]]:
    """Label the flagged regions and describe each, strongest first (ids 1, 2, ...).

    Parameters
    ----------
    score : (I, J, K) ndarray
        The flag score (:func:`synthct.audit.combine.flag_score`).
    ratios : mapping of str to ndarray
        Each signal's ``z_s / t_s`` (all signals, in the rule or not: a region lists every
        signal that reaches 1 in it).
    geometry : Geometry
        The MRI grid.
    min_voxels : int
        Smallest region kept.
    consistency_sign : ndarray, optional
        The signed consistency score, for ``direction``.
    merge_gap_mm : float
        Kept components at most this far apart (surface to surface, mm) form one region;
        0: none merged.

    Returns
    -------
    labels : ndarray of uint16
        Region ids (0 = not flagged).
    regions : list of FlaggedRegion
    """
    labels, n = ndimage.label(score >= 1.0, structure=_STRUCTURE)
    out_labels = np.zeros(score.shape, dtype=np.uint16)
    if n == 0:
        return out_labels, []
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    kept = np.flatnonzero(sizes >= min_voxels)
    kept = kept[kept > 0]
    labels = np.where(np.isin(labels, kept), labels, 0)
    if merge_gap_mm > 0 and kept.size > 1:
        labels = _merge_close(labels, geometry.spacing_mm, merge_gap_mm)
    found = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        mask = labels[box] == index
        found.append((float(score[box][mask].max()), index, box, mask))
    found.sort(key=lambda item: -item[0])
    spacing = np.asarray(geometry.spacing_mm)
    regions = []
    for new_id, (peak, _, box, mask) in enumerate(found, start=1):
        if new_id > np.iinfo(np.uint16).max:
            break
        out_labels[box][mask] = new_id
        local = np.argwhere(mask)
        offset = np.array([s.start for s in box])
        voxels = local + offset
        weights = score[box][mask].astype(np.float64)
        centre_index = (voxels * weights[:, None]).sum(axis=0) / weights.sum()
        peak_index = voxels[int(np.argmax(weights))]
        lo, hi = voxels.min(axis=0), voxels.max(axis=0)
        corners = np.array(
            [
                [a, b, c]
                for a in (lo[0] - 0.5, hi[0] + 0.5)
                for b in (lo[1] - 0.5, hi[1] + 0.5)
                for c in (lo[2] - 0.5, hi[2] + 0.5)
            ]
        )
        corners_lps = geometry.index_to_lps(corners)
        peaks = {name: float(r[box][mask].max()) for name, r in ratios.items()}
        fired = tuple(name for name, value in peaks.items() if value >= 1.0)
        direction = None
        if consistency_sign is not None and "consistency" in fired:
            signed = float(np.mean(consistency_sign[box][mask]))
            direction = "darker" if signed < 0 else "brighter"
        regions.append(
            FlaggedRegion(
                id=new_id,
                n_voxels=len(voxels),
                volume_mm3=float(len(voxels) * geometry.voxel_volume_mm3),
                centre_lps_mm=_triple(geometry.index_to_lps(centre_index)),
                peak_lps_mm=_triple(geometry.index_to_lps(peak_index)),
                bbox_index=(_int_triple(lo), _int_triple(hi)),
                bbox_lps_mm=(_triple(corners_lps.min(axis=0)), _triple(corners_lps.max(axis=0))),
                size_mm=_triple((hi - lo + 1) * spacing),
                peak_score=peak,
                mean_score=float(weights.mean()),
                signals_fired=fired,
                signal_peaks=peaks,
                direction=direction,
            )
        )
    return out_labels, regions


def _merge_close(
    labels: NDArray[np.integer], spacing_mm: tuple[float, float, float], gap_mm: float
) -> NDArray[np.int64]:
    """Relabel ``labels`` so that components at most ``gap_mm`` apart share one label.

    Each component is grown by half the gap (a Euclidean distance in mm); components whose
    grown copies touch are one group. Only the original voxels keep the group's label.
    """
    flagged = labels > 0
    where = np.argwhere(flagged)
    pad = np.ceil(0.5 * gap_mm / np.asarray(spacing_mm)).astype(int) + 1
    lo = np.maximum(where.min(axis=0) - pad, 0)
    hi = np.minimum(where.max(axis=0) + pad + 1, labels.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    distance = ndimage.distance_transform_edt(~flagged[box], sampling=spacing_mm)
    groups, _ = ndimage.label(distance <= 0.5 * gap_mm, structure=_STRUCTURE)
    merged = np.zeros(labels.shape, dtype=np.int64)
    merged[box] = np.where(flagged[box], groups, 0)
    return merged


def _triple(values: Any) -> tuple[float, float, float]:
    v = np.asarray(values, dtype=np.float64)
    return (float(v[0]), float(v[1]), float(v[2]))


def _int_triple(values: Any) -> tuple[int, int, int]:
    v = np.asarray(values)
    return (int(v[0]), int(v[1]), int(v[2]))
