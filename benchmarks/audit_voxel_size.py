"""Reference disagreement on normal anatomy at voxel sizes other than the models' planned one.

The shipped synthesis models run at their planned spacing (0.74 x 0.74 x 0.9 mm) and resample
any other grid (:mod:`synthct.synthesis.inference_grid`). This benchmark renders the *same*
lesion-free phantom anatomies (one seed) at several voxel sizes and reports, per voxel size, the
largest reference-disagreement score of each volume (the score of its most conspicuous region,
in the signal's units: the shipped calibration flags above its ``reference`` threshold), with
the audited sCT from the shipped product-like model and the shipped lesion-aware model as the
reference, as the demo audits. ``--native`` adds a row per non-planned size with both models run
on the MRI's own grid (``resample=False``), which separates the resampling from the voxel size.
It is the measurement behind the audit domain's voxel-size rule (:mod:`synthct.audit.domain`).

``--synthesis-model`` and ``--reference-model`` take other model folders (e.g. a fine-tuned
pair), scored with the shipped calibration's scale.

Run: .venv/bin/python benchmarks/audit_voxel_size.py [--cases 8] [--native]
     [--synthesis-model NAME_OR_FOLDER] [--reference-model NAME_OR_FOLDER]
     [--voxel-size 0.74 0.74 0.9 --voxel-size 0.8 0.8 0.8 ...] [--work DIR]
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

#: The benchmark cohort of benchmarks/audit.py (field of view around the canal, 3 T protocol).
COHORT: dict[str, Any] = {
    "protocol": "paper_3t",
    "field_of_view_mm": (128.0, 160.0, 64.0),
    "levels": ("C4", "L2"),
    "lesions": None,
}
PLANNED = (0.74, 0.74, 0.9)


def _load(model: str) -> Any:
    """A shipped model by name, or a model folder."""
    from synthct.synthesis.shipped import SHIPPED_MODELS
    from synthct.synthesis.synthesizer import SynthesisModel, load_shipped_model

    return load_shipped_model(model) if model in SHIPPED_MODELS else SynthesisModel.load(model)


def _peaks(
    cohort: Path,
    *,
    native: bool,
    synthesis: str = "product_like",
    reference_model: str = "lesion_aware",
) -> list[float]:
    """The largest reference score of each volume of ``cohort`` (shipped models by default)."""
    from synthct.audit.combine import (
        DEFAULT_CALIBRATION,
        DEFAULT_MIN_REGION_VOLUME_MM3,
        min_region_voxels,
        region_peak,
    )
    from synthct.audit.pipeline import run_audit
    from synthct.audit.reference import model_reference
    from synthct.phantom.cohort_files import PhantomCase, read_manifest
    from synthct.synthesis.synthesizer import SynthesisModel

    audited = _load(synthesis)
    original = SynthesisModel.synthesize
    peaks = []
    try:
        if native:  # both models on the MRI's own grid
            SynthesisModel.synthesize = functools.partialmethod(original, resample=False)  # type: ignore[method-assign,assignment]
        reference = model_reference(reference_model)
        for row in read_manifest(cohort):
            mr = PhantomCase(cohort / row["case_id"]).mr()
            result = run_audit(
                mr,
                audited.synthesize(mr).sct,
                reference=reference,
                consistency=False,
                calibration=DEFAULT_CALIBRATION,
                domain_check=False,
            )
            z = np.where(result.body, np.asarray(result.signals["reference"].array), 0.0)
            voxels = min_region_voxels(DEFAULT_MIN_REGION_VOLUME_MM3, mr.geometry.voxel_volume_mm3)
            peaks.append(region_peak(z.astype(np.float32), voxels))
    finally:
        SynthesisModel.synthesize = original  # type: ignore[method-assign]
    return peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=8, help="lesion-free anatomies")
    parser.add_argument(
        "--seed", type=int, default=1041, help="cohort seed (benchmarks/audit.py's)"
    )
    parser.add_argument(
        "--voxel-size",
        type=float,
        nargs=3,
        action="append",
        metavar=("X", "Y", "Z"),
        help="voxel sizes to compare, mm (repeat; default: planned, 0.77 x 0.77 x 0.87, 0.8)",
    )
    parser.add_argument("--native", action="store_true", help="also run off-plan sizes unresampled")
    parser.add_argument(
        "--synthesis-model", default="product_like", help="audited sCT: shipped name or folder"
    )
    parser.add_argument(
        "--reference-model", default="lesion_aware", help="reference: shipped name or folder"
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=Path(tempfile.gettempdir()) / "synthct-audit-voxel-size",
        help="cohort folder (reused)",
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    from synthct.audit.model import SHIPPED_AUDIT_MODEL, load_audit_model
    from synthct.phantom.cohort import generate_cohort, load_cohort_spec

    sizes = [tuple(v) for v in (args.voxel_size or [PLANNED, (0.77, 0.77, 0.87), (0.8, 0.8, 0.8)])]
    calibration = load_audit_model(SHIPPED_AUDIT_MODEL).calibration
    assert calibration is not None
    threshold = calibration.for_signal("reference").threshold
    rows = []
    for size in sizes:
        name = "x".join(f"{v:g}" for v in size)
        values = {**COHORT, "voxel_size_mm": size, "n_cases": args.cases}
        cohort = generate_cohort(
            load_cohort_spec(seed=args.seed, **values),
            args.work / f"free-{args.cases}-seed{args.seed}-{name}",
            resume=True,
        )
        modes = [False] + ([True] if args.native and size != PLANNED else [])
        for native in modes:
            t0 = time.perf_counter()
            peaks = np.asarray(
                _peaks(
                    cohort,
                    native=native,
                    synthesis=args.synthesis_model,
                    reference_model=args.reference_model,
                )
            )
            rows.append(
                (
                    f"{name} mm" + (" on its own grid" if native else ""),
                    float(np.median(peaks)),
                    float(peaks.max()),
                    int(np.count_nonzero(peaks >= threshold)),
                    len(peaks),
                    time.perf_counter() - t0,
                )
            )
            print(f"{rows[-1][0]}: " + ", ".join(f"{p:.2f}" for p in peaks), flush=True)
    print(
        f"\nLargest reference score per lesion-free volume ({args.cases} anatomies, seed "
        f"{args.seed}; sCT {args.synthesis_model}, reference {args.reference_model}; shipped "
        "threshold "
        f"{threshold:.2f}, calibrated at {' x '.join(f'{v:g}' for v in PLANNED)} mm)\n"
    )
    print("| voxel size | median | max | volumes >= threshold | time (s) |")
    print("|---|---|---|---|---|")
    for label, median, top, above, n, seconds in rows:
        print(f"| {label} | {median:.2f} | {top:.2f} | {above}/{n} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
