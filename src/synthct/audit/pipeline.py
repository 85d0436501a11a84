"""The audit of one sCT with its MRI: signals, flag map and flagged regions.

:func:`run_audit` brings the sCT onto the MRI grid (:mod:`synthct.audit.inputs`), computes
each available signal on the MRI grid (MRI consistency needs only the MRI and the sCT, so it
works on any sCT; learned consistency needs a learned sCT-to-MRI model, trained on the sCTs
of the synthesis model that made the audited sCT; novelty needs a novelty model; epistemic
uncertainty needs our synthesis model or its SD map), standardises and combines them
(:mod:`synthct.audit.combine`) and extracts the flagged regions
(:mod:`synthct.audit.regions`). Nothing is written here; see
:func:`synthct.audit.report.write_audit`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from synthct.audit.combine import (
    DEFAULT_CALIBRATION,
    SIGNALS,
    AuditCalibration,
    flag_score,
    min_region_voxels,
)
from synthct.audit.epistemic import EpistemicSD
from synthct.audit.errors import AuditInputError
from synthct.audit.inputs import sct_on_mri_grid
from synthct.audit.learned_consistency import LearnedConsistencyModel
from synthct.audit.mri_consistency import ConsistencySettings
from synthct.audit.novelty import NoveltyModel
from synthct.audit.reference import (
    ReferenceSettings,
    ReferenceSource,
    calibrated_reference_settings,
)
from synthct.audit.regions import FlaggedRegion, find_regions
from synthct.audit.signals import (
    AuditSignal,
    ConsistencySignal,
    EpistemicSignal,
    LearnedSignal,
    NoveltySignal,
    ReferenceSignal,
    SignalInputs,
)
from synthct.version import __version__
from synthct.volume import CTVolume, LabelMap, MultiEchoMR, ScalarVolume, SyntheticCT

#: Called as ``progress(step, done, total)`` after each step.
AuditProgress = Callable[[str, int, int], None]

#: What each signal measures, for reports.
SIGNAL_DESCRIPTIONS = {
    "consistency": "MRI consistency: standardised residual of the echoes against what the "
    "sCT's tissues would show (physics; negative = MRI darker than the sCT allows)",
    "learned_consistency": "learned MRI consistency: standardised residual of the echoes "
    "against what a network trained on lesion-free pairs of MRI and this synthesis model's sCT "
    "predicts from the sCT (negative = MRI darker than predicted)",
    "reference": "reference disagreement: HU by which the sCT falls short of a lesion-aware "
    "reference model's sCT of the same MRI, in reference epistemic SDs (positive = sCT less "
    "dense than the reference)",
    "novelty": "input novelty: patch PPCA negative log-likelihood against lesion-free training MRI",
    "epistemic": "epistemic uncertainty: MC-dropout / ensemble SD of our synthesis model (HU)",
}


@dataclass
class AuditResult:
    """Everything the audit found, on the MRI grid.

    Attributes
    ----------
    sct : SyntheticCT
        The sCT on the MRI grid.
    body : ndarray of bool
        Audited voxels (MRI body inside the sCT's field of view).
    signals : dict of str to ScalarVolume
        Raw map of each signal computed (consistency score, novelty, epistemic SD in HU).
    z : dict of str to ScalarVolume
        Standardised maps (``|z|`` for consistency).
    flag_score : ScalarVolume
        ``max_s z_s / t_s``; flagged where >= 1.
    region_labels : LabelMap
        Flagged region ids (1 = strongest).
    regions : list of FlaggedRegion
        Their descriptions.
    calibration : AuditCalibration
        The standardisation and thresholds used.
    info : dict
        Inputs, settings, noise estimates, timings.
    reference_sct : CTVolume, optional
        The reference model's sCT on the MRI grid, when the reference signal ran.
    """

    sct: SyntheticCT
    body: NDArray[np.bool_]
    signals: dict[str, ScalarVolume]
    z: dict[str, ScalarVolume]
    flag_score: ScalarVolume
    region_labels: LabelMap
    regions: list[FlaggedRegion]
    calibration: AuditCalibration
    info: dict[str, Any] = field(default_factory=dict)
    reference_sct: CTVolume | None = None

    @property
    def n_flags(self) -> int:
        """Number of flagged regions."""
        return len(self.regions)

    def to_dict(self) -> dict[str, Any]:
        """The JSON report: inputs, rule, signals and regions."""
        return {
            "synthct_version": __version__,
            "n_flagged_regions": self.n_flags,
            "signals_used": list(self.signals),
            "signal_descriptions": {k: SIGNAL_DESCRIPTIONS[k] for k in self.signals},
            "calibration": self.calibration.to_dict(),
            "regions": [r.to_dict() for r in self.regions],
            **self.info,
        }


def run_audit(
    mr: MultiEchoMR,
    sct: CTVolume,
    *,
    novelty: NoveltyModel | None = None,
    epistemic: EpistemicSD | None = None,
    learned: LearnedConsistencyModel | None = None,
    reference: ReferenceSource | None = None,
    calibration: AuditCalibration | None = None,
    settings: ConsistencySettings | None = None,
    reference_settings: ReferenceSettings | None = None,
    consistency: bool = True,
    register: bool = False,
    domain_check: bool = True,
    progress: AuditProgress | None = None,
) -> AuditResult:
    """Audit an sCT against its MRI without CT.

    Parameters
    ----------
    mr : MultiEchoMR
        Echo magnitudes; the consistency signal needs echo times, TR, flip angle and field
        strength (:func:`synthct.audit.inputs.with_protocol` fills them in).
    sct : CTVolume
        The sCT in HU (any grid of the MRI's frame; ours or a product's).
    novelty : NoveltyModel, optional
        Enables the input-novelty signal.
    epistemic : EpistemicSD, optional
        Enables the epistemic signal (our model, or a precomputed SD map).
    learned : LearnedConsistencyModel, optional
        Enables the learned consistency signal (:mod:`synthct.audit.learned_consistency`).
    reference : ReferenceSource, optional
        Enables the reference disagreement signal (:mod:`synthct.audit.reference`).
    calibration : AuditCalibration, optional
        Standardisation and thresholds; :data:`~synthct.audit.combine.DEFAULT_CALIBRATION`
        when omitted.
    settings : ConsistencySettings, optional
        Settings of the consistency signal (default: those recorded with ``calibration``).
    reference_settings : ReferenceSettings, optional
        Settings of the reference disagreement signal (default: those ``calibration`` was
        made with, :func:`~synthct.audit.reference.calibrated_reference_settings`).
    consistency : bool
        Compute the MRI consistency signal (needs the full protocol).
    register : bool
        Register the sCT to the MRI rigidly before resampling.
    domain_check : bool
        Compare the MRI with the domain recorded with ``calibration``
        (:mod:`synthct.audit.domain`) and refuse the signals that do not hold outside it
        (reported in ``info["domain"]`` and warned). ``False`` computes every signal anyway.
    progress : callable, optional
        ``progress(step, done, total)`` after each step.

    Raises
    ------
    AuditInputError
        No signal enabled, or the protocol lacks what the consistency signal needs.
    GeometryMismatchError
        The sCT does not overlap the MRI.
    """
    if not isinstance(mr, MultiEchoMR):
        raise AuditInputError(
            f"expected a multi-echo MRI, got a {getattr(mr, 'kind', type(mr).__name__)}",
            fix="read the echoes as MR (kind 'mr')",
        )
    optional = (novelty, epistemic, learned, reference)
    if not (consistency or any(x is not None for x in optional)):
        raise AuditInputError(
            "no signal to compute",
            fix="enable MRI consistency, or give a learned consistency model, a reference "
            "model, a novelty model or an epistemic source",
        )
    if consistency:
        from synthct.audit.inputs import signal_protocol

        signal_protocol(mr)  # fail before any work when the protocol is incomplete
    cal = calibration or DEFAULT_CALIBRATION
    # the thresholds hold for the settings the calibration was made with
    recorded = cal.info.get("consistency_settings")
    if settings is None and recorded is not None:
        settings = ConsistencySettings.from_dict(recorded)
    signals = audit_signals(
        consistency=consistency,
        settings=settings,
        learned=learned,
        reference=reference,
        reference_settings=reference_settings or calibrated_reference_settings(cal),
        novelty=novelty,
        epistemic=epistemic,
    )
    domain_info = _domain_report(mr, cal, [s.name for s in signals], check=domain_check)
    refused = domain_info.get("refused_signals", {})
    signals = [s for s in signals if s.name not in refused]
    steps = ["align", *(s.name for s in signals), "combine"]
    done = 0
    timings: dict[str, float] = {}

    def step(name: str, start: float) -> None:
        nonlocal done
        done += 1
        timings[name] = round(time.perf_counter() - start, 3)
        if progress is not None:
            progress(name, done, len(steps))

    t0 = time.perf_counter()
    aligned = sct_on_mri_grid(sct, mr, register=register)
    from synthct.synthesis.normalisation import body_mask_from_mri

    body_mr, _ = body_mask_from_mri(mr.array)
    body = body_mr & aligned.field_of_view
    if not body.any():
        raise AuditInputError(
            "the sCT's field of view holds no voxel of the MRI's body",
            path=sct.source,
            fix="check that the sCT belongs to this MRI",
        )
    step("align", t0)
    raw: dict[str, ScalarVolume] = {}
    info: dict[str, Any] = {"domain": domain_info}
    reference_sct: CTVolume | None = None
    inputs = SignalInputs(mr, aligned, body)
    for signal in signals:
        t0 = time.perf_counter()
        output = signal.compute(inputs)
        raw[signal.name] = output.map
        if output.info is not None:
            info[signal.name] = output.info
        if output.reference_sct is not None:
            reference_sct = output.reference_sct
        step(signal.name, t0)
    t0 = time.perf_counter()
    z = {name: cal.for_signal(name).standardise(name, v.array, body) for name, v in raw.items()}
    if z:
        score, ratios = flag_score(z, cal)
    else:  # every signal refused outside the calibrated domain: nothing can be flagged
        score, ratios = np.zeros(body.shape, dtype=np.float32), {}
    labels, regions = find_regions(
        score,
        ratios,
        mr.geometry,
        min_voxels=min_region_voxels(cal.min_region_volume_mm3, mr.geometry.voxel_volume_mm3),
        merge_gap_mm=cal.merge_gap_mm,
        consistency_sign=raw["consistency"].array if "consistency" in raw else None,
    )
    step("combine", t0)
    names = {r.id: f"flag {r.id}: {'+'.join(r.signals_fired)}" for r in regions}
    info.update(
        {
            "mri": {
                "source": mr.source,
                **mr.geometry.to_dict(),
                "protocol": None if mr.protocol is None else mr.protocol.to_dict(),
            },
            "sct": {
                "source": sct.source,
                "grid": sct.geometry.to_dict(),
                "resampled_to_mri_grid": aligned.resampled,
                "registered": aligned.registered,
                "field_of_view_overlap_fraction": aligned.overlap_fraction,
                # the synthesis model's domain warnings, repeated in every report of this sCT
                "out_of_domain": sct.out_of_domain if isinstance(sct, SyntheticCT) else [],
            },
            "audited_voxels": int(np.count_nonzero(body)),
            "timings_s": timings,
        }
    )
    return AuditResult(
        sct=aligned.sct,
        body=body,
        signals=raw,
        z={k: ScalarVolume(v, mr.affine) for k, v in z.items()},
        flag_score=ScalarVolume(score, mr.affine),
        region_labels=LabelMap(labels, mr.affine, label_names=names),
        regions=regions,
        calibration=cal,
        info=info,
        reference_sct=reference_sct,
    )


def _domain_report(
    mr: MultiEchoMR, calibration: AuditCalibration, names: list[str], *, check: bool
) -> dict[str, Any]:
    """The calibrated domain, the MRI's departures from it and the signals refused there."""
    from synthct.audit.domain import AuditDomain, refused_signals, warn_out_of_domain

    recorded = calibration.info.get("domain")
    if recorded is None:
        return {"calibrated": None, "note": "the calibration records no domain: not checked"}
    domain = AuditDomain.from_dict(recorded)
    departures = domain.departures(mr)
    refused = refused_signals(names, departures) if check else {}
    if check:
        warn_out_of_domain(departures, refused)
    return {
        "calibrated": domain.to_dict(),
        "checked": check,
        "audited": set(refused) != set(names),
        "departures": departures,
        "refused_signals": refused,
    }


def audit_signals(
    *,
    consistency: bool = True,
    settings: ConsistencySettings | None = None,
    learned: LearnedConsistencyModel | None = None,
    reference: ReferenceSource | None = None,
    reference_settings: ReferenceSettings | None = None,
    novelty: NoveltyModel | None = None,
    epistemic: EpistemicSD | None = None,
) -> list[AuditSignal]:
    """The signals that the given models enable, in :data:`SIGNALS` order (the report's)."""
    found: list[AuditSignal] = []
    if consistency:
        found.append(ConsistencySignal(settings))
    if learned is not None:
        found.append(LearnedSignal(learned))
    if reference is not None:
        found.append(ReferenceSignal(reference, reference_settings or ReferenceSettings()))
    if novelty is not None:
        found.append(NoveltySignal(novelty))
    if epistemic is not None:
        found.append(EpistemicSignal(epistemic))
    return sorted(found, key=lambda s: SIGNALS.index(s.name))
