"""Omission audit: speed on a 256 x 256 x 96 case and the evaluation table on held-out phantoms.

Targets (BRIEF, "Targets"): >= 95% of omitted calcified lesions >= 5 mm flagged at <= 0.2 false
flags per lesion-free volume; the audit of a 256 x 256 x 96 case in <= 30 s on 2 cores.

What runs (cohorts are generated once into --work and reused):

1. **Training cohort**: 24 lesion-free phantoms (0.8 mm, 128 x 160 x 64 mm around the canal,
   the paper's 3 T contrast). ``train_audit_model`` fits the novelty model on a third and
   calibrates the thresholds on the other two thirds for 0.1 false flags per volume. No lesion
   is seen.
2. **Held-out cohort** (other seeds): 60% of cases hold a random meningioma (5-12 mm axial,
   100-1000 HU); every case has the paper's failure sCT (its CT with the lesion rendered as
   CSF). ``evaluate_cohort`` reports sensitivity by HU and size, false flags and ROC per signal.
3. **Our learned sCT** (optional): a small convolutional MRI-to-HU network with dropout before
   its last layer, trained on the lesion-free cases; the held-out cohort is audited with its
   sCT and its MC-dropout SD as the epistemic signal. Lesions the model does not render as
   calcified count as omitted.
   With ``--synthesis-model product_like`` (the shipped model trained without intradural
   lesions) instead: the model's sCTs of the training cohort (cached under ``--work``, keyed by
   the weights' checksum) train the learned consistency network (first half) and calibrate
   every signal (second half; ``--rule`` names the signals that flag); the held-out cohort is
   audited with the model's sCT, the learned consistency signal and its MC-dropout SD.
   ``--reference-model lesion_aware`` adds the reference disagreement signal
   (:mod:`synthct.audit.reference`), calibrated on the same lesion-free sCTs; the reference's
   sCTs and SDs are cached beside the audited model's.
4. **Speed**: one 256 x 256 x 96 case (paper contrast, 0.98 x 0.98 x 0.94 mm): the audit with
   the consistency signal alone (the baseline), with novelty, with the learned consistency
   signal when one was trained, and the written outputs.

Run: .venv/bin/python benchmarks/audit.py [--quick] [--no-learned] [--no-failure] [--work DIR]
     [--synthesis-model product_like [--rule consistency,learned_consistency]
      [--learned-steps 2000] [--learned-cases 8] [--reference-model lesion_aware]]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

COMMON: dict[str, Any] = {
    "protocol": "paper_3t",
    "voxel_size_mm": (0.8, 0.8, 0.8),
    "field_of_view_mm": (128.0, 160.0, 64.0),
    "levels": ("C4", "L2"),
}
LESIONS = {
    "types": ("meningioma",),
    "probability": 0.6,
    "mean_hu": (100.0, 1000.0),
    "axial_diameter_mm": (5.0, 12.0),
    "sagittal_diameter_mm": (6.0, 20.0),
}


def _fitting_seed(spec_values: dict[str, Any], first: int) -> int:
    """The first seed from ``first`` whose random lesions all fit their canal."""
    from synthct.phantom.cohort import case_plan, load_cohort_spec
    from synthct.phantom.lesions import PhantomModel
    from synthct.phantom.model import PhantomParameterError

    for seed in range(first, first + 50):
        spec = load_cohort_spec(seed=seed, **spec_values)
        try:
            for index in range(spec.case_count):
                spine, lesions, _, _ = case_plan(spec, index)
                if lesions:
                    PhantomModel(spine, lesions)
        except PhantomParameterError:
            continue
        return seed
    raise RuntimeError("no seed found whose lesions fit")


def _cohort(folder: Path, **values: Any) -> Path:
    from synthct.phantom.cohort import generate_cohort, load_cohort_spec

    return generate_cohort(load_cohort_spec(**values), folder, resume=True)


def _table(title: str, summary: dict[str, Any]) -> None:
    target = summary["target"]
    print(f"\n{title}")
    print(
        f"  target lesions (calcified, omitted, >= 5 mm): {target['detected']}/{target['n']} "
        f"flagged, sensitivity {_pct(target['sensitivity'])} (required >= 95%)"
    )
    print(f"  all lesions: {summary['all_lesions']['detected']}/{summary['all_lesions']['n']}")
    free = summary["false_flags_per_lesion_free_volume"]
    print(
        f"  false flags per lesion-free volume: {free:.2f} over "
        f"{summary['lesion_free_volumes']} volumes (required <= 0.2); per lesion volume "
        f"(outside the lesion): {summary['false_flags_per_lesion_volume']:.2f}"
    )
    print(
        "  without merging components closer than the calibration's merge gap: "
        f"{summary['false_flags_per_lesion_free_volume_unmerged']:.2f} per lesion-free volume, "
        f"{summary['false_flags_per_lesion_volume_unmerged']:.2f} per lesion volume"
    )
    print(
        "  sensitivity by mean CT:  "
        + ", ".join(
            f"{k} {v['detected']}/{v['n']}"
            for k, v in summary["sensitivity_by_hu"].items()
            if v["n"]
        )
    )
    print(
        "  sensitivity by smallest diameter:  "
        + ", ".join(
            f"{k} {v['detected']}/{v['n']}"
            for k, v in summary["sensitivity_by_size"].items()
            if v["n"]
        )
    )
    print(
        f"  {'signal':<12} {'alone: target sens.':>20} {'alone: FF/free vol.':>20} "
        f"{'AUC voxel':>10} {'AUC lesion':>11}"
    )
    for name, row in summary["per_signal"].items():
        ff = row["false_flags_alone_per_lesion_free_volume"]
        print(
            f"  {name:<12} {_pct(row['sensitivity_alone_target']):>20} "
            f"{'n/a' if ff is None else f'{ff:.2f}':>20} "
            f"{_num(row['auc_voxel']):>10} {_num(row['auc_lesion']):>11}"
        )
    combined = summary["combined"]
    print(
        f"  {'combined':<12} {'':>20} {'':>20} {_num(combined['auc_voxel']):>10} "
        f"{_num(combined['auc_lesion']):>11}"
    )
    print(
        f"  signal carrying the result: {summary['signal_carrying_the_result']}; median "
        f"distance region centre to lesion centre {_num(summary['centre_error_mm_median'])} mm"
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _num(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


def _synthesis_model(name: str) -> Any:
    from synthct.synthesis.shipped import SHIPPED_MODELS
    from synthct.synthesis.synthesizer import SynthesisModel, load_shipped_model

    return load_shipped_model(name) if name in SHIPPED_MODELS else SynthesisModel.load(name)


def _sct_cache_dir(work: Path, name: str, model: Any) -> Path:
    """Cache folder of one synthesis model's sCTs, keyed by its weights' checksum."""
    return work / f"sct-{Path(name).name}-{_weights_digest(model)}"


def _weights_digest(model: Any) -> str:
    """The first 12 hex digits of a synthesis model's weights checksum (a cache key)."""
    return str(model.members[0].card.get("weights_sha256", "unknown"))[:12]


