"""Flow effects: first moment, dephasing, patches and the ventral weighting, by known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from synthct.geometry import Geometry
from synthct.imaging.labels import Tissue
from synthct.phantom.flow import (
    FLOWING_TISSUES,
    GAMMA_RAD_PER_S_T,
    FlowProperties,
    dephasing_attenuation,
    flow_attenuation,
    patch_strength,
    readout_first_moment,
    ventral_weight,
)
from synthct.phantom.model import PhantomParameterError


def test_first_moment_and_dephasing_of_a_bipolar_readout() -> None:
    # Lobes of -G and +G, each TE/2 long: m1 = G (TE/2)^2.
    assert readout_first_moment(2.0, 10e-3) == pytest.approx(10e-3 * 1e-3**2)
    v = np.array([0.0, 0.05, 1.0], dtype=np.float32)
    phase = GAMMA_RAD_PER_S_T * 10e-3 * (4e-3) ** 2 / 4 * v
    np.testing.assert_allclose(
        dephasing_attenuation(v, 4.0, gradient_t_per_m=10e-3), np.exp(-0.5 * phase**2), rtol=1e-5
    )
    # Arterial blood at 1 m/s at TE 4.6 ms is fully dephased; CSF at 5 cm/s keeps ~ 80 %.
    fast = dephasing_attenuation(np.float32(1.0), 4.61, gradient_t_per_m=10e-3)
    slow = dephasing_attenuation(np.float32(0.05), 4.61, gradient_t_per_m=10e-3)
    assert float(fast) < 0.01 and 0.7 < float(slow) < 0.85


def test_patch_strength_maps_the_field_to_patches() -> None:
    g = np.array([-1.0, 0.5, 1.0, 1.5, 3.0], dtype=np.float32)
    np.testing.assert_allclose(patch_strength(g), [0.0, 0.0, 0.5, 1.0, 1.0])


def test_ventral_weight_is_one_in_front_of_the_cord() -> None:
    # Axial grid, axis 1 along +P; a cord slab occupies P = 0..7 mm.
    grid = Geometry.from_parameters((3, 61, 3), (1.0, 1.0, 1.0), (0.0, -30.0, 0.0))
    cord = np.zeros(grid.shape, dtype=np.float32)
    cord[:, 30:38] = 1.0
    w = ventral_weight(cord, grid)
    assert w[1, 28, 1] == pytest.approx(1.0)  # 2 mm anterior (ventral) of the cord
    assert w[1, 0, 1] == pytest.approx(0.3, abs=0.01)  # far anterior: no cord gradient
    assert np.all(w[1, 34:, 1] == pytest.approx(0.3))  # dorsal half and dorsal CSF: floor
    assert np.all(ventral_weight(np.zeros(grid.shape), grid) == 1.0)  # no cord: uniform


def test_flow_attenuation_per_echo_and_tissue() -> None:
    grid = Geometry.from_parameters((4, 4, 4), (1.0, 1.0, 1.0))
    patches = np.full(grid.shape, 2.0, dtype=np.float32)  # full strength everywhere
    props = FlowProperties(1.0, 0.5, False, source="test")
    kept = flow_attenuation(
        grid,
        patches=patches,
        cord_fraction=np.zeros(grid.shape),
        echo_times_ms=(1.15, 2.3),
        flowing={Tissue.CSF: props},
    )[Tissue.CSF]
    for e, te in enumerate((1.15, 2.3)):
        phase = GAMMA_RAD_PER_S_T * 10e-3 * (te * 1e-3) ** 2 / 4 * 1.0
        assert kept[e, 0, 0, 0] == pytest.approx(0.5 * math.exp(-0.5 * phase**2), rel=1e-5)
    assert np.all(kept[1] < kept[0])  # the later echo dephases more
    assert set(FLOWING_TISSUES) == {Tissue.CSF, Tissue.BLOOD}
    # Arterial blood at its peak (~1 m/s) under the default readout: phase gamma G TE^2 / 4 v
    # is 0.885 rad at 1.15 ms and 3.54 rad at 2.3 ms, so it keeps exp(-phase^2 / 2).
    blood = flow_attenuation(
        grid, patches=patches, cord_fraction=np.zeros(grid.shape), echo_times_ms=(1.15, 2.3),
    )[Tissue.BLOOD]  # fmt: skip
    for e, te in enumerate((1.15, 2.3)):
        phase = GAMMA_RAD_PER_S_T * 10e-3 * (te * 1e-3) ** 2 / 4 * 1.0
        assert blood[e, 0, 0, 0] == pytest.approx(math.exp(-0.5 * phase**2), rel=1e-4)
    assert float(blood[1].max()) < 0.01  # a flow void at the in-phase echo
    with pytest.raises(PhantomParameterError, match="pulsation_loss"):
        FlowProperties(0.05, 1.5, True, source="bad")
