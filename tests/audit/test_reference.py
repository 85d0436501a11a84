"""Reference disagreement: known answers, the audit with a reference, real models, bad input."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from audit.audit_cases import LESION_CENTRE_LPS_MM, ShapesCase, shapes_case
from synthct.audit.combine import (
    DEFAULT_CALIBRATION,
    AuditCalibration,
    SignalCalibration,
)
from synthct.audit.errors import AuditInputError
from synthct.audit.pipeline import run_audit
from synthct.audit.reference import (
    ReferencePrediction,
    ReferenceSettings,
    calibrated_reference,
    calibrated_reference_settings,
    model_reference,
    precomputed_reference,
    reference_map,
    reference_prediction,
)
from synthct.audit.training import LesionFreeCase, fit_calibration
from synthct.errors import SynthctError
from synthct.geometry import Geometry
from synthct.io import write_volume
from synthct.synthesis.shipped import shipped_model_path
from synthct.volume import CTVolume, MultiEchoMR, ScalarVolume, SyntheticCT


@pytest.fixture(scope="module")
def case() -> ShapesCase:
    return shapes_case(lesion=True)


def _perfect(case: ShapesCase, sd_hu: float = 0.0) -> ReferencePrediction:
    """A reference that is the CT itself, with a constant SD."""
    sd = ScalarVolume(np.full(case.ct.shape, sd_hu, dtype=np.float32), case.ct.affine)
    return ReferencePrediction(case.ct, sd, "CT as reference")


def _block(shape: tuple[int, int, int], hu: float, inner: float) -> CTVolume:
    """A 1 mm grid of ``hu`` with a 12 mm cube of ``inner`` HU in the middle."""
    array = np.full(shape, hu, dtype=np.float32)
    c = [n // 2 for n in shape]
    array[c[0] - 6 : c[0] + 6, c[1] - 6 : c[1] + 6, c[2] - 6 : c[2] + 6] = inner
    return SyntheticCT(array, np.eye(4))


def test_shortfall_in_reference_sds() -> None:
    shape = (32, 32, 32)
    ref = _block(shape, 40.0, 540.0)
    audited = _block(shape, 40.0, 40.0)  # the dense block omitted
    body = np.ones(shape, dtype=bool)
    for sd_hu, expected in ((0.0, 500 / 50), (150.0, 500 / np.hypot(150, 50))):
        sd = ScalarVolume(np.full(shape, sd_hu, dtype=np.float32), np.eye(4))
        z = reference_map(ReferencePrediction(ref, sd, "ref"), audited, body).array
        # a 12 mm block smoothed by a 1 mm Gaussian keeps its centre value
        assert z[16, 16, 16] == pytest.approx(expected, rel=1e-4)
        assert abs(z[2, 2, 2]) < 1e-6  # agreement elsewhere
    # An sCT denser than the reference scores negative where it renders soft tissue...
    softer = _block(shape, 40.0, 140.0)
    zero_sd = ScalarVolume(np.zeros(shape, np.float32), np.eye(4))
    z = reference_map(
        ReferencePrediction(audited, zero_sd, "r"),
        softer,
        body,
        settings=ReferenceSettings(floor_hu=100.0),
    ).array
    assert z[16, 16, 16] == pytest.approx(-1.0, rel=1e-4)
    # ...and bone rendered less dense than the reference (300 vs 1000 HU) is an HU error, not
    # an omission: nothing counts at or above the 150 HU ceiling.
    dense_ref = _block(shape, 40.0, 1000.0)
    weak_bone = _block(shape, 40.0, 300.0)
    z = reference_map(ReferencePrediction(dense_ref, zero_sd, "r"), weak_bone, body).array
    assert float(np.abs(z).max()) == 0.0


def test_only_density_above_soft_tissue_counts() -> None:
    """Fat rendered lighter than the reference's fat is no omission of dense tissue."""
    shape = (32, 32, 32)
    zero_sd = ScalarVolume(np.zeros(shape, np.float32), np.eye(4))
    body = np.ones(shape, dtype=bool)
    fat_ref, fat_sct = _block(shape, 40.0, -100.0), _block(shape, 40.0, -300.0)
    z = reference_map(ReferencePrediction(fat_ref, zero_sd, "r"), fat_sct, body).array
    assert float(np.abs(z).max()) == 0.0
    # A calcification rendered as fat counts from the soft-tissue level up: (540 - 40) / 50.
    z = reference_map(
        ReferencePrediction(_block(shape, 40.0, 540.0), zero_sd, "r"), fat_sct, body
    ).array
    assert z[16, 16, 16] == pytest.approx(10.0, rel=1e-4)
    # The settings of calibrations written before soft_tissue_hu existed: plain difference.
    legacy = ReferenceSettings.from_dict({})
    z = reference_map(
        ReferencePrediction(fat_ref, zero_sd, "r"), fat_sct, body, settings=legacy
    ).array
    assert z[16, 16, 16] == pytest.approx(200 / 50, rel=1e-4)


