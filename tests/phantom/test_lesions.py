"""Known-answer tests of the lesion library: sizes, calcification, anatomy, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.spatial import ConvexHull

from synthct.geometry import Geometry
from synthct.imaging.labels import Tissue
from synthct.imaging.tissues import TISSUES
from synthct.phantom.anatomy import SpineModel, SpineSpec
from synthct.phantom.lesions import LesionInstance, LesionSpec, PhantomModel
from synthct.phantom.model import PhantomParameterError

T = Tissue
SPINE = SpineSpec(first_level="T2", last_level="T10", curvature_jitter_deg=0.0, seed=3)
LESIONS = (
    # The paper's mean size and HU (Fischer 2025) and its barely calcified tumour.
    LesionSpec(
        "meningioma", "T8/9", axial_diameter_mm=11.6, sagittal_diameter_mm=19.6, mean_hu=463.6
    ),
    LesionSpec(
        "meningioma",
        "T6",
        axial_diameter_mm=8.0,
        sagittal_diameter_mm=12.0,
        mean_hu=113.0,
        position="left",
    ),
    LesionSpec(
        "opll",
        "T3",
        axial_diameter_mm=10.0,
        sagittal_diameter_mm=22.0,
        thickness_mm=4.0,
        mean_hu=500.0,
    ),
    LesionSpec("olf", "T4", axial_diameter_mm=12.0, sagittal_diameter_mm=10.0, thickness_mm=3.5),
    LesionSpec("disc_herniation", "T9/10", axial_diameter_mm=9.0, sagittal_diameter_mm=8.0),
    LesionSpec("schwannoma", "T7", axial_diameter_mm=6.0, sagittal_diameter_mm=9.0),
)


@pytest.fixture(scope="module")
def phantom() -> PhantomModel:
    return PhantomModel(SPINE, LESIONS)


def cube(centre: NDArray[np.float64], size_mm: float, spacing_mm: float) -> Geometry:
    """A cube of voxels around a point, offset off the lesion's symmetry planes."""
    n = round(size_mm / spacing_mm)
    origin = np.asarray(centre) - size_mm / 2 + 0.0123
    return Geometry.from_parameters((n, n, n), (spacing_mm,) * 3, origin)


def lesion(phantom: PhantomModel, lesion_id: int) -> LesionInstance:
    return phantom.lesions[lesion_id - 1]


def max_axial_feret_mm(mask: NDArray[np.bool_], spacing_mm: float) -> float:
    """Largest in-plane Feret diameter over axial (constant S) slices, voxel centre to centre."""
    best = 0.0
    for k in np.flatnonzero(mask.any(axis=(0, 1))):
        points = np.argwhere(mask[:, :, k]) * spacing_mm
        if len(points) < 3:
            continue
        hull = points[ConvexHull(points).vertices]
        best = max(best, float(np.max(np.linalg.norm(hull[:, None] - hull[None], axis=-1))))
    return best


def ray(
    phantom: PhantomModel,
    start: NDArray[np.float64],
    direction: NDArray[np.float64],
    length_mm: float,
    step_mm: float = 0.05,
) -> NDArray[np.uint8]:
    d = np.asarray(direction, dtype=np.float64) / np.linalg.norm(direction)
    e1 = np.cross(d, [0.0, 0.0, 1.0])
    e1 /= np.linalg.norm(e1)
    frame = np.column_stack([d, e1, np.cross(d, e1)])
    g = Geometry.from_parameters(
        (int(length_mm / step_mm), 1, 1), (step_mm, 1, 1), start, direction=frame
    )
    return phantom.labels_on(g)[:, 0, 0]


# -- size ------------------------------------------------------------------------------------
@pytest.mark.parametrize("lesion_id", [1, 2])
def test_meningioma_diameters_within_one_voxel(phantom: PhantomModel, lesion_id: int) -> None:
    spacing = 0.25
    info = lesion(phantom, lesion_id)
    assert info.canal_tilt_deg < 8.0  # diameters are along the canal; here nearly LPS axes
    ids = phantom.lesion_labels_on(cube(np.array(info.centre_lps_mm), 30.0, spacing))
    mask = ids == info.id
    assert ids.dtype == np.uint16 and set(np.unique(ids)) == {0, info.id}
    slices = np.flatnonzero(mask.any(axis=(0, 1)))
    sagittal = (slices.max() - slices.min() + 1) * spacing
    assert abs(sagittal - info.diameter_sagittal_mm) <= spacing
    assert abs(max_axial_feret_mm(mask, spacing) - info.diameter_axial_mm) <= spacing


