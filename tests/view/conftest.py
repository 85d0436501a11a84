"""Fixtures of the `synthct view` tests: real files made by synthct, a server, Debian's chromium.

* ``phantom_run``: a one-case phantom cohort (2 mm voxels, a calcified meningioma, the paper's
  failure sCT), validated with `synthct validate` and audited with `synthct audit`, as a user
  would make it; the viewer starts on the folder holding all three.
* ``sphere_case``: CT with a sphere of known diameter (600 HU in 40 HU tissue) and an sCT
  without it, on an LPS grid with a non-trivial origin, for the drawn-ROI test.
* ``browser``: Playwright driving Debian's chromium (``/usr/bin/chromium``; scripts/test.sh
  installs it). Missing chromium fails under CI (``CI`` set) and skips elsewhere.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from synthct.cli import app
from synthct.view.headless import CHROMIUM_ARGS, chromium_path
from view_helpers import OpenPage, SphereCase

CHROMIUM = chromium_path()
runner = CliRunner()


def invoke(*args: str) -> str:
    """Run a synthct command in this process; its output (fails the test on a non-zero exit)."""
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="session")
def phantom_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with ``cohort/`` (phantom), ``validation/`` (+ ``validation/audit/case-000``)."""
    root = tmp_path_factory.mktemp("phantom_run")
    cohort = root / "cohort"
    invoke(
        "phantom", "--out", str(cohort), "--cases", "1", "--seed", "3", "--voxel-size", "2,2,2",
        "--failure-sct", "--lesion-fraction", "1", "--lesion-types", "meningioma",
        "--lesion-hu", "500,700",
    )  # fmt: skip
    with (cohort / "manifest.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    manifest = cohort / "validate.csv"
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "ct", "sct", "mri", "lesions"])
        for r in rows:
            writer.writerow(
                [r["case_id"], r["ct"], r["sct_failure"], r["mr_echoes"], r["lesion_labels"]]
            )
    validation = root / "validation"
    invoke("validate", str(manifest), "--out", str(validation), "--workers", "0", "--no-report")
    (validation / "audit").mkdir()
    case = cohort / rows[0]["case_id"]
    invoke(
        "audit", "--mri", str(case / "mr_echo-1.nii.gz"), "--mri", str(case / "mr_echo-2.nii.gz"),
        "--sct", str(case / "sct_lesions_as_csf.nii.gz"),
        "--out", str(validation / "audit" / rows[0]["case_id"]), "--no-figures",
    )  # fmt: skip
    return root


@pytest.fixture(scope="session")
def sphere_case(tmp_path_factory: pytest.TempPathFactory) -> SphereCase:
    from synthct.geometry import affine_from_parameters
    from synthct.io import write_volume
    from synthct.volume import CTVolume, SyntheticCT

    folder = tmp_path_factory.mktemp("sphere_case")
    shape = (64, 64, 40)
    spacing = 1.0
    affine = affine_from_parameters(spacing_mm=(spacing,) * 3, origin_lps_mm=(-20.0, 35.0, 100.0))
    rng = np.random.default_rng(0)
    ct = np.full(shape, 40.0) + rng.normal(0, 5, shape)
    ct[:, :, :4] = -1000.0  # air at the bottom, so the grid has air like a real CT
    # bone away from the sphere, on both images, as a real sCT has: validate's alignment check
    # compares the bone of the two
    ct[4:18, 4:18, 8:36] = 700.0
    centre_index = np.array([31.0, 33.0, 20.0])
    diameter = 12.0
    idx = np.indices(shape).reshape(3, -1).T
    inside = (np.linalg.norm((idx - centre_index) * spacing, axis=1) <= diameter / 2).reshape(shape)
    sct = ct.copy()
    ct[inside] = 600.0
    write_volume(CTVolume(ct.astype(np.float32), affine), folder / "ct.nii.gz")
    write_volume(SyntheticCT(sct.astype(np.float32), affine), folder / "sct.nii.gz")
    centre = tuple(float(v) for v in (affine @ np.append(centre_index, 1.0))[:3])
    return SphereCase(folder, centre, diameter, spacing)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's chromium under Playwright (headless, software WebGL2)."""
    if not CHROMIUM.is_file():
        message = f"{CHROMIUM} is missing: scripts/test.sh installs Debian's chromium package"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS)
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def open_page(browser: Any) -> Iterator[Any]:
    """``open_page(url)``: a fresh page at ``url`` recording console errors."""
    contexts = []

    def _open(url: str) -> OpenPage:
        context = browser.new_context(viewport={"width": 1280, "height": 960})
        contexts.append(context)
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        return OpenPage(page, errors)

    yield _open
    for context in contexts:
        context.close()
