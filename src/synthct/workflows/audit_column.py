"""The omission audit as a column of the validation: it runs the audit and matches its flags.

Validation and the audit are products of their own (neither imports the other); this
orchestration runs the audit on a validation case and compares each flag with the CT and the
lesions. :func:`audit_case_columns` is the :class:`~synthct.validation.audit_column.CaseAuditor`
that ``synthct validate --audit`` passes to :func:`synthct.validation.runner.run_validation`;
the method and the columns are described in :mod:`synthct.validation.audit_column`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from synthct.imaging.alignment import Alignment, mri_on_grid
from synthct.validation.audit_column import (
    AuditColumns,
    AuditColumnSettings,
    empty_audit_columns,
)
from synthct.validation.lesion_metrics import LesionResult
from synthct.volume import CTVolume, MultiEchoMR

if TYPE_CHECKING:
    from synthct.audit.model import AuditModel
    from synthct.audit.pipeline import AuditResult
    from synthct.audit.reference import ReferenceSource

__all__ = [
    "ColumnAuditModel",
    "audit_case",
    "audit_case_columns",
    "check_audit_settings",
    "load_column_audit_model",
    "run_case_audit",
]

#: Where `synthct validate` reads the MRI protocol the audit needs.
PROTOCOL_FIX = (
    "give the protocol in the MRI's JSON sidecar (<image>.json beside each echo file: "
    "echo_times_ms, repetition_time_ms, flip_angle_deg, field_strength_t, or the BIDS keys "
    "EchoTime, RepetitionTime in s, FlipAngle, MagneticFieldStrength) or as DICOM headers"
)


def audit_case_columns(
    case_id: str,
    mri: MultiEchoMR,
    sct: CTVolume,
    ct: CTVolume,
    aligned: Alignment,
    lesions: Sequence[LesionResult],
    settings: AuditColumnSettings,
) -> AuditColumns:
    """The audit stage of one validation case (a :class:`CaseAuditor`).

    Without the MRI protocol the consistency signal cannot run: the case gets empty audit
    columns and a warning saying what to supply; the validation stands without the audit.
    """
    from synthct.audit.errors import AuditInputError
    from synthct.audit.inputs import signal_protocol

    try:
        signal_protocol(mri)
    except AuditInputError as exc:
        # the error's own fix names `synthct audit` options, which validate does not have
        return empty_audit_columns(len(lesions), f"{exc.problem} (fix: {PROTOCOL_FIX})")
    result = run_case_audit(mri, sct, settings)
    return audit_case(case_id, result, ct, aligned, lesions, settings)


@dataclass(frozen=True, eq=False)
class ColumnAuditModel:
    """What the audit column needs besides MRI and sCT, loaded once per process.

    Attributes
    ----------
    model : AuditModel
        The audit model (:func:`synthct.audit.model.load_audit_model`).
    reference : ReferenceSource or None
        Reference disagreement source.
    reference_name : str or None
        The reference model's name or folder.
    """

    model: AuditModel
    reference: ReferenceSource | None
    reference_name: str | None


@lru_cache(maxsize=4)
def load_column_audit_model(
    model: str | None, reference_model: str | None = None, reference: bool = True
) -> ColumnAuditModel:
    """Load the audit model and its reference (cached per process: Dask workers load it once).

    Parameters
    ----------
    model : str, optional
        Audit model folder, ``novelty.npz`` or the shipped model's name
        (:data:`~synthct.audit.model.SHIPPED_AUDIT_MODEL`); ``None`` for the default
        calibration.
    reference_model : str, optional
        Reference model name or folder (default: the calibration's).
    reference : bool
        ``False``: no reference signal whatever the calibration names.

    Raises
    ------
    AuditModelError
        Missing or malformed files.
    """
    from synthct.audit.model import load_audit_model
    from synthct.audit.reference import calibrated_reference

    # as `synthct audit` without --all-signals: novelty outside the rule would only report
    loaded = load_audit_model(model)
    source, name = calibrated_reference(loaded.calibration, reference_model, enabled=reference)
    return ColumnAuditModel(loaded, source, name)


def run_case_audit(mri: MultiEchoMR, sct: CTVolume, settings: AuditColumnSettings) -> AuditResult:
    """Run the audit of ``sct`` with ``mri`` on the MRI grid, with the cached audit model."""
    from synthct.audit.pipeline import run_audit

    column = load_column_audit_model(settings.model, settings.reference_model, settings.reference)
    return run_audit(
        mri,
        sct,
        novelty=column.model.novelty,
        learned=column.model.learned,
        reference=column.reference,
        calibration=column.model.calibration,
        domain_check=settings.domain_check,
    )


def audit_case(
    case_id: str,
    result: AuditResult,
    ct: CTVolume,
    aligned: Alignment,
    lesions: Sequence[LesionResult],
    settings: AuditColumnSettings,
) -> AuditColumns:
    """Compare an audit's flags with the CT and the lesions of one case.

    Parameters
    ----------
    case_id : str
        The case, for the flag rows.
    result : AuditResult
        The audit on the MRI grid (:func:`run_case_audit`).
    ct : CTVolume
        The reference CT.
    aligned : Alignment
        The sCT on the CT grid and the registration that brought it there.
    lesions : sequence of LesionResult
        The measured lesions (with their masks).
    settings : AuditColumnSettings
        Matching margin and discrepancy threshold.

    Returns
    -------
    AuditColumns
    """
    labels_ct = mri_on_grid(result.region_labels, ct.geometry, transform=aligned.transform)
    labels = np.asarray(labels_ct.array)
    spacing = ct.spacing_mm
    lesion_flags = [
        _flags_touching(labels, lesion, spacing, settings.match_margin_mm) for lesion in lesions
    ]
    # a lesion the CT shows and the sCT does not: what the audit is meant to find
    omitted = {
        lesion.lesion_id for lesion in lesions if lesion.ct.visible and not lesion.sct.visible
    }
    fov = aligned.sct_fov
    ct_hu = np.asarray(ct.array, dtype=np.float32)
    sct_hu = np.asarray(aligned.sct.array, dtype=np.float32)
    flags: list[dict[str, Any]] = []
    warnings: list[str] = [
        f"audit reference model outside its training domain: {w} (its flags may be false; "
        "--no-audit-reference leaves it out)"
        for w in result.info.get("reference", {}).get("out_of_domain", [])
    ]
    boxes = ndimage.find_objects(labels)  # work in each region's box, not the whole CT grid
    for region in result.regions:
        box = boxes[region.id - 1] if region.id <= len(boxes) else None
        if box is None:
            box, inside = (slice(0, 0),) * 3, np.zeros((0, 0, 0), dtype=bool)
        else:
            inside = labels[box] == region.id
            if fov is not None:
                inside &= fov[box]
        matched = [
            les.lesion_id
            for les, ids in zip(lesions, lesion_flags, strict=True)
            if region.id in ids
        ]
        compared = _compare_with_ct(
            region.id, ct_hu[box][inside], sct_hu[box][inside], matched, omitted, settings
        )
        if compared["true_discrepancy"] is None:
            warnings.append(
                f"audit flag {region.id} lies outside the CT (or the sCT's field of view on "
                "the CT grid): not compared with CT"
            )
        flags.append({"case_id": case_id, **_region_columns(region, matched), **compared})
    lesion_columns = _lesion_columns(result, lesion_flags)
    case_columns = {
        "audit_n_flags": len(flags),
        "audit_n_true_discrepancies": sum(f["true_discrepancy"] is True for f in flags),
        "audit_n_false_flags": sum(f["true_discrepancy"] is False for f in flags),
        "audit_signals_used": "+".join(result.signals),
        # outside the calibrated domain the signals are refused: not audited, not "no flag"
        "audit_refused": "; ".join(
            f"{name}: {why}"
            for name, why in result.info.get("domain", {}).get("refused_signals", {}).items()
        ),
    }
    return AuditColumns(lesion_columns, case_columns, flags, warnings)


def _region_columns(region: Any, matched: list[int]) -> dict[str, Any]:
    """Where the flagged region lies, its size, score and signals, and the lesions it touches."""
    centre = region.centre_lps_mm
    return {
        "flag_id": region.id,
        "centre_l_mm": centre[0],
        "centre_p_mm": centre[1],
        "centre_s_mm": centre[2],
        "size_i_mm": region.size_mm[0],
        "size_j_mm": region.size_mm[1],
        "size_k_mm": region.size_mm[2],
        "volume_mm3": region.volume_mm3,
        "peak_score": region.peak_score,
        "signals": "+".join(region.signals_fired),
        "direction": region.direction,
        "matched_lesion_ids": ";".join(str(m) for m in matched),
    }


def _compare_with_ct(
    region_id: int,
    ct_in: NDArray[np.float32],
    sct_in: NDArray[np.float32],
    matched: list[int],
    omitted: set[int],
    settings: AuditColumnSettings,
) -> dict[str, Any]:
    """The CT's verdict on one flag: HU inside it and whether it marks a true discrepancy.

    ``true_discrepancy`` is None when the flag has no CT voxel and no omitted lesion.
    """
    n = int(ct_in.size)
    ct_mean = float(ct_in.mean()) if n else None
    sct_mean = float(sct_in.mean()) if n else None
    mad = float(np.abs(sct_in - ct_in).mean()) if n else None
    reasons = []
    if any(m in omitted for m in matched):
        reasons.append("matches a lesion visible on CT and not on sCT")
    if mad is not None and mad >= settings.discrepancy_hu:
        reasons.append(f"mean |sCT - CT| >= {settings.discrepancy_hu:g} HU")
    true: bool | None = bool(reasons)
    if n == 0 and not reasons:
        true = None
    return {
        "ct_voxels": n,
        "ct_mean_hu": ct_mean,
        "sct_mean_hu": sct_mean,
        "mean_abs_diff_hu": mad,
        "true_discrepancy": true,
        "discrepancy_reason": "; ".join(reasons),
    }


def _lesion_columns(result: AuditResult, lesion_flags: list[set[int]]) -> list[dict[str, Any]]:
    """Per lesion: flagged, the highest score of the flags touching it, and their signals."""
    by_id = {region.id: region for region in result.regions}
    lesion_columns = []
    for ids in lesion_flags:
        hits = [by_id[i] for i in sorted(ids) if i in by_id]
        signals = [s for s in result.signals if any(s in r.signals_fired for r in hits)]
        lesion_columns.append(
            {
                "audit_flagged": bool(hits),
                "audit_score": max((r.peak_score for r in hits), default=None),
                "audit_signals": "+".join(signals),
            }
        )
    return lesion_columns


def _flags_touching(
    labels: NDArray[Any], lesion: LesionResult, spacing: Sequence[float], margin_mm: float
) -> set[int]:
    """Region ids with a voxel in the lesion's ROI dilated by ``margin_mm`` (Euclidean)."""
    masks = lesion.masks
    if masks is None or not masks.roi.any():
        return set()
    pad = [math.ceil(margin_mm / s) for s in spacing]
    lo = [max(0, sl.start - p) for sl, p in zip(masks.box, pad, strict=True)]
    hi = [min(n, sl.stop + p) for sl, n, p in zip(masks.box, labels.shape, pad, strict=True)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    roi = np.zeros([b - a for a, b in zip(lo, hi, strict=True)], dtype=bool)
    inner = tuple(slice(sl.start - a, sl.stop - a) for sl, a in zip(masks.box, lo, strict=True))
    roi[inner] = masks.roi
    if margin_mm > 0:
        roi = ndimage.distance_transform_edt(~roi, sampling=list(spacing)) <= margin_mm
    found = np.unique(labels[box][roi])
    return {int(v) for v in found if v != 0}


def check_audit_settings(settings: AuditColumnSettings) -> None:
    """Fail early, before any case runs, on an audit model or reference that cannot be used.

    Reads the novelty model and the calibration (small files); the reference model is only
    looked up (a shipped name or an existing folder), since loading it takes long and each
    worker loads it anyway.

    Raises
    ------
    SynthctError
        An :class:`~synthct.audit.errors.AuditModelError` naming the file, or a reference
        model that is neither a shipped name nor a folder.
    """
    from synthct.audit.errors import AuditModelError
    from synthct.audit.model import load_audit_model
    from synthct.synthesis.shipped import SHIPPED_MODELS

    load_audit_model(settings.model, learned=False)
    name = settings.reference_model
    if name is not None and name not in SHIPPED_MODELS and not Path(name).is_dir():
        raise AuditModelError(
            "the reference model is neither a shipped model nor a folder",
            path=name,
            fix=f"name a shipped model ({', '.join(SHIPPED_MODELS)}) or a model folder "
            "written by `synthct train`",
        )
