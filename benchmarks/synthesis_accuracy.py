"""Synthesis accuracy of the shipped models and the baseline on held-out phantoms.

Targets (BRIEF, Targets): body MAE <= 35 HU and bone Dice (250 HU) >= 0.9 for both shipped
models and the baseline; calcified-lesion detection (sCT visible / CT visible, lesions >= 5 mm)
>= 95% for the lesion-aware model; the product-like model's figure is whatever it truly is.

Held-out cohort (seeds disjoint from training, 101, and from the demo's paper cohort, 2025):
4 cases with one calcified intradural meningioma each (seed 301; mean 150-1000 HU, axial
6-12 mm, sagittal 8-20 mm) and 2 lesion-free cases (seed 302), paper_3t contrast and voxel
grid (0.74 x 0.74 x 0.9 mm, TR 7 ms, TE 1.15/2.30 ms) on a field of view cropped to
120 x 120 x 48 mm around the centre level (162 x 162 x 53 voxels) to fit 2 CPU cores.

Uncertainty quality (models only): Pearson and Spearman correlation between the predicted
total SD (aleatoric + MC-dropout epistemic) and the absolute error, and the coverage of the
95% interval (|sCT - CT| <= 1.96 SD), per tissue class by CT HU (air/fat < -30, soft -30..150,
bone >= 150) inside the CT body mask, and inside the lesion labels; voxels pooled over cases.

Detection is printed with its Wilson 95% interval: 4 lesions cannot show 95%; pass
``--lesion-cases 24`` (and ``--mc-passes 0`` to skip the uncertainty) for a tighter one.

``--real-anatomy`` also measures every method on the real-anatomy held-out set: new subjects
(deformed, realistic MRI, paper_3t contrast) drawn from patient C (``example_ct_dicom``, never in
any shipped model's training) on a 1 mm grid, cropped around the spine, with one calcified
meningioma each at the labelled cord (``scripts/build_training_world.py --held-out``, seed 302).

``--record-in-cards`` writes each shipped model's figures into its model card
(``held_out_validation``, and ``held_out_validation_real_anatomy`` with ``--real-anatomy``; the
weights and their checksum are not touched). Methods may be model folders (e.g. the previous
shipped models kept aside) to compare in the same run.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/synthesis_accuracy.py [--out DIR]
     [--methods baseline,product_like,lesion_aware] [--lesion-cases N] [--mc-passes K]
     [--real-anatomy [--real-cases M] [--real-grid-mm 0.74 0.74 0.9] [--real-only]]
     [--record-in-cards]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from synthct.imaging.body_mask import body_mask_from_ct
from synthct.imaging.image_metrics import image_metrics
from synthct.phantom.cohort import CohortSpec, LesionRange, generate_cohort
from synthct.synthesis.baseline import BaselineSynthesizer
from synthct.synthesis.manifest import load_case, read_manifest
from synthct.synthesis.model_folder import update_card
from synthct.synthesis.shipped import SHIPPED_MODELS, shipped_model_path
from synthct.synthesis.synthesizer import SynthesisModel, load_shipped_model
from synthct.validation.lesion_metrics import measure_lesions
from synthct.volume import CTVolume

FOV_MM = (120.0, 120.0, 48.0)
LESION_SEED, FREE_SEED = 301, 302
MIN_DIAMETER_MM = 5.0
CALCIFIED_HU = 130.0
SPEARMAN_MAX = 200_000
ROOT = Path(__file__).resolve().parents[1]
REAL_SEED = 302


REAL_GRID_MM = (1.0,)
REAL_CROP = (96, 96, 72)


def grid_text(grid_mm: tuple[float, ...]) -> str:
    """``1`` or ``0.74x0.74x0.9``: a grid for folder names and tables."""
    return "x".join(f"{g:g}" for g in grid_mm)


def real_anatomy_cohort(
    out: Path,
    cases: int,
    grid_mm: tuple[float, ...] = REAL_GRID_MM,
    crop: tuple[int, ...] = REAL_CROP,
) -> Path:
    """The real-anatomy held-out set (patient C, one calcified meningioma per case).

    ``grid_mm`` (one value or three) and ``crop`` (voxels) as ``build_training_world.py``'s; the
    default is the training world's 1 mm grid, which the shipped models resample to their
    planned 0.74 x 0.74 x 0.9 mm.
    """
    folder = out / f"heldout_real_anatomy_{cases}"
    if tuple(grid_mm) != REAL_GRID_MM or tuple(crop) != REAL_CROP:
        folder = out / (
            f"heldout_real_anatomy_{cases}_{grid_text(grid_mm)}mm_" + "x".join(map(str, crop))
        )
    if not (folder / "manifest.csv").is_file():
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts" / "build_training_world.py"),
                "--out",
                str(folder),
                "--held-out",
                "--ct-subjects",
                str(cases),
                "--seed",
                str(REAL_SEED),
                "--grid-mm",
                *(str(g) for g in grid_mm),
                "--crop",
                *(str(c) for c in crop),
            ],
            check=True,
        )
    return folder / "manifest.csv"


def cohorts(out: Path, lesion_cases: int = 4) -> list[Path]:
    lesion = CohortSpec.model_validate(
        {
            "n_cases": lesion_cases,
            "seed": LESION_SEED,
            "protocol": "paper_3t",
            "field_of_view_mm": FOV_MM,
            "levels": ("C4", "L2"),
            "lesions": LesionRange(
                types=("meningioma",),
                probability=1.0,
                mean_hu=(150.0, 1000.0),
                axial_diameter_mm=(6.0, 12.0),
                sagittal_diameter_mm=(8.0, 20.0),
            ),
        }
    )
    free = CohortSpec.model_validate(
        {
            "n_cases": 2,
            "seed": FREE_SEED,
            "protocol": "paper_3t",
            "field_of_view_mm": FOV_MM,
            "lesions": None,
        }
    )
    paths = []
    lesion_name = "heldout_lesions" if lesion_cases == 4 else f"heldout_lesions_{lesion_cases}"
    for name, spec in ((lesion_name, lesion), ("heldout_free", free)):
        folder = out / name
        if not (folder / "manifest.csv").is_file():
            generate_cohort(spec, folder, overwrite=True)
        paths.append(folder / "manifest.csv")
    return paths


def _uncertainty_rows(pool: dict[str, list[tuple[np.ndarray, np.ndarray]]]) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {}
    for region, parts in pool.items():
        if not parts:
            continue
        err = np.concatenate([p[0] for p in parts]).astype(np.float64)
        sd = np.concatenate([p[1] for p in parts]).astype(np.float64)
        if err.size < 3:
            continue
        pick = rng.choice(err.size, min(err.size, SPEARMAN_MAX), replace=False)
        out[region] = {
            "voxels": int(err.size),
            "pearson": float(stats.pearsonr(sd, err).statistic),
            "spearman": float(stats.spearmanr(sd[pick], err[pick]).statistic),
            "coverage_95": float(np.mean(err <= 1.96 * sd)),
            "mean_sd_hu": float(sd.mean()),
            "mae_hu": float(err.mean()),
        }
    return out


def evaluate(
    method: str,
    manifests: list[Path],
    mc_passes: int,
    *,
    mask_outside_body: bool | None = None,
    window: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Metrics of one method; ``mc_passes`` 0: no uncertainty maps (one pass).

    ``window`` overrides the models' sliding-window settings (``patch_size``, ``overlap``).
    """
    window = window or {}
    synth: Any
    if method == "baseline":
        synth = BaselineSynthesizer()
    elif method in SHIPPED_MODELS:
        synth = load_shipped_model(method)
    else:  # a model folder
        synth = SynthesisModel.load(method)
    maes: list[float] = []
    dices: list[float] = []
    tissue_mae: list[dict[str, float]] = []
    lesions: list[dict[str, Any]] = []
    pool: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {
        "air/fat": [],
        "soft": [],
        "bone": [],
        "lesion": [],
    }
    start = time.perf_counter()
    for manifest in manifests:
        for record in read_manifest(manifest):
            case = load_case(record)
            if method == "baseline":
                result = synth.synthesize(case.mr)
            elif mc_passes == 0:
                result = synth.synthesize(case.mr, mask_outside_body=mask_outside_body, **window)
            else:
                result = synth.synthesize(
                    case.mr,
                    uncertainty=True,
                    mc_passes=mc_passes,
                    mask_outside_body=mask_outside_body,
                    **window,
                )
            ct = case.ct
            sct = CTVolume(np.asarray(result.sct.array, np.float32), ct.affine)
            m = image_metrics(ct, sct)
            maes.append(m.mae_hu)
            dices.append(m.bone_dice[250.0])
            tissue_mae.append(m.mae_by_tissue_hu)
            if case.lesion_labels is not None and np.any(case.lesion_labels.array):
                for row in measure_lesions(ct, sct, case.lesion_labels):
                    lesions.append(
                        {
                            "case_id": case.case_id,
                            "ct_mean_hu": row.ct.roi.mean_hu,
                            "sct_mean_hu": row.sct.roi.mean_hu,
                            "ct_visible": row.ct.visible,
                            "sct_visible": row.sct.visible,
                            "ct_diameters_mm": [
                                row.ct.diameter_axial_mm,
                                row.ct.diameter_sagittal_mm,
                            ],
                            "sct_diameters_mm": [
                                row.sct.diameter_axial_mm,
                                row.sct.diameter_sagittal_mm,
                            ],
                            "ct_cnr": row.ct.cnr,
                            "sct_cnr": row.sct.cnr,
                        }
                    )
            if result.total_sd is not None:
                ct_hu = np.asarray(ct.array, np.float32)
                err = np.abs(np.asarray(sct.array) - ct_hu)
                sd = np.asarray(result.total_sd.array, np.float32)
                body = body_mask_from_ct(ct_hu)
                pool["air/fat"].append((err[body & (ct_hu < -30)], sd[body & (ct_hu < -30)]))
                soft = body & (ct_hu >= -30) & (ct_hu < 150)
                pool["soft"].append((err[soft], sd[soft]))
                pool["bone"].append((err[body & (ct_hu >= 150)], sd[body & (ct_hu >= 150)]))
                if case.lesion_labels is not None:
                    inside = np.asarray(case.lesion_labels.array) > 0
                    pool["lesion"].append((err[inside], sd[inside]))
    eligible = [
        r
        for r in lesions
        if r["ct_visible"]
        and r["ct_mean_hu"] >= CALCIFIED_HU
        and max(r["ct_diameters_mm"]) >= MIN_DIAMETER_MM
    ]
    return {
        "method": method,
        "cases": len(maes),
        "body_mae_hu": float(np.mean(maes)),
        "body_mae_hu_per_case": [float(v) for v in maes],
        "bone_dice_250hu": float(np.nanmean(dices)),
        "mae_by_tissue_hu": {
            k: float(np.nanmean([t[k] for t in tissue_mae])) for k in tissue_mae[0]
        },
        "lesions": lesions,
        "detected": sum(bool(r["sct_visible"]) for r in eligible),
        "eligible": len(eligible),
        "uncertainty": _uncertainty_rows(pool),
        "seconds": time.perf_counter() - start,
    }


