"""One validation case: read, check, align, image metrics, lesion metrics, rows for the tables.

:func:`validate_case` runs the whole chain for a :class:`~synthct.validation.manifest.CaseSpec`
and never raises for bad input: a case that fails returns a :class:`CaseResult` with status
``"failed"``, the reason (naming the case, the column and the file, and the fix) and no
results. :func:`compute_case` is the same chain raising :class:`CaseFailure`.

Stages (each timed in ``CaseResult.timings_s``):

1. ``read``: CT and sCT as CT kinds with the Hounsfield check (raw stored values 0..4095 or an
   MR passed as CT fail here), the MRI (one file/folder, or one file per echo stacked in the
   order given), the lesion label map and the body mask as label maps; NaN voxels fail.
2. ``body_mask``: the given mask, or one derived from the CT
   (:func:`~synthct.imaging.body_mask.body_mask_from_ct`).
3. ``align``: sCT/MRI/mask onto the CT grid, registered first with ``register``
   (:mod:`synthct.imaging.alignment`).
3b. ``alignment_check``: is the sCT aligned with the CT (NCC, bone Dice, best small shift;
   :mod:`synthct.imaging.alignment_check`)? A misaligned sCT stops the case with the
   measured offset (``alignment="check"``), is registered and checked again
   (``alignment="auto"``), or is measured with a warning (``alignment="warn"``); with
   ``alignment="shift"`` only a found shift or mirror stops it, and a poor match alone is
   measured as a poor sCT, with a warning. A lesion is called missed on the sCT
   (``sct_missed``) only when the check passed (or found the pose in no doubt).
4. ``image_metrics``: inside the body mask intersected with the sCT's field of view.
5. ``lesion_metrics``: every lesion, on CT and sCT in the same ROI, with the MRI when given.
6. ``audit`` (with ``ValidationSettings.audit``): the omission audit of the sCT with the MRI,
   each flag compared with the CT and the lesions (:mod:`synthct.validation.audit_column`; the
   audit itself runs in the stage the caller passes, :mod:`synthct.workflows.audit_column`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import ConfigDict, Field

from synthct.errors import SynthctError, VolumeKindError
from synthct.imaging.alignment import (
    DEFAULT_MIN_OVERLAP_FRACTION,
    Alignment,
    RegistrationReport,
    RegistrationSettings,
    align_sct,
    label_map_on_grid,
    mri_on_grid,
)
from synthct.imaging.alignment_check import (
    AlignmentCheck,
    AlignmentCheckSettings,
    check_alignment,
)
from synthct.imaging.body_mask import DEFAULT_BODY_THRESHOLD_HU, axial_axis, body_mask_from_ct
from synthct.imaging.image_metrics import (
    BONE_THRESHOLDS_HU,
    HU_RANGE,
    TISSUE_EDGES_HU,
    image_metrics,
)
from synthct.settings import SettingsBase
from synthct.validation.audit_column import (
    AuditColumns,
    AuditColumnSettings,
    CaseAuditor,
    empty_audit_columns,
)
from synthct.validation.lesion_metrics import LesionMasks, LesionResult, measure_lesions
from synthct.validation.lesion_settings import LesionSettings
from synthct.validation.manifest import CaseSpec
from synthct.volume import CTVolume, LabelMap, MRProtocol, MultiEchoMR, SyntheticCT, Volume

__all__ = [
    "CaseFailure",
    "CaseResult",
    "ValidationSettings",
    "compute_case",
    "validate_case",
]

CaseStatus = Literal["ok", "failed"]
AlignmentMode = Literal["check", "auto", "warn", "shift"]
#: ``alignment_action`` of a case measured under ``alignment="shift"`` despite a poor match.
POOR_MATCH_ACTION = "measured_poor_match"
#: At most this many threads for the MS-SSIM filters of one case (5 filters run in parallel).
MAX_METRIC_THREADS = 5


class ValidationSettings(SettingsBase):
    """Every setting of a validation run (immutable; written to ``settings.json``).

    Parameters
    ----------
    rigid_registration : bool
        Register each sCT rigidly to its CT before comparing (``--register``).
    alignment : {"check", "auto", "warn", "shift"}
        What a failed alignment check does (``--align``): stop the case with the measured
        offset, register the sCT and check again, measure anyway with a warning (lesions
        are then not called missed), or stop only on a shift or mirror (``shift``: a poor
        match alone is measured as a poor sCT, with a warning; ``synthct evaluate``'s default
        for a model's own sCTs).
    alignment_check : AlignmentCheckSettings
        Thresholds of the alignment check.
    registration : RegistrationSettings
        The registration method's parameters.
    lesion : LesionSettings
        Rules and thresholds of the lesion metrics.
    check_hu : bool
        Reject a CT or sCT whose values do not look like Hounsfield units.
    body_threshold_hu : float
        Threshold of the body mask derived from the CT.
    hu_range_hu, tissue_edges_hu, bone_thresholds_hu
        Options of :func:`~synthct.imaging.image_metrics.image_metrics`.
    min_overlap_fraction : float
        Without registration, grids whose fields of view overlap less are different frames.
    metric_threads : int, optional
        Threads of the MS-SSIM filters within one case; ``None``: the machine's cores (the
        cohort runner gives its Dask workers 1). Not part of the fingerprint.
    audit : AuditColumnSettings, optional
        Run the omission audit on each case with an MRI and report, per lesion, whether it
        was flagged and, per flag, whether the CT confirms a discrepancy
        (:mod:`synthct.validation.audit_column`). ``None``: no audit.
    keep_identifiers : bool
        Copy the CT's patient and study identifiers into the DICOM SEG and SR as they are
        (``--keep-identifiers``); by default they are de-identified (:mod:`synthct.io.deidentify`).
    """

    model_config = ConfigDict(allow_inf_nan=False)

    rigid_registration: bool = False
    alignment: AlignmentMode = "check"
    alignment_check: AlignmentCheckSettings = Field(default_factory=AlignmentCheckSettings)
    registration: RegistrationSettings = Field(default_factory=RegistrationSettings)
    lesion: LesionSettings = Field(default_factory=LesionSettings)
    check_hu: bool = True
    body_threshold_hu: float = DEFAULT_BODY_THRESHOLD_HU
    hu_range_hu: tuple[float, float] = HU_RANGE
    tissue_edges_hu: tuple[float, float] = TISSUE_EDGES_HU
    bone_thresholds_hu: tuple[float, ...] = BONE_THRESHOLDS_HU
    min_overlap_fraction: float = Field(default=DEFAULT_MIN_OVERLAP_FRACTION, ge=0, le=1)
    metric_threads: int | None = Field(default=None, ge=1)
    audit: AuditColumnSettings | None = None
    keep_identifiers: bool = False

    def fingerprint(self) -> str:
        """SHA-256 of the settings that change results (threads excluded)."""
        data = self.model_dump(mode="json", exclude={"metric_threads"})
        data["registration"].pop("threads", None)
        if data["audit"] is None:
            del data["audit"]  # runs without the audit keep the fingerprints they had
        text = json.dumps(data, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """Values plus the lesion and registration rules in words."""
        out = self.model_dump(mode="json")
        out["lesion"] = self.lesion.to_dict()
        out["registration"]["rules"] = self.registration.rules()
        out["alignment_check"]["rules"] = self.alignment_check.rules()
        if self.audit is not None:
            out["audit"]["rules"] = self.audit.rules()
        return out


class CaseFailure(SynthctError):
    """A case that could not be validated; names the case, the stage, the column and the file."""

    def __init__(
        self,
        case_id: str,
        problem: str,
        *,
        stage: str,
        column: str | None = None,
        path: str | None = None,
        fix: str | None = None,
        error_type: str = "SynthctError",
    ) -> None:
        self.case_id = case_id
        self.stage = stage
        self.column = column
        self.error_type = error_type
        super().__init__(problem, path=path, fix=fix)

    def _compose(self) -> str:
        where = f"case {self.case_id!r}"
        if self.column:
            where += f", {self.column}"
        if self.path and self.path != self.column:
            where += f" ({self.path})"
        text = f"{where}: {self.problem}"
        if self.fix:
            text += f"\n  Fix: {self.fix}"
        return text


class MisalignmentFailure(CaseFailure):
    """A case stopped because its sCT is probably misaligned with its CT (see ``check``)."""

    def __init__(
        self,
        case_id: str,
        check: AlignmentCheck,
        *,
        registration: RegistrationReport | None,
        path: str,
    ):
        self.check = check
        if registration is not None:
            r = registration
            problem = (
                f"after rigid registration (rotation {r.rotation_angle_deg:.1f} deg, "
                f"translation {np.linalg.norm(r.translation_mm):.1f} mm, NCC "
                f"{r.ncc_before:.3f} -> {r.ncc_after:.3f}) the sCT is still misaligned with the "
                "CT: "
            )
            fix = (
                "check that the sCT belongs to this CT and is not mirrored (a flip cannot be "
                "undone by a rigid registration) and that its header (spacing, orientation) is "
                "right; or measure anyway with --align warn (no lesion is then called missed)"
            )
        else:
            problem = "the sCT is probably misaligned with the CT: "
            fix = (
                "register it (synthct validate --register, or --align auto to register only "
                "misaligned cases) or correct its header (origin, spacing, orientation); "
                "--align warn measures anyway (no lesion is then called missed)"
            )
        super().__init__(
            case_id,
            problem + check.describe(),
            stage="alignment_check",
            column="sct",
            path=path,
            fix=fix,
            error_type="MisalignmentError",
        )


@dataclass
class CaseResult:
    """The outcome of one case.

    ``case_row`` and ``lesion_rows`` are flat dicts with units in the keys (``case_id`` and
    ``lesion_id`` included); they are empty for a failed case, whose ``error`` says why.
    ``lesion_masks`` (one per lesion row, same order) are kept in memory for figures and are
    not part of :meth:`to_json`. ``alignment_check`` holds the alignment figures and verdict
    (:meth:`AlignmentCheck.to_dict`), also for a case stopped by it. ``audit_flags`` holds the
    rows of the flag table (:data:`~synthct.validation.audit_column.AUDIT_FLAG_COLUMNS`) when
    the case was audited, else ``None``.
    """

    case_id: str
    status: CaseStatus
    error: str | None = None
    error_type: str | None = None
    error_stage: str | None = None
    error_column: str | None = None
    error_file: str | None = None
    case_row: dict[str, Any] = field(default_factory=dict)
    lesion_rows: list[dict[str, Any]] = field(default_factory=list)
    image_metrics_conventions: dict[str, Any] = field(default_factory=dict)
    registration_transform: dict[str, Any] | None = None
    alignment_check: dict[str, Any] | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    audit_flags: list[dict[str, Any]] | None = None
    lesion_masks: list[LesionMasks] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        """True when the case was validated."""
        return self.status == "ok"

    def failure_row(self) -> dict[str, Any]:
        """The row of ``failures.csv``."""
        return {
            "case_id": self.case_id,
            "stage": self.error_stage,
            "column": self.error_column,
            "file": self.error_file,
            "error_type": self.error_type,
            "reason": self.error,
        }

    def to_json(self) -> dict[str, Any]:
        """Everything but the masks (floats may be NaN/inf: encode before writing JSON)."""
        return {
            "case_id": self.case_id,
            "status": self.status,
            "error": self.error,
            "error_type": self.error_type,
            "error_stage": self.error_stage,
            "error_column": self.error_column,
            "error_file": self.error_file,
            "case_row": self.case_row,
            "lesion_rows": self.lesion_rows,
            "image_metrics_conventions": self.image_metrics_conventions,
            "registration_transform": self.registration_transform,
            "alignment_check": self.alignment_check,
            "inputs": self.inputs,
            "timings_s": self.timings_s,
            "figures": self.figures,
            "warnings": self.warnings,
            "audit_flags": self.audit_flags,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CaseResult:
        """Inverse of :meth:`to_json` (without masks)."""
        names = [k for k in cls.__dataclass_fields__ if k != "lesion_masks"]
        fields: dict[str, Any] = {k: data.get(k) for k in names}
        for key, empty in (
            ("case_row", {}),
            ("lesion_rows", []),
            ("image_metrics_conventions", {}),
            ("inputs", {}),
            ("timings_s", {}),
            ("figures", []),
            ("warnings", []),
        ):
            if fields[key] is None:
                fields[key] = empty
        return cls(**fields)


# -- reading -------------------------------------------------------------------------------------
class _Stages:
    """Times each stage and turns its errors into :class:`CaseFailure`."""

    def __init__(self, case_id: str) -> None:
        self.case_id = case_id
        self.timings_s: dict[str, float] = {}

    @contextmanager
    def stage(
        self, name: str, *, column: str | None = None, path: Path | str | None = None
    ) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        except CaseFailure:
            raise
        except SynthctError as exc:
            chosen = str(path) if path is not None else exc.path
            problem = exc.problem
            if exc.path and chosen and exc.path != chosen:
                if exc.path.startswith(chosen):
                    chosen = exc.path  # a file inside the folder, or the image's sidecar
                else:
                    problem = f"{exc.path}: {problem}"  # e.g. "lesion 3: ..."
            raise CaseFailure(
                self.case_id,
                problem,
                stage=name,
                column=column,
                path=chosen,
                fix=exc.fix,
                error_type=type(exc).__name__,
            ) from exc
        finally:
            self.timings_s[name] = self.timings_s.get(name, 0.0) + time.perf_counter() - start


def _require_exists(case: CaseSpec) -> None:
    for column, path in case.missing_inputs():
        raise CaseFailure(
            case.case_id,
            "no such file or folder" if not path.exists() else "cannot be read (permissions)",
            stage="read",
            column=column,
            path=str(path),
            fix="correct the path in the manifest (relative to the manifest's folder) or copy "
            "the file there",
            error_type="ReadError",
        )


def _read_mri(paths: tuple[Path, ...]) -> MultiEchoMR:
    from synthct.io import read_volume

    volumes = [read_volume(p, kind="mr", check_hu=False) for p in paths]
    mrs = [v for v in volumes if isinstance(v, MultiEchoMR)]
    if len(mrs) == 1:
        return mrs[0]
    first = mrs[0]
    for other in mrs:
        if other.n_echoes != 1:
            raise VolumeKindError(
                f"holds {other.n_echoes} echoes; several MRI files must hold one echo each",
                path=other.source,
                fix="give one multi-echo file, or one single-echo file per echo",
            )
        if other is not first:
            first.require_same_geometry(
                other, names=(f"echo 1 ({first.source})", str(other.source))
            )
    arrays = np.concatenate([np.asarray(m.array) for m in mrs], axis=0)
    tes = [m.echo_times_ms for m in mrs]
    protocol = None
    if all(t is not None for t in tes):
        base = mrs[0].protocol
        assert base is not None
        protocol = MRProtocol(
            echo_times_ms=tuple(float(t[0]) for t in tes if t is not None),
            repetition_time_ms=base.repetition_time_ms,
            flip_angle_deg=base.flip_angle_deg,
            field_strength_t=base.field_strength_t,
        )
    return MultiEchoMR(arrays, first.affine, protocol=protocol, source=";".join(map(str, paths)))


def _as_ct(volume: Volume, what: str) -> CTVolume:
    if not isinstance(volume, CTVolume):
        raise VolumeKindError(f"the {what} was not read as a CT", path=volume.source)
    return volume


def _as_label(volume: Volume) -> LabelMap:
    if not isinstance(volume, LabelMap):
        raise VolumeKindError("was not read as a label map", path=volume.source)
    return volume


# -- the chain -----------------------------------------------------------------------------------
def _read_case(
    case: CaseSpec, stages: _Stages, s: ValidationSettings
) -> tuple[CTVolume, CTVolume, MultiEchoMR | None, LabelMap | None, LabelMap | None]:
    """CT, sCT, MRI, lesion label map and body mask of ``case`` (the last three if given)."""
    from synthct.io import read_volume

    with stages.stage("read"):
        _require_exists(case)
    with stages.stage("read", column="ct", path=case.ct):
        ct = _as_ct(read_volume(case.ct, kind="ct", check_hu=s.check_hu), "CT")
    with stages.stage("read", column="sct", path=case.sct):
        sct = _as_ct(read_volume(case.sct, kind="sct", check_hu=s.check_hu), "sCT")
    mri = None
    if case.mri:
        with stages.stage("read", column="mri", path=";".join(map(str, case.mri))):
            mri = _read_mri(case.mri)
    lesion_map = None
    if case.lesions is not None:
        with stages.stage("read", column="lesions", path=case.lesions):
            lesion_map = _as_label(read_volume(case.lesions, kind="label", check_hu=False))
    given_mask = None
    if case.body_mask is not None:
        with stages.stage("read", column="body_mask", path=case.body_mask):
            given_mask = _as_label(read_volume(case.body_mask, kind="label", check_hu=False))
    return ct, sct, mri, lesion_map, given_mask


def _body_mask(
    case: CaseSpec,
    stages: _Stages,
    s: ValidationSettings,
    ct: CTVolume,
    given_mask: LabelMap | None,
) -> tuple[LabelMap | None, NDArray[np.bool_]]:
    """The given body mask on the CT grid (if any) and the body: that mask, or the CT's."""
    if given_mask is not None:
        with stages.stage("body_mask", column="body_mask", path=case.body_mask):
            given_mask = label_map_on_grid(
                given_mask, ct.geometry, min_overlap_fraction=s.min_overlap_fraction
            )
            return given_mask, np.asarray(given_mask.array) > 0
    with stages.stage("body_mask", column="ct", path=case.ct):
        return None, body_mask_from_ct(
            ct.array, threshold_hu=s.body_threshold_hu, axial_axis=axial_axis(ct)
        )


