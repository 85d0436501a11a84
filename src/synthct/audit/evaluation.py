"""Evaluating the audit on a held-out phantom cohort: sensitivity, false flags, ROC per signal.

For every case of a cohort written by :func:`synthct.phantom.cohort.generate_cohort`, the
audited sCT is by default the paper's failure: the case's CT with every lesion tissue rendered
as CSF (``sct_lesions_as_csf`` when the cohort has it, else rendered here from the cohort
specification with the same seed). :func:`evaluate_cohort` then records

* **per lesion** (ground-truth mask on the MRI grid): omitted when the audited sCT's mean
  inside it is below 130 HU; detected when a flagged region overlaps the lesion dilated by
  ``match_margin_mm``; the distance from the nearest overlapping
  region's centre to the lesion centre; each signal's peak ``z_s / t_s`` inside the lesion;
  size, mean HU, calcified fraction and type from the cohort's metadata;
* **per volume**: flagged regions that overlap no (dilated) lesion are false flags; the
  background peak of each signal (:func:`~synthct.audit.combine.region_peak` away from the
  lesions: the threshold below which that signal alone would flag the volume);
* **ROC per signal and for the combination** at two levels: *voxel* (lesion voxels against
  body voxels at least ``match_margin_mm`` from any lesion; negatives subsampled) and
  *lesion* (each lesion's peak near its mask against each lesion-free volume's background
  peak, i.e. can the signal tell a volume with an omitted lesion from a clean one).

ROC curves and AUCs are computed with numpy (:func:`roc_curve`, :func:`roc_auc`), equal to
``sklearn.metrics.roc_curve`` / ``roc_auc_score`` (the AUC is the Mann-Whitney U statistic
over ``n_pos n_neg`` with ties counted one half).

"Calcified" follows the validation's grading (:mod:`synthct.validation`): mean CT >= 130 HU.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage, stats

from synthct.audit.combine import (
    SIGNALS,
    AuditCalibration,
    count_regions,
    min_region_voxels,
    region_peak,
)
from synthct.audit.epistemic import EpistemicSD
from synthct.audit.learned_consistency import LearnedConsistencyModel
from synthct.audit.mri_consistency import ConsistencySettings
from synthct.audit.novelty import NoveltyModel
from synthct.audit.pipeline import run_audit
from synthct.audit.reference import ReferenceSource
from synthct.volume import CTVolume, SyntheticCT

#: Mean CT (HU) from which a lesion counts as calcified.
CALCIFIED_MIN_HU = 130.0
#: Size (mm) from which a lesion counts for the target (smallest of its diameters).
TARGET_MIN_SIZE_MM = 5.0
#: HU and size bins of the sensitivity tables.
HU_BINS: tuple[float, ...] = (40.0, 130.0, 400.0, 700.0, 1100.0)
SIZE_BINS_MM: tuple[float, ...] = (0.0, 5.0, 8.0, 12.0, 80.0)

#: Called as ``progress(case_id, done, total)``.
EvaluationProgress = Callable[[str, int, int], None]
#: Chooses the sCT to audit for a case (default: the failure sCT).
SCTForCase = Callable[[Any], CTVolume]


def roc_curve(
    positives: NDArray[Any], negatives: NDArray[Any]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """False-positive rate, true-positive rate and thresholds (decreasing), as sklearn's.

    Each threshold ``t`` classifies scores ``>= t`` as positive; the curve starts at (0, 0)
    with threshold ``inf``.
    """
    pos = np.asarray(positives, dtype=np.float64).ravel()
    neg = np.asarray(negatives, dtype=np.float64).ravel()
    scores = np.concatenate([pos, neg])
    truth = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
    order = np.argsort(-scores, kind="mergesort")
    scores, truth = scores[order], truth[order]
    distinct = np.flatnonzero(np.diff(scores)) if scores.size else np.array([], dtype=int)
    ends = np.concatenate([distinct, [scores.size - 1]]) if scores.size else np.array([], int)
    tp = np.cumsum(truth)[ends]
    fp = (ends + 1) - tp
    tpr = np.concatenate([[0.0], tp / max(pos.size, 1)])
    fpr = np.concatenate([[0.0], fp / max(neg.size, 1)])
    thresholds = np.concatenate([[np.inf], scores[ends]])
    return fpr, tpr, thresholds


def roc_auc(positives: NDArray[Any], negatives: NDArray[Any]) -> float:
    """Area under the ROC curve (Mann-Whitney U / (n_pos n_neg), ties count one half)."""
    pos = np.asarray(positives, dtype=np.float64).ravel()
    neg = np.asarray(negatives, dtype=np.float64).ravel()
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    ranks = stats.rankdata(np.concatenate([pos, neg]))
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))


@dataclass
class CohortEvaluation:
    """Results of :func:`evaluate_cohort`.

    Attributes
    ----------
    lesions : list of dict
        One row per lesion (see the module docstring).
    volumes : list of dict
        One row per case: lesions, flagged regions, false flags.
    roc : dict
        ``{"voxel": {signal: {"auc", "fpr", "tpr"}}, "lesion": {...}}``.
    summary : dict
        Headline figures (see :meth:`summarise`).
    """

    lesions: list[dict[str, Any]]
    volumes: list[dict[str, Any]]
    roc: dict[str, dict[str, dict[str, Any]]]
    summary: dict[str, Any] = field(default_factory=dict)

    def lesion_table(self) -> Any:
        """The per-lesion rows as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.lesions)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready results (ROC curves included)."""
        return {
            "summary": self.summary,
            "lesions": self.lesions,
            "volumes": self.volumes,
            "roc": self.roc,
        }


def _sensitivity(rows: Sequence[dict[str, Any]], key: str = "detected") -> dict[str, Any]:
    n = len(rows)
    hits = sum(bool(r[key]) for r in rows)
    return {"n": n, "detected": hits, "sensitivity": (hits / n) if n else None}


def summarise(
    lesions: Sequence[dict[str, Any]],
    volumes: Sequence[dict[str, Any]],
    roc: dict[str, dict[str, dict[str, Any]]],
    signals: Sequence[str],
) -> dict[str, Any]:
    """Headline figures: target sensitivity, bins by size and HU, false flags, AUCs."""
    target = [
        r
        for r in lesions
        if r["calcified"] and r["omitted"] and r["smallest_diameter_mm"] >= TARGET_MIN_SIZE_MM
    ]
    free = [v for v in volumes if v["n_lesions"] == 0]
    with_lesions = [v for v in volumes if v["n_lesions"] > 0]
    by_hu = {}
    for lo, hi in pairwise(HU_BINS):
        rows = [r for r in lesions if lo <= r["mean_hu"] < hi]
        by_hu[f"{lo:g}-{hi:g} HU"] = _sensitivity(rows)
    by_size = {}
    for lo, hi in pairwise(SIZE_BINS_MM):
        rows = [r for r in lesions if lo <= r["smallest_diameter_mm"] < hi]
        by_size[f"{lo:g}-{hi:g} mm"] = _sensitivity(rows)
    per_signal = {}
    for name in signals:
        key = f"fired_{name}"
        per_signal[name] = {
            "sensitivity_alone_target": _sensitivity(target, key)["sensitivity"],
            "false_flags_alone_per_lesion_free_volume": float(
                np.mean([v.get(f"false_flags_alone_{name}", 0) for v in free])
            )
            if free
            else None,
            "auc_voxel": roc.get("voxel", {}).get(name, {}).get("auc"),
            "auc_lesion": roc.get("lesion", {}).get(name, {}).get("auc"),
        }
    # The lesion-level AUC is threshold-free: can the signal's peak tell a volume with an
    # omitted lesion from a clean one? Sensitivity alone breaks ties.
    carrying = (
        max(
            signals,
            key=lambda s: (
                per_signal[s]["auc_lesion"] or 0.0,
                per_signal[s]["sensitivity_alone_target"] or 0.0,
            ),
        )
        if signals
        else None
    )
    false_free = [v["false_flags"] for v in free]
    return {
        "target": {
            "definition": f"calcified lesions (mean CT >= {CALCIFIED_MIN_HU:g} HU) whose "
            f"smallest diameter is >= {TARGET_MIN_SIZE_MM:g} mm and that the sCT omits (its "
            f"mean inside the lesion < {CALCIFIED_MIN_HU:g} HU)",
            **_sensitivity(target),
            "required_sensitivity": 0.95,
            "max_false_flags_per_lesion_free_volume": 0.2,
        },
        "all_lesions": _sensitivity(lesions),
        "sensitivity_by_hu": by_hu,
        "sensitivity_by_size": by_size,
        "false_flags_per_lesion_free_volume": float(np.mean(false_free)) if free else None,
        "false_flags_per_lesion_free_volume_unmerged": float(
            np.mean([v.get("false_flags_unmerged", v["false_flags"]) for v in free])
        )
        if free
        else None,
        "lesion_free_volumes": len(free),
        "false_flags_per_lesion_volume": float(np.mean([v["false_flags"] for v in with_lesions]))
        if with_lesions
        else None,
        "false_flags_per_lesion_volume_unmerged": float(
            np.mean([v.get("false_flags_unmerged", v["false_flags"]) for v in with_lesions])
        )
        if with_lesions
        else None,
        "per_signal": per_signal,
        "combined": {
            "auc_voxel": roc.get("voxel", {}).get("combined", {}).get("auc"),
            "auc_lesion": roc.get("lesion", {}).get("combined", {}).get("auc"),
        },
        "signal_carrying_the_result": carrying,
        "centre_error_mm_median": float(
            np.median([r["centre_error_mm"] for r in lesions if r["centre_error_mm"] is not None])
        )
        if any(r["centre_error_mm"] is not None for r in lesions)
        else None,
    }


def failure_sct(case: Any) -> CTVolume:
    """The paper's failure sCT of a phantom case: its CT with the lesions rendered as CSF.

    Read from the case when the cohort was generated with ``failure_sct``; otherwise rendered
    from the cohort's specification (``cohort_spec.json`` beside the case) with the case's
    seed, so that it equals the case's CT outside the lesions.
    """
    name = case.meta.get("files", {}).get("sct_failure")
    if name:
        sct: CTVolume = case.failure_sct()
        return sct
    return _render_failure(case)


def _render_failure(case: Any) -> CTVolume:
    import json

    from synthct.phantom.cohort import LesionsAsCSF, case_plan, ct_geometry, load_cohort_spec
    from synthct.phantom.ct import render_ct
    from synthct.phantom.lesions import PhantomModel

    folder = Path(case.folder)
    spec = load_cohort_spec(**json.loads((folder.parent / "cohort_spec.json").read_text("utf-8")))
    index = int(case.case_id.rsplit("-", 1)[1])
    spine, lesions, centre, seed = case_plan(spec, index)
    model = PhantomModel(spine, lesions)
    protocol = spec.mr_protocol()
    centre_lps = model.spine.canal_centre_lps_mm(centre)
    mr_grid = protocol.geometry(center_lps_mm=centre_lps, orientation=spec.orientation)
    grid = ct_geometry(spec, mr_grid, centre_lps)
    ct = render_ct(
        LesionsAsCSF(model),
        grid,
        supersample=spec.supersample,
        noise_sd_hu=spec.ct_noise_sd_hu,
        seed=seed,
    )
    return SyntheticCT(np.rint(ct.array).astype(np.int16), ct.affine, source=f"{folder} (failure)")


def evaluate_cohort(
    cohort_dir: str | os.PathLike[str],
    *,
    novelty: NoveltyModel | None = None,
    calibration: AuditCalibration | None = None,
    epistemic: EpistemicSD | None = None,
    learned: LearnedConsistencyModel | None = None,
    reference: ReferenceSource | None = None,
    sct_for_case: SCTForCase = failure_sct,
    settings: ConsistencySettings | None = None,
    match_margin_mm: float = 2.0,
    negatives_per_volume: int = 20_000,
    seed: int = 0,
    case_ids: Sequence[str] | None = None,
    progress: EvaluationProgress | None = None,
) -> CohortEvaluation:
    """Audit every case of a held-out phantom cohort and score the flags against the truth.

    Parameters
    ----------
    cohort_dir : path
        A cohort folder (``manifest.csv``, ``case-NNN/``), lesion and lesion-free cases.
    novelty, calibration, epistemic, learned, reference, settings
        As for :func:`synthct.audit.pipeline.run_audit`.
    sct_for_case : callable
        The sCT to audit for a :class:`~synthct.phantom.cohort_files.PhantomCase`
        (default: :func:`failure_sct`).
    match_margin_mm : float
        A region matches a lesion when it overlaps the lesion dilated by this margin.
    negatives_per_volume : int
        Background voxels sampled per volume for the voxel ROC.
    seed : int
        Seeds the sampling.
    case_ids : sequence of str, optional
        Evaluate only these cases (all when omitted).
    progress : callable, optional
        ``progress(case_id, done, total)``.
    """
    from synthct.phantom.cohort_files import PhantomCase, read_manifest

    folder = Path(cohort_dir)
    rows = read_manifest(folder)
    if case_ids is not None:
        rows = [r for r in rows if r["case_id"] in set(case_ids)]
    rng = np.random.default_rng(seed)
    lesions: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    voxel_pos: dict[str, list[np.ndarray]] = {}
    voxel_neg: dict[str, list[np.ndarray]] = {}
    free_peaks: dict[str, list[float]] = {}
    used: list[str] = []
    for done, row in enumerate(rows, start=1):
        case = PhantomCase(folder / row["case_id"])
        mr = case.mr()
        result = run_audit(
            mr,
            sct_for_case(case),
            novelty=novelty,
            epistemic=epistemic,
            learned=learned,
            reference=reference,
            calibration=calibration,
            settings=settings,
        )
        used = list(result.signals)
        # Each signal as z_s / t_s (flagged at 1), and the combination (their maximum).
        maps = {
            name: result.z[name].array / np.float32(result.calibration.for_signal(name).threshold)
            for name in used
        }
        maps["combined"] = result.flag_score.array
        truth = case.lesion_labels().array
        margin = [max(1, round(match_margin_mm / s)) for s in mr.spacing_mm]
        structure = np.ones([2 * m + 1 for m in margin], dtype=bool)
        near = ndimage.binary_dilation(truth > 0, structure=structure)
        regions = result.regions
        region_labels = result.region_labels.array
        matched: set[int] = set()
        min_voxels = min_region_voxels(
            result.calibration.min_region_volume_mm3, mr.geometry.voxel_volume_mm3
        )
        metadata = {int(item["id"]): item for item in case.lesions()}
        for lesion_id in np.unique(truth[truth > 0]):
            mask = truth == lesion_id
            grown = ndimage.binary_dilation(mask, structure=structure)
            hits = sorted(set(np.unique(region_labels[grown]).tolist()) - {0})
            matched.update(hits)
            meta = metadata.get(int(lesion_id), {})
            centre = np.asarray(
                meta.get("centre_lps_mm", mr.geometry.index_to_lps(np.argwhere(mask).mean(axis=0))),
                dtype=np.float64,
            )
            errors = [
                float(np.linalg.norm(np.asarray(regions[h - 1].centre_lps_mm) - centre))
                for h in hits
            ]
            diameters = [
                float(meta.get(k, np.nan))
                for k in ("diameter_axial_mm", "diameter_sagittal_mm", "thickness_mm")
            ]
            record = {
                "case_id": case.case_id,
                "lesion_id": int(lesion_id),
                "type": meta.get("type"),
                "level": meta.get("level"),
                "mean_hu": float(meta.get("mean_hu", np.nan)),
                "calcified_fraction": float(meta.get("calcified_fraction", np.nan)),
                "calcified": float(meta.get("mean_hu", 0.0)) >= CALCIFIED_MIN_HU,
                "diameter_axial_mm": diameters[0],
                "diameter_sagittal_mm": diameters[1],
                "thickness_mm": diameters[2],
                "smallest_diameter_mm": float(np.nanmin(diameters)),
                "n_voxels": int(np.count_nonzero(mask)),
                "sct_mean_hu": float(np.mean(result.sct.array[mask])),
                "omitted": float(np.mean(result.sct.array[mask])) < CALCIFIED_MIN_HU,
                "detected": bool(hits),
                "n_regions": len(hits),
                "centre_error_mm": min(errors) if errors else None,
            }
            for name in used:
                peak = region_peak(np.where(grown, maps[name], 0), min_voxels)
                record[f"peak_{name}"] = peak
                record[f"fired_{name}"] = peak >= 1.0
            record["peak_combined"] = region_peak(np.where(grown, maps["combined"], 0), min_voxels)
            lesions.append(record)
            for name, values in maps.items():
                voxel_pos.setdefault(name, []).append(values[mask])
        background = result.body & ~near
        index = np.flatnonzero(background.ravel())
        take = rng.choice(index, min(index.size, negatives_per_volume), replace=False)
        for name, values in maps.items():
            voxel_neg.setdefault(name, []).append(values.ravel()[take])
        n_lesions = len(np.unique(truth[truth > 0]))
        peaks = {
            name: region_peak(np.where(background, values, 0), min_voxels)
            for name, values in maps.items()
        }
        alone = {name: count_regions(background & (maps[name] >= 1.0), min_voxels) for name in used}
        # what the flags elsewhere would number without merging close components into one
        components, _ = ndimage.label(maps["combined"] >= 1.0, structure=np.ones((3, 3, 3), bool))
        sizes = np.bincount(components.ravel())
        on_lesions = set(np.unique(components[near]).tolist())
        kept = np.flatnonzero(sizes >= min_voxels)
        unmerged = {int(c) for c in kept if c and c not in on_lesions}
        if n_lesions == 0:
            for name, value in peaks.items():
                free_peaks.setdefault(name, []).append(value)
        volumes.append(
            {
                "case_id": case.case_id,
                "n_lesions": n_lesions,
                "n_regions": len(regions),
                "false_flags": len(regions) - len(matched),
                "false_flags_unmerged": len(unmerged),
                **{f"background_peak_{name}": value for name, value in peaks.items()},
                **{f"false_flags_alone_{name}": value for name, value in alone.items()},
                "timings_s": result.info.get("timings_s", {}),
            }
        )
        if progress is not None:
            progress(case.case_id, done, len(rows))
    roc: dict[str, dict[str, dict[str, Any]]] = {"voxel": {}, "lesion": {}}
    for name in [*used, "combined"]:
        if voxel_pos.get(name):
            pos, neg = np.concatenate(voxel_pos[name]), np.concatenate(voxel_neg[name])
            fpr, tpr, _ = roc_curve(pos, neg)
            roc["voxel"][name] = {"auc": roc_auc(pos, neg), **_thin(fpr, tpr)}
        key = "peak_combined" if name == "combined" else f"peak_{name}"
        lesion_peaks = np.array([r[key] for r in lesions if key in r])
        clean = np.asarray(free_peaks.get(name, []), dtype=np.float64)
        if lesion_peaks.size and clean.size:
            fpr, tpr, _ = roc_curve(lesion_peaks, clean)
            roc["lesion"][name] = {"auc": roc_auc(lesion_peaks, clean), **_thin(fpr, tpr)}
    ordered = [s for s in SIGNALS if s in used]
    evaluation = CohortEvaluation(lesions=lesions, volumes=volumes, roc=roc)
    evaluation.summary = summarise(lesions, volumes, roc, ordered)
    return evaluation


def _thin(fpr: NDArray[np.float64], tpr: NDArray[np.float64], n: int = 200) -> dict[str, Any]:
    """At most ``n`` points of a curve (for JSON), always with both ends."""
    if fpr.size > n:
        keep = np.unique(np.linspace(0, fpr.size - 1, n).round().astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return {"fpr": fpr.round(6).tolist(), "tpr": tpr.round(6).tolist()}
