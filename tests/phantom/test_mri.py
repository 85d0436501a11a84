"""Spoiled-GRE signal equation and multi-echo MRI rendering, against known answers."""

from __future__ import annotations

import cmath
import math
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from synthct.geometry import Geometry
from synthct.imaging.labels import Tissue
from synthct.imaging.signal_equation import (
    GYROMAGNETIC_RATIO_HZ_PER_T,
    spgr_signal,
    static_dephasing_exponent,
)
from synthct.imaging.tissues import TISSUES
from synthct.phantom.ct import render_ct
from synthct.phantom.model import Box, PhantomParameterError, ShapesModel, Sphere
from synthct.phantom.mri import bias_field, render_ct_and_mri, render_mri
from synthct.phantom.protocols import FAST_3T, PAPER_1P5T, PAPER_3T, SpgrProtocol
from synthct.volume import MRProtocol, MultiEchoMR

NOISE_FREE: dict[str, Any] = {"noise_sd": 0.0, "bias_field_strength": 0.0}


def table_signal(
    tissue: Tissue, protocol: SpgrProtocol, *, separate_fat_t1: bool = True
) -> NDArray[np.complex128]:
    """The tissue table's values through the signal equation: one complex value per echo."""
    p = TISSUES[tissue]
    r = p.relaxation(protocol.field_strength_t)
    return spgr_signal(
        proton_density=p.proton_density,
        fat_fraction=p.fat_fraction,
        t1_ms=r.t1_ms,
        t1_fat_ms=r.t1_fat_ms if separate_fat_t1 else None,
        t2star_water_ms=r.t2star_water_ms,
        t2star_fat_ms=r.t2star_fat_ms,
        echo_times_ms=protocol.echo_times_ms,
        repetition_time_ms=protocol.repetition_time_ms,
        flip_angle_deg=protocol.flip_angle_deg,
        field_strength_t=protocol.field_strength_t,
    )


def slab_grid(n: int = 12, spacing_mm: float = 1.0) -> Geometry:
    return Geometry.from_parameters((n, n, n), (spacing_mm,) * 3, (-(n - 1) / 2 * spacing_mm,) * 3)


# -- the signal equation ---------------------------------------------------------------------
def test_signal_equals_the_brief_equation_written_out() -> None:
    pd, ff, t1, t2w, t2f, tr, flip, b0 = 0.9, 0.3, 600.0, 25.0, 15.0, 7.0, 12.0, 3.0
    tes = (1.15, 2.30, 3.1)
    a = math.radians(flip)
    e1 = math.exp(-tr / t1)
    df = -3.4e-6 * 42.577478e6 * b0
    expected = [
        pd
        * math.sin(a)
        * (1 - e1)
        / (1 - math.cos(a) * e1)
        * abs(
            (1 - ff) * math.exp(-te / t2w)
            + ff * math.exp(-te / t2f) * cmath.exp(2j * math.pi * df * te * 1e-3)
        )
        for te in tes
    ]
    s = spgr_signal(
        proton_density=pd,
        fat_fraction=ff,
        t1_ms=t1,
        t2star_water_ms=t2w,
        t2star_fat_ms=t2f,
        echo_times_ms=tes,
        repetition_time_ms=tr,
        flip_angle_deg=flip,
        field_strength_t=b0,
    )
    assert s.shape == (3,)
    np.testing.assert_allclose(np.abs(s), expected, rtol=1e-12)
    same = spgr_signal(
        proton_density=pd,
        fat_fraction=ff,
        t1_ms=t1,
        t1_fat_ms=t1,
        t2star_water_ms=t2w,
        t2star_fat_ms=t2f,
        echo_times_ms=tes,
        repetition_time_ms=tr,
        flip_angle_deg=flip,
        field_strength_t=b0,
    )
    np.testing.assert_allclose(same, s, rtol=1e-12)


def test_signal_peaks_at_the_ernst_angle() -> None:
    flips = np.linspace(1.0, 30.0, 2901)
    t1, tr = 900.0, 7.0
    s = [
        abs(
            spgr_signal(
                proton_density=1,
                fat_fraction=0,
                t1_ms=t1,
                t2star_water_ms=1e9,
                t2star_fat_ms=1,
                echo_times_ms=[0.0],
                repetition_time_ms=tr,
                flip_angle_deg=f,
                field_strength_t=3.0,
            )[0]
        )
        for f in flips
    ]
    ernst = math.degrees(math.acos(math.exp(-tr / t1)))
    assert flips[int(np.argmax(s))] == pytest.approx(ernst, abs=0.02)


