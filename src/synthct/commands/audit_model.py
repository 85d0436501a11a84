"""`synthct audit-train` and `synthct audit-evaluate`: fit an audit model, measure it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from synthct.cli import app, console, progress_bar, reports_errors
from synthct.commands.audit_settings import SIGNAL_SECTIONS, SIGNAL_SECTIONS_HELP, signal_settings
from synthct.commands.config_file import build_settings, config_option, given_options

_Cohort = Annotated[
    list[Path],
    typer.Option(
        "--cohort",
        help="Phantom cohort folder(s) or manifest file(s) (CSV, YAML, JSON); their "
        "lesion-free cases are used.",
    ),
]
_TargetFalseFlags = Annotated[
    float, typer.Option(help="False flags per lesion-free volume the thresholds aim at.")
]
_HeldOutFraction = Annotated[
    float, typer.Option(help="Share of the cases kept to choose the thresholds.")
]
_Rule = Annotated[
    str | None,
    typer.Option(
        help="Signals that flag (comma-separated); the others are reported "
        "(default: synthct.audit.combine.DEFAULT_RULE)."
    ),
]
_SynthesisModel = Annotated[
    str | None,
    typer.Option(
        help="Synthesis model folder or shipped name (e.g. product_like) whose sCTs will "
        "be audited: each lesion-free case is audited with its sCT instead of its CT, "
        "for every signal's calibration and for the learned consistency network."
    ),
]
_AuditTrainLearnedConsistency = Annotated[
    bool,
    typer.Option(
        "--learned-consistency/--no-learned-consistency",
        help="Train the learned consistency network (sCT to MRI) on the fit cases.",
    ),
]
_LearnedSteps = Annotated[int, typer.Option(help="Learned consistency: optimiser steps.")]
_AuditTrainReferenceModel = Annotated[
    str | None,
    typer.Option(
        help="Calibrate the reference disagreement signal against this lesion-aware "
        "synthesis model (shipped name, e.g. lesion_aware, or a folder); `synthct audit` "
        "then uses it."
    ),
]
_AuditModel = Annotated[
    Path | None, typer.Option(help="Audit model folder (novelty + calibration).")
]
_AuditEvaluateSynthesisModel = Annotated[
    str | None,
    typer.Option(
        help="Audit this synthesis model's sCT (folder or shipped name) instead of the "
        "paper's failure sCT."
    ),
]


@app.command("audit-train")
@reports_errors
def audit_train(
    ctx: typer.Context,
    cohort: _Cohort,
    out: Annotated[Path, typer.Option("--out", "-o", help="Audit model folder to create.")],
    target_false_flags: _TargetFalseFlags = 0.1,
    min_region_mm3: Annotated[float, typer.Option(help="Smallest flagged region, mm^3.")] = 8.0,
    merge_gap_mm: Annotated[
        float,
        typer.Option(help="Flagged components at most this far apart (mm) are one region."),
    ] = 10.0,  # synthct.audit.combine.DEFAULT_MERGE_GAP_MM (the CLI imports it lazily)
    components: Annotated[int, typer.Option(help="Novelty model: principal components.")] = 16,
    patch: Annotated[int, typer.Option(help="Novelty model: patch edge in voxels (odd).")] = 5,
    held_out_fraction: _HeldOutFraction = 0.5,
    rule: _Rule = None,
    synthesis_model: _SynthesisModel = None,
    learned_consistency: _AuditTrainLearnedConsistency = False,
    learned_steps: _LearnedSteps = 2000,
    reference_model: _AuditTrainReferenceModel = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing folder.")] = False,
    config: Annotated[
        Path | None, config_option(SIGNAL_SECTIONS, what=SIGNAL_SECTIONS_HELP)
    ] = None,
) -> None:
    """Train the audit model on lesion-free cases: novelty (and learned consistency) models
    and the thresholds."""
    from synthct.audit.combine import DEFAULT_RULE
    from synthct.audit.learned_consistency import LearnedConsistencySettings
    from synthct.audit.reference import model_reference
    from synthct.audit.training import (
        LesionFreeCase,
        phantom_lesion_free_cases,
        train_audit_model,
    )

    with progress_bar() as bar:
        task = bar.add_task("reading lesion-free cases", total=None)
        cases = phantom_lesion_free_cases(cohort)
        sct_source = "CT"
        if synthesis_model is not None:
            synthesis = _load_synthesis_model(synthesis_model)
            sct_source = f"synthesis model {synthesis_model}"
            bar.update(task, description="synthesising sCTs", total=len(cases), completed=0)
            with_scts = []
            for n, case in enumerate(cases, start=1):
                sct = synthesis.synthesize(case.mr).sct
                with_scts.append(LesionFreeCase(case.mr, sct, case.name))
                bar.update(task, completed=n)
            cases = with_scts
        bar.update(task, description="training", total=len(cases), completed=0)

        def progress(step: str, done: int, total: int) -> None:
            bar.update(task, description=f"calibrating: {step}", completed=done, total=total)

        folder = train_audit_model(
            cases,
            out,
            held_out_fraction=held_out_fraction,
            novelty_options={"n_components": components, "patch_size": patch},
            learned_consistency=build_settings(
                ctx,
                LearnedConsistencySettings,
                given_options(ctx, rename={"learned_steps": "steps"}, learned_steps=learned_steps),
                section="learned_consistency_settings",
            )
            if learned_consistency
            else None,
            **signal_settings(ctx),
            reference=None if reference_model is None else model_reference(reference_model),
            reference_name=reference_model,
            sct_source=sct_source,
            target_false_flags_per_volume=target_false_flags,
            min_region_volume_mm3=min_region_mm3,
            merge_gap_mm=merge_gap_mm,
            rule=DEFAULT_RULE
            if rule is None
            else tuple(s.strip() for s in rule.split(",") if s.strip()),
            overwrite=overwrite,
            progress=progress,
        )
    console.print(f"audit model: {folder} ({len(cases)} lesion-free cases, sCT: {sct_source})")


def _load_synthesis_model(name: str) -> Any:
    """A synthesis model folder, or a shipped model by name."""
    from synthct.synthesis.shipped import SHIPPED_MODELS
    from synthct.synthesis.synthesizer import SynthesisModel, load_shipped_model

    return load_shipped_model(name) if name in SHIPPED_MODELS else SynthesisModel.load(name)


@app.command("audit-evaluate")
@reports_errors
def audit_evaluate(
    cohort: Annotated[Path, typer.Option("--cohort", help="Held-out phantom cohort folder.")],
    audit_model: _AuditModel = None,
    out: Annotated[Path | None, typer.Option(help="Write the full results as JSON here.")] = None,
    synthesis_model: _AuditEvaluateSynthesisModel = None,
) -> None:
    """Sensitivity for omitted lesions, false flags and ROC per signal on a phantom cohort.

    Each case's sCT is the paper's failure (its CT with the lesions rendered as CSF), or the
    sCT of --synthesis-model.
    """
    from synthct.audit.evaluation import evaluate_cohort, failure_sct
    from synthct.audit.model import load_audit_model
    from synthct.audit.reference import calibrated_reference
    from synthct.io.atomic import write_json_atomic

    # every signal is evaluated, also those the calibrated rule leaves out
    loaded = load_audit_model(audit_model, all_signals=True)
    cal = loaded.calibration
    sct_for_case = failure_sct
    if synthesis_model is not None:
        synthesis = _load_synthesis_model(synthesis_model)

        def sct_for_case(case: Any) -> Any:
            return synthesis.synthesize(case.mr()).sct

    with progress_bar() as bar:
        task = bar.add_task("evaluating", total=None)

        def progress(case_id: str, done: int, total: int) -> None:
            bar.update(task, description=f"evaluating {case_id}", completed=done, total=total)

        evaluation = evaluate_cohort(
            cohort,
            novelty=loaded.novelty,
            calibration=cal,
            learned=loaded.learned,
            reference=calibrated_reference(cal)[0],
            sct_for_case=sct_for_case,
            progress=progress,
        )
    if out is not None:
        write_json_atomic(out, evaluation.to_dict())
    console.print_json(json.dumps(evaluation.summary))
