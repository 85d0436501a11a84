"""Rows of the validation report's tables, formatted, from the validation pipeline's outputs.

Plain functions from the pipeline's tables (pandas DataFrames read from ``lesions.csv`` and
``cases.csv``) and the cohort statistics dictionary (``statistics.json``) to lists of rows of
display strings, which :mod:`synthct.report.validation_report` renders. Formatting rules:
HU, mm and dB with one decimal, CNR with one, Dice, MS-SSIM and proportions with three;
p-values as :func:`synthct.validation.statistics.format_p_value` writes them; a missing value
is an em dash, NaN is "n/a" and infinities are "+inf"/"-inf".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from synthct.validation.statistics import format_p_value, unit_key

__all__ = [
    "MISSING",
    "alignment_rows",
    "as_bool",
    "format_value",
    "image_metric_columns",
    "image_metric_rows",
    "lesion_rows",
    "summary_rows",
    "visibility_rows",
]

MISSING = "\u2014"

#: Statuses of ``cases.csv`` that mean the case produced results.
OK_STATUSES = frozenset({"ok", "reused", "success", "succeeded", "done", "completed"})
#: ``cases.csv`` columns shown as image metrics: these prefixes (ImageMetrics.to_dict keys).
_METRIC_PREFIXES = ("mae_", "mean_error_", "psnr_", "ms_ssim", "bone_dice_")
_METRIC_NAMES = frozenset({"body_volume_ml"})


def as_bool(value: Any) -> bool | None:
    """A flag from a table cell: True/False, 1/0 and their strings; None when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no"):
            return False
        return None
    return bool(value)