def test_fat_is_opposed_then_in_phase_at_the_papers_echo_times() -> None:
    for protocol in (PAPER_3T, PAPER_1P5T):
        df_hz = 3.4e-6 * GYROMAGNETIC_RATIO_HZ_PER_T * protocol.field_strength_t
        cycles = np.asarray(protocol.echo_times_ms) * 1e-3 * df_hz
        np.testing.assert_allclose(cycles, [0.5, 1.0], atol=0.005)
        s = np.abs(table_signal(Tissue.SUBCUTANEOUS_FAT, protocol))
        assert s[0] < s[1]  # opposed phase darker than in phase, despite decay
        marrow = np.abs(table_signal(Tissue.CANCELLOUS_BONE, protocol))
        assert marrow[0] < 0.5 * marrow[1]  # 50% fat nearly cancels at opposed phase


def test_hamilton_spectrum_equals_single_peak_at_te_zero() -> None:
    kwargs: dict[str, Any] = {
        "proton_density": 1.0,
        "fat_fraction": 1.0,
        "t1_ms": 370.0,
        "t2star_water_ms": 30.0,
        "t2star_fat_ms": 20.0,
        "repetition_time_ms": 7.0,
        "flip_angle_deg": 10.0,
        "field_strength_t": 3.0,
    }
    single = spgr_signal(echo_times_ms=[0.0, 1.15, 2.3], **kwargs)
    multi = spgr_signal(echo_times_ms=[0.0, 1.15, 2.3], fat_spectrum_model="hamilton", **kwargs)
    assert multi[0] == pytest.approx(single[0], rel=1e-12)
    # Multi-peak fat never fully rephases: the "in-phase" echo loses signal.
    assert abs(multi[2]) < abs(single[2])


def test_static_dephasing_limits() -> None:
    # Yablonskiy & Haacke 1994: 0.4 x^2 at short times, 2 pi x / (3 sqrt 3) - 1 at long times.
    small = np.array([1e-3, 1e-2, 0.05])
    np.testing.assert_allclose(static_dephasing_exponent(small), 0.4 * small**2, rtol=1e-3)
    large = np.array([50.0, 200.0])
    np.testing.assert_allclose(
        static_dephasing_exponent(large), 2 * np.pi * large / (3 * np.sqrt(3)) - 1, rtol=2e-3
    )


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"echo_times_ms": [7.0]}, "echo_times_ms"),
        ({"echo_times_ms": [-1.0]}, "echo_times_ms"),
        ({"flip_angle_deg": 0.0}, "flip_angle_deg"),
        ({"fat_fraction": 1.2}, "fat_fraction"),
        ({"t1_ms": -5.0}, "t1_ms"),
        ({"repetition_time_ms": 0.0}, "repetition_time_ms"),
        ({"fat_spectrum_model": "bogus"}, "fat_spectrum"),
    ],
)
def test_bad_signal_parameters_are_refused(change: dict[str, Any], match: str) -> None:
    kwargs: dict[str, Any] = {
        "proton_density": 1.0,
        "fat_fraction": 0.2,
        "t1_ms": 900.0,
        "t2star_water_ms": 30.0,
        "t2star_fat_ms": 20.0,
        "echo_times_ms": [1.15],
        "repetition_time_ms": 7.0,
        "flip_angle_deg": 10.0,
        "field_strength_t": 3.0,
    }
    kwargs.update(change)
    with pytest.raises(PhantomParameterError, match=match):
        spgr_signal(**kwargs)


# -- rendering -------------------------------------------------------------------------------
@pytest.mark.parametrize("tissue", [Tissue.MUSCLE, Tissue.SUBCUTANEOUS_FAT, Tissue.CANCELLOUS_BONE])
def test_homogeneous_region_equals_the_analytic_signal(tissue: Tissue) -> None:
    grid = slab_grid()
    model = ShapesModel([Box(tissue=tissue, center_lps_mm=(0, 0, 0), size_mm=(8, 8, 8))])
    mr = render_mri(model, grid, PAPER_3T, **NOISE_FREE)
    assert isinstance(mr, MultiEchoMR)
    assert mr.array.dtype == np.float32 and mr.array.shape == (2, *grid.shape)
    assert mr.protocol is not None and mr.protocol.echo_times_ms == (1.15, 2.30)
    inside = mr.array[:, 4:8, 4:8, 4:8].reshape(2, -1)
    expected = np.abs(table_signal(tissue, PAPER_3T))
    np.testing.assert_allclose(inside, np.repeat(expected[:, None], inside.shape[1], 1), rtol=1e-5)
    assert np.all(mr.array[:, 0] == 0)  # air
    verbatim = render_mri(model, grid, PAPER_3T, separate_fat_t1=False, **NOISE_FREE)
    expected_brief = np.abs(table_signal(tissue, PAPER_3T, separate_fat_t1=False))
    np.testing.assert_allclose(verbatim.array[:, 6, 6, 6], expected_brief, rtol=1e-5)


