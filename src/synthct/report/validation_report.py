"""The HTML validation report, built from the output folder of ``synthct validate``.

Input folder (written by the validation pipeline)
-------------------------------------------------
``lesions.csv``
    One row per lesion: ``case_id`` plus the keys of
    :meth:`synthct.validation.lesion_metrics.LesionResult.to_dict`.
``cases.csv``
    One row per case: ``case_id``, ``status`` (``ok`` for a case with results; anything else
    counts as failed, with ``error`` or ``reason`` as its reason when present) and the keys of
    :meth:`synthct.imaging.image_metrics.ImageMetrics.to_dict` (``conventions`` as a JSON
    string, shown once in the settings).
``statistics.json``
    ``{"cohort": CohortStatistics.to_dict(), "results_paragraph": ..., "error": ...}`` (see
    :mod:`synthct.validation.statistics`; the cohort's keys may also stand at the top level);
    ``error`` says why there are no statistics (e.g. fewer than 2 lesions). Strict JSON
    (NaN as null) is read as well. May be absent.
``settings.json``
    The exact settings and conventions of the run, shown as they are.
``failures.csv`` (optional)
    ``case_id`` and ``reason`` (or ``error``/``message``) of each failed case; other columns
    are shown too.
``cases/<case_id>/lesion-<lesion_id>.png``
    The per-lesion figure (:func:`synthct.validation.lesion_figure.lesion_figure`).

Output
------
``report.html`` in the folder (written atomically), and the cohort plots under
``report_figures/``. By default every image is embedded in the HTML as a base64 PNG data URI,
so the one file can be sent on its own; with ``embed_images=False`` images are linked by
paths relative to the report instead. All text from the inputs is HTML-escaped (jinja2
autoescape). A failed case contributes no lesion row, plot point, figure or metric to the
report; lesion rows of failed cases found in ``lesions.csv`` are left out with a note.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from synthct.errors import ReadError
from synthct.figures.plots import bland_altman_figure, paired_values_figure, visibility_figure
from synthct.io.atomic import write_text_atomic
from synthct.report.report_tables import (
    OK_STATUSES,
    alignment_rows,
    image_metric_columns,
    image_metric_rows,
    lesion_rows,
    summary_rows,
    visibility_rows,
)
from synthct.validation.statistics import unit_key
from synthct.version import __version__

__all__ = ["ValidationOutputs", "case_views", "read_validation_outputs", "write_validation_report"]

REPORT_NAME = "report.html"
#: Folder of the self-contained interactive pages (`synthct view --export`) that reports link to.
VIEW_DIR = "view"
FIGURES_FOLDER = "report_figures"
DEFAULT_TITLE = "Synthetic CT validation report"
_REASON_COLUMNS = ("reason", "error", "message")
_NA_VALUES = ["", "nan", "NaN", "NA", "null", "None"]


@dataclass(frozen=True)
class ValidationOutputs:
    """The validation pipeline's outputs, read from its folder.

    ``failed`` maps each failed case id to its reason; ``lesions`` holds the rows of the
    other cases only.
    """

    root: Path
    lesions: pd.DataFrame
    cases: pd.DataFrame
    statistics: dict[str, Any] | None
    settings: dict[str, Any]
    failures: pd.DataFrame
    failed: dict[str, str]
    notes: tuple[str, ...]


def _read_csv(path: Path, *, required: bool) -> pd.DataFrame:
    if not path.is_file():
        if required:
            raise ReadError(
                "the validation output is incomplete: this table is missing",
                path=path,
                fix="run `synthct validate` into this folder first, or point to its output",
            )
        return pd.DataFrame({"case_id": pd.Series([], dtype=str)})
    try:
        table = pd.read_csv(
            path, dtype={"case_id": str}, keep_default_na=False, na_values=_NA_VALUES
        )
    except pd.errors.EmptyDataError:
        return pd.DataFrame({"case_id": pd.Series([], dtype=str)})
    if "case_id" not in table.columns:
        raise ReadError("the table has no case_id column", path=path)
    return table


def _read_json(path: Path, *, required: bool) -> dict[str, Any] | None:
    if not path.is_file():
        if required:
            raise ReadError(
                "the validation output is incomplete: this file is missing",
                path=path,
                fix="run `synthct validate` into this folder first, or point to its output",
            )
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ReadError(f"not valid JSON ({exc})", path=path) from exc
    if not isinstance(data, dict):
        raise ReadError("expected a JSON object", path=path)
    return data


def _reason(record: dict[str, Any], default: str) -> str:
    for column in _REASON_COLUMNS:
        value = record.get(column)
        if isinstance(value, str) and value.strip():
            return value
    return default


def read_validation_outputs(out_dir: str | os.PathLike[str]) -> ValidationOutputs:
    """Read the tables and JSON files of a validation output folder (see the module notes).

    Raises
    ------
    ReadError
        ``lesions.csv``, ``cases.csv`` or ``settings.json`` is missing or unreadable.
    """
    root = Path(out_dir)
    lesions = _read_csv(root / "lesions.csv", required=True)
    cases = _read_csv(root / "cases.csv", required=True)
    failures = _read_csv(root / "failures.csv", required=False)
    settings = _read_json(root / "settings.json", required=True) or {}
    statistics = _read_json(root / "statistics.json", required=False)
    failed: dict[str, str] = {}
    for record in failures.to_dict(orient="records"):
        failed[str(record["case_id"])] = _reason(record, "failed (no reason given)")
    for record in cases.to_dict(orient="records"):
        status = str(record.get("status", "ok")).strip().lower()
        case_id = str(record["case_id"])
        if status not in OK_STATUSES and case_id not in failed:
            failed[case_id] = _reason(record, f"status {record.get('status')}")
    notes = []
    if "sct_out_of_domain" in cases.columns:
        # The synthesis model's domain warnings travel with each sCT (its sidecar).
        for record in cases.to_dict(orient="records"):
            text = record.get("sct_out_of_domain")
            if isinstance(text, str) and text.strip():
                notes.append(
                    f"Case {record['case_id']}: the sCT was made outside its model's training "
                    f"domain: {text}"
                )
    dropped = lesions["case_id"].astype(str).isin(list(failed))
    if dropped.any():
        notes.append(
            f"lesions.csv held {int(dropped.sum())} row(s) of failed cases; they are left out."
        )
        lesions = lesions.loc[~dropped].reset_index(drop=True)
    return ValidationOutputs(
        root=root,
        lesions=lesions,
        cases=cases,
        statistics=statistics,
        settings=settings,
        failures=failures,
        failed=failed,
        notes=tuple(notes),
    )


def _image_source(path: Path, root: Path, *, embed: bool) -> str | None:
    """A data URI (embedded) or a relative URL for an image; None when it is not there."""
    try:
        resolved = path.resolve()
        relative = resolved.relative_to(root.resolve())
    except (OSError, ValueError):  # outside the folder (e.g. a case id with "..")
        return None
    if not resolved.is_file():
        return None
    if embed:
        return "data:image/png;base64," + base64.b64encode(resolved.read_bytes()).decode("ascii")
    return "/".join(quote(part) for part in relative.parts)


def _cohort(statistics: dict[str, Any] | None) -> tuple[dict[str, Any] | None, str, str]:
    """Cohort dictionary, results paragraph and error text of ``statistics.json``."""
    if not statistics:
        return None, "", "statistics.json is missing"
    cohort = statistics.get("cohort") or statistics
    paragraph = str(statistics.get("results_paragraph") or cohort.get("results_paragraph") or "")
    error = str(statistics.get("error") or "")
    if "comparisons" not in cohort and "visibility" not in cohort:
        return None, paragraph, error or "statistics.json holds no cohort statistics"
    return cohort, paragraph, error


def _labels(lesions: pd.DataFrame) -> list[str]:
    return [f"{c}/{int(i)}" for c, i in zip(lesions["case_id"], lesions["lesion_id"], strict=True)]


def _plots(
    outputs: ValidationOutputs, cohort: dict[str, Any] | None, *, embed: bool, dpi: int
) -> list[dict[str, str | None]]:
    lesions = outputs.lesions
    if lesions.empty:
        return []
    folder = outputs.root / FIGURES_FOLDER
    folder.mkdir(exist_ok=True)
    labels = _labels(lesions)
    comparisons = (cohort or {}).get("comparisons") or {}
    plots: list[dict[str, str | None]] = []
    for name, comparison in comparisons.items():
        ct_column, sct_column = f"ct_{name}", f"sct_{name}"
        if ct_column not in lesions or sct_column not in lesions:
            continue
        ct, sct = lesions[ct_column].astype(float), lesions[sct_column].astype(float)
        unit = str(comparison.get("unit", ""))
        label = str(comparison.get("label", name))
        u = f"_{unit_key(unit)}" if unit_key(unit) else ""
        limits = {
            key: _float(comparison.get(f"bland_altman_{key}{u}"))
            for key in ("bias", "loa_lower", "loa_upper")
        }
        path = bland_altman_figure(
            folder / f"bland_altman_{name}.png",
            ct,
            sct,
            unit=unit,
            label=label,
            point_labels=labels,
            dpi=dpi,
            **limits,
        )
        plots.append(
            _plot(
                path,
                outputs.root,
                embed,
                f"Bland-Altman plot of {label} (sCT - CT "
                "against the mean), bias and limits of agreement from the statistics.",
            )
        )
        path = paired_values_figure(
            folder / f"values_{name}.png",
            ct,
            sct,
            point_labels=labels,
            unit=unit,
            label=label,
            dpi=dpi,
        )
        plots.append(_plot(path, outputs.root, embed, f"{label} on CT and sCT, per lesion."))
    if {"ct_cnr", "sct_cnr"} <= set(lesions.columns):
        threshold = float(_setting(outputs.settings, "rose_threshold", 3.0))
        path = visibility_figure(
            folder / "visibility_cnr.png",
            lesions["ct_cnr"].astype(float),
            lesions["sct_cnr"].astype(float),
            point_labels=labels,
            threshold=threshold,
            dpi=dpi,
        )
        plots.append(
            _plot(
                path,
                outputs.root,
                embed,
                "|CNR| of each lesion on CT and sCT; "
                f"dashed: the visibility threshold |CNR| = {threshold:g}.",
            )
        )
    return plots


def _float(value: Any) -> float:
    """A number from JSON; NaN for null (strict JSON writes NaN and infinities as null)."""
    return math.nan if value is None else float(value)


def _plot(path: Path, root: Path, embed: bool, caption: str) -> dict[str, str | None]:
    return {"src": _image_source(path, root, embed=embed), "alt": path.name, "caption": caption}


def _setting(settings: Any, key: str, default: Any) -> Any:
    """The first value of ``key`` anywhere in the nested settings (depth first)."""
    if isinstance(settings, dict):
        if key in settings:
            return settings[key]
        for value in settings.values():
            found = _setting(value, key, None)
            if found is not None:
                return found
    return default


def _lesion_figures(outputs: ValidationOutputs, *, embed: bool) -> list[dict[str, Any]]:
    figures: list[dict[str, Any]] = []
    if outputs.lesions.empty:
        return figures
    for case_id, lesion_id in zip(
        outputs.lesions["case_id"], outputs.lesions["lesion_id"], strict=True
    ):
        name = f"lesion-{int(lesion_id)}.png"
        path = outputs.root / "cases" / str(case_id) / name
        figures.append(
            {
                "case_id": str(case_id),
                "lesion_id": int(lesion_id),
                "src": _image_source(path, outputs.root, embed=embed),
                "alt": f"cases/{case_id}/{name}",
            }
        )
    return figures


def _failure_rows(outputs: ValidationOutputs) -> tuple[list[str], list[dict[str, Any]]]:
    extra = [
        str(c) for c in outputs.failures.columns if c != "case_id" and c not in _REASON_COLUMNS
    ]
    by_case = {str(r["case_id"]): r for r in outputs.failures.to_dict(orient="records")}
    rows = []
    for case_id, reason in outputs.failed.items():
        record = by_case.get(case_id, {})
        values = ["" if pd.isna(record.get(c)) else str(record.get(c)) for c in extra]
        rows.append({"case_id": case_id, "reason": reason, "extra": values})
    return extra, rows


def _metric_conventions(cases: pd.DataFrame) -> Any:
    if "conventions" not in cases.columns:
        return None
    for value in cases["conventions"]:
        if isinstance(value, str) and value.strip():
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                return value
    return None


def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("synthct.report", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def case_views(root: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """``(case_id, relative link)`` of every interactive page in ``root/view/`` (made by
    ``synthct view ROOT --export ROOT/view``), for the reports to link to."""
    folder = Path(root) / VIEW_DIR
    if not folder.is_dir():
        return []
    return [(p.stem, f"{VIEW_DIR}/{quote(p.name)}") for p in sorted(folder.glob("*.html"))]


def write_validation_report(
    out_dir: str | os.PathLike[str],
    *,
    path: str | os.PathLike[str] | None = None,
    title: str = DEFAULT_TITLE,
    embed_images: bool = True,
    dpi: int = 100,
) -> Path:
    """Build ``report.html`` from a validation output folder (see the module notes).

    Parameters
    ----------
    out_dir : path
        The folder ``synthct validate`` wrote.
    path : path, optional
        Where to write the report; ``out_dir/report.html`` by default. Linked images
        (``embed_images=False``) are relative to ``out_dir``, so keep the report there.
    title : str
        Title of the report.
    embed_images : bool
        Embed every image as a base64 data URI (default; one self-contained file) or link them.
    dpi : int
        Resolution of the cohort plots.

    Returns
    -------
    Path
        The report written.

    Raises
    ------
    ReadError
        A required input is missing or unreadable.
    """
    outputs = read_validation_outputs(out_dir)
    cohort, paragraph, statistics_error = _cohort(outputs.statistics)
    metric_columns = image_metric_columns(outputs.cases)
    failure_columns, failures = _failure_rows(outputs)
    n_cases = len(set(outputs.cases["case_id"].astype(str)) | set(outputs.failed))
    context = {
        "title": title,
        "version": __version__,
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "source": str(outputs.root),
        "embedded": embed_images,
        "n_cases": n_cases,
        "n_ok": n_cases - len(outputs.failed),
        "n_failed": len(outputs.failed),
        "n_lesions": len(outputs.lesions),
        "results_paragraph": paragraph,
        "statistics_error": statistics_error,
        "notes": list(outputs.notes),
        "summary": summary_rows(cohort),
        "visibility": visibility_rows(cohort),
        "lesions": lesion_rows(outputs.lesions),
        "lesion_alignment": "sct_missed" in outputs.lesions.columns,
        "alignment": alignment_rows(outputs.cases),
        "audit_column": "audit_flagged" in outputs.lesions.columns,
        "lesion_figures": _lesion_figures(outputs, embed=embed_images),
        "plots": _plots(outputs, cohort, embed=embed_images, dpi=dpi),
        "metric_columns": metric_columns,
        "metric_rows": image_metric_rows(outputs.cases, outputs.failed, metric_columns),
        "failure_columns": failure_columns,
        "failures": failures,
        "settings": outputs.settings,
        "metric_conventions": _metric_conventions(outputs.cases),
        "case_views": case_views(outputs.root),
    }
    html = _environment().get_template("validation_report.html").render(**context)
    target = Path(path) if path is not None else outputs.root / REPORT_NAME
    return write_text_atomic(target, html)
