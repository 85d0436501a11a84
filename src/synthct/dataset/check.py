"""``synthct dataset check``: the QA table (CSV + HTML), the dataset manifest and its fingerprint.

Output folder (written under a temporary name, renamed when complete)::

    QA/
      qa.csv             one row per case (columns in :mod:`synthct.dataset.qa`)
      qa.html            the same table, flagged cases first, issues spelled out
      manifest.csv       the cases as read (a synthct manifest: paths absolute), with their
                         QA status and issues and, where the registration is applied, the
                         transform file (columns in :func:`_with_qa`)
      transforms/        <case_id>.tfm: the rigid MR-to-CT transform of each case whose
                         registration is applied (:mod:`synthct.dataset.pairs`)
      fingerprint.json   :mod:`synthct.dataset.fingerprint` of the cases without errors that
                         have the most common MR channel count
      summary.json       layout, counts of ok/flag/error cases, which cases carry which issue
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthct.case import Case
from synthct.manifest import Manifest

if TYPE_CHECKING:
    from synthct.dataset.readers import SeriesChoice

__all__ = ["CheckResult", "check_dataset", "qa_html"]

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Dataset QA: {{ name }}</title>
<style>
body { font-family: sans-serif; margin: 1.5em; }
table { border-collapse: collapse; font-size: 12px; }
td, th { border: 1px solid #ccc; padding: 2px 6px; text-align: left; vertical-align: top; }
tr.flag { background: #fff4d6; } tr.error { background: #fde0e0; }
</style></head><body>
<h1>Dataset QA: {{ name }}</h1>
<p>{{ n }} case(s), layout <b>{{ layout }}</b>: {{ counts.ok }} ok, {{ counts.flag }} flagged,
{{ counts.error }} unreadable. Mutual information: Mattes, MR (first channel) fixed, CT moving,
both on a {{ spacing }} mm isotropic grid; higher is better.</p>
<table><thead><tr>{% for c in columns %}<th>{{ c }}</th>{% endfor %}</tr></thead><tbody>
{% for row in rows %}<tr class="{{ row.status }}">{% for c in columns %}
<td>{% if c == 'issues' %}{% for i in row[c] %}{{ i }}<br>{% endfor %}
{% else %}{{ fmt(row.get(c, '')) }}{% endif %}</td>
{% endfor %}</tr>{% endfor %}
</tbody></table></body></html>
"""
_COLUMNS = (
    "case_id", "patient_id", "region", "split", "status", "issues", "error",
    "mr_channels", "mr_shape", "mr_spacing_mm", "mr_orientation", "ct_shape", "ct_spacing_mm",
    "ct_orientation", "fov_overlap", "fov_overlap_registered", "mi_before", "mi_after",
    "registration_rotation_deg", "registration_shift_mm", "registration", "search_peak_ratio",
    "ct_min_hu", "ct_p0_5_hu", "ct_median_hu",
    "ct_p99_5_hu", "ct_max_hu", "mask_source", "mask_fraction", "mask_coverage", "mr_p0_5",
    "mr_p99_5", "ct_checksum", "mr_checksum",
)  # fmt: skip


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def qa_html(rows: list[dict[str, Any]], *, name: str, layout: str, spacing_mm: float) -> str:
    """The QA table as a self-contained HTML page (flagged and failed cases first)."""
    import jinja2

    order = {"error": 0, "flag": 1, "ok": 2}
    ordered = sorted(rows, key=lambda r: (order.get(r.get("status", "ok"), 3), r["case_id"]))
    counts = {k: sum(r.get("status") == k for r in rows) for k in order}
    env = jinja2.Environment(autoescape=True)
    return env.from_string(_TEMPLATE).render(
        name=name, layout=layout, rows=ordered, columns=_COLUMNS, counts=counts, n=len(rows),
        spacing=spacing_mm, fmt=_fmt,
    )  # fmt: skip


@dataclass(frozen=True)
class CheckResult:
    """What :func:`check_dataset` found and wrote."""

    out_dir: Path
    layout: str
    rows: list[dict[str, Any]]
    fingerprint: dict[str, Any] | None

    def cases_with(self, issue: str) -> list[str]:
        """Case ids whose issues include ``issue`` (e.g. ``"mi_outlier"``)."""
        return [r["case_id"] for r in self.rows if any(i.startswith(issue) for i in r["issues"])]


