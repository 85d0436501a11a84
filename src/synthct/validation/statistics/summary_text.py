"""The cohort statistics as a Results paragraph, written from the numbers.

The wording follows the paper's Results ("The tumor dimensions were 11.6 vs. 0 mm (p < 0.001)
on axial ...") and adds what the small-sample tests say. p-values are given to three decimals,
below 0.001 as "p < 0.001" (the usual journal style, e.g. the AMA Manual of Style, section
19.5); a test that is not defined is said to be so.
"""

from __future__ import annotations

import math

from synthct.validation.statistics._common import HypothesisTestResult
from synthct.validation.statistics.cohort import CohortStatistics
from synthct.validation.statistics.descriptives import Descriptives, Proportion
from synthct.validation.statistics.paired import PairedComparison
from synthct.validation.statistics.visibility import VisibilityComparison

__all__ = ["format_p_value", "results_paragraph"]


def format_p_value(p_value: float, *, decimals: int = 3) -> str:
    """``"p < 0.001"``, ``"p = 0.034"`` or ``"p not defined"`` (NaN).

    Parameters
    ----------
    p_value : float
        The p-value.
    decimals : int
        Decimals shown; values below ``10**-decimals`` are written as ``p < 0.001``.

    Examples
    --------
    >>> format_p_value(0.0004), format_p_value(0.0339), format_p_value(float("nan"))
    ('p < 0.001', 'p = 0.034', 'p not defined')
    """
    if not math.isfinite(p_value):
        return "p not defined"
    smallest = 10.0**-decimals
    if p_value < smallest:
        return f"p < {smallest:.{decimals}f}"
    return f"p = {p_value:.{decimals}f}"


def _number(value: float, decimals: int) -> str:
    if not math.isfinite(value):
        return "n/a"
    text = f"{value:.{decimals}f}"
    return text.lstrip("-") if float(text) == 0 else text


def _with_unit(value: float, unit: str, decimals: int) -> str:
    return f"{_number(value, decimals)} {unit}".rstrip()


def _test(label: str, result: HypothesisTestResult) -> str:
    if not math.isfinite(result.p_value):
        return f"{label} not defined"
    return f"{label} {format_p_value(result.p_value)}"


def _proportion(p: Proportion, modality: str) -> str:
    return (
        f"{p.count}/{p.n} {modality} ({100 * p.proportion:.0f}%; {p.confidence_level:.0%} CI "
        f"{100 * p.ci_low:.0f}-{100 * p.ci_high:.0f}%)"
    )


def _visibility_sentence(v: VisibilityComparison) -> str:
    chi = "Pearson chi-square" if "correction=False" in v.chi_square.method else "chi-square"
    tests = "; ".join((_test(chi, v.chi_square), _test("exact McNemar", v.mcnemar)))
    return (
        f"The lesions were visible on {_proportion(v.ct, 'CT')} and "
        f"{_proportion(v.sct, 'sCT')} images ({tests})."
    )


def _spread(d: Descriptives, decimals: int) -> str:
    return (
        f"SD {_number(d.sd, decimals)}, range {_number(d.minimum, decimals)} to "
        f"{_number(d.maximum, decimals)}"
    )


def _wilcoxon_kind(result: HypothesisTestResult) -> str:
    if result.method.startswith("exact null"):
        return ", exact"
    if result.method.startswith("exact conditional"):
        return ", exact with ties"
    if result.method.startswith("normal"):
        return ", normal approximation"
    return ""


def _paired_sentences(c: PairedComparison, decimals: int) -> str:
    unit = c.unit
    label = c.label[:1].upper() + c.label[1:]
    wilcoxon = _test("Wilcoxon signed-rank", c.wilcoxon) + _wilcoxon_kind(c.wilcoxon)
    tests = "; ".join((_test("paired t-test", c.t_test), wilcoxon))
    level = f"{c.confidence_level:.0%}"
    ba = c.bland_altman
    boot_kind = c.bootstrap_method.split(" ", 1)[0]
    return (
        f"{label} was {_with_unit(c.ct.mean, unit, decimals)} ({_spread(c.ct, decimals)}) on CT "
        f"vs {_with_unit(c.sct.mean, unit, decimals)} ({_spread(c.sct, decimals)}) on sCT "
        f"({tests}). The mean difference sCT - CT was "
        f"{_with_unit(c.mean_difference, unit, decimals)} ({level} CI "
        f"{_number(c.mean_difference_ci[0], decimals)} to "
        f"{_number(c.mean_difference_ci[1], decimals)}; bootstrap {boot_kind} {level} CI "
        f"{_number(c.bootstrap_ci[0], decimals)} to {_number(c.bootstrap_ci[1], decimals)}), "
        f"with Bland-Altman limits of agreement {_number(ba.loa_lower, decimals)} to "
        f"{_with_unit(ba.loa_upper, unit, decimals)}."
    )


def results_paragraph(cohort: CohortStatistics, *, decimals: int = 1) -> str:
    """A Results paragraph in the paper's style, generated from the cohort statistics.

    Parameters
    ----------
    cohort : CohortStatistics
        The output of :func:`~synthct.validation.statistics.cohort.cohort_statistics`.
    decimals : int
        Decimals of the means, SDs, ranges and CIs (p-values always have three).

    Returns
    -------
    str
        One paragraph: visibility on CT and sCT with the chi-square and exact McNemar
        p-values, then for each quantity the CT and sCT means (SD, range), the paired t-test
        and Wilcoxon signed-rank p-values, the mean difference with its t-based and bootstrap
        CIs, and the Bland-Altman limits of agreement.

    Examples
    --------
    >>> from synthct.validation.statistics import cohort_statistics
    >>> rows = [{"ct_visible": True, "sct_visible": False}] * 5
    >>> results_paragraph(cohort_statistics(rows))[:56]
    'The lesions were visible on 5/5 CT (100%; 95% CI 57-100%'
    """
    sentences = []
    if cohort.visibility is not None:
        sentences.append(_visibility_sentence(cohort.visibility))
    else:
        sentences.append(f"{cohort.n_lesions} lesions were compared on CT and sCT.")
    sentences.extend(_paired_sentences(c, decimals) for c in cohort.comparisons.values())
    return " ".join(sentences)
