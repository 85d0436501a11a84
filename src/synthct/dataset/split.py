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

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to ``split.json``."""
        return {
            "format": SPLIT_FORMAT,
            "manifest": self.manifest,
            "seed": self.seed,
            "n_folds": len(self.folds),
            "test_fraction": self.test_fraction,
            "unit": "patient",
            "test": list(self.test),
            "folds": [{"train": list(f["train"]), "val": list(f["val"])} for f in self.folds],
            "patients": dict(self.patients),
        }

    def role_of(self, fold: int) -> dict[str, str]:
        """``case id -> train/validation/test`` for fold ``fold``."""
        roles = dict.fromkeys(self.test, "test")
        roles.update(dict.fromkeys(self.folds[fold]["train"], "train"))
        roles.update(dict.fromkeys(self.folds[fold]["val"], "validation"))
        return roles

    def check(self, *, where: str | os.PathLike[str] | None = None) -> None:
        """Raise :class:`SplitError` when a patient or case is in two parts of a fold."""
        patient = self.patients
        for k, fold in enumerate(self.folds):
            parts = {"test": self.test, "train": fold["train"], "val": fold["val"]}
            owner: dict[str, str] = {}
            for name, ids in parts.items():
                for case_id in ids:
                    key = patient.get(case_id, case_id)
                    if key in owner and owner[key] != name:
                        raise SplitError(
                            f"fold {k}: patient {key!r} is in both {owner[key]} and {name} "
                            f"(case {case_id!r})",
                            path=where,
                            fix="put every case of a patient in one part (make the split with "
                            "`synthct dataset split`, which splits by patient)",
                        )
                    owner[key] = name


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
    """Groups (two or more) of case ids whose CT voxels are identical (read one at a time)."""
    from synthct.dataset.qa import voxel_checksum

    by_sum: dict[str, list[str]] = {}
    for case in manifest:
        by_sum.setdefault(voxel_checksum(case.ct().array), []).append(case.case_id)
        case.unload()
    return [ids for ids in by_sum.values() if len(ids) > 1]


def write_split_folder(
    manifest: Manifest,
    out: str | os.PathLike[str],
    *,
    n_folds: int = 5,
    test_fraction: float = 0.2,
    seed: int = 0,
    same_content: Sequence[Sequence[str]] = (),
    overwrite: bool = False,
) -> Split:
    """Make a split and write ``manifest.csv``, ``split.json`` and ``fold-<k>.csv`` into ``out``.

    ``fold-<k>.csv`` is the manifest with a ``split`` column (``train``, ``validation``,
    ``test``) for fold k. The folder appears only when complete.

    Raises
    ------
    SplitError
        Too few patients for the split asked for (nothing is written).
    """
    from synthct.io.atomic import atomic_directory, write_json_atomic
    from synthct.manifest import write_manifest

    split = make_split(
        manifest, n_folds=n_folds, test_fraction=test_fraction, seed=seed,
        same_content=same_content,
    )  # fmt: skip
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        write_manifest(manifest, tmp / "manifest.csv")
        write_json_atomic(tmp / "split.json", split.to_dict())
        for k in range(len(split.folds)):
            roles = split.role_of(k)
            fold = Manifest([c.with_meta(split=roles[c.case_id]) for c in manifest])
            write_manifest(fold, tmp / f"fold-{k}.csv")
    return split
