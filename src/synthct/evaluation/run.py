"""Evaluate a synthesis model on a cohort: sCT per case, then validation's metrics and tables.

:func:`evaluate_cohort` synthesises each case's sCT (a model, an ensemble, optionally with
test-time augmentation; or the manifest's existing sCTs) into ``OUT/cases/<case_id>/``, then
runs the validation pipeline (:func:`synthct.validation.runner.run_validation`) on the
(CT, sCT, MRI, lesions, mask) of every case, which writes the per-case results, ``cases.csv``,
``lesions.csv`` (where lesions are annotated) and the rest of validation's tables into ``OUT``.
From its case rows come the SynthRAD2025-style files (:mod:`synthct.evaluation.tables`).

Resume: an sCT is reused when its stamp (``synthesis_stamp.json``: the model's weights
checksums, the inference options and the size and time of every input file) matches; the
validation runner
reuses its own per-case results the same way, so a rerun after a crash recomputes only what is
missing or changed. Every file is written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from synthct.errors import SynthctError, WriteError
from synthct.evaluation.cases import EvaluationCase, EvaluationInputError
from synthct.io.atomic import write_json_atomic
from synthct.settings import SettingsBase
from synthct.validation.case import ValidationSettings

__all__ = ["EvaluationSummary", "InferenceOptions", "evaluate_cohort"]

SCT_FILE = "sct.nii.gz"
STAMP_FILE = "synthesis_stamp.json"

#: Called with (case_id, what happened: "synthesised", "reused", "given sCT", "failed",
#: "validated").
EvaluationProgress = Callable[[str, str], None]


class InferenceOptions(SettingsBase):
    """How each sCT is made (part of its stamp)."""

    invalid_error: ClassVar[type[SynthctError] | None] = EvaluationInputError
    settings_label: ClassVar[str] = "inference options"

    tta_axes: tuple[int, ...] = ()
    uncertainty: bool = False
    resample: bool | None = None
    overlap: float | None = None
    batch_size: int | None = None
    autocast_bf16: bool = False


@dataclass
class EvaluationSummary:
    """What an evaluation did and where its files are."""

    out_dir: Path
    rows: list[dict[str, Any]]
    cohort: dict[str, dict[str, Any]]
    files: dict[str, Path]
    synthesised: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def _file_stamp(path: Path) -> Any:
    """Path, size and modification time (every file of a folder, e.g. a DICOM series)."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [
        [str(p), p.stat().st_size, p.stat().st_mtime_ns] if p.exists() else [str(p), None]
        for p in files
    ]


def _with_sidecars(paths: Sequence[Path]) -> list[Path]:
    from synthct.io.image_files import image_suffix, sidecar_path

    return [q for p in paths for q in ([p, sidecar_path(p)] if image_suffix(p) else [p])]


def _model_identity(synthesizer: Any) -> list[str]:
    members = getattr(synthesizer, "members", None)
    if members is None:
        return [str(getattr(synthesizer, "name", type(synthesizer).__name__))]
    return [str(m.card.get("weights_sha256") or m.name) for m in members]


