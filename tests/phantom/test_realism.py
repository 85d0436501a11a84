"""Known answers for the realism instruments: NPS of white noise, HU statistics, classifier AUC."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthct.errors import SynthctError
from synthct.geometry import Geometry
from synthct.imaging.body_mask import axial_axis, body_mask_from_ct
from synthct.io import read_volume
from synthct.phantom.realism.classifier import (
    ClassifierSettings,
    held_out_auc,
    patient_folds,
    roc_auc,
)
from synthct.phantom.realism.noise_power import axial_roi_corners, radial_nps
from synthct.phantom.realism.patches import common_grid, on_common_grid, sample_patches
from synthct.phantom.realism.tissue_hu import HUWindows, hu_class_masks, tissue_hu_stats
from synthct.volume import CTVolume


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


# -- noise power spectrum ----------------------------------------------------------------------
@pytest.mark.parametrize("detrend", ["mean", "plane"])
@pytest.mark.parametrize("spacing", [(0.5, 0.8, 2.0), (3.0, 3.0, 3.0)])
def test_nps_of_white_noise_is_flat_at_variance_times_pixel_area(
    detrend: str, spacing: tuple[float, float, float]
) -> None:
    sd_hu = 20.0
    rng = np.random.default_rng(1)
    hu = 40.0 + sd_hu * rng.standard_normal((64, 64, 24))
    mask = np.ones(hu.shape, dtype=bool)
    nps = radial_nps(
        hu,
        mask,
        spacing_mm=spacing,
        axial_axis=2,
        roi_voxels=16,
        max_rois=400,
        detrend=detrend,  # type: ignore[arg-type]
    )
    flat = sd_hu**2 * spacing[0] * spacing[1]
    finite = np.isfinite(nps.nps_hu2_mm2)
    # A fitted plane also takes the power of the lowest frequencies (a linear ramp sits there):
    # with plane detrending only rings from twice the fundamental frequency on stay flat.
    fundamental = 1.0 / (16 * min(spacing[0], spacing[1]))
    low = 0.0 if detrend == "mean" else 2 * fundamental
    rings = nps.nps_hu2_mm2[finite & (nps.frequency_per_mm >= low)]
    assert len(rings) >= 3
    # 400 ROIs of 256 pixels: each ring's mean is within ~10% of the flat level.
    np.testing.assert_allclose(rings, flat, rtol=0.12)
    if detrend == "plane":
        assert nps.nps_hu2_mm2[finite][0] < 0.95 * flat
    assert nps.variance_hu2 == pytest.approx(sd_hu**2, rel=0.03)
    assert nps.noise_sd_hu == pytest.approx(sd_hu, rel=0.02)
    assert nps.pixel_mm == (spacing[0], spacing[1])


def test_nps_of_smoothed_noise_moves_power_to_low_frequencies() -> None:
    from scipy import ndimage

    rng = np.random.default_rng(2)
    white = 30.0 * rng.standard_normal((64, 64, 16))
    smooth = ndimage.gaussian_filter(white, sigma=(1.5, 1.5, 0))
    mask = np.ones(white.shape, dtype=bool)
    kw = {"spacing_mm": (1.0, 1.0, 1.0), "axial_axis": 2, "roi_voxels": 16}
    white_nps = radial_nps(white, mask, **kw)  # type: ignore[arg-type]
    smooth_nps = radial_nps(smooth, mask, **kw)  # type: ignore[arg-type]
    # Flat spectrum: mean |f| of a 16 x 16 DFT grid at 1 mm is ~0.38 mm^-1.
    assert white_nps.mean_frequency_per_mm > 0.3
    assert smooth_nps.mean_frequency_per_mm < 0.5 * white_nps.mean_frequency_per_mm


def test_nps_uses_the_axial_axis_and_refuses_a_region_too_small() -> None:
    rng = np.random.default_rng(3)
    hu = rng.standard_normal((20, 40, 40))
    mask = np.zeros(hu.shape, dtype=bool)
    mask[2:12, 5:25, 5:25] = True  # 20 x 20 in-plane when axis 0 is axial, 10 x 20 for axis 2
    corners = axial_roi_corners(mask, axial_axis=0, roi_voxels=16)
    # Corners 5..9 fit a 16-voxel ROI in 5:25; the stride-8 lattice keeps 8: one per slice.
    assert corners.tolist() == [[k, 8, 8] for k in range(2, 12)]
    assert axial_roi_corners(mask, axial_axis=2, roi_voxels=16).shape == (0, 3)
    with pytest.raises(SynthctError, match="no 16 x 16"):
        radial_nps(hu, mask, spacing_mm=(1, 1, 1), axial_axis=2, roi_voxels=16)


# -- per-tissue HU -----------------------------------------------------------------------------
def _slab_phantom(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A body of fat, muscle and bone slabs in air, each a known HU with noise SD 10 HU."""
    rng = np.random.default_rng(seed)
    hu = np.full((60, 60, 20), -1000.0)
    hu[10:50, 10:25, :] = -100.0  # fat
    hu[10:50, 25:40, :] = 50.0  # muscle
    hu[10:50, 40:50, :] = 700.0  # bone
    hu += 10.0 * rng.standard_normal(hu.shape)
    body = np.zeros(hu.shape, dtype=bool)
    body[10:50, 10:50, :] = True
    return hu, body


