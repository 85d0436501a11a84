"""The validation manifest: which CT, sCT, MRI and lesion annotations make up each case.

A manifest is a CSV file (one row per case) or a YAML file (a list of cases under ``cases:``).
Paths are relative to the manifest's folder (absolute paths are kept). Columns / keys:

==================  ========  =====================================================================
column              required  value
==================  ========  =====================================================================
``case_id``         yes       unique; letters, digits, ``.``, ``_``, ``-`` (it names a folder)
``ct``              yes       the reference CT in HU: image file or DICOM series folder
``sct``             yes       the synthetic CT in HU: image file or DICOM series folder
``mri``             no        the MRI source: one file/folder (multi-echo 4D or a DICOM series) or
                              several single-echo files separated by ``;`` (a list in YAML)
``lesions``         no        a label map (one label per lesion) on any grid of the CT's frame
``lesion_points``   no        ``"L,P,S,r; L,P,S,r"``: lesion centres in LPS mm and radii in mm (a
                              list of ``[L, P, S, r]`` or of ``{center_lps_mm, radius_mm, name}``
                              in YAML); lesion ids are 1, 2, ... in the order given
``body_mask``       no        body mask (non-zero = body) on the CT's grid or frame; derived from
                              the CT when omitted
``notes``           no        free text, carried into the tables untouched
==================  ========  =====================================================================

``lesions`` and ``lesion_points`` exclude each other; a case with neither gets image metrics
only. The manifest is read by the one manifest reader (:mod:`synthct.manifest`), so JSON
manifests, the old and new column names (``mr``/``mr_echoes`` for ``mri``, ``lesion_labels``
for ``lesions``) and the manifest ``synthct phantom`` writes are accepted as they are: there
``lesions`` is ``lesion_labels_ct`` (the lesions on the CT grid) when given, and the sCT is
``sct_failure`` when no ``sct`` column is given, and a case with ``n_lesions`` 0 gets image
metrics only (its empty lesion label map is not read); columns other readers use (``tissue_labels``,
``n_lesions``, ``split``, ...) are ignored. Unknown columns, duplicate case ids and malformed
values are errors that name the manifest, the case and the column. Whether the files exist is
checked per case when it runs (a missing file fails that case, not the cohort) or up front with
``require_files=True``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from synthct.case import IMAGE_ROLES, META_FIELDS
from synthct.case import Case as _Case
from synthct.manifest import ManifestError, canonical_column, find_manifest
from synthct.manifest import read_manifest as _read_one_manifest
from synthct.validation.lesion_roi import LesionPoint

__all__ = [
    "MANIFEST_COLUMNS",
    "CaseSpec",
    "LesionPointSpec",
    "Manifest",
    "ManifestError",
    "case_from_paths",
    "parse_lesion_points",
    "read_manifest",
    "spec_from_case",
]

#: Every column a manifest may have, in the order tables list them.
MANIFEST_COLUMNS: tuple[str, ...] = (
    "case_id",
    "ct",
    "sct",
    "mri",
    "lesions",
    "lesion_points",
    "body_mask",
    "notes",
)
_PATH_COLUMNS = ("ct", "sct", "mri", "lesions", "body_mask")
#: Columns of the one manifest (any reader's), accepted here; validation ignores the others.
_KNOWN_COLUMNS = frozenset(("case_id", *IMAGE_ROLES, *META_FIELDS))
_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class LesionPointSpec(BaseModel):
    """A lesion given as a centre in LPS mm and a radius in mm (a sphere ROI)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    center_lps_mm: tuple[float, float, float]
    radius_mm: float = Field(gt=0)
    name: str | None = None

    def to_point(self, lesion_id: int) -> LesionPoint:
        """The :class:`~synthct.validation.lesion_roi.LesionPoint` with ``lesion_id``."""
        return LesionPoint(self.center_lps_mm, self.radius_mm, lesion_id=lesion_id, name=self.name)


