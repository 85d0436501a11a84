"""How real do phantom CTs look? Classifier AUC, per-tissue HU and noise power against real CTs.

Issue #15, "Must show": a small classifier trained to tell real CT patches from phantom CT
patches, with a patient-level split, gives its held-out AUC for each generator (goal for the
new generator: 0.75 or below; 0.5 is chance); per-tissue HU mean and SD and the noise power
spectrum of phantom vs real CTs.

Real CTs (``../shared/data/real/totalsegmentator``, README there), three patients:

* ``abdomen``: ``example_ct_sm`` (3 mm) with its TotalSegmentator labels ``example_seg_fast``;
* ``thorax``: the DICOM series ``example_ct_dicom`` (0.98 x 0.98 x 2 mm) with
  ``example_seg_dicom``;
* ``chest``: ``chest_ct`` and ``chest_abdomen_cta`` (1.5 mm; probably one person, so one
  patient; no labels).

Generators (``--generators``, names of :data:`GENERATORS`; add an entry to measure a new one):

* ``procedural``: ``synthct phantom`` spine cohorts (paper_3t grid and contrast, field of view
  cropped to :data:`PROCEDURAL_FOV_MM` to keep the run short; no lesions). They come from no
  real patient: case ``i`` goes to fold ``i mod 3``'s test set and to the other folds' training.
* ``ct-derived``: :func:`synthct.phantom.ct_insertion.write_ct_derived_case` on each real scan
  (labels where the scan has them; no lesions), as ``phantom/ct_derived.py`` makes them at run
  time. A case derived from a real patient is only ever in the test set of that patient's fold.
* ``ct-derived-subjects``: the same, each case a new subject drawn from the scan
  (:mod:`synthct.phantom.subject_variation`: elastic deformation, scaling, marrow by age), so the
  CT is no longer the real one voxel for voxel.

Classifier (:mod:`synthct.phantom.realism.classifier`): a ~18k-parameter 3D CNN on 16^3-voxel
patches of a common 2 mm LPS grid (32 mm cubes; centres in the body, patches at least half in
it), leave-one-real-patient-out (3 folds), balanced real and phantom patches, seeded. Per-tissue
HU (:mod:`~synthct.phantom.realism.tissue_hu`) and the radial NPS
(:mod:`~synthct.phantom.realism.noise_power`, axial ROIs of about 12 mm in fat, soft tissue and
the air outside the body, plane-detrended) are measured on each CT's native grid.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/realism.py [--generators procedural,ct-derived]
     [--out DIR] [--quick] [--procedural-cases N] [--cases-per-scan K]
"""

from __future__ import annotations

import argparse
import datetime
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthct.errors import SynthctError
from synthct.imaging.body_mask import axial_axis, body_mask_from_ct
from synthct.io import read_volume
from synthct.io.atomic import write_json_atomic
from synthct.phantom.realism.classifier import ClassifierSettings, held_out_auc, patient_folds
from synthct.phantom.realism.noise_power import radial_nps
from synthct.phantom.realism.patches import on_common_grid, sample_patches
from synthct.phantom.realism.tissue_hu import hu_class_masks, tissue_hu_stats
from synthct.volume import CTVolume, LabelMap

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "totalsegmentator"
PROCEDURAL_FOV_MM = (160.0, 160.0, 64.0)
GRID_MM = 2.0
PATCH_VOXELS = 16
NPS_ROI_MM = 12.0
NPS_CLASSES = ("fat", "soft_tissue", "air")
NPS_BANDS_PER_MM = (0.1, 0.2, 0.4)
TISSUES = ("air", "lung", "fat", "soft_tissue", "bone")


@dataclass(frozen=True)
class RealScan:
    """One real CT and, where there are, its TotalSegmentator labels."""

    name: str
    ct: CTVolume
    labels: LabelMap | None


@dataclass(frozen=True)
class RealPatient:
    """A real person: one fold of the patient-level split."""

    name: str
    scans: tuple[RealScan, ...]


@dataclass(frozen=True)
class PhantomCT:
    """A generated CT; ``patient`` names the real patient it was derived from (None: none)."""

    name: str
    patient: str | None
    ct: CTVolume


#: A generator: (real patients, cases per real scan or in all, scratch folder, seed) -> CTs.
Generator = Callable[[Sequence[RealPatient], int, Path, int], list[PhantomCT]]


def _ct(path: Path) -> CTVolume:
    volume = read_volume(path, kind="ct")
    assert isinstance(volume, CTVolume)
    return volume


