"""Start-up time of `synthct --help` against a bare Python interpreter, in the same run.

Target (issue #2): `synthct --help` answers in well under a second.
Run: .venv/bin/python benchmarks/cli_startup.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

REPEATS = 7


def best_and_median(command: list[str]) -> tuple[float, float]:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def main() -> None:
    script = str(Path(sys.executable).parent / "synthct")
    rows = [
        ("python -c pass (baseline)", [sys.executable, "-c", "pass"]),
        ("python -c 'import numpy'", [sys.executable, "-c", "import numpy"]),
        # The console script, as users run it: `python -m synthct.cli` would import the CLI
        # module twice (as __main__ and as synthct.cli) and register no command on __main__'s.
        ("synthct --help", [script, "--help"]),
        ("synthct info --help", [script, "info", "--help"]),
    ]
    print(f"{'command':<30} {'best s':>8} {'median s':>9}")
    for name, command in rows:
        best, median = best_and_median(command)
        print(f"{name:<30} {best:8.3f} {median:9.3f}")
    print("target: synthct --help median < 1 s")


if __name__ == "__main__":
    main()