class CaseSpec(BaseModel):
    """One case of a manifest, with absolute paths.

    Parameters
    ----------
    case_id : str
        Unique id; letters, digits, ``.``, ``_``, ``-``.
    ct, sct : Path
        Reference CT and synthetic CT (image file or DICOM folder).
    mri : list of Path
        The MRI source: empty, one file/folder, or one file per echo.
    lesions : Path, optional
        Label map of the lesions.
    lesion_points : list of LesionPointSpec, optional
        Lesions as points with radii (exclusive with ``lesions``).
    body_mask : Path, optional
        Body mask; derived from the CT when omitted.
    notes : str, optional
        Free text.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    case_id: str
    ct: Path
    sct: Path
    mri: tuple[Path, ...] = ()
    lesions: Path | None = None
    lesion_points: tuple[LesionPointSpec, ...] | None = None
    body_mask: Path | None = None
    notes: str | None = None

    @field_validator("case_id")
    @classmethod
    def _check_case_id(cls, value: str) -> str:
        value = value.strip()
        if not _CASE_ID.match(value):
            raise ValueError(
                f"case_id {value!r} must start with a letter or digit and hold only letters, "
                "digits, '.', '_' or '-' (it names the case's output folder)"
            )
        return value

    @model_validator(mode="after")
    def _one_lesion_source(self) -> CaseSpec:
        if self.lesions is not None and self.lesion_points is not None:
            raise ValueError("give the lesions either as 'lesions' or as 'lesion_points', not both")
        if self.lesion_points is not None and not self.lesion_points:
            raise ValueError("'lesion_points' is given but lists no lesion")
        return self

    def input_paths(self) -> dict[str, list[Path]]:
        """Every input path by column (only the columns that are set)."""
        paths: dict[str, list[Path]] = {"ct": [self.ct], "sct": [self.sct]}
        if self.mri:
            paths["mri"] = list(self.mri)
        if self.lesions is not None:
            paths["lesions"] = [self.lesions]
        if self.body_mask is not None:
            paths["body_mask"] = [self.body_mask]
        return paths

    def missing_inputs(self) -> list[tuple[str, Path]]:
        """``(column, path)`` of every input that does not exist or cannot be read."""
        return [
            (column, p)
            for column, paths in self.input_paths().items()
            for p in paths
            if not p.exists() or not os.access(p, os.R_OK)
        ]

    def points(self) -> list[LesionPoint]:
        """The lesion points with ids 1, 2, ... (empty when lesions come as a label map)."""
        return [spec.to_point(i) for i, spec in enumerate(self.lesion_points or (), start=1)]

    def describe(self) -> dict[str, Any]:
        """JSON-ready copy of the case (paths as strings)."""
        return self.model_dump(mode="json")


@dataclass(frozen=True)
class Manifest:
    """The cases of a validation study, in manifest order (case ids checked unique).

    Parameters
    ----------
    cases : tuple of CaseSpec
        The cases.
    source : Path, optional
        The manifest file, for messages.
    """

    cases: tuple[CaseSpec, ...]
    source: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "cases", tuple(self.cases))
        seen: dict[str, int] = {}
        for index, case in enumerate(self.cases):
            if case.case_id in seen:
                raise ManifestError(
                    f"case id {case.case_id!r} appears twice (cases {seen[case.case_id] + 1} and "
                    f"{index + 1})",
                    path=self.source,
                    fix="give every case a unique case_id",
                )
            seen[case.case_id] = index

    def __len__(self) -> int:
        return len(self.cases)

    def missing_inputs(self) -> list[tuple[str, str, Path]]:
        """``(case_id, column, path)`` of every input file that is missing or unreadable."""
        return [(c.case_id, col, p) for c in self.cases for col, p in c.missing_inputs()]

    def require_files(self) -> None:
        """Raise :class:`ManifestError` listing every missing or unreadable input file."""
        missing = self.missing_inputs()
        if missing:
            lines = "\n".join(f"  case {cid!r}, {col}: {p}" for cid, col, p in missing)
            raise ManifestError(
                f"{len(missing)} input file(s) are missing or unreadable:\n{lines}",
                path=self.source,
                fix="correct the paths (they are relative to the manifest's folder) or copy "
                "the files there",
            )


def parse_lesion_points(value: Any, *, where: str = "lesion_points") -> list[LesionPointSpec]:
    """Lesion points from ``"L,P,S,r; L,P,S,r"`` or a list (YAML) of 4-lists or mappings.

    Raises
    ------
    ValueError
        When an entry is not 4 finite numbers with a positive radius.
    """
    if isinstance(value, str):
        entries: list[Any] = [part for part in value.split(";") if part.strip()]
    elif isinstance(value, Sequence):
        entries = list(value)
    else:
        raise ValueError(f"{where}: expected 'L,P,S,r; ...' or a list, got {value!r}")
    points = []
    for n, entry in enumerate(entries, start=1):
        try:
            if isinstance(entry, Mapping):
                points.append(LesionPointSpec.model_validate(dict(entry)))
                continue
            numbers = entry.split(",") if isinstance(entry, str) else list(entry)
            values = [float(x) for x in numbers]
            if len(values) != 4:
                raise ValueError(f"{len(values)} numbers")
            points.append(
                LesionPointSpec(
                    center_lps_mm=(values[0], values[1], values[2]), radius_mm=values[3]
                )
            )
        except (ValueError, TypeError, ValidationError) as exc:
            raise ValueError(
                f"lesion point {n} ({entry!r}) is not 'L,P,S,r' with finite numbers in LPS mm "
                f"and a positive radius in mm ({_first_line(exc)})"
            ) from exc
    return points


def read_manifest(path: str | os.PathLike[str], *, require_files: bool = False) -> Manifest:
    """Read a CSV or YAML manifest; paths are resolved against the manifest's folder.

    Parameters
    ----------
    path : path
        ``.csv``, ``.yaml``/``.yml`` or ``.json`` file.
    require_files : bool
        Also check that every input file exists and is readable (otherwise a missing file
        fails its case when the case runs, and the other cases go on).

    Raises
    ------
    ManifestError
        Unreadable or malformed manifest, unknown columns, missing required values, malformed
        lesion points, duplicate case ids (and missing files with ``require_files``); the
        message names the manifest, the case and the column.
    """
    p = find_manifest(path)
    if not p.is_file():
        raise ManifestError(
            "no such manifest file" if not p.exists() else "the manifest is not a file",
            path=p,
            fix="pass a CSV, YAML or JSON manifest (see `synthct validate --help`)",
        )
    one = _read_one_manifest(p, allow_empty=True)
    if one.info:
        raise ManifestError(
            f"unknown top-level key(s) {sorted(one.info)}",
            path=p,
            fix="put the cases in a list under 'cases:'",
        )
    is_csv = p.suffix.lower() == ".csv"
    if is_csv:
        _check_columns(one.columns, p, row=None)
    if not one.cases:
        raise ManifestError("the manifest lists no case", path=p, fix="add at least one case")
    cases = []
    for index, case in enumerate(one.cases, start=1):
        if not is_csv:
            _check_columns(list(case.extra), p, row=index)
        if not (case.has("sct") or case.has("sct_failure")):
            raise ManifestError(
                f"case {case.case_id!r} (entry {index}) has no sCT: column sct is empty",
                path=p,
                fix="fill in the sct column (e.g. the output of `synthct synthesize`); a "
                "`synthct phantom` cohort made with --failure-sct has its failure sCT there",
            )
        cases.append(_case(_row_of(case), index, base=p.parent.resolve(), manifest=p))
    manifest = Manifest(cases=tuple(cases), source=p)
    if require_files:
        manifest.require_files()
    return manifest


def spec_from_case(case: _Case, *, notes: str | None = None) -> CaseSpec:
    """The validation view of a :class:`synthct.case.Case` (columns mapped as in the module docs).

    Raises
    ------
    ManifestError
        No CT or no sCT, or malformed values, naming the case and the column.
    """
    row = _row_of(case)
    if notes is not None:
        row["notes"] = notes
    return _case(row, 1, base=Path.cwd(), manifest=None)


def _row_of(case: _Case) -> dict[str, Any]:
    """A validation row from a case: lesions on the CT grid, the failure sCT as sCT."""
    row: dict[str, Any] = {"case_id": case.case_id}
    lesions = case.path("lesion_labels_ct") or case.path("lesion_labels")
    if str(case.meta.get("n_lesions", "")).strip() == "0":
        lesions = None  # a phantom's lesion-free case: its label map is empty by design
    sct = case.path("sct") or case.path("sct_failure")
    for column, value in (
        ("ct", case.path("ct")),
        ("sct", sct),
        ("mri", [str(x) for x in case.paths("mr")] or None),
        ("lesions", lesions),
        ("body_mask", case.path("body_mask")),
        ("lesion_points", case.meta.get("lesion_points")),
        ("notes", case.meta.get("notes")),
    ):
        if value is not None:
            row[column] = value if isinstance(value, list | str) else str(value)
    return row


def case_from_paths(
    *,
    case_id: str,
    ct: str | os.PathLike[str],
    sct: str | os.PathLike[str],
    mri: Iterable[str | os.PathLike[str]] = (),
    lesions: str | os.PathLike[str] | None = None,
    lesion_points: str | Sequence[Any] | None = None,
    body_mask: str | os.PathLike[str] | None = None,
) -> CaseSpec:
    """A single case from paths (relative to the working folder), as the CLI's single-case form.

    Raises
    ------
    ManifestError
        Malformed values, with the option named.
    """
    row: dict[str, Any] = {
        "case_id": case_id,
        "ct": str(ct),
        "sct": str(sct),
        "mri": ";".join(str(m) for m in mri) or None,
        "lesions": None if lesions is None else str(lesions),
        "lesion_points": lesion_points,
        "body_mask": None if body_mask is None else str(body_mask),
    }
    return _case({k: v for k, v in row.items() if v is not None}, 1, base=Path.cwd(), manifest=None)


# -- parsing -------------------------------------------------------------------------------------
def _first_line(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        return str(error.get("msg", exc))
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_columns(columns: Sequence[str], path: Path, *, row: int | None) -> None:
    where = "the header" if row is None else f"case {row}"
    unknown = [c for c in columns if canonical_column(c) not in _KNOWN_COLUMNS]
    if unknown:
        raise ManifestError(
            f"{where} has unknown column(s) {unknown}",
            path=path,
            fix=f"use only {', '.join(MANIFEST_COLUMNS)}",
        )
    duplicated = sorted({c for c in columns if list(columns).count(c) > 1})
    if duplicated:
        raise ManifestError(f"{where} repeats column(s) {duplicated}", path=path)
    if row is None:
        present = {canonical_column(c) for c in columns}
        if "sct_failure" in present:
            present.add("sct")
        missing = [c for c in ("case_id", "ct", "sct") if c not in present]
        if missing:
            raise ManifestError(
                f"the header lacks the required column(s) {missing}",
                path=path,
                fix="a manifest needs at least case_id, ct and sct",
            )


def _resolve(value: Any, base: Path) -> Path:
    p = Path(str(value)).expanduser()
    return p if p.is_absolute() else base / p


def _case(row: Mapping[str, Any], index: int, *, base: Path, manifest: Path | None) -> CaseSpec:
    label = f"case {row.get('case_id', f'#{index}')!r} (entry {index})"
    values: dict[str, Any] = {}
    try:
        for column, value in row.items():
            if column in ("mri",):
                parts = value.split(";") if isinstance(value, str) else list(value)
                values[column] = tuple(_resolve(v.strip(), base) for v in parts if str(v).strip())
            elif column in _PATH_COLUMNS:
                values[column] = _resolve(value, base)
            elif column == "lesion_points":
                try:
                    values[column] = tuple(parse_lesion_points(value))
                except ValueError as exc:
                    raise ManifestError(
                        f"{label}, column 'lesion_points': {exc}",
                        path=manifest,
                        fix="write the lesions as 'L,P,S,r; L,P,S,r' in LPS mm (radius in mm)",
                    ) from exc
            else:
                values[column] = str(value)
        return CaseSpec.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"column {'.'.join(str(x) for x in e['loc']) or '(case)'}: {e['msg']}"
            for e in exc.errors()
        )
        raise ManifestError(
            f"{label}: {problems}",
            path=manifest,
            fix="every case needs case_id, ct and sct; see the manifest format in "
            "`synthct validate --help`",
        ) from exc
