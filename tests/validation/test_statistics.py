"""Cohort statistics: known answers, identities with direct scipy/statsmodels/pingouin calls.

The 5-lesion cohort is shaped like the paper's (Fischer et al. 2025): CT 463.6 HU vs sCT
20.9 HU, axial 11.6 vs 0 mm, sagittal 19.6 vs 0 mm, visible on 5/5 CT and 0/5 sCT.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pingouin
import pytest
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

from synthct.errors import SynthctError
from synthct.validation.statistics import (
    LOA_SD_MULTIPLIER,
    StatisticsInputError,
    bland_altman,
    cohort_statistics,
    compare_paired,
    compare_visibility,
    describe,
    describe_proportion,
    format_p_value,
    results_paragraph,
)

EXACT = {"abs": 1e-12, "rel": 0.0}

CT_HU = np.array([113.0, 280.0, 551.0, 608.0, 766.0])
SCT_HU = np.array([20.5, 15.0, 11.8, 30.0, 27.2])
CT_AXIAL_MM = np.array([9.5, 10.2, 13.8, 11.4, 13.1])
CT_SAGITTAL_MM = np.array([8.0, 14.0, 16.0, 22.0, 38.0])
ZEROS_MM = np.zeros(5)


def paper_records() -> list[dict[str, object]]:
    return [
        {
            "lesion_id": i + 1,
            "ct_mean_hu": CT_HU[i],
            "sct_mean_hu": SCT_HU[i],
            "ct_diameter_axial_mm": CT_AXIAL_MM[i],
            "sct_diameter_axial_mm": 0.0,
            "ct_diameter_sagittal_mm": CT_SAGITTAL_MM[i],
            "sct_diameter_sagittal_mm": 0.0,
            "ct_visible": True,
            "sct_visible": False,
        }
        for i in range(5)
    ]


@pytest.fixture(scope="module")
def paper_cohort():
    return cohort_statistics(paper_records(), seed=0)


# -- the paper's cohort -------------------------------------------------------------------------
def test_paper_cohort_direction_and_known_p_values(paper_cohort) -> None:
    hu = paper_cohort.comparisons["mean_hu"]
    assert hu.ct.mean == pytest.approx(463.6, **EXACT)
    assert hu.sct.mean == pytest.approx(20.9, **EXACT)
    assert hu.mean_difference < 0  # the sCT shows less than the CT
    assert hu.t_test.p_value < 0.05
    # Smallest two-sided exact signed-rank p for n = 5: 2 / 2**5.
    assert hu.wilcoxon.p_value == 0.0625
    assert hu.wilcoxon.method.startswith("exact null distribution")
    axial = paper_cohort.comparisons["diameter_axial_mm"]
    sagittal = paper_cohort.comparisons["diameter_sagittal_mm"]
    assert axial.ct.mean == pytest.approx(11.6, **EXACT)
    assert sagittal.ct.mean == pytest.approx(19.6, **EXACT)
    assert axial.t_test.p_value < 0.001  # as the paper reports
    assert sagittal.t_test.p_value < 0.05
    assert axial.wilcoxon.p_value == sagittal.wilcoxon.p_value == 0.0625
    vis = paper_cohort.visibility
    assert (vis.ct.count, vis.sct.count, vis.n_lesions) == (5, 0, 5)
    assert vis.mcnemar.p_value == pytest.approx(0.0625, **EXACT)


def test_paired_tests_equal_direct_scipy_calls() -> None:
    r = compare_paired(CT_HU, SCT_HU, name="mean_hu", unit="HU")
    t = stats.ttest_rel(SCT_HU, CT_HU)
    assert r.t_test.statistic == pytest.approx(t.statistic, **EXACT)
    assert r.t_test.p_value == pytest.approx(t.pvalue, **EXACT)
    assert r.t_test.df == 4
    ci = t.confidence_interval(confidence_level=0.95)
    assert r.mean_difference_ci == pytest.approx((ci.low, ci.high), **EXACT)
    w = stats.wilcoxon(SCT_HU, CT_HU, method="exact")
    assert r.wilcoxon.statistic == pytest.approx(w.statistic, **EXACT)
    assert r.wilcoxon.p_value == pytest.approx(w.pvalue, **EXACT)
    boot = stats.bootstrap(
        (SCT_HU - CT_HU,), np.mean, n_resamples=9999, method="BCa", rng=np.random.default_rng(0)
    ).confidence_interval
    assert r.bootstrap_ci == pytest.approx((boot.low, boot.high), **EXACT)
    dz = pingouin.compute_effsize(SCT_HU, CT_HU, paired=True, eftype="cohen_dz")
    d_av = pingouin.compute_effsize(SCT_HU, CT_HU, paired=True, eftype="cohen")
    assert r.cohen_dz == pytest.approx(dz, **EXACT)
    assert r.cohen_d_av == pytest.approx(d_av, **EXACT)
    assert r.cohen_dz == pytest.approx(t.statistic / math.sqrt(5), abs=1e-9)


def test_random_paired_data_equal_scipy_with_larger_n() -> None:
    rng = np.random.default_rng(42)
    ct = rng.normal(300, 100, size=20)
    sct = ct + rng.normal(-15, 20, size=20)
    r = compare_paired(ct, sct, name="mean_hu", unit="HU", confidence_level=0.9)
    t = stats.ttest_rel(sct, ct)
    assert r.t_test.p_value == pytest.approx(t.pvalue, **EXACT)
    ci = t.confidence_interval(confidence_level=0.9)
    assert r.mean_difference_ci == pytest.approx((ci.low, ci.high), **EXACT)
    w = stats.wilcoxon(sct, ct, method="exact")
    assert r.wilcoxon.p_value == pytest.approx(w.pvalue, **EXACT)
    assert r.wilcoxon.statistic == pytest.approx(w.statistic, **EXACT)


def test_wilcoxon_with_ties_uses_exhaustive_permutation() -> None:
    ct = np.array([10.0, 12.0, 11.0, 13.0, 9.0, 10.0])
    sct = ct - np.array([2.0, 2.0, 3.0, 1.0, 2.0, 0.0])  # ties, and one zero difference
    r = compare_paired(ct, sct, name="diameter_axial_mm", unit="mm")
    w = stats.wilcoxon(sct, ct, zero_method="wilcox", method=stats.PermutationMethod())
    assert r.wilcoxon.p_value == pytest.approx(w.pvalue, **EXACT)
    assert r.wilcoxon.method.startswith("exact conditional")
    assert r.wilcoxon.note == "1 zero difference(s) dropped"
    # Pratt keeps the zero in the ranking.
    rp = compare_paired(ct, sct, name="d", unit="mm", zero_method="pratt")
    wp = stats.wilcoxon(sct, ct, zero_method="pratt", method=stats.PermutationMethod())
    assert rp.wilcoxon.p_value == pytest.approx(wp.pvalue, **EXACT)


def test_wilcoxon_large_n_with_ties_is_asymptotic() -> None:
    ct = np.arange(20, dtype=float)
    sct = ct - np.repeat([1.0, 2.0, 3.0, -1.0], 5)
    r = compare_paired(ct, sct, name="x", unit="mm")
    w = stats.wilcoxon(sct, ct, method="asymptotic")
    assert r.wilcoxon.p_value == pytest.approx(w.pvalue, **EXACT)
    assert r.wilcoxon.method.startswith("normal approximation")


# -- Bland-Altman and bootstrap -----------------------------------------------------------------
def test_bland_altman_limits_are_mean_plus_minus_1_96_sd() -> None:
    d = SCT_HU - CT_HU
    ba = bland_altman(CT_HU, SCT_HU)
    assert ba.bias == pytest.approx(np.mean(d), **EXACT)
    assert ba.sd_difference == pytest.approx(np.std(d, ddof=1), **EXACT)
    assert LOA_SD_MULTIPLIER == 1.96
    assert ba.loa_lower == pytest.approx(np.mean(d) - 1.96 * np.std(d, ddof=1), **EXACT)
    assert ba.loa_upper == pytest.approx(np.mean(d) + 1.96 * np.std(d, ddof=1), **EXACT)
    # Bland & Altman 1986: SE of a limit is sqrt(3 s^2 / n); t quantile on n - 1 df.
    half = stats.t.ppf(0.975, 4) * math.sqrt(3 * np.var(d, ddof=1) / 5)
    assert ba.loa_lower_ci == pytest.approx((ba.loa_lower - half, ba.loa_lower + half), rel=1e-12)
    assert ba.loa_upper_ci == pytest.approx((ba.loa_upper - half, ba.loa_upper + half), rel=1e-12)
    ci = stats.ttest_rel(SCT_HU, CT_HU).confidence_interval()
    assert ba.bias_ci == pytest.approx((ci.low, ci.high), **EXACT)


def test_bootstrap_ci_is_deterministic_for_a_seed() -> None:
    a = compare_paired(CT_HU, SCT_HU, name="mean_hu", unit="HU", seed=7)
    b = compare_paired(CT_HU, SCT_HU, name="mean_hu", unit="HU", seed=7)
    c = compare_paired(CT_HU, SCT_HU, name="mean_hu", unit="HU", seed=8)
    assert a.bootstrap_ci == b.bootstrap_ci
    assert a.bootstrap_ci != c.bootstrap_ci
    assert a.bootstrap_seed == 7 and a.bootstrap_n_resamples == 9999
    assert a.bootstrap_ci[0] < a.mean_difference < a.bootstrap_ci[1]
    p = compare_paired(CT_HU, SCT_HU, name="m", unit="HU", bootstrap_method="percentile")
    assert p.bootstrap_method.startswith("percentile")


# -- degenerate cases ---------------------------------------------------------------------------
def test_identical_ct_and_sct_give_zero_bias_and_documented_nans() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = compare_paired(CT_HU, CT_HU.copy(), name="mean_hu", unit="HU")
    assert r.mean_difference == 0.0
    assert r.bland_altman.bias == 0.0
    assert (r.bland_altman.loa_lower, r.bland_altman.loa_upper) == (0.0, 0.0)
    assert r.bland_altman.loa_lower_ci == (0.0, 0.0)
    assert r.mean_difference_ci == (0.0, 0.0)
    assert r.bootstrap_ci == (0.0, 0.0)
    assert "BCa is undefined" in r.bootstrap_note
    assert math.isnan(r.t_test.p_value) and "zero variance" in r.t_test.note
    assert math.isnan(r.wilcoxon.p_value) and "all paired differences are zero" in r.wilcoxon.note
    assert math.isnan(r.cohen_dz)
    assert r.cohen_d_av == 0.0
    json.dumps(r.to_dict())


def test_constant_nonzero_difference_has_no_t_test() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = compare_paired(CT_HU, CT_HU - 2.0, name="d", unit="HU")  # exactly -2 each
    assert r.mean_difference == -2.0
    assert r.mean_difference_ci == (-2.0, -2.0) == r.bootstrap_ci
    assert r.bland_altman.loa_lower == r.bland_altman.loa_upper == -2.0
    assert math.isnan(r.t_test.statistic) and math.isnan(r.t_test.p_value)
    # All |differences| tie: exhaustive permutation gives the smallest p for n = 5.
    assert r.wilcoxon.p_value == pytest.approx(0.0625, **EXACT)


def test_floating_point_noise_neither_breaks_ties_nor_makes_variance() -> None:
    ct = np.array([0.1, 0.2, 0.7, 0.3])
    sct = ct + 0.1  # differences 0.1 up to rounding noise
    assert np.ptp(sct - ct) > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = compare_paired(ct, sct, name="d", unit="mm")
    assert math.isnan(r.t_test.p_value)
    assert r.wilcoxon.method.startswith("exact conditional")  # four tied |differences|
    assert r.wilcoxon.p_value == pytest.approx(0.125, **EXACT)
    assert r.bootstrap_ci == pytest.approx((0.1, 0.1), abs=1e-15)


def test_two_pairs_are_enough() -> None:
    r = compare_paired([1.0, 2.0], [1.5, 3.0], name="d", unit="mm")
    assert r.n_pairs == 2
    assert r.wilcoxon.p_value == pytest.approx(0.5, **EXACT)


def test_visibility_known_answers_equal_direct_calls() -> None:
    v = compare_visibility([True] * 5, [False] * 5)
    assert v.paired_table == ((0, 5), (0, 0))
    assert v.modality_table == ((5, 0), (0, 5))
    mc = mcnemar(np.array([[0, 5], [0, 0]]), exact=True)
    assert v.mcnemar.p_value == pytest.approx(mc.pvalue, **EXACT) == 0.0625
    assert v.mcnemar.statistic == pytest.approx(mc.statistic, **EXACT)
    table = np.array([[5, 0], [0, 5]])
    pearson = stats.chi2_contingency(table, correction=False)
    yates = stats.chi2_contingency(table)
    assert v.chi_square.statistic == pytest.approx(pearson.statistic, **EXACT) == 10.0
    assert v.chi_square.p_value == pytest.approx(pearson.pvalue, **EXACT)
    assert v.chi_square_yates_p == pytest.approx(yates.pvalue, **EXACT)
    assert v.chi_square_min_expected_count == 2.5 and "< 5" in v.chi_square.note
    assert v.fisher_exact.p_value == pytest.approx(stats.fisher_exact(table).pvalue, **EXACT)
    wilson = proportion_confint(5, 5, method="wilson")
    assert (v.ct.ci_low, v.ct.ci_high) == pytest.approx(wilson, **EXACT)
    corrected = compare_visibility([1, 1, 1, 1, 1], [0, 0, 0, 0, 0], yates_correction=True)
    assert corrected.chi_square.p_value == pytest.approx(yates.pvalue, **EXACT)


def test_visibility_mixed_table_equals_direct_calls() -> None:
    ct = [True, True, True, False, True, True, False, True]
    sct = [True, False, False, False, True, False, True, False]
    v = compare_visibility(ct, sct)
    assert v.paired_table == ((2, 4), (1, 1))
    mc = mcnemar(np.array([[2, 4], [1, 1]]), exact=True)
    assert v.mcnemar.p_value == pytest.approx(mc.pvalue, **EXACT)
    chi = stats.chi2_contingency(np.array([[6, 2], [3, 5]]), correction=False)
    assert v.chi_square.p_value == pytest.approx(chi.pvalue, **EXACT)


@pytest.mark.parametrize("flag", [True, False])
def test_degenerate_visibility_tables(flag: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        v = compare_visibility([flag] * 4, [flag] * 4)
    assert math.isnan(v.chi_square.p_value) and "empty" in v.chi_square.note
    assert math.isnan(v.chi_square_yates_p)
    assert v.mcnemar.p_value == 1.0 and "no discordant pair" in v.mcnemar.note
    assert v.fisher_exact.p_value == 1.0
    json.dumps(v.to_dict())


# -- descriptives -------------------------------------------------------------------------------
def test_describe_known_values() -> None:
    d = describe([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (d.n, d.mean, d.median, d.minimum, d.maximum, d.p25, d.p75) == (5, 3, 3, 1, 5, 2, 4)
    assert d.sd == pytest.approx(np.std([1, 2, 3, 4, 5], ddof=1), **EXACT)
    assert math.isnan(describe([7.0]).sd)


@pytest.mark.parametrize("method", ["wilson", "beta"])
def test_describe_proportion_equals_statsmodels(method: str) -> None:
    p = describe_proportion(3, 7, method=method, confidence_level=0.9)
    low, high = proportion_confint(3, 7, alpha=0.1, method=method)
    assert (p.ci_low, p.ci_high) == pytest.approx((low, high), **EXACT)
    assert p.proportion == pytest.approx(3 / 7, **EXACT)


# -- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ct", "sct", "path", "text"),
    [
        ([1.0, 2.0, 3.0], [1.0, 2.0], "sct_values", "paired"),
        ([1.0], [2.0], "ct_values", "at least 2"),
        ([1.0, np.nan, 3.0], [1.0, 2.0, 3.0], "ct_values", "NaN"),
        ([1.0, 2.0, 3.0], [1.0, 2.0, np.inf], "sct_values", "position(s) [2]"),
        (["a", "b"], [1.0, 2.0], "ct_values", "not all numbers"),
        ([[1.0, 2.0]], [[1.0, 2.0]], "ct_values", "1-D"),
    ],
)
def test_paired_input_errors(ct, sct, path: str, text: str) -> None:
    with pytest.raises(StatisticsInputError, match=None) as info:
        compare_paired(ct, sct, name="x", unit="mm")
    assert isinstance(info.value, SynthctError) and isinstance(info.value, ValueError)
    assert info.value.path == path
    assert text in str(info.value)


def test_option_errors() -> None:
    with pytest.raises(StatisticsInputError, match="zero_method"):
        compare_paired(CT_HU, SCT_HU, name="x", unit="HU", zero_method="nope")  # type: ignore[arg-type]
    with pytest.raises(StatisticsInputError, match="confidence_level"):
        compare_paired(CT_HU, SCT_HU, name="x", unit="HU", confidence_level=95)
    with pytest.raises(StatisticsInputError, match="count"):
        describe_proportion(6, 5)
    with pytest.raises(StatisticsInputError, match="method"):
        describe_proportion(1, 5, method="exact")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ct", "sct", "path"),
    [
        ([True, False, np.nan], [True, False, True], "ct_visible"),
        ([True, False], [True, None], "sct_visible"),
        ([True, False, True], [True, False], "sct_visible"),
        ([True], [False], "ct_visible"),
        ([2, 0], [1, 0], "ct_visible"),
    ],
)
def test_visibility_input_errors(ct, sct, path: str) -> None:
    with pytest.raises(StatisticsInputError) as info:
        compare_visibility(ct, sct)
    assert info.value.path == path


# -- cohort records -----------------------------------------------------------------------------
def test_cohort_from_dataframe_equals_cohort_from_dicts(paper_cohort) -> None:
    frame = pd.DataFrame(paper_records())
    from_frame = cohort_statistics(frame, seed=0)
    assert json.dumps(from_frame.to_dict()) == json.dumps(paper_cohort.to_dict())


def test_cohort_to_dict_is_flat_json_with_units_in_keys(paper_cohort) -> None:
    out = json.loads(json.dumps(paper_cohort.to_dict()))
    hu = out["comparisons"]["mean_hu"]
    for key in (
        "ct_mean_hu",
        "sct_sd_hu",
        "mean_difference_ci_low_hu",
        "mean_difference_bootstrap_ci_high_hu",
        "bland_altman_loa_lower_hu",
        "bland_altman_loa_upper_ci_high_hu",
        "t_test_p",
        "wilcoxon_p",
        "wilcoxon_method",
        "bootstrap_seed",
    ):
        assert key in hu
    assert "ct_max_mm" in out["comparisons"]["diameter_axial_mm"]
    assert all(not isinstance(v, dict | list) for v in hu.values())
    vis = out["visibility"]
    assert vis["chi_square_p"] == pytest.approx(0.001565402258002549, rel=1e-12)
    assert "correction=False" in vis["chi_square_method"]
    assert vis["mcnemar_p"] == 0.0625


def test_cohort_column_rules() -> None:
    hu_only = [{"ct_mean_hu": c, "sct_mean_hu": s} for c, s in zip(CT_HU, SCT_HU, strict=True)]
    stats_hu = cohort_statistics(hu_only)
    assert list(stats_hu.comparisons) == ["mean_hu"] and stats_hu.visibility is None
    with pytest.raises(StatisticsInputError, match="sct_mean_hu"):
        cohort_statistics([{"ct_mean_hu": 1.0}, {"ct_mean_hu": 2.0}])
    with pytest.raises(StatisticsInputError, match="ct_cnr"):
        cohort_statistics(hu_only, quantities=[("cnr", "")])
    with pytest.raises(StatisticsInputError, match="no paired"):
        cohort_statistics([{"lesion_id": 1}, {"lesion_id": 2}])
    with pytest.raises(StatisticsInputError, match="records"):
        cohort_statistics({"ct_mean_hu": [1.0, 2.0]})
    rows = paper_records()
    rows[2]["sct_mean_hu"] = float("nan")
    with pytest.raises(StatisticsInputError, match=r"'sct_mean_hu'.*NaN"):
        cohort_statistics(rows)
    rows = paper_records()
    del rows[1]["ct_visible"]
    with pytest.raises(
        StatisticsInputError, match=r"'ct_visible' is missing from record\(s\) \[1\]"
    ):
        cohort_statistics(rows)


def test_cohort_explicit_quantities_with_labels() -> None:
    rows = [
        {"ct_cnr": c, "sct_cnr": s}
        for c, s in zip([12.0, 8.0, 15.0, 9.5], [1.0, 0.5, 2.0, -0.3], strict=True)
    ]
    result = cohort_statistics(rows, quantities=[("cnr", "", "Lesion CNR")])
    cnr = result.comparisons["cnr"]
    assert cnr.label == "Lesion CNR"
    assert "ct_mean" in cnr.to_dict() and "mean_difference" in cnr.to_dict()


# -- text ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("p", "text"),
    [
        (0.0004, "p < 0.001"),
        (0.001, "p = 0.001"),
        (0.0339, "p = 0.034"),
        (0.0625, "p = 0.062"),
        (1.0, "p = 1.000"),
        (float("nan"), "p not defined"),
    ],
)
def test_format_p_value(p: float, text: str) -> None:
    assert format_p_value(p) == text


def test_results_paragraph_contains_the_numbers(paper_cohort) -> None:
    text = results_paragraph(paper_cohort)
    for fragment in (
        "visible on 5/5 CT (100%",
        "0/5 sCT (0%",
        "Pearson chi-square p = 0.002",
        "exact McNemar p = 0.062",
        "463.6 HU",
        "20.9 HU",
        "11.6 mm",
        "19.6 mm",
        "0.0 mm",
        "paired t-test p < 0.001",
        "Wilcoxon signed-rank p = 0.062, exact",
        "limits of agreement",
    ):
        assert fragment in text, fragment
    hu = paper_cohort.comparisons["mean_hu"]
    assert format_p_value(hu.t_test.p_value) in text
    assert "\n" not in text


def test_results_paragraph_states_undefined_tests() -> None:
    rows = [
        {"ct_mean_hu": v, "sct_mean_hu": v, "ct_visible": True, "sct_visible": True} for v in CT_HU
    ]
    text = results_paragraph(cohort_statistics(rows))
    assert "Pearson chi-square not defined" in text
    assert "exact McNemar p = 1.000" in text
    assert "paired t-test not defined" in text
    assert "Wilcoxon signed-rank not defined" in text