def test_tissue_hu_of_known_slabs() -> None:
    hu, body = _slab_phantom()
    masks = hu_class_masks(hu, body, spacing_mm=(1.0, 1.0, 1.0))
    stats = tissue_hu_stats(hu, masks)
    assert stats["fat"].mean_hu == pytest.approx(-100.0, abs=1.0)
    assert stats["soft_tissue"].mean_hu == pytest.approx(50.0, abs=1.0)
    assert stats["bone"].mean_hu == pytest.approx(700.0, abs=1.0)
    assert stats["air"].mean_hu == pytest.approx(-1000.0, abs=1.0)
    for name in ("fat", "soft_tissue", "bone", "air"):
        # Classes from the smoothed image: the noise SD is measured untruncated.
        assert stats[name].sd_hu == pytest.approx(10.0, rel=0.05), name
    assert "lung" not in stats
    # Edges are eroded: away from the corners with air, no class touches a slab boundary.
    inner = slice(15, 45)
    assert not masks["fat"][inner, 24, :].any()
    assert not masks["soft_tissue"][inner, 25, :].any()


def test_tissue_hu_leaves_out_constant_padding_and_checks_shapes() -> None:
    hu, body = _slab_phantom()
    hu[:, :5, :] = -1024.0  # outside the reconstruction circle: no noise
    masks = hu_class_masks(hu, body, spacing_mm=(1.0, 1.0, 1.0))
    assert not masks["air"][:, :4, :].any()
    assert tissue_hu_stats(hu, masks)["air"].sd_hu == pytest.approx(10.0, rel=0.05)
    with pytest.raises(SynthctError, match="one 3D grid"):
        hu_class_masks(hu, body[:-1], spacing_mm=(1.0, 1.0, 1.0))
    with pytest.raises(SynthctError, match="low < high"):
        HUWindows(fat_hu=(-30.0, -190.0))


def test_tissue_hu_on_a_real_ct(totalseg) -> None:  # type: ignore[no-untyped-def]
    ct = read_volume(totalseg / "chest_ct.nii.gz", kind="ct")
    assert isinstance(ct, CTVolume)
    hu = np.asarray(ct.array, dtype=np.float32)
    body = body_mask_from_ct(hu, axial_axis=axial_axis(ct))
    stats = tissue_hu_stats(hu, hu_class_masks(hu, body, spacing_mm=ct.spacing_mm))
    # Published ranges: lung parenchyma about -850 HU, subcutaneous fat about -100 HU.
    assert -900.0 < stats["lung"].mean_hu < -650.0
    assert -130.0 < stats["fat"].mean_hu < -70.0
    assert stats["bone"].mean_hu > 250.0
    assert 5.0 < stats["fat"].sd_hu < 60.0


# -- patches -----------------------------------------------------------------------------------
def test_common_grid_is_lps_aligned_and_covers_an_oblique_volume() -> None:
    theta = np.radians(30.0)
    direction = np.array(
        [[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]]
    )
    g = Geometry.from_parameters((20, 10, 5), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), direction)
    grid = common_grid(g, 2.0)
    np.testing.assert_allclose(grid.direction, np.eye(3))
    assert grid.spacing_mm == (2.0, 2.0, 2.0)
    # The rotated 19 x 9 mm rectangle spans 19 cos30 + 9 sin30 = 20.95 mm along L and
    # 19 sin30 + 9 cos30 = 17.29 mm along P; 8 mm along S.
    assert grid.shape == (11, 9, 5)
    ct = CTVolume(np.full(g.shape, 40.0, dtype=np.float32), g.affine)
    resampled = on_common_grid(ct, 2.0)
    assert resampled.geometry.shape == grid.shape
    assert np.isclose(resampled.array, 40.0).sum() > 0.3 * resampled.array.size


