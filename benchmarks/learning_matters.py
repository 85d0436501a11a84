"""Does learning matter? A trained network vs the bulk-HU baseline on held-out cases of one world.

Issue #15, "Must show": on held-out cases of the new (real-anatomy) world the bulk-HU baseline's
body MAE should be at least twice the trained network's, and the lesion table shows where each
fails. In today's procedural world the baseline (27.4 HU) beats the shipped networks.

Worlds (``--world``):

* ``procedural``: ``synthct phantom`` spine cohorts, paper_3t contrast and grid, field of view
  cropped to 120 x 120 x 48 mm (as ``benchmarks/synthesis_accuracy.py``). Training cases (seed
  401) hold a calcified meningioma with probability 0.5; held-out cases (seed 402) one each.
* ``ct-derived``: cases made by :func:`synthct.phantom.ct_insertion.write_ct_derived_case` from
  the real CTs in ``../shared/data/real/totalsegmentator``, first resampled to a 1.5 mm LPS
  grid. Variety is what the generator offers today: a crop (:data:`CROP_VOXELS`) centred on the
  spine (labelled vertebrae, or the most posterior dense bone) with a random offset, the MRI
  noise seed, and a calcified meningioma at the labelled cord (dorsal offset, size, HU and
  pattern drawn) where the scan's labels have a spinal cord. Training cases come from the
  ``abdomen`` (``example_ct_sm`` + ``example_seg_fast``) and ``chest`` (``chest_ct``,
  ``chest_abdomen_cta``: contrast-enhanced cardiac and aortic crops, ``chest_ct`` with little
  or no spine in view; no labels, so no lesions and contrast blood >= 150 HU becomes bone in
  today's HU-only tissue map) patients; held-out
  cases from the ``thorax`` patient (the DICOM series with ``example_seg_dicom``), so no
  held-out case shares a real CT with training.

The network is trained with :func:`synthct.synthesis.training.train_model` (the ``synthct
train`` library call): ``--quick`` uses ``configs/phantom_tiny.yaml`` (6 base channels, 2
levels, 16^3 patches), the full setting ``configs/product_like.yaml`` (8 base channels, 4
levels, 24^3 patches) without lesion insertion; ``--iterations`` bounds the training. Metrics
(:mod:`synthct.imaging.image_metrics`, :mod:`synthct.validation.lesion_metrics`): body MAE
(CT body mask, no clipping), bone Dice at 250 HU, and per lesion the ROI mean HU, visibility
(|CNR| >= 3 against the surrounding shell) and the HU error on CT and on each sCT.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/learning_matters.py --world ct-derived
     [--quick] [--out DIR] [--train-cases N] [--test-cases M] [--iterations K]
"""

from __future__ import annotations

import argparse
import datetime
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthct.imaging.image_metrics import image_metrics
from synthct.imaging.labels import Tissue
from synthct.io import read_volume
from synthct.io.atomic import write_json_atomic, write_text_atomic
from synthct.phantom import cohort_files as files
from synthct.phantom.ct_derived import tissue_map_from_ct
from synthct.phantom.ct_insertion import random_calcified_meningioma, write_ct_derived_case
from synthct.phantom.realism.patches import on_common_grid
from synthct.phantom.spine_crop import spine_crop
from synthct.resample import resample_to
from synthct.synthesis.baseline import BaselineSynthesizer
from synthct.synthesis.config import load_config
from synthct.synthesis.manifest import load_case, read_manifest
from synthct.synthesis.synthesizer import SynthesisModel
from synthct.synthesis.training import train_model
from synthct.validation.lesion_metrics import measure_lesions
from synthct.volume import CTVolume, LabelMap

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real" / "totalsegmentator"
GRID_MM: float | tuple[float, float, float] = 1.5
CROP_VOXELS = (64, 64, 48)
CROP_JITTER_MM = 12.0
PROCEDURAL_FOV_MM = (120.0, 120.0, 48.0)
WORLDS = ("procedural", "ct-derived", "real-anatomy")


@dataclass(frozen=True)
class Scan:
    """A real CT on the 1.5 mm grid, its labels there (nearest) or None, and its patient."""

    name: str
    patient: str
    ct: CTVolume
    labels: LabelMap | None


def _scans() -> list[Scan]:
    def ct(name: str) -> CTVolume:
        v = read_volume(REAL / name, kind="ct")
        assert isinstance(v, CTVolume)
        return on_common_grid(v, GRID_MM)

    def labels(name: str, grid: CTVolume) -> LabelMap:
        v = read_volume(REAL / name, kind="label")
        assert isinstance(v, LabelMap)
        return resample_to(v, grid)

    abdomen = ct("example_ct_sm.nii.gz")
    thorax = ct("example_ct_dicom")
    return [
        Scan("example_ct_sm", "abdomen", abdomen, labels("example_seg_fast.nii.gz", abdomen)),
        Scan("chest_ct", "chest", ct("chest_ct.nii.gz"), None),
        Scan("chest_abdomen_cta", "chest", ct("chest_abdomen_cta.nii.gz"), None),
        Scan("example_ct_dicom", "thorax", thorax, labels("example_seg_dicom.nii.gz", thorax)),
    ]


