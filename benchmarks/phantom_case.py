"""Time and peak memory to generate one phantom case (render + write), against a baseline.

Targets (issue #3): <= 10 s and <= 2 GB per case on 2 cores, for the paper's field of view and
voxel size (250 x 250 x 90 mm at 0.74 x 0.74 x 0.9 mm) and for a 1 mm grid over about ten
levels. Each configuration runs in a fresh subprocess so its peak RSS is its own. The baseline
row renders the paper grid without partial volume (supersample 1): the cost of everything but
sub-voxel sampling.

Run: .venv/bin/python benchmarks/phantom_case.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

CONFIGS = {
    "paper grid, supersample 1 (baseline)": {"protocol": "paper_3t", "supersample": 1},
    "paper grid 338x338x100, supersample 2": {"protocol": "paper_3t", "supersample": 2},
    "1 mm, 250x250x90 mm (~10 levels), supersample 2": {
        "protocol": "paper_3t",
        "voxel_size_mm": [1.0, 1.0, 1.0],
        "supersample": 2,
    },
}

CHILD = """
import json, resource, sys, time
from synthct.phantom.cohort import generate_cohort, load_cohort_spec
spec = load_cohort_spec(n_cases=1, seed=0, levels=("T6", "T6"), **json.loads(sys.argv[1]))
start = time.perf_counter()
generate_cohort(spec, sys.argv[2])
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    print(f"{'configuration':<52} {'time s':>8} {'peak RSS MB':>12}")
    for name, values in CONFIGS.items():
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run(
                [sys.executable, "-c", CHILD, json.dumps(values), f"{tmp}/cohort"],
                check=True,
                capture_output=True,
                text=True,
            )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{name:<52} {result['seconds']:8.2f} {result['peak_rss_mb']:12.0f}")
    print("targets: <= 10 s and <= 2048 MB per case")


if __name__ == "__main__":
    main()
