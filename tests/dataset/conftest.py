"""Fixture: CT-derived cases of the real CTs, MR and CT on different grids, a known offset."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthct.io import read_volume
from synthct.phantom.derived_pairs import PairSpec, crop_ct, write_derived_pairs
from synthct.volume import CTVolume

#: Rotation (degrees about S) and shift (mm) of every CT header, about the CT's centre.
KNOWN_ROTATION_DEG = 4.0
KNOWN_SHIFT_MM = (5.0, -3.0, 4.0)


@pytest.fixture(scope="session")
def derived_source(totalseg: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six cases from three real CTs (manifest path); cta01/cta02 are one patient, wrong01
    carries ex01's MRI, far01 an MRI 600 mm away from its CT."""
    cts = {}
    for name in ("example_ct", "chest_ct", "chest_abdomen_cta"):
        ct = read_volume(totalseg / f"{name}.nii.gz", kind="ct")
        assert isinstance(ct, CTVolume)
        cts[name] = ct
    specs = [
        PairSpec("ex01", "example", crop_ct(cts["example_ct"], (0.5, 0.5, 0.5), 20)),
        PairSpec("ch01", "chest", crop_ct(cts["chest_ct"], (0.5, 0.5, 0.55), 30)),
        PairSpec("cta01", "cta", crop_ct(cts["chest_abdomen_cta"], (0.5, 0.5, 0.7), 30)),
        PairSpec("cta02", "cta", crop_ct(cts["chest_abdomen_cta"], (0.5, 0.5, 0.3), 30)),
        PairSpec("wrong01", "chest2", crop_ct(cts["chest_ct"], (0.5, 0.5, 0.3), 30), mr_of="ex01"),
        PairSpec(
            "far01", "far", crop_ct(cts["example_ct"], (0.5, 0.5, 0.25), 20),
            mr_shift_mm=(0.0, 0.0, 600.0),
        ),
    ]  # fmt: skip
    out = tmp_path_factory.mktemp("derived") / "source"
    return write_derived_pairs(
        specs, out, rotation_deg=KNOWN_ROTATION_DEG, shift_mm=KNOWN_SHIFT_MM, region="TH"
    )
