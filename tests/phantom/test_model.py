"""Implicit tissue models: sub-voxel grids, slabs, block means and the primitive-shapes phantom."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from synthct.errors import SynthctError
from synthct.geometry import Geometry
from synthct.imaging.labels import Tissue
from synthct.phantom.model import (
    Box,
    Cylinder,
    Ellipsoid,
    PhantomParameterError,
    ShapesModel,
    Sphere,
    TissueModel,
    average_tables,
    axes_from_direction,
    block_mean,
    iter_slabs,
    rng_for,
    sample_labels,
    sub_geometry,
    supersampled,
    tissue_fraction,
)


def oblique_grid(shape: tuple[int, int, int] = (20, 18, 16)) -> Geometry:
    """A rotated, anisotropic grid centred near (0.2, -0.1, 0.3) mm LPS."""
    rotation = Rotation.from_euler("zyx", [25, -10, 35], degrees=True).as_matrix()
    spacing = np.array([0.7, 0.9, 1.3])
    origin = np.array([0.2, -0.1, 0.3]) - rotation @ (spacing * (np.asarray(shape) - 1) / 2)
    return Geometry.from_parameters(shape, spacing.tolist(), origin.tolist(), rotation)


def voxel_centres(geometry: Geometry) -> NDArray[np.float64]:
    index = np.stack(np.meshgrid(*(np.arange(n) for n in geometry.shape), indexing="ij"), -1)
    return geometry.index_to_lps(index)


class ConstantModel:
    """A model returning one label everywhere (optionally a wrong dtype, for error tests)."""

    def __init__(self, label: int, dtype: type = np.uint8) -> None:
        self.label = label
        self.dtype = dtype

    def labels_on(self, geometry: Geometry) -> NDArray[np.uint8]:
        return np.full(geometry.shape, self.label, dtype=self.dtype)


# -- grids -----------------------------------------------------------------------------------
@pytest.mark.parametrize("factor", [1, 2, 3, (2, 3, 1)])
def test_subvoxel_centres_average_to_the_voxel_centre(factor: int | tuple[int, ...]) -> None:
    coarse = oblique_grid((4, 5, 3))
    fine = supersampled(coarse, factor)
    f = np.broadcast_to(np.asarray(factor), (3,))
    assert fine.shape == tuple(np.asarray(coarse.shape) * f)
    np.testing.assert_allclose(fine.spacing_mm, np.asarray(coarse.spacing_mm) / f)
    np.testing.assert_allclose(fine.direction, coarse.direction, atol=1e-12)
    centres = voxel_centres(fine)
    means = np.stack([block_mean(centres[..., c], tuple(f)) for c in range(3)], -1)
    np.testing.assert_allclose(means, voxel_centres(coarse), atol=1e-9)


def test_slabs_tile_the_grid_and_keep_its_geometry() -> None:
    grid = oblique_grid((11, 4, 3))
    slabs = list(iter_slabs(grid, max_voxels=30))  # 2 planes of 12 voxels per slab
    assert [s.stop - s.start for s, _ in slabs] == [2, 2, 2, 2, 2, 1]
    for index, slab in slabs:
        np.testing.assert_allclose(slab.origin_lps_mm, grid.index_to_lps([index.start, 0, 0]))
        np.testing.assert_allclose(slab.affine[:3, :3], grid.affine[:3, :3])
    assert sub_geometry(grid, (0, 0, 0), grid.shape).is_close(grid)
    with pytest.raises(PhantomParameterError, match="max_voxels"):
        list(iter_slabs(grid, max_voxels=0))


def test_block_mean_matches_the_reshaped_mean() -> None:
    rng = np.random.default_rng(1)
    real = rng.standard_normal((6, 9, 4)).astype(np.float32)
    cplx = (real + 1j * rng.standard_normal(real.shape)).astype(np.complex64)
    for a in (real, cplx):
        expected = a.reshape(3, 2, 3, 3, 4, 1).mean(axis=(1, 3, 5))
        result = block_mean(a, (2, 3, 1))
        assert result.dtype == a.dtype
        np.testing.assert_allclose(np.asarray(result), expected, rtol=1e-5)
    assert block_mean(real, 1) is real


@pytest.mark.parametrize("bad", [0, -1, (1, 2), (1, 0, 1), 1.5])
def test_bad_supersample_factor_is_refused(bad: object) -> None:
    with pytest.raises(PhantomParameterError, match="supersample"):
        supersampled(oblique_grid(), bad)  # type: ignore[arg-type]


# -- shapes ----------------------------------------------------------------------------------
def test_shapes_model_is_a_tissue_model() -> None:
    assert isinstance(ShapesModel(), TissueModel)


def test_labels_on_an_oblique_grid_match_point_containment() -> None:
    rot = Rotation.from_euler("xyz", [30, 20, -40], degrees=True).as_matrix()
    shapes = [
        Ellipsoid(
            tissue=Tissue.MUSCLE, center_lps_mm=(0.3, 1.1, -0.7), radii_mm=(6.1, 4.3, 3.2), axes=rot
        ),
        Box(tissue=Tissue.DISC, center_lps_mm=(2.2, -1.9, 1.3), size_mm=(3.3, 5.1, 2.7), axes=rot),
        Cylinder(
            tissue=Tissue.CSF,
            center_lps_mm=(-1.3, 0.4, 0.2),
            radius_mm=2.1,
            length_mm=7.7,
            axes=axes_from_direction((0.3, -0.2, 1.0)),
        ),
        Sphere(tissue=Tissue.CALCIFICATION, center_lps_mm=(-0.9, 0.6, 0.1), radius_mm=1.9),
    ]
    model = ShapesModel(shapes, background=Tissue.SUBCUTANEOUS_FAT)
    grid = oblique_grid()
    points = voxel_centres(grid)
    expected = np.full(grid.shape, int(Tissue.SUBCUTANEOUS_FAT), dtype=np.uint8)
    for shape in shapes:  # later shapes win
        expected[shape.contains(points)] = int(shape.tissue)
    labels = model.labels_on(grid)
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, expected)
    assert {int(v) for v in np.unique(labels)} == {1, 2, 5, 6, 21}


def test_shape_containment_known_points() -> None:
    sphere = Sphere(tissue=Tissue.CSF, center_lps_mm=(1, 2, 3), radius_mm=2)
    assert sphere.contains(np.array([[1, 2, 5], [1, 2, 5.01], [2.4, 3.4, 3]])).tolist() == [
        True,
        False,
        True,
    ]
    cyl = Cylinder(
        tissue=Tissue.CSF,
        center_lps_mm=(0, 0, 0),
        radius_mm=1,
        length_mm=10,
        axes=axes_from_direction((1, 0, 0)),
    )
    assert cyl.contains(np.array([[4.9, 0.9, 0], [5.1, 0, 0], [0, 0, 1.1]])).tolist() == [
        True,
        False,
        False,
    ]
    box = Box(tissue=Tissue.CSF, center_lps_mm=(0, 0, 0), size_mm=(2, 4, 6))
    assert box.contains(np.array([[1, 2, 3], [1.01, 0, 0]])).tolist() == [True, False]
    frame = axes_from_direction((1, 2, 3))
    np.testing.assert_allclose(frame.T @ frame, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(frame[:, 2], np.array([1, 2, 3]) / np.sqrt(14))


def test_shapes_outside_the_grid_are_skipped() -> None:
    grid = Geometry.from_parameters((4, 4, 4), (1, 1, 1))
    model = ShapesModel([Sphere(tissue=Tissue.CSF, center_lps_mm=(50, 0, 0), radius_mm=3)])
    assert np.all(model.labels_on(grid) == Tissue.AIR)


@pytest.mark.parametrize(
    "build",
    [
        lambda: Sphere(tissue=Tissue.CSF, center_lps_mm=(0, 0, 0), radius_mm=-1),
        lambda: Box(tissue=Tissue.CSF, center_lps_mm=(0, 0, 0), size_mm=(1, 0, 1)),
        lambda: Ellipsoid(tissue=Tissue.CSF, center_lps_mm=(0, 0), radii_mm=(1, 1, 1)),  # type: ignore[arg-type]
        lambda: Sphere(
            tissue=Tissue.CSF, center_lps_mm=(0, 0, 0), radius_mm=1, axes=np.diag([1.0, 2.0, 1.0])
        ),
        lambda: ShapesModel(["sphere"]),  # type: ignore[list-item]
        lambda: axes_from_direction((0, 0, 0)),
    ],
)
def test_bad_shape_parameters_are_refused(build: object) -> None:
    with pytest.raises(PhantomParameterError):
        build()  # type: ignore[operator]


# -- averaging -------------------------------------------------------------------------------
def test_half_split_voxels_get_half_fractions() -> None:
    # A box face through the voxel centres of plane 2: its sub-voxels split 50/50.
    grid = Geometry.from_parameters((5, 3, 3), (1.0, 1.0, 1.0))
    model = ShapesModel([Box(tissue=Tissue.CSF, center_lps_mm=(-10, 1, 1), size_mm=(24, 9, 9))])
    fraction = tissue_fraction(model, grid, Tissue.CSF, supersample=2)
    np.testing.assert_array_equal(fraction[:, 1, 1], [1.0, 1.0, 0.5, 0.0, 0.0])
    assert fraction.dtype == np.float32


def test_tissue_fraction_integrates_to_the_sphere_volume() -> None:
    grid = Geometry.from_parameters((24, 24, 24), (0.5, 0.5, 0.5), (-6, -6, -6))
    sphere = Sphere(tissue=Tissue.MENINGIOMA, center_lps_mm=(0.13, -0.21, 0.07), radius_mm=4.0)
    fraction = tissue_fraction(ShapesModel([sphere]), grid, [Tissue.MENINGIOMA], supersample=4)
    volume = float(fraction.sum()) * grid.voxel_volume_mm3
    assert volume == pytest.approx(sphere.volume_mm3, rel=0.01)


def test_average_tables_is_independent_of_slab_size() -> None:
    grid = oblique_grid((9, 8, 7))
    model = ShapesModel([Sphere(tissue=Tissue.CSF, center_lps_mm=(0, 0, 0), radius_mm=4)])
    table = np.full(256, np.nan, dtype=np.float32)
    table[[int(t) for t in Tissue]] = np.arange(len(Tissue), dtype=np.float32)
    (small,) = average_tables(model, grid, [table], supersample=3, max_subvoxels=30)
    (large,) = average_tables(model, grid, [table], supersample=3)
    np.testing.assert_array_equal(small, large)
    (centres,) = average_tables(model, grid, [table], supersample=1)
    np.testing.assert_array_equal(centres, table[model.labels_on(grid)])


def test_labels_that_are_not_tissues_are_refused() -> None:
    table = np.zeros(256, dtype=np.float32)
    grid = Geometry.from_parameters((2, 2, 2), (1, 1, 1))
    with pytest.raises(PhantomParameterError, match=r"labels \[99\]"):
        average_tables(ConstantModel(99), grid, [table])
    with pytest.raises(SynthctError, match="uint8"):
        sample_labels(ConstantModel(1, np.int32), grid)
    with pytest.raises(PhantomParameterError, match="256 entries"):
        average_tables(ConstantModel(1), grid, [np.zeros(10)])


def test_random_streams_are_keyed() -> None:
    a = rng_for(7, 1, 3).standard_normal(4)
    np.testing.assert_array_equal(a, rng_for(7, 1, 3).standard_normal(4))
    assert not np.array_equal(a, rng_for(7, 1, 4).standard_normal(4))
    assert not np.array_equal(a, rng_for(8, 1, 3).standard_normal(4))
    with pytest.raises(PhantomParameterError, match="seed"):
        rng_for(-1)