def _ct_derived_cases(
    scans: Sequence[Scan],
    count: int,
    out: Path,
    seed: int,
    lesion_probability: float,
    *,
    new_subjects: bool = False,
) -> Path:
    """``count`` cases drawn round-robin over ``scans``; one manifest over all of them.

    ``new_subjects`` draws each case as a new subject (elastic deformation, scaling, marrow by
    age) and renders its MRI with the realistic preset (fields, k-space, flow, per-subject
    relaxation); otherwise the real CT as it is and the classic MRI.
    """
    from synthct.phantom.subject_variation import SubjectVariation

    rows = []
    out.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        scan = scans[i % len(scans)]
        rng = np.random.default_rng([seed, i])
        ct, labels = spine_crop(
            scan.ct, scan.labels, CROP_VOXELS, rng=rng, jitter_mm=CROP_JITTER_MM
        )
        lesions = []
        if labels is not None and rng.random() < lesion_probability:
            tissue = tissue_map_from_ct(ct, labels)
            if np.any(np.asarray(tissue.array) == Tissue.SPINAL_CORD):
                lesions.append(
                    random_calcified_meningioma(
                        np.asarray(tissue.array), ct.geometry, rng, seed=seed + i
                    )
                )
        name = f"{scan.name}-{i:03d}"
        folder = write_ct_derived_case(
            ct,
            out / name,
            labels=labels,
            lesions=lesions,
            supersample=2,
            seed=seed + 7 * i,
            variation=SubjectVariation() if new_subjects else None,
            mr_realism="realistic" if new_subjects else "classic",
        )
        row = files.manifest_row(out, folder / files.case_id(0))
        row["case_id"] = name
        rows.append(row)
    write_text_atomic(out / files.MANIFEST_CSV, files.manifest_rows_csv(rows))
    return out / files.MANIFEST_CSV


def _procedural_cases(count: int, out: Path, seed: int, lesion_probability: float) -> Path:
    from synthct.phantom.cohort import LesionRange, generate_cohort, load_cohort_spec

    spec = load_cohort_spec(
        n_cases=count,
        seed=seed,
        protocol="paper_3t",
        field_of_view_mm=PROCEDURAL_FOV_MM,
        levels=("C4", "L2"),
        lesions=LesionRange(
            types=("meningioma",),
            probability=lesion_probability,
            mean_hu=(150.0, 1000.0),
            axial_diameter_mm=(6.0, 12.0),
            sagittal_diameter_mm=(8.0, 20.0),
        ),
    )
    return generate_cohort(spec, out) / files.MANIFEST_CSV


def build_world(world: str, train: int, test: int, out: Path) -> tuple[Path, Path, str]:
    """Training and held-out manifests of ``world``, and a line saying what they hold."""
    if world == "procedural":
        return (
            _procedural_cases(train, out / "train", 401, 0.5),
            _procedural_cases(test, out / "test", 402, 1.0),
            "procedural spine phantoms (paper_3t, 120 x 120 x 48 mm); train seed 401, test 402",
        )
    scans = _scans()
    train_scans = [s for s in scans if s.patient != "thorax"]
    test_scans = [s for s in scans if s.patient == "thorax"]
    new = world == "real-anatomy"
    return (
        _ct_derived_cases(train_scans, train, out / "train", 401, 0.5, new_subjects=new),
        _ct_derived_cases(test_scans, test, out / "test", 402, 1.0, new_subjects=new),
        ("real-anatomy subjects (deformed, realistic MRI)" if new else "CT-derived")
        + " from real CTs at 1.5 mm; train: abdomen + chest patients "
        f"({', '.join(s.name for s in train_scans)}); held out: thorax patient "
        f"({', '.join(s.name for s in test_scans)})",
    )