def _labels(path: Path) -> LabelMap:
    volume = read_volume(path, kind="label")
    assert isinstance(volume, LabelMap)
    return volume


def real_patients(root: Path = REAL) -> list[RealPatient]:
    """The three real patients of the module docstring."""
    if not root.is_dir():
        raise SynthctError(
            "the real CTs are missing", path=root, fix="run from a checkout beside ../shared/data"
        )
    return [
        RealPatient(
            "abdomen",
            (
                RealScan(
                    "example_ct_sm",
                    _ct(root / "example_ct_sm.nii.gz"),
                    _labels(root / "example_seg_fast.nii.gz"),
                ),
            ),
        ),
        RealPatient(
            "thorax",
            (
                RealScan(
                    "example_ct_dicom",
                    _ct(root / "example_ct_dicom"),
                    _labels(root / "example_seg_dicom.nii.gz"),
                ),
            ),
        ),
        RealPatient(
            "chest",
            (
                RealScan("chest_ct", _ct(root / "chest_ct.nii.gz"), None),
                RealScan("chest_abdomen_cta", _ct(root / "chest_abdomen_cta.nii.gz"), None),
            ),
        ),
    ]


def procedural(
    patients: Sequence[RealPatient], cases: int, work: Path, seed: int
) -> list[PhantomCT]:
    """``cases`` procedural spine phantoms (``synthct phantom``), no real patient behind them."""
    from synthct.phantom.cohort import generate_cohort, load_cohort_spec
    from synthct.phantom.cohort_files import CT_FILE

    spec = load_cohort_spec(
        n_cases=cases,
        seed=seed,
        protocol="paper_3t",
        field_of_view_mm=PROCEDURAL_FOV_MM,
        levels=("C4", "L2"),
        lesions=None,
    )
    folder = generate_cohort(spec, work / "procedural")
    return [
        PhantomCT(f"procedural-{i:03d}", None, _ct(case / CT_FILE))
        for i, case in enumerate(sorted(folder.glob("case-*")))
    ]


def _ct_derived_cases(
    patients: Sequence[RealPatient], cases: int, work: Path, seed: int, *, new_subjects: bool
) -> list[PhantomCT]:
    from synthct.phantom.cohort_files import CT_FILE
    from synthct.phantom.ct_insertion import write_ct_derived_case
    from synthct.phantom.subject_variation import SubjectVariation

    out = []
    for patient in patients:
        for scan in patient.scans:
            for c in range(cases):
                name = f"{scan.name}-subject-{c}" if new_subjects else f"{scan.name}-{c}"
                folder = write_ct_derived_case(
                    scan.ct,
                    work / name,
                    labels=scan.labels,
                    supersample=1,
                    seed=seed + c,
                    variation=SubjectVariation() if new_subjects else None,
                )
                out.append(PhantomCT(name, patient.name, _ct(folder / "case-000" / CT_FILE)))
    return out


def ct_derived(
    patients: Sequence[RealPatient], cases: int, work: Path, seed: int
) -> list[PhantomCT]:
    """``cases`` CT-derived cases per real scan (labels where the scan has them; no lesions)."""
    return _ct_derived_cases(patients, cases, work, seed, new_subjects=False)


def ct_derived_subjects(
    patients: Sequence[RealPatient], cases: int, work: Path, seed: int
) -> list[PhantomCT]:
    """Like :func:`ct_derived`, each case a new subject (deformation, scaling, marrow by age)."""
    return _ct_derived_cases(patients, cases, work, seed, new_subjects=True)


GENERATORS: dict[str, Generator] = {
    "procedural": procedural,
    "ct-derived": ct_derived,
    "ct-derived-subjects": ct_derived_subjects,
}


# -- per-volume measurements -------------------------------------------------------------------
def _native_measures(ct: CTVolume, seed: int) -> dict[str, Any]:
    hu = np.asarray(ct.array, dtype=np.float32)
    axis = axial_axis(ct)
    body = body_mask_from_ct(hu, axial_axis=axis)
    masks = hu_class_masks(hu, body, spacing_mm=ct.spacing_mm)
    stats = tissue_hu_stats(hu, masks)
    in_plane = min(s for i, s in enumerate(ct.spacing_mm) if i != axis)
    roi = int(np.clip(round(NPS_ROI_MM / in_plane), 8, 16))
    nps: dict[str, Any] = {}
    for name in NPS_CLASSES:
        try:
            r = radial_nps(
                hu, masks[name], spacing_mm=ct.spacing_mm, axial_axis=axis, roi_voxels=roi,
                max_rois=200, seed=seed,
            )  # fmt: skip
        except SynthctError:
            continue  # no ROI fits in this class
        bands = {
            f"{f:g}": float(np.interp(f, r.frequency_per_mm, r.nps_hu2_mm2, right=np.nan))
            for f in NPS_BANDS_PER_MM
        }
        nps[name] = {
            "noise_sd_hu": r.noise_sd_hu,
            "mean_frequency_per_mm": r.mean_frequency_per_mm,
            "nps_hu2_mm2_at": bands,
            "rois": r.n_rois,
            "roi_mm": roi * in_plane,
        }
    return {
        "spacing_mm": list(ct.spacing_mm),
        "tissue_hu": {k: vars(v) for k, v in stats.items()},
        "nps": nps,
    }