def test_bone_and_edge_margins() -> None:
    """Nothing counts within bone_margin_mm of the sCT's bone or edge_margin_mm of the edge."""
    shape = (40, 40, 40)
    zero_sd = ScalarVolume(np.zeros(shape, np.float32), np.eye(4))
    body = np.ones(shape, dtype=bool)
    ref = np.full(shape, 540.0, dtype=np.float32)  # dense everywhere...
    audited = np.full(shape, 40.0, dtype=np.float32)  # ...rendered as soft tissue
    audited[:, :, 20:] = 1000.0  # bone slab: k >= 20
    no_smoothing = ReferenceSettings(smoothing_mm=0.0)
    z = reference_map(
        ReferencePrediction(SyntheticCT(ref, np.eye(4)), zero_sd, "r"),
        SyntheticCT(audited, np.eye(4)),
        body,
        settings=no_smoothing,
    ).array
    centre = z[20, 20, :]
    # bone margin 1 mm on a 1 mm grid: k = 19 is 1 mm from the slab, k = 18 is 2 mm
    assert centre[19] == 0.0 and centre[18] == pytest.approx(10.0)
    assert np.all(centre[20:] == 0.0)  # the bone itself is above the ceiling
    # edge margin 3 mm: index 2 is 3 mm from outside the grid, index 3 is 4 mm
    assert z[2, 20, 10] == 0.0 and z[3, 20, 10] == pytest.approx(10.0)
    assert z[20, 37, 10] == 0.0 and z[20, 36, 10] == pytest.approx(10.0)
    # a smaller field of view has its own edge
    fov = np.zeros(shape, dtype=bool)
    fov[:, :30, :] = True
    z = reference_map(
        ReferencePrediction(SyntheticCT(ref, np.eye(4)), zero_sd, "r"),
        SyntheticCT(audited, np.eye(4)),
        body,
        settings=no_smoothing,
        field_of_view=fov,
    ).array
    assert z[20, 27, 10] == 0.0 and z[20, 26, 10] == pytest.approx(10.0)
    # margins off: every soft voxel counts
    z = reference_map(
        ReferencePrediction(SyntheticCT(ref, np.eye(4)), zero_sd, "r"),
        SyntheticCT(audited, np.eye(4)),
        body,
        settings=ReferenceSettings(smoothing_mm=0.0, bone_margin_mm=0.0, edge_margin_mm=0.0),
    ).array
    assert np.all(z[:, :, :20] == pytest.approx(10.0))


def test_reference_settings_round_trip_and_bad_values() -> None:
    settings = ReferenceSettings(omission_ceiling_hu=130.0, min_shortfall_hu=75.0)
    assert ReferenceSettings.from_dict(settings.to_dict()) == settings
    assert settings.min_threshold == pytest.approx(75.0 / 50.0)
    with pytest.raises(AuditInputError, match="unknown reference settings"):
        ReferenceSettings.from_dict({"floor": 50.0})
    with pytest.raises(AuditInputError, match="must be numbers"):
        ReferenceSettings.from_dict({"floor_hu": "fifty"})
    with pytest.raises(AuditInputError, match="floor_hu"):
        ReferenceSettings(floor_hu=0.0)
    with pytest.raises(AuditInputError, match="edge_margin_mm"):
        ReferenceSettings(edge_margin_mm=float("nan"))


def test_identical_sct_scores_zero_and_is_reported(case: ShapesCase) -> None:
    result = run_audit(case.mr, case.ct, reference=lambda _mr: _perfect(case))
    assert float(np.abs(result.signals["reference"].array).max()) == 0.0
    assert result.n_flags == 0
    assert result.info["reference"]["same_as_audited_sct"] is True
    assert result.info["reference"]["model"] == "CT as reference"


