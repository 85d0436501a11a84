"""The one manifest: cases (:class:`~synthct.case.Case`) read from and written to CSV, YAML, JSON.

Every command reads its cases through this module: what ``synthct phantom`` writes,
``synthct validate``, ``synthct train``, ``synthct audit-train`` and ``synthct dataset`` read
as it is.

Format
------
One row (CSV) or one mapping (YAML/JSON) per case. YAML and JSON hold a list of cases, or a
mapping with the list under ``cases:`` (other top-level keys are kept in :attr:`Manifest.info`).
Columns:

* ``case_id`` (required, unique);
* images by role (:data:`synthct.case.IMAGE_ROLES`): ``ct``, ``mr``, ``sct``, ``sct_failure``,
  ``tissue_labels``, ``lesion_labels``, ``lesion_labels_ct``, ``body_mask``; several files of a
  role (the MR channels) are ``;``-separated in CSV or a list in YAML/JSON. Paths are relative
  to the manifest's folder (absolute paths are kept); an empty cell means "none";
* metadata (:data:`synthct.case.META_FIELDS`): ``patient_id``, ``region``, ``split``,
  ``protocol``, ``n_lesions``, ``lesion_types``, ``lesion_points``, ``notes``;
* any other column is kept in :attr:`Case.extra <synthct.case.Case.extra>` and written back.

Old names are accepted (:data:`COLUMN_ALIASES`): ``mr_echoes``, ``mri`` and ``mr_channels`` for
``mr``; ``lesions`` for ``lesion_labels``; ``mask`` for ``body_mask``; ``patient`` and
``subject_id`` for ``patient_id``. Files are written with the canonical names. Which roles a
command needs, and whether it tolerates unknown columns, is that command's reader's business
(:mod:`synthct.validation.manifest`, :mod:`synthct.synthesis.manifest`).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from synthct.case import IMAGE_ROLES, META_FIELDS, Case
from synthct.errors import SynthctError

__all__ = [
    "COLUMN_ALIASES",
    "MANIFEST_NAMES",
    "TRANSFORM_COLUMN",
    "Manifest",
    "ManifestError",
    "canonical_column",
    "read_manifest",
    "read_rows",
    "refuse_pending_transform",
    "write_manifest",
]

#: Old or alternative column names and the canonical name they stand for.
COLUMN_ALIASES: dict[str, str] = {
    "mr_echoes": "mr",
    "mri": "mr",
    "mr_channels": "mr",
    "lesions": "lesion_labels",
    "mask": "body_mask",
    "patient": "patient_id",
    "subject_id": "patient_id",
}
#: Column of a case's rigid MR-to-CT transform file, written by ``synthct dataset check`` and
#: applied by ``synthct dataset split`` (:mod:`synthct.dataset.pairs`); empty: none pending.
TRANSFORM_COLUMN = "mr_to_ct_transform"
#: Extra columns that hold one file path: resolved against the manifest's folder on reading,
#: written relative to it.
PATH_COLUMNS: tuple[str, ...] = (TRANSFORM_COLUMN,)
#: File names looked for when a manifest is given as a folder, in this order.
MANIFEST_NAMES: tuple[str, ...] = ("manifest.csv", "manifest.yaml", "manifest.yml")
_SUFFIXES = (".csv", ".yaml", ".yml", ".json")


class ManifestError(SynthctError, ValueError):
    """A manifest that cannot be used as it is (format, columns, ids, values, files)."""


def refuse_pending_transform(case: Case, *, manifest: str | os.PathLike[str] | None) -> None:
    """Raise :class:`ManifestError` when ``case``'s MR still needs its MR-to-CT transform.

    Training and evaluation read MR and CT as they are; a case whose registration is pending
    (the manifest of ``synthct dataset check``) would pair misaligned images.
    """
    pending = str(case.extra.get(TRANSFORM_COLUMN) or "").strip()
    if pending:
        raise ManifestError(
            f"case {case.case_id!r}: its MR is not registered to its CT yet (transform {pending})",
            path=manifest,
            fix="split the QA folder (`synthct dataset split QA --out SPLIT`) and use "
            "SPLIT/fold-K.csv or SPLIT/manifest.csv, whose registered pairs have it applied",
        )


def canonical_column(name: str) -> str:
    """The canonical name of a manifest column (aliases mapped, others unchanged)."""
    key = str(name).strip()
    return COLUMN_ALIASES.get(key, key)


def find_manifest(path: str | os.PathLike[str]) -> Path:
    """The manifest file itself, or the first of :data:`MANIFEST_NAMES` inside a folder."""
    p = Path(path)
    if p.is_dir():
        for name in MANIFEST_NAMES:
            if (p / name).is_file():
                return p / name
        raise ManifestError(
            f"the folder holds no manifest ({', '.join(MANIFEST_NAMES)})",
            path=p,
            fix="pass the manifest file, or a cohort folder written by `synthct phantom`",
        )
    return p


# -- raw rows -----------------------------------------------------------------------------------
def read_rows(
    path: str | os.PathLike[str],
) -> tuple[list[tuple[int, dict[str, Any]]], list[str], dict[str, Any]]:
    """The rows of a CSV, YAML or JSON manifest as they are written (no alias mapping).

    Returns
    -------
    rows : list of (int, dict)
        Row (CSV line) or entry number and the row's non-empty values, keys stripped.
    columns : list of str
        The CSV header, or every key used by a YAML/JSON entry, in first-seen order.
    info : dict
        Top-level keys of a YAML/JSON mapping other than ``cases``.

    Raises
    ------
    ManifestError
        Missing or unreadable file, unsupported suffix, malformed CSV/YAML/JSON.
    """
    p = Path(path)
    if not p.is_file():
        raise ManifestError(
            "no such manifest file" if not p.exists() else "the manifest is not a file",
            path=p,
            fix="pass a CSV, YAML or JSON manifest",
        )
    suffix = p.suffix.lower()
    if suffix not in _SUFFIXES:
        raise ManifestError(
            f"unsupported manifest type {p.suffix!r}",
            path=p,
            fix="use a .csv, .yaml/.yml or .json manifest",
        )
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot be read ({exc})", path=p, fix="check the file") from exc
    if suffix == ".csv":
        rows, columns = _csv_rows(text, p)
        return rows, columns, {}
    return _mapping_rows(text, p, json_format=suffix == ".json")


def _csv_rows(text: str, path: Path) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    reader = csv.DictReader(lines, skipinitialspace=True)
    header = [h.strip() for h in (reader.fieldnames or [])]
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise ManifestError(f"the header repeats column(s) {duplicated}", path=path)
    rows = []
    for n, raw in enumerate(reader, start=2):
        if None in raw:
            raise ManifestError(
                f"row {n} has more cells than the header has columns",
                path=path,
                fix='quote cells that hold commas, e.g. "1,2,3,4; 5,6,7,2"',
            )
        row = {k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in raw.items()}
        rows.append((n, {k: v for k, v in row.items() if v not in ("", None)}))
    return rows, header


def _mapping_rows(
    text: str, path: Path, *, json_format: bool
) -> tuple[list[tuple[int, dict[str, Any]]], list[str], dict[str, Any]]:
    try:
        data = json.loads(text) if json_format else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        what = "JSON" if json_format else "YAML"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ManifestError(f"is not valid {what} ({first})", path=path) from exc
    info: dict[str, Any] = {}
    if isinstance(data, Mapping):
        info = {str(k): v for k, v in data.items() if k != "cases"}
        data = data.get("cases")
    if not isinstance(data, list):
        raise ManifestError(
            "a manifest is a list of cases (or a mapping with the list under 'cases')",
            path=path,
            fix="write '- case_id: ...' entries under 'cases:' (JSON: {\"cases\": [...]})",
        )
    rows = []
    columns: list[str] = []
    for n, entry in enumerate(data, start=1):
        if not isinstance(entry, Mapping):
            raise ManifestError(f"case {n} is not a mapping of column: value", path=path)
        row = {str(k).strip(): v for k, v in entry.items()}
        columns += [k for k in row if k not in columns]
        rows.append((n, {k: v for k, v in row.items() if v not in (None, "", [])}))
    return rows, columns, info


# -- cases --------------------------------------------------------------------------------------
def _split_paths(value: Any) -> list[str]:
    parts = value.split(";") if isinstance(value, str) else list(value)
    return [str(v).strip() for v in parts if str(v).strip()]


def _resolve(value: str, base: Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def case_from_row(row: Mapping[str, Any], *, base: Path, where: str, path: Path | None) -> Case:
    """A :class:`~synthct.case.Case` from one manifest row (aliases mapped, paths resolved).

    Raises
    ------
    ManifestError
        No ``case_id``, or the same column given under two names (e.g. ``mri`` and ``mr``).
    """
    canonical: dict[str, Any] = {}
    named: dict[str, str] = {}
    for key, value in row.items():
        name = canonical_column(key)
        if name in canonical:
            raise ManifestError(
                f"{where} gives {name} twice (as {named[name]!r} and {key!r})",
                path=path,
                fix="keep one of the two columns",
            )
        canonical[name] = value
        named[name] = key
    case_id = str(canonical.pop("case_id", "") or "").strip()
    if not case_id:
        raise ManifestError(f"{where} has no case_id", path=path, fix="give every case a case_id")
    images = {
        role: [_resolve(v, base) for v in _split_paths(canonical.pop(role))]
        for role in IMAGE_ROLES
        if role in canonical
    }
    meta = {k: canonical.pop(k) for k in META_FIELDS if k in canonical}
    for column in PATH_COLUMNS:
        if str(canonical.get(column) or "").strip():
            canonical[column] = _resolve(str(canonical[column]).strip(), base)
    return Case(case_id, images, meta, canonical)


@dataclass
class Manifest:
    """The cases of a cohort or dataset, in manifest order, case ids unique.

    Parameters
    ----------
    cases : list of Case
        The cases.
    source : Path, optional
        The file read, for messages and for relative paths on writing.
    columns : list of str
        Canonical column names in the order read (the order written back).
    info : dict
        Top-level YAML/JSON keys other than ``cases`` (kept on round trip).
    """

    cases: list[Case]
    source: Path | None = None
    columns: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.cases = list(self.cases)
        seen: dict[str, int] = {}
        for index, case in enumerate(self.cases):
            if case.case_id in seen:
                raise ManifestError(
                    f"case id {case.case_id!r} appears twice (cases {seen[case.case_id] + 1} "
                    f"and {index + 1})",
                    path=self.source,
                    fix="give every case a unique case_id",
                )
            seen[case.case_id] = index

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Manifest:
        """Read a manifest file, or the manifest inside a cohort folder (see module docs)."""
        return read_manifest(path)

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write to ``path`` (format from the suffix); see :func:`write_manifest`."""
        return write_manifest(self, path)

    def __len__(self) -> int:
        return len(self.cases)

    def __iter__(self) -> Iterator[Case]:
        return iter(self.cases)

    def __getitem__(self, case_id: str) -> Case:
        for case in self.cases:
            if case.case_id == case_id:
                return case
        raise KeyError(case_id)

    @property
    def case_ids(self) -> list[str]:
        """The case ids in order."""
        return [c.case_id for c in self.cases]

    def patients(self) -> dict[str, list[str]]:
        """Case ids by patient id (a patient may have several cases)."""
        out: dict[str, list[str]] = {}
        for case in self.cases:
            out.setdefault(case.patient_id, []).append(case.case_id)
        return out

    def rows(self, *, relative_to: Path | None = None) -> list[dict[str, Any]]:
        """One dict per case with canonical columns; paths relative to ``relative_to`` if inside."""
        out = []
        for case in self.cases:
            row: dict[str, Any] = {"case_id": case.case_id}
            for role, paths in case.images.items():
                row[role] = [_relative(p, relative_to) for p in paths]
            row.update(case.meta)
            row.update(
                {k: _relative(v, relative_to) if isinstance(v, Path) else v
                 for k, v in case.extra.items()}
            )  # fmt: skip
            out.append(row)
        return out

    def ordered_columns(self) -> list[str]:
        """Columns to write: those read, then any new ones in canonical order."""
        used: list[str] = ["case_id"]
        for case in self.cases:
            used += [r for r in case.images if r not in used]
            used += [k for k in case.meta if k not in used]
            used += [k for k in case.extra if k not in used]
        order = ["case_id", *IMAGE_ROLES, *META_FIELDS]
        known = [c for c in self.columns if c in used]
        rest = sorted((c for c in used if c not in known), key=lambda c: _rank(c, order))
        return known + rest


