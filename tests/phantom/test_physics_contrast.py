"""Physically plausible random contrasts: known orderings of the gradient-echo signal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from synthct.errors import SynthctError
from synthct.imaging.labels import MARROW_TISSUES, Tissue
from synthct.io import read_volume
from synthct.phantom.ct_derived import tissue_map_from_ct
from synthct.phantom.domain_randomisation import (
    BACKGROUND_LABEL,
    ContrastRandomisation,
    draw_contrast,
    label_background,
    randomised_mr,
)
from synthct.phantom.physics_contrast import (
    MARROW_FAT_FRACTIONS,
    GradientEchoRanges,
    couple_marrow,
    physics_means,
)
from synthct.volume import CTVolume, LabelMap

#: Every corruption off: the image is the mixture alone, normalised.
PLAIN = {"sd_max": 0.0, "bias_sd_max": 0.0, "max_resolution_factor": 1.0}
PLAIN |= {"noise_sd_max": 0.0, "gamma_sd": 0.0}

T1W = GradientEchoRanges(  # 2D T1w FLASH, in phase at 3 T
    fields_t=(3.0,),
    repetition_time_ms=(200.0, 200.0),
    echo_time_ms=(2.3, 2.3),
    flip_angle_deg=(70.0, 70.0),
)
PDW = GradientEchoRanges(  # long TR, small flip angle, short TE
    fields_t=(3.0,),
    repetition_time_ms=(800.0, 800.0),
    echo_time_ms=(1.0, 1.0),
    flip_angle_deg=(5.0, 5.0),
)
TISSUES = [
    Tissue.SUBCUTANEOUS_FAT,
    Tissue.MUSCLE,
    Tissue.CSF,
    Tissue.CORTICAL_BONE,
    Tissue.AIR,
    *MARROW_TISSUES,
]


def _means(ranges: GradientEchoRanges, seed: int = 0) -> dict[Tissue, float]:
    values, known = physics_means([int(t) for t in TISSUES], np.random.default_rng(seed), ranges)
    assert known.all()
    return dict(zip(TISSUES, values.tolist(), strict=True))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_t1_weighting_orders_fat_muscle_csf_and_marrow_by_fat(seed: int) -> None:
    m = _means(T1W, seed)
    assert max(m.values()) == pytest.approx(1.0)
    assert m[Tissue.SUBCUTANEOUS_FAT] > m[Tissue.MUSCLE] > m[Tissue.CSF]
    marrow = [m[t] for t in MARROW_TISSUES]
    assert marrow == sorted(marrow)  # fattier marrow is brighter on T1w
    assert m[Tissue.AIR] == 0.0 and m[Tissue.CORTICAL_BONE] < 0.1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_proton_density_weighting_makes_csf_brighter_than_muscle(seed: int) -> None:
    m = _means(PDW, seed)
    assert m[Tissue.CSF] > m[Tissue.MUSCLE]
    assert m[Tissue.CORTICAL_BONE] < 0.1 < m[Tissue.MUSCLE]


def test_labels_that_are_no_tissue_are_left_to_the_caller() -> None:
    values, known = physics_means([BACKGROUND_LABEL, int(Tissue.MUSCLE)], np.random.default_rng(0))
    assert known.tolist() == [False, True] and values[0] == 0.0 and values[1] == 1.0


def test_coupled_marrow_lies_between_red_marrow_and_fat_by_its_fat_fraction() -> None:
    values = np.array(
        sorted(
            [
                int(Tissue.SUBCUTANEOUS_FAT),
                int(Tissue.EPIDURAL_FAT),
                *(int(t) for t in MARROW_TISSUES),
            ]
        ),
        dtype=np.int64,
    )
    means = np.zeros((values.size, 2))
    means[values == Tissue.SUBCUTANEOUS_FAT] = [0.9, 0.2]
    couple_marrow(values, means, np.array([0.1, 0.6]))
    row = {int(v): n for n, v in enumerate(values)}
    np.testing.assert_allclose(means[row[int(Tissue.EPIDURAL_FAT)]], [0.9, 0.2])
    for label, ff in MARROW_FAT_FRACTIONS.items():
        expected = [(1 - ff) * 0.1 + ff * 0.9, (1 - ff) * 0.6 + ff * 0.2]
        np.testing.assert_allclose(means[row[label]], expected)
    np.testing.assert_allclose(means[row[int(Tissue.MARROW_FF50)]], [0.5, 0.4])


def test_draw_with_physics_always_keeps_air_darker_than_soft_tissue() -> None:
    labels = [int(t) for t in TISSUES] + [BACKGROUND_LABEL]
    settings = ContrastRandomisation(p_physics=1.0)
    for seed in range(20):
        draw = draw_contrast(labels, np.random.default_rng(seed), settings=settings)
        means = dict(zip(draw.labels.tolist(), draw.means[:, 0].tolist(), strict=True))
        assert means[int(Tissue.AIR)] == 0.0
        assert means[int(Tissue.CORTICAL_BONE)] < means[int(Tissue.MUSCLE)]


def test_bad_probability_is_refused() -> None:
    with pytest.raises(SynthctError, match="p_physics"):
        ContrastRandomisation(p_physics=1.5)


@pytest.mark.parametrize("seed", range(6))
def test_marrow_bins_are_one_marrow_differing_by_fat_alone(seed: int) -> None:
    """The complex signal is linear in the fat fraction, so over the five bins the squared
    magnitude is exactly a quadratic in it (opposed-phase echoes make it non-monotonic)."""
    labels = [int(t) for t in MARROW_TISSUES]
    values, _ = physics_means(labels, np.random.default_rng(seed))
    ff = np.array([MARROW_FAT_FRACTIONS[v] for v in labels])
    fit = np.polynomial.polynomial.Polynomial.fit(ff, values**2, 2)
    np.testing.assert_allclose(fit(ff), values**2, atol=1e-9)


def test_real_vertebrae_get_one_linear_marrow_ramp(totalseg: Path) -> None:
    """On the real CT's tissue map the mixture puts the marrow bins evenly between red marrow
    and fat, so a vertebral body reads as one structure, not a patchwork of five tissues."""
    ct = read_volume(totalseg / "example_ct_sm.nii.gz")
    seg = read_volume(totalseg / "example_seg_fast.nii.gz")
    assert isinstance(ct, CTVolume) and isinstance(seg, LabelMap)
    tissue = label_background(tissue_map_from_ct(ct, seg).array)
    present = [t for t in MARROW_TISSUES if np.any(tissue == t)]
    assert len(present) == 5
    settings = ContrastRandomisation(marrow_from_fat=True, **PLAIN)
    uncoupled = ContrastRandomisation(**PLAIN)
    spread = []
    for seed in range(3):
        for s, coupled in ((settings, True), (uncoupled, False)):
            image = randomised_mr(tissue, ct.geometry, np.random.default_rng(seed), settings=s)[0]
            steps = np.diff([float(np.unique(image[tissue == t])[0]) for t in present])
            if coupled:
                np.testing.assert_allclose(steps, steps[0], atol=1e-5)
            else:
                spread.append(float(np.ptp(steps)))
    assert max(spread) > 0.1  # without coupling the bins are unrelated


def test_bad_protocol_ranges_are_refused_with_the_range_named() -> None:
    with pytest.raises(SynthctError, match="flip_angle_deg"):
        GradientEchoRanges(flip_angle_deg=(10.0, 120.0))
    with pytest.raises(SynthctError, match="echo_time_ms"):
        GradientEchoRanges(repetition_time_ms=(4.0, 8.0), echo_time_ms=(7.5, 12.0))
    with pytest.raises(SynthctError, match="repetition_time_ms"):
        GradientEchoRanges(repetition_time_ms=(10.0, 5.0))


def test_training_configuration_carries_the_protocol_family_to_the_generator() -> None:
    from synthct.synthesis.config import DataConfig
    from synthct.synthesis.randomised_source import contrast_settings

    data = DataConfig(
        p_physics=1.0,
        physics_fields_t=(3.0,),
        physics_repetition_time_ms=(5.0, 5.0),
        physics_echo_time_ms=(1.15, 1.15),
        physics_flip_angle_deg=(10.0, 10.0),
    )
    settings = contrast_settings(data)
    assert settings.p_physics == 1.0
    assert settings.gradient_echo == GradientEchoRanges(
        fields_t=(3.0,),
        repetition_time_ms=(5.0, 5.0),
        echo_time_ms=(1.15, 1.15),
        flip_angle_deg=(10.0, 10.0),
    )
    # At 3 T, TE 1.15 ms is opposed phase: marrow of fat fraction 0.5 cancels below both ends.
    values, _ = physics_means(
        [int(t) for t in MARROW_TISSUES], np.random.default_rng(0), settings.gradient_echo
    )
    assert values[2] < min(values[0], values[4])


def test_every_drawn_echo_fits_its_repetition_time() -> None:
    """Echo times longer than the shortest TR: TR is drawn long enough for them (the signal
    equation refuses TE >= TR)."""
    ranges = GradientEchoRanges(repetition_time_ms=(4.0, 40.0), echo_time_ms=(10.0, 20.0))
    labels = [int(Tissue.MUSCLE), int(Tissue.SUBCUTANEOUS_FAT)]
    for seed in range(200):
        values, _ = physics_means(labels, np.random.default_rng(seed), ranges)
        assert np.isfinite(values).all() and values.max() == pytest.approx(1.0)
