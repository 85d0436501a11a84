"""Volume kinds: construction checks, printing, geometry-checked arithmetic, resampling."""

from __future__ import annotations

import numpy as np
import pytest

from known_geometry import lps_affine, oblique_affine, ras_affine
from synthct.errors import GeometryError, GeometryMismatchError, VolumeKindError
from synthct.geometry import Geometry
from synthct.resample import resample_to
from synthct.volume import (
    CTVolume,
    LabelMap,
    MRProtocol,
    MultiEchoMR,
    ScalarVolume,
    SyntheticCT,
    check_hounsfield,
)


def ct_with_air(
    shape: tuple[int, int, int] = (6, 7, 8), affine: np.ndarray | None = None
) -> CTVolume:
    data = np.full(shape, 40, dtype=np.int16)
    data[0] = -1000
    return CTVolume(data, lps_affine() if affine is None else affine)


def test_repr_shows_shape_spacing_orientation_and_units() -> None:
    text = repr(ct_with_air())
    assert "CTVolume(shape=(6, 7, 8)" in text
    assert "spacing_mm=(0.74, 0.8, 0.9)" in text
    assert "orientation=LPS" in text
    assert "range=-1000..40 HU" in text


def test_construction_validates_affine_dimensions_and_values() -> None:
    with pytest.raises(GeometryError):
        CTVolume(np.zeros((2, 2, 2)), np.eye(3))
    with pytest.raises(VolumeKindError, match="3D array"):
        CTVolume(np.zeros((2, 2)), np.eye(4))
    with pytest.raises(VolumeKindError, match="NaN"):
        CTVolume(np.array([[[np.nan]]]), np.eye(4))
    with pytest.raises(VolumeKindError, match="real numbers"):
        ScalarVolume(np.zeros((2, 2, 2), dtype=complex), np.eye(4))


def test_hounsfield_check_rejects_raw_values_and_mr() -> None:
    check_hounsfield(ct_with_air())
    raw = CTVolume(np.full((4, 4, 4), 1064, dtype=np.uint16), np.eye(4), source="raw.nii")
    with pytest.raises(VolumeKindError, match=r"raw\.nii.*Hounsfield"):
        check_hounsfield(raw)


def test_label_map_accepts_integers_and_rejects_fractions() -> None:
    labels = LabelMap(np.eye(3, dtype=bool)[:, :, None].repeat(2, axis=2), np.eye(4))
    assert labels.dtype == np.uint8
    assert labels.labels() == [1]
    assert LabelMap(np.full((2, 2, 2), 3.0), np.eye(4)).labels() == [3]
    with pytest.raises(VolumeKindError, match="whole numbers"):
        LabelMap(np.full((2, 2, 2), 0.5), np.eye(4))


def test_multi_echo_protocol_travels_and_is_checked() -> None:
    protocol = MRProtocol(
        (1.15, 2.3), repetition_time_ms=7.0, flip_angle_deg=10, field_strength_t=3
    )
    mr = MultiEchoMR(np.ones((2, 3, 4, 5), np.float32), lps_affine(), protocol=protocol)
    assert mr.n_echoes == 2
    assert mr.echo_times_ms == (1.15, 2.3)
    assert mr.spatial_shape == (3, 4, 5)
    assert mr.echo(1).shape == (3, 4, 5)
    assert "TE_ms=[1.15, 2.3]" in repr(mr)
    with pytest.raises(VolumeKindError, match="2 echo channels but 1 echo times"):
        MultiEchoMR(np.ones((2, 3, 4, 5)), np.eye(4), protocol=MRProtocol((1.0,)))
    with pytest.raises(VolumeKindError, match="not shorter than TR"):
        MultiEchoMR(np.ones((1, 3, 4, 5)), np.eye(4), protocol=MRProtocol((8.0,), 7.0))
    stacked = MultiEchoMR.from_echoes([mr.echo(0), mr.echo(1)], protocol=protocol)
    assert stacked.array_equal(mr)


