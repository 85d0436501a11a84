"""CT rendering: exact HU, partial volume, texture, blur and noise against known answers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from synthct.geometry import Geometry
from synthct.imaging.labels import Tissue
from synthct.imaging.tissues import TISSUES
from synthct.phantom.ct import render_ct, texture_field
from synthct.phantom.model import Box, PhantomParameterError, ShapesModel, Sphere
from synthct.volume import CTVolume, check_hounsfield

CLEAN: dict[str, Any] = {"noise_sd_hu": 0.0, "blur_fwhm_mm": 0.0, "texture": False}
HU = {t: TISSUES[t].ct_hu for t in Tissue}


def centred_grid(n: int, spacing_mm: float, direction: np.ndarray | None = None) -> Geometry:
    rotation = np.eye(3) if direction is None else direction
    origin = -rotation @ np.full(3, (n - 1) / 2 * spacing_mm)
    return Geometry.from_parameters((n, n, n), (spacing_mm,) * 3, origin.tolist(), rotation)


def test_noise_free_render_gives_exact_tissue_hu() -> None:
    grid = centred_grid(16, 1.0)
    model = ShapesModel(
        [
            Box(tissue=Tissue.MUSCLE, center_lps_mm=(0, 0, 0), size_mm=(12, 12, 12)),
            Sphere(tissue=Tissue.CORTICAL_BONE, center_lps_mm=(0, 0, 0), radius_mm=3.2),
        ]
    )
    ct = render_ct(model, grid, **CLEAN)
    assert isinstance(ct, CTVolume)
    assert ct.array.dtype == np.float32 and ct.geometry.is_close(grid)
    assert ct.array[0, 0, 0] == HU[Tissue.AIR]
    assert ct.array[8, 8, 8] == pytest.approx(HU[Tissue.CORTICAL_BONE], abs=1e-3)
    assert ct.array[3, 8, 8] == pytest.approx(HU[Tissue.MUSCLE], abs=1e-3)
    check_hounsfield(ct)


def test_half_and_half_voxel_gets_the_mean_hu() -> None:
    grid = Geometry.from_parameters((6, 3, 3), (0.8, 0.8, 0.8), (0.0, 0.0, 0.0))
    # The face of the box runs through the centres of plane 2 (x = 1.6 mm).
    model = ShapesModel(
        [Box(tissue=Tissue.CANCELLOUS_BONE, center_lps_mm=(-8.4, 0.8, 0.8), size_mm=(20, 9, 9))],
        background=Tissue.CSF,
    )
    ct = render_ct(model, grid, supersample=4, **CLEAN)
    bone, csf = HU[Tissue.CANCELLOUS_BONE], HU[Tissue.CSF]
    np.testing.assert_allclose(
        ct.array[:, 1, 1], [bone, bone, (bone + csf) / 2, csf, csf, csf], atol=1e-3
    )


def test_sphere_hu_integrates_to_its_volume() -> None:
    grid = centred_grid(20, 0.74)
    sphere = Sphere(tissue=Tissue.CALCIFICATION, center_lps_mm=(0.11, -0.23, 0.31), radius_mm=3.0)
    model = ShapesModel([sphere], background=Tissue.CSF)
    ct = render_ct(model, grid, **CLEAN)
    excess = (ct.array.astype(np.float64) - HU[Tissue.CSF]).sum() * grid.voxel_volume_mm3
    expected = (HU[Tissue.CALCIFICATION] - HU[Tissue.CSF]) * sphere.volume_mm3
    assert excess == pytest.approx(expected, rel=0.01)
    # Supersampling matters: centre sampling alone misses the volume by more.
    coarse = render_ct(model, grid, supersample=1, **CLEAN)
    coarse_excess = (coarse.array.astype(np.float64) - HU[Tissue.CSF]).sum()
    coarse_excess *= grid.voxel_volume_mm3
    assert abs(coarse_excess - expected) > abs(excess - expected)


def test_sphere_centroid_is_the_same_on_a_rotated_shifted_grid() -> None:
    centre = (1.3, -0.7, 2.1)
    model = ShapesModel([Sphere(tissue=Tissue.CALCIFICATION, center_lps_mm=centre, radius_mm=3.5)])
    rotation = Rotation.from_euler("zxy", [30, -20, 12], degrees=True).as_matrix()
    grids = [centred_grid(20, 0.8), centred_grid(22, 0.7, rotation)]
    shifted = Geometry(
        grids[1].shape,
        grids[1].affine + np.pad(np.array([[0.35], [-0.2], [0.1]]), ((0, 1), (3, 0))),
    )
    for grid in [*grids, shifted]:
        ct = render_ct(model, grid, **CLEAN)
        weight = ct.array.astype(np.float64) - HU[Tissue.AIR]
        index = np.stack(np.meshgrid(*map(np.arange, grid.shape), indexing="ij"), -1)
        centroid = (grid.index_to_lps(index) * weight[..., None]).sum((0, 1, 2)) / weight.sum()
        np.testing.assert_allclose(centroid, centre, atol=0.02)


def test_texture_has_the_tissue_sd_and_is_seeded() -> None:
    grid = centred_grid(40, 0.5)
    model = ShapesModel(background=Tissue.CANCELLOUS_BONE)
    options: dict[str, Any] = {"noise_sd_hu": 0.0, "blur_fwhm_mm": 0.0, "supersample": 1}
    ct = render_ct(model, grid, seed=11, **options)
    assert ct.array.mean() == pytest.approx(HU[Tissue.CANCELLOUS_BONE], abs=1e-2)
    assert ct.array.std() == pytest.approx(
        TISSUES[Tissue.CANCELLOUS_BONE].ct_texture_sd_hu, rel=1e-3
    )
    # Correlated: neighbours 0.5 mm apart agree far more than independent noise would.
    a = ct.array - ct.array.mean()
    corr = (a[1:] * a[:-1]).mean() / a.var()
    assert corr > 0.6
    again = render_ct(model, grid, seed=11, **options)
    np.testing.assert_array_equal(ct.array, again.array)
    other = render_ct(model, grid, seed=12, **options)
    assert not np.array_equal(ct.array, other.array)
    field = texture_field(grid, correlation_mm=0.8, seed=1)
    assert field.mean() == pytest.approx(0.0, abs=1e-4) and field.std() == pytest.approx(1.0)


def test_noise_has_the_requested_sd_and_is_seeded() -> None:
    grid = centred_grid(32, 1.0)
    model = ShapesModel(background=Tissue.CSF)
    options: dict[str, Any] = {
        "blur_fwhm_mm": 0.0,
        "texture": False,
        "supersample": 1,
        "noise_sd_hu": 15.0,
    }
    a = render_ct(model, grid, seed=1, **options)
    assert a.array.std() == pytest.approx(15.0, rel=0.02)
    assert a.array.mean() == pytest.approx(HU[Tissue.CSF], abs=0.2)
    np.testing.assert_array_equal(a.array, render_ct(model, grid, seed=1, **options).array)
    assert not np.array_equal(a.array, render_ct(model, grid, seed=2, **options).array)


def test_full_render_does_not_depend_on_the_slab_size() -> None:
    grid = centred_grid(12, 1.0)
    model = ShapesModel([Sphere(tissue=Tissue.DISC, center_lps_mm=(0, 0, 0), radius_mm=4)])
    a = render_ct(model, grid, seed=3)
    b = render_ct(model, grid, seed=3, max_subvoxels=100)
    np.testing.assert_array_equal(a.array, b.array)


@pytest.mark.parametrize("spacing_mm", [0.1, 0.2])
def test_blur_edge_width_is_spacing_aware(spacing_mm: float) -> None:
    # A sharp step blurred by a Gaussian: the 25%-75% rise spans 2 * 0.6745 sigma, in mm,
    # whatever the voxel size.
    n = round(8.0 / spacing_mm)
    origin = (-4.0 + spacing_mm / 2, 0.0, 0.0)
    grid = Geometry.from_parameters((n, 1, 1), (spacing_mm, 1.0, 1.0), origin)
    model = ShapesModel(
        [Box(tissue=Tissue.CORTICAL_BONE, center_lps_mm=(10.0, 0, 0), size_mm=(20, 9, 9))],
        background=Tissue.MUSCLE,
    )
    fwhm_mm = 1.5
    ct = render_ct(model, grid, noise_sd_hu=0.0, texture=False, blur_fwhm_mm=fwhm_mm)
    x = grid.index_to_lps(np.stack([np.arange(n), np.zeros(n), np.zeros(n)], -1))[:, 0]
    lo, hi = HU[Tissue.MUSCLE], HU[Tissue.CORTICAL_BONE]
    rise = (ct.array[:, 0, 0] - lo) / (hi - lo)
    width_mm = np.interp(0.75, rise, x) - np.interp(0.25, rise, x)
    sigma_mm = fwhm_mm / (2 * np.sqrt(2 * np.log(2)))
    assert width_mm == pytest.approx(2 * 0.6745 * sigma_mm, rel=0.03)
    assert np.interp(0.5, rise, x) == pytest.approx(0.0, abs=0.02)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"noise_sd_hu": -1.0}, "noise_sd_hu"),
        ({"blur_fwhm_mm": -0.5}, "blur_fwhm_mm"),
        ({"seed": -3}, "seed"),
        ({"supersample": 0}, "supersample"),
        ({"texture_correlation_mm": 0.0}, "texture_correlation_mm"),
        ({"noise_sd_hu": float("nan")}, "noise_sd_hu"),
    ],
)
def test_bad_parameters_are_refused(change: dict[str, Any], match: str) -> None:
    with pytest.raises(PhantomParameterError, match=match):
        render_ct(ShapesModel(), centred_grid(4, 1.0), **change)
