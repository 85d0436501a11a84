"""The learned consistency signal: training, the omitted lesion, the model files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from synthct.audit.errors import AuditModelError
from synthct.audit.learned_consistency import (
    HU_KNOTS,
    LEARNED_CONFIG_FILE,
    LEARNED_WEIGHTS_FILE,
    N_FEATURES,
    LearnedConsistencyModel,
    LearnedConsistencySettings,
    context_features,
    fit_learned_consistency,
    has_learned_consistency,
    hu_encoding,
    learned_consistency_map,
    load_learned_consistency,
    normalised_echoes,
)
from synthct.audit.pipeline import run_audit
from synthct.geometry import Geometry
from synthct.imaging.labels import Tissue
from synthct.phantom.model import Box, Cylinder, ShapesModel, Sphere
from synthct.phantom.mri import render_ct_and_mri
from synthct.phantom.protocols import FAST_3T
from synthct.volume import CTVolume, MultiEchoMR

VOXEL_MM = 1.5
SHAPE = (48, 48, 24)
LESION_CENTRE_LPS_MM = (-16.0, 0.0, 0.0)  # in the muscle, left of the "vertebra"


def _grid() -> Geometry:
    origin = [-(n - 1) * VOXEL_MM / 2.0 for n in SHAPE]
    return Geometry.from_parameters(SHAPE, (VOXEL_MM,) * 3, origin)


def _model(lesion: bool) -> ShapesModel:
    parts = [
        Box(tissue=Tissue.SUBCUTANEOUS_FAT, center_lps_mm=(0, 0, 0), size_mm=(66, 66, 60)),
        Box(tissue=Tissue.MUSCLE, center_lps_mm=(0, 0, 0), size_mm=(54, 54, 60)),
        Box(tissue=Tissue.CANCELLOUS_BONE, center_lps_mm=(6, -6, 0), size_mm=(14, 12, 60)),
        Cylinder(tissue=Tissue.CSF, center_lps_mm=(6, 14, 0), radius_mm=6.0, length_mm=60.0),
    ]
    if lesion:
        parts.append(
            Sphere(tissue=Tissue.CALCIFICATION, center_lps_mm=LESION_CENTRE_LPS_MM, radius_mm=4.5)
        )
    return ShapesModel(parts, background=Tissue.AIR)


def _render(lesion: bool, seed: int) -> tuple[CTVolume, MultiEchoMR]:
    return render_ct_and_mri(_model(lesion), _grid(), FAST_3T, supersample=1, seed=seed)


SETTINGS = LearnedConsistencySettings(
    hidden=32, samples_per_volume=20_000, batch_size=2048, steps=300, gain_degree=1
)


@pytest.fixture(scope="module")
def model() -> LearnedConsistencyModel:
    pairs = [_render(False, seed) for seed in (3, 4)]
    return fit_learned_consistency(
        [(mr, ct) for ct, mr in pairs], settings=SETTINGS, sct_source="CT"
    )


def test_training_lowers_the_loss(model: LearnedConsistencyModel) -> None:
    assert model.info["final_loss"] < model.info["first_loss"] - 0.5
    assert model.info["sct_source"] == "CT"
    assert model.n_echoes == 2


def test_lesion_in_the_mri_only_scores_at_the_lesion(model: LearnedConsistencyModel) -> None:
    _, mr = _render(True, seed=7)
    sct, _ = _render(False, seed=7)  # the sCT omits the calcification
    result = learned_consistency_map(model, mr, sct)
    score = result.score.array
    lesion = _model(True).labels_on(mr.geometry) == Tissue.CALCIFICATION
    away = ~ndimage.binary_dilation(lesion, iterations=3) & (score != 0)
    assert float(np.median(score[lesion])) < -4.0  # darker than the sCT's muscle allows
    assert float(np.median(np.abs(score[away]))) < 1.5
    assert float(np.percentile(np.abs(score[away]), 99)) < 0.5 * abs(float(score[lesion].min()))
    assert len(result.echo_z) == 2 and len(result.predicted) == 2


def test_the_pipeline_computes_and_reports_the_signal(model: LearnedConsistencyModel) -> None:
    ct, mr = _render(False, seed=8)
    result = run_audit(mr, ct, learned=model, consistency=False)
    assert list(result.signals) == ["learned_consistency"]
    assert "learned_consistency" in result.info["timings_s"]
    report = result.to_dict()
    assert "learned_consistency" in report["signal_descriptions"]
    json.dumps(report)


def test_features_do_not_depend_on_the_mask() -> None:
    ct, _ = _render(False, seed=9)
    everywhere = np.ones(ct.spatial_shape, dtype=bool)
    some = np.zeros(ct.spatial_shape, dtype=bool)
    some[10:20, 5:40:3, 12] = True
    full = context_features(ct.array, ct.spacing_mm, everywhere)
    part = context_features(ct.array, ct.spacing_mm, some)
    assert full.shape == (everywhere.sum(), N_FEATURES)
    np.testing.assert_array_equal(part, full[some[everywhere]])


def test_hu_encoding_sums_to_one_and_reproduces_hu() -> None:
    hu = np.array([-2000.0, -1000.0, -77.0, 0.0, 12.5, 45.0, 1600.0, 3000.0])
    code = hu_encoding(hu)
    np.testing.assert_allclose(code.sum(axis=0), 1.0, atol=1e-6)
    back = (code * np.asarray(HU_KNOTS)[:, None]).sum(axis=0)
    np.testing.assert_allclose(back, np.clip(hu, HU_KNOTS[0], HU_KNOTS[-1]), atol=1e-3)


def test_save_and_load_give_identical_maps(model: LearnedConsistencyModel, tmp_path: Path) -> None:
    _, mr = _render(True, seed=7)
    sct, _ = _render(False, seed=7)
    model.save(tmp_path)
    assert has_learned_consistency(tmp_path)
    loaded = load_learned_consistency(tmp_path)
    assert loaded.settings == model.settings
    assert loaded.info["sct_source"] == "CT"
    a = learned_consistency_map(model, mr, sct).score.array
    b = learned_consistency_map(loaded, mr, sct).score.array
    np.testing.assert_array_equal(a, b)


def test_corrupt_or_missing_files_are_clear_errors(
    model: LearnedConsistencyModel, tmp_path: Path
) -> None:
    with pytest.raises(AuditModelError, match="no learned consistency model"):
        load_learned_consistency(tmp_path)
    model.save(tmp_path)
    weights = tmp_path / LEARNED_WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(AuditModelError, match=r"SHA-256.*corrupt"):
        load_learned_consistency(tmp_path)
    config = tmp_path / LEARNED_CONFIG_FILE
    config.write_text("{not json", encoding="utf-8")
    with pytest.raises(AuditModelError, match="not a learned consistency model"):
        load_learned_consistency(tmp_path)


def test_weights_of_another_network_are_refused(
    model: LearnedConsistencyModel, tmp_path: Path
) -> None:
    model.save(tmp_path)
    config = tmp_path / LEARNED_CONFIG_FILE
    data = json.loads(config.read_text(encoding="utf-8"))
    data["settings"]["hidden"] = 16
    config.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(AuditModelError, match="do not fit"):
        load_learned_consistency(tmp_path)


def test_echo_count_mismatch_is_refused(model: LearnedConsistencyModel) -> None:
    ct, mr = _render(False, seed=3)
    three = MultiEchoMR(np.concatenate([mr.array, mr.array[:1]]), mr.affine)
    with pytest.raises(AuditModelError, match="2-echo"):
        learned_consistency_map(model, three, ct)


def test_normalised_echoes_use_the_99th_percentile() -> None:
    _, mr = _render(False, seed=3)
    body = np.ones(mr.spatial_shape, dtype=bool)
    out, refs = normalised_echoes(mr, body)
    for e in range(2):
        assert refs[e] == pytest.approx(float(np.percentile(mr.array[e], 99)), rel=1e-5)
    assert float(np.percentile(out[0], 99)) == pytest.approx(1.0, rel=1e-4)


def test_train_audit_model_fits_calibrates_and_writes_it(tmp_path: Path) -> None:
    from synthct.audit.combine import load_calibration
    from synthct.audit.training import LesionFreeCase, train_audit_model

    cases = [
        LesionFreeCase(mr, ct, f"case-{s}") for s in (3, 4, 5, 6) for ct, mr in [_render(False, s)]
    ]
    folder = train_audit_model(
        cases,
        tmp_path / "audit_model",
        novelty_options={"n_components": 4, "patches_per_volume": 2000},
        learned_consistency=SETTINGS,
        sct_source="CT",
        rule=("consistency", "learned_consistency"),
    )
    assert has_learned_consistency(folder)
    calibration = load_calibration(folder)
    learned = calibration.signals["learned_consistency"]
    assert learned.in_rule and learned.threshold > 0
    assert calibration.info["sct_source"] == "CT"
    # the domain of the cases is recorded (synthct.audit.domain): 3 T, FAST_3T, 1.5 mm; MRI
    # rendered in memory does not declare its realism (cohort files do)
    domain = calibration.info["domain"]
    assert domain["field_strength_t"] == [3.0] and domain["echo_times_ms"] == [[1.15, 2.3]]
    assert domain["voxel_size_mm"] == [1.5, 1.5] and domain["mr_realism"] == ["unknown"]
    model = load_learned_consistency(folder)
    assert model.info["training_pairs"] == ["case-3", "case-4"]
    _, mr = _render(True, seed=7)
    sct, _ = _render(False, seed=7)
    result = run_audit(mr, sct, learned=model, calibration=calibration)
    assert result.n_flags >= 1
    assert "learned_consistency" in result.regions[0].signals_fired