def _cached_sct(
    model: Any, cache: Path, cohort: Path, case: Any, mc_passes: int | None
) -> tuple[Any, Any]:
    """The model's sCT of a phantom case (and its MC-dropout SD when ``mc_passes``), cached."""
    from synthct.io import read_volume, write_volume

    folder = cache / cohort.name / case.case_id
    sct_path, sd_path = folder / "sct.nii.gz", folder / f"epistemic_sd_mc{mc_passes}.nii.gz"
    if sct_path.is_file() and (mc_passes is None or sd_path.is_file()):
        sd = read_volume(sd_path, kind="scalar").as_scalar() if mc_passes else None
        return read_volume(sct_path, kind="sct"), sd
    folder.mkdir(parents=True, exist_ok=True)
    result = model.synthesize(case.mr(), uncertainty=bool(mc_passes), mc_passes=mc_passes)
    write_volume(result.sct, sct_path)
    if mc_passes:
        write_volume(result.epistemic_sd, sd_path)
    return result.sct, result.epistemic_sd


def _sct_with_sd(sct_and_sd: Any) -> tuple[Any, Any]:
    """``sct_for_case`` and an epistemic source from one ``case -> (sCT, SD)`` call per case.

    ``evaluate_cohort`` asks for the sCT of a case, then for the SD of its MRI: the SD of the
    last sCT is kept for the second call instead of running the model twice.
    """
    memo: dict[str, Any] = {}

    def sct_for_case(case: Any) -> Any:
        sct, memo["sd"] = sct_and_sd(case)
        return sct

    def epistemic(_mr: Any) -> Any:
        return memo["sd"]

    return sct_for_case, epistemic