def evaluate(synth: Any, manifest: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Body MAE and bone Dice per case, and the lesion rows, of one synthesiser."""
    cases, lesions = [], []
    for record in read_manifest(manifest):
        case = load_case(record)
        result = synth.synthesize(case.mr)
        sct = CTVolume(np.asarray(result.sct.array, np.float32), case.ct.affine)
        m = image_metrics(case.ct, sct)
        cases.append(
            {"case_id": case.case_id, "mae_hu": m.mae_hu, "bone_dice_250": m.bone_dice[250.0]}
        )
        if case.lesion_labels is not None and np.any(case.lesion_labels.array):
            for row in measure_lesions(case.ct, sct, case.lesion_labels):
                lesions.append(
                    {
                        "case_id": case.case_id,
                        "ct_mean_hu": row.ct.roi.mean_hu,
                        "ct_visible": bool(row.ct.visible),
                        "ct_cnr": row.ct.cnr,
                        "sct_mean_hu": row.sct.roi.mean_hu,
                        "sct_visible": bool(row.sct.visible),
                        "sct_cnr": row.sct.cnr,
                        "hu_error": row.sct.roi.mean_hu - row.ct.roi.mean_hu,
                    }
                )
    return cases, lesions


def train(manifest: Path, out: Path, quick: bool, iterations: int | None, seed: int) -> Path:
    """Train the small network; returns its model folder."""
    config = load_config(ROOT / "configs" / ("phantom_tiny.yaml" if quick else "product_like.yaml"))
    steps = iterations or (300 if quick else 2000)
    config = config.with_updates(
        {
            "training": {
                "iterations": steps,
                "validation_interval": max(1, steps // 4),
                "checkpoint_interval": steps,
                "seed": seed,
                "device": "cpu",
                "final_validation": False,
                "batch_norm_recalibration_batches": 0 if quick else 50,
            },
            "lesion_insertion": {"enabled": False},
            "card": {"name": "learning-matters", "description": "benchmarks/learning_matters.py"},
        }
    )
    return train_model(manifest, config, out).model_dir


def _print(world: str, results: dict[str, Any]) -> None:
    print(f"\nHeld-out image metrics, world: {world}")
    print(f"{'method':<12}{'body MAE HU':>14}{'bone Dice 250':>15}   per case MAE")
    for method in ("baseline", "network"):
        rows = results[method]["cases"]
        mae = np.mean([r["mae_hu"] for r in rows])
        dice = np.mean([r["bone_dice_250"] for r in rows])
        per = " ".join(f"{r['mae_hu']:.0f}" for r in rows)
        print(f"{method:<12}{mae:14.1f}{dice:15.3f}   {per}")
    ratio = results["mae_ratio_baseline_over_network"]
    verdict = "met" if ratio >= 2.0 else "not met"
    print(f"baseline MAE / network MAE = {ratio:.2f} (goal >= 2: {verdict})")
    print("\nLesions (HU: ROI mean; vis: |CNR| >= 3 and large enough)")
    print(f"{'case':<24}{'CT HU':>8}{'CT vis':>8}{'base HU':>9}{'vis':>5}{'err':>7}"
          f"{'net HU':>9}{'vis':>5}{'err':>7}")  # fmt: skip
    base = results["baseline"]["lesions"]
    net = results["network"]["lesions"]
    for b, n in zip(base, net, strict=True):
        print(
            f"{b['case_id']:<24}{b['ct_mean_hu']:8.0f}{'yes' if b['ct_visible'] else 'no':>8}"
            f"{b['sct_mean_hu']:9.0f}{'yes' if b['sct_visible'] else 'no':>5}{b['hu_error']:7.0f}"
            f"{n['sct_mean_hu']:9.0f}{'yes' if n['sct_visible'] else 'no':>5}{n['hu_error']:7.0f}"
        )
    for method, rows in (("baseline", base), ("network", net)):
        shown = sum(r["sct_visible"] for r in rows if r["ct_visible"])
        seen = sum(r["ct_visible"] for r in rows)
        print(f"{method}: {shown}/{seen} lesions visible on CT also visible on sCT")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--world", choices=WORLDS, default="ct-derived")
    parser.add_argument("--quick", action="store_true", help="few cases, tiny network, minutes")
    parser.add_argument("--out", type=Path, default=None, help="work folder (kept); default temp")
    parser.add_argument("--train-cases", type=int, default=None)
    parser.add_argument("--test-cases", type=int, default=None)
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    n_train = args.train_cases or (4 if args.quick else 12)
    n_test = args.test_cases or (2 if args.quick else 4)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="synthct-learning-") as scratch:
        out = args.out or Path(scratch)
        out.mkdir(parents=True, exist_ok=True)
        train_manifest, test_manifest, what = build_world(
            args.world, n_train, n_test, out / f"world-{args.world}"
        )
        made_s = time.perf_counter() - start
        t0 = time.perf_counter()
        model_dir = train(train_manifest, out / "run", args.quick, args.iterations, args.seed)
        train_s = time.perf_counter() - t0
        results: dict[str, Any] = {
            "world": args.world,
            "description": what,
            "date_utc": f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M}",
            "setting": "quick" if args.quick else "full",
            "train_cases": n_train,
            "test_cases": n_test,
            "generation_s": made_s,
            "training_s": train_s,
        }
        for method, synth in (
            ("baseline", BaselineSynthesizer()),
            ("network", SynthesisModel.load(model_dir)),
        ):
            cases, lesions = evaluate(synth, test_manifest)
            results[method] = {"cases": cases, "lesions": lesions}
        base_mae = np.mean([r["mae_hu"] for r in results["baseline"]["cases"]])
        net_mae = np.mean([r["mae_hu"] for r in results["network"]["cases"]])
        results["mae_ratio_baseline_over_network"] = float(base_mae / net_mae)
        results["elapsed_s"] = time.perf_counter() - start
        print(f"learning-matters benchmark, {results['date_utc']} UTC, {results['setting']}")
        print(f"world: {what}")
        print(
            f"{n_train} training / {n_test} held-out cases; generation {made_s:.0f} s, "
            f"training {train_s:.0f} s"
        )
        _print(args.world, results)
        print(f"\nelapsed {results['elapsed_s']:.0f} s")
        write_json_atomic(out / "learning_matters.json", results)
        if args.out is None:
            print("(work folder was temporary; pass --out to keep cases, model and JSON)")
    return results


if __name__ == "__main__":
    main()