def test_ossified_ligament_sizes(phantom: PhantomModel) -> None:
    spacing = 0.25
    info = lesion(phantom, 3)
    mask = phantom.lesion_labels_on(cube(np.array(info.centre_lps_mm), 30.0, spacing)) == 3
    assert abs(max_axial_feret_mm(mask, spacing) - info.diameter_axial_mm) <= spacing
    # Cranio-caudal extent along the tilted canal: L cos(tilt) within a voxel.
    slices = np.flatnonzero(mask.any(axis=(0, 1)))
    expected = info.diameter_sagittal_mm * np.cos(np.radians(info.canal_tilt_deg))
    assert abs((slices.max() - slices.min() + 1) * spacing - expected) <= 2 * spacing


# -- calcification ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("lesion_id", "spacing"), [(1, 0.25), (1, 0.33), (2, 0.25), (2, 0.3), (3, 0.3)]
)
def test_calcified_fraction_gives_target_mean_hu(
    phantom: PhantomModel, lesion_id: int, spacing: float
) -> None:
    info = lesion(phantom, lesion_id)
    grid = cube(np.array(info.centre_lps_mm), 28.0, spacing)
    mask = phantom.lesion_labels_on(grid) == lesion_id
    labels = phantom.labels_on(grid)[mask]
    assert info.dense_tissue is not None
    assert set(np.unique(labels)) == {info.base_tissue, info.dense_tissue}
    fraction = float(np.mean(labels == info.dense_tissue))
    expected_fraction = (info.mean_hu - TISSUES[info.base_tissue].ct_hu) / (
        TISSUES[info.dense_tissue].ct_hu - TISSUES[info.base_tissue].ct_hu
    )
    assert info.calcified_fraction == pytest.approx(expected_fraction)
    mean_hu = (1 - fraction) * TISSUES[info.base_tissue].ct_hu + fraction * TISSUES[
        info.dense_tissue
    ].ct_hu
    assert mean_hu == pytest.approx(info.mean_hu, rel=0.02)


def test_calcification_is_clustered_and_seeded(phantom: PhantomModel) -> None:
    info = lesion(phantom, 1)
    grid = cube(np.array(info.centre_lps_mm), 24.0, 0.3)
    calcified = phantom.labels_on(grid) == T.CALCIFICATION
    # Spatially smooth: a calcified voxel's axial neighbour is mostly calcified too (white
    # noise of the same fraction would give ~0.31).
    pairs = calcified[:-1] & calcified[1:]
    assert pairs.sum() / calcified[:-1].sum() > 0.6
    reseeded = PhantomModel(SPINE, [LesionSpec(**{**LESIONS[0].__dict__, "seed": 5})])
    other = reseeded.labels_on(grid) == T.CALCIFICATION
    assert not np.array_equal(other, calcified)
    assert other.sum() == pytest.approx(calcified.sum(), rel=0.03)
    again = PhantomModel(SPINE, [LESIONS[0]]).labels_on(grid) == T.CALCIFICATION
    assert np.array_equal(again, calcified)


@pytest.mark.parametrize("pattern", ["rim", "dense"])
def test_patterns_place_calcium_where_named(pattern: str) -> None:
    spec = LesionSpec(
        "meningioma",
        "T6",
        axial_diameter_mm=8.0,
        sagittal_diameter_mm=10.0,
        calcified_fraction=0.4,
        pattern=pattern,
    )
    model = PhantomModel(SPINE, [spec])
    info = model.lesions[0]
    grid = cube(np.array(info.centre_lps_mm), 16.0, 0.25)
    mask = model.lesion_labels_on(grid) == 1
    calcified = (model.labels_on(grid) == T.CALCIFICATION) & mask
    centre_index = np.round(grid.lps_to_index(info.centre_lps_mm)).astype(int)
    inner = np.zeros_like(mask)
    i, j, k = centre_index
    inner[i - 4 : i + 5, j - 4 : j + 5, k - 4 : k + 5] = True  # 2 mm around the centre
    inner &= mask
    central = calcified[inner].mean()
    assert calcified[mask].mean() == pytest.approx(0.4, abs=0.01)
    assert central < 0.05 if pattern == "rim" else central > 0.9


