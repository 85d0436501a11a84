"""Dataset QA on CT-derived cases of the real CTs: registration recovery and what is flagged.

Usage: ``python benchmarks/dataset_qa.py [--out DIR] [--half 30]``

Builds, from the three real CTs in ``../shared/data/real/totalsegmentator`` (example_ct 3 mm,
chest_ct and chest_abdomen_cta 1.5 mm), CT-derived paired cases with
:func:`synthct.phantom.derived_pairs.write_derived_pairs`: the multi-echo MRI simulated from
each CT crop (``2 * half`` voxels a side) and resampled onto its own coarser grid, every CT
header moved by a known 4 degree rotation about S and a (5, -3, 4) mm shift. Two cases are
broken on purpose: ``wrong01`` holds ex01's MRI (another patient), ``far01`` an MRI 600 mm away.
Then the SynthRAD export, ``dataset check`` and ``dataset split`` as the command line runs them,
and prints per case: MI before/after, the rotation found and its error against the known one,
the shift found, the status and issues; and the time of each step.

Then the split of the QA folder (registered pairs, :mod:`synthct.dataset.pairs`) and, per case
whose registration is applied, the MR-to-CT alignment error at the MR's corners against the
known offset: as the headers have it (the baseline, nothing applied) and with the transform
applied; and what registering the written pair again still finds to undo.

Last, the capture range (on by default, ``--no-reach`` skips it): the MR header of each
well-aligned case moved by a further shift (15-150 mm, along S-I and obliquely), registered
from the headers alone (``search=False``, the registration before the global search) and with
the search (the default); a shift counts as recovered when every MR corner lands within 2 mm
of the truth.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from synthct.dataset.check import check_dataset
from synthct.dataset.export import export_synthrad
from synthct.dataset.pairs import TRANSFORM_COLUMN, read_transform
from synthct.dataset.readers import read_dataset
from synthct.dataset.registration import register_mr_to_ct
from synthct.dataset.split import identical_ct_groups, write_split_folder
from synthct.io import read_volume
from synthct.manifest import read_manifest
from synthct.phantom.derived_pairs import PairSpec, crop_ct, rigid_about, write_derived_pairs
from synthct.volume import CTVolume

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "totalsegmentator"


def specs(half: int) -> list[PairSpec]:
    cts = {}
    for name in ("example_ct", "chest_ct", "chest_abdomen_cta"):
        ct = read_volume(DATA / f"{name}.nii.gz", kind="ct")
        assert isinstance(ct, CTVolume)
        cts[name] = ct
    small = max(8, (2 * half) // 3)  # example_ct has 3 mm voxels
    return [
        PairSpec("ex01", "example", crop_ct(cts["example_ct"], (0.5, 0.5, 0.5), small)),
        PairSpec("ch01", "chest", crop_ct(cts["chest_ct"], (0.5, 0.5, 0.55), half)),
        PairSpec("cta01", "cta", crop_ct(cts["chest_abdomen_cta"], (0.5, 0.5, 0.7), half)),
        PairSpec("cta02", "cta", crop_ct(cts["chest_abdomen_cta"], (0.5, 0.5, 0.3), half)),
        PairSpec(
            "wrong01", "chest2", crop_ct(cts["chest_ct"], (0.5, 0.5, 0.3), half), mr_of="ex01"
        ),
        PairSpec(
            "far01", "far", crop_ct(cts["example_ct"], (0.5, 0.5, 0.25), small),
            mr_shift_mm=(0.0, 0.0, 600.0),
        ),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="keep the outputs here")
    parser.add_argument("--half", type=int, default=30, help="half crop size, 1.5 mm voxels")
    parser.add_argument("--no-reach", dest="reach", action="store_false")
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="dataset_qa_"))
    times = {}
    start = time.perf_counter()
    source = write_derived_pairs(specs(args.half), root / "source", region="TH")
    times["build cases"] = time.perf_counter() - start
    start = time.perf_counter()
    export_synthrad(read_manifest(source), root / "Task1")
    times["export (SynthRAD layout)"] = time.perf_counter() - start
    start = time.perf_counter()
    result = check_dataset(root / "Task1", root / "qa")
    times["check"] = time.perf_counter() - start
    start = time.perf_counter()
    manifest, _ = read_dataset(root / "Task1")
    split = write_split_folder(
        manifest, root / "split", n_folds=2, test_fraction=0.2, seed=0,
        same_content=identical_ct_groups(manifest),
    )  # fmt: skip
    times["split"] = time.perf_counter() - start
    print(f"outputs: {root}")
    print(f"{'case':8} {'MI before':>9} {'MI after':>9} {'rot found':>9} {'rot err':>8} "
          f"{'shift mm':>8}  status  issues")  # fmt: skip
    for row in result.rows:
        rot = row.get("registration_rotation_deg", np.nan)
        print(
            f"{row['case_id']:8} {row.get('mi_before', np.nan):9.3f} "
            f"{row.get('mi_after', np.nan):9.3f} {rot:9.2f} {abs(rot - 4.0):8.2f} "
            f"{row.get('registration_shift_mm', np.nan):8.1f}  {row['status']:6}  "
            + "; ".join(i.split(":")[0] for i in row["issues"])
        )
    print(f"split: test {split.test}, folds {[f['val'] for f in split.folds]} (validation)")
    start = time.perf_counter()
    registered = write_split_folder(
        read_manifest(root / "qa"), root / "split-registered", n_folds=1, test_fraction=0.34
    )
    times["split (registered pairs)"] = time.perf_counter() - start
    print(f"registered pairs: left out {registered.excluded}")
    print_alignment(read_manifest(source), read_manifest(root / "qa"), root / "split-registered")
    for step, seconds in times.items():
        print(f"{step:28} {seconds:6.1f} s")
    if args.reach:
        reach(read_manifest(source))


#: Further header shifts (LPS mm) for the capture range: along S-I and obliquely.
REACH_SHIFTS = [
    (0.0, 0.0, 15.0), (0.0, 0.0, -30.0), (20.0, -15.0, 25.0), (0.0, 0.0, 60.0),
    (-25.0, 20.0, -60.0), (30.0, 0.0, 100.0), (0.0, -30.0, -150.0),
]  # fmt: skip


def reach(source: Any) -> None:
    """Recovered shifts per case, registration from the headers vs with the global search."""
    from synthct.volume import MultiEchoMR

    print("\ncapture range: further MR header shift -> corner error (mm), headers only | search")
    print(f"{'case':8} {'shift mm (L, P, S)':>22} {'headers':>9} {'search':>9} {'s':>5}")
    found = {False: 0, True: 0}
    total = 0
    for case_id in ("ex01", "ch01", "cta01", "cta02"):
        case = source[case_id]
        ct, mr = case.ct(), case.mr()
        shift = np.asarray([float(v) for v in case.extra["offset_shift_mm"].split(";")])
        centre = ct.geometry.index_to_lps((np.asarray(ct.spatial_shape) - 1) / 2) - shift
        truth = rigid_about(float(case.extra["offset_rotation_deg"]), shift, centre)
        for extra in REACH_SHIFTS:
            moved = np.eye(4)
            moved[:3, 3] = extra
            far = MultiEchoMR(mr.array, moved @ mr.affine, protocol=mr.protocol)
            corners = _corners(far.spatial_shape, far.affine)
            undo = truth @ np.linalg.inv(moved)
            expected = corners @ undo[:3, :3].T + undo[:3, 3]
            errors = []
            seconds = 0.0
            for search in (False, True):
                t0 = time.perf_counter()
                result = register_mr_to_ct(far, far.array[0], ct, search=search)
                seconds = time.perf_counter() - t0
                got = corners @ result.matrix[:3, :3].T + result.matrix[:3, 3]
                error = float(np.linalg.norm(got - expected, axis=1).max())
                errors.append(error)
                found[search] += error < 2.0
            total += 1
            label = ", ".join(f"{v:g}" for v in extra)
            print(f"{case_id:8} {label:>22} {errors[0]:9.1f} {errors[1]:9.1f} {seconds:5.1f}")
    print(f"recovered (< 2 mm): headers only {found[False]}/{total}, search {found[True]}/{total}")


def _corners(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    ends = [(0, n - 1) for n in shape]
    ijk = np.array(np.meshgrid(*ends, indexing="ij")).reshape(3, -1).T
    return np.asarray(ijk @ affine[:3, :3].T + affine[:3, 3])


def print_alignment(source: Any, checked: Any, split: Path) -> None:
    """Corner errors (mm) against the known offset: headers, applied transform, pair residual."""
    pairs = read_manifest(split / "manifest.csv")
    print(f"{'case':8} {'header err':>10} {'applied err':>11} {'pair residual':>13}  (mm, max)")
    for case in checked:
        path = str(case.extra.get(TRANSFORM_COLUMN) or "")
        if not path or case.case_id not in pairs.case_ids:
            continue
        truth_case = source[case.case_id]
        ct, mr = truth_case.ct(), truth_case.mr()
        shift = np.asarray([float(v) for v in truth_case.extra["offset_shift_mm"].split(";")])
        centre = ct.geometry.index_to_lps((np.asarray(ct.spatial_shape) - 1) / 2) - shift
        truth = rigid_about(float(truth_case.extra["offset_rotation_deg"]), shift, centre)
        corners = _corners(mr.spatial_shape, mr.affine)
        # far01's MR header lies a further mr_shift_mm away from the anatomy it shows
        mr_shift = np.asarray([float(v) for v in truth_case.extra["mr_shift_mm"].split(";")])
        moved = (corners - mr_shift) @ truth[:3, :3].T + truth[:3, 3]
        header = np.linalg.norm(moved - corners, axis=1).max()  # nothing applied
        found = read_transform(path)
        back = np.array([found.TransformPoint(p.tolist()) for p in moved])
        applied = np.linalg.norm(back - corners, axis=1).max()
        pair = pairs[case.case_id]
        pair_mr, pair_ct = pair.mr(), pair.ct()
        again = register_mr_to_ct(pair_mr, pair_mr.array[0], pair_ct)
        residual = again.displacement_mm(_corners(pair_ct.spatial_shape, pair_ct.affine)).max()
        print(f"{case.case_id:8} {header:10.2f} {applied:11.2f} {residual:13.2f}")


if __name__ == "__main__":
    main()
