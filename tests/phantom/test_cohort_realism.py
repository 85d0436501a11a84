"""The cohort generator's MRI realism option: same CT, realistic MRI, recorded and seeded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from synthct.imaging.labels import Tissue
from synthct.phantom.cohort import CohortSpecError, generate_cohort, load_cohort_spec
from synthct.phantom.cohort_files import PhantomCase

SMALL = {
    "protocol": "fast_3t",
    "voxel_size_mm": (2.0, 2.0, 2.0),
    "field_of_view_mm": (96.0, 128.0, 48.0),
    "supersample": 1,
    "n_cases": 1,
    "seed": 5,
    "lesions": None,
}


def test_realistic_cohort_changes_only_the_mri_and_says_so(tmp_path: Path) -> None:
    classic = generate_cohort(load_cohort_spec(**SMALL), tmp_path / "classic")
    spec = load_cohort_spec(**SMALL, mr_realism="realistic")
    real = generate_cohort(spec, tmp_path / "real")
    again = generate_cohort(spec, tmp_path / "again")
    a, b, c = (PhantomCase(f / "case-000") for f in (classic, real, again))
    np.testing.assert_array_equal(a.ct().array, b.ct().array)
    np.testing.assert_array_equal(b.mr().array, c.mr().array)  # seeded
    mr_classic, mr_real = a.mr().array.astype(np.float64), b.mr().array.astype(np.float64)
    assert not np.array_equal(mr_classic, mr_real)
    labels = a.tissue_labels().array
    muscle = labels == int(Tissue.MUSCLE)
    # Texture, fields and subject draws spread a tissue's intensities beyond the classic noise.
    classic_cv = mr_classic[1][muscle].std() / mr_classic[1][muscle].mean()
    real_cv = mr_real[1][muscle].std() / mr_real[1][muscle].mean()
    assert real_cv > 1.5 * classic_cv
    meta = json.loads((real / "case-000" / "case.json").read_text())
    assert meta["mr_realism"] == "realistic"
    # the echoes say so too (the audit compares it with its calibrated domain)
    assert b.mr().protocol is not None and b.mr().protocol.extra["mr_realism"] == "realistic"
    assert a.mr().protocol is not None and a.mr().protocol.extra["mr_realism"] == "classic"
    with pytest.raises(CohortSpecError, match="mr_realism"):
        load_cohort_spec(**SMALL, mr_realism="photoreal")
