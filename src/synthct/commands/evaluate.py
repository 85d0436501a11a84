"""`synthct evaluate`: a model (or ensemble, optionally with TTA) scored on a cohort's CTs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from synthct.cli import app, console, err_console, reports_errors
from synthct.commands.config_file import (
    build_settings,
    config_option,
    file_settings,
    given_options,
)

_Manifest = Annotated[
    Path,
    typer.Argument(help="Cases: a synthesis or validation manifest (CSV, JSON or YAML)."),
]
_Model = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        "-m",
        help="Model folder (repeat for an ensemble, e.g. k-fold models), or 'baseline'. "
        "Without it, the manifest's sct column is evaluated as it is.",
    ),
]
_Split = Annotated[
    Path | None,
    typer.Option(help="Split file (JSON from `synthct dataset split`) for --subset."),
]
_Subset = Annotated[
    str,
    typer.Option(
        help="all, test, fold<K>-train, fold<K>-val (with --split), or train / validation "
        "/ test by the manifest's split column."
    ),
]
_Tta = Annotated[bool, typer.Option("--tta/--no-tta", help="Test-time augmentation by flips.")]
_TtaAxes = Annotated[str | None, typer.Option(help="Array axes flipped by --tta, e.g. 0 or 0,1,2.")]
_Uncertainty = Annotated[
    bool, typer.Option("--uncertainty/--no-uncertainty", help="Also write SD maps.")
]
_Resample = Annotated[
    bool | None,
    typer.Option(
        "--resample/--no-resample",
        help="Run the model at its spacing (default: when its card declares one).",
    ),
]
_Workers = Annotated[
    int,
    typer.Option(help="Validation worker processes (0: this process).", min=0),
]
_Resume = Annotated[bool, typer.Option("--resume/--no-resume", help="Reuse finished cases.")]
_Figures = Annotated[
    bool, typer.Option("--figures/--no-figures", help="Lesion figures (CT | sCT | MRI).")
]
_Align = Annotated[
    str | None,
    typer.Option(
        "--align",
        metavar="check|auto|warn|shift",
        help="Alignment check of each sCT with its CT, as `synthct validate --align`. Default: "
        "'shift' with --model (the sCT is made from the case's own MR: a case is stopped "
        "only when its sCT is found shifted or mirrored, a poor match is measured as the "
        "poor sCT it is), 'check' for the manifest's sCTs; 'warn' measures every case.",
        show_default=False,
    ),
]
_Config = Annotated[
    Path | None,
    config_option(
        "validation",
        what=", and validation: the validation settings (synthct.validation.case."
        "ValidationSettings, as `synthct validate --config`)",
    ),
]


@app.command()
@reports_errors
def evaluate(
    ctx: typer.Context,
    manifest: _Manifest,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    model: _Model = None,
    split: _Split = None,
    subset: _Subset = "all",
    tta: _Tta = False,
    tta_axes: _TtaAxes = None,
    uncertainty: _Uncertainty = False,
    resample: _Resample = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "cpu",
    workers: _Workers = 0,
    resume: _Resume = True,
    figures: _Figures = False,
    align: _Align = None,
    config: _Config = None,
) -> None:
    """Synthesise each case's sCT and write the SynthRAD2025-style table and lesion tables.

    Exit code 0 when at least one case was measured (failed cases are listed), 1 when none
    was, 2 on bad input.
    """
    from synthct.commands.validate import check_align_mode
    from synthct.evaluation.cases import read_evaluation_manifest, read_split, select_subset
    from synthct.evaluation.run import InferenceOptions, evaluate_cohort
    from synthct.validation.case import ValidationSettings

    if align is not None:
        check_align_mode(align)
    cases = read_evaluation_manifest(manifest)
    split_data = read_split(split) if split is not None else None
    cases = select_subset(cases, subset, split=split_data, split_path=split)
    synthesizer, axes = _synthesizer_and_flips(cases, model, device, tta, tta_axes, uncertainty)
    description = {
        "manifest": str(manifest),
        "subset": subset,
        "split": str(split) if split else None,
        "model": " + ".join(model) if model else "the manifest's sct column",
        "tta_axes": list(axes),
    }

    def show(case_id: str, event: str) -> None:
        console.print(f"{case_id}: {event}", highlight=False)

    summary = evaluate_cohort(
        cases,
        out,
        synthesizer=synthesizer,
        options=InferenceOptions(tta_axes=axes, uncertainty=uncertainty, resample=resample),
        settings=build_settings(
            ctx, ValidationSettings, _alignment(ctx, align, model), section="validation"
        ),
        n_workers=workers,
        resume=resume,
        figures=figures,
        progress=show,
        description=description,
    )
    _print_summary(summary, out)
    if summary.rows and not any(row["status"] == "ok" for row in summary.rows):
        err_console.print(
            f"[bold red]no case was measured[/] ({len(summary.rows)} failed; reasons above); "
            "a case stopped by the alignment check is measured anyway with --align warn",
            highlight=False,
        )
        raise typer.Exit(1)


def _alignment(ctx: typer.Context, align: str | None, model: list[str] | None) -> dict[str, Any]:
    """The alignment mode given (option or config file), else the default: ``shift`` for a
    model's own sCTs (made from the case's MR, so a poor one is a result, not a
    misalignment; a shift or mirror still stops the case), ``check`` for given sCTs."""
    given = given_options(ctx, rename={"align": "alignment"}, align=align)
    if "alignment" in given or "alignment" in file_settings(ctx, "validation"):
        return given
    return {**given, "alignment": "shift" if model else "check"}


def _synthesizer_and_flips(
    cases: list[Any],
    model: list[str] | None,
    device: str,
    tta: bool,
    tta_axes: str | None,
    uncertainty: bool,
) -> tuple[Any, tuple[int, ...]]:
    """The synthesizer of ``--model`` (None: the manifest's sCTs) and the TTA flip axes."""
    from synthct.commands.synthesize import load_command_synthesizer, tta_axes_for
    from synthct.synthesis.errors import SynthesisInputError
    from synthct.synthesis.synthesizer import SynthesisModel

    if not model:
        if tta or uncertainty:
            raise SynthesisInputError(
                "--tta and --uncertainty need a model", path="--model", fix="pass --model"
            )
        return None, ()
    synthesizer = load_command_synthesizer(model, device=device)
    if tta and not isinstance(synthesizer, SynthesisModel):
        raise SynthesisInputError(
            "--tta needs a trained model", path="--model", fix="pass a model folder"
        )
    if tta and tta_axes is None:
        from synthct.io.echoes import read_echoes

        first = next((c for c in cases if c.mri), None)
        reference = read_echoes(list(first.mri)) if first is not None else None
        return synthesizer, tta_axes_for(synthesizer, reference, tta, None) if reference else (0,)
    return synthesizer, tta_axes_for(synthesizer, None, tta, tta_axes)


def _print_summary(summary: Any, out: Path) -> None:
    for reason in summary.failed.values():
        err_console.print(f"[bold red]failed:[/] {reason}", highlight=False)
    for row in summary.rows:
        if row["status"] != "ok" and row["case_id"] not in summary.failed:
            err_console.print(f"[bold red]failed:[/] {row['error']}", highlight=False)
    console.print((out / "evaluation_summary.md").read_text(encoding="utf-8"), highlight=False)
    console.print(f"tables: {summary.files['evaluation']}, lesions and cases in {out}")
