"""Rewrite references to the modules that issue #18 moved, for branches written before the move.

After merging a branch that still imports e.g. ``synthct.phantom.tissues``, run
``python scripts/rewrite_moved_imports.py`` from the repository root: every tracked ``.py`` and
``.md`` file under src/, tests/, benchmarks/, docs/ and README.md gets the new module paths
(import lines, dotted strings and docstrings alike); it prints the files it changed. Then
``ruff check --fix --select I`` sorts the imports and ``lint-imports`` checks the layers.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

#: Old module path -> new one (regular expressions; whole dotted names only).
MOVES = [
    (r"synthct\.phantom\.labels\b", "synthct.imaging.labels"),
    (r"synthct\.phantom\.tissues\b", "synthct.imaging.tissues"),
    (r"synthct\.phantom\.marrow\b", "synthct.imaging.marrow"),
    (r"synthct\.validation\.body_mask\b", "synthct.imaging.body_mask"),
    (r"synthct\.validation\.image_metrics\b", "synthct.imaging.image_metrics"),
    (r"synthct\.validation\.alignment_check\b", "synthct.imaging.alignment_check"),
    (r"synthct\.validation\.alignment\b", "synthct.imaging.alignment"),
    (r"synthct\.validation\.lesion_size\b", "synthct.imaging.lesion_size"),
    (r"synthct\.mri_noise\b", "synthct.imaging.mri_noise"),
    (r"synthct\.report\.(slices|montage|plots)\b", r"synthct.figures.\1"),
    (r"synthct\.report\.lesion_figure\b", "synthct.validation.lesion_figure"),
    (r"synthct\.io\.(dicom_seg_sr|dicom_seg|dicom_sr)\b", r"synthct.validation.\1"),
    (
        r"synthct\.phantom\.mri import (spgr_signal|static_dephasing_exponent|fat_spectrum)\b",
        r"synthct.imaging.signal_equation import \1",
    ),
    (
        r"synthct\.synthesis\.shipped import load_shipped_model\b",
        "synthct.synthesis.synthesizer import load_shipped_model",
    ),
    (
        r"synthct\.synthesis\.training import split_cases\b",
        "synthct.synthesis.planning import split_cases",
    ),
    (
        r"synthct\.demo\.pipeline import (METHODS|STAGES|DemoSettings|DemoError)\b",
        r"synthct.demo.settings import \1",
    ),
]
#: Only inside the package: lower layers must not import the package root (tests may).
SOURCE_ONLY = [(r"from synthct import __version__", "from synthct.version import __version__")]


def main() -> None:
    """Rewrite the tracked files in place; print each one changed."""
    listed = subprocess.run(
        ["git", "ls-files", "src", "tests", "benchmarks", "docs", "README.md"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in listed:
        path = Path(name)
        root_init = path.name == "__init__.py" and path.parent.name == "synthct"
        if path.suffix not in (".py", ".md") or root_init:
            continue
        text = path.read_text(encoding="utf-8")
        new = text
        for old, repl in MOVES + (SOURCE_ONLY if name.startswith("src/") else []):
            new = re.sub(old, repl, new)
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(name)


if __name__ == "__main__":
    main()
