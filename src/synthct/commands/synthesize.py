"""`synthct synthesize`: a synthetic CT (and uncertainty maps) from multi-echo MRI."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from synthct.cli import app, console, err_console, reports_errors
from synthct.commands.config_file import config_option


def _patch_size(text: str | None) -> tuple[int, int, int] | None:
    if text is None:
        return None
    from synthct.synthesis.errors import SynthesisInputError

    parts = text.replace("x", ",").split(",")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or min(values) < 1:
        raise SynthesisInputError(
            f"cannot read the window size {text!r}",
            path="--patch-size",
            fix="give one or three positive integers, e.g. 64 or 64,64,32",
        )
    return (values[0], values[1], values[2])


def tta_axes_for(model: object, mr: object, tta: bool, text: str | None) -> tuple[int, ...]:
    """The flip axes of ``--tta`` / ``--tta-axes`` for a loaded model and MRI (empty: none)."""
    from synthct.synthesis.errors import SynthesisInputError
    from synthct.synthesis.synthesizer import SynthesisModel, default_tta_axes

    if not tta:
        if text is not None:
            raise SynthesisInputError(
                "--tta-axes was given without --tta", path="--tta-axes", fix="add --tta"
            )
        return ()
    if text is None:
        from synthct.volume import MultiEchoMR

        assert isinstance(model, SynthesisModel) and isinstance(mr, MultiEchoMR)
        return default_tta_axes(model, mr)
    try:
        axes = tuple(int(a) for a in text.split(",") if a.strip())
    except ValueError:
        axes = ()
    if not axes or any(a not in (0, 1, 2) for a in axes):
        raise SynthesisInputError(
            f"cannot read the flip axes {text!r}",
            path="--tta-axes",
            fix="give array axes 0, 1 or 2, comma-separated, e.g. 0 or 0,1,2",
        )
    return axes


_Mr = Annotated[
    list[Path],
    typer.Argument(help="The MRI: one 4D multi-echo file, or one file per echo in order."),
]
_Output = Annotated[Path, typer.Option("--output", "-o", help="sCT file (.nii.gz, .nrrd, .mha).")]
_Model = Annotated[
    list[str],
    typer.Option(
        "--model",
        "-m",
        help="Model folder (repeat for an ensemble), or 'baseline' for the tissue-class "
        "bulk-HU baseline.",
    ),
]
_Uncertainty = Annotated[
    bool,
    typer.Option(
        "--uncertainty/--no-uncertainty",
        help="Also write aleatoric, epistemic and total SD maps (HU) beside the sCT.",
    ),
]
_McPasses = Annotated[
    int | None, typer.Option(help="MC-dropout passes for the epistemic SD.", min=2)
]
_PatchSize = Annotated[str | None, typer.Option(help="Window size in voxels, e.g. 64 or 64,64,32.")]
_Overlap = Annotated[
    float | None, typer.Option(help="Window overlap fraction in [0, 1).", min=0.0, max=0.99)
]
_Mask = Annotated[
    bool | None,
    typer.Option("--mask/--no-mask", help="Set voxels outside the MRI body mask to air."),
]
_Overwrite = Annotated[
    bool,
    typer.Option(
        "--overwrite/--no-overwrite",
        help="Replace existing outputs (never a CT: a file whose sidecar says it is a CT, "
        "or a DICOM CT series, is refused).",
    ),
]
_KeepIdentifiers = Annotated[
    bool,
    typer.Option(
        "--keep-identifiers",
        help="DICOM output from a DICOM MRI: copy the patient and study identifiers of the "
        "MRI as they are. Default: de-identified (DICOM PS3.15 basic profile, UIDs "
        "replaced consistently).",
    ),
]
_Tta = Annotated[
    bool,
    typer.Option(
        "--tta/--no-tta",
        help="Test-time augmentation: the sCT is the mean over flips (see --tta-axes); "
        "their SD (with the ensemble's) is the epistemic map.",
    ),
]
_TtaAxes = Annotated[
    str | None,
    typer.Option(
        help="Array axes flipped by --tta, e.g. 0 or 0,1,2 (default: the axes the model "
        "was trained with flipped, else the left-right axis)."
    ),
]
_Resample = Annotated[
    bool | None,
    typer.Option(
        "--resample/--no-resample",
        help="Run the model at its spacing and bring the sCT back to the MRI grid. "
        "Default: when the model card declares a planned spacing; --resample also for "
        "older models (the middle of their training voxel sizes).",
    ),
]
_Bf16 = Annotated[bool, typer.Option("--bf16/--no-bf16", help="bfloat16 autocast on CUDA.")]


@app.command()
@reports_errors
def synthesize(
    mr: _Mr,
    output: _Output,
    model: _Model,
    uncertainty: _Uncertainty = False,
    mc_passes: _McPasses = None,
    patch_size: _PatchSize = None,
    overlap: _Overlap = None,
    batch_size: Annotated[int | None, typer.Option(help="Windows per forward pass.", min=1)] = None,
    mask: _Mask = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "cpu",
    seed: Annotated[int, typer.Option(help="Seed of the MC-dropout masks.")] = 0,
    overwrite: _Overwrite = False,
    keep_identifiers: _KeepIdentifiers = False,
    tta: _Tta = False,
    tta_axes: _TtaAxes = None,
    resample: _Resample = None,
    bf16: _Bf16 = False,
    config: Annotated[Path | None, config_option()] = None,
) -> None:
    """Synthesise a CT in HU on the MRI grid with a trained model or the baseline.

    OUTPUT is a .nii.gz, .nrrd or .mha file, or a folder name without a suffix for a DICOM
    series; it is checked before any work and an existing output is kept unless --overwrite.
    """
    import warnings

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from synthct.io.deidentify import source_headers
    from synthct.io.echoes import read_echoes
    from synthct.synthesis.errors import OutOfDomainWarning, SynthesisInputError
    from synthct.synthesis.synthesizer import SynthesisModel

    dicom_output = _check_outputs(output, uncertainty=uncertainty, overwrite=overwrite)
    synthesizer = load_command_synthesizer(model, device=device)
    volume = read_echoes(mr)
    columns = (TextColumn("[bold]synthesising"), BarColumn(), MofNCompleteColumn())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", OutOfDomainWarning)
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("windows", total=None)

            def show(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            if isinstance(synthesizer, SynthesisModel):
                result = synthesizer.synthesize(
                    volume,
                    uncertainty=uncertainty,
                    progress=show,
                    mc_passes=mc_passes,
                    patch_size=_patch_size(patch_size),
                    overlap=overlap,
                    batch_size=batch_size,
                    mask_outside_body=mask,
                    seed=seed,
                    tta_axes=tta_axes_for(synthesizer, volume, tta, tta_axes),
                    resample=resample,
                    autocast_bf16=bf16,
                )
            else:
                if tta or resample:
                    raise SynthesisInputError(
                        "--tta and --resample need a trained model",
                        path="--model",
                        fix="pass a model folder, or leave these options out for the baseline",
                    )
                result = synthesizer.synthesize(volume, uncertainty=uncertainty, progress=show)
    for w in caught:
        label = "out of domain" if issubclass(w.category, OutOfDomainWarning) else "warning"
        err_console.print(f"[bold yellow]{label}:[/] {w.message}", highlight=False)
    dicom = {}
    if dicom_output and len(mr) == 1:
        dicom["source_headers"] = source_headers(mr[0], keep_identifiers=keep_identifiers)
    written = result.write(output, overwrite=overwrite, **dicom)
    _print_written(result, written, synthesizer.name)


def load_command_synthesizer(model: list[str], *, device: str) -> Any:
    """The synthesizer of ``--model``: model folders (an ensemble) or ``baseline`` alone."""
    from synthct.synthesis.errors import SynthesisInputError
    from synthct.synthesis.synthesizer import load_synthesizer

    if len(model) > 1 and "baseline" in model:
        raise SynthesisInputError(
            "'baseline' cannot be part of an ensemble",
            path="--model",
            fix="pass either 'baseline' or one or more model folders",
        )
    return load_synthesizer(model[0] if model == ["baseline"] else model, device=device)


def _check_outputs(output: Path, *, uncertainty: bool, overwrite: bool) -> bool:
    """Refuse outputs that exist (or a DICOM output with maps); whether the output is DICOM."""
    from synthct.io.image_files import SUFFIXES, image_suffix
    from synthct.io.output_safety import check_output_path
    from synthct.synthesis.errors import SynthesisInputError
    from synthct.synthesis.result import map_paths

    check_output_path(
        output, option="--output", overwrite=overwrite, suffixes=SUFFIXES, folder_allowed=True
    )
    dicom_output = image_suffix(output) is None
    if uncertainty and dicom_output:
        raise SynthesisInputError(
            "uncertainty maps cannot be written as DICOM (they are SD maps, not CT images)",
            path="--output",
            fix="write the sCT as .nii.gz/.nrrd/.mha with --uncertainty, or leave it out",
        )
    if uncertainty:
        for path in map_paths(output).values():
            check_output_path(path, option="--output (map)", overwrite=overwrite, suffixes=SUFFIXES)
    return dicom_output


def _print_written(result: Any, written: dict[str, Path], name: str) -> None:
    lo, hi = result.sct.value_range()
    console.print(f"sCT ({name}): [bold]{written['sct']}[/]  {lo:.0f} .. {hi:.0f} HU")
    for key, path in written.items():
        if key != "sct":
            console.print(f"{key.replace('_', ' ')} (HU): {path}")
