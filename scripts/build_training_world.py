"""Build the shipped models' training cohort (and the real-anatomy held-out set) of the new world.

Issue #15: the shipped synthesis models are trained on 100 or more cases of the new world:

* **real-anatomy subjects** drawn from patients A (``example_ct_sm`` with its TotalSegmentator
  labels ``example_seg_fast``; abdomen, 3 mm) and B (``chest_ct`` and ``chest_abdomen_cta``,
  1.5 mm, no labels) in ``../shared/data/real/totalsegmentator``: each CT resampled to an
  LPS grid (``--grid-mm``, isotropic or per axis), a crop around the spine (``--crop``, random
  offset), then a new subject (:func:`~synthct.phantom.subject_variation.make_subject`:
  elastic deformation, scaling, marrow by age) with realistic MRI (per-subject relaxation,
  fields, k-space, flow) on the paper's two-echo 3 T protocol (``paper_3t``: TR 7 ms,
  TE 1.15/2.30 ms), lesion-free;
* **procedural spine phantoms** with thorax (lungs, aorta, ribs) and trabecular texture on, at
  the paper_3t grid (0.74 x 0.74 x 0.9 mm, 120 x 120 x 64 mm field of view), half with the
  classic MRI (as the demo's cohort) and half with the realistic one, extradural degenerative
  lesions (disc herniation, OPLL, OLF) in about half of the cases (as the old cohort);
* with ``--plain-procedural``, **plain procedural phantoms** (no thorax, uniform marrow, classic
  MRI, the same lesions): the phantoms of the demo's paper cohort and of the held-out procedural
  benchmark. Without them a model fine-tuned on this world lost that world (session 12: body MAE
  52.7 / 55.1 HU, bone Dice 0.83 / 0.65 there, against 28.5 / 30.2 HU and 0.98 before).

Patient C (``example_ct_dicom``) is never used for training: ``--held-out`` writes instead the
real-anatomy held-out set, new subjects from patient C with one calcified meningioma each at the
labelled cord.

Every case is written atomically into its own folder, so a rerun resumes where it stopped (a
finished case is kept, not redone); the manifest over all cases is written last.

Run: OMP_NUM_THREADS=1 .venv/bin/python scripts/build_training_world.py --out DIR
     [--ct-subjects 72] [--procedural 36] [--plain-procedural N] [--seed 101] [--grid-mm 1.0]
     [--held-out]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synthct.imaging.labels import Tissue
from synthct.io import read_volume
from synthct.io.atomic import write_json_atomic, write_text_atomic
from synthct.phantom import cohort_files as files
from synthct.phantom.ct_derived import tissue_map_from_ct
from synthct.phantom.ct_insertion import (
    random_calcified_meningioma,
    write_ct_derived_case,
)
from synthct.phantom.realism.patches import on_common_grid
from synthct.phantom.spine_crop import spine_crop
from synthct.phantom.subject_variation import SubjectVariation
from synthct.resample import resample_to
from synthct.volume import CTVolume, LabelMap

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "totalsegmentator"
PROCEDURAL_FOV_MM = (120.0, 120.0, 64.0)
CROP_JITTER_MM = 12.0


@dataclass(frozen=True)
class Scan:
    """A real CT on the common grid, its labels there (nearest) or None, and its patient."""

    name: str
    patient: str
    ct: CTVolume
    labels: LabelMap | None


def load_scans(grid_mm: float | Sequence[float], *, held_out: bool) -> list[Scan]:
    """Training scans (patients A and B), or with ``held_out`` the held-out one (patient C)."""

    def ct(name: str) -> CTVolume:
        v = read_volume(REAL / name, kind="ct")
        assert isinstance(v, CTVolume)
        return on_common_grid(v, grid_mm)

    def labels(name: str, grid: CTVolume) -> LabelMap:
        v = read_volume(REAL / name, kind="label")
        assert isinstance(v, LabelMap)
        return resample_to(v, grid)

    if held_out:
        c = ct("example_ct_dicom")
        return [Scan("example_ct_dicom", "C", c, labels("example_seg_dicom.nii.gz", c))]
    a = ct("example_ct_sm.nii.gz")
    return [
        Scan("example_ct_sm", "A", a, labels("example_seg_fast.nii.gz", a)),
        Scan("chest_ct", "B", ct("chest_ct.nii.gz"), None),
        Scan("chest_abdomen_cta", "B", ct("chest_abdomen_cta.nii.gz"), None),
    ]


def write_subjects(
    scans: Sequence[Scan],
    count: int,
    out: Path,
    *,
    seed: int,
    crop: Sequence[int],
    with_lesion: bool,
) -> list[Path]:
    """``count`` real-anatomy subjects drawn round-robin over ``scans``; their case folders.

    Patient A's two scans-worth: A (one labelled CT) gets as many subjects as B's two CTs
    together, so both patients weigh alike.
    """
    order = [s for s in scans if s.patient == "A"] * 2 + [s for s in scans if s.patient != "A"]
    if not any(s.patient == "A" for s in scans):
        order = list(scans)
    cases = []
    for i in range(count):
        scan = order[i % len(order)]
        name = f"{scan.name}-{i:03d}"
        folder = out / name
        if not (folder / files.MANIFEST_CSV).exists():
            rng = np.random.default_rng([seed, i])
            ct, labels = spine_crop(scan.ct, scan.labels, crop, rng=rng, jitter_mm=CROP_JITTER_MM)
            lesions = []
            if with_lesion and labels is not None:
                tissue = tissue_map_from_ct(ct, labels)
                if np.any(np.asarray(tissue.array) == Tissue.SPINAL_CORD):
                    lesions.append(
                        random_calcified_meningioma(
                            np.asarray(tissue.array), ct.geometry, rng, seed=seed + i
                        )
                    )
            write_ct_derived_case(
                ct,
                folder,
                labels=labels,
                lesions=lesions,
                protocol="paper_3t",
                supersample=2,
                seed=seed + 7 * i,
                variation=SubjectVariation(),
                mr_realism="realistic",
            )
        cases.append(folder / files.case_id(0))
    return cases


def write_procedural(
    count: int, out: Path, *, seed: int, mr_realism: str, anatomy: bool = True
) -> list[Path]:
    """``count`` procedural phantoms of one MRI realism.

    ``anatomy``: thorax (lungs, aorta, ribs) and trabecular texture; without them the phantoms
    are those of the demo's paper cohort and of the held-out procedural benchmark (uniform
    marrow, no thorax), the world the BRIEF's procedural targets are measured on.
    """
    from synthct.phantom.cohort import LesionRange, generate_cohort, load_cohort_spec

    spec = load_cohort_spec(
        n_cases=count,
        seed=seed,
        protocol="paper_3t",
        field_of_view_mm=PROCEDURAL_FOV_MM,
        levels=("C4", "L2"),
        thorax=anatomy,
        trabecular_texture=anatomy,
        mr_realism=mr_realism,
        lesions=LesionRange(types=("disc_herniation", "opll", "olf"), probability=0.5),
    )
    generate_cohort(spec, out, resume=out.exists())
    return [out / files.case_id(i) for i in range(count)]


def write_manifest(out: Path, cases: Sequence[Path]) -> Path:
    """One manifest over ``cases`` (paths relative to ``out``; ids are the relative folders)."""
    rows = []
    for case in cases:
        row = files.manifest_row(out, case)
        row["case_id"] = case.relative_to(out).as_posix().replace("/", "_")
        rows.append(row)
    write_text_atomic(out / files.MANIFEST_CSV, files.manifest_rows_csv(rows))
    return out / files.MANIFEST_CSV


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ct-subjects", type=int, default=72, help="real-anatomy subjects")
    parser.add_argument("--procedural", type=int, default=36, help="procedural phantoms")
    parser.add_argument(
        "--plain-procedural",
        type=int,
        default=0,
        help="procedural phantoms without thorax and texture, classic MRI (the demo's world)",
    )
    parser.add_argument("--seed", type=int, default=101)
    parser.add_argument(
        "--grid-mm",
        type=float,
        nargs="+",
        default=[1.0],
        help="real-anatomy voxel size: one value (isotropic) or three (L P S), e.g. the "
        "models' planned 0.74 0.74 0.9 mm, on which their inference does not resample",
    )
    parser.add_argument("--crop", type=int, nargs=3, default=(96, 96, 72), help="voxels")
    parser.add_argument("--held-out", action="store_true", help="patient C, one lesion each")
    args = parser.parse_args(argv)
    if len(args.grid_mm) not in (1, 3):
        parser.error("--grid-mm takes one value or three")
    grid: float | tuple[float, ...] = (
        args.grid_mm[0] if len(args.grid_mm) == 1 else tuple(args.grid_mm)
    )
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    scans = load_scans(grid, held_out=args.held_out)
    cases = write_subjects(
        scans,
        args.ct_subjects,
        args.out / "real_anatomy",
        seed=args.seed,
        crop=args.crop,
        with_lesion=args.held_out,
    )
    real_s = time.perf_counter() - start
    if not args.held_out and args.procedural > 0:
        half = args.procedural // 2
        for realism, n, seed in (
            ("classic", args.procedural - half, args.seed),
            ("realistic", half, args.seed + 1),
        ):
            if n > 0:
                cases += write_procedural(
                    n, args.out / f"procedural_{realism}", seed=seed, mr_realism=realism
                )
    if not args.held_out and args.plain_procedural > 0:
        cases += write_procedural(
            args.plain_procedural,
            args.out / "procedural_plain",
            seed=args.seed + 2,
            mr_realism="classic",
            anatomy=False,
        )
    manifest = write_manifest(args.out, cases)
    elapsed = time.perf_counter() - start
    summary = {
        "command": "scripts/build_training_world.py " + " ".join(argv or []),
        "held_out": args.held_out,
        "scans": [{"name": s.name, "patient": s.patient} for s in scans],
        "grid_mm": grid,
        "crop_voxels": list(args.crop),
        "seed": args.seed,
        "real_anatomy_cases": args.ct_subjects,
        "procedural_cases": 0 if args.held_out else args.procedural,
        "plain_procedural_cases": 0 if args.held_out else args.plain_procedural,
        "n_cases": len(cases),
        "real_anatomy_generation_s": round(real_s, 1),
        "generation_s": round(elapsed, 1),
    }
    write_json_atomic(args.out / "world.json", summary)
    print(json.dumps(summary, indent=1))
    return manifest


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