def format_value(value: Any, decimals: int = 1) -> str:
    """A number for a table: fixed decimals, ``n/a`` for NaN, the dash when missing."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return "n/a"
    if math.isinf(number):
        return "+inf" if number > 0 else "-inf"
    text = f"{number:.{decimals}f}"
    return text.lstrip("-") if float(text) == 0 else text


def _p(value: Any) -> str:
    if value is None:
        return MISSING
    return format_p_value(float(value))


def _visible_text(flag: Any, cnr: Any) -> str:
    visible = as_bool(flag)
    if visible is None:
        return MISSING
    return f"{'yes' if visible else 'no'} (CNR {format_value(cnr)})"


def _audit_text(flagged: Any, score: Any, signals: Any) -> str:
    value = as_bool(flagged)
    if value is None:
        return MISSING
    if not value:
        return "no"
    fired = "" if _missing(signals) or not str(signals) else f", {signals}"
    return f"yes ({format_value(score, 2)}{fired})"


def lesion_rows(lesions: pd.DataFrame) -> list[dict[str, str]]:
    """One row per lesion: visibility, diameters, HU, grade, Dice, MRI contrast and, with the
    audit column, whether the audit flagged it (peak score, signals)."""
    rows = []
    for record in lesions.to_dict(orient="records"):
        get = record.get
        rows.append(
            {
                "case_id": str(get("case_id")),
                "lesion_id": format_value(get("lesion_id"), 0),
                "lesion_name": "" if _missing(get("lesion_name")) else str(get("lesion_name")),
                "grade": str(get("calcification_grade") or MISSING).replace("_", " "),
                "ct_visible": _visible_text(get("ct_visible"), get("ct_cnr")),
                "sct_visible": _visible_text(get("sct_visible"), get("sct_cnr")),
                "mri_visible": _visible_text(get("mri_visible"), get("mri_cnr")),
                "ct_size": f"{format_value(get('ct_diameter_axial_mm'))} x "
                f"{format_value(get('ct_diameter_sagittal_mm'))}",
                "sct_size": f"{format_value(get('sct_diameter_axial_mm'))} x "
                f"{format_value(get('sct_diameter_sagittal_mm'))}",
                "ct_mean_hu": format_value(get("ct_mean_hu")),
                "sct_mean_hu": format_value(get("sct_mean_hu")),
                "mean_difference_hu": format_value(get("mean_difference_hu")),
                "dice": format_value(get("dice"), 3),
                "audit": _audit_text(
                    get("audit_flagged"), get("audit_score"), get("audit_signals")
                ),
                "missed": _missed_text(get("sct_missed"), get("alignment_passed")),
                "truncated": format_value(as_bool(get("truncated"))),
            }
        )
    return rows


def _missed_text(missed: Any, aligned: Any) -> str:
    """Missed on the sCT: yes/no, or undetermined when the alignment check failed."""
    value = as_bool(missed)
    if value is None:
        return "undetermined (sCT misaligned)" if as_bool(aligned) is False else MISSING
    return "yes" if value else "no"


def alignment_rows(cases: pd.DataFrame) -> list[dict[str, str]]:
    """One row per validated case: the alignment check of its sCT with its CT.

    Empty when ``cases.csv`` has no alignment columns (outputs of older versions).
    """
    if "alignment_passed" not in cases.columns:
        return []
    rows = []
    for record in cases.to_dict(orient="records"):
        get = record.get
        passed = as_bool(get("alignment_passed"))
        shift = [format_value(get(f"alignment_best_shift_{a}_mm")) for a in "lps"]
        rows.append(
            {
                "case_id": str(get("case_id")),
                "passed": MISSING if passed is None else ("passed" if passed else "failed"),
                "ncc": format_value(get("alignment_ncc"), 3),
                "bone_dice": format_value(get("alignment_bone_dice"), 3),
                "shift": f"{format_value(get('alignment_best_shift_mm'))} "
                f"(L {shift[0]}, P {shift[1]}, S {shift[2]})",
                "action": str(get("alignment_action") or MISSING).replace("_", " "),
                "reason": "" if _missing(get("alignment_reason")) else str(get("alignment_reason")),
            }
        )
    return rows


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _proportion(visibility: Mapping[str, Any], prefix: str) -> str:
    count, n = visibility.get(f"{prefix}_count"), visibility.get(f"{prefix}_n")
    if count is None or n is None:
        return MISSING
    share = float(visibility.get(f"{prefix}_proportion", int(count) / int(n)))
    return f"{int(count)}/{int(n)} ({100 * share:.0f}%)"


def summary_rows(statistics: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """The paper's table: visibility, diameters and mean HU on CT and sCT with both tests.

    Columns: ``quantity``, ``ct``, ``sct``, ``difference`` (mean sCT - CT with its t-based
    CI), ``paper_test`` (chi-square / Student's paired t-test, as in the paper) and
    ``small_sample_test`` (exact McNemar / Wilcoxon signed-rank).
    """
    if not statistics:
        return []
    rows = []
    visibility = statistics.get("visibility")
    if visibility:
        rows.append(
            {
                "quantity": "Visible, n (%)",
                "ct": _proportion(visibility, "ct_visible"),
                "sct": _proportion(visibility, "sct_visible"),
                "difference": MISSING,
                "paper_test": f"chi-square {_p(visibility.get('chi_square_p'))}",
                "small_sample_test": f"exact McNemar {_p(visibility.get('mcnemar_p'))}",
            }
        )
    for comparison in (statistics.get("comparisons") or {}).values():
        unit = str(comparison.get("unit", ""))
        u = f"_{unit_key(unit)}" if unit_key(unit) else ""

        def spread(prefix: str, c: Mapping[str, Any] = comparison, u: str = u) -> str:
            return (
                f"{format_value(c.get(f'{prefix}_mean{u}'))} "
                f"(SD {format_value(c.get(f'{prefix}_sd{u}'))})"
            )

        rows.append(
            {
                "quantity": f"{comparison.get('label', comparison.get('quantity'))}, {unit}",
                "ct": spread("ct"),
                "sct": spread("sct"),
                "difference": f"{format_value(comparison.get(f'mean_difference{u}'))} "
                f"({format_value(comparison.get(f'mean_difference_ci_low{u}'))} to "
                f"{format_value(comparison.get(f'mean_difference_ci_high{u}'))})",
                "paper_test": f"paired t-test {_p(comparison.get('t_test_p'))}",
                "small_sample_test": f"Wilcoxon {_p(comparison.get('wilcoxon_p'))}",
            }
        )
    return rows


def visibility_rows(statistics: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """The paired 2x2 table (McNemar's): rows CT visible yes/no, columns sCT visible yes/no."""
    visibility = (statistics or {}).get("visibility")
    if not visibility:
        return []
    count = {
        k: format_value(visibility.get(f"{k}_count"), 0)
        for k in ("both_visible", "ct_only_visible", "sct_only_visible", "neither_visible")
    }
    return [
        {
            "ct": "visible on CT",
            "sct_yes": count["both_visible"],
            "sct_no": count["ct_only_visible"],
        },
        {
            "ct": "not visible on CT",
            "sct_yes": count["sct_only_visible"],
            "sct_no": count["neither_visible"],
        },
    ]


def image_metric_columns(cases: pd.DataFrame) -> list[str]:
    """The image-metric columns of ``cases.csv``, in table order.

    Those of :meth:`synthct.imaging.image_metrics.ImageMetrics.to_dict` (MAE, mean error,
    PSNR, MS-SSIM, per-tissue MAE, bone Dice, body volume); voxel counts and the pipeline's
    other columns (lesion counts, alignment, grid) are left out.
    """
    return [
        str(c)
        for c in cases.columns
        if str(c).startswith(_METRIC_PREFIXES) or str(c) in _METRIC_NAMES
    ]


def _metric_decimals(column: str) -> int:
    return 3 if ("ssim" in column or "dice" in column) else 1


def image_metric_rows(
    cases: pd.DataFrame, failed: Mapping[str, str], columns: Iterable[str]
) -> list[dict[str, Any]]:
    """One row per case: its status and metrics; a failed case gets its reason, no numbers."""
    wanted = list(columns)
    rows = []
    for record in cases.to_dict(orient="records"):
        case_id = str(record.get("case_id"))
        if case_id in failed:
            rows.append(
                {
                    "case_id": case_id,
                    "status": "failed",
                    "reason": failed[case_id],
                    "values": [MISSING] * len(wanted),
                }
            )
            continue
        values = [format_value(record.get(c), _metric_decimals(c)) for c in wanted]
        rows.append(
            {
                "case_id": case_id,
                "status": str(record.get("status", "ok")),
                "reason": "",
                "values": values,
            }
        )
    return rows