def _lesion_outputs(
    case: CaseSpec,
    stages: _Stages,
    s: ValidationSettings,
    figure_dir: Path | None,
    ct: CTVolume,
    aligned: Alignment,
    lesions: list[LesionResult],
    warnings: list[str],
) -> list[str]:
    """Each lesion's figure and, for a DICOM CT, the DICOM SEG and SR; their files.

    What cannot be drawn or written is appended to ``warnings``.
    """
    figures: list[str] = []
    if figure_dir is None or not lesions:
        return figures
    start = time.perf_counter()
    figures, figure_warnings = _write_figures(figure_dir, ct, aligned, lesions)
    warnings += figure_warnings
    stages.timings_s["figures"] = time.perf_counter() - start
    if Path(case.ct).is_dir():
        start = time.perf_counter()
        dicom_files, dicom_warnings = _write_dicom_outputs(
            figure_dir, Path(case.ct), ct, lesions, deidentify=not s.keep_identifiers
        )
        figures += dicom_files
        warnings += dicom_warnings
        stages.timings_s["dicom_outputs"] = time.perf_counter() - start
    return figures


def _image_metrics(
    case: CaseSpec,
    stages: _Stages,
    s: ValidationSettings,
    ct: CTVolume,
    aligned: Alignment,
    inside: NDArray[np.bool_],
    given_mask: LabelMap | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The image metrics of the aligned sCT inside the body, and their conventions."""
    mask_column = "body_mask" if given_mask is not None else "ct"
    with stages.stage(
        "image_metrics", column=mask_column, path=case.body_mask if given_mask else case.ct
    ):
        metrics = image_metrics(
            ct,
            aligned.sct,
            body_mask=LabelMap(inside.astype(np.uint8), ct.affine),
            hu_range=s.hu_range_hu,
            tissue_edges_hu=s.tissue_edges_hu,
            bone_thresholds_hu=s.bone_thresholds_hu,
            workers=s.metric_threads or min(os.cpu_count() or 1, MAX_METRIC_THREADS),
        ).to_dict()
    conventions = metrics.pop("conventions")
    conventions["mask"] = _mask_rule(s, case.body_mask, aligned)
    return metrics, conventions


def _measure_lesions(
    case: CaseSpec,
    stages: _Stages,
    s: ValidationSettings,
    ct: CTVolume,
    aligned: Alignment,
    lesion_map: LabelMap | None,
    warnings: list[str],
) -> list[LesionResult]:
    """Each lesion of the label map or the points on CT, sCT and MRI (none without either)."""
    if lesion_map is None and not case.lesion_points:
        return []
    column = "lesions" if lesion_map is not None else "lesion_points"
    where = str(case.lesions) if case.lesions is not None else "lesion_points"
    with stages.stage("lesion_metrics", column=column, path=where):
        annotations = lesion_map if lesion_map is not None else case.points()
        return measure_lesions(
            ct, aligned.sct, annotations, mri=aligned.mri, settings=s.lesion, warnings=warnings
        )


def _out_of_domain(sct: CTVolume) -> list[str]:
    """The synthesis model's domain warnings that travel with an sCT (repeated by validation)."""
    return list(sct.out_of_domain) if isinstance(sct, SyntheticCT) else []


def compute_case(
    case: CaseSpec,
    settings: ValidationSettings | None = None,
    *,
    figure_dir: Path | None = None,
    auditor: CaseAuditor | None = None,
) -> CaseResult:
    """Validate one case; raise :class:`CaseFailure` on bad input.

    Parameters
    ----------
    case : CaseSpec
        The case (absolute paths).
    settings : ValidationSettings, optional
        Defaults when omitted.
    figure_dir : Path, optional
        Write each lesion's figure (CT | sCT | MRI, :mod:`synthct.validation.lesion_figure`) there
        as ``lesion-<lesion_id>.png`` while the volumes are in memory. A figure that cannot be
        drawn is a warning, not a failure; without the report package no figure is drawn.
    auditor : CaseAuditor, optional
        The audit stage, needed when ``settings.audit`` is set
        (:func:`synthct.workflows.audit_column.audit_case_columns`).

    Returns
    -------
    CaseResult
        Status ``"ok"``, the case row, one lesion row per lesion and the lesion masks.
    """
    s = settings or ValidationSettings()
    require_auditor(s, auditor)
    stages = _Stages(case.case_id)
    ct, sct, mri, lesion_map, given_mask = _read_case(case, stages, s)
    given_mask, body = _body_mask(case, stages, s, ct, given_mask)
    aligned, inside, check, action = _checked_alignment(case, stages, s, ct, sct, mri, body)

    metrics, conventions = _image_metrics(case, stages, s, ct, aligned, inside, given_mask)
    lesion_warnings: list[str] = []  # an empty lesion is a warning on that lesion only
    lesions = _measure_lesions(case, stages, s, ct, aligned, lesion_map, lesion_warnings)
    audit = None
    if s.audit is not None:
        assert auditor is not None  # checked above
        audit = _audit(case, stages, s.audit, auditor, mri, sct, ct, aligned, lesions)

    warnings = [f"sCT made outside its model's training domain: {w}" for w in _out_of_domain(sct)]
    warnings += lesion_warnings
    figures = _lesion_outputs(case, stages, s, figure_dir, ct, aligned, lesions, warnings)
    if not check.passed:
        warnings.append(
            f"alignment check failed, measured anyway (--align warn): {check.describe()}; no "
            "lesion is called missed on the sCT"
        )
    elif action == POOR_MATCH_ACTION:
        warnings.append(
            f"the sCT matches the CT poorly ({check.reason}; MAE {check.mae_hu:.1f} HU) but no "
            "shift or mirror brings it into a match with the CT: measured as a poor sCT, not a "
            "misaligned one (--align shift)"
        )
    lesion_rows = [_lesion_row(case.case_id, lesion, aligned, check) for lesion in lesions]
    case_row = _case_row(case, ct, metrics, lesions, aligned, given_mask is not None)
    case_row.update(check.to_dict(), alignment_action=action)
    case_row["n_missed_sct"] = (
        sum(bool(row["sct_missed"]) for row in lesion_rows) if check.passed else None
    )
    case_row["sct_out_of_domain"] = "; ".join(_out_of_domain(sct))
    if audit is not None:
        for row, columns in zip(lesion_rows, audit.lesion_columns, strict=True):
            row.update(columns)
        case_row.update(audit.case_columns)
        warnings += audit.warnings
    return CaseResult(
        case_id=case.case_id,
        status="ok",
        case_row=case_row,
        lesion_rows=lesion_rows,
        image_metrics_conventions=conventions,
        registration_transform=(
            None if aligned.registration is None else aligned.registration.transform_dict()
        ),
        alignment_check={**check.to_dict(), "alignment_action": action},
        inputs=_inputs(case, ct, sct, mri),
        timings_s=stages.timings_s,
        figures=figures,
        warnings=warnings,
        audit_flags=None if audit is None else audit.flags,
        lesion_masks=[lesion.masks for lesion in lesions if lesion.masks is not None],
    )


def _align(
    case: CaseSpec,
    stages: _Stages,
    s: ValidationSettings,
    ct: CTVolume,
    sct: CTVolume,
    mri: Volume | None,
    body: NDArray[np.bool_],
    *,
    register: bool,
) -> tuple[Alignment, NDArray[np.bool_]]:
    """The sCT and MRI on the CT grid, and where they are compared (body within the sCT)."""
    with stages.stage("align", column="sct", path=case.sct):
        aligned = align_sct(
            ct,
            sct,
            body=body,
            register=register,
            registration=s.registration,
            min_overlap_fraction=s.min_overlap_fraction,
        )
    if mri is not None:
        with stages.stage("align", column="mri", path=mri.source):
            mri_aligned = mri_on_grid(
                mri,
                ct.geometry,
                transform=aligned.transform,
                min_overlap_fraction=s.min_overlap_fraction,
            )
        aligned = replace(aligned, mri=mri_aligned)
    inside = body if aligned.sct_fov is None else body & aligned.sct_fov
    return aligned, inside


def _check(
    ct: CTVolume, aligned: Alignment, inside: NDArray[np.bool_], settings: AlignmentCheckSettings
) -> AlignmentCheck:
    return check_alignment(
        ct.array,
        aligned.sct.array,
        inside,
        affine=ct.affine,
        sct_fov=aligned.sct_fov,
        settings=settings,
    )


def _checked_alignment(
    case: CaseSpec,
    stages: _Stages,
    s: ValidationSettings,
    ct: CTVolume,
    sct: CTVolume,
    mri: Volume | None,
    body: NDArray[np.bool_],
) -> tuple[Alignment, NDArray[np.bool_], AlignmentCheck, str]:
    """Align, check, register when asked (``alignment="auto"``); stop a misaligned case.

    Returns the alignment, the comparison mask, the check and the action taken
    (``"none"``, ``"registered"`` with ``--register``, ``"registered_after_check"``, or
    :data:`POOR_MATCH_ACTION` when ``alignment="shift"`` measures a poor but unmoved sCT).
    """
    aligned, inside = _align(case, stages, s, ct, sct, mri, body, register=s.rigid_registration)
    with stages.stage("alignment_check", column="sct", path=case.sct):
        check = _check(ct, aligned, inside, s.alignment_check)
    action = "registered" if s.rigid_registration else "none"
    if not check.passed and s.alignment == "auto" and not s.rigid_registration:
        aligned, inside = _align(case, stages, s, ct, sct, mri, body, register=True)
        with stages.stage("alignment_check", column="sct", path=case.sct):
            check = _check(ct, aligned, inside, s.alignment_check)
        action = "registered_after_check"
    if not check.passed and s.alignment == "shift" and not check.displaced:
        # The pose is not in doubt (no shift, no mirror): a poor sCT's figures are the result.
        check = replace(check, passed=True)
        action = POOR_MATCH_ACTION
    if not check.passed and s.alignment != "warn":
        raise MisalignmentFailure(
            case.case_id, check, registration=aligned.registration, path=str(case.sct)
        )
    return aligned, inside, check, action


def _audit(
    case: CaseSpec,
    stages: _Stages,
    settings: AuditColumnSettings,
    auditor: CaseAuditor,
    mri: MultiEchoMR | None,
    sct: CTVolume,
    ct: CTVolume,
    aligned: Alignment,
    lesions: list[LesionResult],
) -> AuditColumns:
    """The audit stage: empty columns (and a warning) without an MRI."""
    if mri is None:
        return empty_audit_columns(len(lesions), "the case has no MRI (manifest column mri)")
    # errors name the audit stage and the MRI (a model or sCT problem names its own file)
    with stages.stage("audit", column="mri", path=mri.source):
        return auditor(case.case_id, mri, sct, ct, aligned, lesions, settings)


def require_auditor(settings: ValidationSettings, auditor: CaseAuditor | None) -> None:
    """Raise when the settings ask for the audit column and no audit stage is given.

    Raises
    ------
    SynthctError
        ``settings.audit`` is set and ``auditor`` is None.
    """
    if settings.audit is not None and auditor is None:
        raise SynthctError(
            "the settings ask for the audit column but no audit stage was given",
            path="ValidationSettings.audit",
            fix="pass auditor=synthct.workflows.audit_column.audit_case_columns, or leave the "
            "audit out of the settings",
        )


def validate_case(
    case: CaseSpec,
    settings: ValidationSettings | None = None,
    *,
    figure_dir: Path | None = None,
    auditor: CaseAuditor | None = None,
) -> CaseResult:
    """Validate one case; bad input gives a failed :class:`CaseResult` with the reason.

    Unexpected errors (bugs) are caught too, with their type and traceback's last line, so
    that a cohort run finishes the other cases. Parameters as :func:`compute_case`.
    """
    require_auditor(settings or ValidationSettings(), auditor)
    start = time.perf_counter()
    try:
        return compute_case(case, settings, figure_dir=figure_dir, auditor=auditor)
    except CaseFailure as exc:
        check = exc.check.to_dict() if isinstance(exc, MisalignmentFailure) else None
        return CaseResult(
            case_id=case.case_id,
            status="failed",
            alignment_check=check,
            error=str(exc),
            error_type=exc.error_type,
            error_stage=exc.stage,
            error_column=exc.column,
            error_file=exc.path,
            inputs={"case": case.describe()},
            timings_s={"total": time.perf_counter() - start},
        )
    except Exception as exc:  # a bug: record it, let the other cases finish
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return CaseResult(
            case_id=case.case_id,
            status="failed",
            error=f"case {case.case_id!r}: internal error ({last}); please report it with the "
            "case's files",
            error_type=type(exc).__name__,
            error_stage="internal",
            inputs={"case": case.describe()},
            timings_s={"total": time.perf_counter() - start},
        )


#: DICOM outputs written next to the figures when the CT is a DICOM series.
SEG_FILE = "lesions.seg.dcm"
SR_FILE = "lesions.sr.dcm"


def _write_dicom_outputs(
    folder: Path,
    ct_folder: Path,
    ct: CTVolume,
    lesions: list[LesionResult],
    *,
    deidentify: bool = True,
) -> tuple[list[str], list[str]]:
    """DICOM SEG of the lesion ROIs and a TID 1500 SR of their measurements.

    Both reference the input CT series; problems (e.g. a de-identified series without UIDs)
    become warnings, since the tables hold the same results.
    """
    from synthct.validation.dicom_seg_sr import (
        masks_from_results,
        write_lesion_seg,
        write_lesion_sr,
    )

    folder.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    try:
        masks = masks_from_results(lesions, ct.spatial_shape)
        seg_path = None
        if masks:
            seg_path = write_lesion_seg(
                ct_folder, masks, folder / SEG_FILE, affine=ct.affine, deidentify=deidentify
            )
            written.append(seg_path.name)
        sr_path = write_lesion_sr(
            ct_folder, lesions, folder / SR_FILE, seg=seg_path, deidentify=deidentify
        )
        written.append(sr_path.name)
    except SynthctError as exc:
        return written, [f"DICOM SEG/SR not written: {exc.problem}"]
    return written, []


def _write_figures(
    folder: Path, ct: CTVolume, aligned: Alignment, lesions: list[LesionResult]
) -> tuple[list[str], list[str]]:
    """Each lesion's figure, ``lesion-<id>.png``; problems become warnings."""
    try:
        from synthct.validation.lesion_figure import lesion_figure
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("synthct"):
            return [], []
        raise
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("lesion-*.png"):
        stale.unlink()
    written, warnings = [], []
    for lesion in lesions:
        name = f"lesion-{lesion.lesion_id}.png"
        try:
            lesion_figure(folder / name, ct=ct, sct=aligned.sct, lesion=lesion, mri=aligned.mri)
            written.append(name)
        except (SynthctError, ValueError, RuntimeError) as exc:
            warnings.append(f"lesion {lesion.lesion_id}: no figure ({exc})")
    return written, warnings


# -- rows ----------------------------------------------------------------------------------------
def _mask_rule(s: ValidationSettings, given: Path | None, aligned: Alignment) -> str:
    rule = (
        f"given ({given}), non-zero voxels (nearest neighbour onto the CT grid)"
        if given is not None
        else f"derived from the CT: >= {s.body_threshold_hu:g} HU, largest 6-connected "
        "component, 3D then axial 2D hole filling"
    )
    if aligned.sct_fov is not None:
        rule += "; intersected with the sCT's field of view on the CT grid"
    return rule


def _fov_fraction(masks: LesionMasks | None, aligned: Alignment) -> float:
    if masks is None or aligned.sct_fov is None:
        return 1.0
    roi = masks.roi
    return float(np.count_nonzero(aligned.sct_fov[masks.box][roi])) / max(int(roi.sum()), 1)


def _lesion_row(
    case_id: str, lesion: LesionResult, aligned: Alignment, check: AlignmentCheck
) -> dict[str, Any]:
    row = {"case_id": case_id, **lesion.to_dict()}
    row["roi_in_sct_fov_fraction"] = _fov_fraction(lesion.masks, aligned)
    # cut by the CT's edge, or partly outside the sCT's field of view: sizes are lower bounds
    row["truncated"] = bool(lesion.truncated or row["roi_in_sct_fov_fraction"] < 1.0)
    row["alignment_passed"] = check.passed
    # missed: on CT, not on sCT, and only when the sCT is known to be aligned
    row["sct_missed"] = (lesion.ct.visible and not lesion.sct.visible) if check.passed else None
    return row


def _case_row(
    case: CaseSpec,
    ct: CTVolume,
    metrics: dict[str, Any],
    lesions: list[LesionResult],
    aligned: Alignment,
    mask_given: bool,
) -> dict[str, Any]:
    spacing = ct.spacing_mm
    with_mri = [lesion for lesion in lesions if lesion.mri_visible is not None]
    row: dict[str, Any] = {
        "case_id": case.case_id,
        "status": "ok",
        "notes": case.notes,
        "n_lesions": len(lesions),
        "n_visible_ct": sum(lesion.ct.visible for lesion in lesions),
        "n_visible_sct": sum(lesion.sct.visible for lesion in lesions),
        "n_visible_mri": sum(bool(lesion.mri_visible) for lesion in with_mri) if with_mri else None,
        **metrics,
        "body_mask_given": mask_given,
        **aligned.describe(),
        "ct_shape": "x".join(str(n) for n in ct.spatial_shape),
        "ct_spacing_i_mm": spacing[0],
        "ct_spacing_j_mm": spacing[1],
        "ct_spacing_k_mm": spacing[2],
        "ct_orientation": ct.orientation_code,
    }
    return row


def _inputs(case: CaseSpec, ct: CTVolume, sct: CTVolume, mri: Volume | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "case": case.describe(),
        "ct_geometry": ct.geometry.to_dict(),
        "sct_geometry": sct.geometry.to_dict(),
    }
    if mri is not None:
        out["mri_geometry"] = mri.geometry.to_dict()
        out["mri_echo_times_ms"] = (
            list(mri.echo_times_ms)
            if isinstance(mri, MultiEchoMR) and mri.echo_times_ms is not None
            else None
        )
    return out