# -- anatomy ---------------------------------------------------------------------------------
def test_meningioma_is_intradural_and_displaces_the_cord(phantom: PhantomModel) -> None:
    info = lesion(phantom, 1)
    centre = np.array(info.centre_lps_mm)
    grid = cube(centre, 26.0, 0.3)
    mask = phantom.lesion_labels_on(grid) == 1
    deformed_spine = phantom.spine.labels_on(grid)
    assert set(np.unique(deformed_spine[mask])) <= {T.CSF, T.SPINAL_CORD}
    assert np.mean(deformed_spine[mask] == T.SPINAL_CORD) < 0.002
    # Attached to the dura: lesion and dura voxels touch (6-neighbourhood).
    labels = phantom.labels_on(grid)
    grown = mask.copy()
    for axis in range(3):
        grown |= np.roll(mask, 1, axis=axis) | np.roll(mask, -1, axis=axis)
    assert np.any(grown & (labels == T.DURA))
    assert not np.any(np.isin(labels[grown & ~mask], (T.EPIDURAL_FAT, T.CORTICAL_BONE)))
    # The cord centre (axial slice through the lesion) moves away from the lesion.
    k = int(np.round(grid.lps_to_index(centre)[2]))
    plain = PhantomModel(SPINE).labels_on(grid)[:, :, k] == T.SPINAL_CORD
    moved = phantom.labels_on(grid)[:, :, k] == T.SPINAL_CORD
    assert moved.sum() > 0.15 * plain.sum()  # compressed, not erased
    before = np.argwhere(plain).mean(axis=0) * 0.3
    after = np.argwhere(moved).mean(axis=0) * 0.3
    toward_lesion = (grid.lps_to_index(centre)[:2] * 0.3) - before
    toward_lesion /= np.linalg.norm(toward_lesion)
    assert (after - before) @ toward_lesion < -1.0
    assert info.cord_shift_mm > 1.0 and 0 < info.cord_compression < 1


def test_opll_lies_behind_the_body_and_in_front_of_the_cord(phantom: PhantomModel) -> None:
    info = lesion(phantom, 3)
    s = info.s_mm
    body = phantom.spine.point_lps_mm(s, 0.0, phantom.spine.section_at_s(s).body_centre_v_mm)
    v = phantom.spine.segment_at(s).axes[:, 1]
    labels = ray(phantom, body, v, 40.0)
    bone = np.flatnonzero(np.isin(labels, (T.CORTICAL_BONE, T.CANCELLOUS_BONE)))
    cord = np.flatnonzero(labels == T.SPINAL_CORD)
    ossified = np.flatnonzero(labels == T.OSSIFICATION)
    assert ossified.size > 0
    assert bone[bone < ossified[0]].max() < ossified.min()  # dorsal to the body's wall
    assert ossified.max() < cord.min()  # ventral to the cord
    assert (ossified.max() - bone[bone < ossified[0]].max()) * 0.05 <= info.thickness_mm + 0.1


def test_olf_lies_under_the_lamina(phantom: PhantomModel) -> None:
    info = lesion(phantom, 4)
    s = info.s_mm
    start = phantom.spine.point_lps_mm(s)
    v = phantom.spine.segment_at(s).axes[:, 1]
    labels = ray(phantom, start, v, 16.0)
    ossified = np.flatnonzero(labels == T.OSSIFICATION)
    assert ossified.size > 0
    after = labels[ossified.max() + 1 :]
    after = after[after != T.LIGAMENT]
    assert after[0] == T.CORTICAL_BONE  # the lamina, directly dorsal
    cord = np.flatnonzero(labels == T.SPINAL_CORD)
    assert cord.max() < ossified.min()


