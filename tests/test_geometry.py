"""Geometry: affine validation, derived parameters, orientation codes and comparisons."""

from __future__ import annotations

import numpy as np
import pytest

from known_geometry import oblique_affine, ras_affine
from synthct.errors import GeometryError, GeometryMismatchError
from synthct.geometry import (
    Geometry,
    affine_from_parameters,
    ras_to_lps,
    require_same_geometry,
    validate_affine,
)


def test_parameters_round_trip_through_affine(affine: np.ndarray) -> None:
    g = Geometry((4, 5, 6), affine)
    rebuilt = affine_from_parameters(g.spacing_mm, g.origin_lps_mm, g.direction)
    np.testing.assert_allclose(rebuilt, affine, atol=1e-12)
    assert g.affine.dtype == np.float64
    assert not g.affine.flags.writeable


def test_known_spacing_origin_and_orientation() -> None:
    g = Geometry((10, 20, 30), ras_affine())
    assert g.spacing_mm == pytest.approx((1.5, 1.25, 2.0))
    assert g.origin_lps_mm == pytest.approx((80.0, 95.5, -40.0))
    assert g.orientation_code == "RAS"
    assert Geometry((2, 2, 2), np.eye(4)).orientation_code == "LPS"
    assert not g.is_oblique
    assert Geometry((2, 2, 2), oblique_affine()).is_oblique
    assert g.extent_mm == pytest.approx((15.0, 25.0, 60.0))
    assert g.voxel_volume_mm3 == pytest.approx(3.75)


def test_index_and_lps_are_inverse(affine: np.ndarray) -> None:
    g = Geometry((8, 9, 10), affine)
    ijk = np.array([[0, 0, 0], [7, 8, 9], [1.5, 2.25, 3.0]])
    np.testing.assert_allclose(g.lps_to_index(g.index_to_lps(ijk)), ijk, atol=1e-10)
    np.testing.assert_allclose(g.index_to_lps([0, 0, 0]), g.origin_lps_mm)
    assert g.contains_lps(g.index_to_lps([[7, 8, 9], [-1, 0, 0]])).tolist() == [True, False]


def test_ras_to_lps_flips_x_and_y_only() -> None:
    a = np.diag([1.0, 2.0, 3.0, 1.0])
    a[:3, 3] = (10, 20, 30)
    lps = ras_to_lps(a)
    np.testing.assert_allclose(lps[:3, 3], (-10, -20, 30))
    np.testing.assert_allclose(ras_to_lps(lps), a)


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        (np.eye(3), "4x4"),
        (np.diag([1.0, 1.0, 1.0, 2.0]), "last row"),
        (np.diag([1.0, 0.0, 1.0, 1.0]), "positive"),
        (np.array([[1, 0.3, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]), "orthogonal"),
        (np.full((4, 4), np.nan), "NaN"),
    ],
)
def test_invalid_affines_are_rejected_with_reason(matrix: np.ndarray, message: str) -> None:
    with pytest.raises(GeometryError, match=message):
        validate_affine(matrix)


def test_sheared_affine_error_names_the_fix() -> None:
    sheared = np.eye(4)
    sheared[0, 1] = 0.2
    with pytest.raises(GeometryError) as info:
        validate_affine(sheared, where="scan.nii.gz")
    assert "scan.nii.gz" in str(info.value)
    assert "Fix:" in str(info.value)


def test_comparison_tolerances() -> None:
    g = Geometry((4, 4, 4), np.eye(4))
    nudged = np.eye(4)
    nudged[0, 3] = 5e-4
    assert g.is_close(Geometry((4, 4, 4), nudged))
    nudged[0, 3] = 5e-3
    assert not g.is_close(Geometry((4, 4, 4), nudged))
    assert g.is_close(Geometry((4, 4, 4), nudged), atol_mm=1e-2)
    assert not g.is_close(Geometry((4, 4, 5), np.eye(4)))


def test_mismatch_error_prints_both_geometries_and_fix() -> None:
    a = Geometry((4, 4, 4), np.eye(4))
    b = Geometry((4, 4, 4), ras_affine())
    with pytest.raises(GeometryMismatchError) as info:
        require_same_geometry(a, b, names=("CT", "sCT"))
    text = str(info.value)
    assert "CT: shape (4, 4, 4), spacing (1, 1, 1) mm, orientation LPS" in text
    assert "sCT: shape (4, 4, 4), spacing (1.5, 1.25, 2) mm, orientation RAS" in text
    assert "resample" in text
    assert "--register" in text
