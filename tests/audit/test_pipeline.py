"""The audit of one sCT with its MRI: no flag on a correct sCT, the omitted lesion flagged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from audit.audit_cases import LESION_CENTRE_LPS_MM, ShapesCase, shapes_case
from synthct.audit.combine import AuditCalibration, SignalCalibration
from synthct.audit.errors import AuditInputError
from synthct.audit.inputs import sct_on_mri_grid
from synthct.audit.pipeline import run_audit
from synthct.audit.report import write_audit
from synthct.errors import GeometryMismatchError, WriteError
from synthct.geometry import Geometry
from synthct.resample import resample_to
from synthct.volume import MRProtocol, MultiEchoMR, SyntheticCT


@pytest.fixture(scope="module")
def case() -> ShapesCase:
    return shapes_case(lesion=True)


def test_correct_sct_gives_no_flag(case: ShapesCase) -> None:
    result = run_audit(case.mr, case.ct)
    assert result.n_flags == 0
    assert float(result.flag_score.array.max()) < 0.6
    assert result.region_labels.labels() == []
    assert set(result.info["timings_s"]) == {"align", "consistency", "combine"}


def test_omitted_calcified_lesion_is_flagged(case: ShapesCase) -> None:
    steps: list[tuple[str, int, int]] = []
    result = run_audit(case.mr, case.failure, progress=lambda *a: steps.append(a))
    assert steps[-1] == ("combine", 3, 3)
    assert result.n_flags == 1
    region = result.regions[0]
    distance = np.linalg.norm(np.asarray(region.centre_lps_mm) - LESION_CENTRE_LPS_MM)
    assert distance < 2.0  # mm
    assert region.signals_fired == ("consistency",)
    assert region.direction == "darker"
    assert 6.0 < max(region.size_mm) < 20.0  # a 9 mm calcification, flagged with its rim
    flagged = result.region_labels.array == 1
    assert np.count_nonzero(flagged & case.lesion) >= 0.9 * np.count_nonzero(case.lesion)
    report = result.to_dict()
    assert report["n_flagged_regions"] == 1
    assert report["regions"][0]["signals_fired"] == ["consistency"]
    json.dumps(report)  # JSON-ready


def test_sct_on_another_grid_of_the_same_frame(case: ShapesCase) -> None:
    g = case.mr.geometry
    fine = Geometry.from_parameters((70, 70, 35), (1.2, 1.2, 1.2), g.index_to_lps((0.5, 0.5, 0.5)))
    moved = resample_to(case.failure, fine)
    aligned = sct_on_mri_grid(moved, case.mr)
    assert aligned.resampled and not aligned.registered
    assert aligned.sct.geometry.is_close(g)
    assert not aligned.field_of_view[-1, -1, -1]  # outside the finer sCT's field of view
    result = run_audit(case.mr, moved)
    assert result.info["sct"]["resampled_to_mri_grid"]
    assert result.n_flags >= 1
    centre = np.asarray(result.regions[0].centre_lps_mm)
    assert np.linalg.norm(centre - LESION_CENTRE_LPS_MM) < 3.0


def test_sct_that_does_not_overlap_the_mri(case: ShapesCase) -> None:
    far = case.failure.affine.copy()
    far[:3, 3] += (400.0, 0.0, 0.0)
    elsewhere = SyntheticCT(case.failure.array, far)
    with pytest.raises(GeometryMismatchError) as info:
        run_audit(case.mr, elsewhere)
    text = str(info.value)
    assert "MRI:" in text and "sCT:" in text and "overlap by 0%" in text
    assert "--register" in text


def test_errors_before_any_work(case: ShapesCase) -> None:
    bare = MultiEchoMR(case.mr.array, case.mr.affine, protocol=MRProtocol((1.15, 2.3)))
    with pytest.raises(AuditInputError, match="--field-strength"):
        run_audit(bare, case.failure)
    with pytest.raises(AuditInputError, match="no signal"):
        run_audit(case.mr, case.failure, consistency=False)
    with pytest.raises(AuditInputError, match="multi-echo"):
        run_audit(case.ct, case.failure)  # type: ignore[arg-type]


def test_calibrated_thresholds_are_used(case: ShapesCase) -> None:
    strict = AuditCalibration({"consistency": SignalCalibration(0.0, 1.0, 100.0, "test")})
    assert run_audit(case.mr, case.failure, calibration=strict).n_flags == 0


def test_written_outputs(case: ShapesCase, tmp_path: Path) -> None:
    result = run_audit(case.mr, case.failure)
    out = tmp_path / "audit"
    paths = write_audit(result, case.mr, out)
    for name in ("flag_score", "flag_regions", "signal_consistency", "signal_consistency_z"):
        assert paths[name].is_file()
    assert (out / "figures" / "region-001.png").stat().st_size > 10_000
    report = json.loads((out / "audit.json").read_text())
    assert report["n_flagged_regions"] == 1
    assert report["files"]["figure_region_1"] == "figures/region-001.png"
    html = (out / "report.html").read_text()
    assert "1 region flagged" in html and "region-001.png" in html
    assert "No calibration on lesion-free data" in html
    from synthct.io import read_volume

    labels = read_volume(out / "flag_regions.nii.gz", kind="label")
    assert labels.geometry.is_close(case.mr.geometry)
    assert np.array_equal(labels.array, result.region_labels.array)
    # An existing folder is kept unless overwrite; no partial folder is left behind.
    with pytest.raises(WriteError):
        write_audit(result, case.mr, out)
    assert json.loads((out / "audit.json").read_text()) == report
    assert not list(tmp_path.glob(".partial-*"))


def test_registration_recovers_a_shifted_sct(case: ShapesCase) -> None:
    shifted = case.failure.affine.copy()
    shifted[:3, 3] += (4.0, -3.0, 2.0)  # a header 5.4 mm off: edges look inconsistent
    moved = SyntheticCT(case.failure.array, shifted)
    assert run_audit(case.mr, moved).n_flags > 1
    result = run_audit(case.mr, moved, register=True)
    assert result.info["sct"]["registered"]
    assert result.n_flags == 1
    centre = np.asarray(result.regions[0].centre_lps_mm)
    assert np.linalg.norm(centre - LESION_CENTRE_LPS_MM) < 2.0


def test_domain_warnings_of_the_sct_are_repeated_in_the_audit_report(
    case: ShapesCase, tmp_path: Path
) -> None:
    warning = "field strength 1.5 T (trained on 3 T)"
    sct = SyntheticCT(case.ct.array, case.ct.affine, provenance={"out_of_domain": [warning]})
    result = run_audit(case.mr, sct)
    paths = write_audit(result, case.mr, tmp_path / "audit", figures=False)
    assert json.loads(Path(paths["audit_json"]).read_text())["sct"]["out_of_domain"] == [warning]
    assert warning in Path(paths["report_html"]).read_text(encoding="utf-8")
    plain = run_audit(case.mr, case.ct)
    assert plain.info["sct"]["out_of_domain"] == []


def test_consistency_settings_recorded_with_the_calibration_are_used(case: ShapesCase) -> None:
    from synthct.audit.model import shipped_audit_model_path
    from synthct.audit.mri_consistency import ConsistencySettings

    custom = ConsistencySettings(score_sigma_mm=2.5, gain_degree=1)
    assert ConsistencySettings.from_dict(custom.to_dict()) == custom
    calibration = AuditCalibration(
        {"consistency": SignalCalibration(0.0, 1.0, 6.0, in_rule=True)},
        info={"consistency_settings": custom.to_dict()},
    )
    result = run_audit(case.mr, case.failure, calibration=calibration)
    assert result.info["consistency"]["settings"] == custom.to_dict()
    # settings given explicitly win
    explicit = run_audit(
        case.mr, case.failure, calibration=calibration, settings=ConsistencySettings()
    )
    assert explicit.info["consistency"]["settings"] == ConsistencySettings().to_dict()
    # the shipped audit model was calibrated with the defaults
    folder = shipped_audit_model_path()
    shipped = json.loads((folder / "calibration.json").read_text())
    assert ConsistencySettings.from_dict(shipped["info"]["consistency_settings"]) == (
        ConsistencySettings()
    )
    with pytest.raises(AuditInputError, match="unknown consistency settings"):
        ConsistencySettings.from_dict({"sigma": 1.0})
    bad = custom.to_dict()
    bad["classes"][0]["tissue"] = "NOT_A_TISSUE"
    with pytest.raises(AuditInputError, match="malformed tissue class"):
        ConsistencySettings.from_dict(bad)
