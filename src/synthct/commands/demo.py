"""`synthct demo`: the paper reproduced end to end on phantoms, in one command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synthct.cli import app, console, progress_bar, reports_errors
from synthct.commands.config_file import (
    build_settings,
    config_option,
    file_settings,
    given_options,
)


@app.command()
@reports_errors
def demo(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("synthct-demo"),
    retrain: Annotated[
        bool,
        typer.Option(
            "--retrain",
            help="Train both models from scratch on the procedural-world cohort (the shipped "
            "ones are also fine-tuned on real anatomy; slow on CPU).",
        ),
    ] = False,
    quick: Annotated[
        bool, typer.Option("--quick", help="Reduced demo: two patients, small field of view.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the phantom cohort.")] = 2025,
    config: Annotated[
        Path | None,
        config_option(
            "synthct.demo.settings:DemoSettings",
            what=", and the keys of synthct.demo.settings.DemoSettings (e.g. mc_passes)",
        ),
    ] = None,
) -> None:
    """Reproduce the paper: phantoms, product-like vs lesion-aware sCT, validation, audit."""
    import time

    from rich.table import Table

    from synthct.demo.pipeline import run_demo
    from synthct.demo.settings import STAGES, DemoSettings
    from synthct.io.output_safety import claim_output_folder

    given = given_options(ctx, out=out, seed=seed, retrain=retrain, quick=quick)
    given["out_dir"] = given.pop("out", file_settings(ctx).get("out_dir", out))
    settings = build_settings(ctx, DemoSettings, given)
    # a rerun reuses the demo's own folder; a user's non-empty folder is refused
    claim_output_folder(settings.out_dir, command="demo", legacy=("cohort",))
    start = time.perf_counter()
    with progress_bar() as bar:
        tasks = {stage: bar.add_task(stage, total=None, start=False) for stage in STAGES[:-1]}

        def advance(stage: str, item: str, done: int, total: int) -> None:
            task = tasks[stage]
            bar.start_task(task)
            bar.update(task, completed=done, total=total, description=f"{stage}: {item}")

        result = run_demo(settings, progress=advance)
    methods = result.summary["methods"]
    table = Table(title="Calcified intradural tumours: CT vs sCT (paper: CT 5/5, sCT 0/5)")
    table.add_column("method")
    table.add_column("visible CT / sCT")
    table.add_column("mean HU CT / sCT")
    table.add_column("axial x sagittal mm, sCT")
    for method in methods.values():
        table.add_row(
            method["label"],
            f"{method['ct_visible']}/{method['n_lesions']} / "
            f"{method['sct_visible']}/{method['n_lesions']}",
            f"{method['ct_mean_hu']:.1f} / {method['sct_mean_hu']:.1f}",
            f"{method['sct_diameter_axial_mm']:.1f} x {method['sct_diameter_sagittal_mm']:.1f}",
        )
    console.print(table)
    audit = result.summary.get("audit") or {}
    if audit.get("available"):
        console.print(audit["sentence"])
    console.print(f"report: [bold]{result.report}[/]  ({time.perf_counter() - start:.0f} s)")
