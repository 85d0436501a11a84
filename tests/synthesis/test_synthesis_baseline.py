"""The tissue-class baseline on rendered phantoms: plausible HU per tissue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from synthct.phantom.anatomy import SpineModel, SpineSpec
from synthct.phantom.labels import Tissue
from synthct.phantom.model import sample_labels
from synthct.phantom.protocols import PAPER_1P5T, PAPER_3T
from synthct.synthesis.baseline import (
    BaselineSynthesizer,
    TissueClass,
    classify_tissues,
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
