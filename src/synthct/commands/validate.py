"""`synthct validate`: lesion-by-lesion validation of synthetic CTs against CT, for a cohort."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from synthct.cli import app, console, err_console, reports_errors

if TYPE_CHECKING:
    from synthct.validation.case import ValidationSettings
    from synthct.validation.manifest import Manifest
    from synthct.validation.runner import RunSummary

#: Exit code when the run finished but some cases failed.
EXIT_CASES_FAILED = 1
#: Values of --align (ValidationSettings.alignment).
ALIGN_MODES = ("check", "auto", "warn")
#: Exit code after Ctrl-C (128 + SIGINT), as shells use.
EXIT_INTERRUPTED = 130

_MANIFEST_HELP = (
    "CSV or YAML manifest, one case per row: case_id, ct, sct, and optionally mri (file, DICOM "
    "folder, or echo files separated by ';'), lesions (label map) or lesion_points "
    "('L,P,S,r; L,P,S,r' in LPS mm), body_mask, notes. Paths are relative to the manifest."
)


@app.command()
@reports_errors
def validate(
    manifest: Annotated[
        Path | None, typer.Argument(help=_MANIFEST_HELP, show_default=False)
    ] = None,
    *,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Output folder: created by synthct (a non-empty folder synthct did not make "
            "is refused; one run at a time per folder).",
        ),
    ],
    ct: Annotated[
        Path | None, typer.Option(help="Single case: the CT (file or DICOM folder).")
    ] = None,
    sct: Annotated[Path | None, typer.Option(help="Single case: the synthetic CT.")] = None,
    mri: Annotated[
        list[Path] | None, typer.Option(help="Single case: MRI source; repeat once per echo file.")
    ] = None,
    lesions: Annotated[Path | None, typer.Option(help="Single case: lesion label map.")] = None,
    lesion_points: Annotated[
        str | None, typer.Option(help="Single case: lesions as 'L,P,S,r; L,P,S,r' (LPS mm).")
    ] = None,
    body_mask: Annotated[Path | None, typer.Option(help="Single case: body mask.")] = None,
    case_id: Annotated[str, typer.Option(help="Single case: its id.")] = "case",
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="YAML of validation settings: any key of synthct.validation.case."
            "ValidationSettings (lesion rules, alignment check, registration, HU ranges, "
            "audit); the options given on the command line replace its keys.",
            show_default=False,
        ),
    ] = None,
    register: Annotated[
        bool, typer.Option("--register", help="Register each sCT rigidly to its CT first (MI).")
    ] = False,
    align: Annotated[
        str,
        typer.Option(
            "--align",
            metavar="check|auto|warn",
            help="Alignment check of each sCT with its CT before any lesion is measured (NCC, "
            "bone Dice, best small shift): 'check' stops a misaligned case with the measured "
            "offset, 'auto' registers it rigidly and checks again, 'warn' measures anyway (no "
            "lesion is then called missed).",
        ),
    ] = "check",
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=0,
            help="Local Dask worker processes (default: the machine's cores; 0: no cluster).",
        ),
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="Address of an existing Dask scheduler to run on.")
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Reuse finished cases whose inputs and settings are unchanged.")
    ] = True,
    figures: Annotated[bool, typer.Option(help="Draw a figure per lesion.")] = True,
    report: Annotated[bool, typer.Option(help="Write the HTML report when available.")] = True,
    check_hu: Annotated[
        bool, typer.Option(help="Reject a CT or sCT whose values are not Hounsfield units.")
    ] = True,
    require_files: Annotated[
        bool, typer.Option(help="Stop before running when any input file is missing.")
    ] = False,
    audit: Annotated[
        bool,
        typer.Option(
            "--audit",
            help="Also run the omission audit on each case with an MRI (needs its echo times, "
            "TR, flip angle and field strength): per lesion, was it flagged; per flag, does "
            "the CT confirm a discrepancy (audit_flags.csv).",
        ),
    ] = False,
    audit_model: Annotated[
        Path | None,
        typer.Option(
            help="Audit model folder from `synthct audit-train` (novelty.npz + "
            "calibration.json); implies --audit (default: the shipped audit model, its "
            "checksums verified).",
            show_default=False,
        ),
    ] = None,
    audit_reference_model: Annotated[
        str | None,
        typer.Option(
            metavar="NAME|PATH",
            help="Lesion-aware reference synthesis model for the audit's reference signal "
            "(shipped name, e.g. lesion_aware, or a folder); implies --audit (default: the one "
            "the audit model was calibrated with, if any).",
            show_default=False,
        ),
    ] = None,
    audit_reference: Annotated[
        bool,
        typer.Option(
            "--audit-reference/--no-audit-reference",
            help="Use the audit's reference signal when a reference model is named (leave it "
            "out for MRI outside the reference model's training domain).",
        ),
    ] = True,
    audit_domain_check: Annotated[
        bool,
        typer.Option(
            "--audit-domain-check/--no-audit-domain-check",
            help="Refuse the audit's signals for MRI outside the audit model's calibrated "
            "domain (the audit_refused column says why).",
        ),
    ] = True,
    keep_identifiers: Annotated[
        bool,
        typer.Option(
            "--keep-identifiers",
            help="Copy the CT's patient and study identifiers (name, ID, birth date, accession "
            "number, institution, UIDs) into the DICOM SEG and SR as they are. Default: "
            "de-identified (DICOM PS3.15 basic profile, UIDs replaced consistently).",
        ),
    ] = False,
) -> None:
    """Validate sCTs against CT: image metrics, each lesion on CT and sCT, cohort statistics.

    Writes lesions, cases and image_metrics_long tables (CSV and Parquet), metrics.json,
    statistics.json, settings.json and failures.csv into OUT, and each case under OUT/cases/.
    With --audit, the lesion and case tables gain audit_* columns and audit_flags.csv lists
    every flagged region with its CT comparison.

    A rerun into the same folder recomputes only new, changed or failed cases.

    Exit code: 0 when every case was validated, 1 when some failed, 2 on bad input.
    """
    from synthct.errors import SynthctError
    from synthct.validation.audit_column import AuditColumnSettings
    from synthct.validation.case import ValidationSettings
    from synthct.validation.manifest import Manifest, case_from_paths, read_manifest
    from synthct.workflows.audit_column import check_audit_settings

    single = [ct, sct, mri, lesions, lesion_points, body_mask]
    if manifest is not None and any(v for v in single):
        raise SynthctError(
            "give either a manifest or the single-case options (--ct, --sct, ...), not both",
            path=str(manifest),
            fix="drop the manifest argument or the --ct/--sct/... options",
        )
    if manifest is not None:
        cases = read_manifest(manifest, require_files=require_files)
    elif ct is not None and sct is not None:
        one = case_from_paths(
            case_id=case_id,
            ct=ct,
            sct=sct,
            mri=mri or (),
            lesions=lesions,
            lesion_points=lesion_points,
            body_mask=body_mask,
        )
        cases = Manifest(cases=(one,))
        if require_files:
            cases.require_files()
    else:
        raise SynthctError(
            "nothing to validate",
            path="command line",
            fix="pass a manifest (synthct validate cases.csv --out DIR) or a single case "
            "(synthct validate --ct CT --sct SCT [--mri MRI] [--lesions MASK] --out DIR)",
        )
    audit_settings = None
    if audit or audit_model is not None or audit_reference_model is not None:
        from synthct.audit.model import shipped_audit_model_path
        from synthct.synthesis.shipped import SHIPPED_MODELS

        reference = audit_reference_model
        if reference is not None and reference not in SHIPPED_MODELS:
            reference = str(Path(reference).resolve())  # workers may not share the cwd
        audit_settings = AuditColumnSettings(
            model=str((audit_model or shipped_audit_model_path()).resolve()),
            reference_model=reference,
            reference=audit_reference,
            domain_check=audit_domain_check,
        )
    if align not in ALIGN_MODES:
        raise SynthctError(
            f"--align {align!r} is not a mode",
            path="--align",
            fix=f"use one of {', '.join(ALIGN_MODES)}",
        )
    if scheduler is not None:
        from synthct.validation.runner import check_scheduler_address

        check_scheduler_address(scheduler)
    given = {
        "rigid_registration": register,
        "alignment": align,
        "check_hu": check_hu,
        "keep_identifiers": keep_identifiers,
    }
    # an option left at its default keeps the value of --config
    options = {k: v for k, v in given.items() if v != ValidationSettings.model_fields[k].default}
    if audit_settings is not None:
        options["audit"] = audit_settings
    settings = (
        ValidationSettings.from_yaml(config, **options)
        if config is not None
        else ValidationSettings.model_validate(options)
    )
    if settings.audit is not None:
        check_audit_settings(settings.audit)
    try:
        summary = _run(cases, out, settings, workers, scheduler, resume, figures, report)
    except KeyboardInterrupt:
        err_console.print(
            f"[yellow]interrupted:[/] finished cases are saved in {out / 'cases'}; run the same "
            "command again to resume (only the missing cases are computed)",
            highlight=False,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    _print_summary(summary)
    if summary.failures:
        raise typer.Exit(EXIT_CASES_FAILED)


def _run(
    cases: Manifest,
    out: Path,
    settings: ValidationSettings,
    workers: int | None,
    scheduler: str | None,
    resume: bool,
    figures: bool,
    report: bool,
) -> RunSummary:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from synthct.validation.runner import CaseProgress, run_validation
    from synthct.workflows.audit_column import audit_case_columns

    n_cases = len(cases.cases)
    with Progress(
        TextColumn("[bold]validate"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=err_console,
        transient=False,
    ) as bar:
        task = bar.add_task("", total=n_cases)

        def on_progress(event: CaseProgress) -> None:
            style = {"ok": "green", "reused": "cyan", "failed": "red"}[event.status]
            bar.update(task, completed=event.done, description=f"[{style}]{event.case_id}")
            if event.status == "failed":
                bar.console.print(f"[red]failed:[/] {event.error}", highlight=False)

        return run_validation(
            cases,
            out,
            settings,
            n_workers=workers,
            scheduler_address=scheduler,
            resume=resume,
            progress=on_progress,
            figures=figures,
            report_writer="auto" if report else None,
            auditor=audit_case_columns if settings.audit is not None else None,
        )


def _print_summary(summary: RunSummary) -> None:
    from rich.markup import escape
    from rich.table import Table

    from synthct.validation.audit_column import AUDIT_SKIP

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    n = len(summary.results)
    table.add_row("cases", f"{n} ({summary.n_ok} ok, {len(summary.failures)} failed)")
    table.add_row(
        "computed / reused",
        f"{len(summary.computed)} / {len(summary.reused)}"
        + (f" on {summary.workers} Dask worker(s)" if summary.workers else ""),
    )
    for modality, label in (("ct", "visible on CT"), ("sct", "visible on sCT"), ("mri", "on MRI")):
        if modality in summary.visibility:
            k, total = summary.visibility[modality]
            table.add_row(label, f"{k}/{total} lesions")
    audit = summary.statistics.get("audit")
    if audit and audit["n_cases_audited"]:
        flagged, omitted = audit["lesions_flagged"], audit["omitted_lesions_flagged"]
        table.add_row(
            "audit",
            f"{flagged['flagged']}/{flagged['n']} lesions flagged "
            f"({omitted['flagged']}/{omitted['n']} of those missing on sCT); "
            f"{audit['n_flags']} flag(s): {audit['n_true_discrepancies']} confirmed by CT, "
            f"{audit['n_false_flags']} false",
        )
    skipped = [
        (r.case_id, w) for r in summary.results for w in r.warnings if w.startswith(AUDIT_SKIP)
    ]
    if skipped:
        case_id, why = skipped[0]
        table.add_row(
            "audit not run",
            f"[yellow]{len(skipped)} case(s)[/], e.g. {escape(case_id)}: "
            + escape(why[len(AUDIT_SKIP) :]),
        )
    table.add_row("output", str(summary.out_dir))
    if summary.report is not None:
        table.add_row("report", str(summary.report))
    if summary.report_error:
        table.add_row("report", f"[yellow]not written: {summary.report_error}")
    table.add_row("time", f"{summary.wall_s:.1f} s")
    console.print(table)
    if summary.results_paragraph:
        console.print()
        console.print(summary.results_paragraph, highlight=False, soft_wrap=True)
    if summary.failures:
        console.print()
        console.print(f"[bold red]{len(summary.failures)} case(s) failed[/] (failures.csv):")
        for failed in summary.failures:
            console.print(f"  {failed.error}", highlight=False, soft_wrap=True)
