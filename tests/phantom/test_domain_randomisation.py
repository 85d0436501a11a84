"""Domain-randomised MRI: known answers for the random contrast model of SynthSeg/SynthSR."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from synthct.errors import SynthctError
from synthct.geometry import Geometry
from synthct.imaging.labels import Tissue
from synthct.io import read_volume
from synthct.phantom.ct_derived import tissue_map_from_ct
from synthct.phantom.domain_randomisation import (
    BACKGROUND_LABEL,
    ContrastRandomisation,
    draw_contrast,
    label_background,
    randomised_mr,
    resize_linear,
)
from synthct.volume import CTVolume, LabelMap

#: Every corruption off: the image is the Gaussian mixture alone, normalised.
PLAIN = ContrastRandomisation(
    sd_max=0.0, bias_sd_max=0.0, max_resolution_factor=1.0, noise_sd_max=0.0, gamma_sd=0.0
)


def _box_phantom() -> tuple[np.ndarray, Geometry]:
    """Air around a fat box holding muscle, a vertebra (cancellous in cortical) and lung air."""
    labels = np.full((24, 24, 16), int(Tissue.AIR), np.uint8)
    labels[2:22, 2:22, 2:14] = Tissue.SUBCUTANEOUS_FAT
    labels[4:12, 4:20, 3:13] = Tissue.MUSCLE
    labels[13:21, 8:16, 3:13] = Tissue.CORTICAL_BONE
    labels[15:19, 10:14, 5:11] = Tissue.CANCELLOUS_BONE
    labels[5:9, 6:10, 5:9] = Tissue.AIR  # enclosed: lung or gas, not background
    return label_background(labels), Geometry.from_parameters(labels.shape, (3.0, 3.0, 3.0))


def test_outside_air_is_background_and_enclosed_air_stays_air() -> None:
    labels, _ = _box_phantom()
    assert labels[0, 0, 0] == BACKGROUND_LABEL and labels[23, 23, 15] == BACKGROUND_LABEL
    assert np.all(labels[5:9, 6:10, 5:9] == Tissue.AIR)
    assert np.count_nonzero(labels == Tissue.AIR) == 4 * 4 * 4
    assert np.count_nonzero(labels == BACKGROUND_LABEL) == 24 * 24 * 16 - 20 * 20 * 12


def test_same_generator_state_gives_the_same_image_and_another_seed_another() -> None:
    labels, geometry = _box_phantom()
    a = randomised_mr(labels, geometry, np.random.default_rng(7), 2)
    b = randomised_mr(labels, geometry, np.random.default_rng(7), 2)
    c = randomised_mr(labels, geometry, np.random.default_rng(8), 2)
    assert a.dtype == np.float32 and a.shape == (2, 24, 24, 16)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 0.05


def test_without_corruptions_each_label_is_one_value_and_the_range_is_unit() -> None:
    labels, geometry = _box_phantom()
    image = randomised_mr(labels, geometry, np.random.default_rng(1), 3, settings=PLAIN)
    for channel in image:
        assert channel.min() == 0.0 and channel.max() == 1.0
        values = {int(v): np.unique(channel[labels == v]) for v in np.unique(labels)}
        assert all(v.size == 1 for v in values.values())


def test_with_texture_a_labels_voxels_share_one_mean_up_to_noise() -> None:
    labels, geometry = _box_phantom()
    settings = ContrastRandomisation(
        sd_max=0.1, bias_sd_max=0.0, max_resolution_factor=1.0, noise_sd_max=0.0, gamma_sd=0.0
    )
    image = randomised_mr(labels, geometry, np.random.default_rng(3), settings=settings)[0]
    fat = image[labels == Tissue.SUBCUTANEOUS_FAT]
    halves = np.array_split(fat, 2)
    standard_error = fat.std() / np.sqrt(halves[0].size)
    # Both halves of the fat have the same mean within 4 standard errors (one Gaussian).
    assert abs(halves[0].mean() - halves[1].mean()) < 4 * standard_error
    # The texture SD is at most sd_max in units of the unnormalised range.
    assert 0.0 < fat.std() < 0.5


def test_different_draws_give_different_contrasts() -> None:
    labels, geometry = _box_phantom()
    fat_brighter = []
    for seed in range(20):
        image = randomised_mr(labels, geometry, np.random.default_rng(seed), settings=PLAIN)[0]
        fat = image[labels == Tissue.SUBCUTANEOUS_FAT][0]
        muscle = image[labels == Tissue.MUSCLE][0]
        fat_brighter.append(bool(fat > muscle))
    # T1w-like (fat bright) and fat-suppressed-like (fat dark) contrasts both occur.
    assert 3 <= sum(fat_brighter) <= 17


def test_dark_classes_merge_into_one_value_when_drawn_so() -> None:
    labels, geometry = _box_phantom()
    merged = ContrastRandomisation(
        sd_max=0.0,
        p_dark=1.0,
        p_merge_dark=1.0,
        bias_sd_max=0.0,
        max_resolution_factor=1.0,
        noise_sd_max=0.0,
        gamma_sd=0.0,
    )
    image = randomised_mr(labels, geometry, np.random.default_rng(5), settings=merged)[0]
    assert image[labels == Tissue.AIR][0] == image[labels == Tissue.CORTICAL_BONE][0]
    apart = ContrastRandomisation(
        sd_max=0.0,
        p_dark=0.0,
        p_merge_dark=0.0,
        bias_sd_max=0.0,
        max_resolution_factor=1.0,
        noise_sd_max=0.0,
        gamma_sd=0.0,
    )
    image = randomised_mr(labels, geometry, np.random.default_rng(5), settings=apart)[0]
    assert image[labels == Tissue.AIR][0] != image[labels == Tissue.CORTICAL_BONE][0]


def test_merged_draw_gives_dark_labels_one_mean_and_sd() -> None:
    settings = ContrastRandomisation(p_dark=1.0, p_merge_dark=1.0)
    draw = draw_contrast(
        [0, 1, 2, 3, BACKGROUND_LABEL], np.random.default_rng(0), n_channels=2, settings=settings
    )
    dark = np.isin(draw.labels, [Tissue.AIR, Tissue.CORTICAL_BONE])
    assert draw.merged_dark
    np.testing.assert_array_equal(draw.means[dark][0], draw.means[dark][1])
    np.testing.assert_array_equal(draw.sds[dark][0], draw.sds[dark][1])
    assert np.all(draw.means[dark] <= settings.dark_mean_max)
    assert np.all(draw.means[draw.labels == BACKGROUND_LABEL] <= settings.background_mean_max)


def test_background_is_darker_than_every_tissue_when_tissues_are_not_dark() -> None:
    labels, geometry = _box_phantom()
    settings = ContrastRandomisation(
        mean_range=(0.3, 1.0),
        p_dark=0.0,
        sd_max=0.0,
        bias_sd_max=0.0,
        max_resolution_factor=1.0,
        noise_sd_max=0.0,
        gamma_sd=0.0,
    )
    for seed in range(5):
        image = randomised_mr(labels, geometry, np.random.default_rng(seed), settings=settings)[0]
        assert image[labels == BACKGROUND_LABEL].max() == 0.0
        assert image[labels != BACKGROUND_LABEL].min() > 0.0


def test_every_corruption_on_stays_finite_and_normalised() -> None:
    labels, geometry = _box_phantom()
    harsh = ContrastRandomisation(
        bias_sd_max=1.0, max_resolution_factor=4.0, noise_sd_max=0.2, gamma_sd=1.0
    )
    for seed in range(4):
        image = randomised_mr(labels, geometry, np.random.default_rng(seed), 2, settings=harsh)
        assert np.isfinite(image).all()
        assert image.min() == 0.0 and image.max() == 1.0


def test_low_resolution_blurs_a_step_edge() -> None:
    labels = np.full((32, 8, 8), int(Tissue.MUSCLE), np.uint8)
    labels[16:] = Tissue.SUBCUTANEOUS_FAT
    geometry = Geometry.from_parameters(labels.shape, (1.0, 1.0, 1.0))
    sharp = randomised_mr(labels, geometry, np.random.default_rng(2), settings=PLAIN)[0]
    blurred_settings = ContrastRandomisation(
        sd_max=0.0, bias_sd_max=0.0, max_resolution_factor=4.0, noise_sd_max=0.0, gamma_sd=0.0
    )
    blurred = randomised_mr(labels, geometry, np.random.default_rng(2), settings=blurred_settings)[
        0
    ]
    profile_sharp = sharp[:, 4, 4]
    profile_blurred = blurred[:, 4, 4]
    # One jump between two voxels without blur; intermediate values across the edge with it.
    assert np.count_nonzero(np.abs(np.diff(profile_sharp)) > 1e-6) == 1
    intermediate = (profile_blurred > 0.05) & (profile_blurred < 0.95)
    assert np.count_nonzero(intermediate) >= 2


def test_resize_linear_keeps_a_ramp_a_ramp() -> None:
    ramp = np.broadcast_to(np.arange(4, dtype=np.float32)[:, None, None], (4, 3, 2))
    out = resize_linear(ramp, (7, 5, 2))
    np.testing.assert_allclose(out[:, 2, 1], np.linspace(0.0, 3.0, 7), atol=1e-6)
    np.testing.assert_allclose(out[3], 1.5, atol=1e-6)


def test_bad_inputs_are_refused() -> None:
    labels, geometry = _box_phantom()
    with pytest.raises(SynthctError, match="do not match the grid"):
        randomised_mr(labels[:-1], geometry, np.random.default_rng(0))
    with pytest.raises(SynthctError, match="p_dark"):
        ContrastRandomisation(p_dark=1.5)
    with pytest.raises(SynthctError, match=r"labels 0\.\.254"):
        label_background(np.full((2, 2, 2), 300))


def test_real_ct_tissue_map_gives_one_value_per_tissue(totalseg: Path) -> None:
    ct = read_volume(totalseg / "example_ct_sm.nii.gz")
    seg = read_volume(totalseg / "example_seg_fast.nii.gz")
    assert isinstance(ct, CTVolume) and isinstance(seg, LabelMap)
    tissue = label_background(tissue_map_from_ct(ct, seg).array)
    present = set(np.unique(tissue).tolist())
    assert {BACKGROUND_LABEL, Tissue.CANCELLOUS_BONE, Tissue.SPINAL_CORD} <= present
    image = randomised_mr(tissue, ct.geometry, np.random.default_rng(0), settings=PLAIN)[0]
    for value in present:
        assert np.unique(image[tissue == value]).size == 1
    full = randomised_mr(tissue, ct.geometry, np.random.default_rng(0))
    assert full.shape == (1, *ct.spatial_shape) and np.isfinite(full).all()
    assert full.min() == 0.0 and full.max() == 1.0