def test_sample_patches_stay_inside_the_mask() -> None:
    hu = np.arange(40 * 40 * 40, dtype=np.float32).reshape(40, 40, 40)
    mask = np.zeros(hu.shape, dtype=bool)
    mask[10:30, 10:30, 10:30] = True
    patches = sample_patches(hu, mask, patch_voxels=8, count=50, rng=np.random.default_rng(0))
    assert patches.shape == (50, 8, 8, 8)
    # A patch's first voxel tells its corner; half the patch must be in the mask.
    corner = np.stack(np.unravel_index(patches[:, 0, 0, 0].astype(int), hu.shape), axis=1)
    assert np.all(corner >= 10 - 4) and np.all(corner + 8 <= 30 + 4)
    with pytest.raises(SynthctError, match="smaller than"):
        sample_patches(hu[:4], mask[:4], patch_voxels=8, count=1, rng=np.random.default_rng(0))


# -- classifier --------------------------------------------------------------------------------
def test_roc_auc_known_answers() -> None:
    assert roc_auc([0, 1, 2], [3, 4]) == 1.0
    assert roc_auc([3, 4], [0, 1, 2]) == 0.0
    assert roc_auc([1, 1], [1, 1]) == 0.5
    # Pairs (neg, pos): (0,1) win, (0,0.5) win, (2,1) loss, (2,0.5) loss -> 2 of 4.
    assert roc_auc([0, 2], [1, 0.5]) == 0.5
    assert roc_auc([0, 1], [1, 2]) == pytest.approx(0.875)  # one tie counts half
    with pytest.raises(SynthctError, match="each class"):
        roc_auc([], [1.0])


def _noise_patches(n: int, sd_hu: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (40.0 + sd_hu * rng.standard_normal((n, 8, 8, 8))).astype(np.float32)


FAST = ClassifierSettings(steps=60, batch_size=32, channels=4, seed=0)


def test_classifier_auc_is_chance_on_one_distribution() -> None:
    aucs = [
        held_out_auc(
            _noise_patches(200, 20.0, 10 + s),
            _noise_patches(200, 20.0, 20 + s),
            _noise_patches(200, 20.0, 30 + s),
            _noise_patches(200, 20.0, 40 + s),
            ClassifierSettings(steps=60, batch_size=32, channels=4, seed=s),
        )
        for s in range(3)
    ]
    # Null SD of one AUC with 200 + 200 scores is ~0.029; 0.12 is four SDs.
    assert all(abs(a - 0.5) < 0.12 for a in aucs), aucs


def test_classifier_auc_is_one_on_clearly_different_distributions() -> None:
    auc = held_out_auc(
        _noise_patches(200, 10.0, 1),
        _noise_patches(200, 60.0, 2),
        _noise_patches(200, 10.0, 3),
        _noise_patches(200, 60.0, 4),
        FAST,
    )
    assert auc > 0.98


def test_patient_folds_keep_derived_cases_with_their_patient() -> None:
    patients = ["abdomen", "thorax", "chest"]
    sources = ["chest", None, "abdomen", None, None, "chest", None]
    assert patient_folds(patients, sources) == [2, 1, 0, 0, 1, 2, 0]
    with pytest.raises(SynthctError, match="no real patient"):
        patient_folds(patients, ["pelvis"])


def test_common_grid_takes_a_spacing_per_axis() -> None:
    # a 19 x 19 x 18 mm box (20 x 20 x 10 voxels of 1 x 1 x 2 mm) on the models' planned
    # 0.74 x 0.74 x 0.9 mm: floor(19 / 0.74) + 1 = 26, floor(18 / 0.9) + 1 = 21
    g = Geometry.from_parameters((20, 20, 10), (1.0, 1.0, 2.0), (5.0, -3.0, 7.0))
    grid = common_grid(g, (0.74, 0.74, 0.9))
    assert grid.spacing_mm == pytest.approx((0.74, 0.74, 0.9))
    assert grid.shape == (26, 26, 21)
    np.testing.assert_allclose(grid.origin_lps_mm, (5.0, -3.0, 7.0))
    ct = CTVolume(np.full(g.shape, 40.0, dtype=np.float32), g.affine)
    assert on_common_grid(ct, (0.74, 0.74, 0.9)).geometry.shape == (26, 26, 21)


@pytest.mark.parametrize("spacing", [0.0, (1.0, 1.0), (1.0, -1.0, 1.0)])
def test_common_grid_refuses_a_bad_spacing(spacing: object) -> None:
    g = Geometry.from_parameters((4, 4, 4), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    with pytest.raises(SynthctError, match="spacing_mm"):
        common_grid(g, spacing)  # type: ignore[arg-type]