def _patches(ct: CTVolume, count: int, seed: int) -> np.ndarray:
    grid = on_common_grid(ct, GRID_MM)
    hu = np.asarray(grid.array, dtype=np.float32)
    body = body_mask_from_ct(hu, axial_axis=2)
    rng = np.random.default_rng(seed)
    return sample_patches(hu, body, patch_voxels=PATCH_VOXELS, count=count, rng=rng)


# -- the classifier's folds --------------------------------------------------------------------
def fold_aucs(
    patients: Sequence[RealPatient],
    real_patches: dict[str, np.ndarray],
    phantoms: Sequence[PhantomCT],
    phantom_patches: Sequence[np.ndarray],
    settings: ClassifierSettings,
) -> list[dict[str, Any]]:
    """Leave-one-real-patient-out AUCs (module docstring for the assignment of phantoms)."""
    names = [p.name for p in patients]
    fold_of = patient_folds(names, [ph.patient for ph in phantoms])
    rows = []
    for f, held_out in enumerate(names):
        train_real = np.concatenate([real_patches[n] for n in names if n != held_out])
        train_ph = [p for p, k in zip(phantom_patches, fold_of, strict=True) if k != f]
        test_ph = [p for p, k in zip(phantom_patches, fold_of, strict=True) if k == f]
        if not train_ph or not test_ph:
            rows.append({"held_out": held_out, "auc": None, "note": "no phantom in a split"})
            continue
        auc = held_out_auc(
            train_real,
            np.concatenate(train_ph),
            real_patches[held_out],
            np.concatenate(test_ph),
            settings,
        )
        rows.append(
            {
                "held_out": held_out,
                "auc": auc,
                "train_patches": [len(train_real), int(sum(len(p) for p in train_ph))],
                "test_patches": [len(real_patches[held_out]), int(sum(len(p) for p in test_ph))],
            }
        )
    return rows


# -- printing ----------------------------------------------------------------------------------
def _mean_over(measures: Sequence[dict[str, Any]], *path: str) -> float:
    values = []
    for m in measures:
        node: Any = m
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, int | float) and np.isfinite(node):
            values.append(float(node))
    return float(np.mean(values)) if values else float("nan")


def print_tissue_table(rows: dict[str, list[dict[str, Any]]]) -> None:
    print("\nPer-tissue HU, mean / SD (smoothed-HU classes, eroded; unsmoothed HU inside)")
    print(f"{'source':<28}" + "".join(f"{t:>18}" for t in TISSUES))
    for source, measures in rows.items():
        cells = []
        for t in TISSUES:
            mean = _mean_over(measures, "tissue_hu", t, "mean_hu")
            sd = _mean_over(measures, "tissue_hu", t, "sd_hu")
            cells.append(f"{mean:8.0f} / {sd:5.1f}" if np.isfinite(mean) else f"{'-':>16}")
        print(f"{source:<28}" + "".join(f"{c:>18}" for c in cells))