def test_arithmetic_requires_same_geometry() -> None:
    ct = ct_with_air()
    sct = SyntheticCT(ct.array + 5, ct.affine)
    diff = sct - ct
    assert isinstance(diff, ScalarVolume)
    assert np.all(diff.array == 5)
    moved = SyntheticCT(ct.array, ras_affine())
    with pytest.raises(GeometryMismatchError, match="sct volume and ct volume"):
        _ = moved - ct
    with pytest.raises(GeometryMismatchError):
        ct.array_equal(moved)
    assert np.all((ct * 2).array == ct.array * 2)


def test_with_array_keeps_kind_and_metadata() -> None:
    labels = LabelMap(np.zeros((2, 2, 2), np.uint8), np.eye(4), label_names={1: "lesion"})
    again = labels.with_array(np.ones((2, 2, 2), np.uint8))
    assert isinstance(again, LabelMap)
    assert again.label_names == {1: "lesion"}
    with pytest.raises(VolumeKindError, match="shape"):
        labels.with_array(np.ones((3, 2, 2)))


def sphere(geometry: Geometry, centre_lps: np.ndarray, radius_mm: float) -> np.ndarray:
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in geometry.shape], indexing="ij"), -1)
    return np.linalg.norm(geometry.index_to_lps(ijk) - centre_lps, axis=-1) <= radius_mm


@pytest.mark.parametrize("target_affine", [ras_affine(), oblique_affine()])
def test_resampling_preserves_physical_position(target_affine: np.ndarray) -> None:
    source = Geometry((60, 60, 60), np.diag([1.0, 1.0, 1.0, 1.0]))
    centre = source.index_to_lps([30.0, 28.0, 31.0])
    ct = CTVolume(np.where(sphere(source, centre, 10), 500.0, 0.0), source.affine)
    labels = LabelMap(sphere(source, centre, 10), source.affine)
    t_affine = target_affine.copy()
    t_affine[:3, 3] = centre - t_affine[:3, :3] @ np.array([12.0, 12.0, 10.0])
    target = Geometry((24, 24, 20), t_affine)
    moved_ct = resample_to(ct, target)
    moved_labels = resample_to(labels, target)
    assert isinstance(moved_ct, CTVolume)
    assert isinstance(moved_labels, LabelMap)
    assert moved_labels.dtype == labels.dtype
    assert set(np.unique(moved_labels.array)) <= {0, 1}
    ijk = np.argwhere(moved_labels.array == 1)
    centroid = target.index_to_lps(ijk.mean(axis=0))
    np.testing.assert_allclose(centroid, centre, atol=0.6)
    assert moved_ct.array[12, 12, 10] == pytest.approx(500.0)


def test_resampling_outside_field_of_view_uses_kind_fill_value() -> None:
    ct = ct_with_air((5, 5, 5), np.eye(4))
    shifted = np.eye(4)
    shifted[:3, 3] = 500.0
    assert np.all(resample_to(ct, Geometry((3, 3, 3), shifted)).array == -1024)
    labels = LabelMap(np.ones((5, 5, 5), np.uint8), np.eye(4))
    assert np.all(resample_to(labels, Geometry((3, 3, 3), shifted)).array == 0)


def test_multi_echo_resamples_each_echo_and_keeps_protocol() -> None:
    protocol = MRProtocol((2.0, 4.0))
    data = np.stack([np.full((5, 5, 5), 10.0), np.full((5, 5, 5), 20.0)])
    mr = MultiEchoMR(data, np.eye(4), protocol=protocol)
    out = resample_to(mr, Geometry((3, 3, 3), np.diag([1.5, 1.5, 1.5, 1.0])))
    assert out.protocol == protocol
    assert out.shape == (2, 3, 3, 3)
    np.testing.assert_allclose(out.array[:, 1, 1, 1], (10.0, 20.0))