def test_omitted_lesion_is_flagged_by_the_reference_alone(case: ShapesCase) -> None:
    result = run_audit(
        case.mr, case.failure, reference=lambda _mr: _perfect(case), consistency=False
    )
    assert result.n_flags == 1
    region = result.regions[0]
    assert region.signals_fired == ("reference",)
    distance = np.linalg.norm(np.asarray(region.centre_lps_mm) - LESION_CENTRE_LPS_MM)
    assert distance < 2.0  # mm
    flagged = result.region_labels.array == 1
    assert np.count_nonzero(flagged & case.lesion) >= 0.9 * np.count_nonzero(case.lesion)
    # 1400 HU calcification vs CSF: about (1400 - 0) / 50 reference SDs at the centre
    assert float(result.signals["reference"].array.max()) > 10.0
    assert result.info["reference"]["same_as_audited_sct"] is False


def test_precomputed_reference_on_another_grid(case: ShapesCase, tmp_path: Path) -> None:
    g = case.mr.geometry
    fine = Geometry.from_parameters((70, 70, 35), (1.2, 1.2, 1.2), g.index_to_lps((0.5, 0.5, 0.5)))
    from synthct.resample import resample_to

    sct_path = write_volume(resample_to(case.ct, fine), tmp_path / "ref.nii.gz")
    sd = ScalarVolume(np.full(fine.shape, 20.0, dtype=np.float32), fine.affine)
    sd_path = write_volume(sd, tmp_path / "ref_sd.nii.gz")
    prediction = reference_prediction(precomputed_reference(sct_path, sd_path), case.mr)
    assert prediction.sct.same_geometry(case.mr) and prediction.sd.same_geometry(case.mr)
    result = run_audit(case.mr, case.failure, reference=precomputed_reference(sct_path, sd_path))
    assert any("reference" in r.signals_fired for r in result.regions)


def test_bad_reference_maps_are_clear_errors(case: ShapesCase, tmp_path: Path) -> None:
    good = _perfect(case, 10.0)
    import nibabel as nib

    sd_path = write_volume(good.sd, tmp_path / "sd.nii.gz")
    data = np.asarray(nib.load(sd_path).dataobj, dtype=np.float32)
    data[1, 1, 1] = np.nan
    nib.save(nib.Nifti1Image(data, nib.load(sd_path).affine), tmp_path / "nan_sd.nii.gz")
    sct_path = write_volume(good.sct, tmp_path / "ref.nii.gz")
    with pytest.raises(SynthctError, match="NaN") as info:
        run_audit(
            case.mr,
            case.failure,
            reference=precomputed_reference(sct_path, tmp_path / "nan_sd.nii.gz"),
        )
    assert "nan_sd.nii.gz" in str(info.value)
    negative = ReferencePrediction(good.sct, ScalarVolume(-good.sd.array, good.sd.affine), "neg")
    with pytest.raises(AuditInputError, match="negative"):
        reference_prediction(lambda _mr: negative, case.mr)
    far_affine = case.ct.affine.copy()
    far_affine[:3, 3] += 1000.0
    far = ReferencePrediction(CTVolume(case.ct.array, far_affine), good.sd, "far ref")
    with pytest.raises(AuditInputError, match="overlap"):
        reference_prediction(lambda _mr: far, case.mr)
    with pytest.raises(AuditInputError, match="MC-dropout"):
        model_reference("lesion_aware", mc_passes=1)


