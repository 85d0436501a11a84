"""Tissue classes of the real-anatomy world: derived from the tissue table, known envelopes."""

from __future__ import annotations

import numpy as np
import pytest

from synthct.audit.mri_consistency import ConsistencySettings, consistency_map
from synthct.audit.tissue_classes import (
    DEFAULT_CLASSES,
    TissueClass,
    class_intervals,
    predicted_envelope,
    table_class,
)
from synthct.geometry import Geometry
from synthct.imaging.labels import LESION_TISSUES, MARROW_TISSUES, Tissue
from synthct.imaging.marrow import DEFAULT_MARROW
from synthct.imaging.tissues import TISSUES
from synthct.phantom.model import Box, Cylinder, ShapesModel
from synthct.phantom.mri import render_ct_and_mri
from synthct.phantom.protocols import FAST_3T

T = Tissue
NAMES = [c.name for c in DEFAULT_CLASSES]


def _cls(name: str) -> TissueClass:
    return DEFAULT_CLASSES[NAMES.index(name)]


def test_classes_come_from_the_tissue_table() -> None:
    soft = _cls("soft_tissue")
    # every normal tissue of the table within 20-130 HU, the new organs and blood included
    assert {T.BLOOD, T.LIVER, T.SPLEEN, T.KIDNEY, T.HEART, T.SPINAL_CORD, T.DISC} <= set(
        soft.members
    )
    assert not set(soft.members) & (LESION_TISSUES | set(MARROW_TISSUES))
    marrow = _cls("marrow")
    # the span of the marrow bins: HU at fat fractions 0.9 and 0.1 (Glueer 1989 mixing)
    assert marrow.hu_low == pytest.approx(float(DEFAULT_MARROW.hu_of_fat_fraction(0.9)), abs=0.1)
    assert marrow.hu_high == pytest.approx(float(DEFAULT_MARROW.hu_of_fat_fraction(0.1)), abs=0.1)
    assert set(marrow.members) | {marrow.tissue} == set(MARROW_TISSUES)
    lung = _cls("lung")  # -850 HU +- 2 texture SDs of 60 HU
    assert (lung.hu_low, lung.hu_high) == (-970.0, -730.0)
    assert _cls("air").members == (T.BOWEL_GAS,)
    # the procedural bands are unchanged
    assert (_cls("fluid").hu_low, _cls("fluid").hu_high) == (-5.0, 15.0)
    assert (_cls("soft_tissue").hu_low, _cls("soft_tissue").hu_high) == (20.0, 130.0)
    # a band made from a table row follows the row
    made = table_class("x", T.LIVER)
    sd = TISSUES[T.LIVER].ct_texture_sd_hu
    assert (made.hu_low, made.hu_high) == (60.0 - 2 * sd, 60.0 + 2 * sd)


def test_envelope_of_marrow_spans_its_fat_fractions() -> None:
    protocol = FAST_3T.to_mr_protocol()
    lo_c, hi_c = class_intervals(protocol)
    marrow, soft = NAMES.index("marrow"), NAMES.index("soft_tissue")
    # 158 HU: marrow only (fat fractions 0.1-0.9 span the envelope)
    hu = np.full((7, 7, 7), 158.0, dtype=np.float32)
    lo, hi = predicted_envelope(hu, hu, protocol, (1.0, 1.0, 1.0))
    np.testing.assert_allclose(lo[:, 3, 3, 3], lo_c[:, marrow], rtol=1e-5)
    np.testing.assert_allclose(hi[:, 3, 3, 3], hi_c[:, marrow], rtol=1e-5)
    assert hi_c[0, marrow] > 3 * lo_c[0, marrow]  # opposed phase: ff 0.3 dark, 0.9 bright
    # 120 HU lies in the soft-tissue and the marrow band: either class (or, as 120 HU lies
    # between their mixing HU of 45 and 158, a mixture, whose opposed-phase fat can cancel)
    hu = np.full((7, 7, 7), 120.0, dtype=np.float32)
    lo, hi = predicted_envelope(hu, hu, protocol, (1.0, 1.0, 1.0))
    assert np.all(lo[:, 3, 3, 3] <= np.minimum(lo_c[:, marrow], lo_c[:, soft]) * (1 + 1e-5))
    np.testing.assert_allclose(
        hi[:, 3, 3, 3], np.maximum(hi_c[:, marrow], hi_c[:, soft]), rtol=1e-5
    )


def test_envelope_of_lung_is_its_signal() -> None:
    protocol = FAST_3T.to_mr_protocol()
    lo_c, hi_c = class_intervals(protocol)
    hu = np.full((7, 7, 7), -850.0, dtype=np.float32)
    lo, hi = predicted_envelope(hu, hu, protocol, (1.0, 1.0, 1.0))
    lung = NAMES.index("lung")
    np.testing.assert_allclose(lo[:, 3, 3, 3], lo_c[:, lung], rtol=1e-5)
    np.testing.assert_allclose(hi[:, 3, 3, 3], hi_c[:, lung], rtol=1e-5)
    assert 0 < hi_c[0, lung] < 0.1 * hi_c[0, NAMES.index("fat")]


def test_real_anatomy_tissues_are_consistent_with_their_ct() -> None:
    """Fatty marrow, lung, liver and blood rendered from the table: the CT is consistent.

    With the classes of the procedural phantom alone (no marrow, lung or organ classes) the
    fatty vertebral body scores above 3: the test can fail.
    """
    shape, voxel = (64, 64, 32), 1.5
    grid = Geometry.from_parameters(shape, (voxel,) * 3, [-(n - 1) * voxel / 2 for n in shape])
    parts = [
        Box(tissue=T.SUBCUTANEOUS_FAT, center_lps_mm=(0, 0, 0), size_mm=(84, 84, 60)),
        Box(tissue=T.MUSCLE, center_lps_mm=(0, 0, 0), size_mm=(70, 70, 60)),
        Box(tissue=T.LUNG, center_lps_mm=(-20, -15, 0), size_mm=(22, 24, 60)),
        Box(tissue=T.LIVER, center_lps_mm=(20, -15, 0), size_mm=(22, 24, 60)),
        Box(tissue=T.MARROW_FF90, center_lps_mm=(0, 10, 0), size_mm=(24, 16, 60)),
        Cylinder(tissue=T.BLOOD, center_lps_mm=(0, -12, 0), radius_mm=6.0, length_mm=60.0),
    ]
    model = ShapesModel(parts, background=T.AIR)
    ct, mr = render_ct_and_mri(model, grid, FAST_3T, supersample=2, seed=7)
    score = consistency_map(mr, ct).score.array
    assert np.max(np.abs(score)) < 3.0
    procedural = tuple(
        TissueClass(
            c.name,
            c.tissue,
            c.hu_low,
            c.hu_high,
            tuple(
                t
                for t in c.members
                if t in {T.SOFT_TISSUE, T.SPINAL_CORD, T.DISC, T.LIGAMENT, T.DURA, T.EPIDURAL_FAT}
            ),
        )
        for c in DEFAULT_CLASSES
        if c.name not in {"lung", "marrow"}
    )
    old = consistency_map(mr, ct, settings=ConsistencySettings(classes=procedural)).score.array
    marrow = model.labels_on(grid) == T.MARROW_FF90
    assert np.max(np.abs(old[marrow])) > 3.0


def test_classes_round_trip_through_the_recorded_settings() -> None:
    settings = ConsistencySettings()
    again = ConsistencySettings.from_dict(settings.to_dict())
    assert again.classes == DEFAULT_CLASSES
