"""The MRI consistency signal: known answers on a shapes phantom and on its building blocks."""

from __future__ import annotations

import numpy as np
import pytest

from audit.audit_cases import LESION_CENTRE_LPS_MM, ShapesCase, shapes_case
from synthct.audit.errors import AuditInputError
from synthct.audit.inputs import signal_protocol, with_protocol
from synthct.audit.mri_consistency import (
    consistency_map,
    fit_log_gain,
    relative_model_error,
)
from synthct.audit.tissue_classes import (
    DEFAULT_CLASSES,
    class_intervals,
    class_signals,
    predicted_envelope,
)
from synthct.errors import GeometryMismatchError, SynthctError
from synthct.imaging.labels import Tissue
from synthct.imaging.signal_equation import spgr_signal
from synthct.imaging.tissues import TISSUES
from synthct.phantom.protocols import FAST_3T
from synthct.volume import MRProtocol, MultiEchoMR, SyntheticCT


@pytest.fixture(scope="module")
def case() -> ShapesCase:
    return shapes_case(lesion=True)


def test_class_signals_are_the_signal_equation_of_the_table() -> None:
    protocol = FAST_3T.to_mr_protocol()
    signals = class_signals(protocol)
    csf = TISSUES[Tissue.CSF]
    relax = csf.relaxation(3.0)
    expected = spgr_signal(
        proton_density=csf.proton_density,
        fat_fraction=csf.fat_fraction,
        t1_ms=relax.t1_ms,
        t2star_water_ms=relax.t2star_water_ms,
        t2star_fat_ms=relax.t2star_fat_ms,
        t1_fat_ms=relax.t1_fat_ms,
        echo_times_ms=protocol.echo_times_ms,
        repetition_time_ms=7.0,
        flip_angle_deg=10.0,
        field_strength_t=3.0,
    )
    fluid = [c.name for c in DEFAULT_CLASSES].index("fluid")
    np.testing.assert_allclose(signals[:, fluid], expected, rtol=1e-12)
    assert signals.shape == (2, len(DEFAULT_CLASSES))
    # Air has no signal; CSF (long T1) is darker than muscle on this T1-weighted sequence.
    assert np.all(np.abs(signals[:, 0]) == 0)
    muscle = [c.name for c in DEFAULT_CLASSES].index("soft_tissue")
    assert np.all(np.abs(signals[:, fluid]) < np.abs(signals[:, muscle]))


def test_envelope_of_a_pure_class_is_its_signal() -> None:
    protocol = FAST_3T.to_mr_protocol()
    hu = np.full((9, 9, 9), 8.0, dtype=np.float32)  # CSF everywhere, no HU variation
    lo, hi = predicted_envelope(hu, hu, protocol, (1.0, 1.0, 1.0))
    fluid = [c.name for c in DEFAULT_CLASSES].index("fluid")
    expected = np.abs(class_signals(protocol)[:, fluid])
    for e in range(2):
        np.testing.assert_allclose(lo[e], expected[e], rtol=1e-5)
        np.testing.assert_allclose(hi[e], expected[e], rtol=1e-5)


def test_envelope_of_a_two_class_edge_spans_the_mixtures() -> None:
    protocol = FAST_3T.to_mr_protocol()
    hu = np.full((9, 9, 9), 8.0, dtype=np.float32)
    hu[5:] = 45.0  # CSF next to muscle: the voxels at the edge may hold either or a mixture
    lo, hi = predicted_envelope(hu, hu, protocol, (1.0, 1.0, 1.0))
    s = np.abs(class_signals(protocol))
    s[:, [c.name for c in DEFAULT_CLASSES].index("soft_tissue")] = class_intervals(protocol)[1][
        :, [c.name for c in DEFAULT_CLASSES].index("soft_tissue")
    ]
    fluid, soft = ([c.name for c in DEFAULT_CLASSES].index(n) for n in ("fluid", "soft_tissue"))
    # The last CSF voxel may hold some muscle, the first muscle voxel some CSF (the HU
    # tolerance is the local HU spread): brighter than CSF, darker than muscle.
    assert lo[1][4, 4, 4] == pytest.approx(s[1, fluid], rel=1e-5)
    assert s[1, fluid] * 1.2 < hi[1][4, 4, 4] < s[1, soft]
    assert s[1, fluid] < lo[1][5, 4, 4] < s[1, soft] * 0.9
    assert hi[1][5, 4, 4] == pytest.approx(s[1, soft], rel=1e-5)
    # Far from the edge the envelope is the pure class.
    np.testing.assert_allclose(hi[1][0], s[1, fluid], rtol=1e-5)


