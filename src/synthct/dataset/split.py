"""Deterministic patient-level splits: a fixed test set and k cross-validation folds.

Patients, not cases, are the unit: every case of a patient lands in the same part, and cases
with identical voxel data (the same scan under two ids) are kept together too. The result is
the same for the same patients and seed whatever the order the cases were listed in.

Split file (``split.json``), read by training and evaluation::

    {
      "format": "synthct-split/1",
      "manifest": "manifest.csv",          # the dataset manifest the ids refer to (relative)
      "seed": 0, "n_folds": 5, "test_fraction": 0.2, "unit": "patient",
      "test": ["case ids"],
      "folds": [{"train": ["case ids"], "val": ["case ids"]}, ...],
      "patients": {"case id": "patient id", ...}
    }

``synthct dataset split`` also writes ``fold-<k>.csv`` beside it: the manifest with a
``split`` column (``train``/``validation``/``test``) that ``synthct train`` reads as it is.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from synthct.case import Case
from synthct.dataset.readers import read_error
from synthct.manifest import Manifest, ManifestError

__all__ = [
    "SPLIT_FORMAT",
    "Split",
    "SplitError",
    "identical_ct_groups",
    "make_split",
    "read_split",
    "write_split_folder",
]

SPLIT_FORMAT = "synthct-split/1"


class SplitError(ManifestError):
    """A split that leaks a patient across parts, or does not fit its manifest."""


@dataclass(frozen=True)
class Split:
    """A fixed test set and k folds of case ids (see the module docstring)."""

    test: list[str]
    folds: list[dict[str, list[str]]]
    seed: int
    patients: dict[str, str] = field(default_factory=dict)
    test_fraction: float = 0.0
    manifest: str = "manifest.csv"
    #: ``patient`` (whole patients per part) or ``slab`` (parts are slabs of scans).
    unit: str = "patient"
    #: Slab cases: case id -> {"of": source case, "part", "axis", "start", "stop", ...}.
    slabs: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Cases left out of the split, with the QA reason.
    excluded: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to ``split.json``."""
        return {
            "format": SPLIT_FORMAT,
            "manifest": self.manifest,
            "seed": self.seed,
            "n_folds": len(self.folds),
            "test_fraction": self.test_fraction,
            "unit": self.unit,
            "test": list(self.test),
            "folds": [{"train": list(f["train"]), "val": list(f["val"])} for f in self.folds],
            "patients": dict(self.patients),
            "slabs": {k: dict(v) for k, v in self.slabs.items()},
            "excluded": dict(self.excluded),
        }

    def role_of(self, fold: int) -> dict[str, str]:
        """``case id -> train/validation/test`` for fold ``fold``."""
        roles = dict.fromkeys(self.test, "test")
        roles.update(dict.fromkeys(self.folds[fold]["train"], "train"))
        roles.update(dict.fromkeys(self.folds[fold]["val"], "validation"))
        return roles

    def check(self, *, where: str | os.PathLike[str] | None = None) -> None:
        """Raise :class:`SplitError` when a patient or case is in two parts of a fold.

        In a slab split the slabs of one scan are in different parts by design: there the
        unit is the slab, every case must be a slab, and slabs of one scan must not overlap.
        """
        patient = self.patients
        if self.unit not in ("patient", "slab"):
            raise SplitError(
                f"unknown split unit {self.unit!r}", path=where, fix="use patient or slab"
            )
        if self.unit == "slab":
            self._check_slabs(where)
        for k, fold in enumerate(self.folds):
            parts = {"test": self.test, "train": fold["train"], "val": fold["val"]}
            owner: dict[str, str] = {}
            for name, ids in parts.items():
                for case_id in ids:
                    key = case_id if self.unit == "slab" else patient.get(case_id, case_id)
                    if key in owner and owner[key] != name:
                        raise SplitError(
                            f"fold {k}: patient {key!r} is in both {owner[key]} and {name} "
                            f"(case {case_id!r})",
                            path=where,
                            fix="put every case of a patient in one part (make the split with "
                            "`synthct dataset split`, which splits by patient)",
                        )
                    owner[key] = name

    def _check_slabs(self, where: str | os.PathLike[str] | None) -> None:
        listed = set(self.test) | {c for f in self.folds for part in f.values() for c in part}
        plain = sorted(listed - set(self.slabs))
        if plain:
            raise SplitError(
                f"a slab split lists case(s) that are not slabs: {plain[:5]}",
                path=where,
                fix="make slab splits with `synthct dataset split --unit slab`",
            )
        by_scan: dict[str, list[tuple[int, int, str]]] = {}
        for case_id, slab in self.slabs.items():
            key = f"{slab.get('of')}/{slab.get('axis')}"
            by_scan.setdefault(key, []).append((int(slab["start"]), int(slab["stop"]), case_id))
        for ranges in by_scan.values():
            ranges.sort()
            for (_, stop, first), (start, _, second) in itertools.pairwise(ranges):
                if start <= stop:  # a gap of at least one slice between slabs
                    raise SplitError(
                        f"slabs {first!r} and {second!r} of one scan touch or overlap",
                        path=where,
                        fix="leave a gap between slabs (--slab-gap-mm)",
                    )