def test_partial_volume_averages_complex_signals() -> None:
    # Plane 6's voxels are split 50/50 between fat and muscle: their signals add as complex
    # numbers, so at opposed phase the voxel is darker than the mean of the two magnitudes.
    grid = slab_grid()
    model = ShapesModel(
        [Box(tissue=Tissue.SUBCUTANEOUS_FAT, center_lps_mm=(-10.25, 0, 0), size_mm=(29.5, 20, 20))],
        background=Tissue.MUSCLE,
    )
    mr = render_mri(model, grid, PAPER_3T, supersample=2, **NOISE_FREE)
    fat, muscle = (
        table_signal(Tissue.SUBCUTANEOUS_FAT, PAPER_3T),
        table_signal(Tissue.MUSCLE, PAPER_3T),
    )
    assert grid.index_to_lps([10, 6, 6])[0] == 4.5  # the box face runs through plane 10
    np.testing.assert_allclose(mr.array[:, 10, 6, 6], np.abs((fat + muscle) / 2), rtol=1e-5)
    np.testing.assert_allclose(mr.array[:, 9, 6, 6], np.abs(fat), rtol=1e-5)
    np.testing.assert_allclose(mr.array[:, 11, 6, 6], np.abs(muscle), rtol=1e-5)
    assert mr.array[0, 10, 6, 6] < (abs(fat[0]) + abs(muscle[0])) / 2 * 0.9


class StippledLesion:
    """Cord and a lesion in CSF; inside the lesion ~60% of sub-voxels are CALCIFICATION.

    The stipple is a deterministic equidistributed pattern of position (a Weyl sequence), so
    the calcified fraction of the lesion is 0.6 whatever the grid.
    """

    centre = np.array([0.0, 0.0, 0.0])

    def labels_on(self, geometry: Geometry) -> NDArray[np.uint8]:
        index = np.stack(np.meshgrid(*(np.arange(n) for n in geometry.shape), indexing="ij"), -1)
        p = geometry.index_to_lps(index)
        out = np.full(geometry.shape, int(Tissue.CSF), dtype=np.uint8)
        out[p[..., 0] > 4.0] = int(Tissue.SPINAL_CORD)
        lesion = np.sum((p - self.centre) ** 2, axis=-1) <= 3.0**2
        weyl = np.mod(p @ np.array([1.4142135, 2.7182818, 3.1415926]) * 7.3, 1.0)
        out[lesion] = np.where(weyl[lesion] < 0.6, Tissue.CALCIFICATION, Tissue.MENINGIOMA)
        return out


def test_calcified_lesion_is_dark_and_visible_against_csf() -> None:
    grid = Geometry.from_parameters((30, 24, 20), (0.74, 0.74, 0.9), (-11.0, -8.5, -8.55))
    model = StippledLesion()
    lesion_hu = TISSUES[Tissue.CALCIFICATION].ct_hu * 0.6 + TISSUES[Tissue.MENINGIOMA].ct_hu * 0.4
    assert 800 < lesion_hu < 900  # the ~800 HU dense lesion of the brief
    p = grid.index_to_lps(np.stack(np.meshgrid(*map(np.arange, grid.shape), indexing="ij"), -1))
    r = np.linalg.norm(p, axis=-1)
    lesion = r <= 2.0  # core, away from partial volume
    csf = (r >= 4.5) & (p[..., 0] < 2.5)
    cord = p[..., 0] > 6.0

    def cnr_against_csf(echo: NDArray[np.float32]) -> float:
        return float((echo[csf].mean() - echo[lesion].mean()) / echo[csf].std())

    # Default noise (cord SNR ~35-40 at 3 T), no bias field.
    mr = render_mri(model, grid, PAPER_3T, bias_field_strength=0.0, seed=3)
    for echo in mr.array:
        assert echo[lesion].mean() < 0.6 * echo[cord].mean()
    # Opposed-phase echo: close to CSF (CNR ~2.5); in-phase echo: dephasing makes it darker.
    cnr = [cnr_against_csf(echo) for echo in mr.array]
    assert cnr[0] > 1.5
    assert cnr[1] >= 3.0
    no_dephasing = render_mri(
        model, grid, PAPER_3T, bias_field_strength=0.0, seed=3, susceptibility_dephasing=False
    )
    assert cnr_against_csf(no_dephasing.array[1]) < cnr[1] - 1.0


