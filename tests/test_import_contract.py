"""The layer contract (``.importlinter``) holds on the tree and fails on an injected upward import.

The checks run the real ``lint-imports`` (import-linter, on grimp's import graph) against the
source tree and against a copy of it with one import added, so the test shows that the contract
scripts/test.sh runs would stop a later upward import.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".importlinter"


def _lint_imports(source_root: Path) -> subprocess.CompletedProcess[str]:
    """Run ``lint-imports`` with the project's contract on the package under ``source_root``."""
    exe = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(source_root)}
    return subprocess.run(
        [str(exe), "--config", str(CONFIG), "--no-cache"],
        cwd=source_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _copy_package(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(
        ROOT / "src" / "synthct",
        src / "synthct",
        ignore=shutil.ignore_patterns("__pycache__", "node_modules", "models", "web", "templates"),
    )
    return src


def test_contract_holds_on_the_tree() -> None:
    result = _lint_imports(ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "upward"),
    [
        # a shared service reaching into a product
        ("imaging/body_mask.py", "synthct.validation.case"),
        # I/O reaching into validation (what DICOM SEG/SR once did)
        ("io/atomic.py", "synthct.validation.lesion_metrics"),
        # a lower product reaching into a higher one
        ("phantom/model.py", "synthct.synthesis.synthesizer"),
        # validation reaching into the audit (the audit column is orchestration above both)
        ("validation/case.py", "synthct.audit.pipeline"),
        # a private module from outside its package (the layers alone would allow it)
        ("report/report_tables.py", "synthct.validation.statistics._common"),
    ],
)
def test_contract_fails_on_an_upward_or_private_import(
    tmp_path: Path, module: str, upward: str
) -> None:
    src = _copy_package(tmp_path)
    target = src / "synthct" / module
    target.write_text(target.read_text("utf-8") + f"\nimport {upward}  # injected\n", "utf-8")
    importer = "synthct." + module.removesuffix(".py").replace("/", ".")

    result = _lint_imports(src)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "BROKEN" in result.stdout
    assert f"{importer} -> {upward}" in result.stdout


def test_contract_fails_on_a_module_cycle(tmp_path: Path) -> None:
    # training imports planning; planning importing training back closes a cycle
    src = _copy_package(tmp_path)
    target = src / "synthct" / "synthesis" / "planning.py"
    target.write_text(
        target.read_text("utf-8") + "\nimport synthct.synthesis.training  # injected\n", "utf-8"
    )

    result = _lint_imports(src)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "No cycles are allowed in synthct.synthesis" in result.stdout