def _units(manifest: Manifest, same_content: Sequence[Sequence[str]]) -> dict[str, list[str]]:
    """Groups of case ids that must stay together, keyed by a stable name."""
    parent = {c.case_id: c.patient_id for c in manifest}
    groups: dict[str, set[str]] = {}
    for case_id, pid in parent.items():
        groups.setdefault(pid, set()).add(case_id)
    for twins in same_content:  # merge patients that share a scan
        keys = sorted({parent[c] for c in twins if c in parent})
        for key in keys[1:]:
            groups.setdefault(keys[0], set()).update(groups.pop(key, set()))
            for c in list(groups[keys[0]]):
                parent[c] = keys[0]
    return {k: sorted(v) for k, v in groups.items()}


def make_split(
    manifest: Manifest,
    *,
    n_folds: int = 5,
    test_fraction: float = 0.2,
    seed: int = 0,
    same_content: Sequence[Sequence[str]] = (),
) -> Split:
    """Split the cases by patient into a test set and ``n_folds`` folds.

    Parameters
    ----------
    manifest : Manifest
        The cases; :attr:`Case.patient_id <synthct.case.Case.patient_id>` groups them.
    n_folds : int
        Number of cross-validation folds (>= 2), or 1 for a single train/val split with a
        fifth of the remaining patients for validation.
    test_fraction : float
        Share of patients in the fixed test set (0 <= f < 1), rounded, at least 1 when > 0.
    seed : int
        Seeds the shuffle of the (sorted) patient ids.
    same_content : sequence of sequences of str
        Groups of case ids holding identical data, kept in one part.

    Raises
    ------
    SplitError
        Too few patients for the folds asked for, or bad parameters.
    """
    if n_folds < 1 or not 0.0 <= test_fraction < 1.0:
        raise SplitError(
            f"n_folds {n_folds} and test_fraction {test_fraction} are out of range",
            path="--folds/--test-fraction",
            fix="use --folds >= 1 and 0 <= --test-fraction < 1",
        )
    units = _units(manifest, same_content)
    names = sorted(units)
    rng = np.random.default_rng(seed)
    order = [names[i] for i in rng.permutation(len(names))]
    n_test = 0 if test_fraction == 0 else max(1, round(test_fraction * len(order)))
    rest = order[n_test:]
    needed = max(n_folds, 2)
    if len(rest) < needed:
        raise SplitError(
            f"{len(names)} patient(s) cannot make a test set of {n_test} and {n_folds} fold(s) "
            f"(each fold needs at least one validation patient and one training patient)",
            path="--folds",
            fix="add patients, lower --folds or --test-fraction",
        )
    if n_folds == 1:
        n_val = max(1, round(0.2 * len(rest)))
        buckets = [rest[:n_val]]
    else:
        buckets = [rest[k::n_folds] for k in range(n_folds)]

    def cases(keys: Sequence[str]) -> list[str]:
        return sorted(c for key in keys for c in units[key])

    folds = [
        {"train": cases([u for u in rest if u not in set(bucket)]), "val": cases(bucket)}
        for bucket in buckets
    ]
    patients = {c.case_id: c.patient_id for c in manifest}
    split = Split(cases(order[:n_test]), folds, seed, patients, test_fraction)
    split.check()
    return split


