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

This module holds the settings, the columns and the cohort totals; validation does not import
the audit, so the audit itself runs in the stage the caller passes (a :class:`CaseAuditor`,
:func:`synthct.workflows.audit_column.audit_case_columns`), which loads the audit model once per
process (:func:`~synthct.workflows.audit_column.load_column_audit_model`), not once per case.
The MRI consistency signal is always computed, so the MRI needs its protocol (echo times,
TR, flip angle, field strength; from the DICOM headers or the JSON sidecars); without it, or
without an MRI, the case is validated with empty audit columns and a warning saying why. The
epistemic signal needs the synthesis model that made the sCT and is not computed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ConfigDict, Field

from synthct.imaging.alignment import Alignment
from synthct.settings import SettingsBase
from synthct.validation.lesion_metrics import LesionResult
from synthct.volume import CTVolume, MultiEchoMR

__all__ = [
    "AUDIT_CASE_COLUMNS",
    "AUDIT_FLAG_COLUMNS",
    "AUDIT_LESION_COLUMNS",
    "AUDIT_SKIP",
    "AuditColumnSettings",
    "AuditColumns",
    "CaseAuditor",
    "audit_summary",
    "empty_audit_columns",
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
    "audit_refused",
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
    domain_check : bool
        Refuse the signals for MRI outside the audit model's calibrated domain
        (:mod:`synthct.audit.domain`; the ``audit_refused`` column says why); ``False``
        computes them anyway.
    """

    model_config = ConfigDict(allow_inf_nan=False)

    model: str | None = None
    reference_model: str | None = None
    reference: bool = True
    match_margin_mm: float = Field(default=2.0, ge=0)
    discrepancy_hu: float = Field(default=100.0, gt=0)
    domain_check: bool = True

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


class CaseAuditor(Protocol):
    """The audit stage of a validation case (:mod:`synthct.workflows.audit_column` has it).

    Validation does not import the audit (the layer contract in ``.importlinter``): the
    orchestration above both passes this to :func:`~synthct.validation.runner.run_validation`.
    """

    def __call__(
        self,
        case_id: str,
        mri: MultiEchoMR,
        sct: CTVolume,
        ct: CTVolume,
        aligned: Alignment,
        lesions: Sequence[LesionResult],
        settings: AuditColumnSettings,
    ) -> AuditColumns:
        """The audit's columns for one case with an MRI (empty, with a warning, if it cannot
        run)."""
        ...
