"""The omission audit on real-anatomy cases: targets flagged and false flags per lesion-free volume.

World: real-anatomy cases built from a real CT that no shipped model was trained on, the
thorax patient (``example_ct_dicom`` with ``example_seg_dicom``, "patient C"), by
``benchmarks/learning_matters.py``'s generator (by default on the shipped models' training grid:
1 mm LPS, 96 x 96 x 72 voxel crops around the labelled spine, which the models resample to their
planned 0.74 x 0.74 x 0.9 mm; ``--grid-mm 0.74 0.74 0.9 --crop 130 130 80`` puts the same field
of view on that grid, which they do not resample; with ``--new-subjects`` each a new
subject: elastic deformation, scaling, marrow by age, realistic MRI; the real CT as it is with
classic MRI otherwise). A
share of cases holds a calcified intradural meningioma at the labelled cord (6-12 mm axial,
150-1000 HU, dense/partial/rim); the others are lesion-free.

Each case is audited as the demo audits: the shipped product-like sCT, the shipped audit model
(physics consistency + disagreement with the shipped lesion-aware reference). Truth afterwards:
a **target** is a lesion the CT shows (|CNR| >= 3) and the product-like sCT does not, at least
5 mm axially on CT; it is flagged when a region overlaps it. **False flags** are the regions of
lesion-free volumes. A flag away from any target whose mean |sCT - CT| is at least 100 HU
(``validate --audit``'s rule) is counted as confirmed by CT: a real sCT error, flagged for the
wrong reason but not a false alarm. The audit runs with the domain check on (what
``synthct audit`` does) and off (every signal computed, as before the check), in the same run.

Run (shared 2-core machine; about a minute a case):

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/audit_real_anatomy.py --cases 8 \
        [--new-subjects] [--lesion-probability 0.5] [--out out/audit_real]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

MIN_TARGET_MM = 5.0
#: ``validate --audit``'s rule (AuditColumnSettings.discrepancy_hu): a flagged region whose mean
#: |sCT - CT| reaches this is a real sCT error by CT, not a false alarm.
DISCREPANCY_HU = 100.0


def _audit_case(case: Any, synthesis: Any, reference: Any, calibration: Any) -> dict[str, Any]:
    from synthct.audit.pipeline import run_audit
    from synthct.validation.lesion_metrics import measure_lesions
    from synthct.volume import CTVolume

    sct = synthesis.synthesize(case.mr).sct
    prediction = reference(case.mr)
    lesions = []
    labels = case.lesion_labels
    if labels is not None and np.any(labels.array):
        sct_ct_grid = CTVolume(np.asarray(sct.array, np.float32), case.ct.affine)
        for lesion_id, row in zip(
            [int(v) for v in np.unique(labels.array) if v],
            measure_lesions(case.ct, sct_ct_grid, labels),
            strict=True,
        ):
            lesions.append(
                {
                    "id": lesion_id,
                    "ct_mean_hu": round(float(row.ct.roi.mean_hu), 1),
                    "sct_mean_hu": round(float(row.sct.roi.mean_hu), 1),
                    "ct_visible": bool(row.ct.visible),
                    "sct_visible": bool(row.sct.visible),
                    "ct_axial_mm": round(float(row.ct.diameter_axial_mm), 1),
                }
            )
    out: dict[str, Any] = {"case": case.case_id, "lesions": lesions}
    from synthct.imaging.alignment import mri_on_grid

    ct_on_mri = np.asarray(mri_on_grid(case.ct, case.mr.geometry).array, np.float32)
    for check in (True, False):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = run_audit(
                case.mr,
                sct,
                reference=lambda _mr: prediction,
                calibration=calibration,
                domain_check=check,
            )
        flags = result.region_labels.array
        hit: set[int] = set()
        flagged = {}
        truth = None if labels is None else np.asarray(labels.array)
        for lesion in lesions:
            assert truth is not None
            # the lesion labels are on the case's grid, which is the MRI grid here
            ids = {int(r) for r in np.unique(flags[truth == lesion["id"]]) if r}
            hit |= ids
            flagged[lesion["id"]] = bool(ids)
        elsewhere = [r.id for r in result.regions if r.id not in hit]
        # validate --audit's rule: a region is a real sCT error when the CT says so
        error = np.abs(np.asarray(result.sct.array, np.float32) - ct_on_mri)
        out["checked" if check else "unchecked"] = {
            "flags": result.n_flags,
            "flags_elsewhere": len(elsewhere),
            "elsewhere_confirmed_by_ct": sum(
                float(error[flags == r].mean()) >= DISCREPANCY_HU for r in elsewhere
            ),
            "flagged": flagged,
            "signals_used": list(result.signals),
            "refused": sorted(result.info["domain"].get("refused_signals", {})),
            # each signal's extreme standardised scores in the body (its calibrated threshold
            # applies to these)
            "score_range": {
                name: [
                    round(float(np.min(np.asarray(z.array)[result.body], initial=0.0)), 2),
                    round(float(np.max(np.asarray(z.array)[result.body], initial=0.0)), 2),
                ]
                for name, z in result.z.items()
            },
        }
    return out


def _summary(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    targets = [
        (r, lesion)
        for r in rows
        for lesion in r["lesions"]
        if lesion["ct_visible"]
        and not lesion["sct_visible"]
        and lesion["ct_axial_mm"] >= MIN_TARGET_MM
    ]
    free = [r for r in rows if not r["lesions"]]
    return {
        "targets": len(targets),
        "targets_flagged": sum(r[key]["flagged"][lesion["id"]] for r, lesion in targets),
        "lesion_free_volumes": len(free),
        "false_flags_per_lesion_free_volume": (
            sum(r[key]["flags"] for r in free) / len(free) if free else None
        ),
        "flags_elsewhere_per_lesion_volume": (
            sum(r[key]["flags_elsewhere"] for r in rows if r["lesions"])
            / max(1, len(rows) - len(free))
        ),
        # of all flags away from a target lesion, lesion-free volumes included: how many the CT
        # confirms as real sCT errors (mean |sCT - CT| >= DISCREPANCY_HU)
        "flags_elsewhere": sum(r[key]["flags_elsewhere"] for r in rows),
        "flags_elsewhere_confirmed_by_ct": sum(r[key]["elsewhere_confirmed_by_ct"] for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--lesion-probability", type=float, default=0.5)
    parser.add_argument("--new-subjects", action="store_true", help="realistic new subjects")
    parser.add_argument("--seed", type=int, default=1502)
    parser.add_argument("--out", type=Path, default=Path("out/audit_real"))
    parser.add_argument("--audit-model", default="audit", help="audit model (default: shipped)")
    parser.add_argument(
        "--reference-model",
        default=None,
        help="reference model name or folder (default: the calibration's); another one is scored "
        "with the calibration's thresholds, a comparison, not a calibrated audit",
    )
    parser.add_argument(
        "--calibrated-cohort",
        type=Path,
        help="for a calibration that records no domain: a cohort of its calibration domain "
        "(e.g. out/dom/free_3t for the paper_3t phantoms the old shipped model was made on)",
    )
    parser.add_argument(
        "--grid-mm",
        type=float,
        nargs="+",
        default=[1.0],
        help="grid of the cases: one value (isotropic) or three (L P S), e.g. 0.74 0.74 0.9, "
        "the shipped models' planned spacing, on which they do not resample",
    )
    parser.add_argument(
        "--crop", type=int, nargs=3, default=(96, 96, 72), help="crop around the spine, voxels"
    )
    args = parser.parse_args()

    import learning_matters
    from learning_matters import _ct_derived_cases, _scans

    if len(args.grid_mm) not in (1, 3):
        parser.error("--grid-mm takes one value or three")
    # the shipped models' training world (scripts/build_training_world.py): 1 mm,
    # 96 x 96 x 72 crops, which their inference resamples to 0.74 x 0.74 x 0.9 mm
    grid = args.grid_mm[0] if len(args.grid_mm) == 1 else tuple(args.grid_mm)
    grid_name = "x".join(f"{g:g}" for g in args.grid_mm)
    learning_matters.GRID_MM = grid
    learning_matters.CROP_VOXELS = tuple(args.crop)
    from synthct.audit.model import load_audit_model
    from synthct.audit.reference import model_reference
    from synthct.synthesis.manifest import load_case, read_manifest
    from synthct.synthesis.synthesizer import load_shipped_model

    t0 = time.perf_counter()
    world = "new-subjects" if args.new_subjects else "as-scanned"
    folder = args.out / f"{world}-{grid_name}mm-seed{args.seed}"
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        thorax = [s for s in _scans() if s.patient == "thorax"]
        _ct_derived_cases(
            thorax,
            args.cases,
            folder,
            args.seed,
            args.lesion_probability,
            new_subjects=args.new_subjects,
        )
    print(f"cases: {manifest} ({time.perf_counter() - t0:.0f} s)", flush=True)
    model = load_audit_model(args.audit_model, learned=False)
    calibration = model.calibration
    assert calibration is not None
    if "domain" not in calibration.info and args.calibrated_cohort is not None:
        from dataclasses import replace

        from synthct.audit.domain import AuditDomain

        control = [load_case(r) for r in read_manifest(args.calibrated_cohort / "manifest.csv")]
        domain = AuditDomain.of_volumes([c.mr for c in control])
        calibration = replace(calibration, info={**calibration.info, "domain": domain.to_dict()})
    synthesis = load_shipped_model("product_like")
    reference = model_reference(
        args.reference_model or str(calibration.info.get("reference_model", "lesion_aware"))
    )
    rows = []
    for record in read_manifest(manifest):
        case = load_case(record)
        row = _audit_case(case, synthesis, reference, calibration)
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {
        "world": "real-anatomy cases from the held-out thorax patient (example_ct_dicom), "
        + ("new subjects, realistic MRI" if args.new_subjects else "as scanned, classic MRI")
        + f", {grid_name} mm, crops {tuple(args.crop)}",
        "audit_model": str(model.path),
        "reference_model": args.reference_model or "the calibration's",
        "calibrated_domain": calibration.info.get("domain"),
        "with_domain_check": _summary(rows, "checked"),
        "without_domain_check": _summary(rows, "unchecked"),
        "seconds": round(time.perf_counter() - t0),
    }
    print(json.dumps(result, indent=1))
    (folder / "audit_summary.json").write_text(json.dumps({"summary": result, "rows": rows}))


if __name__ == "__main__":
    main()
