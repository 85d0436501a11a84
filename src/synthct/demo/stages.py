"""The demo's stages (see :mod:`synthct.demo.pipeline`): each reuses what a previous run made."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from synthct.demo.settings import METHODS, DemoSettings
from synthct.phantom.cohort_files import PhantomCase

Step = Callable[[str, str, int, int], None]


@dataclass(frozen=True)
class DemoModels:
    """The synthesizers compared and where their model folders are."""

    synthesizers: dict[str, Any]
    folders: dict[str, Path | None]


def make_cohort(settings: DemoSettings, step: Step) -> list[PhantomCase]:
    """Generate (or finish) the paper's cohort; return its cases."""
    from synthct.demo.settings import demo_cohort_spec
    from synthct.phantom.cohort import generate_cohort
    from synthct.phantom.cohort_files import read_manifest

    spec = demo_cohort_spec(settings)
    folder = generate_cohort(
        spec,
        settings.cohort_dir,
        resume=True,
        progress=lambda case_id, done, total: step("cohort", case_id, done, total),
    )
    return [PhantomCase(folder / row["case_id"]) for row in read_manifest(folder)]


def get_models(settings: DemoSettings, step: Step) -> DemoModels:
    """The shipped models (or retrained ones) and the baseline."""
    from synthct.synthesis.baseline import BaselineSynthesizer
    from synthct.synthesis.synthesizer import SynthesisModel

    folders: dict[str, Path | None] = {}
    if settings.retrain:
        folders.update(retrain_models(settings, step))
    else:
        from synthct.synthesis.shipped import shipped_model_path

        for name in ("product_like", "lesion_aware"):
            folders[name] = shipped_model_path(name)
    synthesizers: dict[str, Any] = {}
    for i, name in enumerate(("product_like", "lesion_aware")):
        path = folders[name]
        assert path is not None
        synthesizers[name] = SynthesisModel.load(path)
        step("models", name, i + 1, 3)
    synthesizers["baseline"] = BaselineSynthesizer()
    folders["baseline"] = None
    step("models", "baseline", 3, 3)
    return DemoModels(synthesizers=synthesizers, folders=folders)


#: ``--retrain``'s cohort: the procedural-world (stage-1) cohort of
#: scripts/train_shipped_models.sh, not the new world the shipped models were fine-tuned on.
TRAINING_COHORT: dict[str, Any] = {
    "n_cases": 6,
    "seed": 101,
    "protocol": "paper_3t",
    "levels": ("C4", "L2"),
    "lesions": {"types": ("disc_herniation", "opll", "olf"), "probability": 0.5},
}


def retrain_models(settings: DemoSettings, step: Step) -> dict[str, Path | None]:
    """Train both models from scratch with the shipped models' own configurations."""
    from synthct.phantom.cohort import generate_cohort, load_cohort_spec
    from synthct.synthesis.config import load_config
    from synthct.synthesis.shipped import shipped_model_path
    from synthct.synthesis.training import TrainingProgress, train_model

    work = settings.out_dir / "retrained"
    values = dict(TRAINING_COHORT)
    if settings.quick:
        values.update(n_cases=3, field_of_view_mm=(64.0, 64.0, 32.0), supersample=1)
    cohort = generate_cohort(
        load_cohort_spec(**values),
        work / "cohort_train",
        resume=True,
        progress=lambda case_id, done, total: step("models", f"cohort {case_id}", done, total),
    )
    folders: dict[str, Path | None] = {}
    for name in ("product_like", "lesion_aware"):
        config = load_config(shipped_model_path(name) / "config.yaml")
        if settings.quick:
            training = config.training.model_copy(update={"iterations": 20})
            config = config.model_copy(update={"training": training})
        run = work / f"run_{name}"
        model = run / "model"
        if not (model / "model_card.json").exists():

            def report(p: TrainingProgress, n: str = name) -> None:
                step("models", f"train {n}", p.iteration, max(p.iterations, 1))

            train_model(
                cohort / "manifest.csv",
                config,
                run,
                resume=(run / "checkpoints").exists(),
                progress=report,
            )
        folders[name] = model
    return folders


def sct_path(settings: DemoSettings, method: str, case_id: str) -> Path:
    """Where the sCT of ``case_id`` by ``method`` is written."""
    return settings.out_dir / "sct" / method / f"{case_id}.nii.gz"


