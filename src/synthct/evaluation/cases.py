"""The cases an evaluation runs on: a manifest, optionally narrowed to one subset of a split.

Manifest
--------
A CSV, JSON or YAML file, one case per row (JSON: a list of objects or ``{"cases": [...]}``;
YAML: a list under ``cases:``). It may be the synthesis manifest (``synthct phantom``,
``synthct train``) or the validation manifest (``synthct validate``); the columns of both are
understood. Paths are relative to the manifest's folder.

====================================  ===========================================================
column (aliases)                      meaning
====================================  ===========================================================
``case_id``                           unique case name (letters, digits, ``.``, ``_``, ``-``)
``ct``                                the reference CT in HU (required)
``mr_echoes`` (``mri``, ``mr``)       the MR channels, ``;``-separated (a list in JSON/YAML), or
                                      one 4D file; required when a model synthesises the sCT
``sct``                               an existing sCT: evaluated as it is when no model is given
``body_mask`` (``mask``)              body mask; derived from the CT when absent
``lesion_labels`` (``lesions``)       lesion label map (one label per lesion)
``lesion_points``                     lesions as ``"L,P,S,r; ..."`` (LPS mm, radius mm)
``split``                             ``train``, ``validation`` or ``test`` (optional)
====================================  ===========================================================

Split file
----------
JSON ``{"test": [case ids], "folds": [{"train": [...], "val": [...]}, ...], "seed": ...}`` as
``synthct dataset split`` writes it. Subsets: ``all``, ``test``, ``fold<K>-train``,
``fold<K>-val`` (K from 0). Without a split file, ``--subset`` selects by the manifest's
``split`` column (``train``, ``validation``/``val``, ``test``).
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from synthct.errors import SynthctError

__all__ = [
    "EvaluationCase",
    "EvaluationInputError",
    "read_evaluation_manifest",
    "read_split",
    "select_subset",
]

_ALIASES: dict[str, tuple[str, ...]] = {
    "mri": ("mr_echoes", "mri", "mr"),
    "lesions": ("lesion_labels", "lesions"),
    "body_mask": ("body_mask", "mask"),
}
_FOLD_SUBSET = re.compile(r"^fold(\d+)-(train|val)$")


class EvaluationInputError(SynthctError, ValueError):
    """A manifest, split file or subset that an evaluation cannot use as it is."""


@dataclass(frozen=True)
class EvaluationCase:
    """One case of an evaluation, with absolute paths (files checked when the case runs)."""

    case_id: str
    ct: Path
    mri: tuple[Path, ...] = ()
    sct: Path | None = None
    body_mask: Path | None = None
    lesions: Path | None = None
    lesion_points: str | list[Any] | None = None
    split: str | None = None


def _rows(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise EvaluationInputError(
            f"cannot read the manifest ({exc.strerror or exc})",
            path=path,
            fix="pass an existing CSV, JSON or YAML manifest",
        ) from exc
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return list(csv.DictReader(text.splitlines()))
        data = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise EvaluationInputError(f"cannot parse the manifest ({exc})", path=path) from exc
    if isinstance(data, dict):
        data = data.get("cases")
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise EvaluationInputError(
            "the manifest must list cases (a list of objects, or one under 'cases')",
            path=path,
            fix="use the manifest written by `synthct phantom` or the one `synthct validate` reads",
        )
    return data


def _first(row: dict[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        value = row.get(name)
        if value not in (None, "", []):
            return value
    return None


def _path(folder: Path, value: Any) -> Path:
    p = Path(str(value).strip())
    return p if p.is_absolute() else folder / p


def read_evaluation_manifest(path: str | os.PathLike[str]) -> list[EvaluationCase]:
    """Read the cases of a synthesis or validation manifest (columns in the module docstring).

    Raises
    ------
    EvaluationInputError
        An unreadable file, no case, a case without ``case_id`` or ``ct``, a duplicate id.
    """
    manifest = Path(path)
    if not manifest.is_file():
        raise EvaluationInputError(
            "no such manifest file", path=manifest, fix="pass a CSV, JSON or YAML manifest"
        )
    folder = manifest.parent.resolve()
    cases: list[EvaluationCase] = []
    seen: set[str] = set()
    for number, row in enumerate(_rows(manifest), start=1):
        case_id = str(row.get("case_id") or "").strip()
        if not case_id or case_id in seen:
            problem = f"row {number} has no case_id" if not case_id else f"{case_id!r} twice"
            raise EvaluationInputError(problem, path=manifest, fix="give each case a unique id")
        seen.add(case_id)
        if not row.get("ct"):
            raise EvaluationInputError(
                f"case {case_id!r} has no ct", path=manifest, fix="fill in the column ct"
            )
        mri = _first(row, _ALIASES["mri"])
        names = mri if isinstance(mri, list) else str(mri or "").split(";")
        optional = {k: _first(row, v) for k, v in _ALIASES.items() if k != "mri"}
        cases.append(
            EvaluationCase(
                case_id=case_id,
                ct=_path(folder, row["ct"]),
                mri=tuple(_path(folder, n) for n in names if str(n).strip()),
                sct=_path(folder, row["sct"]) if row.get("sct") else None,
                body_mask=_path(folder, optional["body_mask"]) if optional["body_mask"] else None,
                lesions=_path(folder, optional["lesions"]) if optional["lesions"] else None,
                lesion_points=row.get("lesion_points") or None,
                split=str(row.get("split") or "").strip().lower() or None,
            )
        )
    if not cases:
        raise EvaluationInputError("the manifest lists no case", path=manifest)
    return cases


def read_split(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a split file (``{"test": [...], "folds": [{"train", "val"}], "seed"}``).

    Raises
    ------
    EvaluationInputError
        Unreadable JSON, missing keys, or a case in both the test set and a fold.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise EvaluationInputError(
            f"cannot read the split file ({exc})",
            path=p,
            fix="pass the JSON file written by `synthct dataset split`",
        ) from exc
    folds = data.get("folds", []) if isinstance(data, dict) else None
    valid = (
        isinstance(data, dict)
        and isinstance(data.get("test", []), list)
        and isinstance(folds, list)
        and all(isinstance(f, dict) and {"train", "val"} <= set(f) for f in folds)
    )
    if not valid:
        raise EvaluationInputError(
            'a split file holds {"test": [ids], "folds": [{"train": [ids], "val": [ids]}, ...]}',
            path=p,
            fix="pass the JSON file written by `synthct dataset split`",
        )
    test = {str(c) for c in data.get("test", [])}
    for k, fold in enumerate(folds or []):
        leaked = sorted(test & {str(c) for c in fold["train"] + fold["val"]})
        if leaked:
            raise EvaluationInputError(
                f"fold {k} uses test case(s) {leaked[:5]}: the test set leaks into training",
                path=p,
                fix="make the split again; a test case must not be in any fold",
            )
    return dict(data)


def select_subset(
    cases: list[EvaluationCase],
    subset: str,
    *,
    split: dict[str, Any] | None = None,
    split_path: str | os.PathLike[str] | None = None,
) -> list[EvaluationCase]:
    """The cases of ``subset``, in manifest order.

    Parameters
    ----------
    cases : list of EvaluationCase
        The manifest's cases.
    subset : str
        ``all``; with ``split``: ``test``, ``fold<K>-train``, ``fold<K>-val``; without:
        ``train``, ``validation`` (``val``) or ``test`` by the manifest's ``split`` column.
    split : dict, optional
        From :func:`read_split`.
    split_path : path, optional
        The split file, for messages.

    Raises
    ------
    EvaluationInputError
        An unknown subset, a fold that does not exist, split ids missing from the manifest, or
        an empty subset.
    """
    if subset == "all":
        return list(cases)
    where = str(split_path) if split_path else "--subset"
    if split is None:
        wanted_split = {"val": "validation"}.get(subset, subset)
        if wanted_split not in ("train", "validation", "test"):
            raise EvaluationInputError(
                f"unknown subset {subset!r} without a split file",
                path="--subset",
                fix="use all, train, validation or test (the manifest's split column), or "
                "pass --split FILE for fold<K>-train / fold<K>-val",
            )
        chosen = [c for c in cases if c.split == wanted_split]
    else:
        ids = _split_ids(split, subset, where)
        known = {c.case_id for c in cases}
        missing = [i for i in ids if i not in known]
        if missing:
            raise EvaluationInputError(
                f"{len(missing)} case(s) of subset {subset!r} are not in the manifest, e.g. "
                f"{missing[:5]}",
                path=where,
                fix="use the manifest the split was made from",
            )
        wanted = set(ids)
        chosen = [c for c in cases if c.case_id in wanted]
    if not chosen:
        raise EvaluationInputError(
            f"subset {subset!r} holds no case", path=where, fix="choose another subset"
        )
    return chosen


def _split_ids(split: dict[str, Any], subset: str, where: str) -> list[str]:
    if subset == "test":
        return [str(c) for c in split.get("test", [])]
    match = _FOLD_SUBSET.match(subset)
    folds = split.get("folds", [])
    if match is None or int(match.group(1)) >= len(folds):
        names = ["all", "test"]
        names += [f"fold{k}-{part}" for k in range(len(folds)) for part in ("train", "val")]
        raise EvaluationInputError(
            f"the split has no subset {subset!r}",
            path=where,
            fix=f"use one of {', '.join(names)}",
        )
    return [str(c) for c in folds[int(match.group(1))][match.group(2)]]