def card_figures(
    result: dict[str, Any],
    lesion_cases: int,
    mc_passes: int,
    *,
    real_cases: int = 0,
    real_grid_mm: tuple[float, ...] = REAL_GRID_MM,
) -> dict[str, Any]:
    """One method's held-out figures as a model card's ``held_out_validation`` section.

    ``real_cases`` > 0: the figures are of the real-anatomy held-out set of that many cases.
    """
    low, high = _wilson(result["detected"], result["eligible"])
    cohort = (
        f"world: procedural phantoms; {lesion_cases} with a calcified intradural meningioma "
        f"(seed {LESION_SEED}) + 2 lesion-free (seed {FREE_SEED}); paper_3t grid, FOV {FOV_MM} mm"
    )
    if real_cases:
        cohort = (
            f"world: real anatomy; {real_cases} new subjects (deformed, realistic paper_3t MRI) "
            "from held-out patient C (example_ct_dicom, never in training), "
            f"{grid_text(real_grid_mm)} mm grid, spine "
            f"crop, one calcified intradural meningioma each (seed {REAL_SEED})"
        )
    figures: dict[str, Any] = {
        "cohort": cohort,
        "command": (
            "benchmarks/synthesis_accuracy.py "
            f"--lesion-cases {lesion_cases} --mc-passes {mc_passes}"
            + (f" --real-anatomy --real-cases {real_cases}" if real_cases else "")
            + (
                f" --real-grid-mm {' '.join(f'{g:g}' for g in real_grid_mm)}"
                if real_cases and tuple(real_grid_mm) != REAL_GRID_MM
                else ""
            )
            + " --record-in-cards"
        ),
        "date_utc": time.strftime("%Y-%m-%d", time.gmtime()),
        "body_mae_hu": round(result["body_mae_hu"], 1),
        "mae_by_tissue_hu": {k: round(v, 1) for k, v in result["mae_by_tissue_hu"].items()},
        "bone_dice_250hu": round(result["bone_dice_250hu"], 3),
        "calcified_lesions_visible": (
            f"{result['detected']}/{result['eligible']} lesions >= {MIN_DIAMETER_MM:g} mm and "
            f">= {CALCIFIED_HU:g} HU visible on the sCT (Wilson 95% CI "
            f"{100 * low:.0f}-{100 * high:.0f}%)"
        ),
    }
    for region, v in result["uncertainty"].items():
        figures[f"uncertainty_{region.replace('/', '_')}"] = (
            f"SD-|error| Pearson {v['pearson']:.2f}, Spearman {v['spearman']:.2f}; 95% interval "
            f"coverage {v['coverage_95']:.2f}; mean SD {v['mean_sd_hu']:.0f} HU, "
            f"MAE {v['mae_hu']:.0f} HU"
        )
    return figures


