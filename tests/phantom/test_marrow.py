"""Marrow fat fraction from trabecular HU: the mixing model's known answers and its bins."""

from __future__ import annotations

import numpy as np
import pytest

from synthct.errors import SynthctError
from synthct.imaging.labels import MARROW_TISSUES, Tissue
from synthct.imaging.marrow import DEFAULT_MARROW, MarrowModel, marrow_labels, marrow_tissue
from synthct.imaging.tissues import TISSUES


def test_mixing_model_known_answers() -> None:
    m = MarrowModel(bv_tv=0.1, bone_hu=1850.0, red_marrow_hu=40.0, fat_hu=-100.0)
    # 0.1 * 1850 + 0.9 * 40 = 221 HU without fat; 0.1 * 1850 - 0.9 * 100 = 95 HU all fat.
    assert m.hu_of_fat_fraction(0.0) == pytest.approx(221.0)
    assert m.hu_of_fat_fraction(1.0) == pytest.approx(95.0)
    assert m.hu_per_fat_fraction == pytest.approx(-126.0)
    ff = np.linspace(0, 1, 11)
    np.testing.assert_allclose(m.fat_fraction_of_hu(m.hu_of_fat_fraction(ff)), ff, atol=1e-12)
    # Beyond the model's range the fraction is clipped, not extrapolated.
    np.testing.assert_array_equal(m.fat_fraction_of_hu([400.0, -50.0]), [0.0, 1.0])
    with pytest.raises(SynthctError, match="bv_tv"):
        MarrowModel(bv_tv=1.5)


def test_bins_and_their_tissues() -> None:
    values = [0.0, 0.19, 0.2, 0.45, 0.61, 0.99, 1.0]
    expected = [30, 30, 31, 32, 33, 34, 34]
    assert marrow_labels(values).tolist() == expected
    assert marrow_tissue(0.5) is Tissue.MARROW_FF50
    # Each bin's table entry has its centre's fat fraction and the model's HU for it.
    for tissue, centre in zip(MARROW_TISSUES, (0.1, 0.3, 0.5, 0.7, 0.9), strict=True):
        props = TISSUES[tissue]
        assert props.fat_fraction == pytest.approx(centre)
        assert props.ct_hu == pytest.approx(float(DEFAULT_MARROW.hu_of_fat_fraction(centre)), 0.1)
    hus = [TISSUES[t].ct_hu for t in MARROW_TISSUES]
    assert hus == sorted(hus, reverse=True)  # fattier marrow, lower HU
