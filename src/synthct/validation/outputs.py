"""The files of a validation run: long-format tables (CSV and Parquet) and strict JSON.

:func:`write_outputs` writes, into the output folder, atomically:

=============================  ==================================================================
file                           content
=============================  ==================================================================
``lesions.csv/.parquet``       one row per lesion: ``case_id``, ``lesion_id``, the CT and sCT
                               measurements (``ct_``/``sct_`` prefixes), differences, Dice, MRI,
                               ``sct_missed``, ``truncated``
``cases.csv/.parquet``         one row per validated case: lesion counts, image metrics,
                               alignment and registration figures, CT grid
``image_metrics_long.csv/..``  one row per case and image metric: ``case_id``, ``metric``,
                               ``value``, ``unit``
``metrics.json``               per-case image metrics and per-lesion values, with aggregates
                               (n, mean, SD, median, min, max, p25, p75) per metric
``statistics.json``            ``available``; ``cohort``:
                               :func:`~synthct.validation.statistics.cohort_statistics` of the
                               lesion table; ``results_paragraph``; ``error`` when unavailable
``settings.json``              every setting, the conventions of every metric, the versions
``failures.csv``               one row per failed case: stage, column, file, error type, reason
``audit_flags.csv/.parquet``   with the audit column only: one row per flagged region of the
                               audited cases, compared with CT and the lesions
                               (:mod:`synthct.validation.audit_column`)
=============================  ==================================================================

With the audit column, the lesion and case tables gain ``audit_*`` columns and
``metrics.json`` and ``statistics.json`` an ``audit`` section (lesions flagged, omitted lesions
flagged, true discrepancies and false flags).

JSON is strict: NaN and +-inf are written as ``null`` (``settings.json`` says so; e.g. the PSNR
of identical images is infinite and appears as ``null``). The per-case ``result.json`` files
keep which values were infinite under ``"nonfinite"`` so tables rebuilt from them hold ``inf``.
"""

from __future__ import annotations

import importlib
import math
import os
import platform
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthct.io.atomic import atomic_file, write_json_atomic
from synthct.validation.audit_column import AUDIT_FLAG_COLUMNS, audit_summary
from synthct.validation.case import CaseResult, ValidationSettings

__all__ = [
    "JSON_CONVENTIONS",
    "TABLE_CONVENTIONS",
    "ReportWriter",
    "aggregate",
    "audit_flags_table",
    "cases_table",
    "decode_json",
    "default_report_writer",
    "encode_json",
    "failures_table",
    "image_metrics_long",
    "lesions_table",
    "strict_json",
    "write_outputs",
    "write_table",
]

ReportWriter = Callable[[Path], Any]

