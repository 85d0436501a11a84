"""Shared fixtures: paths to the real scans and affines with known orientation."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from known_geometry import AFFINES

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
TOTALSEG = SHARED_DATA / "totalsegmentator"


@pytest.fixture(scope="session")
def totalseg() -> Path:
    """Folder of the real TotalSegmentator example scans (skips when the data is absent)."""
    if not TOTALSEG.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI must run on the real data, but {TOTALSEG} is missing")
        pytest.skip(f"real data not found at {TOTALSEG}")
    return TOTALSEG


@pytest.fixture(params=sorted(AFFINES))
def affine(request: pytest.FixtureRequest) -> np.ndarray:
    """Each known affine in turn: LPS, RAS-stored and oblique."""
    return AFFINES[request.param].copy()
