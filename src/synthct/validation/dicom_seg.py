"""The lesion masks as a binary DICOM SEG referencing the CT series (see
:mod:`synthct.validation.dicom_seg_sr`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydicom.dataset import Dataset

from synthct.errors import GeometryMismatchError, WriteError
from synthct.geometry import Geometry
from synthct.io.deidentify import mark_deidentified
from synthct.io.dicom_references import (
    MANUFACTURER,
    CTSource,
    lesion_tracking_uid,
    read_ct_datasets,
    save_dataset,
)
from synthct.validation.lesion_metrics import LesionResult
from synthct.version import __version__
from synthct.volume import LabelMap

__all__ = ["masks_from_results", "write_lesion_seg"]

_UNIT_TOLERANCE = 1e-3
_INDEX_TOLERANCE = 1e-2


def masks_from_results(
    results: Sequence[LesionResult],
    shape: tuple[int, int, int],
    *,
    which: Literal["roi", "ct_segmentation", "sct_segmentation"] = "roi",
) -> dict[int, NDArray[np.bool_]]:
    """``{lesion_id: mask}`` on the whole CT grid of ``shape``, for :func:`write_lesion_seg`.

    ``which`` picks the annotation ROI (default) or the CT or sCT segmentation; a lesion
    without masks, or whose chosen mask is empty (a segmentation of a lesion not visible),
    is left out.
    """
    out = {}
    for result in results:
        if result.masks is not None:
            mask = result.masks.on_grid(which, shape)
            if mask.any():
                out[int(result.lesion_id)] = mask
    return out


def _lesion_masks(
    masks: LabelMap | Mapping[int, ArrayLike] | ArrayLike, affine: ArrayLike | None
) -> tuple[dict[int, NDArray[np.bool_]], Geometry, dict[int, str]]:
    """The masks as ``{lesion_id: bool array}`` on one grid, and the lesions' names."""
    names: dict[int, str] = {}
    if isinstance(masks, LabelMap):
        names = dict(masks.label_names)
        return {k: masks.mask(k) for k in masks.labels()}, masks.geometry, names
    if affine is None:
        raise WriteError(
            "masks given as arrays need the affine of their grid",
            path="affine",
            fix="pass affine=ct.affine (the CT volume read from the same series)",
        )
    if isinstance(masks, Mapping):
        arrays = {int(k): np.asarray(v, dtype=bool) for k, v in masks.items()}
    else:
        labels = np.asarray(masks)
        arrays = {int(k): labels == k for k in np.unique(labels) if k != 0}
    shapes = {a.shape for a in arrays.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3:
        raise WriteError(
            f"lesion masks must be 3D arrays of one shape, got {sorted(shapes)}", path="masks"
        )
    return arrays, Geometry(next(iter(shapes)), affine), names  # type: ignore[arg-type]


def _frame_indices(ds: Dataset, geometry: Geometry) -> tuple[NDArray[np.intp], ...] | None:
    """Grid indices ``(i, j, k)``, each (rows, columns), of the pixels of one slice file.

    None when the slice lies outside the grid; raises when it is not on the grid at all.
    """
    position = np.asarray(ds.ImagePositionPatient, dtype=np.float64)
    orientation = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
    row_mm, column_mm = (float(v) for v in ds.PixelSpacing)
    origin = geometry.lps_to_index(position)
    step_column = geometry.lps_to_index(position + orientation[:3] * column_mm) - origin
    step_row = geometry.lps_to_index(position + orientation[3:] * row_mm) - origin
    axes: list[tuple[int, int]] = []
    for step in (step_row, step_column):
        axis = int(np.argmax(np.abs(step)))
        if abs(abs(step[axis]) - 1) > _UNIT_TOLERANCE or np.sum(np.abs(step)) - 1 > _UNIT_TOLERANCE:
            axes = []
            break
        axes.append((axis, int(np.sign(step[axis]))))
    if (
        len(axes) != 2
        or axes[0][0] == axes[1][0]
        or np.any(np.abs(origin - np.round(origin)) > _INDEX_TOLERANCE)
    ):
        raise GeometryMismatchError(
            f"CT slice {ds.SOPInstanceUID} does not lie on the grid of the masks (its first "
            f"pixel is at grid index {np.round(origin, 3).tolist()})",
            path="masks",
            fix="give the masks on the grid of the CT read from this very series "
            "(synthct.io.read_volume(folder)), e.g. LesionMasks.on_grid(...) of that CT",
        )
    start = np.round(origin).astype(np.intp)
    normal = 3 - axes[0][0] - axes[1][0]
    if not 0 <= start[normal] < geometry.shape[normal]:
        return None
    rows, columns = np.meshgrid(np.arange(int(ds.Rows)), np.arange(int(ds.Columns)), indexing="ij")
    index = [np.full(rows.shape, start[normal], dtype=np.intp) for _ in range(3)]
    (row_axis, row_sign), (column_axis, column_sign) = axes
    index[row_axis] = start[row_axis] + row_sign * rows
    index[column_axis] = start[column_axis] + column_sign * columns
    return tuple(index)


def _frames(
    datasets: Sequence[Dataset], masks: Mapping[int, NDArray[np.bool_]], geometry: Geometry
) -> tuple[list[Dataset], NDArray[np.uint8]]:
    """The slice files that hold lesion pixels and their frames (slice, row, col, segment)."""
    union = np.zeros(geometry.shape, dtype=bool)
    for mask in masks.values():
        union |= mask
    used: list[Dataset] = []
    frames: list[NDArray[np.uint8]] = []
    for ds in datasets:
        index = _frame_indices(ds, geometry)
        if index is None:
            continue
        inside = np.ones(index[0].shape, dtype=bool)
        for axis, n in enumerate(geometry.shape):
            inside &= (index[axis] >= 0) & (index[axis] < n)
        clipped = tuple(np.where(inside, i, 0) for i in index)
        if not np.any(union[clipped] & inside):
            continue
        frame = np.stack([mask[clipped] & inside for mask in masks.values()], axis=-1)
        used.append(ds)
        frames.append(frame.astype(np.uint8))
    covered = np.zeros(len(masks), dtype=np.int64)
    for stored in frames:
        covered += stored.sum(axis=(0, 1), dtype=np.int64)
    totals = np.array([int(m.sum()) for m in masks.values()])
    if np.any(covered != totals):
        missing = [k for k, c, t in zip(masks, covered, totals, strict=True) if c != t]
        raise GeometryMismatchError(
            f"lesion(s) {missing} have voxels on no slice of the CT series",
            path="masks",
            fix="write the SEG against the full series the masks were made on",
        )
    return used, np.stack(frames)


def write_lesion_seg(
    ct: CTSource,
    masks: LabelMap | Mapping[int, ArrayLike] | ArrayLike,
    path: str | os.PathLike[str],
    *,
    affine: ArrayLike | None = None,
    lesion_names: Mapping[int, str] | None = None,
    series_number: int = 900,
    series_description: str = "synthct lesion segmentation",
    overwrite: bool = True,
    deidentify: bool = False,
) -> Path:
    """Write the lesion masks as a binary DICOM SEG referencing the CT series.

    Parameters
    ----------
    ct : path or sequence of pydicom.Dataset
        The CT series (folder or datasets) the masks are on.
    masks : LabelMap, mapping of int to (I, J, K) array, or (I, J, K) int array
        The lesions on the CT grid: a label map (one label per lesion), ``{lesion_id: mask}``
        or a label array. Arrays need ``affine``.
    path : path
        Output file (e.g. ``lesions.seg.dcm``).
    affine : (4, 4) array_like, optional
        Voxel index to LPS of the masks' grid, for arrays (e.g. ``ct_volume.affine``).
    lesion_names : mapping of int to str, optional
        Segment labels; default the label map's names, else ``lesion <id>``.
    series_number, series_description : int, str
        Of the new SEG series.
    overwrite : bool
        Replace an existing file.
    deidentify : bool
        Apply the Basic Profile (:mod:`synthct.io.deidentify`) to what is copied from the CT
        headers (patient, study, UIDs); ``synthct validate`` does unless --keep-identifiers.

    Returns
    -------
    Path

    Raises
    ------
    GeometryMismatchError
        A slice of the series is not on the masks' grid, or a lesion lies outside the series.
    WriteError
        No lesion, an empty lesion mask, arrays without an affine.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    arrays, geometry, names = _lesion_masks(masks, affine)
    names.update(lesion_names or {})
    empty = [k for k, m in arrays.items() if not m.any()]
    if not arrays or empty:
        raise WriteError(
            f"no lesion to write, or empty lesion mask(s) {empty}",
            path=path,
            fix="pass one non-empty mask per lesion",
        )
    datasets = read_ct_datasets(ct, deidentify=deidentify)
    used, frames = _frames(datasets, arrays, geometry)
    series_uid = str(datasets[0].SeriesInstanceUID)
    algorithm = hd.AlgorithmIdentificationSequence(
        name="synthct", version=__version__, family=codes.cid7162.ArtificialIntelligence
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=names.get(lesion_id, f"lesion {lesion_id}")[:64],
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Lesion,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
            algorithm_identification=algorithm,
            tracking_uid=lesion_tracking_uid(series_uid, lesion_id),
            tracking_id=f"lesion-{lesion_id}",
        )
        for number, lesion_id in enumerate(arrays, start=1)
    ]
    seg = hd.seg.Segmentation(
        source_images=used,
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name="synthct",
        software_versions=__version__,
        device_serial_number="0",
        content_label="LESIONS",
        content_description=series_description[:64],
        series_description=series_description[:64],
    )
    if deidentify:
        mark_deidentified(seg)
    return save_dataset(seg, path, overwrite)