def synthesize_all(
    settings: DemoSettings, cases: list[PhantomCase], models: DemoModels, step: Step
) -> dict[str, dict[str, Path]]:
    """sCT of every case by every method; the learned ones with their uncertainty maps.

    The product-like model's epistemic SD is the audit's epistemic signal; the lesion-aware
    model's sCT and SD are the audit's reference (:mod:`synthct.audit.reference`).
    """
    from synthct.synthesis.synthesizer import SynthesisModel

    out: dict[str, dict[str, Path]] = {m: {} for m in METHODS}
    total = len(cases) * len(METHODS)
    done = 0
    for case in cases:
        mr = None
        for method in METHODS:
            path = sct_path(settings, method, case.case_id)
            if not path.exists():
                mr = mr if mr is not None else case.mr()
                path.parent.mkdir(parents=True, exist_ok=True)
                synthesizer = models.synthesizers[method]
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    if isinstance(synthesizer, SynthesisModel):
                        uncertainty = method in ("product_like", "lesion_aware")
                        result = synthesizer.synthesize(
                            mr,
                            uncertainty=uncertainty,
                            mc_passes=settings.mc_passes if uncertainty else None,
                            seed=settings.seed,
                        )
                    else:
                        result = synthesizer.synthesize(mr)
                _record_warnings(settings, method, case.case_id, caught)
                result.write(path)
            out[method][case.case_id] = path
            done += 1
            step("synthesis", f"{method} {case.case_id}", done, total)
    return out


def _record_warnings(
    settings: DemoSettings, method: str, case_id: str, caught: list[warnings.WarningMessage]
) -> None:
    if not caught:
        return
    log = settings.out_dir / "sct" / method / f"{case_id}.warnings.txt"
    log.write_text("\n".join(str(w.message) for w in caught) + "\n", encoding="utf-8")


def validate_all(
    settings: DemoSettings,
    cases: list[PhantomCase],
    scts: dict[str, dict[str, Path]],
    step: Step,
) -> dict[str, Any]:
    """``synthct validate`` of every method's sCTs against the phantom CTs."""
    from synthct.manifest import read_manifest
    from synthct.validation.manifest import spec_from_case
    from synthct.validation.runner import run_validation

    cohort = read_manifest(settings.cohort_dir)  # the manifest `synthct phantom` wrote
    summaries: dict[str, Any] = {}
    for i, method in enumerate(METHODS):
        specs = [
            spec_from_case(
                cohort[case.case_id].with_images(sct=scts[method][case.case_id]),
                notes=f"{METHODS[method]}; lesion truth from the phantom",
            )
            for case in cases
        ]
        summary = run_validation(
            specs, settings.out_dir / "validation" / method, n_workers=0, resume=True
        )
        if summary.failures:
            reasons = "; ".join(f"{r.case_id}: {r.error}" for r in summary.failures)
            from synthct.demo.settings import DemoError

            raise DemoError(f"validation of the {method} sCTs failed for some cases: {reasons}")
        summaries[method] = summary
        step("validation", method, i + 1, len(METHODS))
    return summaries


def audit_all(
    settings: DemoSettings,
    cases: list[PhantomCase],
    scts: dict[str, dict[str, Path]],
    models: DemoModels,
    step: Step,
) -> dict[str, Any]:
    """The omission audit of the product-like sCTs (MRI + sCT only), lesion by lesion.

    The lesion-aware model's sCTs of the same MRI serve as the audit's reference.
    """
    from synthct.demo.audit_stage import audit_cases

    return audit_cases(
        settings, cases, scts["product_like"], step, references=scts.get("lesion_aware")
    )


def summarise(
    settings: DemoSettings,
    cases: list[PhantomCase],
    models: DemoModels,
    validations: dict[str, Any],
    audits: dict[str, Any],
) -> dict[str, Any]:
    """Everything the report shows, computed from the run's own outputs."""

    from synthct.demo.paper_values import CITATION, PAPER_RESULTS

    methods = {method: _method_summary(method, summary) for method, summary in validations.items()}
    cards = {}
    worlds = {}
    for name, folder in models.folders.items():
        if folder is not None and (Path(folder) / "model_card.md").exists():
            cards[name] = (Path(folder) / "model_card.md").read_text(encoding="utf-8")
            worlds[name] = model_world(Path(folder))
    truth = [lesion for case in cases for lesion in case.lesions()]
    return {
        "citation": CITATION,
        "paper": PAPER_RESULTS,
        "quick": settings.quick,
        "seed": settings.seed,
        "cases": [case.case_id for case in cases],
        "phantom_truth": [
            {
                "case_id": case.case_id,
                **{
                    k: lesion.get(k)
                    for k in (
                        "type",
                        "level",
                        "mean_hu",
                        "diameter_axial_mm",
                        "diameter_sagittal_mm",
                    )
                },
            }
            for case in cases
            for lesion in case.lesions()
        ],
        "n_truth_lesions": len(truth),
        "methods": methods,
        "audit": audits,
        "model_cards": cards,
        "model_worlds": worlds,
    }


