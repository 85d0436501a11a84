"""Lossless reorientation: known affines, the same world value at the same point, the round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from synthct.errors import GeometryError
from synthct.geometry import Geometry
from synthct.io import read_volume
from synthct.orientation import parse_orientation_code, reorientation
from synthct.volume import CTVolume, MultiEchoMR

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "totalsegmentator"


def test_a_ras_grid_becomes_lps_with_the_known_affine() -> None:
    # RAS: axis 0 toward right (-x), axis 1 toward anterior (-y), axis 2 toward superior.
    affine = np.diag([-2.0, -3.0, 4.0, 1.0])
    affine[:3, 3] = (10.0, 20.0, 30.0)
    volume = CTVolume(np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7), affine)
    assert volume.orientation_code == "RAS"
    lps = volume.reoriented("LPS")
    assert lps.orientation_code == "LPS"
    expected = np.diag([2.0, 3.0, 4.0, 1.0])
    # new voxel 0 along axes 0 and 1 is the old last voxel: 10 - 2 * 4, 20 - 3 * 5
    expected[:3, 3] = (2.0, 5.0, 30.0)
    np.testing.assert_allclose(lps.affine, expected)
    np.testing.assert_array_equal(lps.array, volume.array[::-1, ::-1, :])


def test_a_sagittal_multi_echo_mri_keeps_its_echoes_and_every_world_value() -> None:
    # PSL, the sagittal slab of the phantoms: axes P, S, L
    direction = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    geometry = Geometry.from_parameters((8, 9, 5), (0.7, 0.8, 1.5), (4.0, -3.0, 2.0), direction)
    rng = np.random.default_rng(3)
    mr = MultiEchoMR(rng.random((2, 8, 9, 5)).astype(np.float32), geometry.affine)
    assert mr.orientation_code == "PSL"
    lps = mr.reoriented("LPS")
    assert lps.orientation_code == "LPS" and lps.spatial_shape == (5, 8, 9)
    assert lps.spacing_mm == pytest.approx((1.5, 0.7, 0.8))
    index = np.stack(np.meshgrid(*[np.arange(n) for n in (8, 9, 5)], indexing="ij"), -1)
    index = index.reshape(-1, 3)
    moved = np.rint(lps.geometry.lps_to_index(mr.geometry.index_to_lps(index))).astype(int)
    for echo in range(2):
        np.testing.assert_array_equal(
            mr.array[echo][tuple(index.T)], lps.array[echo][tuple(moved.T)]
        )


@pytest.mark.parametrize("code", ["LPS", "RAS", "PSL", "ILA", "ARI"])
def test_every_orientation_round_trips_exactly(code: str) -> None:
    direction = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]])
    geometry = Geometry.from_parameters((4, 5, 6), (1.0, 2.0, 3.0), (1.0, 2.0, 3.0), direction)
    array = np.random.default_rng(0).random((3, 4, 5, 6))
    turn = reorientation(geometry, code)
    assert turn.geometry.orientation_code == code
    moved = turn.apply(array, channel_axes=1)
    np.testing.assert_array_equal(turn.undo(moved, channel_axes=1), array)
    # the corners are the same points in space
    corners = np.array([[0, 0, 0], [3, 4, 5]])
    old = geometry.index_to_lps(corners)
    new = turn.geometry.index_to_lps(np.rint(turn.geometry.lps_to_index(old)).astype(float))
    np.testing.assert_allclose(new, old, atol=1e-9)


def test_an_oblique_grid_gets_the_nearest_orientation_and_stays_oblique() -> None:
    tilt = Rotation.from_euler("x", 30, degrees=True).as_matrix()
    geometry = Geometry.from_parameters(
        (6, 7, 8), (1.0, 1.0, 1.0), (0, 0, 0), tilt @ np.diag([-1.0, 1, 1])
    )
    assert geometry.orientation_code == "RPS"
    turn = reorientation(geometry, "LPS")
    assert turn.axes == (0, 1, 2) and turn.flips == (True, False, False)
    assert turn.geometry.orientation_code == "LPS" and turn.geometry.is_oblique


def test_a_45_degree_grid_still_gets_a_permutation() -> None:
    # two axes equally close to P and S: the assignment still uses each array axis once
    tilt = Rotation.from_euler("x", 45, degrees=True).as_matrix()
    geometry = Geometry.from_parameters((3, 4, 5), (1.0, 1.0, 1.0), (0, 0, 0), tilt)
    assert sorted(reorientation(geometry, "LPS").axes) == [0, 1, 2]


@pytest.mark.parametrize("bad", ["LPP", "XYZ", "LP", "LPSA", ""])
def test_a_bad_orientation_code_names_the_fix(bad: str) -> None:
    with pytest.raises(GeometryError, match="one of each pair") as info:
        parse_orientation_code(bad, where="plan.orientation")
    assert "LPS" in str(info.value) and "plan.orientation" in str(info.value)


def test_the_real_ras_ct_comes_out_lps_with_its_hu_in_place() -> None:
    ct = read_volume(REAL / "example_ct_sm.nii.gz", kind="ct")
    assert ct.orientation_code == "RAS"
    lps = ct.reoriented("LPS")
    assert lps.orientation_code == "LPS"
    assert lps.reoriented("LPS") is lps  # already there: the same object
    rng = np.random.default_rng(1)
    index = np.stack([rng.integers(0, n, 200) for n in ct.spatial_shape], 1)
    moved = np.rint(lps.geometry.lps_to_index(ct.geometry.index_to_lps(index))).astype(int)
    np.testing.assert_array_equal(ct.array[tuple(index.T)], lps.array[tuple(moved.T)])
    np.testing.assert_array_equal(lps.reoriented("RAS").array, ct.array)
