"""The omission audit as a column of the validation: was each lesion flagged, is each flag real.

``synthct audit`` flags, from the MRI and the sCT alone, regions where the sCT probably omits
what the MRI shows. A validation case has the CT as well, so both questions can be answered:

* for each lesion: did the audit flag it (``audit_flagged``, ``audit_score``,
  ``audit_signals`` in the lesion table);
* for each flag: is there a true discrepancy between sCT and CT there (the flag table
  ``audit_flags``, and ``audit_n_flags`` / ``audit_n_true_discrepancies`` /
  ``audit_n_false_flags`` in the case table).

Method
------
The audit runs on the MRI's own grid exactly as ``synthct audit`` does
(:func:`synthct.audit.pipeline.run_audit`, the sCT resampled onto the MRI grid); its region
label map is then brought onto the CT grid the way the MRI is (nearest neighbour, through the
sCT's registration when there is one). A flag *matches* a lesion when it has a voxel in the
lesion's ROI dilated by ``match_margin_mm`` (Euclidean, in mm). A flag is a *true
discrepancy* when the mean ``|sCT - CT|`` inside it (on the CT grid, inside the sCT's field of
view) is at least ``discrepancy_hu``, or when it matches a lesion the CT shows and the sCT does
not (an omitted lesion); it is a *false flag* otherwise. A flag that falls outside the CT's
grid cannot be checked: its ``true_discrepancy`` is empty and it is counted in neither.

The audit model (novelty model, calibration, learned consistency network) is loaded once per
process (:func:`load_column_audit_model`), not once per case. The MRI consistency signal is always
computed, so the MRI needs its protocol (echo times, TR, flip angle, field strength; from the
DICOM headers or the JSON sidecars); without it, or without an MRI, the case is validated with
empty audit columns and a warning saying why. The epistemic signal needs the synthesis model
that made the sCT and is not computed here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from pydantic import ConfigDict, Field
from scipy import ndimage

from synthct.imaging.alignment import Alignment, mri_on_grid
from synthct.settings import SettingsBase
from synthct.validation.lesion_metrics import LesionResult
from synthct.volume import CTVolume, MultiEchoMR

if TYPE_CHECKING:
    from synthct.audit.model import AuditModel
    from synthct.audit.pipeline import AuditResult
    from synthct.audit.reference import ReferenceSource

__all__ = [
    "AUDIT_CASE_COLUMNS",
    "AUDIT_FLAG_COLUMNS",
    "AUDIT_LESION_COLUMNS",
    "AUDIT_SKIP",
    "AuditColumnSettings",
    "AuditColumns",
    "ColumnAuditModel",
    "audit_case",
    "audit_summary",
    "check_audit_settings",
    "empty_audit_columns",
    "load_column_audit_model",
    "run_case_audit",
]

#: How the warning of a case the audit skipped begins.
AUDIT_SKIP = "audit not run: "
#: Columns the audit adds to the lesion table.
AUDIT_LESION_COLUMNS = ("audit_flagged", "audit_score", "audit_signals")
#: Columns the audit adds to the case table.
AUDIT_CASE_COLUMNS = (
    "audit_n_flags",
    "audit_n_true_discrepancies",
    "audit_n_false_flags",
    "audit_signals_used",
)
#: Columns of the flag table (``audit_flags.csv``), one row per flagged region.
AUDIT_FLAG_COLUMNS = (
    "case_id",
    "flag_id",
    "centre_l_mm",
    "centre_p_mm",
    "centre_s_mm",
    "size_i_mm",
    "size_j_mm",
    "size_k_mm",
    "volume_mm3",
    "peak_score",
    "signals",
    "direction",
    "matched_lesion_ids",
    "ct_voxels",
    "ct_mean_hu",
    "sct_mean_hu",
    "mean_abs_diff_hu",
    "true_discrepancy",
    "discrepancy_reason",
)


class AuditColumnSettings(SettingsBase):
    """Settings of the audit column of ``synthct validate`` (see the module docstring).

    Parameters
    ----------
    model : str, optional
        Audit model folder (``novelty.npz`` + ``calibration.json``, and the learned consistency
        network when trained), as written by ``synthct audit-train``, or the shipped model's
        name ``"audit"`` (what ``synthct validate --audit`` uses when none is given). ``None``:
        the default calibration with the MRI consistency signal only.
    reference_model : str, optional
        Lesion-aware reference synthesis model (shipped name or folder) for the reference
        disagreement signal. ``None``: the one the audit model was calibrated with, if any.
    reference : bool
        Use the reference disagreement signal when a reference is named (``False``: never,
        e.g. for MRI outside the reference model's training domain).
    match_margin_mm : float
        A flag matches a lesion when it overlaps the lesion's ROI dilated by this, mm.
    discrepancy_hu : float
        A flag is a true discrepancy when the mean ``|sCT - CT|`` inside it is at least this,
        HU (or when it matches a lesion the CT shows and the sCT does not).
    """

    model_config = ConfigDict(allow_inf_nan=False)

    model: str | None = None
    reference_model: str | None = None
    reference: bool = True
    match_margin_mm: float = Field(default=2.0, ge=0)
    discrepancy_hu: float = Field(default=100.0, gt=0)

    def rules(self) -> str:
        """The matching and true-discrepancy rules in words, for ``settings.json``."""
        return (
            "audit (synthct.audit.pipeline.run_audit) on the MRI grid with "
            f"{'the audit model ' + self.model if self.model else 'the default calibration'}; "
            "region labels onto the CT grid by nearest neighbour (through the sCT's "
            f"registration if any); a flag matches a lesion when it overlaps the lesion ROI "
            f"dilated by {self.match_margin_mm:g} mm; a flag is a true discrepancy when mean "
            f"|sCT - CT| inside it (CT grid, sCT field of view) >= {self.discrepancy_hu:g} HU "
            "or it matches a lesion visible on CT and not on sCT, a false flag otherwise"
        )


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


@dataclass
class AuditColumns:
    """The audit's contribution to one case.

    Attributes
    ----------
    lesion_columns : list of dict
        Per lesion (same order as the lesions): :data:`AUDIT_LESION_COLUMNS`.
    case_columns : dict
        :data:`AUDIT_CASE_COLUMNS`.
    flags : list of dict or None
        The flag table's rows (:data:`AUDIT_FLAG_COLUMNS`); ``None`` when the case was not
        audited.
    warnings : list of str
        Why the case was not audited, or flags that could not be checked.
    """

    lesion_columns: list[dict[str, Any]]
    case_columns: dict[str, Any]
    flags: list[dict[str, Any]] | None
    warnings: list[str] = field(default_factory=list)


def empty_audit_columns(n_lesions: int, reason: str) -> AuditColumns:
    """Empty audit columns for a case that could not be audited, with the warning."""
    return AuditColumns(
        lesion_columns=[dict.fromkeys(AUDIT_LESION_COLUMNS) for _ in range(n_lesions)],
        case_columns=dict.fromkeys(AUDIT_CASE_COLUMNS),
        flags=None,
        warnings=[f"{AUDIT_SKIP}{reason}"],
    )


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
        n = int(np.count_nonzero(inside))
        ct_in, sct_in = ct_hu[box][inside], sct_hu[box][inside]
        matched = [
            les.lesion_id
            for les, ids in zip(lesions, lesion_flags, strict=True)
            if region.id in ids
        ]
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
            warnings.append(
                f"audit flag {region.id} lies outside the CT (or the sCT's field of view on "
                "the CT grid): not compared with CT"
            )
        centre = region.centre_lps_mm
        flags.append(
            {
                "case_id": case_id,
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
                "ct_voxels": n,
                "ct_mean_hu": ct_mean,
                "sct_mean_hu": sct_mean,
                "mean_abs_diff_hu": mad,
                "true_discrepancy": true,
                "discrepancy_reason": "; ".join(reasons),
            }
        )
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
    case_columns = {
        "audit_n_flags": len(flags),
        "audit_n_true_discrepancies": sum(f["true_discrepancy"] is True for f in flags),
        "audit_n_false_flags": sum(f["true_discrepancy"] is False for f in flags),
        "audit_signals_used": "+".join(result.signals),
    }
    return AuditColumns(lesion_columns, case_columns, flags, warnings)


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


def audit_summary(
    lesion_rows: Sequence[dict[str, Any]], case_rows: Sequence[dict[str, Any]]
) -> dict[str, Any] | None:
    """Cohort totals of the audit column, or None when the run had no audit column.

    Cases audited and not (no MRI or protocol); lesions flagged (all, and those visible on CT
    but not on sCT: the omissions the audit is meant to find); flags, true discrepancies and
    false flags, in total and per audited case.
    """
    with_column = [row for row in case_rows if "audit_n_flags" in row]
    if not with_column:
        return None
    audited = [row for row in with_column if row["audit_n_flags"] is not None]
    lesions = [row for row in lesion_rows if row.get("audit_flagged") is not None]
    omitted = [row for row in lesions if row.get("ct_visible") and row.get("sct_visible") is False]
    n_false = sum(int(row["audit_n_false_flags"]) for row in audited)
    return {
        "n_cases_audited": len(audited),
        "n_cases_not_audited": len(with_column) - len(audited),
        "lesions_flagged": {
            "flagged": sum(bool(row["audit_flagged"]) for row in lesions),
            "n": len(lesions),
        },
        "omitted_lesions_flagged": {
            "flagged": sum(bool(row["audit_flagged"]) for row in omitted),
            "n": len(omitted),
            "definition": "lesions visible on CT and not on sCT",
        },
        "n_flags": sum(int(row["audit_n_flags"]) for row in audited),
        "n_true_discrepancies": sum(int(row["audit_n_true_discrepancies"]) for row in audited),
        "n_false_flags": n_false,
        "false_flags_per_case": n_false / len(audited) if audited else None,
    }


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
