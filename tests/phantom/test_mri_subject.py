"""Per-subject tissue parameters: literature means and spreads, reproduced over many seeds."""

from __future__ import annotations

import numpy as np
import pytest

from synthct.imaging.labels import Tissue
from synthct.imaging.tissues import TISSUES
from synthct.phantom.model import PhantomParameterError
from synthct.phantom.mri_subject import (
    DEFAULT_VARIABILITY,
    MARROW_FAT_SD_AT_AGE,
    MARROW_FAT_SLOPE_PER_YEAR,
    VARIABILITY,
    draw_subject_tissues,
    marrow_fat_fraction_for_age,
    variability,
)

SEEDS = range(1500)


def _draws(
    tissue: Tissue, field_t: float = 3.0, age: float | None = None
) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"t1": [], "t2s": [], "pd": [], "ff": []}
    for seed in SEEDS:
        p = draw_subject_tissues(seed, field_t, tissues=[tissue], age_years=age)[tissue]
        out["t1"].append(p.relaxation.t1_ms)
        out["t2s"].append(p.relaxation.t2star_water_ms)
        out["pd"].append(p.proton_density)
        out["ff"].append(p.fat_fraction)
    return out


@pytest.mark.parametrize("tissue", [Tissue.MUSCLE, Tissue.SPINAL_CORD])
def test_draws_reproduce_the_table_mean_and_the_stated_cv(tissue: Tissue) -> None:
    d = _draws(tissue)
    relax = TISSUES[tissue].relaxation(3.0)
    var = VARIABILITY[tissue]
    for key, mean, cv in (
        ("t1", relax.t1_ms, var.t1_cv),
        ("t2s", relax.t2star_water_ms, var.t2star_cv),
        ("pd", TISSUES[tissue].proton_density, var.pd_cv),
    ):
        values = np.asarray(d[key])
        # Standard error of the mean is cv / sqrt(1500) ~ 0.3 % of the mean at cv 0.12.
        assert values.mean() == pytest.approx(mean, rel=4 * cv / np.sqrt(len(values)))
        assert values.std() / values.mean() == pytest.approx(cv, rel=0.08)
        assert np.all(values > 0)


def test_marrow_fat_fraction_mean_sd_and_age() -> None:
    d = np.asarray(_draws(Tissue.CANCELLOUS_BONE)["ff"])
    assert d.mean() == pytest.approx(TISSUES[Tissue.CANCELLOUS_BONE].fat_fraction, abs=0.008)
    assert d.std() == pytest.approx(VARIABILITY[Tissue.CANCELLOUS_BONE].fat_fraction_sd, rel=0.08)
    assert np.all((d > 0) & (d < 1))
    young = np.asarray(_draws(Tissue.CANCELLOUS_BONE, age=25.0)["ff"])
    old = np.asarray(_draws(Tissue.CANCELLOUS_BONE, age=75.0)["ff"])
    assert old.mean() - young.mean() == pytest.approx(50 * MARROW_FAT_SLOPE_PER_YEAR, abs=0.015)
    assert young.std() == pytest.approx(MARROW_FAT_SD_AT_AGE, rel=0.1)
    assert marrow_fat_fraction_for_age(65.0, 0.5) == 0.5
    with pytest.raises(PhantomParameterError, match="age_years"):
        marrow_fat_fraction_for_age(-3.0, 0.5)


def test_same_seed_same_subject_and_tissues_draw_independently() -> None:
    a = draw_subject_tissues(7, 1.5)
    assert a == draw_subject_tissues(7, 1.5)
    assert a != draw_subject_tissues(8, 1.5)
    assert set(a) == set(TISSUES)
    # A tissue's draw does not depend on which other tissues are drawn.
    alone = draw_subject_tissues(7, 1.5, tissues=[Tissue.SPINAL_CORD])
    assert alone[Tissue.SPINAL_CORD] == a[Tissue.SPINAL_CORD]
    assert a[Tissue.AIR].proton_density == 0.0


def test_fat_relaxation_is_shared_by_every_fatty_tissue() -> None:
    p = draw_subject_tissues(11, 3.0)
    fat = p[Tissue.SUBCUTANEOUS_FAT].relaxation
    assert p[Tissue.CANCELLOUS_BONE].relaxation.t1_fat_ms == fat.t1_fat_ms
    assert fat.t1_ms == fat.t1_fat_ms  # nearly pure fat: one T1
    assert fat.t1_fat_ms != TISSUES[Tissue.SUBCUTANEOUS_FAT].relaxation(3.0).t1_fat_ms


def test_tissues_without_an_entry_get_the_default() -> None:
    missing = [t for t in TISSUES if t not in VARIABILITY]
    assert missing  # lesion tissues have no literature spread here
    assert all(variability(t) is DEFAULT_VARIABILITY for t in missing)