def split_from_dict(data: Mapping[str, Any], *, where: str | os.PathLike[str] | None) -> Split:
    """A :class:`Split` from its JSON form, checked for leaks."""
    try:
        split = Split(
            test=[str(c) for c in data.get("test", [])],
            folds=[
                {"train": [str(c) for c in f["train"]], "val": [str(c) for c in f["val"]]}
                for f in data["folds"]
            ],
            seed=int(data.get("seed", 0)),
            patients={str(k): str(v) for k, v in dict(data.get("patients", {})).items()},
            test_fraction=float(data.get("test_fraction", 0.0)),
            manifest=str(data.get("manifest", "manifest.csv")),
            unit=str(data.get("unit", "patient")),
            slabs={str(k): dict(v) for k, v in dict(data.get("slabs") or {}).items()},
            excluded={str(k): str(v) for k, v in dict(data.get("excluded") or {}).items()},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SplitError(
            f"not a split file ({type(exc).__name__}: {exc})",
            path=where,
            fix='write {"test": [...], "folds": [{"train": [...], "val": [...]}], "seed": 0}',
        ) from exc
    split.check(where=where)
    return split


def read_split(path: str | os.PathLike[str], manifest: Manifest | None = None) -> Split:
    """Read and check a split file; with ``manifest``, patients come from it and ids must exist.

    Raises
    ------
    SplitError
        Unreadable file, a patient in two parts, or case ids the manifest does not list.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SplitError(f"cannot read the split ({exc})", path=p, fix="check the file") from exc
    if not isinstance(data, dict):
        raise SplitError("a split file holds a JSON object", path=p)
    if manifest is not None:
        data = {**data, "patients": {c.case_id: c.patient_id for c in manifest}}
        listed = set(data.get("test", [])) | {
            c for f in data.get("folds", []) for part in ("train", "val") for c in f.get(part, [])
        }
        unknown = sorted(listed - set(manifest.case_ids))
        if unknown:
            raise SplitError(
                f"the split names case(s) the manifest does not list: {unknown[:10]}",
                path=p,
                fix="make the split from this dataset (`synthct dataset split`)",
            )
    return split_from_dict(data, where=p)


def identical_ct_groups(manifest: Manifest) -> list[list[str]]:
    """Groups (two or more) of case ids whose CT voxels are identical (read one at a time);
    cases QA ruled out or could not read (:func:`usable_cases`) are not read."""
    from synthct.dataset.qa import voxel_checksum

    by_sum: dict[str, list[str]] = {}
    for case in usable_cases(manifest)[0]:
        by_sum.setdefault(voxel_checksum(case.ct().array), []).append(case.case_id)
        case.unload()
    return [ids for ids in by_sum.values() if len(ids) > 1]


#: QA issues (``qa_issues`` of ``synthct dataset check``'s manifest) that keep a case out.
EXCLUDING_ISSUES: tuple[str, ...] = (
    "no_overlap", "mi_outlier", "channel_count", "patient_mismatch", "registration_rotation",
)  # fmt: skip


def usable_cases(manifest: Manifest) -> tuple[Manifest, dict[str, str]]:
    """The cases QA did not rule out, and the others with the reason.

    Only manifests written by ``synthct dataset check`` carry QA columns; other cases are all
    usable.
    """
    keep, excluded = [], {}
    for case in manifest:
        issues = [i for i in str(case.extra.get("qa_issues") or "").split(";") if i]
        bad = [i for i in issues if i in EXCLUDING_ISSUES]
        if str(case.extra.get("qa_status") or "") == "error" or read_error(case):
            bad = ["unreadable", *bad]
        if bad:
            excluded[case.case_id] = ", ".join(bad)
        else:
            keep.append(case)
    return Manifest(keep, source=manifest.source), excluded


def _patients_needed(n_patients: int, n_folds: int, test_fraction: float) -> int:
    n_test = 0 if test_fraction == 0 else max(1, round(test_fraction * n_patients))
    return n_test + max(n_folds, 2)


def choose_unit(manifest: Manifest, unit: str, *, n_folds: int, test_fraction: float) -> str:
    """``patient`` or ``slab`` for ``unit`` ``patient``, ``slab`` or ``auto``.

    ``auto`` splits by patient when there are enough patients for the test set and the
    folds, and by slabs of each scan otherwise (one pair, or a few).
    """
    if unit not in ("auto", "patient", "slab"):
        raise SplitError(
            f"unknown split unit {unit!r}", path="--unit", fix="use auto, patient or slab"
        )
    if unit != "auto":
        return unit
    n = len(manifest.patients())
    return "patient" if n >= _patients_needed(n, n_folds, test_fraction) else "slab"


def _slab_cases(
    manifest: Manifest, folder: Path, fractions: Sequence[float], gap_mm: float
) -> tuple[list[Case], dict[str, dict[str, Any]]]:
    """Registered pairs of every slab of every case, written into ``folder``."""
    from synthct.dataset.pairs import mr_coverage, transform_for, write_pair
    from synthct.dataset.slabs import slab_ranges

    cases, slabs = [], {}
    for case in manifest:
        ct, mr = case.ct(), case.mr()
        grid = ct.geometry
        covered = mr_coverage(mr, grid, transform_for(case))
        for slab in slab_ranges(grid, covered, fractions=fractions, gap_mm=gap_mm):
            case_id = f"{case.case_id}-slab-{slab.part}"
            meta = {**case.meta, "patient_id": case.patient_id, "split": slab.part}
            part = Case(case_id, case.images, meta, case.extra)
            cases.append(write_pair(part, folder / case_id, slab=slab))
            slabs[case_id] = {"of": case.case_id, **slab.to_dict(grid), "gap_mm": gap_mm}
        case.unload()
    return cases, slabs


def write_split_folder(
    manifest: Manifest,
    out: str | os.PathLike[str],
    *,
    n_folds: int = 5,
    test_fraction: float = 0.2,
    seed: int = 0,
    same_content: Sequence[Sequence[str]] = (),
    overwrite: bool = False,
    unit: str = "patient",
    slab_fractions: Sequence[float] = (0.6, 0.2, 0.2),
    slab_gap_mm: float = 6.0,
) -> Split:
    """Make a split and write ``manifest.csv``, ``split.json``, ``fold-<k>.csv`` into ``out``.

    ``fold-<k>.csv`` is the manifest with a ``split`` column (``train``, ``validation``,
    ``test``) for fold k. Cases that ``synthct dataset check`` ruled out (:func:`usable_cases`)
    are left out and listed under ``excluded``. Cases with an MR-to-CT transform, cases read as
    one series of a DICOM folder that holds others (a localizer beside the scan), and every
    slab, are written as registered pairs into ``out/pairs/<case_id>/``
    (:func:`synthct.dataset.pairs.write_pair`), and the manifests name those files. The folder
    appears only when complete.

    Parameters
    ----------
    manifest : Manifest
        The dataset (e.g. the ``manifest.csv`` of ``synthct dataset check``).
    out : path
        Folder to create.
    n_folds, test_fraction, seed, same_content
        As for :func:`make_split` (patient splits).
    overwrite : bool
        Replace an existing folder.
    unit : str
        ``patient``, ``slab`` (each scan cut into train / validation / test slabs along its
        cranio-caudal axis, one fold) or ``auto`` (:func:`choose_unit`).
    slab_fractions : 3 floats
        Shares of the slices in the train, validation and test slabs.
    slab_gap_mm : float
        Gap between neighbouring slabs, mm.

    Raises
    ------
    SplitError
        Too few patients for the split asked for, or no usable case (nothing is written).
    SynthctError
        A scan too short for slabs, or an unreadable case (nothing is written).
    """
    from synthct.dataset.pairs import write_pair
    from synthct.io.atomic import atomic_directory, write_json_atomic
    from synthct.manifest import write_manifest

    usable, excluded = usable_cases(manifest)
    if not len(usable):
        raise SplitError(
            f"QA ruled out every case ({excluded})",
            path=manifest.source,
            fix="see the QA table (qa.html) of `synthct dataset check`",
        )
    chosen = choose_unit(usable, unit, n_folds=n_folds, test_fraction=test_fraction)
    split = None
    if chosen == "patient":
        split = make_split(
            usable, n_folds=n_folds, test_fraction=test_fraction, seed=seed,
            same_content=same_content,
        )  # fmt: skip
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        if split is None:
            cases, slabs = _slab_cases(usable, tmp / "pairs", slab_fractions, slab_gap_mm)
            ids = {p: [c.case_id for c in cases if c.split == p] for p in ("train", "validation")}
            split = Split(
                [c.case_id for c in cases if c.split == "test"],
                [{"train": ids["train"], "val": ids["validation"]}],
                seed, {c.case_id: c.patient_id for c in cases}, unit="slab", slabs=slabs,
            )  # fmt: skip
            split.check()
        else:
            cases = [
                write_pair(c, tmp / "pairs" / c.case_id) if _needs_pair(c) else c
                for c in usable
            ]  # fmt: skip
        split = replace(split, excluded=excluded)
        prepared = Manifest([c.with_meta(split=None) for c in cases])
        write_manifest(prepared, tmp / "manifest.csv")
        write_json_atomic(tmp / "split.json", split.to_dict())
        for k in range(len(split.folds)):
            roles = split.role_of(k)
            fold = Manifest([c.with_meta(split=roles[c.case_id]) for c in prepared])
            write_manifest(fold, tmp / f"fold-{k}.csv")
    return split


def _needs_pair(case: Case) -> bool:
    """Whether the case is written as a registered pair: it has a transform to apply, or it
    reads one series by UID from a DICOM folder (which every later reader would need to know)."""
    from synthct.case import SERIES_UID_COLUMNS
    from synthct.manifest import TRANSFORM_COLUMN

    columns = (TRANSFORM_COLUMN, *SERIES_UID_COLUMNS.values())
    return any(str(case.extra.get(c) or "").strip() for c in columns)
