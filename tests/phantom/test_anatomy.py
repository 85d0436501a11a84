"""Known-answer tests of the spine anatomy (levels, layers, curvature, determinism, grids)."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from synthct.geometry import Geometry
from synthct.imaging.labels import Tissue
from synthct.phantom.anatomy import SpineModel, SpineSpec
from synthct.phantom.levels import LEVEL_TABLE, parse_level
from synthct.phantom.model import PhantomParameterError

T = Tissue
STRAIGHT = {
    "cervical_lordosis_deg": 0.0,
    "thoracic_kyphosis_deg": 0.0,
    "lumbar_lordosis_deg": 0.0,
    "curvature_jitter_deg": 0.0,
    "size_jitter_fraction": 0.0,
}


def ray_labels(
    model: SpineModel,
    start: NDArray[np.float64],
    direction: NDArray[np.float64],
    length_mm: float,
    step_mm: float = 0.05,
) -> NDArray[np.uint8]:
    """Labels at points ``start + t * direction`` for t in [0, length) (an oblique 1-D grid)."""
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d)
    helper = np.array([0.0, 0.0, 1.0]) if abs(d[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e1 = np.cross(d, helper)
    e1 /= np.linalg.norm(e1)
    frame = np.column_stack([d, e1, np.cross(d, e1)])
    n = round(length_mm / step_mm)
    g = Geometry.from_parameters((n, 1, 1), (step_mm, 1.0, 1.0), start, direction=frame)
    return model.labels_on(g)[:, 0, 0]


def runs(labels: NDArray[np.uint8]) -> list[tuple[int, int]]:
    """Run-length encoding: (label, count) pairs."""
    edges = np.flatnonzero(np.diff(labels.astype(int))) + 1
    starts = np.concatenate([[0], edges])
    counts = np.diff(np.concatenate([starts, [labels.size]]))
    return [(int(labels[s]), int(c)) for s, c in zip(starts, counts, strict=True)]


def point_label(model: SpineModel, point: NDArray[np.float64]) -> int:
    g = Geometry.from_parameters((1, 1, 1), (0.1, 0.1, 0.1), point)
    return int(model.labels_on(g)[0, 0, 0])


@pytest.fixture(scope="module")
def thoracic() -> SpineModel:
    return SpineModel(SpineSpec(first_level="T3", last_level="T8", curvature_jitter_deg=0.0))


# -- levels and spec --------------------------------------------------------------------------
def test_parse_level_forms() -> None:
    disc = parse_level("C5/6")
    assert (disc.kind, disc.name, disc.vertebrae) == ("disc", "C5/6", ("C5", "C6"))
    assert parse_level("c7/t1").name == "C7/T1"
    assert parse_level("T12/L1").vertebrae == ("T12", "L1")
    span = parse_level("T5-7")
    assert (span.kind, span.vertebrae) == ("range", ("T5", "T6", "T7"))
    assert parse_level("T5-T7") == span
    assert parse_level("L5").kind == "vertebra"


@pytest.mark.parametrize("text", ["C1", "T13", "L6", "C5/7", "T7-5", "X9", "T5+6"])
def test_parse_level_rejects(text: str) -> None:
    with pytest.raises(PhantomParameterError, match="level"):
        parse_level(text)


def test_spec_validation_names_parameter_and_range() -> None:
    with pytest.raises(PhantomParameterError, match=r"C2\.\.C7, T1\.\.T12, L1\.\.L5, S1"):
        SpineSpec(first_level="C1")
    with pytest.raises(PhantomParameterError, match="first_level"):
        SpineSpec(first_level="T9", last_level="C5")
    with pytest.raises(
        PhantomParameterError, match=r"subcutaneous_fat_mm must be between 1 and 80"
    ):
        SpineSpec(subcutaneous_fat_mm=-3.0)
    with pytest.raises(PhantomParameterError, match="thoracic_kyphosis_deg"):
        SpineSpec(thoracic_kyphosis_deg=120.0)
    with pytest.raises(PhantomParameterError, match="seed"):
        SpineSpec(seed=-1)
    assert SpineSpec(first_level="t5", last_level="t9").levels == ("T5", "T6", "T7", "T8", "T9")


# -- layout ----------------------------------------------------------------------------------
def test_levels_in_order_with_table_spacing() -> None:
    model = SpineModel(SpineSpec(first_level="C5", last_level="T9", **STRAIGHT))
    names = ("C5", "C6", "C7", "T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8", "T9")
    assert model.levels == names
    centres = np.array([model.canal_centre_lps_mm(n) for n in names])
    assert np.all(np.diff(centres[:, 2]) < 0)  # cranial first: S decreases down the list
    for upper, lower, a, b in zip(names[:-1], names[1:], centres[:-1], centres[1:], strict=True):
        expected = (
            LEVEL_TABLE[upper].body_height_mm / 2
            + LEVEL_TABLE[upper].disc_below_mm
            + LEVEL_TABLE[lower].body_height_mm / 2
        )
        assert np.linalg.norm(a - b) == pytest.approx(expected, abs=1e-6)
    # A straight spine with no jitter: bodies directly in front of the canal.
    offset = model.level_centre_lps_mm("T4") - model.canal_centre_lps_mm("T4")
    dims = LEVEL_TABLE["T4"]
    assert offset == pytest.approx([0, -(dims.canal_ap_mm + dims.body_depth_mm) / 2, 0], abs=1e-6)


def test_labels_at_landmarks(thoracic: SpineModel) -> None:
    for level in thoracic.levels:
        assert point_label(thoracic, thoracic.level_centre_lps_mm(level)) == T.CANCELLOUS_BONE
        assert point_label(thoracic, thoracic.canal_centre_lps_mm(level)) == T.SPINAL_CORD
    for disc in ("T2/3", "T3/4", "T5/6", "T7/8", "T8/9"):  # inner and end discs
        assert point_label(thoracic, thoracic.level_centre_lps_mm(disc)) == T.DISC


def test_canal_layers_from_cord_outward(thoracic: SpineModel) -> None:
    centre = thoracic.canal_centre_lps_mm("T6")
    u, v, _ = thoracic.frame_at("T6").T
    dorsal = runs(ray_labels(thoracic, centre, v, 14.0))
    assert [label for label, _ in dorsal[:6]] == [
        T.SPINAL_CORD,
        T.CSF,
        T.DURA,
        T.EPIDURAL_FAT,
        T.LIGAMENT,
        T.CORTICAL_BONE,
    ]
    dura_mm = dorsal[2][1] * 0.05
    assert dura_mm == pytest.approx(thoracic.spec.dura_thickness_mm, abs=0.1)
    ventral = [label for label, _ in runs(ray_labels(thoracic, centre, -v, 14.0))]
    # Dural sac against the posterior longitudinal ligament, then the body's posterior wall.
    assert ventral[:6] == [
        T.SPINAL_CORD,
        T.CSF,
        T.DURA,
        T.LIGAMENT,
        T.CORTICAL_BONE,
        T.CANCELLOUS_BONE,
    ]
    lateral = [label for label, _ in runs(ray_labels(thoracic, centre, u, 14.0))]
    assert lateral[:5] == [T.SPINAL_CORD, T.CSF, T.DURA, T.EPIDURAL_FAT, T.CORTICAL_BONE]


@pytest.mark.parametrize("thickness_mm", [1.0, 2.0])
def test_body_cortical_shell_surrounds_cancellous_core(thickness_mm: float) -> None:
    model = SpineModel(
        SpineSpec(first_level="T5", last_level="T7", cortical_thickness_mm=thickness_mm, **STRAIGHT)
    )
    centre = model.level_centre_lps_mm("T6")
    half = LEVEL_TABLE["T6"].body_width_mm / 2
    u, _, w = model.frame_at("T6").T
    for direction, half_extent in ((u, half), (w, LEVEL_TABLE["T6"].body_height_mm / 2)):
        labels = ray_labels(
            model, centre - (half_extent + 2) * direction, direction, 2 * half_extent + 4
        )
        bone = [
            (label, n) for label, n in runs(labels) if label in (T.CORTICAL_BONE, T.CANCELLOUS_BONE)
        ]
        assert [label for label, _ in bone] == [T.CORTICAL_BONE, T.CANCELLOUS_BONE, T.CORTICAL_BONE]
        assert bone[0][1] * 0.05 == pytest.approx(thickness_mm, abs=0.15)
        assert bone[2][1] * 0.05 == pytest.approx(thickness_mm, abs=0.15)
        total = sum(n for _, n in bone) * 0.05
        assert total == pytest.approx(2 * half_extent, abs=0.15)


def test_body_outline_layers() -> None:
    spec = SpineSpec(first_level="T5", last_level="T7", subcutaneous_fat_mm=15.0, **STRAIGHT)
    model = SpineModel(spec)
    centre = model.canal_centre_lps_mm("T6")
    dorsal = runs(ray_labels(model, centre + np.array([0, 30, 0]), [0, 1, 0], 60.0, step_mm=0.1))
    labels = [label for label, _ in dorsal]
    assert labels[-3:] == [T.MUSCLE, T.SUBCUTANEOUS_FAT, T.AIR]
    assert dorsal[-2][1] * 0.1 == pytest.approx(15.0, abs=0.15)
    ventral_point = centre + np.array([0, -80, 0])
    assert point_label(model, ventral_point) == T.SOFT_TISSUE
    assert point_label(model, centre + np.array([250, 0, 0])) == T.AIR


def test_no_cord_below_the_conus() -> None:
    model = SpineModel(SpineSpec(first_level="L2", last_level="L4", **STRAIGHT))
    assert point_label(model, model.canal_centre_lps_mm("L3")) == T.CSF


# -- curvature -------------------------------------------------------------------------------
def _sagitta(model: SpineModel, first: str, middle: str, last: str) -> NDArray[np.float64]:
    a, m, b = (model.canal_centre_lps_mm(x) for x in (first, middle, last))
    assert a[:2] == pytest.approx(b[:2], abs=1e-6)  # the span's chord is along S
    return m - 0.5 * (a + b)


def test_curvature_signs() -> None:
    flat = {**STRAIGHT}
    kyphotic = SpineModel(
        SpineSpec(first_level="T1", last_level="T12", **{**flat, "thoracic_kyphosis_deg": 40.0})
    )
    assert _sagitta(kyphotic, "T1", "T6/7", "T12")[1] > 10.0  # apex posterior (+P)
    lordotic = SpineModel(
        SpineSpec(first_level="C2", last_level="C7", **{**flat, "cervical_lordosis_deg": 25.0})
    )
    assert _sagitta(lordotic, "C2", "C4/5", "C7")[1] < -2.0  # apex anterior
    lumbar = SpineModel(
        SpineSpec(first_level="L1", last_level="S1", **{**flat, "lumbar_lordosis_deg": 50.0})
    )
    assert _sagitta(lumbar, "L1", "L3", "S1")[1] < -5.0
    reversed_ = SpineModel(
        SpineSpec(first_level="T1", last_level="T12", **{**flat, "thoracic_kyphosis_deg": -10.0})
    )
    assert _sagitta(reversed_, "T1", "T6/7", "T12")[1] < -1.0
    scoliotic = SpineModel(
        SpineSpec(first_level="T1", last_level="L4", **{**flat, "scoliosis_deg": 20.0})
    )
    bend = _sagitta(scoliotic, "T1", "T10", "L4")
    assert bend[0] > 5.0 and abs(bend[1]) < 1e-6  # apex to the patient's left (+L)
    straight = SpineModel(SpineSpec(first_level="T1", last_level="T12", **flat))
    assert _sagitta(straight, "T1", "T6/7", "T12")[:2] == pytest.approx([0, 0], abs=1e-6)


# -- determinism and grids -------------------------------------------------------------------
def _coarse_grid(model: SpineModel) -> Geometry:
    c = model.canal_centre_lps_mm(model.levels[len(model.levels) // 2])
    return Geometry.from_parameters((48, 40, 50), (1.5, 1.5, 1.2), c - [36, 30, 30])


def test_deterministic_for_a_seed_and_varies_across_seeds() -> None:
    spec = SpineSpec(first_level="T4", last_level="T8", seed=7)
    a, b = SpineModel(spec), SpineModel(spec)
    grid = _coarse_grid(a)
    assert np.array_equal(a.labels_on(grid), b.labels_on(grid))
    other = SpineModel(SpineSpec(first_level="T4", last_level="T8", seed=8))
    assert not np.allclose(a.level_centre_lps_mm("T4"), other.level_centre_lps_mm("T4"))
    assert not np.array_equal(a.labels_on(grid), other.labels_on(grid))
    # A level's jitter does not depend on which span is drawn.
    wider = SpineModel(SpineSpec(first_level="T2", last_level="T10", seed=7))
    assert wider.section_at_s(wider.level_s_mm("T6")).canal_semi_axes_mm == pytest.approx(
        a.section_at_s(a.level_s_mm("T6")).canal_semi_axes_mm
    )


def test_slabs_flips_and_permutations_agree(thoracic: SpineModel) -> None:
    grid = _coarse_grid(thoracic)
    full = thoracic.labels_on(grid)
    assert full.dtype == np.uint8 and full.shape == grid.shape
    assert set(np.unique(full)) <= {int(t) for t in T if t < T.MENINGIOMA}
    for axis in range(3):
        parts = []
        for start in range(0, grid.shape[axis], 7):
            index = [0, 0, 0]
            index[axis] = start
            shape = list(grid.shape)
            shape[axis] = min(7, grid.shape[axis] - start)
            sub = Geometry(tuple(shape), _shifted(grid, index))  # type: ignore[arg-type]
            parts.append(thoracic.labels_on(sub))
        assert np.array_equal(np.concatenate(parts, axis=axis), full)
    # The same voxel centres visited in reversed and permuted array order.
    last = np.asarray(grid.shape) - 1
    flipped = Geometry.from_parameters(
        grid.shape[::-1],
        grid.spacing_mm[::-1],
        grid.index_to_lps(last),
        direction=-grid.direction[:, ::-1],
    )
    assert np.array_equal(thoracic.labels_on(flipped), full[::-1, ::-1, ::-1].transpose(2, 1, 0))


def _shifted(grid: Geometry, index: list[int]) -> NDArray[np.float64]:
    affine = np.array(grid.affine, copy=True)
    affine[:3, 3] = grid.index_to_lps(np.asarray(index, dtype=np.float64))
    return affine


def test_landmark_api(thoracic: SpineModel) -> None:
    frame = thoracic.frame_at("T5")
    assert frame.T @ frame == pytest.approx(np.eye(3), abs=1e-9)
    assert frame[:, 0] @ [1, 0, 0] > 0.9 and frame[:, 1] @ [0, 1, 0] > 0.9
    z = thoracic.canal_centre_lps_mm("T5")[2]
    assert thoracic.canal_centre_lps_mm(float(z)) == pytest.approx(
        thoracic.canal_centre_lps_mm("T5"), abs=0.05
    )
    low, high = thoracic.level_extent_s_mm("T5-7")
    assert high - low == pytest.approx(
        thoracic.level_s_mm("T5")
        - thoracic.level_s_mm("T7")
        + (
            thoracic.segment_at(thoracic.level_s_mm("T5")).dims.body_height_mm
            + thoracic.segment_at(thoracic.level_s_mm("T7")).dims.body_height_mm
        )
        / 2
    )
    with pytest.raises(PhantomParameterError, match=r"T3\.\.T8"):
        thoracic.level_s_mm("C5/6")
    lo, hi = thoracic.bounds_lps_mm()
    assert np.all(hi - lo > [150, 120, 100])


def test_oblique_grid_matches_point_queries(thoracic: SpineModel) -> None:
    angle = np.radians(25.0)
    rotation = np.array(
        [[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]]
    )
    origin = thoracic.canal_centre_lps_mm("T5") - np.array([9.0, 9.0, 9.0])
    grid = Geometry.from_parameters((4, 4, 4), (6.0, 6.0, 6.0), origin, direction=rotation)
    labels = thoracic.labels_on(grid)
    assert len(np.unique(labels)) >= 4
    for index in np.ndindex(grid.shape):
        assert labels[index] == point_label(thoracic, grid.index_to_lps(np.array(index)))
