"""Real-anatomy tissue maps of the real CTs: per-class voxel fractions and timing, against the
HU-only baseline, in one run.

For each real CT in ``../shared/data/real/totalsegmentator`` (with its TotalSegmentator labels
where there are some), three rows:

* **baseline**: the five HU classes alone (air, fat, soft tissue, cancellous, cortical bone),
  the generator before issue #15;
* **new**: :func:`synthct.phantom.ct_derived.derive_tissue_map` (labels + HU + morphology);
* **subject**: :func:`synthct.phantom.subject_variation.make_subject` (new map, then a seeded
  elastic deformation, scaling and marrow shift applied to CT and map).

Printed: seconds per call (best of ``--repeats``), the structures that came from HU alone, and
the voxel fraction (percent of the CT) of each tissue class.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ct_anatomy.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from synthct.imaging.labels import Tissue
from synthct.io import read_volume
from synthct.phantom.ct_derived import HUClasses, derive_tissue_map
from synthct.phantom.subject_variation import make_subject
from synthct.volume import CTVolume, LabelMap

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "totalsegmentator"
CASES = {
    "example_ct_sm (+example_seg)": ("example_ct_sm.nii.gz", "example_seg.nii.gz"),
    "example_ct_dicom (+example_seg_dicom)": ("example_ct_dicom", "example_seg_dicom.nii.gz"),
    "chest_ct (no labels)": ("chest_ct.nii.gz", None),
    "chest_abdomen_cta (no labels)": ("chest_abdomen_cta.nii.gz", None),
    "example_ct (no labels)": ("example_ct.nii.gz", None),
}


def hu_classes_only(ct: CTVolume) -> np.ndarray:
    """The baseline: five HU classes, no labels, no morphology."""
    c = HUClasses()
    hu = ct.array
    tissue = np.full(hu.shape, Tissue.SOFT_TISSUE, dtype=np.uint8)
    tissue[hu < c.fat_below_hu] = Tissue.SUBCUTANEOUS_FAT
    tissue[hu < c.air_below_hu] = Tissue.AIR
    tissue[hu >= c.soft_below_hu] = Tissue.CANCELLOUS_BONE
    tissue[hu >= c.cancellous_below_hu] = Tissue.CORTICAL_BONE
    return tissue


def best_of(repeats: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """Best wall time of ``repeats`` calls and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def fractions(tissue: np.ndarray) -> dict[str, float]:
    """Percent of voxels in each tissue present."""
    counts = np.bincount(tissue.ravel(), minlength=256)
    return {
        Tissue(int(v)).name.lower(): 100.0 * counts[v] / tissue.size for v in np.flatnonzero(counts)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("synthct.phantom.ct_derived").setLevel(logging.ERROR)
    for title, (ct_name, seg_name) in CASES.items():
        ct = read_volume(DATA / ct_name, kind="ct")
        assert isinstance(ct, CTVolume)
        seg = None
        if seg_name is not None:
            read = read_volume(DATA / seg_name, kind="label")
            assert isinstance(read, LabelMap)
            seg = read
        t_base, base = best_of(args.repeats, lambda ct=ct: hu_classes_only(ct))
        t_new, new = best_of(args.repeats, lambda ct=ct, seg=seg: derive_tissue_map(ct, seg))
        t_subject, subject = best_of(
            args.repeats, lambda ct=ct, seg=seg: make_subject(ct, seg, seed=1)
        )
        rows = {
            "baseline (HU classes)": (t_base, fractions(base)),
            "new (labels+HU+morphology)": (t_new, fractions(new.tissue_map.array)),
            "subject (seed 1)": (t_subject, fractions(subject.tissue_map.array)),
        }
        print(f"\n## {title}: {ct.spatial_shape} voxels of {ct.geometry.spacing_mm} mm")
        print(f"from HU alone: {', '.join(new.hu_only) or 'nothing'}")
        for note in new.notes:
            print(f"note: {note}")
        names = sorted({n for _, f in rows.values() for n in f}, key=lambda n: Tissue[n.upper()])
        print(f"{'tissue %':<18}" + "".join(f"{r:>28}" for r in rows))
        print(f"{'seconds':<18}" + "".join(f"{t:>28.2f}" for t, _ in rows.values()))
        for name in names:
            print(f"{name:<18}" + "".join(f"{f.get(name, 0.0):>28.2f}" for _, f in rows.values()))


if __name__ == "__main__":
    main()