def _wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n``."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/bench_synthesis_accuracy"))
    parser.add_argument("--mc-passes", type=int, default=6, help="0: no uncertainty")
    parser.add_argument(
        "--no-mask",
        action="store_true",
        help="diagnostic: keep the network's output outside the MRI body mask (models only)",
    )
    parser.add_argument(
        "--methods",
        default="baseline,product_like,lesion_aware",
        help="comma-separated: baseline, shipped model names or model folders",
    )
    parser.add_argument("--patch", default=None, help="sliding window, e.g. 96,96,48")
    parser.add_argument("--overlap", type=float, default=None, help="sliding-window overlap")
    parser.add_argument(
        "--lesion-cases",
        type=int,
        default=4,
        help="cases with a calcified meningioma (seed 301; more cases narrow the detection CI)",
    )
    parser.add_argument(
        "--real-anatomy",
        action="store_true",
        help="also measure on the real-anatomy held-out set (patient C, lesions inserted)",
    )
    parser.add_argument("--real-cases", type=int, default=6, help="real-anatomy held-out cases")
    parser.add_argument(
        "--real-grid-mm",
        type=float,
        nargs="+",
        default=list(REAL_GRID_MM),
        help="grid of the real-anatomy held-out set: one value or three (L P S); 0.74 0.74 0.9 "
        "is the shipped models' planned grid, which they do not resample",
    )
    parser.add_argument(
        "--real-crop",
        type=int,
        nargs=3,
        default=None,
        help="its crop around the spine, voxels (default 96 96 72 at 1 mm, the same field of "
        "view on another grid)",
    )
    parser.add_argument(
        "--real-only", action="store_true", help="only the real-anatomy held-out set"
    )
    parser.add_argument(
        "--record-in-cards",
        action="store_true",
        help="write each shipped model's figures into its model card (held_out_validation)",
    )
    args = parser.parse_args()
    if len(args.real_grid_mm) not in (1, 3):
        parser.error("--real-grid-mm takes one value or three")
    if args.real_only:
        args.real_anatomy = True
    args.real_grid_mm = tuple(args.real_grid_mm)
    if args.real_crop is None:
        # the training world's field of view (96 x 96 x 72 mm) on the asked grid
        spacing = args.real_grid_mm * 3 if len(args.real_grid_mm) == 1 else args.real_grid_mm
        args.real_crop = tuple(
            round(fov / g) for fov, g in zip((96.0, 96.0, 72.0), spacing, strict=True)
        )
    args.out.mkdir(parents=True, exist_ok=True)
    window: dict[str, Any] = {}
    if args.patch:
        window["patch_size"] = tuple(int(p) for p in args.patch.split(","))
    if args.overlap is not None:
        window["overlap"] = args.overlap
    mask = False if args.no_mask else None
    worlds = {} if args.real_only else {"procedural": cohorts(args.out, args.lesion_cases)}
    if args.real_anatomy:
        worlds["real_anatomy"] = [
            real_anatomy_cohort(args.out, args.real_cases, args.real_grid_mm, args.real_crop)
        ]
    all_results = {
        world: [
            evaluate(m, paths, args.mc_passes, mask_outside_body=mask, window=window)
            for m in args.methods.split(",")
        ]
        for world, paths in worlds.items()
    }
    methods = [Path(m).parent.name if "/" in m else m for m in args.methods.split(",")]
    name = "results_" + "_".join(methods) + ("_nomask" if args.no_mask else "")
    if args.lesion_cases != 4:
        name += f"_{args.lesion_cases}lesioncases"
    if window:
        name += "_window_" + "_".join(str(v) for v in window.values()).replace(" ", "")
    if args.real_anatomy:
        name += f"_real{args.real_cases}"
        if args.real_grid_mm != REAL_GRID_MM:
            name += f"_{grid_text(args.real_grid_mm)}mm"
    if args.real_only:
        name += "_realonly"
    name += ".json"
    payload: Any = all_results if args.real_anatomy else all_results["procedural"]
    (args.out / name).write_text(json.dumps(payload, indent=2, default=float))
    if args.record_in_cards:
        for world, results in all_results.items():
            real = args.real_cases if world == "real_anatomy" else 0
            section = "held_out_validation" + ("_real_anatomy" if real else "")
            for result in results:
                if result["method"] in SHIPPED_MODELS:
                    figures = card_figures(
                        result,
                        args.lesion_cases,
                        args.mc_passes,
                        real_cases=real,
                        real_grid_mm=args.real_grid_mm,
                    )
                    update_card(shipped_model_path(result["method"]), **{section: figures})
                    print(f"recorded {section} in {shipped_model_path(result['method'])}")
    for world, results in all_results.items():
        _print_table(world, results, args)


