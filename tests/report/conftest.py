"""Fixtures of the report tests: the synthetic cases of :mod:`report.lesion_cases`."""

from __future__ import annotations

import pytest

from report.lesion_cases import Case, make_case


@pytest.fixture(scope="session")
def missed_case() -> Case:
    """A dense calcified lesion (600 HU) that the sCT misses."""
    return make_case()


@pytest.fixture(scope="session")
def faithful_case() -> Case:
    """A partially calcified lesion (250 HU) that the sCT shows."""
    return make_case(lesion_hu=250.0, radius_mm=3.5, missed=False, seed=3)
