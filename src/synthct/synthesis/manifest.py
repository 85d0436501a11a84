"""The cohort manifest: which MRI echoes and which CT make up each training case.

Format
------
A CSV file with a header row (or a JSON file, below), one row per case. Paths are relative to
the manifest's folder (absolute paths also work).

==================  ======================================================================
column              meaning
==================  ======================================================================
``case_id``         unique name of the case (required)
``ct``              the CT in HU (required); on the MRI grid, or on another grid in the same
                    patient frame, which is then resampled onto the MRI grid (linear)
``mr_echoes``       the echo magnitudes, ``;``-separated, one 3D file per echo in echo order,
                    or a single 4D file holding all echoes (required); echo times come from
                    each file's JSON sidecar (``echo_times_ms``, or BIDS ``EchoTime``)
``lesion_labels``   label map of lesions (0 = none), on the MRI grid or resampled onto it
                    (nearest) (optional, may be empty); patches are drawn more often inside
                    lesions
``tissue_labels``   tissue label map (optional; read by validation, not by training)
``lesion_types``    ``;``-separated lesion types of the case (optional); the training cases'
                    types are declared in the model card's domain
``split``           ``train``, ``validation`` or ``test`` (optional); without it the
                    validation cases are drawn at random with the training seed, and ``test``
                    cases are never used for training
==================  ======================================================================

The manifest is read by the one manifest reader (:mod:`synthct.manifest`): ``mr`` and
``mri`` are accepted for ``mr_echoes``, ``lesions`` for ``lesion_labels``, YAML besides CSV and
JSON, a cohort folder for its ``manifest.csv``; ``val`` for ``validation``.
Other columns are ignored. Images from different scans (not in one patient frame) must be
registered before training; voxels of the MRI grid outside the CT's field of view are never
patch centres (:attr:`Case.ct_coverage`). This is the manifest the phantom cohort writer
(``synthct phantom``) produces. A JSON manifest holds the same keys, as a list of objects or as
``{"cases": [...]}``; there ``mr_echoes`` may also be a list of paths.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from synthct.case import SERIES_UID_COLUMNS
from synthct.case import Case as OneCase
from synthct.errors import SynthctError
from synthct.manifest import ManifestError, refuse_pending_transform
from synthct.manifest import read_manifest as read_one_manifest
from synthct.volume import CTVolume, LabelMap, MultiEchoMR

REQUIRED_COLUMNS = ("case_id", "ct", "mr_echoes")
SPLITS = ("train", "validation", "test")
#: Other spellings of a split accepted in a manifest.
SPLIT_ALIASES = {"val": "validation", "valid": "validation", "training": "train"}


@dataclass(frozen=True)
class CaseRecord:
    """One row of a manifest, with absolute paths."""

    case_id: str
    ct: Path
    mr_echoes: tuple[Path, ...]
    lesion_labels: Path | None = None
    tissue_labels: Path | None = None
    split: str | None = None
    lesion_types: tuple[str, ...] = ()
    ct_series_uid: str | None = None
    mr_series_uid: str | None = None


@dataclass(frozen=True)
class Case:
    """A loaded training case: MRI echoes, CT and optional lesion labels on one grid.

    ``ct_coverage`` marks the MRI voxels inside the original CT's field of view when the CT was
    resampled onto the MRI grid (``None``: the CT covers every voxel).
    """

    case_id: str
    mr: MultiEchoMR
    ct: CTVolume
    lesion_labels: LabelMap | None = None
    ct_coverage: NDArray[np.bool_] | None = None


def _checked_path(p: Path, *, manifest: Path, case_id: str, column: str) -> Path:
    if not p.exists():
        raise ManifestError(
            f"case {case_id!r}: the {column} file {p} does not exist",
            path=manifest,
            fix="correct the path (paths are relative to the manifest's folder)",
        )
    return p


def record_from_case(case: OneCase, *, manifest: Path) -> CaseRecord:
    """The training view of a :class:`synthct.case.Case` (files checked, split validated).

    Raises
    ------
    ManifestError
        No CT or MR, a missing file, or an unknown split, naming the case and the column.
    """
    for role, column in (("ct", "ct"), ("mr", "mr_echoes")):
        if not case.has(role):
            raise ManifestError(
                f"case {case.case_id!r} has no {column}",
                path=manifest,
                fix=f"fill in {column} (the MR channels may also be given as mr or mri)",
            )
    refuse_pending_transform(case, manifest=manifest)
    kw: dict[str, Any] = {"manifest": manifest, "case_id": case.case_id}
    split = case.split
    split = SPLIT_ALIASES.get(split, split) if split is not None else None
    if split is not None and split not in SPLITS:
        raise ManifestError(
            f"case {case.case_id!r} has split {split!r}",
            path=manifest,
            fix=f"use one of {', '.join(SPLITS)} or leave it empty",
        )
    types = case.meta.get("lesion_types") or ""
    types = types if isinstance(types, list) else str(types).split(";")
    optional = {
        role: _checked_path(p, column=role, **kw) if (p := case.path(role)) else None
        for role in ("lesion_labels", "tissue_labels")
    }
    # a DICOM folder that holds other series too (a localizer): the series chosen by its UID
    uids = {r: str(case.extra.get(c) or "").strip() or None for r, c in SERIES_UID_COLUMNS.items()}
    return CaseRecord(
        case_id=case.case_id,
        ct=_checked_path(case.paths("ct")[0], column="ct", **kw),
        mr_echoes=tuple(_checked_path(p, column="mr_echoes", **kw) for p in case.paths("mr")),
        split=split,
        lesion_types=tuple(sorted({str(x).strip() for x in types if str(x).strip()})),
        ct_series_uid=uids["ct"],
        mr_series_uid=uids["mr"],
        **optional,
    )


def read_manifest(path: str | os.PathLike[str]) -> list[CaseRecord]:
    """Read a CSV, YAML or JSON cohort manifest (format in the module docstring).

    Raises
    ------
    ManifestError
        Missing columns, empty or duplicate case ids, missing files, unknown splits.
    """
    manifest = read_one_manifest(path)
    source = manifest.source or Path(path)
    return [record_from_case(case, manifest=source) for case in manifest]


def load_case(record: CaseRecord) -> Case:
    """Read a case's MRI, CT and lesion labels; put CT and labels on the MRI grid."""
    from synthct.io import read_volume
    from synthct.io.echoes import read_echoes
    from synthct.resample import resample_to
    from synthct.volume import ScalarVolume

    coverage = None
    try:
        mr = read_echoes(record.mr_echoes, series_uid=record.mr_series_uid)
        ct = read_volume(record.ct, kind="ct", series_uid=record.ct_series_uid)
        lesions = (
            read_volume(record.lesion_labels, kind="label")
            if record.lesion_labels is not None
            else None
        )
        assert isinstance(ct, CTVolume)
        if not ct.same_geometry(mr):
            inside = ScalarVolume(np.ones(ct.spatial_shape, np.float32), ct.affine)
            coverage = resample_to(inside, mr, fill_value=0.0).array > 0.5
            ct = resample_to(ct, mr)
        if lesions is not None and not lesions.same_geometry(mr):
            assert isinstance(lesions, LabelMap)
            lesions = resample_to(lesions, mr)
        assert lesions is None or isinstance(lesions, LabelMap)
    except ManifestError:
        raise
    except SynthctError as exc:
        raise ManifestError(
            f"case {record.case_id!r}: {exc.problem}", path=exc.path, fix=exc.fix
        ) from exc
    return Case(record.case_id, mr, ct, lesions, coverage)
