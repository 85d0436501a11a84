"""`synthct audit`: the omission audit of an sCT from its MRI (training: :mod:`.audit_model`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from synthct.cli import app, console, parse_floats, progress_bar, reports_errors
from synthct.commands.audit_settings import SIGNAL_SECTIONS, SIGNAL_SECTIONS_HELP, signal_settings
from synthct.commands.config_file import (
    config_option,
)


def _read_mri(paths: list[Path]) -> Any:
    from synthct.errors import SynthctError
    from synthct.io import read_volume
    from synthct.io.echoes import read_echoes
    from synthct.volume import MultiEchoMR

    if len(paths) > 1:
        return read_echoes(paths)
    volume = read_volume(paths[0], kind="mr")
    if not isinstance(volume, MultiEchoMR):
        raise SynthctError(
            "the MRI is not a multi-echo MR volume",
            path=paths[0],
            fix="pass one file per echo (--mri E1 --mri E2) or a 4D file / DICOM folder",
        )
    return volume


_Mri = Annotated[
    list[Path],
    typer.Option(
        "--mri",
        help="MRI echoes: one file per echo (repeat --mri), or a 4D file or a DICOM folder.",
    ),
]
_Novelty = Annotated[
    Path | None,
    typer.Option(
        "--novelty",
        "--audit-model",
        help="Audit model folder (novelty.npz + calibration.json, and the learned "
        "consistency network when trained) or novelty.npz (default: the shipped audit "
        "model, its checksums verified).",
    ),
]
_Calibration = Annotated[
    Path | None, typer.Option(help="calibration.json (default: the one beside --novelty).")
]
_NoAuditModel = Annotated[
    bool,
    typer.Option(
        "--no-audit-model",
        help="Audit without an audit model: the default calibration (or --calibration) and "
        "the signals the other options enable, MRI consistency first.",
    ),
]
_Model = Annotated[
    list[Path] | None,
    typer.Option(help="Our synthesis model folder(s): enables the epistemic signal."),
]
_EpistemicSd = Annotated[
    Path | None, typer.Option(help="Precomputed epistemic SD map (*_epistemic_sd).")
]
_EchoTimes = Annotated[
    str | None, typer.Option(help="Echo times in ms, e.g. 1.15,2.3 (overrides the header).")
]
_Consistency = Annotated[
    bool,
    typer.Option(
        "--consistency/--no-consistency",
        help="MRI consistency signal (needs echo times, TR, flip angle, field strength).",
    ),
]
_LearnedConsistency = Annotated[
    bool,
    typer.Option(
        "--learned-consistency/--no-learned-consistency",
        help="Learned consistency signal, when the audit model folder holds one (it is "
        "meaningful only for sCTs of the synthesis model it was trained with).",
    ),
]
_ReferenceModel = Annotated[
    str | None,
    typer.Option(
        help="Lesion-aware reference synthesis model (shipped name, e.g. lesion_aware, or "
        "a folder): enables the reference disagreement signal (default: the one the audit "
        "model was calibrated with)."
    ),
]
_Reference = Annotated[
    bool,
    typer.Option(
        "--reference/--no-reference", help="Reference disagreement signal, when available."
    ),
]
_AllSignals = Annotated[
    bool,
    typer.Option(
        "--all-signals",
        help="Also compute input novelty when the audit model's rule leaves it out (it is "
        "then reported, not flagging; ~9 s more for 256 x 256 x 96).",
    ),
]
_Register = Annotated[
    bool, typer.Option("--register", help="Register the sCT to the MRI rigidly first.")
]


@app.command()
@reports_errors
def audit(
    ctx: typer.Context,
    mri: _Mri,
    sct: Annotated[Path, typer.Option("--sct", help="The sCT to audit (ours or a product's).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder to create.")],
    novelty: _Novelty = None,
    calibration: _Calibration = None,
    no_audit_model: _NoAuditModel = False,
    model: _Model = None,
    epistemic_sd: _EpistemicSd = None,
    mc_passes: Annotated[int | None, typer.Option(help="MC-dropout passes with --model.")] = None,
    echo_times: _EchoTimes = None,
    tr: Annotated[float | None, typer.Option("--tr", help="Repetition time in ms.")] = None,
    flip_angle: Annotated[float | None, typer.Option(help="Flip angle in degrees.")] = None,
    field_strength: Annotated[float | None, typer.Option(help="Main field in tesla.")] = None,
    consistency: _Consistency = True,
    learned_consistency: _LearnedConsistency = True,
    reference_model: _ReferenceModel = None,
    reference: _Reference = True,
    all_signals: _AllSignals = False,
    register: _Register = False,
    figures: Annotated[bool, typer.Option("--figures/--no-figures", help="Region figures.")] = True,
    domain_check: Annotated[
        bool,
        typer.Option(
            "--domain-check/--no-domain-check",
            help="Refuse the signals when the MRI lies outside the audit model's calibrated "
            "domain (field, protocol, voxel size, MRI realism); --no-domain-check computes "
            "them anyway (their thresholds do not hold there).",
        ),
    ] = True,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output folder.")] = False,
    config: Annotated[
        Path | None, config_option(SIGNAL_SECTIONS[:2], what=SIGNAL_SECTIONS_HELP)
    ] = None,
) -> None:
    """Flag regions where the sCT probably omits (or invents) what the MRI shows, without CT.

    Writes OUT/audit.json, OUT/report.html, the flag map, the flagged regions and every
    signal's map (see synthct.audit.report).
    """
    from synthct.audit.inputs import with_protocol
    from synthct.audit.model import SHIPPED_AUDIT_MODEL, load_audit_model
    from synthct.audit.pipeline import run_audit
    from synthct.audit.reference import calibrated_reference
    from synthct.audit.report import write_audit

    _check_audit_options(out, overwrite, no_audit_model, novelty, model, epistemic_sd)
    with progress_bar() as bar:
        task = bar.add_task("reading inputs", total=None)
        mr = with_protocol(
            _read_mri(mri),
            echo_times_ms=parse_floats(echo_times, "--echo-times"),
            repetition_time_ms=tr,
            flip_angle_deg=flip_angle,
            field_strength_t=field_strength,
        )
        volume = _read_sct(sct)
        # Novelty outside the calibrated rule only reports (~9 s a case): computed on request.
        audit_model = load_audit_model(
            None if no_audit_model else (novelty or SHIPPED_AUDIT_MODEL),
            all_signals=all_signals,
            learned=learned_consistency,
            calibration=calibration,
        )
        cal = audit_model.calibration
        epistemic = _epistemic(model, epistemic_sd, mc_passes)
        reference_source, _ = calibrated_reference(cal, reference_model, enabled=reference)
        bar.update(task, description="auditing", total=1, completed=0)

        def progress(step: str, done: int, total: int) -> None:
            bar.update(task, description=f"audit: {step}", completed=done, total=total + 1)

        result = run_audit(
            mr,
            volume,
            **signal_settings(ctx),
            novelty=audit_model.novelty,
            epistemic=epistemic,
            learned=audit_model.learned,
            reference=reference_source,
            calibration=cal,
            consistency=consistency,
            register=register,
            domain_check=domain_check,
            progress=progress,
        )
        bar.update(task, description="writing")
        paths = write_audit(result, mr, out, overwrite=overwrite, figures=figures)
        bar.update(task, description="done", completed=bar.tasks[task].total)
    _print_regions(result)
    console.print(f"report: {paths['report_html']}")


def _check_audit_options(
    out: Path,
    overwrite: bool,
    no_audit_model: bool,
    novelty: Path | None,
    model: list[Path] | None,
    epistemic_sd: Path | None,
) -> None:
    """Refuse an existing output folder and options that contradict each other."""
    from synthct.errors import SynthctError, WriteError

    if out.exists() and not overwrite:
        raise WriteError(
            "the output folder already exists",
            path=out,
            fix="choose a new folder or pass --overwrite",
        )
    if no_audit_model and novelty is not None:
        raise SynthctError(
            "--no-audit-model and --novelty (--audit-model) contradict each other",
            path="--no-audit-model",
            fix="pass one of them",
        )
    if model and epistemic_sd is not None:
        raise SynthctError(
            "--model and --epistemic-sd both give the epistemic signal",
            path="--epistemic-sd",
            fix="pass one of them",
        )


def _read_sct(path: Path) -> Any:
    from synthct.io import read_volume
    from synthct.volume import CTVolume

    volume = read_volume(path, kind="sct")
    assert isinstance(volume, CTVolume)
    return volume


def _epistemic(model: list[Path] | None, epistemic_sd: Path | None, mc_passes: int | None) -> Any:
    """The epistemic signal's source: our model(s), a precomputed SD map, or none."""
    from synthct.audit.epistemic import model_folder_epistemic, precomputed_epistemic

    if model:
        return model_folder_epistemic(model, mc_passes=mc_passes)
    if epistemic_sd is not None:
        return precomputed_epistemic(epistemic_sd)
    return None


def _print_regions(result: Any) -> None:
    from rich.table import Table

    for name, why in result.info.get("domain", {}).get("refused_signals", {}).items():
        console.print(f"[yellow]signal {name} refused[/]: {why}")
    if not result.signals:
        console.print("[yellow]not audited[/]: no signal holds for this MRI")
        return
    if not result.regions:
        console.print("[green]no region flagged[/] (signals: " + ", ".join(result.signals) + ")")
        return
    table = Table(title=f"{result.n_flags} flagged region(s)")
    for column in ("id", "centre LPS (mm)", "size (mm)", "score", "signals", "MRI vs sCT"):
        table.add_column(column)
    for r in result.regions[:20]:
        table.add_row(
            str(r.id),
            ", ".join(f"{v:.1f}" for v in r.centre_lps_mm),
            " x ".join(f"{v:.1f}" for v in r.size_mm),
            f"{r.peak_score:.2f}",
            "+".join(r.signals_fired),
            r.direction or "",
        )
    console.print(table)
