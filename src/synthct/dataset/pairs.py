"""Registered pairs: the MR resampled onto the CT grid through the rigid transform of QA.

``synthct dataset check`` registers each case's MR to its CT (:mod:`synthct.dataset.registration`)
and, where the registration moved the MR and raised the mutual information, writes the transform
as an ITK transform file (:func:`write_transform`) that the case's manifest row names in the
column :data:`TRANSFORM_COLUMN`. ``synthct dataset split`` then writes each such case as a
*registered pair* (:func:`write_pair`): on the CT grid, cropped to where the MR lies, with the
MR resampled through the transform (linear, SimpleITK), and a body mask limited to the MR's
field of view. The split's manifest names these files, so training, evaluation and validation
all read the same aligned pair and none of them registers anything itself.

A registered pair may also be one *slab* of a case (:class:`~synthct.dataset.slabs.Slab`): an
index range of the CT grid along its cranio-caudal axis, so that one scan pair can be trained
on one part of its slices and evaluated on another.

Transform convention: the file holds ITK's resampling transform of the MR onto the CT grid,
i.e. it maps CT-frame points (LPS mm) to MR-frame points, the inverse of
:attr:`RigidResult.matrix <synthct.dataset.registration.RigidResult.matrix>` (MR to CT).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from synthct.case import SERIES_UID_COLUMNS, Case
from synthct.dataset.slabs import Slab
from synthct.errors import SynthctError
from synthct.geometry import Geometry
from synthct.manifest import TRANSFORM_COLUMN
from synthct.volume import CTVolume, LabelMap, MultiEchoMR, ScalarVolume, Volume

__all__ = [
    "TRANSFORM_COLUMN",
    "mr_coverage",
    "read_transform",
    "registered_mr",
    "transform_for",
    "write_pair",
    "write_transform",
]


def write_transform(path: str | os.PathLike[str], mr_to_ct: NDArray[np.float64]) -> Path:
    """Write the rigid MR-to-CT transform as an ITK transform file (atomically).

    Parameters
    ----------
    path : path
        ``.tfm`` (or ``.txt``) file to write.
    mr_to_ct : (4, 4) ndarray
        LPS affine mapping MR-frame points to CT-frame points (a registration's result); the
        file holds its inverse, the transform that resamples the MR onto the CT grid.

    Returns
    -------
    Path
        The file written.
    """
    import SimpleITK as sitk

    from synthct.io.atomic import atomic_file

    inverse = np.linalg.inv(np.asarray(mr_to_ct, dtype=np.float64))
    transform = sitk.AffineTransform(3)
    transform.SetMatrix([float(v) for v in inverse[:3, :3].ravel()])
    transform.SetTranslation([float(v) for v in inverse[:3, 3]])
    target = Path(path)
    with atomic_file(target) as tmp:  # the temporary name ends in the final suffix (ITK's cue)
        sitk.WriteTransform(transform, str(tmp))
    return target


def read_transform(path: str | os.PathLike[str]) -> Any:
    """The ITK transform (CT-frame points to MR-frame points) written by :func:`write_transform`.

    Raises
    ------
    SynthctError
        The file is missing or not an ITK transform.
    """
    import SimpleITK as sitk

    p = Path(path)
    if not p.is_file():
        raise SynthctError(
            "the MR-to-CT transform file is missing",
            path=p,
            fix=f"run `synthct dataset check` again, or empty the {TRANSFORM_COLUMN} column",
        )
    try:
        return sitk.ReadTransform(str(p))
    except RuntimeError as exc:
        raise SynthctError(
            f"not an ITK transform file ({str(exc).splitlines()[0] if str(exc) else exc})",
            path=p,
            fix=f"run `synthct dataset check` again, or empty the {TRANSFORM_COLUMN} column",
        ) from exc


def transform_for(case: Case) -> Any | None:
    """The case's transform (:data:`TRANSFORM_COLUMN`), or ``None`` for identity."""
    value = case.extra.get(TRANSFORM_COLUMN)
    if value is None or str(value).strip() == "":
        return None
    return read_transform(value)


def registered_mr(mr: MultiEchoMR, ct_grid: Geometry, transform: Any | None) -> MultiEchoMR:
    """The MR resampled onto the CT grid through ``transform`` (``None``: identity), linear."""
    from synthct.resample import resample_to

    return resample_to(mr, ct_grid, transform=transform, fill_value=0.0)


def mr_coverage(mr: Volume, ct_grid: Geometry, transform: Any | None) -> NDArray[np.bool_]:
    """CT-grid voxels whose centre lies inside the MR's field of view (after ``transform``)."""
    from synthct.resample import resample_to

    inside = ScalarVolume(np.ones(mr.spatial_shape, np.float32), mr.affine)
    moved = resample_to(inside, ct_grid, transform=transform, fill_value=0.0)
    return np.asarray(moved.array > 0.5)


def _crop_box(covered: NDArray[np.bool_], slab: Slab | None) -> tuple[slice, slice, slice] | None:
    keep = covered.copy()
    if slab is not None:
        index = [slice(None)] * 3
        index[slab.axis] = slice(0, slab.start)
        keep[tuple(index)] = False
        index[slab.axis] = slice(slab.stop, None)
        keep[tuple(index)] = False
    if not keep.any():
        return None
    box = []
    for a in range(3):
        hit = np.flatnonzero(keep.any(axis=tuple(b for b in range(3) if b != a)))
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return (box[0], box[1], box[2])


def _cropped(volume: Volume, box: tuple[slice, slice, slice]) -> Any:
    affine = volume.affine.copy()
    affine[:3, 3] = volume.geometry.index_to_lps([s.start for s in box])
    index = (slice(None), *box) if volume.channel_axes else box
    return volume.on_grid(np.ascontiguousarray(volume.array[index]), affine)


def write_pair(case: Case, folder: str | os.PathLike[str], *, slab: Slab | None = None) -> Case:
    """Write ``case`` as a registered pair (see the module docstring) into ``folder``.

    Files: ``ct.nii.gz`` (HU), ``mr.nii.gz`` (every channel, 4D, with its protocol sidecar)
    and ``mask.nii.gz`` (the given body mask, or one derived from the CT, within the MR's
    field of view), all on the CT grid cropped to the box of the MR's field of view (and to
    ``slab``).

    Parameters
    ----------
    case : Case
        Needs ``ct`` and ``mr``; its :data:`TRANSFORM_COLUMN` (if any) is applied.
    folder : path
        Folder to create (inside a folder being written atomically).
    slab : Slab, optional
        Keep only this slab of the CT grid.

    Returns
    -------
    Case
        The case with its images replaced by the files written (the transform and DICOM series
        columns emptied).

    Raises
    ------
    SynthctError
        The MR does not overlap the CT (or the slab), or an image cannot be read.
    """
    from synthct.imaging.body_mask import body_mask_volume
    from synthct.io import write_volume
    from synthct.resample import resample_to

    ct, mr = case.ct(), case.mr()
    transform = transform_for(case)
    covered = mr_coverage(mr, ct.geometry, transform)
    box = _crop_box(covered, slab)
    if box is None:
        raise SynthctError(
            f"case {case.case_id!r}: the MR does not overlap the CT"
            + (f" within the {slab.part} slab" if slab is not None else ""),
            path=case.path("mr"),
            fix="check the case's QA row (no_overlap) and leave it out of the split",
        )
    if case.has("body_mask"):
        mask = case.labels("body_mask")
        mask = mask if mask.same_geometry(ct) else resample_to(mask, ct)
    else:
        mask = body_mask_volume(ct)
    body = (mask.array > 0) & covered
    out = Path(folder)
    out.mkdir(parents=True)
    ct_out: CTVolume = _cropped(ct, box)
    write_volume(ct_out.with_array(np.rint(ct_out.array).astype(np.int16)), out / "ct.nii.gz")
    write_volume(_cropped(registered_mr(mr, ct.geometry, transform), box), out / "mr.nii.gz")
    write_volume(_cropped(LabelMap(body.astype(np.uint8), ct.affine), box), out / "mask.nii.gz")
    case.unload()
    # the files written are the pair: no transform left to apply, no DICOM series to pick
    extra = {**case.extra, TRANSFORM_COLUMN: "", **dict.fromkeys(SERIES_UID_COLUMNS.values(), "")}
    images: dict[str, Path | list[Path]] = {
        "ct": out / "ct.nii.gz", "mr": [out / "mr.nii.gz"], "body_mask": out / "mask.nii.gz"
    }  # fmt: skip
    return Case(case.case_id, images, case.meta, extra)
