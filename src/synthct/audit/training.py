"""Fitting an audit model on lesion-free data: the novelty model and the calibration.

An audit model is a folder::

    audit_model/
      novelty.npz                        the patch PPCA (synthct.audit.novelty)
      learned_consistency.safetensors    optional: the sCT-to-MRI network
      learned_consistency.json           (synthct.audit.learned_consistency)
      calibration.json                   centre, scale and threshold of each signal, the rule
      checksums.json                     SHA-256 of every file, verified on load

Lesion-free cases (MRI with an sCT) are split in two: the first part ("fit") trains the
novelty model and the learned consistency network and gives the centre and scale of each
signal; the second ("held out") chooses the thresholds for the target false-flag rate
(:func:`synthct.audit.combine.choose_threshold`). No lesion is ever used, so the thresholds do
not depend on what should be found.

The sCT of each case should be what the audit will see: the sCT of the synthesis model whose
output is audited (its systematic errors are then part of what is normal), or the CT when
that model is unknown. The learned consistency network learns the MRI that goes with that
model's sCT, so it is only meaningful for that model.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from synthct.audit.combine import (
    DEFAULT_CALIBRATION,
    DEFAULT_MERGE_GAP_MM,
    DEFAULT_MIN_REGION_VOLUME_MM3,
    DEFAULT_RULE,
    DEFAULT_TARGET_FALSE_FLAGS,
    SIGNALS,
    STANDARDISED,
    AuditCalibration,
    SignalCalibration,
    choose_threshold,
    min_region_voxels,
    robust_centre_scale,
)
from synthct.audit.domain import AuditDomain
from synthct.audit.epistemic import EpistemicSD
from synthct.audit.errors import AuditInputError
from synthct.audit.learned_consistency import (
    LearnedConsistencyModel,
    LearnedConsistencySettings,
    fit_learned_consistency,
)
from synthct.audit.model import save_audit_model
from synthct.audit.mri_consistency import ConsistencySettings
from synthct.audit.novelty import NoveltyModel, fit_novelty_model
from synthct.audit.pipeline import run_audit
from synthct.audit.reference import ReferenceSettings, ReferenceSource
from synthct.case import Case
from synthct.volume import CTVolume, MultiEchoMR

#: Called as ``progress(step, done, total)``.
TrainingProgress = Callable[[str, int, int], None]
#: Values sampled per volume for the centre and scale.
_SAMPLES_PER_VOLUME = 200_000


@dataclass(frozen=True)
class LesionFreeCase:
    """A lesion-free MRI with its sCT (or its CT).

    Attributes
    ----------
    mr : MultiEchoMR
        The echoes with their protocol.
    sct : CTVolume
        The sCT of the synthesis model to be audited (or the CT), any grid of the MRI's frame.
    name : str
        For provenance.
    """

    mr: MultiEchoMR
    sct: CTVolume
    name: str = ""


def fit_calibration(
    fit_cases: Sequence[LesionFreeCase],
    held_out_cases: Sequence[LesionFreeCase],
    *,
    novelty: NoveltyModel | None = None,
    epistemic: EpistemicSD | None = None,
    learned: LearnedConsistencyModel | None = None,
    reference: ReferenceSource | None = None,
    target_false_flags_per_volume: float = DEFAULT_TARGET_FALSE_FLAGS,
    min_region_volume_mm3: float = DEFAULT_MIN_REGION_VOLUME_MM3,
    rule: Sequence[str] = DEFAULT_RULE,
    settings: ConsistencySettings | None = None,
    reference_settings: ReferenceSettings | None = None,
    progress: TrainingProgress | None = None,
) -> AuditCalibration:
    """Centre and scale on ``fit_cases``, thresholds on ``held_out_cases`` (see module).

    ``rule`` names the signals that flag (:mod:`synthct.audit.combine`); they share the
    false-flag target, and every other signal gets the whole target for its own threshold.

    Raises
    ------
    AuditInputError
        No case in one of the two sets.
    """
    if not fit_cases or not held_out_cases:
        raise AuditInputError(
            f"calibration needs lesion-free cases in both sets (fit {len(fit_cases)}, held out "
            f"{len(held_out_cases)})",
            fix="give at least 2 lesion-free cases",
        )
    total = len(fit_cases) + len(held_out_cases)
    done = 0
    ref_settings = reference_settings or ReferenceSettings()

    def maps(case: LesionFreeCase) -> tuple[dict[str, np.ndarray], np.ndarray, float]:
        nonlocal done
        result = run_audit(
            case.mr,
            case.sct,
            novelty=novelty,
            epistemic=epistemic,
            learned=learned,
            reference=reference,
            settings=settings,
            reference_settings=ref_settings,
            calibration=DEFAULT_CALIBRATION,
        )
        done += 1
        if progress is not None:
            progress(case.name, done, total)
        raw = {k: np.asarray(v.array, dtype=np.float32) for k, v in result.signals.items()}
        return raw, result.body, case.mr.geometry.voxel_volume_mm3

    rng = np.random.default_rng(0)
    pooled: dict[str, list[np.ndarray]] = {}
    for case in fit_cases:
        raw, body, _ = maps(case)
        for name, values in raw.items():
            inside = values[body]
            take = rng.choice(inside.size, min(inside.size, _SAMPLES_PER_VOLUME), replace=False)
            pooled.setdefault(name, []).append(inside[take])
    centres: dict[str, tuple[float, float]] = {}
    for name, parts in pooled.items():
        if name in STANDARDISED:
            centres[name] = (0.0, 1.0)  # standardised by construction
        else:
            centres[name] = robust_centre_scale(np.concatenate(parts))
    z_maps: dict[str, list[np.ndarray]] = {name: [] for name in centres}
    min_voxels: list[int] = []
    for case in held_out_cases:
        raw, body, voxel_volume = maps(case)
        min_voxels.append(min_region_voxels(min_region_volume_mm3, voxel_volume))
        for name, (centre, scale) in centres.items():
            cal = SignalCalibration(centre, scale, 1.0)
            z_maps[name].append(cal.standardise(name, raw[name], body))
    unknown = sorted(set(rule) - set(SIGNALS))
    if unknown:
        raise AuditInputError(
            f"unknown signals {unknown} in the rule", path="rule", fix=f"choose from {SIGNALS}"
        )
    in_rule = [name for name in centres if name in rule] or list(centres)
    # below it the reference's flags are the two models' ordinary disagreement, whatever the
    # few calibration volumes say
    minimum = {"reference": ref_settings.min_threshold}
    per_signal_target = target_false_flags_per_volume / len(in_rule)
    signals: dict[str, SignalCalibration] = {}
    achieved: dict[str, float] = {}
    for name, (centre, scale) in centres.items():
        share = per_signal_target if name in in_rule else target_false_flags_per_volume
        lowest = minimum.get(name, 0.0)
        threshold, rate = choose_threshold(
            z_maps[name], min_voxels=min_voxels, target_per_volume=share, minimum=lowest
        )
        source = (
            f"{len(fit_cases)} lesion-free fit volumes (centre, scale), "
            f"{len(held_out_cases)} held-out lesion-free volumes (threshold)"
        )
        if lowest > 0 and threshold == lowest:
            source += (
                f", raised to the smallest shortfall flagged ({ref_settings.min_shortfall_hu:g}"
                f" HU above {ref_settings.soft_tissue_hu:g} HU)"
            )
        signals[name] = SignalCalibration(
            centre=centre,
            scale=scale,
            threshold=threshold,
            source=source,
            in_rule=name in in_rule,
        )
        achieved[name] = rate
    return AuditCalibration(
        signals=signals,
        min_region_volume_mm3=min_region_volume_mm3,
        target_false_flags_per_volume=target_false_flags_per_volume,
        info={
            "fit_volumes": [c.name for c in fit_cases],
            "held_out_volumes": [c.name for c in held_out_cases],
            "per_signal_target": per_signal_target,
            "rule": in_rule,
            "held_out_false_flags_per_volume": achieved,
            **({"reference_settings": ref_settings.to_dict()} if reference is not None else {}),
        },
    )


def train_audit_model(
    cases: Sequence[LesionFreeCase],
    out_dir: str | os.PathLike[str],
    *,
    held_out_fraction: float = 0.5,
    novelty_options: dict[str, Any] | None = None,
    epistemic: EpistemicSD | None = None,
    learned_consistency: LearnedConsistencySettings | LearnedConsistencyModel | None = None,
    reference: ReferenceSource | None = None,
    reference_name: str | None = None,
    sct_source: str = "CT",
    target_false_flags_per_volume: float = DEFAULT_TARGET_FALSE_FLAGS,
    min_region_volume_mm3: float = DEFAULT_MIN_REGION_VOLUME_MM3,
    merge_gap_mm: float = DEFAULT_MERGE_GAP_MM,
    rule: Sequence[str] = DEFAULT_RULE,
    settings: ConsistencySettings | None = None,
    reference_settings: ReferenceSettings | None = None,
    overwrite: bool = False,
    progress: TrainingProgress | None = None,
) -> Path:
    """Train the novelty model (and the learned consistency network), calibrate the signals.

    Writes the audit model folder (see the module docstring).

    Parameters
    ----------
    cases : sequence of LesionFreeCase
        Lesion-free MRI with the sCTs of the synthesis model to be audited, or CTs (at least
        2).
    out_dir : path
        The audit model folder (written atomically: it appears complete or not at all).
    held_out_fraction : float
        Share of the cases kept for the thresholds (the rest fits the novelty model and the
        standardisation).
    novelty_options : dict, optional
        Keyword arguments of :func:`~synthct.audit.novelty.fit_novelty_model`.
    epistemic : EpistemicSD, optional
        Calibrate the epistemic signal too (our synthesis model).
    learned_consistency : LearnedConsistencySettings or LearnedConsistencyModel, optional
        Settings: train the learned consistency network on the fit cases; a model: use it as
        trained (it must have been trained on other cases than the held-out ones). Either is
        calibrated and written to the folder; no learned signal when omitted.
    reference : ReferenceSource, optional
        Calibrate the reference disagreement signal (:mod:`synthct.audit.reference`).
    reference_name : str, optional
        The reference model's name or folder, recorded so that ``synthct audit`` uses it.
    sct_source : str
        Where the cases' sCTs come from (e.g. ``"synthesis model product_like"``), recorded.
    target_false_flags_per_volume, min_region_volume_mm3 : float
        The false-flag target and the smallest region.
    merge_gap_mm : float
        Flagged components at most this far apart are one region (recorded; the thresholds
        are chosen on unmerged components).
    rule : sequence of str
        Signals that flag (the others are reported only).
    settings : ConsistencySettings, optional
        Consistency settings (recorded with the calibration).
    reference_settings : ReferenceSettings, optional
        Reference disagreement settings (recorded with the calibration; ``synthct audit``
        uses them with its thresholds).
    overwrite : bool
        Replace an existing folder.
    progress : callable, optional
        ``progress(step, done, total)``.
    """
    if len(cases) < 2:
        raise AuditInputError(
            f"training an audit model needs at least 2 lesion-free cases, got {len(cases)}",
            fix="generate more lesion-free phantom cases (synthct phantom --no-lesions)",
        )
    if not 0 < held_out_fraction < 1:
        raise AuditInputError(
            f"held_out_fraction must lie in (0, 1), got {held_out_fraction}",
            path="held_out_fraction",
        )
    n_held = min(max(1, round(len(cases) * held_out_fraction)), len(cases) - 1)
    fit, held = list(cases[: len(cases) - n_held]), list(cases[len(cases) - n_held :])
    novelty = fit_novelty_model(
        [c.mr for c in fit], sources=[c.name for c in fit], **(novelty_options or {})
    )
    if progress is not None:
        progress("novelty model", 0, len(cases))
    learned = None
    if isinstance(learned_consistency, LearnedConsistencyModel):
        learned = learned_consistency
    elif learned_consistency is not None:
        learned = fit_learned_consistency(
            [(c.mr, c.sct) for c in fit],
            settings=learned_consistency,
            sources=[c.name for c in fit],
            sct_source=sct_source,
            progress=progress,
        )
    calibration = fit_calibration(
        fit,
        held,
        novelty=novelty,
        epistemic=epistemic,
        learned=learned,
        reference=reference,
        target_false_flags_per_volume=target_false_flags_per_volume,
        min_region_volume_mm3=min_region_volume_mm3,
        rule=rule,
        settings=settings,
        reference_settings=reference_settings,
        progress=progress,
    )
    info = dict(calibration.info)
    info["domain"] = AuditDomain.of_volumes([c.mr for c in cases]).to_dict()
    info["consistency_settings"] = (settings or ConsistencySettings()).to_dict()
    info["sct_source"] = sct_source
    if reference is not None:
        info["reference_model"] = reference_name
    calibration = AuditCalibration(
        calibration.signals,
        calibration.min_region_volume_mm3,
        calibration.target_false_flags_per_volume,
        merge_gap_mm=merge_gap_mm,
        info=info,
    )
    return save_audit_model(
        out_dir, calibration=calibration, novelty=novelty, learned=learned, overwrite=overwrite
    )


def phantom_lesion_free_cases(
    cohort_dirs: Sequence[str | os.PathLike[str]],
) -> list[LesionFreeCase]:
    """The lesion-free cases of cohort folders or manifests, each with its CT as the correct sCT.

    Each entry is a phantom cohort folder (its ``manifest.csv``) or any manifest file read by
    :func:`synthct.manifest.read_manifest` (CSV, YAML or JSON; columns ``ct`` and ``mr``, or
    their old names). A case is lesion-free when its ``n_lesions`` is 0, or, without that
    column, when it has no lesion points and its lesion label map (if any) is empty.
    """
    from synthct.manifest import read_manifest

    out = []
    for entry in cohort_dirs:
        manifest = read_manifest(entry)
        name = Path(entry).name if Path(entry).is_dir() else Path(entry).parent.name
        for case in manifest:
            if not _lesion_free(case):
                continue
            out.append(LesionFreeCase(case.mr(), case.ct(), f"{name}/{case.case_id}"))
            case.unload()
    if not out:
        raise AuditInputError(
            "no lesion-free case in the cohort(s)",
            path=", ".join(str(c) for c in cohort_dirs),
            fix="generate a lesion-free cohort (synthct phantom --no-lesions)",
        )
    return out


def _lesion_free(case: Case) -> bool:
    n = case.meta.get("n_lesions")
    if n is not None:
        try:
            return int(n) == 0
        except (TypeError, ValueError) as exc:
            raise AuditInputError(
                f"case {case.case_id!r}: n_lesions {n!r} is not a whole number",
                path=case.case_id,
                fix="write the number of lesions, or leave the cell empty",
            ) from exc
    if case.meta.get("lesion_points"):
        return False
    for role in ("lesion_labels", "lesion_labels_ct"):
        if case.has(role) and bool(np.any(case.labels(role).array)):
            return False
    return True
