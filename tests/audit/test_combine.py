"""The combination rule, thresholds for a false-flag target, regions and the ROC helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from synthct.audit.combine import (
    DEFAULT_CALIBRATION,
    DEFAULT_MERGE_GAP_MM,
    AuditCalibration,
    SignalCalibration,
    choose_threshold,
    count_regions,
    flag_score,
    gumbel_threshold,
    load_calibration,
    min_region_voxels,
    region_peak,
    robust_centre_scale,
    rule_signals,
)
from synthct.audit.errors import AuditModelError
from synthct.audit.evaluation import roc_auc, roc_curve
from synthct.audit.regions import find_regions
from synthct.geometry import Geometry


def _blob(shape: tuple[int, int, int], centre: tuple[int, int, int], radius: float) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    d2 = sum((grid[a] - centre[a]) ** 2 for a in range(3))
    return d2 <= radius**2


def test_standardise_two_sided_and_self() -> None:
    body = np.ones((4, 4, 4), dtype=bool)
    values = np.full((4, 4, 4), -3.0, dtype=np.float32)
    fixed = SignalCalibration(0.0, 1.5, 2.0)
    np.testing.assert_allclose(fixed.standardise("consistency", values, body), 2.0)
    np.testing.assert_allclose(fixed.standardise("novelty", values, body), -2.0)
    rng = np.random.default_rng(0)
    noise = rng.normal(10.0, 2.0, (30, 30, 30)).astype(np.float32)
    own = SignalCalibration(None, None, 5.0)  # self-standardised
    z = own.standardise("novelty", noise, np.ones(noise.shape, dtype=bool))
    assert float(np.median(z)) == pytest.approx(0.0, abs=0.02)
    assert robust_centre_scale(noise)[1] == pytest.approx(2.0, rel=0.03)
    outside = own.standardise("novelty", noise, np.zeros(noise.shape, dtype=bool))
    assert not outside.any()


def test_flag_score_is_the_max_ratio_over_the_rule() -> None:
    z = {
        "consistency": np.array([[[3.0, 12.0]]], dtype=np.float32),
        "novelty": np.array([[[30.0, 0.0]]], dtype=np.float32),
    }
    cal = AuditCalibration(
        {
            "consistency": SignalCalibration(0.0, 1.0, 6.0),
            "novelty": SignalCalibration(0.0, 1.0, 10.0, in_rule=True),
        }
    )
    score, ratios = flag_score(z, cal)
    np.testing.assert_allclose(score, [[[3.0, 2.0]]])
    np.testing.assert_allclose(ratios["consistency"], [[[0.5, 2.0]]])
    # Novelty out of the rule: reported (ratio) but does not flag.
    score, ratios = flag_score(z, DEFAULT_CALIBRATION)
    assert rule_signals(["consistency", "novelty"], DEFAULT_CALIBRATION) == ["consistency"]
    np.testing.assert_allclose(score, [[[0.5, 2.0]]])
    assert ratios["novelty"][0, 0, 0] == pytest.approx(3.0)
    # Without the rule's signals, the available ones flag.
    alone, _ = flag_score({"novelty": z["novelty"]}, DEFAULT_CALIBRATION)
    np.testing.assert_allclose(alone, [[[3.0, 0.0]]])
    with pytest.raises(AuditModelError):
        flag_score({}, DEFAULT_CALIBRATION)


def test_regions_counted_with_a_minimum_size() -> None:
    mask = np.zeros((20, 20, 20), dtype=bool)
    mask[2:5, 2:5, 2:5] = True  # 27 voxels
    mask[10, 10, 10] = True  # 1 voxel
    mask[15:17, 15:17, 15:17] = True  # 8 voxels
    mask[14, 14, 14] = True  # touches the 8 by a corner: 26-connected
    assert count_regions(mask, 1) == 3
    assert count_regions(mask, 9) == 2
    assert count_regions(mask, 10) == 1
    assert min_region_voxels(8.0, 0.512) == 16
    assert min_region_voxels(8.0, 3.375) == 3
    assert min_region_voxels(0.1, 3.375) == 1


def test_threshold_meets_the_false_flag_target() -> None:
    rng = np.random.default_rng(3)
    shape = (24, 24, 24)
    maps = []
    for v in range(10):
        z = np.abs(rng.normal(0, 1, shape)).astype(np.float32)
        # One clean hot spot of height 3 + v in each volume (the largest normal structures).
        z[_blob(shape, (12, 12, 12), 2.5)] = 3.0 + v
        maps.append(z)
    threshold, achieved = choose_threshold(maps, min_voxels=[10] * 10, target_per_volume=0.2)
    counts = [count_regions(z >= threshold, 10) for z in maps]
    assert np.mean(counts) <= 0.2
    assert achieved == pytest.approx(np.mean(counts))
    # Only the two strongest hot spots (11 and 12) may stay above: 10 < threshold <= 11.
    assert 10.0 < threshold <= 11.0
    # A minimum above it wins, and the achieved rate is that of the minimum: only the
    # hot spot of 12 stays above 11.5, in one volume of ten.
    raised, achieved = choose_threshold(
        maps, min_voxels=[10] * 10, target_per_volume=0.2, minimum=11.5
    )
    assert raised == 11.5 and achieved == pytest.approx(0.1)


def test_calibration_round_trip_and_errors(tmp_path: Path) -> None:
    cal = AuditCalibration(
        {
            "consistency": SignalCalibration(0.0, 1.0, 4.5, "test"),
            "novelty": SignalCalibration(0.1, 0.2, 300.0, "test", in_rule=False),
        },
        min_region_volume_mm3=10.0,
        target_false_flags_per_volume=0.05,
        info={"held_out": 8},
    )
    cal.save(tmp_path / "calibration.json")
    loaded = load_calibration(tmp_path)
    assert loaded == cal
    assert "max over the signals in the rule" in loaded.to_dict()["rule"]
    assert loaded.for_signal("epistemic") == DEFAULT_CALIBRATION.signals["epistemic"]
    (tmp_path / "bad.json").write_text('{"signals": {"magic": {}}}')
    with pytest.raises(AuditModelError, match="not an audit calibration"):
        load_calibration(tmp_path / "bad.json")
    with pytest.raises(AuditModelError, match="no audit calibration"):
        load_calibration(tmp_path / "nowhere")


def test_find_regions_known_blobs() -> None:
    shape = (30, 30, 20)
    geometry = Geometry.from_parameters(shape, (0.5, 0.5, 2.0), (-10.0, 20.0, 5.0))
    score = np.zeros(shape, dtype=np.float32)
    strong = _blob(shape, (8, 9, 10), 3.0)
    weak = _blob(shape, (22, 20, 5), 2.0)
    score[strong] = 3.0
    score[weak] = 1.5
    score[1, 1, 1] = 5.0  # a single voxel: below the minimum size
    ratios = {"consistency": score.copy(), "novelty": np.where(weak, 1.2, 0.1).astype(np.float32)}
    sign = np.where(strong, -1.0, 1.0).astype(np.float32)
    labels, regions = find_regions(score, ratios, geometry, min_voxels=5, consistency_sign=sign)
    assert [r.id for r in regions] == [1, 2]
    first, second = regions
    assert first.peak_score == pytest.approx(3.0)
    assert first.n_voxels == int(strong.sum())
    assert first.volume_mm3 == pytest.approx(strong.sum() * 0.5)
    np.testing.assert_allclose(first.centre_lps_mm, geometry.index_to_lps([8, 9, 10]), atol=1e-6)
    assert first.size_mm == pytest.approx((3.5, 3.5, 14.0))  # 7 voxels across each axis
    assert first.signals_fired == ("consistency",)
    assert first.direction == "darker"
    assert second.signals_fired == ("consistency", "novelty")
    assert second.direction == "brighter"
    assert np.array_equal(labels == 1, strong)
    assert labels[1, 1, 1] == 0
    assert first.to_dict()["bbox_index"] == [[5, 6, 7], [11, 12, 13]]


def test_flagged_components_closer_than_the_gap_are_one_region(tmp_path: Path) -> None:
    """Two 1 mm cubes 4 mm apart (surface to surface) along an axis of 1 mm voxels, and a
    third 30 mm away: a 5 mm gap joins the first two, a 3 mm gap does not; a fragment under
    the minimum size is dropped before merging, so it joins nothing."""
    shape = (60, 20, 20)
    geometry = Geometry.from_parameters(shape, (1.0, 1.0, 1.0))
    score = np.zeros(shape, dtype=np.float32)
    score[10:13, 8:11, 8:11] = 4.0  # 27 voxels
    score[17:20, 8:11, 8:11] = 2.0  # 4 voxels of gap (13..16) from the first
    score[50:53, 8:11, 8:11] = 3.0
    score[14, 2, 2] = 9.0  # a single voxel between them: under the minimum size
    ratios = {"reference": score}
    _, apart = find_regions(score, ratios, geometry, min_voxels=5, merge_gap_mm=3.0)
    labels, joined = find_regions(score, ratios, geometry, min_voxels=5, merge_gap_mm=5.0)
    assert [r.n_voxels for r in apart] == [27, 27, 27]
    assert [r.n_voxels for r in joined] == [54, 27]
    first = joined[0]
    assert first.peak_score == pytest.approx(4.0)
    assert first.bbox_index == ((10, 8, 8), (19, 10, 10))  # the gap's voxels are not flagged
    assert first.size_mm == pytest.approx((10.0, 3.0, 3.0))
    assert np.count_nonzero(labels == 1) == 54 and labels[15, 9, 9] == 0 and labels[14, 2, 2] == 0
    # recorded with the calibration; a calibration written before merging existed has none
    cal = AuditCalibration({"consistency": SignalCalibration(0.0, 1.0, 6.0)}, merge_gap_mm=7.5)
    cal.save(tmp_path / "calibration.json")
    assert load_calibration(tmp_path).merge_gap_mm == 7.5
    old = cal.to_dict()
    del old["merge_gap_mm"]
    assert AuditCalibration.from_dict(old).merge_gap_mm == 0.0
    assert AuditCalibration({}).merge_gap_mm == DEFAULT_MERGE_GAP_MM == 10.0


def test_roc_known_answers() -> None:
    assert roc_auc([2, 3, 4], [0, 1]) == 1.0
    assert roc_auc([0, 1], [2, 3, 4]) == 0.0
    assert roc_auc([1, 1], [1, 1]) == 0.5
    assert roc_auc([1, 2, 3], [2]) == pytest.approx(0.5)  # one win, one tie, one loss
    fpr, tpr, thresholds = roc_curve([3, 2], [1, 2])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 1.0])
    np.testing.assert_allclose(tpr, [0, 0.5, 1.0, 1.0])
    assert thresholds[0] == np.inf
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(5)
    pos, neg = rng.normal(1, 1, 300).round(1), rng.normal(0, 1, 500).round(1)
    truth = np.r_[np.ones(300), np.zeros(500)]
    scores = np.r_[pos, neg]
    assert roc_auc(pos, neg) == pytest.approx(sklearn.roc_auc_score(truth, scores), abs=1e-12)
    fpr, tpr, _ = roc_curve(pos, neg)
    ref_fpr, ref_tpr, _ = sklearn.roc_curve(truth, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)


def test_region_peak_and_gumbel_threshold() -> None:
    shape = (20, 20, 20)
    values = np.zeros(shape, dtype=np.float32)
    values[_blob(shape, (10, 10, 10), 2.0)] = 4.0  # 33 voxels at 4
    values[2, 2, 2] = 9.0  # one voxel: too small to be a region
    assert region_peak(values, 10) == pytest.approx(4.0, abs=1e-6)
    assert region_peak(values, 1) == pytest.approx(9.0, abs=1e-6)
    assert region_peak(values, 100) == 0.0
    # Gumbel by moments: mean 3, SD 0.5 -> beta = 0.3898, mu = 2.775.
    peaks = [2.5, 3.5, 2.5, 3.5]  # mean 3, sample SD 0.577
    beta = 0.5773502691896258 * np.sqrt(6) / np.pi
    mu = 3.0 - 0.5772156649 * beta
    assert gumbel_threshold(peaks, 0.1) == pytest.approx(mu - beta * np.log(-np.log(0.9)))
    assert gumbel_threshold(peaks, 0.01) > gumbel_threshold(peaks, 0.1) > max(peaks)
    # With few clean volumes the extrapolated tail, not their maximum, sets the threshold.
    maps = []
    for height in (2.5, 3.5, 2.5, 3.5):
        z = np.zeros(shape, dtype=np.float32)
        z[_blob(shape, (10, 10, 10), 2.0)] = height
        maps.append(z)
    threshold, achieved = choose_threshold(maps, min_voxels=[10] * 4, target_per_volume=0.1)
    assert threshold == pytest.approx(gumbel_threshold([2.5, 3.5, 2.5, 3.5], 0.1), rel=1e-4)
    assert achieved == 0.0
