"""Long fuzz run of the readers: random byte mutations of valid NIfTI, NRRD, MHA and DICOM files.

Every mutated input must read (``ok``) or raise a synthct error (``synthct error``); any other
exception is a failure, printed with the mutation that caused it. The bounded CI run is
``tests/io/test_fuzz_readers.py`` (hypothesis, 200 inputs per format); this one tries
``--inputs`` per format (default 2000) with a seeded generator and prints a table::

    .venv/bin/python benchmarks/fuzz_readers.py --inputs 2000

Exit code 1 when any input failed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fuzz_inputs import FORMATS, mutated_copy, read_outcome, seed_files


def _mutation(rng: np.random.Generator, size: int) -> tuple[list[tuple[int, int]], int | None]:
    n = int(rng.integers(1, 7))
    header = rng.random(n) < 0.7  # most edits in the first 512 bytes, where headers are
    positions = np.where(header, rng.integers(0, 512, n), rng.integers(0, max(size, 1), n))
    values = rng.integers(0, 256, n)
    edits = [(int(p), int(v)) for p, v in zip(positions, values, strict=True)]
    cut = int(rng.integers(0, size + 1)) if rng.random() < 0.2 else None
    return edits, cut


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=2000, help="mutated inputs per format")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = []
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "seeds").mkdir()
        (Path(tmp) / "work").mkdir()
        seeds = seed_files(Path(tmp) / "seeds")
        work = Path(tmp) / "work"
        for fmt in FORMATS:
            seed = seeds[fmt]
            size = max(p.stat().st_size for p in ([seed] if seed.is_file() else seed.iterdir()))
            counts: Counter[str] = Counter()
            start = time.perf_counter()
            for _ in range(args.inputs):
                edits, cut = _mutation(rng, size)
                path = mutated_copy(seed, work, edits, cut, which=int(rng.integers(0, 3)))
                try:
                    counts[read_outcome(path)] += 1
                except Exception as exc:  # the failure being looked for
                    counts["failure"] += 1
                    if counts["failure"] <= 3:
                        print(f"FAILURE {fmt} edits={edits} cut={cut}: {type(exc).__name__}")
                        traceback.print_exc(limit=3)
            seconds = time.perf_counter() - start
            failures += counts["failure"]
            rows.append(
                (fmt, args.inputs, counts["ok"], counts["error"], counts["failure"], seconds)
            )
    print(f"\n{'format':<10}{'inputs':>8}{'ok':>8}{'synthct error':>15}{'failures':>10}{'s':>8}")
    for fmt, n, ok, error, failed, seconds in rows:
        print(f"{fmt:<10}{n:>8}{ok:>8}{error:>15}{failed:>10}{seconds:>8.1f}")
    total = sum(r[1] for r in rows)
    print(f"{'total':<10}{total:>8}{'':>8}{'':>15}{failures:>10}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
