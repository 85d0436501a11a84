"""The calibrated domain: recorded, compared with the input, signals refused outside it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from audit.audit_cases import ShapesCase, shapes_case
from synthct.audit.combine import DEFAULT_CALIBRATION, AuditCalibration
from synthct.audit.domain import AuditDomain, realism_of, refused_signals
from synthct.audit.errors import AuditInputError
from synthct.audit.pipeline import run_audit
from synthct.audit.reference import ReferencePrediction
from synthct.audit.report import write_audit
from synthct.volume import MultiEchoMR, ScalarVolume


@pytest.fixture(scope="module")
def case() -> ShapesCase:
    """The shapes case with its MRI declaring classic realism, as cohort files do."""
    rendered = shapes_case(lesion=True)
    assert rendered.mr.protocol is not None
    extra = {**rendered.mr.protocol.extra, "mr_realism": "classic"}
    return dataclasses.replace(rendered, mr=_with(rendered.mr, extra=extra))


def _with(mr: MultiEchoMR, **changes: object) -> MultiEchoMR:
    """The same echoes with another protocol (a known departure)."""
    assert mr.protocol is not None
    return MultiEchoMR(mr.array, mr.affine, protocol=dataclasses.replace(mr.protocol, **changes))


def _calibration(domain: AuditDomain) -> AuditCalibration:
    return dataclasses.replace(DEFAULT_CALIBRATION, info={"domain": domain.to_dict()})


def _reference(case: ShapesCase) -> ReferencePrediction:
    """The CT as the reference (a lesion-aware model that renders the lesion exactly)."""
    sd = ScalarVolume(np.full(case.ct.shape, 20.0, dtype=np.float32), case.ct.affine)
    return ReferencePrediction(case.ct, sd, "CT as reference")


def test_domain_of_volumes_and_its_round_trip(case: ShapesCase) -> None:
    domain = AuditDomain.of_volumes([case.mr])
    assert domain.field_strength_t == (3.0,)
    assert domain.repetition_time_ms == (7.0, 7.0)
    assert domain.flip_angle_deg == (10.0, 10.0)
    assert domain.echo_times_ms == ((1.15, 2.3),)
    assert domain.voxel_size_mm == pytest.approx((1.5, 1.5))
    assert domain.mr_realism == ("classic",)
    assert AuditDomain.from_dict(domain.to_dict()) == domain
    assert domain.departures(case.mr) == {}
    with pytest.raises(AuditInputError, match="calibration domain"):
        AuditDomain.from_dict({"field_strength_t": [3.0]})


def test_departures_name_each_property(case: ShapesCase) -> None:
    domain = AuditDomain.of_volumes([case.mr])
    at_1p5t = _with(case.mr, field_strength_t=1.5, echo_times_ms=(2.3, 4.61))
    assert set(domain.departures(at_1p5t)) == {"field_strength_t", "echo_times_ms"}
    assert "1.5 T" in domain.departures(at_1p5t)["field_strength_t"]
    # a few percent off the protocol is the same protocol; 30 % is not
    assert domain.departures(_with(case.mr, repetition_time_ms=7.5)) == {}
    assert set(domain.departures(_with(case.mr, repetition_time_ms=10.0))) == {"repetition_time_ms"}
    assert set(domain.departures(_with(case.mr, flip_angle_deg=20.0))) == {"flip_angle_deg"}
    fine = MultiEchoMR(
        case.mr.array, case.mr.affine / 2 + np.diag([0, 0, 0, 0.5]), protocol=case.mr.protocol
    )
    assert fine.spacing_mm == pytest.approx((0.75, 0.75, 0.75))
    assert set(domain.departures(fine)) == {"voxel_size_mm"}
    realistic = _with(case.mr, extra={**case.mr.protocol.extra, "mr_realism": "realistic"})
    assert realism_of(realistic) == "realistic"
    assert set(domain.departures(realistic)) == {"mr_realism"}
    unknown = _with(case.mr, extra={})  # an input that does not say: not a departure
    assert domain.departures(unknown) == {}


def test_every_signal_is_refused_outside_the_domain() -> None:
    signals = ["consistency", "reference", "novelty"]
    field = {"field_strength_t": "field strength 1.5 T; calibrated at 3 T"}
    refused = refused_signals(signals, field)
    assert set(refused) == set(signals)
    assert "1.5 T" in refused["consistency"]
    assert refused_signals(signals, {}) == {}


def test_run_audit_refuses_outside_the_domain_and_says_so(case: ShapesCase, tmp_path: Path) -> None:
    domain = AuditDomain.of_volumes([case.mr])
    cal = _calibration(domain)
    reference = lambda _mr: _reference(case)  # noqa: E731
    inside = run_audit(case.mr, case.failure, reference=reference, calibration=cal)
    assert set(inside.signals) == {"consistency", "reference"}
    assert inside.n_flags >= 1  # the omitted lesion
    assert inside.info["domain"]["departures"] == {} and inside.info["domain"]["audited"]
    # another field strength: nothing is audited, nothing flagged, the outputs say why
    at_1p5t = _with(case.mr, field_strength_t=1.5)
    with pytest.warns(UserWarning, match="signals refused: consistency, reference"):
        result = run_audit(at_1p5t, case.failure, reference=reference, calibration=cal)
    assert result.signals == {} and result.n_flags == 0
    report = result.to_dict()["domain"]
    assert not report["audited"]
    assert set(report["refused_signals"]) == {"consistency", "reference"}
    assert report["departures"]["field_strength_t"].startswith("field strength 1.5 T")
    html = (write_audit(result, at_1p5t, tmp_path / "audit")["report_html"]).read_text()
    assert "Not audited" in html and "Signal reference refused" in html
    # without the check every signal is computed, as before
    unchecked = run_audit(
        at_1p5t, case.failure, reference=reference, calibration=cal, domain_check=False
    )
    assert set(unchecked.signals) == {"consistency", "reference"}
    assert unchecked.n_flags == inside.n_flags
    assert unchecked.info["domain"]["departures"]  # still reported


def test_a_calibration_without_a_domain_is_not_checked(case: ShapesCase) -> None:
    result = run_audit(_with(case.mr, field_strength_t=1.5), case.failure)
    assert result.info["domain"]["calibrated"] is None
    assert "consistency" in result.signals


def _at_spacing(mr: MultiEchoMR, spacing: tuple[float, float, float]) -> MultiEchoMR:
    """The same echoes on voxels of ``spacing`` mm (array axes)."""
    return MultiEchoMR(mr.array, np.diag([*spacing, 1.0]), protocol=mr.protocol)


def test_voxel_sizes_are_recorded_with_their_edges_sorted(case: ShapesCase) -> None:
    sagittal = _at_spacing(case.mr, (0.9, 0.74, 0.74))
    axial = _at_spacing(case.mr, (0.74, 0.74, 0.9))
    domain = AuditDomain.of_volumes([sagittal, axial, case.mr])
    assert domain.voxel_sizes_mm == ((0.74, 0.74, 0.9), (1.5, 1.5, 1.5))
    assert domain.voxel_size_mm == pytest.approx((0.74, 1.5))
    assert AuditDomain.from_dict(domain.to_dict()) == domain


def test_only_the_calibrated_voxel_sizes_hold(case: ShapesCase) -> None:
    domain = AuditDomain.of_volumes([_at_spacing(case.mr, (0.74, 0.74, 0.9))])
    for inside in ((0.74, 0.74, 0.9), (0.9, 0.74, 0.74), (0.745, 0.74, 0.9)):
        assert domain.departures(_at_spacing(case.mr, inside)) == {}, inside
    # within the old span (0.74-0.9 mm), but resampled by the models: 4 % and 8-11 % off
    for outside in ((0.77, 0.77, 0.87), (0.8, 0.8, 0.8)):
        found = domain.departures(_at_spacing(case.mr, outside))
        assert set(found) == {"voxel_size_mm"}, outside
        assert "calibrated at 0.74 x 0.74 x 0.90 mm (within 1%)" in found["voxel_size_mm"]
        assert "resample" in found["voxel_size_mm"]


def test_a_calibration_recording_only_the_span_keeps_the_older_rule(case: ShapesCase) -> None:
    recorded = AuditDomain.of_volumes([_at_spacing(case.mr, (0.74, 0.74, 0.9))]).to_dict()
    del recorded["voxel_sizes_mm"]  # a calibration.json written before session 20
    older = AuditDomain.from_dict(recorded)
    assert older.voxel_sizes_mm == ()
    assert older.departures(_at_spacing(case.mr, (0.8, 0.8, 0.8))) == {}
    assert set(older.departures(_at_spacing(case.mr, (0.5, 0.5, 0.5)))) == {"voxel_size_mm"}


def test_the_shipped_calibration_holds_at_the_paper_voxel_size_only(case: ShapesCase) -> None:
    from synthct.audit.model import SHIPPED_AUDIT_MODEL, load_audit_model

    calibration = load_audit_model(SHIPPED_AUDIT_MODEL).calibration
    assert calibration is not None
    domain = AuditDomain.from_dict(calibration.info["domain"])
    assert domain.voxel_sizes_mm == ((0.74, 0.74, 0.9),)
    assert domain.departures(_at_spacing(case.mr, (0.74, 0.74, 0.9))) == {}
    assert set(domain.departures(_at_spacing(case.mr, (0.8, 0.8, 0.8)))) == {"voxel_size_mm"}