def _stamp(case: EvaluationCase, synthesizer: Any, options: InferenceOptions) -> str:
    body = {
        "model": _model_identity(synthesizer),
        "options": options.model_dump(),
        "inputs": [_file_stamp(p) for p in _with_sidecars(case.mri)],
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _synthesise(
    case: EvaluationCase, folder: Path, synthesizer: Any, options: InferenceOptions
) -> tuple[Path, bool]:
    """The case's sCT path and whether it was made now (False: reused)."""
    from synthct.io.echoes import read_echoes
    from synthct.synthesis.errors import OutOfDomainWarning
    from synthct.synthesis.synthesizer import SynthesisModel

    sct_path = folder / SCT_FILE
    stamp_path = folder / STAMP_FILE
    digest = _stamp(case, synthesizer, options)
    try:
        stored = json.loads(stamp_path.read_text(encoding="utf-8")).get("digest")
    except (OSError, ValueError, AttributeError):
        stored = None
    if stored == digest and sct_path.is_file():
        return sct_path, False
    if not case.mri:
        raise EvaluationInputError(
            f"case {case.case_id!r} has no MR channels to synthesise from",
            path="manifest column mr_echoes",
            fix="fill in mr_echoes (or mri) for every case",
        )
    mr = read_echoes(list(case.mri))
    with warnings.catch_warnings():
        # the mismatches travel with the sCT (provenance) into the table's sct_out_of_domain
        warnings.simplefilter("ignore", OutOfDomainWarning)
        if isinstance(synthesizer, SynthesisModel):
            result = synthesizer.synthesize(
                mr,
                uncertainty=options.uncertainty,
                tta_axes=options.tta_axes,
                resample=options.resample,
                overlap=options.overlap,
                batch_size=options.batch_size,
                autocast_bf16=options.autocast_bf16,
            )
        else:
            result = synthesizer.synthesize(mr, uncertainty=options.uncertainty)
    folder.mkdir(parents=True, exist_ok=True)
    stamp_path.unlink(missing_ok=True)  # the stamp is written last: its presence means done
    result.write(sct_path)
    write_json_atomic(
        stamp_path,
        {"digest": digest, "model": _model_identity(synthesizer), "options": options.model_dump()},
    )
    return sct_path, True


def _case_specs(
    cases: Sequence[EvaluationCase],
    out: Path,
    synthesizer: Any | None,
    opts: InferenceOptions,
    summary: EvaluationSummary,
    progress: EvaluationProgress | None,
) -> list[Any]:
    """Each case with its sCT (made, reused or the manifest's), ready for validation.

    A case that fails is recorded in ``summary.failed`` and left out; the others go on.
    """
    from synthct.validation.manifest import CaseSpec, parse_lesion_points

    specs: list[CaseSpec] = []
    for case in cases:
        folder = out / "cases" / case.case_id
        try:
            if synthesizer is None:
                if case.sct is None:
                    raise EvaluationInputError(
                        f"case {case.case_id!r} has no sct and no model was given",
                        path="--model",
                        fix="pass --model, or give an sct column in the manifest",
                    )
                sct_path = case.sct
                summary.reused.append(case.case_id)
            else:
                sct_path, made = _synthesise(case, folder, synthesizer, opts)
                (summary.synthesised if made else summary.reused).append(case.case_id)
            specs.append(
                CaseSpec(
                    case_id=case.case_id,
                    ct=case.ct,
                    sct=sct_path,
                    mri=case.mri,
                    lesions=case.lesions,
                    lesion_points=(
                        tuple(parse_lesion_points(case.lesion_points))
                        if case.lesion_points
                        else None
                    ),
                    body_mask=case.body_mask,
                )
            )
        except (SynthctError, ValueError) as exc:
            # a bad case is recorded and the others go on
            summary.failed[case.case_id] = f"case {case.case_id!r}: {exc}"
            if progress is not None:
                progress(case.case_id, "failed")
            continue
        if progress is not None:
            if synthesizer is None:
                progress(case.case_id, "given sCT")
            else:
                made = case.case_id in summary.synthesised
                progress(case.case_id, "synthesised" if made else "reused")
    return specs


def evaluate_cohort(
    cases: Sequence[EvaluationCase],
    out_dir: str | os.PathLike[str],
    *,
    synthesizer: Any | None = None,
    options: InferenceOptions | None = None,
    settings: ValidationSettings | None = None,
    n_workers: int | None = 0,
    resume: bool = True,
    figures: bool = False,
    progress: EvaluationProgress | None = None,
    description: dict[str, Any] | None = None,
) -> EvaluationSummary:
    """Synthesise (or take) each case's sCT, validate it against CT, write the tables.

    Parameters
    ----------
    cases : sequence of EvaluationCase
        The cases, in table order.
    out_dir : path
        Output folder (created).
    synthesizer : SynthesisModel or BaselineSynthesizer, optional
        Makes the sCTs; ``None`` evaluates each case's ``sct`` as it is.
    options : InferenceOptions, optional
        Inference settings (test-time augmentation, uncertainty maps, resampling).
    settings : ValidationSettings, optional
        Validation settings (image metrics, lesion rules); defaults when omitted.
    n_workers : int, optional
        Validation workers (see :func:`~synthct.validation.runner.run_validation`); ``0``:
        this process.
    resume : bool
        Reuse sCTs and results whose inputs did not change.
    figures : bool
        Draw each lesion's figure (CT | sCT | MRI).
    progress : callable, optional
        Called with (case_id, event).
    description : dict, optional
        What was evaluated (model, subset, ...), written into ``evaluation.json``.

    Returns
    -------
    EvaluationSummary
    """
    from synthct.evaluation.tables import evaluation_rows, write_evaluation_files
    from synthct.io.output_safety import claim_output_folder
    from synthct.validation.runner import run_validation

    if not cases:
        raise EvaluationInputError("no case to evaluate", fix="check the manifest and subset")
    opts = options or InferenceOptions()
    out = claim_output_folder(out_dir, command="evaluate")
    try:
        (out / "cases").mkdir(exist_ok=True)
    except OSError as exc:
        raise WriteError(f"cannot create the output folder ({exc})", path=out) from exc
    summary = EvaluationSummary(out_dir=out, rows=[], cohort={}, files={})
    specs = _case_specs(cases, out, synthesizer, opts, summary, progress)
    results = []
    if specs:
        run = run_validation(
            specs,
            out,
            settings or ValidationSettings(),
            n_workers=n_workers,
            resume=resume,
            figures=figures,
            report_writer=None,
            command="evaluate",
        )
        results = run.results
    summary.rows = evaluation_rows(cases, results, summary.failed)
    summary.cohort, summary.files = write_evaluation_files(
        out, summary.rows, description=description or {}
    )
    return summary