def print_nps_table(rows: dict[str, list[dict[str, Any]]]) -> None:
    print("\nNoise power, axial ROIs ~12 mm: noise SD (HU) | NPS-weighted mean frequency (1/mm)")
    print(f"{'source':<28}" + "".join(f"{c:>22}" for c in NPS_CLASSES))
    for source, measures in rows.items():
        cells = []
        for c in NPS_CLASSES:
            sd = _mean_over(measures, "nps", c, "noise_sd_hu")
            f = _mean_over(measures, "nps", c, "mean_frequency_per_mm")
            cells.append(f"{sd:7.1f} | {f:5.3f}" if np.isfinite(sd) else "-")
        print(f"{source:<28}" + "".join(f"{c:>22}" for c in cells))
    print(f"NPS (HU^2 mm^2) in soft tissue at {', '.join(f'{f:g}' for f in NPS_BANDS_PER_MM)} /mm")
    for source, measures in rows.items():
        vals = [
            _mean_over(measures, "nps", "soft_tissue", "nps_hu2_mm2_at", f"{f:g}")
            for f in NPS_BANDS_PER_MM
        ]
        print(f"{source:<28}" + "".join(f"{v:12.1f}" for v in vals))


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--generators", default="procedural,ct-derived")
    parser.add_argument("--out", type=Path, default=None, help="write results.json here")
    parser.add_argument("--quick", action="store_true", help="fewer cases, patches and steps")
    parser.add_argument("--procedural-cases", type=int, default=None)
    parser.add_argument("--cases-per-scan", type=int, default=1)
    parser.add_argument("--patches-per-patient", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="classifier training steps")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    unknown = [g for g in args.generators.split(",") if g not in GENERATORS]
    if unknown:
        parser.error(f"unknown generator(s) {unknown}; known: {', '.join(GENERATORS)}")
    n_procedural = args.procedural_cases or (3 if args.quick else 6)
    per_patient = args.patches_per_patient or (200 if args.quick else 400)
    settings = ClassifierSettings(steps=args.steps or (150 if args.quick else 400), seed=args.seed)
    start = time.perf_counter()
    patients = real_patients()
    print(f"realism benchmark, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"real patients: {', '.join(f'{p.name} ({len(p.scans)} scan)' for p in patients)}")
    measures: dict[str, list[dict[str, Any]]] = {}
    real_patches: dict[str, np.ndarray] = {}
    for p_i, patient in enumerate(patients):
        per_scan = int(np.ceil(per_patient / len(patient.scans)))
        parts = []
        for s_i, scan in enumerate(patient.scans):
            measures[f"real {patient.name}/{scan.name}"] = [_native_measures(scan.ct, args.seed)]
            parts.append(_patches(scan.ct, per_scan, args.seed + 100 * p_i + s_i))
        real_patches[patient.name] = np.concatenate(parts)[:per_patient]
    measures["real (all scans)"] = [m for k, v in measures.items() for m in v]
    results: dict[str, Any] = {"generators": {}, "settings": vars(settings)}
    with tempfile.TemporaryDirectory(prefix="synthct-realism-") as scratch:
        for name in args.generators.split(","):
            t0 = time.perf_counter()
            cases = n_procedural if name == "procedural" else args.cases_per_scan
            phantoms = GENERATORS[name](patients, cases, Path(scratch) / name, args.seed)
            made_s = time.perf_counter() - t0
            per_case = int(np.ceil(per_patient * len(patients) / len(phantoms)))
            ph_patches = [
                _patches(ph.ct, per_case, args.seed + 1000 + i) for i, ph in enumerate(phantoms)
            ]
            measures[f"{name} ({len(phantoms)} cases)"] = [
                _native_measures(ph.ct, args.seed) for ph in phantoms
            ]
            folds = fold_aucs(patients, real_patches, phantoms, ph_patches, settings)
            aucs = [r["auc"] for r in folds if r["auc"] is not None]
            results["generators"][name] = {
                "cases": [ph.name for ph in phantoms],
                "folds": folds,
                "mean_auc": float(np.mean(aucs)) if aucs else None,
                "generation_s": made_s,
                "total_s": time.perf_counter() - t0,
            }
    print("\nReal vs phantom CT patch classifier (3D CNN, 16^3 voxels at 2 mm), held-out AUC")
    print("(leave one real patient out; 0.5: indistinguishable; goal for the new world <= 0.75)")
    header = "".join(f"{p.name:>10}" for p in patients)
    print(f"{'generator':<14}{header}{'mean':>10}{'goal':>8}{'gen s':>8}")
    for name, r in results["generators"].items():
        cells = "".join(
            f"{f['auc']:10.3f}" if f["auc"] is not None else f"{'-':>10}" for f in r["folds"]
        )
        mean = r["mean_auc"]
        ok = "met" if mean is not None and mean <= 0.75 else "no"
        print(f"{name:<14}{cells}{mean:10.3f}{ok:>8}{r['generation_s']:8.0f}")
    print_tissue_table(measures)
    print_nps_table(measures)
    results["measures"] = measures
    results["elapsed_s"] = time.perf_counter() - start
    print(f"\nelapsed {results['elapsed_s']:.0f} s")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(args.out / "realism.json", results)
    return results


if __name__ == "__main__":
    main()
