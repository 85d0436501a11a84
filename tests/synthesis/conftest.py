"""Shared pieces of the synthesis tests: tiny phantom cohorts and one model trained on them.

The helpers are handed to tests as fixtures (``make_cohort``, ``make_config``, ``render``), so no
test module imports this file.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from synthct.io import write_volume
from synthct.phantom.anatomy import SpineModel, SpineSpec
from synthct.phantom.mri import render_ct_and_mri
from synthct.phantom.protocols import FAST_3T, SpgrProtocol
from synthct.synthesis.config import SynthesisConfig
from synthct.synthesis.training import TrainingResult, train_model
from synthct.volume import CTVolume, LabelMap, MRProtocol, MultiEchoMR

#: The 3 T contrast of the paper on a 3 mm grid: 48 x 48 x 32 voxels, renders in ~0.1 s.
TINY_3T = FAST_3T.with_changes(
    name="tiny_3t", voxel_size_mm=(3.0, 3.0, 3.0), field_of_view_mm=(144.0, 144.0, 96.0)
)


def render_case(
    seed: int, protocol: SpgrProtocol = TINY_3T, *, level: str = "T5"
) -> tuple[CTVolume, MultiEchoMR]:
    """CT and two-echo MRI of a seeded thoracic spine phantom, centred on ``level``."""
    model = SpineModel(SpineSpec(first_level="T3", last_level="T7", seed=seed))
    geometry = protocol.geometry(
        center_lps_mm=model.level_centre_lps_mm(level), orientation="axial"
    )
    return render_ct_and_mri(model, geometry, protocol, supersample=2, seed=seed)


def write_cohort(
    folder: Path,
    seeds: tuple[int, ...] = (1, 2, 3),
    *,
    lesion_case: int | None = None,
    protocol: SpgrProtocol = TINY_3T,
) -> Path:
    """Write CT, one file per echo and ``manifest.csv`` (the phantom writer's format)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in seeds:
        case_id = f"case{seed:03d}"
        ct, mr = render_case(seed, protocol)
        write_volume(ct, folder / f"{case_id}_ct.nii.gz")
        echoes = []
        assert mr.protocol is not None
        for e in range(mr.n_echoes):
            one = MultiEchoMR(
                mr.array[e : e + 1],
                mr.affine,
                protocol=MRProtocol(
                    echo_times_ms=(mr.protocol.echo_times_ms[e],),
                    repetition_time_ms=mr.protocol.repetition_time_ms,
                    flip_angle_deg=mr.protocol.flip_angle_deg,
                    field_strength_t=mr.protocol.field_strength_t,
                ),
            )
            name = f"{case_id}_echo{e + 1}.nii.gz"
            write_volume(one, folder / name)
            echoes.append(name)
        lesion_name = ""
        if lesion_case == seed:
            lesions = np.zeros(ct.spatial_shape, dtype=np.uint8)
            lesions[20:24, 20:24, 14:18] = 1
            lesion_name = f"{case_id}_lesions.nii.gz"
            write_volume(LabelMap(lesions, ct.affine), folder / lesion_name)
        rows.append(
            {
                "case_id": case_id,
                "ct": f"{case_id}_ct.nii.gz",
                "mr_echoes": ";".join(echoes),
                "tissue_labels": "",
                "lesion_labels": lesion_name,
                "lesion_types": "calcified_meningioma" if lesion_name else "",
            }
        )
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


#: A network and schedule small enough to train on 2 CPU cores in seconds.
TINY: dict[str, dict[str, object]] = {
    "network": {"base_channels": 6, "levels": 2, "dropout": 0.1},
    "patches": {"size": (16, 16, 16)},
    "training": {
        "iterations": 80,
        "batch_size": 4,
        "learning_rate": 3e-3,
        "validation_interval": 20,
        "checkpoint_interval": 40,
        "validation_patches": 4,
        "device": "cpu",
    },
    "inference": {"patch_size": (32, 32, 32), "overlap": 0.25, "batch_size": 4, "mc_passes": 4},
}


def tiny_config(**sections: dict[str, object]) -> SynthesisConfig:
    """The tiny configuration with some settings replaced."""
    merged = {k: dict(v) for k, v in TINY.items()}
    for section, values in sections.items():
        merged.setdefault(section, {}).update(values)
    return SynthesisConfig().with_updates(merged)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def make_config() -> Callable[..., SynthesisConfig]:
    """:func:`tiny_config`."""
    return tiny_config


@pytest.fixture(scope="session")
def make_cohort() -> Callable[..., Path]:
    """:func:`write_cohort`."""
    return write_cohort


@pytest.fixture(scope="session")
def render() -> Callable[..., Any]:
    """:func:`render_case`."""
    return render_case


@pytest.fixture(scope="session")
def cohort_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four rendered 3 T spine phantoms (48 x 48 x 32 voxels of 3 mm), one file per echo."""
    return write_cohort(tmp_path_factory.mktemp("cohort"), (1, 2, 3, 4), lesion_case=2)


@pytest.fixture(scope="session")
def trained(cohort_manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainingResult:
    """One short real training run on the tiny cohort, shared by the tests that need a model."""
    torch.set_num_threads(2)
    return train_model(cohort_manifest, tiny_config(), tmp_path_factory.mktemp("run"))