def test_calibration_records_and_selects_the_reference(case: ShapesCase) -> None:
    clean = shapes_case(lesion=False, seed=11)
    cases = [
        LesionFreeCase(clean.mr, clean.ct, "a"),
        LesionFreeCase(shapes_case(lesion=False, seed=12).mr, clean.ct, "b"),
    ]
    cal = fit_calibration(
        cases[:1],
        cases[1:],
        reference=lambda _mr: _perfect(clean, 30.0),
        rule=("consistency", "reference"),
    )
    ref = cal.signals["reference"]
    assert (ref.centre, ref.scale) == (0.0, 1.0)  # standardised by construction
    assert ref.in_rule and ref.threshold > 0
    # A reference that agrees with the sCT everywhere would set a threshold of ~0: the
    # calibration keeps the smallest shortfall worth a flag (50 HU / 50 HU floor) and says so.
    assert ref.threshold == pytest.approx(ReferenceSettings().min_threshold)
    assert "raised to the smallest shortfall flagged (50 HU" in ref.source
    # The settings are recorded, and the audit uses them with the thresholds.
    assert cal.info["reference_settings"] == ReferenceSettings().to_dict()
    custom = ReferenceSettings(min_shortfall_hu=100.0, edge_margin_mm=0.0)
    cal_custom = fit_calibration(
        cases[:1],
        cases[1:],
        reference=lambda _mr: _perfect(clean, 30.0),
        rule=("consistency", "reference"),
        reference_settings=custom,
    )
    assert cal_custom.signals["reference"].threshold == pytest.approx(2.0)
    assert calibrated_reference_settings(cal_custom) == custom
    audited = run_audit(
        clean.mr, clean.ct, reference=lambda _mr: _perfect(clean), calibration=cal_custom
    )
    assert audited.info["reference"]["settings"] == custom.to_dict()
    # A calibration written before the settings were recorded holds for the settings then.
    assert calibrated_reference_settings(
        AuditCalibration(
            {"reference": SignalCalibration(0.0, 1.0, 2.6)}, info={"reference_model": "x"}
        )
    ) == ReferenceSettings.from_dict({})
    assert calibrated_reference_settings(DEFAULT_CALIBRATION) == ReferenceSettings()
    # Which reference `synthct audit` uses.
    assert calibrated_reference(DEFAULT_CALIBRATION) == (None, None)
    recorded = AuditCalibration(
        {"reference": SignalCalibration(0.0, 1.0, 5.0)}, info={"reference_model": "lesion_aware"}
    )
    source, name = calibrated_reference(recorded)
    assert name == "lesion_aware" and source is not None
    assert calibrated_reference(recorded, enabled=False) == (None, None)


@pytest.mark.filterwarnings("ignore::synthct.synthesis.errors.OutOfDomainWarning")
def test_shipped_lesion_aware_model_as_reference(case: ShapesCase) -> None:
    import json

    prediction = reference_prediction(model_reference("lesion_aware", mc_passes=2), case.mr)
    assert prediction.sct.same_geometry(case.mr)
    assert np.all(np.isfinite(prediction.sd.array)) and float(prediction.sd.array.min()) >= 0
    assert float(prediction.sd.array.max()) > 0  # dropout varies
    card = json.loads((shipped_model_path("lesion_aware") / "model_card.json").read_text())
    assert prediction.weights_sha256 == card["weights_sha256"]
    # 1.5 mm voxels: the model runs at its planned spacing, so the voxel size is no mismatch
    assert not any("voxel size" in w for w in prediction.out_of_domain)
    # another field strength is outside its training domain, and the prediction says so
    protocol = dataclasses.replace(case.mr.protocol, field_strength_t=1.5)
    other = MultiEchoMR(case.mr.array, case.mr.affine, protocol=protocol)
    elsewhere = reference_prediction(model_reference("lesion_aware", mc_passes=2), other)
    assert any("field strength 1.5 T" in w for w in elsewhere.out_of_domain)


def test_shipped_audit_model_holds_for_the_default_settings() -> None:
    """Changing ReferenceSettings' defaults needs scripts/train_audit_model.sh."""
    from synthct.audit.combine import load_calibration
    from synthct.audit.model import shipped_audit_model_path

    folder = shipped_audit_model_path()
    calibration = load_calibration(folder)
    assert calibration.info["reference_model"] == "lesion_aware"
    assert calibrated_reference_settings(calibration) == ReferenceSettings()
    reference = calibration.signals["reference"]
    assert reference.in_rule and reference.threshold >= ReferenceSettings().min_threshold


@pytest.mark.parametrize("distance_mm", [1.0, 2.0, 3.0])
def test_margins_equal_the_euclidean_distance(distance_mm: float) -> None:
    """The dilation and slicing shortcuts give exactly ``distance_transform_edt > d``."""
    from scipy import ndimage

    from synthct.audit.reference import _away_from_edge, _farther_than

    rng = np.random.default_rng(3)
    spacing = (0.8, 1.0, 0.6)
    inside = ndimage.binary_opening(rng.random((30, 28, 26)) > 0.3)
    expected = ndimage.distance_transform_edt(inside, sampling=spacing) > distance_mm
    np.testing.assert_array_equal(_farther_than(inside, distance_mm, spacing), expected)
    for fov in (np.ones(inside.shape, dtype=bool), inside):
        padded = np.pad(fov, 1, constant_values=False)
        depth = ndimage.distance_transform_edt(padded, sampling=spacing)[1:-1, 1:-1, 1:-1]
        np.testing.assert_array_equal(
            _away_from_edge(fov, distance_mm, spacing), depth > distance_mm
        )