def test_disc_herniation_is_extradural_with_draped_dura(phantom: PhantomModel) -> None:
    info = lesion(phantom, 5)
    assert info.compartment == "extradural" and info.position_deg == 180.0
    grid = cube(np.array(info.centre_lps_mm), 20.0, 0.3)
    mask = phantom.lesion_labels_on(grid) == 5
    spine_only = PhantomModel(SPINE).labels_on(grid)
    assert not np.any(np.isin(spine_only[mask], (T.CORTICAL_BONE, T.CANCELLOUS_BONE)))
    labels = phantom.labels_on(grid)
    grown = np.zeros_like(mask)
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    rim = grown & ~mask
    assert np.mean(labels[rim] == T.DURA) > 0.2
    assert not np.any((labels == T.SPINAL_CORD) & mask)


def test_schwannoma_is_not_calcified(phantom: PhantomModel) -> None:
    info = lesion(phantom, 6)
    assert info.calcified_fraction == 0 and info.pattern == "none" and info.dense_tissue is None
    assert info.mean_hu == pytest.approx(TISSUES[T.SCHWANNOMA].ct_hu)
    grid = cube(np.array(info.centre_lps_mm), 14.0, 0.3)
    mask = phantom.lesion_labels_on(grid) == 6
    assert mask.sum() > 0
    assert set(np.unique(phantom.labels_on(grid)[mask])) == {T.SCHWANNOMA}


def test_metadata(phantom: PhantomModel) -> None:
    text = json.dumps(phantom.to_dict())
    data = json.loads(text)
    assert [d["id"] for d in data["lesions"]] == [1, 2, 3, 4, 5, 6]
    assert data["lesions"][0]["dense_tissue"] == "CALCIFICATION"
    assert data["lesions"][0]["level"] == "T8/9" and data["spine"]["first_level"] == "T2"
    for info in phantom.lesions:
        assert info.label == info.id
        g = Geometry.from_parameters((1, 1, 1), (0.1, 0.1, 0.1), info.centre_lps_mm)
        assert int(phantom.lesion_labels_on(g)[0, 0, 0]) == info.id


def test_no_lesions_is_the_spine(phantom: PhantomModel) -> None:
    grid = cube(phantom.spine.canal_centre_lps_mm("T6"), 30.0, 1.0)
    plain = PhantomModel(SPINE)
    assert plain.lesions == ()
    assert np.array_equal(plain.labels_on(grid), SpineModel(SPINE).labels_on(grid))
    assert not np.any(plain.lesion_labels_on(grid))


# -- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"type": "glioma"}, "unknown lesion type"),
        ({"axial_diameter_mm": -2.0}, r"axial_diameter_mm must be more than 0"),
        ({"sagittal_diameter_mm": 0.0}, "sagittal_diameter_mm"),
        ({"thickness_mm": 12.0}, "exceeds axial_diameter_mm"),
        ({"level": "T13"}, "T13"),
        ({"position": "north"}, "unknown position"),
        ({"pattern": "speckled"}, "unknown calcification pattern"),
        ({"mean_hu": 300.0, "calcified_fraction": 0.2}, "not both"),
        ({"calcified_fraction": 1.5}, "calcified_fraction"),
    ],
)
def test_spec_errors(kwargs: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"type": "meningioma", "level": "T6", "axial_diameter_mm": 10.0}
    with pytest.raises(PhantomParameterError, match=message):
        LesionSpec(**{**base, **kwargs})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (LesionSpec("meningioma", "C5/6"), r"T2\.\.T10"),
        (
            LesionSpec("meningioma", "T6", axial_diameter_mm=30.0, sagittal_diameter_mm=20.0),
            r"axial_diameter_mm 30 .*does not fit.*mm AP x .*mm transverse",
        ),
        (
            LesionSpec("opll", "T6", axial_diameter_mm=14.5, thickness_mm=14.5),
            "leaves no room for the spinal cord",
        ),
        (LesionSpec("meningioma", "T6", mean_hu=2000.0), r"mean_hu 2000 HU .* between 40 HU"),
        (LesionSpec("schwannoma", "T6", mean_hu=300.0), "mean_hu"),
        (LesionSpec("meningioma", "T6", calcified_fraction=0.3, pattern="none"), "pattern"),
        (LesionSpec("opll", "T6", position="left"), "position"),
    ],
)
def test_placement_errors(spec: LesionSpec, message: str) -> None:
    with pytest.raises(PhantomParameterError, match=message):
        PhantomModel(SPINE, [spec])
