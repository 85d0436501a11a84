"""`synthct train`: train a synthesis model from a cohort manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from synthct.cli import app, console, reports_errors


@app.command()
@reports_errors
def train(
    manifest: Annotated[
        Path,
        typer.Argument(
            help="Cohort manifest (CSV or JSON): case_id, ct, mr_echoes (';'-separated echo "
            "files or one 4D file, relative to the manifest), optional lesion_labels, split."
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Run folder (checkpoints, log, model/).")
    ],
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML configuration; defaults for what it omits."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --output from its checkpoint.")
    ] = False,
    iterations: Annotated[
        int | None, typer.Option(help="Override training.iterations.", min=1)
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Override training.seed.", min=0)] = None,
    device: Annotated[
        str | None, typer.Option(help="Override training.device: auto, cpu or cuda.")
    ] = None,
) -> None:
    """Train an MRI-to-CT network; write checkpoints, a CSV log and the model folder."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from synthct.synthesis.config import SynthesisConfig, load_config
    from synthct.synthesis.training import TrainingProgress, train_model

    if resume and config is None and (output / "config.yaml").is_file():
        config = output / "config.yaml"
    settings = load_config(config) if config is not None else SynthesisConfig()
    overrides: dict[str, Any] = {}
    if iterations is not None:
        overrides["iterations"] = iterations
    if seed is not None:
        overrides["seed"] = seed
    if device is not None:
        overrides["device"] = device
    if overrides:
        settings = settings.with_updates({"training": overrides})

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("loading", total=settings.training.iterations, status="")
        last: dict[str, str] = {"val": ""}

        def show(p: TrainingProgress) -> None:
            if p.phase == "validating" and p.validation_loss is not None:
                last["val"] = (
                    f"val loss {p.validation_loss:.4f}, val MAE {p.validation_mae_hu:.1f} HU"
                )
            loss = f"loss {p.train_loss:.4f}" if p.train_loss is not None else ""
            status = ", ".join(s for s in (loss, last["val"], p.message) if s)
            bar.update(task, completed=p.iteration, description=p.phase, status=status)

        result = train_model(manifest, settings, output, resume=resume, progress=show)

    console.print(f"model folder: [bold]{result.model_dir}[/]")
    console.print(f"training log: {result.log_path}")
    mean_mae = result.validation.get("mean_mae_hu")
    if mean_mae is not None:
        console.print(
            f"held-out cases: MAE {mean_mae:.1f} HU, bone Dice (150 HU) "
            f"{result.validation.get('mean_bone_dice_150hu') or float('nan'):.3f}"
        )
