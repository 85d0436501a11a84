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

Other columns are ignored. Images from different scans (not in one patient frame) must be
registered before training; voxels of the MRI grid outside the CT's field of view are never
patch centres (:attr:`Case.ct_coverage`). This is the manifest the phantom cohort writer
(``synthct phantom``) produces. A JSON manifest holds the same keys, as a list of objects or as
``{"cases": [...]}``; there ``mr_echoes`` may also be a list of paths.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from synthct.errors import SynthctError
from synthct.synthesis.errors import ManifestError
from synthct.volume import CTVolume, LabelMap, MultiEchoMR

REQUIRED_COLUMNS = ("case_id", "ct", "mr_echoes")
SPLITS = ("train", "validation", "test")


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


def _rows(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ManifestError(
            f"cannot read the manifest ({exc.strerror or exc})", path=path, fix="check the path"
        ) from exc
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"not valid JSON ({exc})", path=path) from exc
        if isinstance(data, dict):
            data = data.get("cases")
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise ManifestError(
                'a JSON manifest must be a list of case objects or {"cases": [...]}',
                path=path,
            )
        return data
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ManifestError(
            f"the manifest lacks the column(s) {missing}; found {reader.fieldnames}",
            path=path,
            fix=f"give a header row with at least {', '.join(REQUIRED_COLUMNS)}",
        )
    return list(reader)


def _resolve(folder: Path, value: str, *, manifest: Path, case_id: str, column: str) -> Path:
    p = Path(value.strip())
    p = p if p.is_absolute() else folder / p
    if not p.exists():
        raise ManifestError(
            f"case {case_id!r}: the {column} file {p} does not exist",
            path=manifest,
            fix="correct the path (paths are relative to the manifest's folder)",
        )
    return p


def read_manifest(path: str | os.PathLike[str]) -> list[CaseRecord]:
    """Read a CSV or JSON cohort manifest (format in the module docstring).

    Raises
    ------
    ManifestError
        Missing columns, empty or duplicate case ids, missing files, unknown splits.
    """
    manifest = Path(path)
    folder = manifest.parent
    records: list[CaseRecord] = []
    seen: set[str] = set()
    for number, row in enumerate(_rows(manifest), start=1):
        case_id = str(row.get("case_id") or "").strip()
        if not case_id:
            raise ManifestError(f"row {number} has no case_id", path=manifest)
        if case_id in seen:
            raise ManifestError(f"case_id {case_id!r} appears twice", path=manifest)
        seen.add(case_id)
        for column in ("ct", "mr_echoes"):
            if not row.get(column):
                raise ManifestError(
                    f"case {case_id!r} has no {column}", path=manifest, fix=f"fill in {column}"
                )
        echoes = row["mr_echoes"]
        names = echoes if isinstance(echoes, list) else str(echoes).split(";")
        kw: dict[str, Any] = {"manifest": manifest, "case_id": case_id}
        mr_paths = tuple(
            _resolve(folder, str(n), column="mr_echoes", **kw) for n in names if str(n).strip()
        )
        optional = {
            c: _resolve(folder, str(row[c]), column=c, **kw) if row.get(c) else None
            for c in ("lesion_labels", "tissue_labels")
        }
        split = (str(row.get("split") or "").strip().lower()) or None
        if split is not None and split not in SPLITS:
            raise ManifestError(
                f"case {case_id!r} has split {split!r}",
                path=manifest,
                fix=f"use one of {', '.join(SPLITS)} or leave it empty",
            )
        types = row.get("lesion_types") or ""
        types = types if isinstance(types, list) else str(types).split(";")
        records.append(
            CaseRecord(
                case_id=case_id,
                ct=_resolve(folder, str(row["ct"]), column="ct", **kw),
                mr_echoes=mr_paths,
                split=split,
                lesion_types=tuple(sorted({str(x).strip() for x in types if str(x).strip()})),
                **optional,
            )
        )
    if not records:
        raise ManifestError("the manifest lists no case", path=manifest)
    return records


def load_case(record: CaseRecord) -> Case:
    """Read a case's MRI, CT and lesion labels; put CT and labels on the MRI grid."""
    from synthct.io import read_volume
    from synthct.io.echoes import read_echoes
    from synthct.resample import resample_to
    from synthct.volume import ScalarVolume

    coverage = None
    try:
        mr = read_echoes(record.mr_echoes)
        ct = read_volume(record.ct, kind="ct")
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
