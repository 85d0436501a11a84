"""The tissue table: complete, sourced, in the BRIEF's ranges, usable by the lesion library."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from synthct.imaging.labels import Tissue
from synthct.imaging.tissues import TISSUES, Relaxation, lookup_table
from synthct.phantom.model import PhantomParameterError


def test_every_tissue_has_properties_and_sources() -> None:
    assert set(TISSUES) == set(Tissue)
    for tissue, props in TISSUES.items():
        assert props.tissue is tissue
        assert props.ct_source and props.mr_source and props.relaxation_source


@pytest.mark.parametrize(
    ("tissue", "lo_hu", "hi_hu"),
    [
        (Tissue.SUBCUTANEOUS_FAT, -120, -90),
        (Tissue.CSF, 0, 15),
        (Tissue.SPINAL_CORD, 20, 40),
        (Tissue.MUSCLE, 10, 55),
        (Tissue.CANCELLOUS_BONE, 300, 400),
        (Tissue.CORTICAL_BONE, 1800, 1900),
        (Tissue.DISC, 70, 90),
        (Tissue.LIGAMENT, 60, 90),
        (Tissue.MENINGIOMA, 30, 50),
        (Tissue.CALCIFICATION, 1000, 1800),
        (Tissue.SCHWANNOMA, 25, 45),
        (Tissue.OSSIFICATION, 500, 900),
    ],
)
def test_ct_numbers_lie_in_the_brief_ranges(tissue: Tissue, lo_hu: float, hi_hu: float) -> None:
    assert lo_hu <= TISSUES[tissue].ct_hu <= hi_hu
    assert TISSUES[Tissue.AIR].ct_hu == -1000.0


def test_calcified_fraction_for_the_papers_tumour_hu() -> None:
    # The lesion library mixes MENINGIOMA and CALCIFICATION sub-voxels to reach a target HU;
    # the paper's range (113-766 HU, mean 463.6) must be reachable with fractions in (0, 1).
    matrix = TISSUES[Tissue.MENINGIOMA].ct_hu
    calc = TISSUES[Tissue.CALCIFICATION].ct_hu
    fractions = [(hu - matrix) / (calc - matrix) for hu in (113.0, 463.6, 766.0)]
    assert all(0.0 < f < 0.6 for f in fractions)
    assert fractions == sorted(fractions)


def test_calcification_is_mr_dark_and_short_t2star() -> None:
    calc = TISSUES[Tissue.CALCIFICATION]
    assert 0.05 <= calc.proton_density <= 0.1
    for b0 in (1.5, 3.0):
        assert 0.5 <= calc.relaxation(b0).t2star_water_ms <= 1.0
    assert calc.inclusion_susceptibility_ppm < 0  # diamagnetic
    others = [p for t, p in TISSUES.items() if t is not Tissue.CALCIFICATION]
    assert all(p.inclusion_susceptibility_ppm == 0 for p in others)


def test_brief_relaxation_values() -> None:
    cord = TISSUES[Tissue.SPINAL_CORD]
    assert (cord.relaxation(1.5).t1_ms, cord.relaxation(3.0).t1_ms) == (745.0, 993.0)
    csf = TISSUES[Tissue.CSF]
    assert (csf.relaxation(1.5).t1_ms, csf.relaxation(3.0).t1_ms) == (4280.0, 4160.0)
    fat = TISSUES[Tissue.SUBCUTANEOUS_FAT]
    assert fat.fat_fraction == pytest.approx(0.95)
    assert (fat.relaxation(1.5).t1_fat_ms, fat.relaxation(3.0).t1_fat_ms) == (290.0, 370.0)
    marrow = TISSUES[Tissue.CANCELLOUS_BONE]
    assert marrow.fat_fraction == pytest.approx(0.5)
    assert TISSUES[Tissue.CORTICAL_BONE].relaxation(3.0).t2star_water_ms < 1.0
    # Soft tissue T1 lengthens with field (cord, muscle, fat).
    for t in (Tissue.SPINAL_CORD, Tissue.MUSCLE, Tissue.SUBCUTANEOUS_FAT):
        assert TISSUES[t].relaxation(3.0).t1_ms > TISSUES[t].relaxation(1.5).t1_ms


def test_relaxation_is_linear_in_field_between_the_tables() -> None:
    cord = TISSUES[Tissue.SPINAL_CORD]
    mid = cord.relaxation(2.25)
    assert mid.t1_ms == pytest.approx((745.0 + 993.0) / 2)
    assert mid.t2star_water_ms == pytest.approx(
        (cord.relaxation_1p5t.t2star_water_ms + cord.relaxation_3t.t2star_water_ms) / 2
    )
    for b0 in (0.5, 7.0):
        with pytest.raises(PhantomParameterError, match="field_strength_t"):
            cord.relaxation(b0)


def test_lookup_table_by_label() -> None:
    hu = lookup_table("ct_hu")
    assert hu.shape == (256,)
    assert hu[int(Tissue.CSF)] == TISSUES[Tissue.CSF].ct_hu
    assert np.isnan(hu[15]) and np.isnan(hu[255])  # not tissues
    with pytest.raises(PhantomParameterError, match="unknown tissue attribute"):
        lookup_table("density")


def test_invalid_values_are_refused() -> None:
    csf = TISSUES[Tissue.CSF]
    for change in ({"proton_density": -0.1}, {"fat_fraction": 1.5}, {"ct_hu": 5000.0}):
        with pytest.raises(PhantomParameterError):
            dataclasses.replace(csf, **change)  # type: ignore[arg-type]
    with pytest.raises(PhantomParameterError, match="t1_ms"):
        Relaxation(t1_ms=0.0, t1_fat_ms=300.0, t2star_water_ms=10.0, t2star_fat_ms=10.0)