JSON_CONVENTIONS = (
    "strict JSON (RFC 8259): NaN, +inf and -inf are written as null; e.g. the PSNR of an sCT "
    "identical to its CT inside the mask is infinite (MSE = 0) and appears as null, an "
    "undefined test or an empty tissue class as null. Per-case result.json files list the "
    "infinite values under 'nonfinite' (dotted key -> 'inf'/'-inf'/'nan')."
)
TABLE_CONVENTIONS = {
    "format": "long: one row per lesion (lesions), per validated case (cases), per case and "
    "image metric (image_metrics_long); case_id in every table, lesion_id in lesions",
    "units": "in the column names: _hu Hounsfield units, _mm millimetres, _mm3 cubic "
    "millimetres, _ml millilitres, _db decibels, _deg degrees, _s seconds; fractions, Dice, "
    "MS-SSIM, NCC and CNR are unitless",
    "differences": "sCT minus CT",
    "missing": "CSV: an empty cell is a missing or undefined value (NaN); infinities are "
    "written inf / -inf. Parquet: NaN and inf as floats, missing text or flags as null",
    "order": "cases in manifest order; lesions by lesion_id within a case",
    "failed_cases": "only in failures.csv: no metric is claimed for them",
    "lesion_id": "the label value in the lesion label map, or 1, 2, ... in the order of "
    "lesion_points",
    "alignment": "alignment_* columns in cases (the check of the sCT against the CT before any "
    "lesion is measured: passed, reason, NCC, bone Dice, MAE, best shift in L/P/S mm, action) "
    "and alignment_passed in lesions; sct_missed = on CT, not on sCT, and only when the "
    "alignment passed (empty otherwise); truncated = the lesion touches the CT's edge or "
    "leaves the sCT's field of view (its sizes are lower bounds); a case stopped by the check "
    "is in failures.csv (stage alignment_check) with the measured offset",
    "audit": "with the audit column: audit_* columns in lesions and cases (empty for a case "
    "without MRI or MRI protocol) and audit_flags, one row per flagged region (flag_id = the "
    "audit's region id; matched_lesion_ids ';'-separated; HU on the CT grid)",
}
AGGREGATE_RULE = (
    "over the finite values of the metric across cases (or lesions): n, mean, SD (ddof=1; null "
    "for n < 2), median, min, max, p25 and p75 (numpy linear interpolation); n_nonfinite counts "
    "the NaN/inf values left out"
)
_IMAGE_METRIC_PREFIXES = ("mae_", "mean_error_", "psnr_", "ms_ssim", "voxels_", "bone_dice_")
_IMAGE_METRIC_NAMES = ("body_voxels", "body_volume_ml")


# -- JSON ----------------------------------------------------------------------------------------
def strict_json(value: Any) -> Any:
    """``value`` as strict-JSON-ready Python: NaN/inf to None, numpy to Python, paths to str."""
    if isinstance(value, Mapping):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, str | bool) or value is None:
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.ndarray):
        return strict_json(value.tolist())
    if isinstance(value, Iterable):
        return [strict_json(v) for v in value]
    return str(value)