def _rank(column: str, order: Sequence[str]) -> tuple[int, str]:
    return (order.index(column) if column in order else len(order), column)


def _relative(path: Path, base: Path | None) -> str:
    if base is not None:
        try:
            return path.resolve().relative_to(base.resolve()).as_posix()
        except ValueError:
            pass
    return str(path)


def read_manifest(path: str | os.PathLike[str], *, allow_empty: bool = False) -> Manifest:
    """Read a CSV, YAML or JSON manifest (or a cohort folder's ``manifest.csv``).

    Parameters
    ----------
    path : path
        The manifest file, or a folder holding one of :data:`MANIFEST_NAMES`.
    allow_empty : bool
        Return an empty manifest instead of raising when it lists no case.

    Returns
    -------
    Manifest
        The cases, paths resolved against the manifest's folder.

    Raises
    ------
    ManifestError
        Unreadable or malformed file, no ``case_id`` column or value, duplicate case ids, a
        column given twice under two names, or no case at all.
    """
    p = find_manifest(path)
    rows, columns, info = read_rows(p)
    if p.suffix.lower() == ".csv" and "case_id" not in columns:
        raise ManifestError(
            f"the header lacks the required column(s) ['case_id']; found {columns}",
            path=p,
            fix="give a header row starting with case_id",
        )
    if not rows and not allow_empty:
        raise ManifestError("the manifest lists no case", path=p, fix="add at least one case")
    base = p.parent.resolve()
    cases = [
        case_from_row(row, base=base, where=f"case {row.get('case_id', f'#{n}')!r}", path=p)
        for n, row in rows
    ]
    canonical = []
    for c in columns:
        name = canonical_column(c)
        if name not in canonical:
            canonical.append(name)
    return Manifest(cases, source=p, columns=canonical, info=info)


