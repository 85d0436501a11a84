"""Image-level metrics: identities, known answers, clipping, and equality with SynthRAD2025.

``literal_*`` below restate the SynthRAD2025 evaluation (github.com/SynthRAD2025/evaluation,
image_metrics.py) in the most direct way, independently of the library: explicit loop over the
scales, the 7x7x7 window mean as an explicit sum of shifted copies, the 2x2x2 downsampling with
``fftconvolve`` as the reference does, and ``L**w * C**w * S**w`` voxel by voxel.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from scipy.signal import fftconvolve

from synthct.errors import GeometryMismatchError, VolumeKindError
from synthct.geometry import affine_from_parameters
from synthct.imaging.body_mask import EmptyMaskError, body_mask_from_ct, body_mask_volume
from synthct.imaging.image_metrics import (
    MS_SSIM_WEIGHTS,
    ImageMetrics,
    bone_dice,
    image_metrics,
    mae_by_tissue_hu,
    mae_hu,
    mean_error_hu,
    ms_ssim,
    psnr_db,
)
from synthct.io import read_volume
from synthct.volume import CTVolume, LabelMap, SyntheticCT

LOW_HU, HIGH_HU = -1024.0, 3071.0
AFFINE = affine_from_parameters((1.0, 1.0, 2.0))


# -- independent literal restatement of SynthRAD2025 -------------------------------------------
def literal_window_mean(image: np.ndarray, size: int = 7) -> np.ndarray:
    """Mean over a size^3 window: explicit sum of shifted copies of a symmetric-padded image."""
    r = size // 2
    padded = np.pad(image, r, mode="symmetric")  # == scipy.ndimage mode 'reflect'
    total = np.zeros(image.shape)
    for dz in range(size):
        for dy in range(size):
            plane = padded[dz : dz + image.shape[0], dy : dy + image.shape[1]]
            for dx in range(size):
                total += plane[:, :, dx : dx + image.shape[2]]
    return total / size**3


def literal_ms_ssim(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray) -> float:
    mask = np.where(mask > 0, 1.0, 0.0)
    # score_patient: outside the mask -> -1024; ms_ssim: clip, mask again, shift to >= 0
    gt = np.where(mask == 0, LOW_HU, gt)
    pred = np.where(mask == 0, LOW_HU, pred)
    gt = np.where(mask == 0, LOW_HU, np.clip(gt, LOW_HU, HIGH_HU)) - LOW_HU
    pred = np.where(mask == 0, LOW_HU, np.clip(pred, LOW_HU, HIGH_HU)) - LOW_HU
    data_range = HIGH_HU - LOW_HU
    pads = []
    for n in gt.shape:
        before = (97 - n) // 2 if n < 97 else 0
        after = 97 - n - (97 - n) // 2 if n < 97 else 0
        pads.append((before, after))
    gt, pred, mask = (np.pad(a, pads, mode="edge") for a in (gt, pred, mask))
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    c3 = c2 / 2
    per_scale = []
    for level in range(5):
        w = MS_SSIM_WEIGHTS[level]
        ux, uy = literal_window_mean(gt), literal_window_mean(pred)
        uxx, uyy = literal_window_mean(gt * gt), literal_window_mean(pred * pred)
        uxy = literal_window_mean(gt * pred)
        norm = 343 / 342
        vx, vy, vxy = norm * (uxx - ux * ux), norm * (uyy - uy * uy), norm * (uxy - ux * uy)
        sx, sy = np.sqrt(np.clip(vx, 0, None)), np.sqrt(np.clip(vy, 0, None))
        lum = np.clip((2 * ux * uy + c1) / (ux * ux + uy * uy + c1), 0, None)
        con = np.clip((2 * sx * sy + c2) / (vx + vy + c2), 0, None)
        stru = np.clip((vxy + c3) / (sx * sy + c3), 0, None)
        ssim_map = lum**w * con**w * stru**w
        inner = (slice(3, -3),) * 3
        per_scale.append(ssim_map[inner][mask[inner].astype(bool)].mean())
        kernel = np.ones((2, 2, 2)) / 8
        gt = fftconvolve(gt, kernel, mode="same")[::2, ::2, ::2]
        pred = fftconvolve(pred, kernel, mode="same")[::2, ::2, ::2]
        mask = mask[::2, ::2, ::2]
    return float(np.prod(np.clip(per_scale, 0, 1)))


def literal_psnr(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray) -> float:
    gt = np.clip(np.where(mask == 0, LOW_HU, gt), LOW_HU, HIGH_HU)[mask > 0]
    pred = np.clip(np.where(mask == 0, LOW_HU, pred), LOW_HU, HIGH_HU)[mask > 0]
    mse = np.mean((gt - pred) ** 2)
    return float(10 * np.log10((HIGH_HU - LOW_HU) ** 2 / mse))


def literal_mae(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray) -> float:
    m = np.where(mask > 0, 1.0, 0.0)
    return float(np.sum(np.abs(gt * m - pred * m)) / m.sum())


# -- data ---------------------------------------------------------------------------------------
def ball_phantom(shape: tuple[int, int, int] = (40, 44, 36)) -> tuple[np.ndarray, np.ndarray]:
    """Soft-tissue ellipsoid with a fat rim, a bone core and an air pocket, in air."""
    grid = np.indices(shape, dtype=float)
    centre = (np.asarray(shape, dtype=float) - 1)[:, None, None, None] / 2
    radius = np.asarray(shape, dtype=float)[:, None, None, None] * 0.4
    r = np.sqrt((((grid - centre) / radius) ** 2).sum(axis=0))
    ct = np.full(shape, -1000.0)
    ct[r < 1.0] = -100.0
    ct[r < 0.85] = 40.0
    ct[r < 0.35] = 700.0
    ct[(r > 0.5) & (r < 0.6) & (grid[0] < centre[0, 0, 0, 0])] = -800.0  # enclosed air
    body = r < 1.0
    return ct, body


@pytest.fixture(scope="module")
def real_ct(totalseg: Path) -> CTVolume:
    volume = read_volume(totalseg / "example_ct.nii.gz")
    assert isinstance(volume, CTVolume)
    return volume


def perturbed(ct: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return gaussian_filter(ct.astype(float), 0.8) + rng.normal(0.0, 20.0, ct.shape) + 5.0


# -- identities ---------------------------------------------------------------------------------
def test_identical_images_are_perfect() -> None:
    ct, body = ball_phantom()
    assert mae_hu(ct, ct, body) == 0.0
    assert mean_error_hu(ct, ct, body) == 0.0
    assert psnr_db(ct, ct, body) == math.inf
    assert ms_ssim(ct, ct, body) == pytest.approx(1.0, abs=1e-12)
    assert ms_ssim(ct, ct) == pytest.approx(1.0, abs=1e-12)
    assert bone_dice(ct, ct, body, threshold_hu=150.0) == 1.0
    assert bone_dice(ct, ct, body, threshold_hu=250.0) == 1.0
    assert all(v == 0.0 for v in mae_by_tissue_hu(ct, ct, body).values())


# -- known answers ------------------------------------------------------------------------------
@pytest.mark.parametrize("offset_hu", [10.0, -10.0])
def test_constant_offset(offset_hu: float) -> None:
    ct, body = ball_phantom()
    sct = ct + offset_hu
    assert mae_hu(ct, sct, body) == pytest.approx(10.0, rel=1e-12)
    assert mean_error_hu(ct, sct, body) == pytest.approx(offset_hu, rel=1e-12)  # sct - ct
    assert psnr_db(ct, sct, body) == pytest.approx(20 * math.log10(4095 / 10), rel=1e-12)
    assert mae_by_tissue_hu(ct, sct, body) == pytest.approx(
        {"air_fat": 10.0, "soft_tissue": 10.0, "bone": 10.0}, rel=1e-12
    )
    assert 0.9 < ms_ssim(ct, sct, body) < 1.0


def test_mae_by_tissue_classes_follow_ct_hu() -> None:
    ct = np.array([-1000.0, -100.0, -31.0, -30.0, 40.0, 149.0, 150.0, 1000.0]).reshape(2, 2, 2)
    err = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 5.0]).reshape(2, 2, 2)
    got = mae_by_tissue_hu(ct, ct - err)
    assert got == pytest.approx({"air_fat": 1.0, "soft_tissue": 2.0, "bone": 4.0})
    only_soft = mae_by_tissue_hu(ct, ct - err, (ct >= -30) & (ct < 150))
    assert math.isnan(only_soft["air_fat"]) and math.isnan(only_soft["bone"])


def test_bone_dice_known_answer() -> None:
    ct = np.zeros((10, 10, 10))
    sct = np.zeros((10, 10, 10))
    ct[2:6, 2:6, 2:6] = 500.0  # 64 voxels
    sct[3:7, 2:6, 2:6] = 200.0  # 64 voxels, 48 shared
    assert bone_dice(ct, sct, threshold_hu=150.0) == pytest.approx(2 * 48 / 128)
    assert bone_dice(ct, sct, threshold_hu=250.0) == 0.0  # sCT has no voxel >= 250
    assert math.isnan(bone_dice(ct, sct, threshold_hu=1000.0))  # neither: undefined


def test_psnr_and_ms_ssim_clip_to_the_hu_range_but_mae_does_not() -> None:
    ct, body = ball_phantom()
    ct[ct == 700.0] = 3500.0  # metal-like, above 3071
    sct = ct.copy()
    sct[ct == 3500.0] = 5000.0  # differs only above the window
    sct[~body] = -3000.0  # and outside the body
    assert psnr_db(ct, sct, body) == math.inf
    assert ms_ssim(ct, sct, body) == pytest.approx(1.0, abs=1e-12)
    n_metal = np.count_nonzero(ct == 3500.0)
    assert mae_hu(ct, sct, body) == pytest.approx(1500.0 * n_metal / body.sum())
    below = ct.copy()
    below[body & (ct == -100.0)] = -2000.0
    clipped = ct.copy()
    clipped[body & (ct == -100.0)] = -1024.0
    assert psnr_db(below, ct, body) == pytest.approx(psnr_db(clipped, ct, body), rel=1e-12)
    assert ms_ssim(below, ct, body) == pytest.approx(ms_ssim(clipped, ct, body), rel=1e-12)


def test_voxels_outside_the_mask_do_not_count() -> None:
    ct, body = ball_phantom()
    sct = perturbed(ct)
    noisy_outside = np.where(body, sct, 2000.0)
    for metric in (mae_hu, mean_error_hu, psnr_db, ms_ssim):
        assert metric(ct, noisy_outside, body) == pytest.approx(metric(ct, sct, body), rel=1e-12)


# -- equality with SynthRAD2025 -----------------------------------------------------------------
@pytest.mark.parametrize("shape", [(30, 41, 25), (100, 99, 98)])
def test_ms_ssim_equals_literal_synthrad2025_on_random_data(shape: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    ct = gaussian_filter(rng.uniform(-1300.0, 3400.0, shape), 1.5) * 2.0
    sct = ct + gaussian_filter(rng.normal(0.0, 300.0, shape), 1.0)
    mask = gaussian_filter(rng.normal(size=shape), 4.0) > -0.02
    mask[tuple(slice(n // 2 - 2, n // 2 + 3) for n in shape)] = True  # see the NaN test
    ours = ms_ssim(ct, sct, mask)
    assert 0.0 < ours < 1.0
    assert ours == pytest.approx(literal_ms_ssim(ct, sct, mask), rel=1e-6)
    assert ms_ssim(ct, sct) == pytest.approx(literal_ms_ssim(ct, sct, np.ones(shape)), rel=1e-6)
    assert psnr_db(ct, sct, mask) == pytest.approx(literal_psnr(ct, sct, mask), rel=1e-9)
    assert mae_hu(ct, sct, mask) == pytest.approx(literal_mae(ct, sct, mask), rel=1e-9)


def test_metrics_equal_literal_synthrad2025_on_real_ct(real_ct: CTVolume) -> None:
    ct = real_ct.array.astype(float)
    sct = perturbed(ct)
    mask = body_mask_from_ct(ct)
    assert ms_ssim(ct, sct, mask) == pytest.approx(literal_ms_ssim(ct, sct, mask), rel=1e-6)
    assert psnr_db(ct, sct, mask) == pytest.approx(literal_psnr(ct, sct, mask), rel=1e-9)
    assert mae_hu(ct, sct, mask) == pytest.approx(literal_mae(ct, sct, mask), rel=1e-9)


def test_ms_ssim_threads_do_not_change_the_result() -> None:
    ct, body = ball_phantom()
    sct = perturbed(ct)
    assert ms_ssim(ct, sct, body, workers=2) == ms_ssim(ct, sct, body)


def test_ms_ssim_is_nan_where_a_scale_has_no_mask_voxel_as_in_synthrad2025() -> None:
    ct, body = ball_phantom()
    sct = perturbed(ct)
    tiny = np.zeros(ct.shape, dtype=bool)
    tiny[21, 21, 19] = True  # lost by the [::2] subsampling of the mask
    assert math.isnan(ms_ssim(ct, sct, tiny))
    # Padded to 97 voxels, the coarsest scale is 7 voxels wide and only its centre voxel lies
    # 3 voxels inside: a mask without the image centre has no voxel there.
    hollow = body.copy()
    hollow[tuple(slice(n // 2 - 8, n // 2 + 8) for n in ct.shape)] = False
    assert math.isnan(ms_ssim(ct, sct, hollow))
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning):
        assert math.isnan(literal_ms_ssim(ct, sct, hollow))


# -- volumes: geometry, errors, real data -------------------------------------------------------
def test_image_metrics_on_real_ct_with_a_perturbed_copy(real_ct: CTVolume) -> None:
    sct = SyntheticCT(perturbed(real_ct.array), real_ct.affine)
    result = image_metrics(real_ct, sct)
    assert isinstance(result, ImageMetrics)
    assert 10.0 < result.mae_hu < 60.0
    assert -10.0 < result.mean_error_hu < 10.0
    assert 30.0 < result.psnr_db < 45.0
    assert 0.9 < result.ms_ssim < 1.0
    assert result.bone_dice[150.0] > 0.7
    assert result.mae_by_tissue_hu["bone"] > result.mae_by_tissue_hu["soft_tissue"]
    assert sum(result.tissue_voxels.values()) == result.body_voxels
    assert result.body_volume_ml == pytest.approx(result.body_voxels * 27 / 1000)
    mask = body_mask_from_ct(real_ct.array)
    assert result.mae_hu == pytest.approx(mae_hu(real_ct.array, sct.array, mask), rel=1e-12)
    assert result.ms_ssim == ms_ssim(real_ct.array, sct.array, mask)
    out = result.to_dict()
    conventions = out["conventions"]
    assert conventions["ms_ssim"]["scale_weights"] == list(MS_SSIM_WEIGHTS)
    assert conventions["psnr_db"]["data_range_hu"] == 4095.0
    assert "3D" in conventions["dimensionality"]
    assert {"mae_hu", "psnr_db", "ms_ssim", "bone_dice_150hu", "bone_dice_250hu"} <= set(out)
    json.dumps(out)


def test_given_body_mask_is_used() -> None:
    ct, body = ball_phantom()
    sct = ct + 10.0
    sct[~body] = ct[~body]
    ct_volume = CTVolume(ct, AFFINE)
    mask = LabelMap(body.astype(np.uint8), AFFINE, source="body.nii.gz")
    result = image_metrics(ct_volume, SyntheticCT(sct, AFFINE), body_mask=mask)
    assert result.mae_hu == pytest.approx(10.0)
    assert result.body_voxels == body.sum()
    assert "given" in result.conventions["mask"]


def test_mismatched_geometry_raises() -> None:
    ct, body = ball_phantom()
    shifted = affine_from_parameters((1.0, 1.0, 2.0), origin_lps_mm=(0.0, 0.0, 5.0))
    with pytest.raises(GeometryMismatchError, match="origin"):
        image_metrics(CTVolume(ct, AFFINE), SyntheticCT(ct, shifted))
    with pytest.raises(GeometryMismatchError):
        image_metrics(
            CTVolume(ct, AFFINE), SyntheticCT(ct, AFFINE), body_mask=LabelMap(body, shifted)
        )
    with pytest.raises(GeometryMismatchError, match="shape"):
        mae_hu(ct, ct[:-1])


def test_empty_mask_raises() -> None:
    ct, _ = ball_phantom()
    empty = np.zeros(ct.shape, dtype=bool)
    for metric in (mae_hu, mean_error_hu, psnr_db, ms_ssim, bone_dice, mae_by_tissue_hu):
        with pytest.raises(EmptyMaskError):
            metric(ct, ct, empty)
    with pytest.raises(EmptyMaskError):
        image_metrics(
            CTVolume(ct, AFFINE), SyntheticCT(ct, AFFINE), body_mask=LabelMap(empty, AFFINE)
        )
    with pytest.raises(EmptyMaskError, match="threshold"):
        body_mask_from_ct(np.full((5, 5, 5), -1000.0))


def test_nan_inside_the_mask_raises() -> None:
    ct, body = ball_phantom()
    sct = ct.copy()
    sct[20, 22, 18] = np.nan
    for metric in (mae_hu, psnr_db, ms_ssim):
        with pytest.raises(VolumeKindError, match="NaN"):
            metric(ct, sct, body)
    assert mae_hu(ct, sct, body & ~np.isnan(sct)) >= 0.0


def test_non_ct_input_raises() -> None:
    ct, _ = ball_phantom()
    with pytest.raises(VolumeKindError, match="CT"):
        image_metrics(CTVolume(ct, AFFINE), LabelMap(ct > 0, AFFINE))  # type: ignore[arg-type]


# -- body mask ------------------------------------------------------------------------------------
def test_body_mask_keeps_the_body_fills_holes_and_drops_the_table() -> None:
    ct, body = ball_phantom()
    ct[:, :, 0:2] = 200.0  # a "table" slab, separated from the body by air
    mask = body_mask_from_ct(ct)
    np.testing.assert_array_equal(mask, body)  # air pocket filled, table gone


def test_body_mask_fills_lungs_open_to_the_outside_slice_by_slice() -> None:
    ct, body = ball_phantom()
    lung = np.zeros(ct.shape, dtype=bool)
    lung[15:25, 18:26, 8:28] = True
    airway = np.zeros(ct.shape, dtype=bool)
    airway[15:25, 21:23, 28:] = True  # leaves the body through the top along axis 2
    ct[lung | (airway & body)] = -850.0
    assert not body_mask_from_ct(ct, fill_holes_axial=False)[lung].all()
    assert body_mask_from_ct(ct, axial_axis=2)[lung].all()


def test_body_mask_of_real_ct(real_ct: CTVolume) -> None:
    mask = body_mask_volume(real_ct)
    assert isinstance(mask, LabelMap)
    assert mask.same_geometry(real_ct)
    fraction = mask.mask().mean()
    assert 0.2 < fraction < 0.95
    assert real_ct.array[mask.mask()].mean() > -300.0
