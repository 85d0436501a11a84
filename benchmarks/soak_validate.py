"""Soak test of `synthct validate`: random SIGKILLs of the runner and its Dask workers.

A cohort of ``--cases`` small phantom cases (default 50; failure sCT = the CT with each lesion
rendered as CSF) is validated once without interruption (the reference), then again into another
folder while the runner process, one of its Dask worker processes, or both are killed with
SIGKILL (``--kills`` rounds; each kill comes while cases are computed, after a random 2 to 6
more of them were stored). A final run resumes to completion (rerun while
cases failed because a worker died under them). Then:

- the tables (lesions, cases, image_metrics_long, failures; timing columns aside) must equal the
  reference run's,
- no ``.partial-*`` file and no lock file may remain in the output folder,
- no process started by a killed run may still be alive,
- no run may print a traceback (a kill while the cluster starts is a clear error).

Prints one line per round and a summary table; exit code 1 when a check fails::

    .venv/bin/python benchmarks/soak_validate.py --cases 50 --kills 10
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

from synthct.io.output_safety import LOCK_FILE
from synthct.phantom.cohort import generate_cohort, load_cohort_spec

TABLES = ("lesions", "cases", "image_metrics_long", "failures")
SYNTHCT = str(Path(sys.executable).with_name("synthct"))


def make_cohort(folder: Path, n_cases: int) -> Path:
    """``n_cases`` small phantoms and the validation manifest (CT, failure sCT, lesions)."""
    spec = load_cohort_spec(
        n_cases=n_cases,
        seed=11,
        protocol="fast_3t",
        voxel_size_mm=(2.0, 2.0, 2.0),
        field_of_view_mm=(96.0, 128.0, 48.0),
        supersample=1,
        failure_sct=True,
        levels=("T2", "T11"),  # thoracic canal: room for every lesion drawn below
        lesions={"axial_diameter_mm": (5.0, 8.0), "sagittal_diameter_mm": (8.0, 14.0)},
    )
    cohort = generate_cohort(spec, folder)
    manifest = cohort / "validate.csv"
    with (cohort / "manifest.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "ct", "sct", "lesions"])
        for row in rows:
            writer.writerow(
                [row["case_id"], row["ct"], row["sct_failure"], row["lesion_labels_ct"]]
            )
    return manifest


def command(manifest: Path, out: Path, workers: int) -> list[str]:
    return [SYNTHCT, "validate", str(manifest), "--out", str(out), "--workers", str(workers),
            "--no-figures", "--no-report"]  # fmt: skip


def tables(out: Path) -> dict[str, pd.DataFrame]:
    """The tables, without timing columns (they differ from run to run)."""
    found = {}
    for name in TABLES:
        frame = pd.read_csv(out / f"{name}.csv")
        keep = [c for c in frame.columns if not (c.endswith("_s") or "timing" in c)]
        found[name] = frame[keep]
    return found


def kill(process: psutil.Process) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        process.send_signal(signal.SIGKILL)


def _results(out: Path) -> int:
    return len(list(out.glob("cases/*/result.json")))


def _wait_for_results(
    runner: subprocess.Popen[bytes], out: Path, target: int, started: set[int]
) -> None:
    """Until ``target`` cases are stored or the run ends (collecting its process ids)."""
    parent = psutil.Process(runner.pid)
    deadline = time.monotonic() + 600
    while runner.poll() is None and _results(out) < target and time.monotonic() < deadline:
        with contextlib.suppress(psutil.NoSuchProcess):
            started.update(p.pid for p in parent.children(recursive=True))
        time.sleep(0.1)


def soak_round(
    rng: np.random.Generator, args: list[str], out: Path, started: set[int], log: Path
) -> tuple[str, float, int | None]:
    """One run killed while it computes, after 2 to 6 more cases are stored: the runner, a
    worker (the run then goes on to its end), or a worker and then the runner."""
    what = str(rng.choice(["runner", "worker", "worker+runner"], p=[0.45, 0.1, 0.45]))
    start = time.monotonic()
    with log.open("a") as handle:
        runner = subprocess.Popen(args, stdout=handle, stderr=handle, start_new_session=True)
    parent = psutil.Process(runner.pid)
    _wait_for_results(runner, out, _results(out) + int(rng.integers(2, 7)), started)
    if runner.poll() is not None:
        return what + " (finished first)", time.monotonic() - start, runner.returncode
    workers = [p for p in parent.children(recursive=True) if "python" in p.name().lower()]
    if "worker" in what and workers:
        kill(workers[int(rng.integers(len(workers)))])
        if what == "worker":
            return what, time.monotonic() - start, runner.wait(timeout=600)
        _wait_for_results(runner, out, _results(out) + 1, started)
    kill(parent)
    runner.wait()
    return what, time.monotonic() - start, -9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=50)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, help="keep the folders here (default: temporary)")
    options = parser.parse_args()
    rng = np.random.default_rng(options.seed)
    work = options.work or Path(tempfile.mkdtemp(prefix="synthct-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return run(options, rng, work)
    finally:
        if options.work is None:
            shutil.rmtree(work, ignore_errors=True)


def run(options: argparse.Namespace, rng: np.random.Generator, work: Path) -> int:
    start = time.perf_counter()
    manifest = make_cohort(work / "cohort", options.cases)
    print(f"cohort: {options.cases} cases in {time.perf_counter() - start:.0f} s")
    log = work / "runs.log"
    start = time.perf_counter()
    reference = subprocess.run(
        command(manifest, work / "reference", options.workers), capture_output=True, check=False
    )
    reference_s = time.perf_counter() - start
    print(f"reference run: exit {reference.returncode} in {reference_s:.0f} s")
    out = work / "soak"
    started: set[int] = set()
    print(f"{'round':>5} {'killed':<30} {'after s':>8} {'exit':>5} {'results':>8}")
    for n in range(options.kills):
        what, delay, code = soak_round(
            rng, command(manifest, out, options.workers), out, started, log
        )
        done = _results(out)
        print(f"{n + 1:>5} {what:<30} {delay:>8.1f} {code!s:>5} {done:>8}")
    time.sleep(5)  # give orphans a chance to notice their parent is gone
    orphans = [pid for pid in started if psutil.pid_exists(pid)]
    orphans = [p for p in orphans if psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    finals = []
    for _ in range(3):  # cases lost with a killed worker are failed: a rerun redoes them
        final = subprocess.run(command(manifest, out, options.workers), capture_output=True)
        finals.append(final.returncode)
        if final.returncode == 0:
            break
    ours, theirs = tables(out), tables(work / "reference")
    equal = {
        name: ours[name].equals(theirs[name]) and list(ours[name]) == list(theirs[name])
        for name in TABLES
    }
    partials = [str(p.relative_to(out)) for p in out.rglob(".partial-*")]
    tracebacks = log.read_text(errors="replace").count("Traceback") if log.exists() else 0
    lock = (out / LOCK_FILE).exists()
    ok = (
        all(equal.values())
        and not partials
        and not lock
        and not orphans
        and not tracebacks
        and finals[-1] == 0
    )
    print()
    print(f"{'check':<44}{'result'}")
    rows = [
        ("cases", options.cases),
        ("kill rounds", options.kills),
        ("reference run (s)", f"{reference_s:.0f}"),
        ("final run exit codes", finals),
        ("lesions rows (soak / reference)", f"{len(ours['lesions'])} / {len(theirs['lesions'])}"),
        *((f"{name}.csv equal to reference", equal[name]) for name in TABLES),
        ("stale .partial-* files", len(partials)),
        ("lock file left", lock),
        ("processes of killed runs still alive", len(orphans)),
        ("tracebacks printed by the killed runs", tracebacks),
        ("PASS", ok),
    ]
    for label, value in rows:
        print(f"{label:<44}{value}")
    for pid in orphans:  # leave the machine clean even when the check failed
        kill(psutil.Process(pid))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