def _reference_cache_dir(work: Path, name: str) -> Path:
    """Cache folder of a reference model's predictions, keyed by its weights' checksum."""
    return work / f"reference-{Path(name).name}-{_weights_digest(_synthesis_model(name))}"


def _cached_reference(name: str, work: Path) -> Any:
    """A reference source whose predictions are cached per MRI file (same seed and passes)."""
    from synthct.audit.reference import ReferencePrediction, model_reference
    from synthct.io import read_volume, write_volume

    source = model_reference(name)
    cache = _reference_cache_dir(work, name)

    def predict(mr: Any) -> Any:
        echo = Path(str(mr.source).split(";")[0])
        folder = cache / echo.parent.parent.name / echo.parent.name
        sct_path, sd_path = folder / "sct.nii.gz", folder / "epistemic_sd.nii.gz"
        if sct_path.is_file() and sd_path.is_file():
            sd = read_volume(sd_path, kind="scalar").as_scalar()
            sct = read_volume(sct_path, kind="sct", check_hu=False)  # written here
            return ReferencePrediction(sct, sd, name)
        prediction = source(mr)
        folder.mkdir(parents=True, exist_ok=True)
        write_volume(prediction.sct, sct_path)
        write_volume(prediction.sd, sd_path)
        return prediction

    return predict


