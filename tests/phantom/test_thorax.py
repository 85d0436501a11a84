"""The spine phantom's thorax (lungs, aorta, ribs) and trabecular texture: known answers."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from synthct.geometry import Geometry
from synthct.imaging.labels import MARROW_TISSUES, Tissue
from synthct.phantom.anatomy import SpineModel, SpineSpec
from synthct.phantom.model import PhantomParameterError
from synthct.phantom.thorax_drawing import trabecular_fat_fraction

STRAIGHT = {
    "cervical_lordosis_deg": 0.0,
    "thoracic_kyphosis_deg": 0.0,
    "lumbar_lordosis_deg": 0.0,
    "curvature_jitter_deg": 0.0,
    "size_jitter_fraction": 0.0,
}
MARROW_IDS = [int(t) for t in MARROW_TISSUES]


def point_label(model: SpineModel, point: NDArray[np.float64]) -> int:
    g = Geometry.from_parameters((1, 1, 1), (0.1, 0.1, 0.1), point)
    return int(model.labels_on(g)[0, 0, 0])


@pytest.fixture(scope="module")
def chest() -> SpineModel:
    spec = SpineSpec(first_level="T4", last_level="T8", thorax=True, **STRAIGHT)
    return SpineModel(spec)


def _params(model: SpineModel, level: str) -> dict[str, float]:
    s = model.level_s_mm(level)
    names = ("lean_a", "lean_b", "back", "body_v", "body_a", "body_b")
    return {n: float(v) for n, v in zip(names, model.params_at(s, names), strict=True)}


def test_spine_landmarks_hold_with_the_thorax(chest: SpineModel) -> None:
    for level in chest.levels:
        assert point_label(chest, chest.level_centre_lps_mm(level)) == Tissue.CANCELLOUS_BONE
        assert point_label(chest, chest.canal_centre_lps_mm(level)) == Tissue.SPINAL_CORD
    for disc in ("T4/5", "T6/7"):
        assert point_label(chest, chest.level_centre_lps_mm(disc)) == Tissue.DISC


def test_lungs_aorta_and_ribs_where_drawn(chest: SpineModel) -> None:
    canal = chest.canal_centre_lps_mm("T6")
    p = _params(chest, "T6")
    body_centre_y = canal[1] + p["back"] - p["lean_b"]
    # Lungs: centred at +-0.5 lean half-widths, at the body centre's depth.
    for side in (-1, 1):
        lung = np.array([canal[0] + side * 0.5 * p["lean_a"], body_centre_y, canal[2]])
        assert point_label(chest, lung) == Tissue.LUNG
    # Anterior midline between the lungs stays mediastinal soft tissue.
    assert point_label(chest, np.array([canal[0], body_centre_y, canal[2]])) == Tissue.SOFT_TISSUE
    # Aorta: left (+x) and in front of the vertebral body, radius ~12 mm at T6.
    s = chest.level_s_mm("T6")
    t = (chest.vertebra_s_mm("T4") - s) / (chest.vertebra_s_mm("T4") - chest.vertebra_s_mm("L4"))
    radius = 12.5 + t * (9.0 - 12.5)
    aorta = canal + np.array([0.6 * p["body_a"], p["body_v"] - 0.6 * p["body_b"] - 0.5 * radius, 0])
    assert point_label(chest, aorta) == Tissue.BLOOD
    assert point_label(chest, aorta + np.array([radius + 1.0, 0, 0])) != Tissue.BLOOD
    # A rib on the lateral chest wall at its level: 12 mm inside the lean outline.
    x_rib = canal[0] + p["lean_a"] - 12.0
    drop = 0.3 * min(body_centre_y - canal[1], 0.0)
    z_rib = chest.height_at_s(s) + drop
    rib = np.array([x_rib, body_centre_y, z_rib])
    assert point_label(chest, rib) in (Tissue.CORTICAL_BONE, Tissue.CANCELLOUS_BONE)
    assert point_label(chest, rib + np.array([0, 0, 12.0])) not in (
        Tissue.CORTICAL_BONE,
        Tissue.CANCELLOUS_BONE,
    )


def test_thorax_and_texture_are_off_by_default() -> None:
    model = SpineModel(SpineSpec(first_level="T5", last_level="T7", **STRAIGHT))
    lo, hi = model.bounds_lps_mm()
    grid = Geometry.from_parameters(
        tuple(int(n) for n in np.ceil((hi - lo) / 2.0)), (2.0, 2.0, 2.0), tuple(lo)
    )
    labels = model.labels_on(grid)
    assert not np.isin(labels, [Tissue.LUNG, Tissue.BLOOD, *MARROW_IDS]).any()
    with pytest.raises(PhantomParameterError, match="thorax must be true or false"):
        SpineSpec(thorax="yes")  # type: ignore[arg-type]


def test_trabecular_texture_is_smooth_seeded_and_grid_independent() -> None:
    spec = SpineSpec(first_level="T5", last_level="T7", trabecular_texture=True, **STRAIGHT)
    model = SpineModel(spec)
    centre = model.level_centre_lps_mm("T6")
    grid = Geometry.from_parameters((20, 20, 12), (1.0, 1.0, 1.0), centre - np.array([10, 10, 6]))
    labels = model.labels_on(grid)
    core = labels[4:16, 4:16, 3:9]
    assert np.isin(core, MARROW_IDS).all()  # no uniform CANCELLOUS_BONE left in the body
    assert len(np.unique(core)) >= 3  # a spread of fat-fraction bins
    # The same point gets the same label on another grid (the field lives in LPS).
    point = grid.index_to_lps(np.array([7, 9, 5]))
    assert point_label(model, point) == labels[7, 9, 5]
    # Seeded: same seed, same texture; another seed, another texture.
    again = SpineModel(spec).labels_on(grid)
    np.testing.assert_array_equal(again, labels)
    other = SpineModel(SpineSpec(**{**spec.to_dict(), "seed": 1})).labels_on(grid)
    assert np.mean(other[4:16, 4:16, 3:9] != core) > 0.2
    # Field statistics: mean fat fraction 0.5, SD ~0.25 (clipped to 0..1).
    rng = np.random.default_rng(0)
    pts = tuple(rng.uniform(-100, 100, 20000) for _ in range(3))
    ff = trabecular_fat_fraction(0, pts)
    assert ff.mean() == pytest.approx(0.5, abs=0.03)
    assert 0.18 < ff.std() < 0.27
    # Smooth: fat fraction changes little over 0.3 mm.
    shifted = trabecular_fat_fraction(0, (pts[0] + 0.3, pts[1], pts[2]))
    assert np.median(np.abs(shifted - ff)) < 0.1


def test_a_cohort_case_can_have_the_thorax() -> None:
    from synthct.phantom.cohort import CohortSpec, case_plan

    plain, *_ = case_plan(CohortSpec(n_cases=1, levels=("T6", "T6")), 0)
    chest, *_ = case_plan(
        CohortSpec(n_cases=1, levels=("T6", "T6"), thorax=True, trabecular_texture=True), 0
    )
    assert not plain.thorax and not plain.trabecular_texture
    assert chest.thorax and chest.trabecular_texture
    assert chest.seed == plain.seed  # the same case otherwise