def model_world(folder: Path) -> dict[str, Any]:
    """What a model was trained on and how it did on held-out cases, from its card.

    Keys: ``description``, ``training_cases``, ``initial_weights`` and
    ``initial_weights_sha256`` (the model a fine-tuned run started from, or None),
    ``trained_utc``, ``held_out`` (world -> cohort, body MAE, bone Dice, lesions visible).
    """
    import json

    card = json.loads((folder / "model_card.json").read_text(encoding="utf-8"))
    domain = card.get("domain") or {}
    initial = (card.get("training") or {}).get("initial_weights") or {}
    held_out = {}
    for key, world in (
        ("held_out_validation", "procedural phantoms"),
        ("held_out_validation_real_anatomy", "real anatomy"),
    ):
        figures = card.get(key)
        if figures:
            held_out[world] = {
                "cohort": figures.get("cohort"),
                "body_mae_hu": figures.get("body_mae_hu"),
                "bone_dice_250hu": figures.get("bone_dice_250hu"),
                "calcified_lesions_visible": figures.get("calcified_lesions_visible"),
                "date_utc": figures.get("date_utc"),
            }
    return {
        "description": card.get("description", ""),
        "training_cases": domain.get("n_training_cases"),
        "initial_weights": initial.get("name"),
        "initial_weights_sha256": initial.get("weights_sha256"),
        "trained_utc": card.get("created_utc"),
        "held_out": held_out,
    }


def _method_summary(method: str, summary: Any) -> dict[str, Any]:
    """One method's lesions, visibility, HU and image metrics from its validation folder."""
    import pandas as pd

    out_dir = Path(summary.out_dir)
    lesions = pd.read_csv(out_dir / "lesions.csv")
    cases_table = pd.read_csv(out_dir / "cases.csv")
    stats = summary.statistics
    cohort = stats.get("cohort") or {}
    return {
        "label": METHODS[method],
        "validation_dir": str(out_dir),
        "report": str(out_dir / "report.html"),
        "n_lesions": len(lesions),
        "ct_visible": int(lesions["ct_visible"].sum()),
        "sct_visible": int(lesions["sct_visible"].sum()),
        "ct_mean_hu": float(lesions["ct_mean_hu"].mean()),
        "sct_mean_hu": float(lesions["sct_mean_hu"].mean()),
        "ct_diameter_axial_mm": float(lesions["ct_diameter_axial_mm"].mean()),
        "sct_diameter_axial_mm": float(lesions["sct_diameter_axial_mm"].mean()),
        "ct_diameter_sagittal_mm": float(lesions["ct_diameter_sagittal_mm"].mean()),
        "sct_diameter_sagittal_mm": float(lesions["sct_diameter_sagittal_mm"].mean()),
        "hu_relative_error": float(
            np.mean(
                np.abs(lesions["sct_mean_hu"] - lesions["ct_mean_hu"])
                / np.abs(lesions["ct_mean_hu"])
            )
        ),
        "tests": _tests(cohort),
        "results_paragraph": stats.get("results_paragraph"),
        "image_metrics": {
            key: float(cases_table[key].mean())
            for key in ("mae_hu", "mean_error_hu", "psnr_db", "ms_ssim", "bone_dice_250hu")
            if key in cases_table
        },
        "lesion_rows": lesions.to_dict(orient="records"),
        "figures": {
            row["case_id"]: str(
                out_dir / "cases" / row["case_id"] / f"lesion-{row['lesion_id']}.png"
            )
            for row in lesions.to_dict(orient="records")
        },
    }


def _tests(cohort: dict[str, Any]) -> dict[str, Any]:
    """The p-values of the paper's tests and the small-sample ones, from statistics.json."""
    visibility = cohort.get("visibility") or {}
    comparisons = cohort.get("comparisons") or {}
    out: dict[str, Any] = {
        "visible": {
            "chi_square_p": visibility.get("chi_square_p"),
            "mcnemar_p": visibility.get("mcnemar_p"),
        }
    }
    for quantity, values in comparisons.items():
        out[quantity] = {
            "paired_t_p": _first(values, "paired_t_p", "t_test_p", "ttest_p"),
            "wilcoxon_p": _first(values, "wilcoxon_p"),
        }
    return out


def _first(values: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in values:
            return values[key]
    return None
