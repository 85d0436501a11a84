"""`synthct train` and `synthct plan`: plan and train a synthesis model from a cohort manifest.

Under ``torchrun`` (``torchrun --nproc_per_node N -m synthct.cli train ...``) every process runs
this command as one data-parallel rank; only rank 0 shows progress and writes the run folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from synthct.cli import app, console, err_console, reports_errors

#: Exit code of a run stopped by Ctrl-C or SIGTERM after its checkpoint (128 + SIGINT).
EXIT_INTERRUPTED = 130

_Manifest = Annotated[
    Path,
    typer.Argument(
        help="Cohort manifest (CSV or JSON): case_id, ct, mr_echoes (';'-separated echo "
        "files or one 4D file, relative to the manifest), optional lesion_labels, split."
    ),
]
_Output = Annotated[
    Path, typer.Option("--output", "-o", help="Run folder (checkpoints, log, model/).")
]
_Config = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML configuration; defaults for what it omits."),
]
_Resume = Annotated[
    bool, typer.Option("--resume", help="Continue the run in --output from its checkpoint.")
]
_Iterations = Annotated[int | None, typer.Option(help="Override training.iterations.", min=1)]
_Device = Annotated[str | None, typer.Option(help="Override training.device: auto, cpu or cuda.")]
_Plan = Annotated[
    str,
    typer.Option(
        help="'auto': plan spacing, patch size and normalisation from the training cases "
        "first (as `synthct plan`; written to OUTPUT/plan.json); 'none': use the "
        "configuration as it is."
    ),
]


@app.command()
@reports_errors
def train(
    manifest: _Manifest,
    output: _Output,
    config: _Config = None,
    resume: _Resume = False,
    iterations: _Iterations = None,
    seed: Annotated[int | None, typer.Option(help="Override training.seed.", min=0)] = None,
    device: _Device = None,
    plan: _Plan = "none",
) -> None:
    """Train an MRI-to-CT network; write checkpoints, a CSV log and the model folder.

    Multi-GPU or multi-node: `torchrun --nproc_per_node N -m synthct.cli train ...` with
    `training.patch_seeding: per_sample` (configs/real_large.yaml). Ctrl-C or SIGTERM (one
    process): the iteration finishes, its checkpoint is written, exit code 130, and --resume
    continues from it.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from synthct.synthesis.config import SynthesisConfig, load_config
    from synthct.synthesis.errors import TrainingConfigError, TrainingInterrupted
    from synthct.synthesis.training import TrainingProgress, train_model

    if resume and config is None and (output / "config.yaml").is_file():
        config = output / "config.yaml"
    settings = load_config(config) if config is not None else SynthesisConfig()
    overrides = {"iterations": iterations, "seed": seed, "device": device}
    if any(v is not None for v in overrides.values()):
        given = {k: v for k, v in overrides.items() if v is not None}
        settings = settings.with_updates({"training": given})
    main_rank = os.environ.get("RANK", "0") == "0"
    if plan not in ("auto", "none"):
        raise TrainingConfigError(
            f"unknown --plan {plan!r}", path="--plan", fix="use --plan auto or --plan none"
        )
    if plan == "auto" and not resume:
        from synthct.io.atomic import write_text_atomic
        from synthct.synthesis.planning import apply_plan, plan_from_manifest

        made = plan_from_manifest(manifest, settings)
        before = settings
        settings = apply_plan(settings, made)
        if main_rank and not (output / "checkpoints").exists():
            output.mkdir(parents=True, exist_ok=True)
            write_text_atomic(output / "plan.json", made.to_json())
        if main_rank:
            _print_plan(made, before)
    if not main_rank:  # torchrun: the other ranks train silently
        train_model(manifest, settings, output, resume=resume)
        return

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

        try:
            result = train_model(manifest, settings, output, resume=resume, progress=show)
        except TrainingInterrupted as stopped:
            bar.stop()
            err_console.print(f"[bold]{stopped}[/]", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None

    _print_result(result)


def _print_plan(made: Any, before: Any) -> None:
    """What --plan auto set, beside what the configuration had (it replaces those keys)."""

    def size(values: Any) -> str:
        return " x ".join(f"{v:g}" for v in values)

    old_patch = tuple(before.patches.size)
    patch = size(made.patch_size) + (
        f" (the configuration had {size(old_patch)})" if old_patch != made.patch_size else ""
    )
    console.print(
        f"plan: spacing {size(made.target_spacing_mm)} mm, patch {patch} "
        f"(~{made.estimated_activation_gb:.1f} GB of activations within "
        f"plan.memory_budget_gb {before.plan.memory_budget_gb:g}; lower it for CPU training), "
        f"normalisation {made.normalisation_method}"
        + (f" [{', '.join(made.channels)}]" if made.channels else ""),
        highlight=False,
        soft_wrap=True,
    )


def _print_result(result: Any) -> None:
    console.print(f"model folder: [bold]{result.model_dir}[/]")
    console.print(
        f"training log: {result.log_path} (curve: {result.log_path.parent}/training_curve.png)"
    )
    mean_mae = result.validation.get("mean_mae_hu")
    if mean_mae is not None:
        dice = result.validation.get("mean_bone_dice_150hu")
        dice_text = "n/a" if dice is None else f"{dice:.3f}"  # 0.0 is a result, not a gap
        console.print(f"held-out cases: MAE {mean_mae:.1f} HU, bone Dice (150 HU) {dice_text}")


@app.command()
@reports_errors
def plan(
    manifest: Annotated[Path, typer.Argument(help="Cohort manifest (CSV or JSON).")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Planned configuration to write (YAML).")
    ],
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Base YAML configuration (network, budget...)."),
    ] = None,
    memory_gb: Annotated[
        float | None,
        typer.Option(
            help="Override plan.memory_budget_gb (activation memory per process).", min=0.01
        ),
    ] = None,
) -> None:
    """Plan spacing, normalisation and patch size from the training cases (nnU-Net style).

    Writes the planned configuration and, beside it, ``<name>.plan.json`` with the dataset
    fingerprint (spacing, grid and per-channel intensity statistics of each training case).
    """
    from synthct.io.atomic import write_text_atomic
    from synthct.synthesis.config import SynthesisConfig, config_to_yaml, load_config
    from synthct.synthesis.planning import apply_plan, plan_from_manifest

    settings = load_config(config) if config is not None else SynthesisConfig()
    if memory_gb is not None:
        settings = settings.with_updates({"plan": {"memory_budget_gb": memory_gb}})
    made = plan_from_manifest(manifest, settings)
    planned = apply_plan(settings, made)
    write_text_atomic(output, config_to_yaml(planned))
    fingerprint = output.with_name(output.name.rsplit(".", 1)[0] + ".plan.json")
    write_text_atomic(fingerprint, made.to_json())
    spacing = " x ".join(f"{s:.3g}" for s in made.target_spacing_mm)
    patch = " x ".join(str(s) for s in made.patch_size)
    console.print(
        f"{len(made.cases)} training cases: spacing {spacing} mm, patch {patch} voxels "
        f"(~{made.estimated_activation_gb:.2f} GB activations), normalisation "
        f"{made.normalisation_method}, channels {', '.join(made.channels)}"
    )
    console.print(f"configuration: [bold]{output}[/]; fingerprint: {fingerprint}")
