"""Realistic MRI rendering (issue #15 part 2) against known answers and the classic renderer."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from synthct.geometry import Geometry
from synthct.imaging.labels import Tissue
from synthct.io import read_volume
from synthct.phantom.ct import render_ct
from synthct.phantom.ct_derived import CTDerivedModel
from synthct.phantom.model import (
    Box,
    Cylinder,
    PhantomParameterError,
    ShapesModel,
    Sphere,
    tissue_fraction,
)
from synthct.phantom.mri import (
    REALISM_PRESETS,
    MRIRealism,
    flip_angle_expansion,
    kappa_limits,
    realism_preset,
    render_ct_and_mri,
    render_mri,
    spgr_signal,
)
from synthct.phantom.mri_subject import SubjectTissue, draw_subject_tissues, table_tissues
from synthct.phantom.protocols import PAPER_1P5T, PAPER_3T, SpgrProtocol
from synthct.volume import CTVolume, LabelMap

NOISE_FREE: dict[str, Any] = {"noise_sd": 0.0, "bias_field_strength": 0.0}
#: Every realism step off: must render exactly the classic images.
BARE = MRIRealism(
    subject_variability=False,
    texture=False,
    transmit=False,
    receive_coil=False,
    acquired_fraction=(1.0, 1.0, 1.0),
    flow=False,
)


def grid(shape: tuple[int, int, int], spacing_mm: float = 1.0) -> Geometry:
    origin = tuple(-(n - 1) / 2 * spacing_mm for n in shape)
    return Geometry.from_parameters(shape, (spacing_mm,) * 3, origin)


def signal_of(p: SubjectTissue, protocol: SpgrProtocol, flip_scale: float = 1.0) -> NDArray[Any]:
    r = p.relaxation
    return spgr_signal(
        proton_density=p.proton_density,
        fat_fraction=p.fat_fraction,
        t1_ms=r.t1_ms,
        t1_fat_ms=r.t1_fat_ms,
        t2star_water_ms=r.t2star_water_ms,
        t2star_fat_ms=r.t2star_fat_ms,
        echo_times_ms=protocol.echo_times_ms,
        repetition_time_ms=protocol.repetition_time_ms,
        flip_angle_deg=protocol.flip_angle_deg * flip_scale,
        field_strength_t=protocol.field_strength_t,
    )


def boxes_model() -> ShapesModel:
    """Fat, muscle and CSF slabs side by side, with a calcified sphere (dephasing) in CSF."""
    return ShapesModel(
        [
            Box(tissue=Tissue.SUBCUTANEOUS_FAT, center_lps_mm=(-6, 0, 0), size_mm=(6, 20, 20)),
            Box(tissue=Tissue.MUSCLE, center_lps_mm=(0, 0, 0), size_mm=(6, 20, 20)),
            Box(tissue=Tissue.CSF, center_lps_mm=(6, 0, 0), size_mm=(6, 20, 20)),
            Sphere(tissue=Tissue.CALCIFICATION, center_lps_mm=(6.3, 0.2, 0), radius_mm=1.6),
        ]
    )


@pytest.mark.parametrize("realism", [BARE, replace(BARE, transmit=True, transmit_range=(1.0, 1.0))])
def test_without_realism_steps_and_with_unit_b1_the_classic_images_come_back(
    realism: MRIRealism,
) -> None:
    g = grid((20, 8, 8))
    model = boxes_model()
    classic = render_mri(model, g, PAPER_3T, supersample=2, **NOISE_FREE)
    real = render_mri(model, g, PAPER_3T, supersample=2, realism=realism, **NOISE_FREE)
    assert real.array.dtype == np.float32 and real.protocol == classic.protocol
    np.testing.assert_allclose(real.array, classic.array, rtol=2e-5, atol=1e-8)
    assert realism_preset("classic") is None
    assert realism_preset("realistic") == MRIRealism() == REALISM_PRESETS["realistic"]


@pytest.mark.parametrize("protocol", [PAPER_3T, PAPER_1P5T])
def test_flip_angle_polynomial_follows_the_spgr_equation(protocol: SpgrProtocol) -> None:
    params = table_tissues(protocol.field_strength_t)
    expansion = flip_angle_expansion(params, protocol.to_mr_protocol())
    coefficients = expansion.coefficients
    lo, hi = kappa_limits(protocol.flip_angle_deg)
    for kappa in np.linspace(lo, hi, 23):
        exact = np.stack([signal_of(p, protocol, kappa) for p in params.values()], axis=1)
        approx = np.stack(
            [expansion.signal(list(coefficients[e]), kappa) for e in range(exact.shape[0])]
        )
        # Within 1e-4 of each tissue's signal (1e-6 absolute for the signal-free ones).
        np.testing.assert_allclose(approx, exact, rtol=1e-4, atol=1e-6)
    nominal = np.stack([signal_of(p, protocol) for p in params.values()], axis=1)
    np.testing.assert_allclose(coefficients[:, 0], nominal)
    np.testing.assert_allclose(
        np.stack([expansion.signal(list(coefficients[e]), 1.0) for e in range(2)]),
        nominal,
        rtol=1e-6,
    )


def test_a_flip_angle_scale_changes_t1_contrast_as_the_spgr_equation_predicts() -> None:
    g = grid((20, 8, 8))
    model = boxes_model()
    params = table_tissues(3.0)
    low_b1 = replace(BARE, transmit=True, transmit_range=(0.8, 0.8))
    mr = render_mri(model, g, PAPER_3T, supersample=1, realism=low_b1, **NOISE_FREE)
    nominal = render_mri(model, g, PAPER_3T, supersample=1, **NOISE_FREE)
    muscle, csf = (slice(None), 10, 4, 4), (slice(None), 16, 4, 0)
    for scale, image in ((0.8, mr.array), (1.0, nominal.array)):
        expected = np.abs(signal_of(params[Tissue.MUSCLE], PAPER_3T, scale)) / np.abs(
            signal_of(params[Tissue.CSF], PAPER_3T, scale)
        )
        np.testing.assert_allclose(image[muscle] / image[csf], expected, rtol=2e-3)
    # A lower flip angle brings CSF (long T1) up more than muscle: less T1 weighting.
    ratio_low = mr.array[muscle] / mr.array[csf]
    ratio_nominal = nominal.array[muscle] / nominal.array[csf]
    assert np.all(ratio_low < 0.95 * ratio_nominal)


def test_subject_draws_reach_the_image() -> None:
    g = grid((20, 8, 8))
    model = boxes_model()
    subject = replace(BARE, subject_variability=True)
    mr = render_mri(model, g, PAPER_3T, supersample=1, seed=4, realism=subject, **NOISE_FREE)
    drawn = draw_subject_tissues(4, 3.0)[Tissue.MUSCLE]
    np.testing.assert_allclose(mr.array[:, 10, 4, 4], np.abs(signal_of(drawn, PAPER_3T)), 1e-5)
    table = np.abs(signal_of(table_tissues(3.0)[Tissue.MUSCLE], PAPER_3T))
    assert not np.allclose(mr.array[:, 10, 4, 4], table, rtol=1e-3)


def test_texture_is_small_correlated_and_absent_in_csf() -> None:
    g = grid((40, 40, 16))
    model = ShapesModel(
        [Box(tissue=Tissue.CSF, center_lps_mm=(10, 0, 0), size_mm=(20, 60, 60))],
        background=Tissue.MUSCLE,
    )
    textured = replace(BARE, texture=True)
    mr = render_mri(model, g, PAPER_3T, supersample=1, seed=2, realism=textured, **NOISE_FREE)
    plain = render_mri(model, g, PAPER_3T, supersample=1, **NOISE_FREE)
    muscle = mr.array[1, :16]
    cv = float(muscle.std() / muscle.mean())
    assert 0.01 < cv < 0.06  # a few percent (PD 3 %, T1 3 %, fat 2 points)
    assert muscle.mean() == pytest.approx(float(plain.array[1, 5, 5, 5]), rel=0.01)
    neighbours = np.corrcoef(muscle[:, :-1].ravel(), muscle[:, 1:].ravel())[0, 1]
    assert neighbours > 0.6  # 1 mm apart at 2 mm correlation: not white noise
    np.testing.assert_array_equal(mr.array[:, 25:], plain.array[:, 25:])  # fluid: no texture


def canal_model(length_mm: float = 80.0) -> ShapesModel:
    """Muscle with an axial canal (CSF, radius 7 mm) holding a cord (radius 3.5 mm)."""
    return ShapesModel(
        [
            Cylinder(
                tissue=Tissue.CSF, center_lps_mm=(0, 0, 0), radius_mm=7.0, length_mm=length_mm
            ),
            Cylinder(
                tissue=Tissue.SPINAL_CORD,
                center_lps_mm=(0, 0, 0),
                radius_mm=3.5,
                length_mm=length_mm,
            ),
        ],
        background=Tissue.MUSCLE,
    )


def test_flow_voids_lie_only_in_csf_and_mostly_ventral_to_the_cord() -> None:
    g = grid((22, 22, 100))  # axial: axis 0 = L, axis 1 = P, axis 2 = S
    model = canal_model(200.0)
    csf = tissue_fraction(model, g, Tissue.CSF, supersample=2)
    pure = csf == 1
    index = np.stack(np.meshgrid(*map(np.arange, g.shape), indexing="ij"), -1)
    p_mm = g.index_to_lps(index)[..., 1]
    flowing = replace(BARE, flow=True)
    ventral, dorsal = [], []
    for seed in range(4):
        still = render_mri(model, g, PAPER_3T, supersample=2, seed=seed, realism=BARE, **NOISE_FREE)
        moving = render_mri(
            model, g, PAPER_3T, supersample=2, seed=seed, realism=flowing, **NOISE_FREE
        )
        loss = still.array - moving.array
        assert np.all(loss[:, csf == 0] == 0)  # nothing changes outside CSF
        assert np.all(loss >= -1e-7)  # flow only removes signal
        csf_signal = float(still.array[1, 11, 5, 20])  # L 0.5, P -5.5 mm: pure CSF
        assert loss[1].max() > 0.4 * csf_signal  # deep voids in places...
        assert np.mean(loss[1][pure] > 0.02 * csf_signal) < 0.6  # ...patchy, not everywhere
        ventral.append(float(loss[1][pure & (p_mm < -3.5)].mean()))
        dorsal.append(float(loss[1][pure & (p_mm > 3.5)].mean()))
    assert np.mean(ventral) > 2.0 * np.mean(dorsal)


def test_same_seed_same_images_and_joint_render_equals_separate() -> None:
    g = grid((16, 16, 12))
    model = canal_model()
    realistic = MRIRealism()
    a = render_mri(model, g, PAPER_3T, seed=3, supersample=2, realism=realistic)
    b = render_mri(model, g, PAPER_3T, seed=3, supersample=2, realism=realistic)
    c = render_mri(model, g, PAPER_3T, seed=4, supersample=2, realism=realistic)
    np.testing.assert_array_equal(a.array, b.array)
    assert not np.array_equal(a.array, c.array)
    small_slabs = render_mri(
        model, g, PAPER_3T, seed=3, supersample=2, realism=realistic, max_subvoxels=600
    )
    np.testing.assert_array_equal(a.array, small_slabs.array)
    ct, mr = render_ct_and_mri(model, g, PAPER_3T, seed=3, supersample=2, realism=realistic)
    np.testing.assert_array_equal(mr.array, a.array)
    np.testing.assert_array_equal(ct.array, render_ct(model, g, seed=3, supersample=2).array)


def test_noise_sd_keeps_its_image_domain_meaning_with_kspace_noise() -> None:
    g = grid((32, 32, 16))
    truncated = replace(BARE, acquired_fraction=(0.6, 0.8, 1.0))
    mr = render_mri(
        ShapesModel(), g, PAPER_3T, noise_sd=2e-3, bias_field_strength=0.0, realism=truncated
    )
    # Air: the magnitude of complex noise of SD 2e-3 per channel is Rayleigh distributed, with
    # the same level at every echo (independent draws).
    for echo in mr.array:
        assert float(echo.mean()) == pytest.approx(2e-3 * math.sqrt(math.pi / 2), rel=0.03)
    assert not np.array_equal(mr.array[0], mr.array[1])


def test_bad_realism_settings_are_refused() -> None:
    with pytest.raises(PhantomParameterError, match="acquired_fraction"):
        MRIRealism(acquired_fraction=(0.0, 1.0, 1.0))
    with pytest.raises(PhantomParameterError, match="transmit_range"):
        MRIRealism(transmit_range=(0.2, 1.0))
    with pytest.raises(PhantomParameterError, match="age_years"):
        MRIRealism(age_years=-1.0)
    with pytest.raises(PhantomParameterError, match="realism"):
        realism_preset("photoreal")


def test_real_ct_derived_anatomy_keeps_flow_in_csf_and_t1_contrast(totalseg: Path) -> None:
    ct = read_volume(totalseg / "example_ct_sm.nii.gz")
    seg = read_volume(totalseg / "example_seg.nii.gz")
    assert isinstance(ct, CTVolume) and isinstance(seg, LabelMap)
    model = CTDerivedModel.from_ct(ct, seg)
    g = ct.geometry
    labels = model.labels_on(g)
    csf, cord = labels == Tissue.CSF, labels == Tissue.SPINAL_CORD
    assert csf.sum() > 50 and cord.sum() > 20
    kwargs: dict[str, Any] = {"supersample": 1, "seed": 2, **NOISE_FREE}
    # Full k-space: the acquisition's point-spread function would carry the voids outside.
    full = replace(MRIRealism(), acquired_fraction=(1.0, 1.0, 1.0))
    without_flow = render_mri(model, g, PAPER_3T, realism=replace(full, flow=False), **kwargs)
    realistic = render_mri(model, g, PAPER_3T, realism=full, **kwargs)
    loss = without_flow.array - realistic.array
    blood = labels == Tissue.BLOOD  # the labelled aorta
    assert blood.sum() > 50
    # Flow acts in the flowing tissues only (CSF and blood), on real anatomy too.
    assert np.all(loss[:, ~(csf | blood)] == 0)
    assert loss[1][csf].max() > 0 and loss[1][blood].max() > 0
    classic = render_mri(model, g, PAPER_3T, **kwargs)
    for image in (classic.array[1], realistic.array[1]):
        assert image[csf].mean() < image[cord].mean()  # T1w: CSF darker than cord
    muscle = labels == Tissue.MUSCLE
    cv = [float(a[1][muscle].std() / a[1][muscle].mean()) for a in (classic.array, realistic.array)]
    assert cv[0] < 1e-6 < 0.02 < cv[1]  # flat classes become textured, shaded tissue