def check_dataset(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    settings: Any = None,
    overwrite: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    series: SeriesChoice | None = None,
) -> CheckResult:
    """Read a dataset, run the QA, and write the output folder (see the module docstring).

    Parameters
    ----------
    source : path
        Dataset folder or manifest (:func:`synthct.dataset.readers.read_dataset`).
    out : path
        Folder to create.
    settings : QASettings, optional
        QA thresholds.
    overwrite : bool
        Replace an existing output folder.
    progress : callable, optional
        ``progress(case_id, done, total)``.
    series : SeriesChoice, optional
        Which series of a DICOM study to read where a patient holds several.

    Raises
    ------
    SynthctError
        An unreadable or empty dataset, or an existing output folder; nothing is written then.
    """
    import pandas as pd

    from synthct.dataset.fingerprint import fingerprint
    from synthct.dataset.qa import QASettings, run_qa
    from synthct.dataset.readers import read_dataset
    from synthct.errors import WriteError
    from synthct.io.atomic import atomic_directory, write_json_atomic
    from synthct.manifest import write_manifest

    s = settings or QASettings()
    if Path(out).exists() and not overwrite:
        raise WriteError(
            "the output folder already exists",
            path=out,
            fix="choose a new folder or pass --overwrite",
        )
    manifest, layout = read_dataset(source, series=series)
    rows = run_qa(manifest, s, progress=progress)
    usable = _fingerprint_cases(manifest, rows)
    fp = fingerprint(usable).to_dict() if len(usable) else None
    table = pd.DataFrame([{c: _cell(r.get(c)) for c in _COLUMNS} for r in rows], columns=_COLUMNS)
    summary = {
        "source": str(Path(source).resolve()),
        "layout": layout,
        "n_cases": len(rows),
        "status": {k: int(sum(r["status"] == k for r in rows)) for k in ("ok", "flag", "error")},
        "issues": _issue_index(rows),
        "fingerprint_cases": usable.case_ids,
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        table.to_csv(tmp / "qa.csv", index=False)
        name = Path(source).name
        html = qa_html(rows, name=name, layout=layout, spacing_mm=s.registration_spacing_mm)
        (tmp / "qa.html").write_text(html, encoding="utf-8")
        write_manifest(_with_qa(manifest, rows, tmp), tmp / "manifest.csv")
        if fp is not None:
            write_json_atomic(tmp / "fingerprint.json", fp)
        write_json_atomic(tmp / "summary.json", summary)
    return CheckResult(Path(out), layout, rows, fp)


def _with_qa(manifest: Manifest, rows: list[dict[str, Any]], folder: Path) -> Manifest:
    """The cases with their QA outcome and, where registration is applied, its transform file.

    Columns added: ``qa_status``, ``qa_issues`` (issue names, ``;``-separated) and
    :data:`~synthct.dataset.pairs.TRANSFORM_COLUMN` (``transforms/<case_id>.tfm``, written
    here; empty for identity), which ``synthct dataset split`` applies.
    """
    from synthct.dataset.pairs import TRANSFORM_COLUMN, write_transform

    by_id = {r["case_id"]: r for r in rows}
    cases = []
    for case in manifest:
        row = by_id[case.case_id]
        transform: Path | str = ""
        if row.get("registration_matrix") is not None:
            (folder / "transforms").mkdir(exist_ok=True)
            transform = write_transform(
                folder / "transforms" / f"{case.case_id}.tfm", row["registration_matrix"]
            )
        names = [i.split(":")[0] for i in row["issues"]]
        extra = {
            **case.extra,
            "qa_status": row["status"],
            "qa_issues": ";".join(names),
            TRANSFORM_COLUMN: transform,
        }
        cases.append(Case(case.case_id, case.images, case.meta, extra))
    return Manifest(cases)


def _cell(value: Any) -> Any:
    return "; ".join(value) if isinstance(value, list) else value


def _issue_index(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    for row in rows:
        for issue in row["issues"]:
            index.setdefault(issue.split(":")[0], []).append(row["case_id"])
    return index


def _fingerprint_cases(manifest: Manifest, rows: list[dict[str, Any]]) -> Manifest:
    from collections import Counter

    channels = Counter(r["mr_channels"] for r in rows if not r.get("error"))
    usual = channels.most_common(1)[0][0] if channels else None
    keep = {
        r["case_id"] for r in rows
        if not r.get("error") and r.get("mr_channels") == usual
        and not any(i.startswith(("no_overlap", "mi_outlier")) for i in r["issues"])
    }  # fmt: skip
    return Manifest([c for c in manifest if c.case_id in keep])