def test_noise_is_rician_seeded_and_of_the_requested_size() -> None:
    grid = slab_grid(24)
    model = ShapesModel([Box(tissue=Tissue.MUSCLE, center_lps_mm=(6, 0, 0), size_mm=(12, 40, 40))])
    options: dict[str, Any] = {"noise_sd": 2e-3, "bias_field_strength": 0.0, "supersample": 1}
    a = render_mri(model, grid, FAST_3T, seed=1, **options)
    b = render_mri(model, grid, FAST_3T, seed=1, **options)
    c = render_mri(model, grid, FAST_3T, seed=2, **options)
    np.testing.assert_array_equal(a.array, b.array)
    assert not np.array_equal(a.array, c.array)
    air = a.array[:, :10]  # no signal: magnitude of complex noise is Rayleigh distributed
    assert air.mean() == pytest.approx(2e-3 * math.sqrt(math.pi / 2), rel=0.03)
    muscle = a.array[:, 14:, 2:-2, 2:-2]  # high SNR: nearly Gaussian with the noise SD
    assert muscle.std(axis=(1, 2, 3)) == pytest.approx([2e-3, 2e-3], rel=0.06)
    clean = render_mri(model, grid, FAST_3T, supersample=1, **NOISE_FREE)
    assert np.all(clean.array[:, :10] == 0)


def test_noise_does_not_depend_on_the_slab_size() -> None:
    grid = slab_grid(10)
    model = ShapesModel([Sphere(tissue=Tissue.CSF, center_lps_mm=(0, 0, 0), radius_mm=3.3)])
    a = render_mri(model, grid, PAPER_3T, seed=5)
    b = render_mri(model, grid, PAPER_3T, seed=5, max_subvoxels=500)
    np.testing.assert_array_equal(a.array, b.array)


def test_bias_field_is_smooth_bounded_and_seeded() -> None:
    grid = Geometry.from_parameters((30, 20, 10), (1.0, 1.0, 2.0))
    field = bias_field(grid, strength=0.2, seed=4)
    log = np.log(field.astype(np.float64))
    assert np.max(np.abs(log)) == pytest.approx(0.2, rel=1e-5)
    assert np.max(np.abs(np.diff(log, axis=0))) < 0.05  # smooth: a cubic over 30 voxels
    np.testing.assert_array_equal(field, bias_field(grid, strength=0.2, seed=4))
    assert not np.array_equal(field, bias_field(grid, strength=0.2, seed=5))
    assert np.all(bias_field(grid, strength=0.0) == 1.0)
    model = ShapesModel([Box(tissue=Tissue.CSF, center_lps_mm=(15, 10, 10), size_mm=(40, 30, 30))])
    mr = render_mri(
        model, grid, PAPER_3T, noise_sd=0.0, bias_field_strength=0.2, seed=4, supersample=1
    )
    expected = np.abs(table_signal(Tissue.CSF, PAPER_3T))[:, None, None, None] * field
    np.testing.assert_allclose(mr.array, expected, rtol=1e-5)


def test_render_on_an_mr_protocol_and_bad_parameters() -> None:
    grid = slab_grid(4)
    model = ShapesModel(background=Tissue.CSF)
    plain = MRProtocol(
        echo_times_ms=(1.15, 2.3), repetition_time_ms=7.0, flip_angle_deg=10.0, field_strength_t=3.0
    )
    np.testing.assert_allclose(
        render_mri(model, grid, plain, **NOISE_FREE).array,
        render_mri(model, grid, PAPER_3T, **NOISE_FREE).array,
    )
    with pytest.raises(PhantomParameterError, match="repetition_time_ms"):
        render_mri(model, grid, MRProtocol(echo_times_ms=(1.0,)))
    with pytest.raises(PhantomParameterError, match="noise_sd"):
        render_mri(model, grid, PAPER_3T, noise_sd=-1.0)
    with pytest.raises(PhantomParameterError, match="bias_field_strength"):
        render_mri(model, grid, PAPER_3T, bias_field_strength=3.0)
    with pytest.raises(PhantomParameterError, match="seed"):
        render_mri(model, grid, PAPER_3T, seed=-2)


def test_joint_render_equals_separate_renders() -> None:
    grid = slab_grid(10)
    model = ShapesModel(
        [
            Box(tissue=Tissue.CANCELLOUS_BONE, center_lps_mm=(0, 0, -2), size_mm=(6, 6, 4)),
            Sphere(tissue=Tissue.CALCIFICATION, center_lps_mm=(0.3, 0.2, 2.1), radius_mm=1.7),
        ],
        background=Tissue.CSF,
    )
    ct, mr = render_ct_and_mri(model, grid, PAPER_3T, seed=9, max_subvoxels=2000)
    np.testing.assert_array_equal(ct.array, render_ct(model, grid, seed=9).array)
    np.testing.assert_array_equal(mr.array, render_mri(model, grid, PAPER_3T, seed=9).array)
    assert mr.protocol == PAPER_3T.to_mr_protocol()
