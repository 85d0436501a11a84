"""Fixture: the CT-derived source cases of :mod:`dataset.derived_cases` (real CTs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dataset.derived_cases import KNOWN_OFFSET, crop, derived_pair, move_header, own_mr_grid, rigid
from synthct.io import read_volume, write_volume
from synthct.volume import CTVolume, MultiEchoMR


@pytest.fixture(scope="session")
def derived_source(totalseg: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A manifest of six CT-derived cases (see the module docstring) in the folder it names."""
    root = tmp_path_factory.mktemp("derived_source")
    cts = {
        name: read_volume(totalseg / f"{name}.nii.gz", kind="ct")
        for name in ("example_ct", "chest_ct", "chest_abdomen_cta")
    }
    plan = [  # case, patient, source CT, centre, half-size in voxels
        ("ex01", "example", "example_ct", (0.5, 0.5, 0.5), 20),
        ("ch01", "chest", "chest_ct", (0.5, 0.5, 0.55), 30),
        ("cta01", "cta", "chest_abdomen_cta", (0.5, 0.5, 0.7), 30),
        ("cta02", "cta", "chest_abdomen_cta", (0.5, 0.5, 0.3), 30),
        ("wrong01", "chest2", "chest_ct", (0.5, 0.5, 0.3), 30),
        ("far01", "far", "example_ct", (0.5, 0.5, 0.25), 20),
    ]
    pairs = {}
    rows = ["case_id,ct,mr,patient_id,region"]
    for case_id, patient, source, centre, half in plan:
        ct_in = cts[source]
        assert isinstance(ct_in, CTVolume)
        mr, ct = derived_pair(crop(ct_in, centre, half), root / f"work-{case_id}")
        pairs[case_id] = (mr, ct)
        if case_id == "wrong01":  # example patient's MRI, centred on this CT
            other, _ = pairs["ex01"]
            shift = np.eye(4)
            shift[:3, 3] = ct.geometry.index_to_lps(
                (np.asarray(ct.spatial_shape) - 1) / 2
            ) - other.geometry.index_to_lps((np.asarray(other.spatial_shape) - 1) / 2)
            mr = MultiEchoMR(other.array, shift @ other.affine)
        if case_id == "far01":
            away = np.eye(4)
            away[:3, 3] = (0.0, 0.0, 600.0)
            mr = MultiEchoMR(mr.array, away @ mr.affine)
        centre_lps = ct.geometry.index_to_lps((np.asarray(ct.spatial_shape) - 1) / 2)
        moved = move_header(ct, rigid(KNOWN_OFFSET[0], KNOWN_OFFSET[1], centre_lps))
        (root / case_id).mkdir()
        write_volume(own_mr_grid(mr), root / case_id / "mr.nii.gz")
        write_volume(moved, root / case_id / "ct.nii.gz")
        rows.append(f"{case_id},{case_id}/ct.nii.gz,{case_id}/mr.nii.gz,{patient},TH")
    manifest = root / "cases.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest
