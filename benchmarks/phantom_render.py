"""Time and peak memory of rendering CT and 2-echo MRI on the paper's grid (338 x 338 x 100).

Usage: ``python benchmarks/phantom_render.py [--repeats N] [--supersample 1 2 3]``

A spine-like :class:`~synthct.phantom.model.ShapesModel` (body, vertebral bodies with cortical
shells, discs, canal, cord, a calcified lesion) is rendered with each supersampling factor;
factor 1 (voxel centres only, no partial volume) is the baseline for the default factor 3,
and the separate CT and MRI renders are the baseline for the joint one-pass ``CT+MRI``.
Time is the best of ``--repeats`` runs without tracing; peak memory is measured in a separate
run with :mod:`tracemalloc` (numpy reports its buffers to it). The process's maximum resident
set size is printed at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable
from functools import partial

from synthct.imaging.labels import Tissue
from synthct.phantom.ct import render_ct
from synthct.phantom.model import Box, Cylinder, Shape, ShapesModel, Sphere
from synthct.phantom.mri import render_ct_and_mri, render_mri
from synthct.phantom.protocols import PAPER_3T


def spine_like_model() -> ShapesModel:
    """A sagittal-FOV spine caricature: 7 vertebrae, discs, canal, cord and a lesion."""
    shapes: list[Shape] = [
        Cylinder(
            tissue=Tissue.SUBCUTANEOUS_FAT, center_lps_mm=(0, 10, 0), radius_mm=60, length_mm=260
        ),
        Cylinder(tissue=Tissue.MUSCLE, center_lps_mm=(0, 10, 0), radius_mm=52, length_mm=260),
    ]
    for level in range(-3, 4):
        z = level * 30.0
        shapes += [
            Box(tissue=Tissue.CORTICAL_BONE, center_lps_mm=(0, -5, z), size_mm=(40, 30, 24)),
            Box(tissue=Tissue.CANCELLOUS_BONE, center_lps_mm=(0, -5, z), size_mm=(38, 28, 22)),
            Box(tissue=Tissue.DISC, center_lps_mm=(0, -5, z + 15), size_mm=(38, 28, 6)),
            Box(tissue=Tissue.CORTICAL_BONE, center_lps_mm=(0, 35, z), size_mm=(30, 12, 20)),
        ]
    shapes += [
        Cylinder(tissue=Tissue.DURA, center_lps_mm=(0, 18, 0), radius_mm=9, length_mm=260),
        Cylinder(tissue=Tissue.CSF, center_lps_mm=(0, 18, 0), radius_mm=8.5, length_mm=260),
        Cylinder(tissue=Tissue.SPINAL_CORD, center_lps_mm=(0, 18, 0), radius_mm=4.5, length_mm=260),
        Sphere(tissue=Tissue.MENINGIOMA, center_lps_mm=(4, 22, 10), radius_mm=4),
        Sphere(tissue=Tissue.CALCIFICATION, center_lps_mm=(4, 22, 10), radius_mm=2.5),
    ]
    return ShapesModel(shapes, background=Tissue.AIR)


def measure(run: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Best wall time (s) over ``repeats`` runs and traced peak memory (MB) of one more run."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    tracemalloc.start()
    run()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return best, peak / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--supersample", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args(argv)
    model = spine_like_model()
    grid = PAPER_3T.geometry()
    n_voxels = grid.shape[0] * grid.shape[1] * grid.shape[2]
    print(f"grid: {grid.describe()}  ({n_voxels / 1e6:.1f} M voxels)")
    print(f"model: {model!r}; CPU cores available: {len(os.sched_getaffinity(0))}")
    print()
    header = f"{'render':<10}{'supersample':>12}{'time_s':>9}{'peak_MB':>9}{'Mvoxel/s':>10}"
    print(header)
    print("-" * len(header))
    for factor in args.supersample:
        cases: dict[str, Callable[[], object]] = {
            "CT": partial(render_ct, model, grid, supersample=factor),
            "MRI 2-echo": partial(render_mri, model, grid, PAPER_3T, supersample=factor),
            "CT+MRI": partial(render_ct_and_mri, model, grid, PAPER_3T, supersample=factor),
        }
        for name, run in cases.items():
            seconds, peak_mb = measure(run, args.repeats)
            rate = n_voxels / seconds / 1e6
            print(f"{name:<10}{factor:>12d}{seconds:>9.2f}{peak_mb:>9.0f}{rate:>10.2f}")
    max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print()
    print(f"process max RSS: {max_rss_mb:.0f} MB (includes Python, numpy, scipy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
