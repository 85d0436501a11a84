"""The SynthRAD2025-style files of an evaluation: one row per case, cohort mean and SD.

===========================  ===================================================================
file                         content
===========================  ===================================================================
``evaluation.csv``           one row per case: ``case_id``, ``status``, ``mae_hu``,
                             ``psnr_db``, ``ms_ssim``, ``bone_dice_250hu`` (the SynthRAD2025
                             image metrics, inside the body mask), then ``mean_error_hu``,
                             ``bone_dice_150hu``, lesion counts, the sCT's domain warnings and,
                             for a failed case, the reason
``evaluation_summary.csv``   one row per metric: n, mean, SD (ddof=1), median, min, max over
                             the finite values of the cases that ran
``evaluation_summary.md``    the cohort table (mean +- SD) and what was evaluated, for people
``evaluation_summary.html``  the same as HTML
``evaluation.json``          the rows, the cohort figures, the description and the conventions
===========================  ===================================================================

The metrics are validation's (:func:`synthct.imaging.image_metrics.image_metrics`): MAE with
no clipping; PSNR and MS-SSIM with both images clipped to [-1024, 3071] HU (data range
4095 HU), MS-SSIM in 3D as the SynthRAD2025 evaluation computes it; bone Dice of CT and sCT
thresholded at 250 HU. The PSNR of an sCT equal to its CT is infinite: it is written ``inf``
and left out of the mean.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from synthct.evaluation.cases import EvaluationCase
from synthct.io.atomic import atomic_file, write_text_atomic
from synthct.validation.case import CaseResult
from synthct.validation.outputs import aggregate, write_strict_json

__all__ = ["METRICS", "evaluation_rows", "write_evaluation_files"]

#: The SynthRAD2025 image metrics first, then synthct's extra ones.
METRICS: tuple[str, ...] = (
    "mae_hu",
    "psnr_db",
    "ms_ssim",
    "bone_dice_250hu",
    "mean_error_hu",
    "bone_dice_150hu",
)
_EXTRA = ("n_lesions", "n_visible_ct", "n_visible_sct", "sct_out_of_domain")
CONVENTIONS = {
    "mask": "body mask given in the manifest, else derived from the CT; intersected with the "
    "sCT's field of view",
    "mae_hu": "mean |sCT - CT| in HU inside the mask, no clipping",
    "psnr_db": "both images clipped to [-1024, 3071] HU, data range 4095 HU; inf when equal",
    "ms_ssim": "3D, SynthRAD2025 evaluation: outside the mask -1024 HU, 5 scales, weights "
    ".0448 .2856 .3001 .2363 .1333, 7^3 uniform window",
    "bone_dice_250hu": "Dice of CT >= 250 HU and sCT >= 250 HU inside the mask",
    "cohort": "over the finite values of the cases that ran: n, mean, SD (ddof=1), median, "
    "min, max",
    "lesions": "lesion tables (lesions.csv) as `synthct validate` writes them",
}


def evaluation_rows(
    cases: Sequence[EvaluationCase],
    results: Sequence[CaseResult],
    failed: Mapping[str, str],
) -> list[dict[str, Any]]:
    """One row per case, in ``cases`` order (failed cases with their reason, no metric)."""
    by_id = {r.case_id: r for r in results}
    rows = []
    for case in cases:
        row: dict[str, Any] = {"case_id": case.case_id}
        result = by_id.get(case.case_id)
        if result is not None and result.ok:
            row["status"] = "ok"
            row.update({k: result.case_row.get(k) for k in METRICS + _EXTRA})
            row["error"] = None
        else:
            row["status"] = "failed"
            row.update(dict.fromkeys(METRICS + _EXTRA))
            row["error"] = failed.get(case.case_id) or (result.error if result else None)
        rows.append(row)
    return rows


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4g}"


def _summary_markdown(cohort: Mapping[str, Mapping[str, Any]], about: Mapping[str, Any]) -> str:
    lines = ["# Evaluation", ""]
    lines += [f"- {k}: {v}" for k, v in about.items()]
    lines += ["", "| metric | n | mean | SD | median | min | max |", "| --- |" + " --- |" * 6]
    for metric, a in cohort.items():
        values = [a.get(k) for k in ("mean", "sd", "median", "min", "max")]
        lines.append(f"| {metric} | {a['n']} | " + " | ".join(_number(v) for v in values) + " |")
    lines += ["", "## Conventions", ""]
    lines += [f"- {k}: {v}" for k, v in CONVENTIONS.items()]
    return "\n".join(lines) + "\n"


def _summary_html(cohort: Mapping[str, Mapping[str, Any]], about: Mapping[str, Any]) -> str:
    def cell(v: Any) -> str:
        return f"<td>{html.escape(str(v))}</td>"

    items = "".join(f"<li>{html.escape(f'{k}: {v}')}</li>" for k, v in about.items())
    head = "".join(f"<th>{h}</th>" for h in ("metric", "n", "mean", "SD", "median", "min", "max"))
    body = "".join(
        "<tr>"
        + cell(metric)
        + cell(a["n"])
        + "".join(cell(_number(a.get(k))) for k in ("mean", "sd", "median", "min", "max"))
        + "</tr>"
        for metric, a in cohort.items()
    )
    conventions = "".join(f"<li>{html.escape(f'{k}: {v}')}</li>" for k, v in CONVENTIONS.items())
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>synthct evaluation</title>"
        "</head><body><h1>Evaluation</h1>"
        f"<ul>{items}</ul><table border='1'><tr>{head}</tr>{body}</table>"
        f"<h2>Conventions</h2><ul>{conventions}</ul></body></html>\n"
    )


def write_evaluation_files(
    out_dir: Path, rows: Sequence[Mapping[str, Any]], *, description: Mapping[str, Any]
) -> tuple[dict[str, dict[str, Any]], dict[str, Path]]:
    """Write the files of the module docstring (atomically); return (cohort, paths)."""
    ok = [r for r in rows if r["status"] == "ok"]
    cohort = {m: aggregate(r[m] for r in ok) for m in METRICS}
    about = {
        **description,
        "cases": len(rows),
        "evaluated": len(ok),
        "failed": len(rows) - len(ok),
    }
    files = {
        "evaluation": out_dir / "evaluation.csv",
        "summary_csv": out_dir / "evaluation_summary.csv",
        "summary_md": out_dir / "evaluation_summary.md",
        "summary_html": out_dir / "evaluation_summary.html",
        "json": out_dir / "evaluation.json",
    }
    with atomic_file(files["evaluation"]) as tmp:
        pd.DataFrame(list(rows)).to_csv(tmp, index=False)
    summary = pd.DataFrame([{"metric": m, **a} for m, a in cohort.items()])
    with atomic_file(files["summary_csv"]) as tmp:
        summary.to_csv(tmp, index=False)
    write_text_atomic(files["summary_md"], _summary_markdown(cohort, about))
    write_text_atomic(files["summary_html"], _summary_html(cohort, about))
    write_strict_json(
        files["json"],
        {"about": about, "cohort": cohort, "cases": list(rows), "conventions": CONVENTIONS},
    )
    return cohort, files
