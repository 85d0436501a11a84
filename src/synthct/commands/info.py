"""`synthct info`: what a file or DICOM folder holds."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from synthct.cli import app, console, reports_errors


@app.command()
@reports_errors
def info(
    path: Annotated[Path, typer.Argument(help="Image file (NIfTI, NRRD, MHA) or DICOM folder.")],
    kind: Annotated[
        str | None,
        typer.Option(help="ct, sct, mr, label or scalar; inferred when omitted."),
    ] = None,
    series: Annotated[
        str | None, typer.Option(help="SeriesInstanceUID when a DICOM folder holds several.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
    check_hu: Annotated[
        bool, typer.Option("--check-hu/--no-check-hu", help="Require HU for CT kinds.")
    ] = True,
) -> None:
    """Print a volume's kind, grid, orientation and value range (echo times for MR)."""
    from synthct.io import read_volume

    volume = read_volume(path, kind=kind, series_uid=series, check_hu=check_hu)
    summary = volume.describe()
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    lo, hi = summary["value_range"]
    unit = f" {summary['unit']}" if summary["unit"] else ""
    rows = [
        ("file", str(path)),
        ("kind", summary["kind"]),
        ("shape", " x ".join(str(n) for n in volume.shape)),
        ("spacing", " x ".join(f"{s:.6g}" for s in summary["spacing_mm"]) + " mm"),
        ("orientation", summary["orientation_code"]),
        ("origin (LPS)", ", ".join(f"{o:.6g}" for o in summary["origin_lps_mm"]) + " mm"),
        ("dtype", summary["dtype"]),
        ("value range", f"{lo:.6g} .. {hi:.6g}{unit}"),
    ]
    if "n_echoes" in summary:
        tes = summary["echo_times_ms"]
        rows.append(("echoes", str(summary["n_echoes"])))
        rows.append(
            ("echo times", "unknown" if tes is None else ", ".join(f"{t:g}" for t in tes) + " ms")
        )
        protocol = summary.get("protocol") or {}
        for key, label, unit_text in (
            ("repetition_time_ms", "TR", " ms"),
            ("flip_angle_deg", "flip angle", " deg"),
            ("field_strength_t", "field strength", " T"),
        ):
            if protocol.get(key) is not None:
                rows.append((label, f"{protocol[key]:g}{unit_text}"))
    if "labels" in summary:
        rows.append(("labels", f"{len(summary['labels'])} ({_short_list(summary['labels'])})"))
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


def _short_list(values: list[int], limit: int = 12) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (", ..." if len(values) > limit else "")