def _cell(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ";".join(str(v) for v in value)
    return "" if value is None else str(value)


def _entry_value(column: str, value: Any) -> Any:
    """A YAML/JSON value: one path as a string, except for the MR channels (always a list)."""
    if column in IMAGE_ROLES and column != "mr" and len(value) == 1:
        return value[0]
    return value


def manifest_text(manifest: Manifest, suffix: str, *, relative_to: Path | None) -> str:
    """The text of ``manifest`` as CSV, YAML or JSON (``suffix`` ``.csv``/``.yaml``/``.json``)."""
    rows = manifest.rows(relative_to=relative_to)
    columns = manifest.ordered_columns()
    if suffix == ".csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: _cell(row.get(c)) for c in columns})
        return buffer.getvalue()
    entries = [{c: _entry_value(c, row[c]) for c in columns if c in row} for row in rows]
    data: Any = {**manifest.info, "cases": entries}
    if suffix == ".json":
        return json.dumps(data, indent=2, default=str) + "\n"
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def write_manifest(manifest: Manifest | Iterable[Case], path: str | os.PathLike[str]) -> Path:
    """Write a manifest atomically; the format follows the suffix (``.csv``, ``.yaml``, ``.json``).

    Paths inside the manifest's folder are written relative to it, others absolute, so the
    folder can be moved as a whole. Unknown columns and top-level keys are written back.

    Raises
    ------
    ManifestError
        An unsupported suffix.
    """
    from synthct.io.atomic import write_text_atomic

    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in _SUFFIXES:
        raise ManifestError(
            f"unsupported manifest type {p.suffix!r}",
            path=p,
            fix="use a .csv, .yaml/.yml or .json manifest",
        )
    m = manifest if isinstance(manifest, Manifest) else Manifest(list(manifest))
    suffix = ".yaml" if suffix == ".yml" else suffix
    return write_text_atomic(p, manifest_text(m, suffix, relative_to=p.parent))
