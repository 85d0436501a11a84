"""`synthct validate`: lesion-by-lesion validation of synthetic CTs against CT, for a cohort."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from synthct.cli import app, console, err_console, reports_errors
from synthct.commands.config_file import build_settings, config_option, given_options

if TYPE_CHECKING:
    from synthct.validation.case import ValidationSettings
    from synthct.validation.manifest import Manifest
    from synthct.validation.runner import RunSummary

#: Exit code when the run finished but some cases failed.
EXIT_CASES_FAILED = 1
#: Values of --align (ValidationSettings.alignment).
ALIGN_MODES = ("check", "auto", "warn", "shift")
#: Exit code after Ctrl-C (128 + SIGINT), as shells use.
EXIT_INTERRUPTED = 130


def check_align_mode(align: str) -> None:
    """Refuse an --align value that is not one of :data:`ALIGN_MODES` (validate, evaluate)."""
    if align not in ALIGN_MODES:
        from synthct.errors import SynthctError

        raise SynthctError(
            f"--align {align!r} is not a mode",
            path="--align",
            fix=f"use one of {', '.join(ALIGN_MODES)}",
        )


_MANIFEST_HELP = (
    "CSV or YAML manifest, one case per row: case_id, ct, sct, and optionally mri (file, DICOM "
    "folder, or echo files separated by ';'), lesions (label map) or lesion_points "
    "('L,P,S,r; L,P,S,r' in LPS mm), body_mask, notes. Paths are relative to the manifest."
)


_Manifest = Annotated[Path | None, typer.Argument(help=_MANIFEST_HELP, show_default=False)]
_Out = Annotated[
    Path,
    typer.Option(
        "--out",
        "-o",
        help="Output folder: created by synthct (a non-empty folder synthct did not make "
        "is refused; one run at a time per folder).",
    ),
]
_CT = Annotated[Path | None, typer.Option(help="Single case: the CT (file or DICOM folder).")]
_SCT = Annotated[Path | None, typer.Option(help="Single case: the synthetic CT.")]
_MRI = Annotated[
    list[Path] | None, typer.Option(help="Single case: MRI source; repeat once per echo file.")
]
_Lesions = Annotated[Path | None, typer.Option(help="Single case: lesion label map.")]
_LesionPoints = Annotated[
    str | None, typer.Option(help="Single case: lesions as 'L,P,S,r; L,P,S,r' (LPS mm).")
]
_BodyMask = Annotated[Path | None, typer.Option(help="Single case: body mask.")]
_CaseId = Annotated[str, typer.Option(help="Single case: its id.")]
_Config = Annotated[
    Path | None,
    config_option(
        "synthct.validation.case:ValidationSettings",
        what=", and any key of synthct.validation.case.ValidationSettings (lesion rules, "
        "alignment check, registration, HU ranges, audit)",
    ),
]
_Register = Annotated[
    bool, typer.Option("--register", help="Register each sCT rigidly to its CT first (MI).")
]
_Align = Annotated[
    str,
    typer.Option(
        "--align",
        metavar="check|auto|warn|shift",
        help="Alignment check of each sCT with its CT before any lesion is measured (NCC, "
        "bone Dice, best small shift): 'check' stops a misaligned case with the measured "
        "offset, 'auto' registers it rigidly and checks again, 'warn' measures anyway (no "
        "lesion is then called missed), 'shift' stops only a case found shifted or mirrored "
        "and measures a poor match as a poor sCT.",
    ),
]
_Workers = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=0,
        help="Local Dask worker processes (default: the machine's cores; 0: no cluster).",
    ),
]
_Scheduler = Annotated[
    str | None, typer.Option(help="Address of an existing Dask scheduler to run on.")
]
_Resume = Annotated[
    bool, typer.Option(help="Reuse finished cases whose inputs and settings are unchanged.")
]
_Figures = Annotated[bool, typer.Option(help="Draw a figure per lesion.")]
_Report = Annotated[bool, typer.Option(help="Write the HTML report when available.")]
_CheckHU = Annotated[
    bool, typer.Option(help="Reject a CT or sCT whose values are not Hounsfield units.")
]
_RequireFiles = Annotated[
    bool, typer.Option(help="Stop before running when any input file is missing.")
]
_Audit = Annotated[
    bool,
    typer.Option(
        "--audit",
        help="Also run the omission audit on each case with an MRI (needs its echo times, "
        "TR, flip angle and field strength): per lesion, was it flagged; per flag, does "
        "the CT confirm a discrepancy (audit_flags.csv).",
    ),
]
_AuditModel = Annotated[
    Path | None,
    typer.Option(
        help="Audit model folder from `synthct audit-train` (novelty.npz + "
        "calibration.json); implies --audit (default: the shipped audit model, its "
        "checksums verified).",
        show_default=False,
    ),
]
_AuditReferenceModel = Annotated[
    str | None,
    typer.Option(
        metavar="NAME|PATH",
        help="Lesion-aware reference synthesis model for the audit's reference signal "
        "(shipped name, e.g. lesion_aware, or a folder); implies --audit (default: the one "
        "the audit model was calibrated with, if any).",
        show_default=False,
    ),
]
_AuditReference = Annotated[
    bool,
    typer.Option(
        "--audit-reference/--no-audit-reference",
        help="Use the audit's reference signal when a reference model is named (leave it "
        "out for MRI outside the reference model's training domain).",
    ),
]
_AuditDomainCheck = Annotated[
    bool,
    typer.Option(
        "--audit-domain-check/--no-audit-domain-check",
        help="Refuse the audit's signals for MRI outside the audit model's calibrated "
        "domain (the audit_refused column says why).",
    ),
]
_KeepIdentifiers = Annotated[
    bool,
    typer.Option(
        "--keep-identifiers",
        help="Copy the CT's patient and study identifiers (name, ID, birth date, accession "
        "number, institution, UIDs) into the DICOM SEG and SR as they are. Default: "
        "de-identified (DICOM PS3.15 basic profile, UIDs replaced consistently).",
    ),
]


@app.command()
@reports_errors
def validate(
    ctx: typer.Context,
    manifest: _Manifest = None,
    *,
    out: _Out,
    ct: _CT = None,
    sct: _SCT = None,
    mri: _MRI = None,
    lesions: _Lesions = None,
    lesion_points: _LesionPoints = None,
    body_mask: _BodyMask = None,
    case_id: _CaseId = "case",
    config: _Config = None,
    register: _Register = False,
    align: _Align = "check",
    workers: _Workers = None,
    scheduler: _Scheduler = None,
    resume: _Resume = True,
    figures: _Figures = True,
    report: _Report = True,
    check_hu: _CheckHU = True,
    require_files: _RequireFiles = False,
    audit: _Audit = False,
    audit_model: _AuditModel = None,
    audit_reference_model: _AuditReferenceModel = None,
    audit_reference: _AuditReference = True,
    audit_domain_check: _AuditDomainCheck = True,
    keep_identifiers: _KeepIdentifiers = False,
) -> None:
    """Validate sCTs against CT: image metrics, each lesion on CT and sCT, cohort statistics.

    Writes lesions, cases and image_metrics_long tables (CSV and Parquet), metrics.json,
    statistics.json, settings.json and failures.csv into OUT, and each case under OUT/cases/.
    With --audit, the lesion and case tables gain audit_* columns and audit_flags.csv lists
    every flagged region with its CT comparison.

    A rerun into the same folder recomputes only new, changed or failed cases.

    Exit code: 0 when every case was validated, 1 when some failed, 2 on bad input.
    """
    from synthct.workflows.audit_column import check_audit_settings

    single: dict[str, Any] = {"ct": ct, "sct": sct, "mri": mri or (), "lesions": lesions}
    single.update(lesion_points=lesion_points, body_mask=body_mask)
    cases = _cases(manifest, case_id, single, require_files=require_files)
    if scheduler is not None:
        from synthct.validation.runner import check_scheduler_address

        check_scheduler_address(scheduler)
    settings = _settings(ctx, align, audit, audit_model, audit_reference_model, audit_reference)
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


def _cases(
    manifest: Path | None, case_id: str, single: dict[str, Any], *, require_files: bool
) -> Manifest:
    """The manifest's cases, or the one case of the single-case options ``single``."""
    from synthct.errors import SynthctError
    from synthct.validation.manifest import Manifest, case_from_paths, read_manifest

    if manifest is not None and any(v for v in single.values()):
        raise SynthctError(
            "give either a manifest or the single-case options (--ct, --sct, ...), not both",
            path=str(manifest),
            fix="drop the manifest argument or the --ct/--sct/... options",
        )
    if manifest is not None:
        return read_manifest(manifest, require_files=require_files)
    if single["ct"] is None or single["sct"] is None:
        raise SynthctError(
            "nothing to validate",
            path="command line",
            fix="pass a manifest (synthct validate cases.csv --out DIR) or a single case "
            "(synthct validate --ct CT --sct SCT [--mri MRI] [--lesions MASK] --out DIR)",
        )
    cases = Manifest(cases=(case_from_paths(case_id=case_id, **single),))
    if require_files:
        cases.require_files()
    return cases


