"""Memory of torchrun training ranks: prepared cases shared (memory-mapped) vs one copy per rank.

Under ``torchrun`` every rank samples patches from every training case. With
``training.shared_cases`` (the default) rank ``r`` prepares cases ``r, r + world, ...`` into the
run folder and every rank memory-maps all of them (:mod:`synthct.synthesis.prepared_store`);
off, every rank loads and prepares every case itself (the behaviour before). Both modes train
the same tiny network on the same phantom cohort in this run, with the same steps.

Measured per rank, sampled from ``/proc/<pid>/smaps_rollup`` every 0.1 s during the run:

* RSS: resident pages, shared file pages counted in full in every rank;
* PSS: proportional set size, a page shared by n processes counted 1/n in each: the sum of
  the ranks' PSS is what the machine holds;
* private: pages only this rank maps (its own heap: copies of cases, network, optimiser).

Run: .venv/bin/python benchmarks/ddp_memory.py [--cases 12] [--procs 2] [--iterations 30]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from synthct.synthesis.config import config_to_yaml, load_config

ROOT = Path(__file__).resolve().parents[1]


def _rollup(pid: int) -> dict[str, int]:
    """kB fields of ``/proc/<pid>/smaps_rollup`` (empty when the process is gone)."""
    try:
        text = (Path("/proc") / str(pid) / "smaps_rollup").read_text()
    except OSError:
        return {}
    fields = {}
    for line in text.splitlines()[1:]:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[name.strip()] = int(parts[0])
    return fields


def _ranks(parent: int) -> dict[int, int]:
    """``{rank: pid}`` of the torchrun workers below ``parent``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent:
            for item in environ:
                if item.startswith(b"RANK="):
                    found[int(item[5:])] = int(entry.name)
    return found


def run_mode(manifest: Path, work: Path, shared: bool, procs: int, iterations: int) -> dict:
    """Train under torchrun and return peak RSS/PSS/private per rank and of the sum (MB)."""
    config = load_config(ROOT / "configs" / "phantom_tiny.yaml").with_updates(
        {
            "network": {"dropout": 0.0, "norm": "instance"},
            "training": {
                "iterations": iterations,
                "batch_size": 2 * procs,
                "validation_interval": iterations,
                "checkpoint_interval": iterations,
                "patch_seeding": "per_sample",
                "final_validation": False,
                "curve_png": False,
                "validation_fraction": 0.1,
                "shared_cases": shared,
            },
        }
    )
    name = "shared" if shared else "per-rank"
    path = work / f"{name}.yaml"
    path.write_text(config_to_yaml(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc_per_node", str(procs), "-m", "synthct.cli", "train", str(manifest),
        "--config", str(path), "--output", str(work / name),
    ]  # fmt: skip
    t0 = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peaks: dict[int, dict[str, float]] = {}
    peak_total_pss = 0.0
    while process.poll() is None:
        total = 0.0
        for rank, pid in _ranks(process.pid).items():
            fields = _rollup(pid)
            if not fields:
                continue
            private = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
            now = {"rss": fields.get("Rss", 0), "pss": fields.get("Pss", 0), "private": private}
            best = peaks.setdefault(rank, {"rss": 0.0, "pss": 0.0, "private": 0.0})
            for key, value in now.items():
                best[key] = max(best[key], value / 1024.0)
            total += now["pss"] / 1024.0
        peak_total_pss = max(peak_total_pss, total)
        time.sleep(0.1)
    output = process.stdout.read().decode() if process.stdout else ""
    if process.returncode != 0:
        raise SystemExit(f"torchrun failed ({name}):\n{output[-3000:]}")
    store = work / name / "prepared"
    stored_mb = sum(p.stat().st_size for p in store.rglob("*.npy")) / 2**20 if store.exists() else 0
    return {
        "mode": name,
        "ranks": peaks,
        "total_pss": peak_total_pss,
        "stored_mb": stored_mb,
        "seconds": time.perf_counter() - t0,
    }


def main(argv: list[str] | None = None) -> None:
    """Write a phantom cohort, train it in both modes, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--voxel-size", default="1.5,1.5,1.5", help="MR voxel size, mm")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="synthct-ddp-memory-") as scratch:
        work = Path(scratch)
        cohort = work / "cohort"
        subprocess.run(
            [
                sys.executable, "-m", "synthct.cli", "phantom", "--out", str(cohort),
                "--cases", str(args.cases), "--no-lesions", "--seed", "5",
                "--voxel-size", args.voxel_size,
            ],
            check=True, capture_output=True,
        )  # fmt: skip
        manifest = next(p for p in cohort.iterdir() if p.name.startswith("manifest"))
        from synthct.synthesis.manifest import load_case, read_manifest

        first = load_case(read_manifest(manifest)[0])
        shape = "x".join(str(n) for n in first.ct.spatial_shape)
        results = [
            run_mode(manifest, work, shared, args.procs, args.iterations)
            for shared in (False, True)
        ]
    print(
        f"torchrun training memory, {args.procs} gloo ranks, {args.cases} phantom cases of "
        f"{shape} voxels ({args.voxel_size} mm), tiny network, {args.iterations} steps"
    )
    print(
        f"{'mode':10s} {'rank':>4s} {'peak RSS MB':>12s} {'peak PSS MB':>12s} {'private MB':>11s}"
    )
    for result in results:
        for rank, peak in sorted(result["ranks"].items()):
            print(
                f"{result['mode']:10s} {rank:4d} {peak['rss']:12.0f} {peak['pss']:12.0f} "
                f"{peak['private']:11.0f}"
            )
        print(
            f"{result['mode']:10s} {'all':>4s} {'':12s} {result['total_pss']:12.0f} "
            f"{'':11s}  (store on disk {result['stored_mb']:.0f} MB; {result['seconds']:.0f} s)"
        )
    base, shared = results
    saved = base["total_pss"] - shared["total_pss"]
    print(f"machine total (sum of PSS): per-rank {base['total_pss']:.0f} MB, shared "
          f"{shared['total_pss']:.0f} MB: {saved:.0f} MB less")  # fmt: skip


if __name__ == "__main__":
    main()