def _print_table(world: str, results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    if world == "procedural":
        print(
            f"held-out phantoms: {args.lesion_cases} calcified meningioma cases "
            f"(seed {LESION_SEED}) + 2 lesion-free "
            f"(seed {FREE_SEED}); paper_3t grid, FOV {FOV_MM} mm; MC passes {args.mc_passes}"
        )
    else:
        print(
            f"held-out real anatomy: {args.real_cases} new subjects from patient C "
            f"(example_ct_dicom), one calcified meningioma each (seed {REAL_SEED}), "
            f"{grid_text(args.real_grid_mm)} mm grid, crops {tuple(args.real_crop)}; "
            f"MC passes {args.mc_passes}"
        )
    print(
        "| method | body MAE HU (target <= 35) | MAE air/fat, soft, bone HU | "
        "bone Dice 250 HU (>= 0.9) | "
        "calcified lesions >= 5 mm: sCT/CT visible | sCT lesion mean HU (CT) | s |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:
        hu = ", ".join(f"{x['sct_mean_hu']:.0f} ({x['ct_mean_hu']:.0f})" for x in r["lesions"])
        low, high = _wilson(r["detected"], r["eligible"])
        det = f"{r['detected']}/{r['eligible']} (95% CI {100 * low:.0f}-{100 * high:.0f}%)"
        tissue = ", ".join(f"{v:.0f}" for v in r["mae_by_tissue_hu"].values())
        print(
            f"| {r['method']} | {r['body_mae_hu']:.1f} | {tissue} | "
            f"{r['bone_dice_250hu']:.3f} | {det} | "
            f"{hu} | {r['seconds']:.0f} |"
        )
    print()
    print(
        "uncertainty: total SD vs |error| (Pearson r / Spearman rho / 95% coverage / mean SD HU "
        "/ MAE HU)"
    )
    print("| method | air/fat | soft | bone | lesion |")
    print("|---|---|---|---|---|")
    for r in results:
        u = r["uncertainty"]
        if not u:
            print(f"| {r['method']} | - | - | - | - |")
            continue
        cells = []
        for region in ("air/fat", "soft", "bone", "lesion"):
            v = u.get(region)
            cells.append(
                "-"
                if v is None
                else f"{v['pearson']:.2f} / {v['spearman']:.2f} / {v['coverage_95']:.2f} / "
                f"{v['mean_sd_hu']:.0f} / {v['mae_hu']:.0f}"
            )
        print(f"| {r['method']} | " + " | ".join(cells) + " |")
    print()


if __name__ == "__main__":
    main()