def _settings(
    ctx: typer.Context,
    align: str,
    audit: bool,
    audit_model: Path | None,
    audit_reference_model: str | None,
    audit_reference: bool,
) -> ValidationSettings:
    """The settings of the --config file, the options given on the command line replacing them."""
    from synthct.validation.audit_column import AuditColumnSettings
    from synthct.validation.case import ValidationSettings

    check_align_mode(align)
    options = given_options(
        ctx,
        rename={"register": "rigid_registration", "align": "alignment"},
        register=ctx.params["register"],
        align=align,
        check_hu=ctx.params["check_hu"],
        keep_identifiers=ctx.params["keep_identifiers"],
    )
    if audit or audit_model is not None or audit_reference_model is not None:
        from synthct.audit.model import shipped_audit_model_path
        from synthct.synthesis.shipped import SHIPPED_MODELS

        reference = audit_reference_model
        if reference is not None and reference not in SHIPPED_MODELS:
            reference = str(Path(reference).resolve())  # workers may not share the cwd
        options["audit"] = AuditColumnSettings(
            model=str((audit_model or shipped_audit_model_path()).resolve()),
            reference_model=reference,
            reference=audit_reference,
            domain_check=ctx.params["audit_domain_check"],
        )
    return build_settings(ctx, ValidationSettings, options)


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
