"""The tissue-class baseline on rendered phantoms: plausible HU per tissue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from synthct.geometry import Geometry, affine_from_parameters
from synthct.imaging.labels import Tissue
from synthct.imaging.tissues import TISSUES
from synthct.phantom.anatomy import SpineModel, SpineSpec
from synthct.phantom.model import Box, ShapesModel, sample_labels
from synthct.phantom.mri import render_ct_and_mri
from synthct.phantom.protocols import PAPER_1P5T, PAPER_3T
from synthct.synthesis.baseline import (
    BaselineParameters,
    BaselineSynthesizer,
    TissueClass,
    classify_tissues,
    cortical_fraction,
    opposed_and_in_phase,
)
from synthct.synthesis.errors import SynthesisInputError
from synthct.synthesis.synthesizer import load_synthesizer
from synthct.volume import MRProtocol, MultiEchoMR, SyntheticCT


def test_bulk_hu_per_tissue_is_plausible(render: Callable[..., Any]) -> None:
    ct, mr = render(5)
    labels = sample_labels(
        SpineModel(SpineSpec(first_level="T3", last_level="T7", seed=5)), ct.geometry
    )
    result = BaselineSynthesizer().synthesize(mr)
    assert isinstance(result.sct, SyntheticCT) and result.sct.geometry.is_close(mr.geometry)
    sct = result.sct.array

    def mean_hu(*tissues: Tissue) -> float:
        return float(sct[np.isin(labels, [int(t) for t in tissues])].mean())

    assert mean_hu(Tissue.SUBCUTANEOUS_FAT) < -50
    assert mean_hu(Tissue.CANCELLOUS_BONE) > 250
    assert mean_hu(Tissue.CORTICAL_BONE, Tissue.CANCELLOUS_BONE) > 150
    assert 0 < mean_hu(Tissue.MUSCLE, Tissue.SOFT_TISSUE) < 80
    assert mean_hu(Tissue.AIR) < -700
    classes, _ = classify_tissues(mr)
    fat = labels == Tissue.SUBCUTANEOUS_FAT
    assert np.mean(classes[fat] == TissueClass.FAT) > 0.85
    assert np.mean(classes[labels == Tissue.CANCELLOUS_BONE] == TissueClass.MARROW_BONE) > 0.9


def test_opposed_and_in_phase_echoes_follow_the_field_strength() -> None:
    affine = np.eye(4)
    data = np.ones((2, 2, 2, 2))
    for protocol in (PAPER_3T, PAPER_1P5T):
        mr = MultiEchoMR(data, affine, protocol=protocol.to_mr_protocol())
        assert opposed_and_in_phase(mr) == (0, 1)
    swapped = MultiEchoMR(data, affine, protocol=MRProtocol((2.30, 3.45), field_strength_t=3.0))
    assert opposed_and_in_phase(swapped) == (1, 0)  # 3.45 ms is opposed phase at 3 T
    assert opposed_and_in_phase(MultiEchoMR(data, affine)) == (0, 1)  # no protocol: paper order


def test_baseline_shares_the_interface_and_has_no_uncertainty(render: Callable[..., Any]) -> None:
    _, mr = render(5)
    baseline = load_synthesizer("baseline")
    assert isinstance(baseline, BaselineSynthesizer)
    with pytest.raises(SynthesisInputError, match="no uncertainty maps"):
        baseline.synthesize(mr, uncertainty=True)
    with pytest.raises(SynthesisInputError, match="at least 2 echo"):
        baseline.synthesize(MultiEchoMR(mr.array[:1], mr.affine))


def _box(tissue: Tissue, x0: float, x1: float, *, inner: bool = True) -> Box:
    y, z = ((5.5, 18.5), (4.5, 11.5)) if inner else ((2.5, 21.5), (2.5, 13.5))
    return Box(
        tissue=tissue,
        center_lps_mm=((x0 + x1) / 2, sum(y) / 2, sum(z) / 2),
        size_mm=(x1 - x0, y[1] - y[0], z[1] - z[0]),
    )


def _cortex_block(*, noisy: bool) -> tuple[Any, MultiEchoMR]:
    """A 1 mm grid along x: muscle | 2.7 mm cortex | marrow | muscle | fat, in air.

    Voxel i covers x in [i - 0.5, i + 0.5] mm: cortex fills voxels 15-16, 30% of voxel 14
    (with muscle) and 40% of voxel 17 (with marrow); fat fills half of voxel 32 (with muscle).
    """
    model = ShapesModel(
        [
            _box(Tissue.MUSCLE, 2.5, 37.5, inner=False),
            _box(Tissue.CANCELLOUS_BONE, 14.2, 30.5),
            _box(Tissue.CORTICAL_BONE, 14.2, 16.9),
            _box(Tissue.SUBCUTANEOUS_FAT, 32.0, 37.5),
        ]
    )
    geometry = Geometry((40, 24, 16), affine_from_parameters((1.0, 1.0, 1.0)))
    return render_ct_and_mri(
        model,
        geometry,
        PAPER_3T,
        supersample=10,
        noise_sd_hu=0.0,
        blur_fwhm_mm=0.0,
        texture=False,
        noise_sd=1e-3 if noisy else 0.0,
        bias_field_strength=0.1 if noisy else 0.0,
    )


def _table_hu(tissue: Tissue) -> float:
    return TISSUES[tissue].ct_hu


def test_partial_volume_cortex_gets_the_volume_average_hu() -> None:
    ct, mr = _cortex_block(noisy=False)
    p = BaselineParameters()
    assert p.cortical_bone_hu == _table_hu(Tissue.CORTICAL_BONE)  # pure cortex, 1850 HU
    sct = BaselineSynthesizer(p).synthesize(mr).sct.array[:, 12, 8]
    classes, _ = classify_tissues(mr)
    fraction, neighbour = cortical_fraction(mr, classes)
    cortex, soft = p.cortical_bone_hu, p.soft_tissue_hu
    marrow, fat = _table_hu(Tissue.CANCELLOUS_BONE), _table_hu(Tissue.SUBCUTANEOUS_FAT)
    # Pure tissue: exactly the table's HU, no cortical fraction.
    assert sct[8] == soft and sct[24] == marrow and sct[35] == fat
    assert fraction[[8, 24, 35], 12, 8].tolist() == [0.0, 0.0, 0.0]
    # Pure cortex (no MR signal at TE 1.15/2.30 ms): f = 1 next to its neighbour class.
    assert sct[15] == pytest.approx(cortex, abs=5) and sct[16] == pytest.approx(cortex, abs=5)
    assert neighbour[15, 12, 8] == TissueClass.SOFT_TISSUE
    # Partial volume: f = 1 - S_IP / S_n recovers the drawn fraction, HU the volume average.
    assert fraction[14, 12, 8] == pytest.approx(0.3, abs=0.01)
    assert fraction[17, 12, 8] == pytest.approx(0.4, abs=0.01)
    assert sct[14] == pytest.approx(0.3 * cortex + 0.7 * soft, abs=10)
    assert sct[17] == pytest.approx(0.4 * cortex + 0.6 * marrow, abs=10)
    assert classes[17, 12, 8] == TissueClass.MARROW_BONE  # water-fat ratio kept by the marrow
    # ... which is the rendered CT's value up to the muscle/soft-tissue difference (5 HU).
    ct_row = ct.array[:, 12, 8]
    assert np.all(np.abs(sct[14:18] - ct_row[14:18]) < 10)
    # Half fat, half muscle cancels like marrow but is a fat-water interface, not bone.
    assert classes[32, 12, 8] == TissueClass.FAT_WATER_INTERFACE
    assert sct[32] == pytest.approx((fat + soft) / 2) and abs(sct[32] - ct_row[32]) < 5


def test_partial_volume_cortex_with_bias_field_and_noise() -> None:
    _, mr = _cortex_block(noisy=True)
    p = BaselineParameters()
    sct = BaselineSynthesizer(p).synthesize(mr).sct.array[:, 12, 8]
    cortex, soft, marrow = p.cortical_bone_hu, p.soft_tissue_hu, p.marrow_bone_hu
    # The local reference follows the coil bias field; Rician noise costs a few percent of f.
    assert sct[8] == soft and sct[24] == marrow and sct[35] == p.fat_hu
    assert np.all(sct[15:17] > cortex - 60)
    assert sct[14] == pytest.approx(0.3 * cortex + 0.7 * soft, abs=70)
    assert sct[17] == pytest.approx(0.4 * cortex + 0.6 * marrow, abs=70)