def _nonfinite(value: Any, prefix: str, found: dict[str, str]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _nonfinite(v, f"{prefix}{k}.", found)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _nonfinite(v, f"{prefix}{i}.", found)
    elif isinstance(value, float | np.floating) and not math.isfinite(value):
        found[prefix[:-1]] = str(float(value))


def encode_json(data: Mapping[str, Any]) -> dict[str, Any]:
    """Strict JSON of ``data`` plus ``"nonfinite"``: dotted key -> "inf", "-inf" or "nan"."""
    found: dict[str, str] = {}
    _nonfinite(data, "", found)
    out = strict_json(data)
    out["nonfinite"] = found
    return dict(out)


def decode_json(data: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`encode_json`: the non-finite floats put back."""
    out = {k: v for k, v in data.items() if k != "nonfinite"}
    for dotted, text in (data.get("nonfinite") or {}).items():
        *parents, last = dotted.split(".")
        node: Any = out
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = float(text)
        else:
            node[last] = float(text)
    return out


def write_strict_json(path: Path, data: Any) -> Path:
    """Write ``strict_json(data)`` atomically (``allow_nan=False`` guards the rule)."""
    import json

    json.dumps(strict_json(data), allow_nan=False)
    return write_json_atomic(path, strict_json(data))


# -- tables --------------------------------------------------------------------------------------
def is_image_metric(column: str) -> bool:
    """True for the image-level metric columns of the case table."""
    return column.startswith(_IMAGE_METRIC_PREFIXES) or column in _IMAGE_METRIC_NAMES


def metric_unit(metric: str) -> str:
    """The unit of a metric column, from its name."""
    if metric.startswith(("bone_dice_", "ms_ssim")) or metric.endswith(("_fraction", "ncc")):
        return "1"
    if metric.startswith("voxels_") or metric.endswith("_voxels"):
        return "voxels"
    for suffix, unit in (
        ("_hu", "HU"),
        ("_db", "dB"),
        ("_ml", "mL"),
        ("_mm3", "mm^3"),
        ("_mm", "mm"),
        ("_deg", "deg"),
        ("_s", "s"),
    ):
        if metric.endswith(suffix):
            return unit
    return ""


def lesions_table(results: Sequence[CaseResult]) -> pd.DataFrame:
    """One row per lesion of the validated cases (``case_id``, ``lesion_id`` first)."""
    rows = [row for r in results if r.ok for row in r.lesion_rows]
    if not rows:
        return pd.DataFrame(columns=["case_id", "lesion_id"])
    return _frame(rows, ["case_id", "lesion_id"])


def cases_table(results: Sequence[CaseResult]) -> pd.DataFrame:
    """One row per validated case."""
    rows = [r.case_row for r in results if r.ok]
    if not rows:
        return pd.DataFrame(columns=["case_id"])
    return _frame(rows, ["case_id"])


def image_metrics_long(results: Sequence[CaseResult]) -> pd.DataFrame:
    """One row per case and image metric: ``case_id``, ``metric``, ``value``, ``unit``."""
    rows = [
        {"case_id": r.case_id, "metric": k, "value": float(v), "unit": metric_unit(k)}
        for r in results
        if r.ok
        for k, v in r.case_row.items()
        if is_image_metric(k) and v is not None
    ]
    return pd.DataFrame(rows, columns=["case_id", "metric", "value", "unit"])


def audit_flags_table(results: Sequence[CaseResult]) -> pd.DataFrame:
    """One row per flagged region of the audited cases (:data:`AUDIT_FLAG_COLUMNS`)."""
    rows = [row for r in results if r.ok and r.audit_flags for row in r.audit_flags]
    if not rows:
        return pd.DataFrame(columns=list(AUDIT_FLAG_COLUMNS))
    frame = _frame(rows, ["case_id", "flag_id"])
    # undecidable flags (outside the CT) leave gaps: keep the column boolean, not object
    frame["true_discrepancy"] = frame["true_discrepancy"].astype("boolean")
    return frame


def _audited(results: Sequence[CaseResult]) -> bool:
    return any(r.ok and r.audit_flags is not None for r in results)


def failures_table(results: Sequence[CaseResult]) -> pd.DataFrame:
    """One row per failed case."""
    columns = ["case_id", "stage", "column", "file", "error_type", "reason"]
    return pd.DataFrame([r.failure_row() for r in results if not r.ok], columns=columns)


def _frame(rows: Sequence[Mapping[str, Any]], first: list[str]) -> pd.DataFrame:
    """Rows as a table, ``first`` columns first; whole numbers with gaps stay whole (Int64)."""
    frame = pd.DataFrame(list(rows))
    frame = frame[first + [c for c in frame.columns if c not in first]]
    for column in frame.columns:
        values = [row.get(column) for row in rows if row.get(column) is not None]
        whole = all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values)
        if values and whole and len(values) < len(rows):
            frame[column] = frame[column].astype("Int64")
    return frame


def write_table(frame: pd.DataFrame, out_dir: Path, name: str, *, parquet: bool = True) -> None:
    """Write ``name.csv`` (and ``name.parquet``) atomically."""
    with atomic_file(out_dir / f"{name}.csv") as tmp:
        frame.to_csv(tmp, index=False)
    if parquet:
        with atomic_file(out_dir / f"{name}.parquet") as tmp:
            frame.to_parquet(tmp, index=False, engine="pyarrow")


# -- aggregates ----------------------------------------------------------------------------------
def aggregate(values: Iterable[Any]) -> dict[str, Any]:
    """n, mean, SD (ddof=1), median, min, max, p25, p75 of the finite values."""
    numbers = np.array(
        [float(v) for v in values if v is not None and not isinstance(v, str)], dtype=float
    )
    finite = numbers[np.isfinite(numbers)]
    out: dict[str, Any] = {"n": int(finite.size), "n_nonfinite": int(numbers.size - finite.size)}
    if finite.size == 0:
        return out | dict.fromkeys(("mean", "sd", "median", "min", "max", "p25", "p75"))
    p25, median, p75 = np.percentile(finite, [25.0, 50.0, 75.0])
    return out | {
        "mean": float(finite.mean()),
        "sd": float(finite.std(ddof=1)) if finite.size > 1 else None,
        "median": float(median),
        "min": float(finite.min()),
        "max": float(finite.max()),
        "p25": float(p25),
        "p75": float(p75),
    }


def _numeric_columns(frame: pd.DataFrame, skip: Sequence[str]) -> list[str]:
    out = []
    for column in frame.columns:
        if column in skip:
            continue
        series = frame[column]
        if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
            continue
        out.append(str(column))
    return out


def _metrics_json(
    results: Sequence[CaseResult], lesions: pd.DataFrame, cases: pd.DataFrame
) -> dict[str, Any]:
    ok = [r for r in results if r.ok]
    image_names = [c for c in cases.columns if is_image_metric(str(c))]
    per_case = {r.case_id: {k: r.case_row.get(k) for k in image_names} for r in ok}
    lesion_columns = _numeric_columns(lesions, skip=["lesion_id", "mri_cnr_echo"])
    visible = {}
    for modality in ("ct", "sct", "mri"):
        column = f"{modality}_visible"
        if column in lesions.columns:
            flags = [bool(v) for v in lesions[column] if v is not None and v == v]
            if flags:
                visible[modality] = {"visible": int(sum(flags)), "n": len(flags)}
    audit = _audit_json(results)
    return {
        "n_cases": len(results),
        "n_ok": len(ok),
        "n_failed": len(results) - len(ok),
        "n_lesions": len(lesions),
        "conventions": {"json": JSON_CONVENTIONS, "aggregate": AGGREGATE_RULE},
        "visibility": visible,
        "image_metrics": {
            "per_case": per_case,
            "aggregate": {name: aggregate(cases[name]) for name in image_names},
            "units": {name: metric_unit(name) for name in image_names},
        },
        "lesion_metrics": {
            "per_lesion": lesions.to_dict(orient="records"),
            "aggregate": {name: aggregate(lesions[name]) for name in lesion_columns},
        },
        **({} if audit is None else {"audit": audit}),
    }


def _audit_json(results: Sequence[CaseResult]) -> dict[str, Any] | None:
    """The audit totals of the validated cases (None when no case was audited)."""
    ok = [r for r in results if r.ok]
    return audit_summary([row for r in ok for row in r.lesion_rows], [r.case_row for r in ok])


def _statistics_json(lesions: pd.DataFrame, audit: dict[str, Any] | None = None) -> dict[str, Any]:
    from synthct.validation.statistics import (
        StatisticsInputError,
        cohort_statistics,
        results_paragraph,
    )

    out: dict[str, Any] = {"n_lesions": len(lesions), "conventions": JSON_CONVENTIONS}
    if audit is not None:
        out["audit"] = audit
    if len(lesions) < 2:
        reason = f"{len(lesions)} lesion(s) measured; the cohort tests need at least 2"
        return out | {"available": False, "error": reason, "results_paragraph": None}
    try:
        cohort = cohort_statistics(lesions)
    except StatisticsInputError as exc:
        return out | {"available": False, "error": str(exc), "results_paragraph": None}
    return out | {
        "available": True,
        "error": None,
        "cohort": cohort.to_dict(),
        "results_paragraph": results_paragraph(cohort),
    }


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for package in (
        "synthct",
        "numpy",
        "scipy",
        "SimpleITK",
        "pandas",
        "pyarrow",
        "dask",
        "distributed",
        "statsmodels",
        "pingouin",
        "pydantic",
    ):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = None
    return out


def _settings_json(
    results: Sequence[CaseResult], settings: ValidationSettings, manifest: str | None
) -> dict[str, Any]:
    image_conventions = next((r.image_metrics_conventions for r in results if r.ok), None)
    if image_conventions is not None:
        image_conventions = dict(image_conventions)
        image_conventions["mask"] = (
            "per case, column body_mask_given of cases.csv; the rule of each case is in "
            "cases/<case_id>/result.json (image_metrics_conventions.mask). Derived masks: "
            f">= {settings.body_threshold_hu:g} HU, largest 6-connected component, 3D then axial "
            "2D hole filling; always intersected with the sCT's field of view when the sCT was "
            "resampled"
        )
    return {
        "manifest": manifest,
        "settings": settings.to_dict(),
        "settings_fingerprint": settings.fingerprint(),
        "conventions": {
            "image_metrics": image_conventions,
            "lesion_metrics": settings.lesion.rules(),
            "registration": settings.registration.rules() if settings.rigid_registration else None,
            "audit": None if settings.audit is None else settings.audit.rules(),
            "alignment": "sCT and MRI resampled onto the CT grid (linear), label maps nearest "
            "neighbour; lesion annotations and body masks are in the CT frame; the "
            "registration transform maps CT points to sCT points (cases/<id>/sct_to_ct.tfm)",
            "tables": TABLE_CONVENTIONS,
            "json": JSON_CONVENTIONS,
            "aggregate": AGGREGATE_RULE,
            "statistics": "synthct.validation.statistics.cohort_statistics over the lesion "
            "table (paired t-test, Wilcoxon signed-rank, bootstrap CIs, Bland-Altman; "
            "chi-square and exact McNemar for visibility)",
        },
        "versions": _versions(),
    }


# -- report hook ---------------------------------------------------------------------------------
def default_report_writer() -> ReportWriter | None:
    """``synthct.report.validation_report.write_validation_report`` when it exists, else None."""
    name = "synthct.report.validation_report"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name in (name, "synthct.report"):
            return None
        raise
    writer = getattr(module, "write_validation_report", None)
    return writer if callable(writer) else None


# -- everything ----------------------------------------------------------------------------------
def write_outputs(
    out_dir: str | os.PathLike[str],
    results: Sequence[CaseResult],
    settings: ValidationSettings,
    *,
    manifest: str | None = None,
    parquet: bool = True,
) -> dict[str, Path]:
    """Write every table and JSON file of a run into ``out_dir``; return them by name.

    Parameters
    ----------
    out_dir : path
        Existing output folder.
    results : sequence of CaseResult
        Every case of the run, in manifest order (failed ones included).
    settings : ValidationSettings
        The run's settings.
    manifest : str, optional
        The manifest's path, recorded in ``settings.json``.
    parquet : bool
        Also write Parquet files.
    """
    out = Path(out_dir)
    lesions = lesions_table(results)
    cases = cases_table(results)
    written: dict[str, Path] = {}
    for name, frame in (
        ("lesions", lesions),
        ("cases", cases),
        ("image_metrics_long", image_metrics_long(results)),
    ):
        write_table(frame, out, name, parquet=parquet)
        written[name] = out / f"{name}.csv"
    if settings.audit is not None or _audited(results):
        write_table(audit_flags_table(results), out, "audit_flags", parquet=parquet)
        written["audit_flags"] = out / "audit_flags.csv"
    else:
        for suffix in (".csv", ".parquet"):  # a stale table of an earlier run with the audit
            (out / f"audit_flags{suffix}").unlink(missing_ok=True)
    write_table(failures_table(results), out, "failures", parquet=False)
    written["failures"] = out / "failures.csv"
    written["metrics"] = write_strict_json(
        out / "metrics.json", _metrics_json(results, lesions, cases)
    )
    written["statistics"] = write_strict_json(
        out / "statistics.json", _statistics_json(lesions, _audit_json(results))
    )
    written["settings"] = write_strict_json(
        out / "settings.json", _settings_json(results, settings, manifest)
    )
    return written
