"""Validation speed: one 256 x 256 x 96 case stage by stage, and cohort throughput on Dask.

Usage: ``python benchmarks/validation_case.py [--repeats N] [--cohort N] [--register]``

The case is a spine-like phantom (:class:`~synthct.phantom.model.ShapesModel`: body, vertebrae,
discs, canal, cord and two calcified meningiomas) rendered as CT and 2-echo MRI on a
256 x 256 x 96 grid of 0.74 x 0.74 x 0.9 mm (the paper's voxels), with the failure sCT (the
same anatomy without the lesions, as the commercial sCT of Fischer et al. rendered them) and
the lesion label map, written as NIfTI files. Timed as ``synthct validate`` runs it:

1. One case, no registration, no figures (the target: <= 5 s on 2 cores), best and median of
   ``--repeats`` runs of :func:`~synthct.validation.case.validate_case`, per stage; then the
   same case with the lesion figures and (``--register``) with rigid registration of an sCT
   moved by 3 degrees and 4 mm.
2. Cohort throughput: ``--cohort`` such cases through
   :func:`~synthct.validation.runner.run_validation` in this process (the baseline) and on a
   local Dask cluster of 1 and 2 worker processes (cluster start-up included), in cases per
   minute.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from synthct.geometry import Geometry
from synthct.imaging.labels import Tissue
from synthct.io import write_volume
from synthct.phantom.ct import render_ct
from synthct.phantom.model import Box, Cylinder, Shape, ShapesModel, Sphere
from synthct.phantom.mri import render_mri
from synthct.phantom.protocols import PAPER_3T
from synthct.validation.case import ValidationSettings, validate_case
from synthct.validation.manifest import CaseSpec
from synthct.validation.runner import run_validation
from synthct.volume import LabelMap, SyntheticCT

SHAPE = (256, 256, 96)
SPACING_MM = (0.74, 0.74, 0.9)
LESIONS = ((4.0, 22.0, 12.0, 4.0), (-3.0, 16.0, -14.0, 3.0))  # L, P, S centre and radius, mm
STAGES = ("read", "body_mask", "align", "image_metrics", "lesion_metrics", "figures")


def spine_model(*, lesions: bool) -> ShapesModel:
    """Body, vertebrae, discs, canal and cord; the meningiomas when ``lesions``."""
    shapes: list[Shape] = [
        Cylinder(
            tissue=Tissue.SUBCUTANEOUS_FAT, center_lps_mm=(0, 10, 0), radius_mm=80, length_mm=200
        ),
        Cylinder(tissue=Tissue.MUSCLE, center_lps_mm=(0, 10, 0), radius_mm=70, length_mm=200),
    ]
    for level in range(-2, 3):
        z = level * 30.0
        shapes += [
            Box(tissue=Tissue.CORTICAL_BONE, center_lps_mm=(0, -15, z), size_mm=(40, 30, 24)),
            Box(tissue=Tissue.CANCELLOUS_BONE, center_lps_mm=(0, -15, z), size_mm=(38, 28, 22)),
            Box(tissue=Tissue.DISC, center_lps_mm=(0, -15, z + 15), size_mm=(38, 28, 6)),
            Box(tissue=Tissue.CORTICAL_BONE, center_lps_mm=(0, 38, z), size_mm=(30, 10, 20)),
        ]
    shapes += [
        Cylinder(tissue=Tissue.DURA, center_lps_mm=(0, 18, 0), radius_mm=12, length_mm=200),
        Cylinder(tissue=Tissue.CSF, center_lps_mm=(0, 18, 0), radius_mm=11.5, length_mm=200),
        Cylinder(tissue=Tissue.SPINAL_CORD, center_lps_mm=(0, 14, 0), radius_mm=4, length_mm=200),
    ]
    if lesions:
        for l_mm, p_mm, s_mm, r_mm in LESIONS:
            centre = (l_mm, p_mm, s_mm)
            shapes += [
                Sphere(tissue=Tissue.MENINGIOMA, center_lps_mm=centre, radius_mm=r_mm),
                Sphere(tissue=Tissue.CALCIFICATION, center_lps_mm=centre, radius_mm=0.7 * r_mm),
            ]
    return ShapesModel(shapes, background=Tissue.AIR)


def write_case(folder: Path, case_id: str, *, seed: int = 0, moved: bool = False) -> CaseSpec:
    """Render and write one case; ``moved`` shifts and turns the sCT's (and MRI's) frame."""
    origin = -(np.asarray(SHAPE) - 1) / 2 * np.asarray(SPACING_MM)
    geometry = Geometry.from_parameters(SHAPE, SPACING_MM, origin)
    with_lesions = spine_model(lesions=True)
    ct = render_ct(with_lesions, geometry, supersample=1, seed=seed)
    sct_hu = render_ct(spine_model(lesions=False), geometry, supersample=1, seed=seed + 1000)
    mri = render_mri(with_lesions, geometry, PAPER_3T, supersample=1, seed=seed)
    tissue = with_lesions.labels_on(geometry)
    labels = np.zeros(SHAPE, dtype=np.uint8)
    for n, (l_mm, p_mm, s_mm, _) in enumerate(LESIONS, start=1):
        index = geometry.lps_to_index((l_mm, p_mm, s_mm))
        box = tuple(slice(int(c - 12), int(c + 13)) for c in np.rint(index))
        local = np.isin(tissue[box], (Tissue.MENINGIOMA, Tissue.CALCIFICATION))
        labels[box][local] = n
    sct_affine = geometry.affine
    if moved:
        from scipy.spatial.transform import Rotation

        motion = np.eye(4)
        motion[:3, :3] = Rotation.from_euler("xyz", [1.0, 2.0, 2.0], degrees=True).as_matrix()
        motion[:3, 3] = (2.0, -3.0, 1.5)
        sct_affine = motion @ geometry.affine
        mri = mri.on_grid(mri.array, sct_affine)
    folder = folder / case_id
    folder.mkdir(parents=True)
    write_volume(ct, folder / "ct.nii.gz")
    write_volume(SyntheticCT(sct_hu.array, sct_affine), folder / "sct.nii.gz")
    write_volume(mri, folder / "mri.nii.gz")
    write_volume(LabelMap(labels, geometry.affine), folder / "lesions.nii.gz")
    return CaseSpec(
        case_id=case_id,
        ct=folder / "ct.nii.gz",
        sct=folder / "sct.nii.gz",
        mri=(folder / "mri.nii.gz",),
        lesions=folder / "lesions.nii.gz",
    )


def time_case(
    case: CaseSpec, settings: ValidationSettings, repeats: int, figure_dir: Path | None = None
) -> tuple[dict[str, list[float]], dict[str, object]]:
    runs: dict[str, list[float]] = {}
    row: dict[str, object] = {}
    for _ in range(repeats):
        start = time.perf_counter()
        result = validate_case(case, settings, figure_dir=figure_dir)
        total = time.perf_counter() - start
        if not result.ok:
            raise SystemExit(f"benchmark case failed: {result.error}")
        for stage in STAGES:
            runs.setdefault(stage, []).append(result.timings_s.get(stage, 0.0))
        runs.setdefault("total", []).append(total)
        row = result.case_row
    return runs, row


def print_stages(title: str, runs: dict[str, list[float]]) -> None:
    print(f"\n{title}")
    print(f"{'stage':<16} {'best s':>8} {'median s':>9}")
    print("-" * 35)
    for stage, values in runs.items():
        if max(values) == 0.0:
            continue
        print(f"{stage:<16} {min(values):8.2f} {statistics.median(values):9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cohort", type=int, default=4, help="cases in the throughput run")
    parser.add_argument("--register", action="store_true", help="also time the registration")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"validation of one {' x '.join(map(str, SHAPE))} case; {cores} CPU cores")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        case = write_case(folder, "bench")
        print(f"(phantom rendered and written in {time.perf_counter() - start:.1f} s)")
        settings = ValidationSettings()
        validate_case(case, settings)  # warm the imports and caches
        runs, row = time_case(case, settings, args.repeats)
        print_stages("one case, no registration, no figures (target <= 5 s on 2 cores)", runs)
        best = min(runs["total"])
        print(
            f"{'verdict':<16} {'met' if best <= 5.0 else 'MISSED'} "
            f"(visible CT {row['n_visible_ct']}/{row['n_lesions']}, "
            f"sCT {row['n_visible_sct']}/{row['n_lesions']}, MAE {row['mae_hu']:.1f} HU)"
        )
        runs, _ = time_case(case, settings, 1, figure_dir=folder / "figures")
        print_stages("the same case with the lesion figures", runs)
        if args.register:
            moved = write_case(folder, "moved", moved=True)
            runs, row = time_case(moved, ValidationSettings(rigid_registration=True), 1)
            print_stages("an sCT moved by 3 deg / 4 mm, with --register", runs)
            print(
                f"registration: MAE {row['registration_mae_before_hu']:.1f} -> "
                f"{row['registration_mae_after_hu']:.1f} HU, NCC "
                f"{row['registration_ncc_before']:.3f} -> {row['registration_ncc_after']:.3f}"
            )

        cases = [case] + [
            write_case(folder, f"c{n}", seed=n) for n in range(1, max(args.cohort, 1))
        ]
        print(f"\ncohort throughput, {len(cases)} cases (no figures; cluster start-up included)")
        print(
            f"{'executor':<24} {'wall s':>8} {'1st case s':>11} {'cases/min':>10} {'vs serial':>10}"
        )
        print("-" * 67)
        baseline = None
        executors = (("this process (serial)", 0), ("Dask, 1 worker", 1), ("Dask, 2 workers", 2))
        for label, workers in executors:
            out = folder / f"out-{workers}"
            done: list[float] = []
            start = time.perf_counter()
            summary = run_validation(
                cases,
                out,
                settings,
                n_workers=workers,
                figures=False,
                report_writer=None,
                progress=lambda _, done=done: done.append(time.perf_counter()),
            )
            wall = time.perf_counter() - start
            if summary.failures:
                raise SystemExit(f"cohort case failed: {summary.failures[0].error}")
            baseline = baseline or wall
            print(
                f"{label:<24} {wall:8.1f} {done[0] - start:11.1f} {60 * len(cases) / wall:10.1f} "
                f"{baseline / wall:9.2f}x"
            )
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"(1-minute load average at the end: {load:.1f} on {cores} cores)")


if __name__ == "__main__":
    main()
