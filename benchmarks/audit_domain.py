"""The audit outside its calibrated domain: flags per lesion-free volume with and without the
domain check, in one run.

Each lesion-free case (procedural phantoms written by ``synthct phantom --no-lesions``; give
one cohort per domain) is audited as the demo audits: the shipped product-like model's sCT,
the shipped audit model (physics consistency + disagreement with the lesion-aware reference).
The same signals are combined twice: with the domain check off (every signal computed, as
before the check) and on (:mod:`synthct.audit.domain`: signals that do not hold outside the
calibrated domain are refused). A flag counts as a real sCT error when the CT confirms it
(mean |sCT - CT| in the region >= 100 HU, ``validate --audit``'s rule).

The calibration's domain is the one recorded with it; a calibration written before domains
were recorded gets the domain of the in-domain control cohort (``--calibrated-cohort``), which
must be what it was calibrated on (the shipped one: paper_3t phantoms, classic MRI).

Run (the machine is shared; a few minutes a cohort on one core):

    synthct phantom --out out/dom/free_1p5t --cases 5 --seed 4150 --protocol paper_1p5t \
        --levels C4:L2 --no-lesions
    synthct phantom --out out/dom/free_3t --cases 3 --seed 4151 --protocol paper_3t \
        --levels C4:L2 --no-lesions
    .venv/bin/python benchmarks/audit_domain.py out/dom/free_1p5t \
        --calibrated-cohort out/dom/free_3t
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np


def _cached_inputs(case: Any, synthesis: Any, reference: Any, cache: Path) -> tuple[Any, Any]:
    """The product-like sCT and the reference prediction of a case, cached under ``cache``."""
    from synthct.audit.reference import ReferencePrediction
    from synthct.io import read_volume, write_volume

    folder = cache / case.folder.parent.name / case.case_id
    paths = [folder / n for n in ("sct.nii.gz", "reference.nii.gz", "reference_sd.nii.gz")]
    if all(p.is_file() for p in paths):
        sct = read_volume(paths[0], kind="sct", check_hu=False)
        ref = read_volume(paths[1], kind="sct", check_hu=False)
        sd = read_volume(paths[2], kind="scalar").as_scalar()
        return sct, ReferencePrediction(ref, sd, "lesion_aware (cached)")
    mr = case.mr()
    sct = synthesis.synthesize(mr).sct
    prediction = reference(mr)
    folder.mkdir(parents=True, exist_ok=True)
    for volume, path in zip((sct, prediction.sct, prediction.sd), paths, strict=True):
        write_volume(volume, path)
    return sct, prediction


def _audit_both(
    case: Any, synthesis: Any, reference: Any, model: Any, cache: Path
) -> dict[str, Any]:
    """Audit one case with the domain check off and on; flags and CT confirmation for each."""
    from synthct.audit.pipeline import run_audit
    from synthct.imaging.alignment import mri_on_grid
    from synthct.validation.audit_column import AuditColumnSettings

    mr = case.mr()
    sct, prediction = _cached_inputs(case, synthesis, reference, cache)
    ct = np.asarray(mri_on_grid(case.ct(), mr.geometry).array, dtype=np.float32)
    row: dict[str, Any] = {"case": case.case_id}
    for check in (False, True):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = run_audit(
                mr,
                sct,
                reference=lambda _mr: prediction,
                calibration=model.calibration,
                domain_check=check,
            )
        error = np.abs(np.asarray(result.sct.array, dtype=np.float32) - ct)
        labels = result.region_labels.array
        discrepancy = AuditColumnSettings().discrepancy_hu
        confirmed = sum(float(error[labels == r.id].mean()) >= discrepancy for r in result.regions)
        key = "checked" if check else "unchecked"
        row[key] = {
            "flags": result.n_flags,
            "confirmed_by_ct": int(confirmed),
            "signals_fired": sorted({s for r in result.regions for s in r.signals_fired}),
            "signals_used": list(result.signals),
            "refused": result.info["domain"].get("refused_signals", {}),
            "warned": any("calibration's domain" in str(w.message) for w in caught),
        }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cohorts", nargs="+", type=Path, help="lesion-free cohort folders")
    parser.add_argument(
        "--calibrated-cohort",
        type=Path,
        help="in-domain control cohort; its domain stands in for a calibration without one",
    )
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path("out/dom/cache"),
        help="sCTs and reference predictions per case (delete it when the models change)",
    )
    args = parser.parse_args()

    from dataclasses import replace

    from synthct.audit.domain import AuditDomain
    from synthct.audit.model import SHIPPED_AUDIT_MODEL, load_audit_model
    from synthct.audit.reference import model_reference
    from synthct.phantom.cohort_files import PhantomCase, read_manifest
    from synthct.synthesis.synthesizer import load_shipped_model

    def read_cohort(folder: Path) -> list[Any]:
        return [PhantomCase(folder / row["case_id"]) for row in read_manifest(folder)]

    model = load_audit_model(SHIPPED_AUDIT_MODEL, learned=False)
    assert model.calibration is not None
    cohorts = list(args.cohorts)
    if "domain" not in model.calibration.info:
        if args.calibrated_cohort is None:
            parser.error("the calibration records no domain: give --calibrated-cohort")
        control = read_cohort(args.calibrated_cohort)
        domain = AuditDomain.of_volumes([c.mr() for c in control])
        info = {**model.calibration.info, "domain": domain.to_dict()}
        model = replace(model, calibration=replace(model.calibration, info=info))
        cohorts.append(args.calibrated_cohort)
    print("calibrated domain:", json.dumps(model.calibration.info["domain"]))
    synthesis = load_shipped_model("product_like")
    reference_name = str(model.calibration.info.get("reference_model", "lesion_aware"))
    reference = model_reference(reference_name)
    # the cache holds these weights' outputs only
    digests = [
        str(m.members[0].card.get("weights_sha256", "unknown"))[:12]
        for m in (synthesis, load_shipped_model(reference_name))
    ]
    cache = args.cache / "-".join(digests)
    rows = []
    t0 = time.perf_counter()
    for folder in cohorts:
        for case in read_cohort(folder):
            row = {
                "cohort": folder.name,
                **_audit_both(case, synthesis, reference, model, cache),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(
        f"\n{'cohort':<16} {'volumes':>7} {'flags/vol before':>17} {'flags/vol after':>16} "
        f"{'confirmed by CT (before/after)':>31}  refused after"
    )
    for folder in cohorts:
        mine = [r for r in rows if r["cohort"] == folder.name]
        n = len(mine)
        before = sum(r["unchecked"]["flags"] for r in mine)
        after = sum(r["checked"]["flags"] for r in mine)
        cb = sum(r["unchecked"]["confirmed_by_ct"] for r in mine)
        ca = sum(r["checked"]["confirmed_by_ct"] for r in mine)
        refused = sorted({s for r in mine for s in r["checked"]["refused"]})
        print(
            f"{folder.name:<16} {n:>7} {before / n:>17.2f} {after / n:>16.2f} "
            f"{f'{cb}/{ca}':>31}  {', '.join(refused) or '-'}"
        )
    print(f"({time.perf_counter() - t0:.0f} s; shared 2-core machine)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