def _balanced(rows: list[dict[str, str]], n: int) -> list[str]:
    """``n`` case ids, about half of them with a lesion, in manifest order."""
    with_lesion = [r["case_id"] for r in rows if int(r["n_lesions"] or 0) > 0]
    free = [r["case_id"] for r in rows if int(r["n_lesions"] or 0) == 0]
    chosen = with_lesion[: (n + 1) // 2] + free[: n // 2]
    return [r["case_id"] for r in rows if r["case_id"] in chosen]


class TinySynthesis:
    """A small MRI-to-HU network with dropout before its 1x1x1 head (for MC dropout).

    The features are computed once; each MC pass only redraws the dropout mask and applies the
    head, so the epistemic SD costs little more than one pass.
    """

    def __init__(self, channels: int = 12, dropout: float = 0.2, seed: int = 0) -> None:
        import torch
        from torch import nn

        torch.manual_seed(seed)
        self.features = nn.Sequential(
            nn.Conv3d(2, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv3d(channels, channels, 3, padding=2, dilation=2),
            nn.ReLU(),
            nn.Conv3d(channels, channels, 3, padding=1),
            nn.ReLU(),
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Conv3d(channels, 1, 1)

    def prepare(self, mr: Any) -> Any:
        import torch

        from synthct.synthesis.normalisation import body_mask_from_mri

        body, _ = body_mask_from_mri(mr.array)
        data = np.asarray(mr.array, dtype=np.float32)
        scale = [np.float32(np.percentile(d[body], 99)) for d in data]
        return torch.from_numpy(np.stack([d / s for d, s in zip(data, scale, strict=True)]))[None]

    def train(self, cases: list[Any], steps: int, patch: int = 32) -> float:
        import torch

        params = [*self.features.parameters(), *self.head.parameters()]
        optimiser = torch.optim.Adam(params, lr=3e-3)
        inputs = [
            (
                self.prepare(c.mr),
                torch.from_numpy(np.asarray(c.sct.array, dtype=np.float32) / 1000.0)[None, None],
            )
            for c in cases
        ]
        rng = np.random.default_rng(0)
        loss_value = 0.0
        for _ in range(steps):
            x, y = inputs[int(rng.integers(len(inputs)))]
            starts = [int(rng.integers(0, n - patch + 1)) for n in x.shape[2:]]
            window = tuple(slice(s, s + patch) for s in starts)
            optimiser.zero_grad()
            out = self.head(self.dropout(self.features(x[(..., *window)])))
            loss = torch.mean(torch.abs(out - y[(..., *window)]))
            loss.backward()
            optimiser.step()
            loss_value = float(loss.detach())
        return loss_value * 1000.0

    def sct_and_sd(self, mr: Any, passes: int = 8) -> tuple[Any, Any]:
        import torch

        from synthct.volume import ScalarVolume, SyntheticCT

        with torch.inference_mode():
            features = self.features(self.prepare(mr))
            mean = self.head(features)[0, 0].numpy() * 1000.0
            self.dropout.train()
            torch.manual_seed(0)
            samples = torch.stack([self.head(self.dropout(features))[0, 0] for _ in range(passes)])
            self.dropout.eval()
        sd = samples.std(dim=0, unbiased=False).numpy() * 1000.0
        return (
            SyntheticCT(mean.astype(np.float32), mr.affine, source="tiny network"),
            ScalarVolume(sd.astype(np.float32), mr.affine),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--work",
        type=Path,
        default=Path(tempfile.gettempdir()) / "synthct-audit-benchmark",
        help="folder for the cohorts and models (reused between runs)",
    )
    parser.add_argument("--quick", action="store_true", help="smaller cohorts")
    parser.add_argument("--no-learned", action="store_true", help="skip our learned sCT")
    parser.add_argument("--speed-only", action="store_true", help="only the timing")
    parser.add_argument(
        "--no-failure", action="store_true", help="skip the paper's failure-sCT evaluation"
    )
    parser.add_argument(
        "--synthesis-model",
        default=None,
        help="learned sCT from a synthct model folder or shipped model name (e.g. product_like) "
        "instead of the tiny network",
    )
    parser.add_argument("--mc-passes", type=int, default=4, help="MC-dropout passes")
    parser.add_argument(
        "--eval-cases",
        type=int,
        default=30,
        help="held-out cohort size (60%% with a meningioma); more cases, more omitted targets",
    )
    parser.add_argument(
        "--learned-cases",
        type=int,
        default=None,
        help="audit the learned sCT on this many held-out cases (half with a lesion)",
    )
    parser.add_argument(
        "--rule",
        default=None,
        help="signals in the flag rule for the --synthesis-model audit (comma-separated; "
        "default synthct.audit.combine.DEFAULT_RULE)",
    )
    parser.add_argument(
        "--learned-steps", type=int, default=2000, help="learned consistency: training steps"
    )
    parser.add_argument(
        "--reference-model",
        default=None,
        help="with --synthesis-model: calibrate and evaluate the reference disagreement signal "
        "against this lesion-aware model (e.g. lesion_aware)",
    )
    parser.add_argument(
        "--merge-gap-mm",
        type=float,
        default=10.0,
        help="flagged components at most this far apart are one region (the audit models "
        "written since session 19: synthct.audit.combine.DEFAULT_MERGE_GAP_MM); the "
        "thresholds do not depend on it, so a cached calibration is reused with it",
    )
    parser.add_argument(
        "--voxel-size",
        type=float,
        nargs=3,
        default=COMMON["voxel_size_mm"],
        metavar=("X", "Y", "Z"),
        help="voxel size of every cohort, mm (default 0.8 mm isotropic, which the shipped "
        "models resample to their planned 0.74 x 0.74 x 0.9 mm; give that to audit on their "
        "own grid); cohorts at another size get their own folders",
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    from synthct.audit.combine import load_calibration
    from synthct.audit.novelty import load_novelty_model
    from synthct.audit.training import phantom_lesion_free_cases, train_audit_model

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    n_train, n_eval = (12, 12) if args.quick else (24, args.eval_cases)
    voxel = tuple(float(v) for v in args.voxel_size)
    common = {**COMMON, "voxel_size_mm": voxel}
    # the default size keeps the folder names of earlier runs (their cached sCTs stay valid)
    tag = "" if voxel == COMMON["voxel_size_mm"] else "-vox" + "x".join(f"{v:g}" for v in voxel)
    t0 = time.perf_counter()
    train_dir = _cohort(
        work / f"train-{n_train}{tag}", n_cases=n_train, seed=1041, lesions=None, **common
    )
    eval_values = {"n_cases": n_eval, "lesions": LESIONS, "failure_sct": True, **common}
    eval_dir = _cohort(
        work / f"eval-{n_eval}{tag}", seed=_fitting_seed(eval_values, 2051), **eval_values
    )
    print(f"cohorts ready ({time.perf_counter() - t0:.0f} s): {train_dir}, {eval_dir}")

    model_dir = work / f"audit-model-{n_train}{tag}"
    cases = phantom_lesion_free_cases([train_dir])
    if not (model_dir / "calibration.json").is_file():
        t0 = time.perf_counter()
        train_audit_model(cases, model_dir, held_out_fraction=2 / 3, overwrite=True)
        print(f"audit model trained in {time.perf_counter() - t0:.0f} s: {model_dir}")
    novelty = load_novelty_model(model_dir)
    calibration = replace(load_calibration(model_dir), merge_gap_mm=args.merge_gap_mm)
    print(
        "thresholds: "
        + ", ".join(
            f"{k} {v.threshold:.3g}{' (in rule)' if v.in_rule else ' (reported)'}"
            for k, v in calibration.signals.items()
        )
    )

    learned = None
    if not args.speed_only:
        learned = _evaluations(args, work, eval_dir, cases, novelty, calibration, n_eval)
    _speed(work, novelty, calibration, learned, args.reference_model)


def _evaluations(
    args: Any,
    work: Path,
    eval_dir: Path,
    cases: list[Any],
    novelty: Any,
    calibration: Any,
    n_eval: int,
) -> Any:
    """The evaluation tables; returns the learned consistency model when one was trained."""
    from synthct.audit.evaluation import evaluate_cohort
    from synthct.audit.training import LesionFreeCase
    from synthct.phantom.cohort_files import read_manifest

    if not args.no_failure:
        t0 = time.perf_counter()
        evaluation = evaluate_cohort(eval_dir, novelty=novelty, calibration=calibration)
        (work / "evaluation_failure_sct.json").write_text(json.dumps(evaluation.to_dict()))
        _table(
            f"Held-out cohort, paper's failure sCT ({n_eval} cases, "
            f"{time.perf_counter() - t0:.0f} s)",
            evaluation.summary,
        )
    if args.no_learned:
        return None
    if args.synthesis_model is not None:
        return _synthesis_model_audit(args, work, eval_dir, cases, n_eval)
    t0 = time.perf_counter()
    net = TinySynthesis()
    final_loss = net.train(
        [LesionFreeCase(c.mr, c.sct, c.name) for c in cases],
        steps=150 if args.quick else 400,
    )
    print(
        f"\nlearned sCT: tiny network trained in {time.perf_counter() - t0:.0f} s "
        f"(last patch MAE {final_loss:.0f} HU)"
    )

    learned_sct, epistemic = _sct_with_sd(lambda case: net.sct_and_sd(case.mr()))

    rows = read_manifest(eval_dir)
    subset = None if args.learned_cases is None else _balanced(rows, args.learned_cases)
    t0 = time.perf_counter()
    learned = evaluate_cohort(
        eval_dir,
        novelty=novelty,
        calibration=calibration,
        epistemic=epistemic,
        sct_for_case=learned_sct,
        case_ids=subset,
    )
    (work / "evaluation_learned_sct.json").write_text(json.dumps(learned.to_dict()))
    omitted = sum(r["omitted"] and r["calcified"] for r in learned.lesions)
    calcified = sum(r["calcified"] for r in learned.lesions)
    _table(
        f"Held-out cohort, our learned sCT with MC-dropout SD ({omitted}/{calcified} "
        f"calcified lesions omitted by it; {time.perf_counter() - t0:.0f} s; epistemic "
        "self-standardised, reported, not in the rule)",
        learned.summary,
    )
    return None


def _settings_digest() -> str:
    """Short checksum of the reference signal's settings: a calibration holds for its own."""
    import hashlib

    from synthct.audit.reference import ReferenceSettings

    text = json.dumps(ReferenceSettings().to_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _synthesis_model_audit(
    args: Any, work: Path, eval_dir: Path, cases: list[Any], n_eval: int
) -> Any:
    """Audit a synthesis model's sCT with an audit model calibrated on that model's sCTs.

    The lesion-free training cases get the model's sCT (cached under ``--work``, keyed by the
    weights' checksum); the learned consistency network is trained on the first half of them,
    and every signal is calibrated on the second half (so the model's own systematic errors
    are part of "normal"). The held-out cohort is audited with the model's sCT and its
    MC-dropout SD (epistemic, self-standardised, reported).
    """
    from synthct.audit.combine import DEFAULT_RULE, load_calibration
    from synthct.audit.evaluation import evaluate_cohort
    from synthct.audit.learned_consistency import (
        LearnedConsistencySettings,
        fit_learned_consistency,
        has_learned_consistency,
        load_learned_consistency,
    )
    from synthct.audit.novelty import load_novelty_model
    from synthct.audit.training import LesionFreeCase, train_audit_model
    from synthct.phantom.cohort_files import PhantomCase, read_manifest

    name = args.synthesis_model
    model = _synthesis_model(name)
    cache = _sct_cache_dir(work, name, model)
    rule = DEFAULT_RULE if args.rule is None else tuple(args.rule.split(","))
    t0 = time.perf_counter()
    sct_cases = []
    for case in cases:
        cohort, case_id = case.name.split("/")
        phantom = PhantomCase(work / cohort / case_id)
        sct, _ = _cached_sct(model, cache, work / cohort, phantom, None)
        sct_cases.append(LesionFreeCase(case.mr, sct, case.name))
    print(
        f"\n{name} sCTs of {len(sct_cases)} lesion-free training cases ready "
        f"({time.perf_counter() - t0:.0f} s; cache {cache})"
    )
    n_held = len(sct_cases) // 2
    fit = sct_cases[: len(sct_cases) - n_held]
    tag = eval_dir.name.removeprefix(f"eval-{n_eval}")  # the voxel size, when not the default
    learned_dir = work / f"learned-{cache.name}-{len(fit)}fit-{args.learned_steps}steps{tag}"
    if has_learned_consistency(learned_dir):
        learned = load_learned_consistency(learned_dir)
    else:
        t0 = time.perf_counter()
        learned = fit_learned_consistency(
            [(c.mr, c.sct) for c in fit],
            settings=LearnedConsistencySettings(steps=args.learned_steps),
            sources=[c.name for c in fit],
            sct_source=f"synthesis model {name}",
        )
        learned_dir.mkdir(parents=True, exist_ok=True)
        learned.save(learned_dir)
        print(
            f"learned consistency trained in {time.perf_counter() - t0:.0f} s on {len(fit)} "
            f"pairs (loss {learned.info['first_loss']:.2f} -> {learned.info['final_loss']:.2f})"
        )
    reference = None
    suffix = ""
    if args.reference_model is not None:
        reference = _cached_reference(args.reference_model, work)
        ref_cache = _reference_cache_dir(work, args.reference_model)
        suffix = "-ref-" + ref_cache.name.removeprefix("reference-") + "-" + _settings_digest()
    audit_dir = work / (f"audit-model-{len(sct_cases)}-{cache.name}-{'+'.join(rule)}{suffix}{tag}")
    if not (audit_dir / "calibration.json").is_file():
        t0 = time.perf_counter()
        train_audit_model(
            sct_cases,
            audit_dir,
            held_out_fraction=n_held / len(sct_cases),
            learned_consistency=learned,
            reference=reference,
            reference_name=args.reference_model,
            sct_source=f"synthesis model {name}",
            rule=rule,
            overwrite=True,
        )
        print(f"audit model on {name} sCTs trained in {time.perf_counter() - t0:.0f} s")
    novelty = load_novelty_model(audit_dir)
    calibration = replace(load_calibration(audit_dir), merge_gap_mm=args.merge_gap_mm)
    print(
        f"merge gap {calibration.merge_gap_mm:g} mm; thresholds on {name} sCTs: "
        + ", ".join(
            f"{k} {v.threshold:.3g}{' (in rule)' if v.in_rule else ' (reported)'}"
            for k, v in calibration.signals.items()
        )
    )

    learned_sct, epistemic = _sct_with_sd(
        lambda case: _cached_sct(model, cache, eval_dir, case, args.mc_passes)
    )

    rows = read_manifest(eval_dir)
    subset = None if args.learned_cases is None else _balanced(rows, args.learned_cases)
    t0 = time.perf_counter()
    result = evaluate_cohort(
        eval_dir,
        novelty=novelty,
        calibration=calibration,
        epistemic=epistemic,
        learned=learned,
        reference=reference,
        sct_for_case=learned_sct,
        case_ids=subset,
    )
    table_path = work / f"evaluation_{Path(name).name}_sct{suffix}{tag}.json"
    table_path.write_text(json.dumps(result.to_dict()))
    omitted = sum(r["omitted"] and r["calcified"] for r in result.lesions)
    calcified = sum(r["calcified"] for r in result.lesions)
    _table(
        f"Held-out cohort, {name} sCT, audit calibrated on its lesion-free sCTs, rule "
        f"{'+'.join(rule)} ({omitted}/{calcified} calcified lesions omitted by it; "
        f"{time.perf_counter() - t0:.0f} s; epistemic: MC-dropout SD ({args.mc_passes} passes), "
        "self-standardised, reported)",
        result.summary,
    )
    return learned


def _speed(
    work: Path, novelty: Any, calibration: Any, learned: Any = None, reference: str | None = None
) -> None:
    from synthct.audit.evaluation import failure_sct
    from synthct.audit.pipeline import run_audit
    from synthct.audit.report import write_audit
    from synthct.phantom.cohort_files import PhantomCase

    speed_dir = _cohort(
        work / "speed-256",
        n_cases=1,
        seed=7,
        failure_sct=True,
        protocol="paper_3t",
        voxel_size_mm=(250 / 256, 250 / 256, 90 / 96),
        levels=("T6", "T6"),
        lesions={**LESIONS, "probability": 1.0, "mean_hu": (600.0, 600.0)},
    )
    case = PhantomCase(speed_dir / "case-000")
    mr, sct = case.mr(), failure_sct(case)
    print(
        f"\nSpeed, 2 threads, {' x '.join(str(n) for n in mr.spatial_shape)} voxels "
        f"({mr.spacing_mm[0]:.2f} x {mr.spacing_mm[1]:.2f} x {mr.spacing_mm[2]:.2f} mm)"
    )
    print(f"  {'configuration':<40} {'seconds':>8}  steps")
    configurations: list[tuple[str, dict[str, Any]]] = [
        ("consistency only (baseline)", {}),
        ("consistency + novelty", {"novelty": novelty}),
    ]
    if learned is not None:
        configurations += [
            ("learned consistency only", {"learned": learned, "consistency": False}),
            ("consistency + learned + novelty", {"novelty": novelty, "learned": learned}),
        ]
    if reference is not None:
        from synthct.audit.reference import model_reference

        source = model_reference(reference)  # loaded once, as `synthct audit` does
        configurations += [
            (f"consistency + reference ({reference})", {"reference": source}),
            (
                "consistency + reference + novelty",
                {"reference": source, "novelty": novelty},
            ),
        ]
    for name, kwargs in configurations:
        start = time.perf_counter()
        # a timing: every signal is computed even where the calibration's domain (its voxel
        # sizes) would refuse this case
        result = run_audit(mr, sct, calibration=calibration, domain_check=False, **kwargs)
        elapsed = time.perf_counter() - start
        print(
            f"  {name:<40} {elapsed:8.1f}  {result.info['timings_s']}; {result.n_flags} region(s)"
        )
    start = time.perf_counter()
    write_audit(result, mr, work / "speed-audit", overwrite=True)
    print(f"  {'writing outputs (volumes, JSON, HTML)':<40} {time.perf_counter() - start:8.1f}")
    print("  target: <= 30 s for the audit of a 256 x 256 x 96 case")


if __name__ == "__main__":
    main()
