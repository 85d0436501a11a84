"""The demo's audit stage: flag what the product-like sCTs omit, from MRI and sCT alone.

The audit model (novelty model + calibration) is the one shipped with synthct, trained on
lesion-free phantoms of the product-like model's domain; the epistemic signal is the
product-like model's own MC-dropout SD map written by the synthesis stage, and the reference
disagreement signal compares each product-like sCT with the lesion-aware model's sCT (and SD)
of the same MRI, also written by the synthesis stage. The phantom's
lesion truth is used only afterwards, to score each lesion as flagged or not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from synthct.demo.settings import DemoSettings
from synthct.phantom.cohort_files import PhantomCase
from synthct.validation.audit_column import AuditColumnSettings


def audit_cases(
    settings: DemoSettings,
    cases: list[PhantomCase],
    scts: dict[str, Path],
    step: Any,
    references: dict[str, Path] | None = None,
) -> dict[str, Any]:
    """Audit each case's product-like sCT; return rows per lesion and the false flags.

    ``references`` (the lesion-aware sCT of each case, with its epistemic SD map beside it)
    feed the reference disagreement signal when the audit model calibrated it.
    """
    from synthct.audit.combine import DEFAULT_CALIBRATION
    from synthct.audit.model import SHIPPED_AUDIT_MODEL, load_audit_model
    from synthct.audit.pipeline import run_audit
    from synthct.audit.report import write_audit
    from synthct.io import read_volume
    from synthct.volume import CTVolume

    # Signals outside the rule are only reported; the demo skips novelty then (~10 s a case)
    # to stay within its time budget. `synthct audit --all-signals` computes every signal.
    shipped = load_audit_model(SHIPPED_AUDIT_MODEL, learned=False)
    novelty = shipped.novelty
    calibration = shipped.calibration or DEFAULT_CALIBRATION
    rows: list[dict[str, Any]] = []
    figures: list[str] = []
    false_flags = 0
    confirmed_elsewhere = 0
    discrepancy_hu = AuditColumnSettings().discrepancy_hu  # validate --audit's rule
    for i, case in enumerate(cases):
        mr = case.mr()
        sct = read_volume(scts[case.case_id], kind="sct")
        assert isinstance(sct, CTVolume)
        epistemic, reference = _precomputed_signals(case.case_id, scts, references, calibration)
        result = run_audit(
            mr,
            sct,
            novelty=novelty,
            epistemic=epistemic,
            reference=reference,
            calibration=calibration,
        )
        out = settings.out_dir / "audit" / case.case_id
        out.parent.mkdir(parents=True, exist_ok=True)
        written = write_audit(result, mr, out, overwrite=True)
        figures += [str(p) for k, p in written.items() if str(p).endswith(".png")][:2]
        flags = result.region_labels.array
        hit_regions: set[int] = set()
        rows += _lesion_rows(settings, case, result, hit_regions)
        elsewhere = [r.id for r in result.regions if r.id not in hit_regions]
        false_flags += len(elsewhere)
        confirmed_elsewhere += _confirmed_by_ct(case, sct, flags, elsewhere, discrepancy_hu)
        step("audit", case.case_id, i + 1, len(cases))
    missed_rows = [r for r in rows if r["missed"]]
    flagged_missed = sum(r["flagged"] for r in missed_rows)
    return {
        "available": True,
        "rows": rows,
        "false_flags": false_flags,
        "flags_elsewhere_confirmed_by_ct": confirmed_elsewhere,
        "discrepancy_hu": discrepancy_hu,
        "figures": figures,
        "sentence": (
            f"The audit flagged {flagged_missed}/{len(missed_rows)} tumours that the CT shows and "
            f"the product-like sCT missed, with {false_flags} flag(s) elsewhere in "
            f"{len(cases)} volumes"
            + (
                f" ({confirmed_elsewhere} of them real sCT errors by CT: mean |sCT - CT| >= "
                f"{discrepancy_hu:g} HU)."
                if false_flags
                else "."
            )
        ),
        "rule": calibration.describe() if hasattr(calibration, "describe") else "",
        "audit_model": None if shipped.path is None else str(shipped.path),
    }


def _precomputed_signals(
    case_id: str,
    scts: dict[str, Path],
    references: dict[str, Path] | None,
    calibration: Any,
) -> tuple[Any, Any]:
    """The epistemic SD beside a case's sCT and, when calibrated, the reference sCT's signal."""
    from synthct.audit.epistemic import precomputed_epistemic
    from synthct.audit.reference import precomputed_reference
    from synthct.synthesis.result import map_paths

    epistemic_path = map_paths(scts[case_id])["epistemic_sd"]
    epistemic = precomputed_epistemic(epistemic_path) if epistemic_path.exists() else None
    reference = None
    if references is not None and "reference" in calibration.signals:
        ref_path = references[case_id]
        ref_sd = map_paths(ref_path)["epistemic_sd"]
        if ref_sd.exists():
            reference = precomputed_reference(ref_path, ref_sd, source="lesion_aware")
    return epistemic, reference


def _lesion_rows(
    settings: DemoSettings, case: PhantomCase, result: Any, hit_regions: set[int]
) -> list[dict[str, Any]]:
    """One row per lesion: missed as in the paper, flagged by the audit; regions hit added."""
    rows: list[dict[str, Any]] = []
    truth = case.lesion_labels(grid="mr")
    flags = result.region_labels.array
    validation_rows = _validation_rows(settings, case.case_id)
    for lesion in case.lesions():
        lesion_id = int(lesion.get("id", 1))
        mask = truth.array == lesion_id
        overlap = flags[mask]
        region_ids = sorted({int(r) for r in np.unique(overlap) if r != 0})
        hit_regions.update(region_ids)
        regions = [r for r in result.regions if r.id in region_ids]
        # missed as in the paper: the CT shows it and the sCT does not
        measured = validation_rows.get(lesion_id, {})
        ct_visible = bool(measured.get("ct_visible", False))
        missed = ct_visible and not measured.get("sct_visible", False)
        rows.append(
            {
                "case_id": case.case_id,
                "lesion_id": lesion_id,
                "ct_visible": ct_visible,
                "missed": missed,
                "flagged": bool(region_ids),
                "score": max((r.peak_score for r in regions), default=None),
                "signals": sorted({s for r in regions for s in r.signals_fired}),
            }
        )
    return rows


def _confirmed_by_ct(
    case: PhantomCase,
    sct: Any,
    regions: np.ndarray,
    region_ids: list[int],
    discrepancy_hu: float,
) -> int:
    """How many of the flagged regions the CT confirms as sCT errors (``validate --audit``'s
    rule: mean |sCT - CT| inside the region >= ``discrepancy_hu``)."""
    if not region_ids:
        return 0
    from synthct.imaging.alignment import mri_on_grid

    ct = np.asarray(mri_on_grid(case.ct(), sct.geometry).array, dtype=np.float32)
    error = np.abs(np.asarray(sct.array, dtype=np.float32) - ct)
    return sum(float(error[regions == r].mean()) >= discrepancy_hu for r in region_ids)


def _validation_rows(settings: DemoSettings, case_id: str) -> dict[int, dict[str, Any]]:
    """The product-like validation's lesion rows of one case, by lesion id."""
    import pandas as pd

    table = settings.out_dir / "validation" / "product_like" / "lesions.csv"
    if not table.exists():
        return {}
    lesions = pd.read_csv(table)
    lesions = lesions[lesions["case_id"] == case_id]
    return {int(r["lesion_id"]): r for r in lesions.to_dict(orient="records")}