def test_log_gain_recovers_a_smooth_field() -> None:
    shape = (20, 24, 16)
    u = [np.linspace(-1, 1, n) for n in shape]
    true = 0.2 * u[0][:, None, None] - 0.1 * u[1][None, :, None] ** 2 + 0.05
    log_ratio = np.broadcast_to(true, shape).astype(np.float32).copy()
    log_ratio[5, 5, 5] = 3.0  # an outlier (a lesion) is trimmed
    mask = np.ones(shape, dtype=bool)
    other = (log_ratio + 0.3).astype(np.float32)  # a second echo with another receiver scale
    gains = fit_log_gain([log_ratio, other], [mask, mask], degree=2)
    expected = np.broadcast_to(true, shape)[6:, 6:, 6:]
    np.testing.assert_allclose(np.log(gains[0][6:, 6:, 6:]), expected, atol=1e-4)
    np.testing.assert_allclose(np.log(gains[1][6:, 6:, 6:]), expected + 0.3, atol=1e-4)


def test_relative_model_error_known_answer() -> None:
    rng = np.random.default_rng(2)
    expected = rng.uniform(0.02, 0.08, 200_000)
    noise_sd, kappa = 0.001, 0.05
    residual = rng.standard_normal(expected.size) * np.sqrt(noise_sd**2 + (kappa * expected) ** 2)
    assert relative_model_error(residual, expected, noise_sd, minimum=0.01) == pytest.approx(
        kappa, rel=0.03
    )
    # Noise alone: the minimum.
    pure = rng.standard_normal(expected.size) * noise_sd
    assert relative_model_error(pure, expected, noise_sd, minimum=0.01) == pytest.approx(
        0.01, abs=0.006
    )


def test_correct_sct_is_consistent_within_noise(case: ShapesCase) -> None:
    result = consistency_map(case.mr, case.ct)
    assert result.noise_sd == pytest.approx(1e-3, rel=0.1)  # the renderer's noise
    assert np.max(np.abs(result.score.array)) < 3.0
    for z in result.echo_z:
        inside = z.array[result.score.array != 0]
        assert np.mean(np.abs(inside) > 3) < 1e-3


def test_calcified_lesion_rendered_as_csf_is_strongly_negative(case: ShapesCase) -> None:
    result = consistency_map(case.mr, case.failure)
    score = result.score.array
    assert np.mean(score[case.lesion]) < -6.0  # MRI much darker than the CSF the sCT says
    assert np.min(score[case.lesion]) < -10.0
    centre = case.mr.geometry.lps_to_index(LESION_CENTRE_LPS_MM).round().astype(int)
    assert score[tuple(centre)] < -6.0
    # Far from the lesion the failure sCT equals the CT: consistent.
    far = np.ones(score.shape, dtype=bool)
    far[tuple(slice(max(c - 8, 0), c + 9) for c in centre)] = False
    assert np.max(np.abs(score[far])) < 3.0


def test_missing_protocol_names_the_options(case: ShapesCase) -> None:
    bare = MultiEchoMR(case.mr.array, case.mr.affine, protocol=MRProtocol((1.15, 2.3)))
    with pytest.raises(AuditInputError) as info:
        consistency_map(bare, case.ct)
    text = str(info.value)
    for option in ("--tr", "--flip-angle", "--field-strength"):
        assert option in text
    assert "--echo-times" not in text.split("Fix:")[1]
    none = MultiEchoMR(case.mr.array, case.mr.affine)
    with pytest.raises(AuditInputError, match="--echo-times"):
        signal_protocol(none)
    filled = with_protocol(
        none,
        echo_times_ms=(1.15, 2.3),
        repetition_time_ms=7,
        flip_angle_deg=10,
        field_strength_t=3,
    )
    assert signal_protocol(filled).echo_times_ms == (1.15, 2.3)


def test_implausible_protocol_is_refused(case: ShapesCase) -> None:
    with pytest.raises(SynthctError, match="TR"):
        with_protocol(case.mr, echo_times_ms=(1.15, 9.0))  # TE > TR
    with pytest.raises(AuditInputError, match="outside the tissue table"):
        signal_protocol(with_protocol(case.mr, field_strength_t=7.0))
    with pytest.raises(AuditInputError, match="flip angle"):
        signal_protocol(with_protocol(case.mr, flip_angle_deg=120.0))


def test_sct_on_another_grid_is_refused_here(case: ShapesCase) -> None:
    half = SyntheticCT(case.ct.array[::2, ::2, ::2], case.ct.affine @ np.diag([2, 2, 2, 1]))
    with pytest.raises(GeometryMismatchError):
        consistency_map(case.mr, half)
