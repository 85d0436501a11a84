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

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthct.case import Case
from synthct.dataset.split import Split
from synthct.dataset.split import read_split as read_dataset_split
from synthct.errors import SynthctError
from synthct.manifest import ManifestError, read_manifest, refuse_pending_transform

__all__ = [
    "EvaluationCase",
    "EvaluationInputError",
    "read_evaluation_manifest",
    "read_split",
    "select_subset",
]

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


def _evaluation_case(case: Case) -> EvaluationCase:
    """The evaluation view of a case: lesions on the CT grid first, as validation reads them."""
    lesions = case.path("lesion_labels_ct") or case.path("lesion_labels")
    if str(case.meta.get("n_lesions", "")).strip() == "0":
        lesions = None  # a phantom's lesion-free case: its label map is empty by design
    split = str(case.split or "").strip().lower() or None
    return EvaluationCase(
        case_id=case.case_id,
        ct=case.path("ct"),  # type: ignore[arg-type]  # checked by the caller
        mri=case.paths("mr"),
        sct=case.path("sct"),
        body_mask=case.path("body_mask"),
        lesions=lesions,
        lesion_points=case.meta.get("lesion_points") or None,
        split={"val": "validation"}.get(split or "", split),
    )


def read_evaluation_manifest(path: str | os.PathLike[str]) -> list[EvaluationCase]:
    """Read the cases of any synthct manifest (:mod:`synthct.manifest`; columns above).

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
    try:
        cases = list(read_manifest(manifest))
    except ManifestError as exc:
        raise EvaluationInputError(exc.problem, path=exc.path, fix=exc.fix) from exc
    for case in cases:
        try:
            refuse_pending_transform(case, manifest=manifest)
        except ManifestError as exc:
            raise EvaluationInputError(exc.problem, path=exc.path, fix=exc.fix) from exc
        if case.path("ct") is None:
            raise EvaluationInputError(
                f"case {case.case_id!r} has no ct", path=manifest, fix="fill in the column ct"
            )
    if not cases:
        raise EvaluationInputError("the manifest lists no case", path=manifest)
    return [_evaluation_case(c) for c in cases]


def read_split(path: str | os.PathLike[str]) -> Split:
    """Read a split file (:func:`synthct.dataset.split.read_split`: checked for leaks).

    Raises
    ------
    EvaluationInputError
        Unreadable JSON, missing keys, or a case in both the test set and a fold.
    """
    try:
        return read_dataset_split(path)
    except ManifestError as exc:
        raise EvaluationInputError(exc.problem, path=exc.path, fix=exc.fix) from exc


def select_subset(
    cases: list[EvaluationCase],
    subset: str,
    *,
    split: Split | None = None,
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


def _split_ids(split: Split, subset: str, where: str) -> list[str]:
    if subset == "test":
        return list(split.test)
    match = _FOLD_SUBSET.match(subset)
    folds = split.folds
    if match is None or int(match.group(1)) >= len(folds):
        names = ["all", "test"]
        names += [f"fold{k}-{part}" for k in range(len(folds)) for part in ("train", "val")]
        raise EvaluationInputError(
            f"the split has no subset {subset!r}",
            path=where,
            fix=f"use one of {', '.join(names)}",
        )
    return [str(c) for c in folds[int(match.group(1))][match.group(2)]]
