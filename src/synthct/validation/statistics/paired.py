"""Paired comparison of a continuous quantity measured on CT and on sCT, lesion by lesion.

Conventions
-----------
* Differences are ``sct - ct`` (as ``mean_error_hu`` of :mod:`synthct.imaging.image_metrics`):
  a negative mean difference means the sCT shows less than the CT. All tests are two-sided.
* Student's paired t-test [1]_ (``scipy.stats.ttest_rel``) is the paper's test. When all
  differences are equal (zero variance) t is 0/0 or infinite: statistic and p are NaN with a note.
* Wilcoxon signed-rank test [2]_ (``scipy.stats.wilcoxon``). Zero differences are dropped by
  default (``zero_method="wilcox"``, Wilcoxon's rule; ``"pratt"`` [3]_ and ``"zsplit"`` keep
  them in the ranking). The p-value is exact for small samples: scipy's exact null
  distribution when the ranked differences have no ties (and no zeros) and n <= 50; an
  exhaustive sign-flip permutation (``scipy.stats.PermutationMethod``, all 2**n signs for
  n <= 13) when there are ties or zeros; the normal approximation otherwise. ``method`` in the
  result says which. If every difference is zero the test is undefined: NaN with a note. With
  n = 5 and no ties the smallest possible two-sided p is 2 / 2**5 = 0.0625, so the signed-rank
  test cannot reach p < 0.05 with 5 lesions, whatever the data.
* Ties, zeros and "all differences equal" are judged on ``sct - ct`` rounded to 12
  significant digits of the largest absolute difference (the signed-rank test ranks these
  rounded values), so that floating-point noise of the subtraction (``8.2 - 10.2`` is not
  exactly ``-2.0``) neither breaks ties nor makes a constant difference look variable.
* The mean difference has a t-based CI (``ttest_rel(...).confidence_interval``; the point
  (d, d) when every difference equals d, where the standard error is 0) and a bootstrap CI:
  ``scipy.stats.bootstrap`` of the mean of the differences (resampling lesions, so pairs stay
  together), BCa [4]_, 9,999 resamples, ``numpy.random.default_rng(seed)``. When all
  differences are equal BCa is undefined; the percentile interval (a single point) is
  reported instead, with a note. With 5 lesions there are only 126 distinct resamples: the
  bootstrap CI is coarse and usually narrower than the t-based one.
* Bland-Altman [5]_: bias = mean difference, SD of the differences (``ddof=1``), limits of
  agreement = bias +/- 1.96 SD. The CI of each limit is ``limit +/- t * sqrt(3 s^2 / n)``
  with t the (1 + level) / 2 quantile on n - 1 degrees of freedom (Bland & Altman 1986,
  section 5; the formula ``pingouin.plot_blandaltman`` draws); the CI of the bias is the
  t-based CI of the mean difference.
* Effect sizes from ``pingouin.compute_effsize`` (paired): Cohen's d_z (mean / SD of the
  differences) and d_av (mean difference / sqrt of the mean of the two variances) [6]_; NaN
  when the denominator is zero.

References
----------
.. [1] Student, "The probable error of a mean", Biometrika 6(1), 1908.
.. [2] F. Wilcoxon, "Individual comparisons by ranking methods", Biometrics Bulletin 1(6), 1945.
.. [3] J. W. Pratt, "Remarks on zeros and ties in the Wilcoxon signed rank procedures",
   J Am Stat Assoc 54(287), 1959.
.. [4] B. Efron, "Better bootstrap confidence intervals", J Am Stat Assoc 82(397), 1987.
.. [5] J. M. Bland, D. G. Altman, "Statistical methods for assessing agreement between two
   methods of clinical measurement", Lancet 327(8476), 1986.
.. [6] D. Lakens, "Calculating and reporting effect sizes to facilitate cumulative science: a
   practical primer for t-tests and ANOVAs", Front Psychol 4:863, 2013.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from synthct.validation.statistics._common import (
    HypothesisTestResult,
    StatisticsInputError,
    check_confidence,
    paired_values,
    unit_key,
)
from synthct.validation.statistics.descriptives import Descriptives, describe

__all__ = [
    "BOOTSTRAP_N_RESAMPLES",
    "LOA_SD_MULTIPLIER",
    "BlandAltman",
    "BootstrapMethod",
    "PairedComparison",
    "ZeroMethod",
    "bland_altman",
    "compare_paired",
]

#: Bootstrap resamples for the CI of the mean difference (scipy's default).
BOOTSTRAP_N_RESAMPLES = 9999
#: Limits of agreement are bias +/- this many SDs of the differences (Bland & Altman 1986).
LOA_SD_MULTIPLIER = 1.96
#: Largest n for an exhaustive sign-flip permutation (2**13 = 8192 <= scipy's 9,999 resamples).
_MAX_N_EXHAUSTIVE = 13
#: Largest n for scipy's exact signed-rank distribution (scipy's own ``method="auto"`` limit).
_MAX_N_EXACT = 50
#: Differences are compared (ties, zeros, all equal) to this many significant digits.
_SIGNIFICANT_DIGITS = 12

ZeroMethod = Literal["wilcox", "pratt", "zsplit"]
BootstrapMethod = Literal["BCa", "percentile", "basic"]


@dataclass(frozen=True)
class BlandAltman:
    """Bland-Altman agreement of paired values; differences are ``sct - ct``."""

    bias: float
    sd_difference: float
    loa_lower: float
    loa_upper: float
    bias_ci: tuple[float, float]
    loa_lower_ci: tuple[float, float]
    loa_upper_ci: tuple[float, float]
    multiplier: float
    confidence_level: float

    def to_dict(self, *, unit: str = "") -> dict[str, Any]:
        """Flat values, keys ``bland_altman_*`` ending in ``_unit`` where they have one."""
        u = f"_{unit}" if unit else ""
        p = "bland_altman"
        return {
            f"{p}_bias{u}": self.bias,
            f"{p}_bias_ci_low{u}": self.bias_ci[0],
            f"{p}_bias_ci_high{u}": self.bias_ci[1],
            f"{p}_sd_difference{u}": self.sd_difference,
            f"{p}_loa_lower{u}": self.loa_lower,
            f"{p}_loa_upper{u}": self.loa_upper,
            f"{p}_loa_lower_ci_low{u}": self.loa_lower_ci[0],
            f"{p}_loa_lower_ci_high{u}": self.loa_lower_ci[1],
            f"{p}_loa_upper_ci_low{u}": self.loa_upper_ci[0],
            f"{p}_loa_upper_ci_high{u}": self.loa_upper_ci[1],
            f"{p}_sd_multiplier": self.multiplier,
            f"{p}_loa_ci_method": "Bland & Altman 1986: limit +/- t(n-1) * sqrt(3 s^2 / n)",
        }


@dataclass(frozen=True)
class PairedComparison:
    """CT vs sCT values of one quantity over the same lesions (differences ``sct - ct``).

    ``to_dict()`` gives flat, JSON-ready values (NaN stays NaN, as in the other validation
    results) with the unit at the end of every key that has one and the name and settings of
    every test.
    """

    name: str
    unit: str
    label: str
    n_pairs: int
    ct: Descriptives
    sct: Descriptives
    difference: Descriptives
    mean_difference: float
    mean_difference_ci: tuple[float, float]
    bootstrap_ci: tuple[float, float]
    bootstrap_method: str
    bootstrap_n_resamples: int
    bootstrap_seed: int
    bootstrap_note: str
    t_test: HypothesisTestResult
    wilcoxon: HypothesisTestResult
    bland_altman: BlandAltman
    cohen_dz: float
    cohen_d_av: float
    confidence_level: float

    def to_dict(self) -> dict[str, Any]:
        """Flat values; keys with a unit end in it (e.g. ``ct_mean_hu``, ``sct_max_mm``)."""
        u = unit_key(self.unit)
        s = f"_{u}" if u else ""
        out: dict[str, Any] = {
            "quantity": self.name,
            "label": self.label,
            "unit": self.unit,
            "n_pairs": self.n_pairs,
            "difference": "sct - ct",
            "confidence_level": self.confidence_level,
        }
        for prefix, desc in (
            ("ct_", self.ct),
            ("sct_", self.sct),
            ("difference_", self.difference),
        ):
            values = desc.to_dict(prefix=prefix, unit=u)
            del values[f"{prefix}n"]
            out.update(values)
        out.update(
            {
                f"mean_difference{s}": self.mean_difference,
                f"mean_difference_ci_low{s}": self.mean_difference_ci[0],
                f"mean_difference_ci_high{s}": self.mean_difference_ci[1],
                "mean_difference_ci_method": "t distribution (scipy.stats.ttest_rel)",
                f"mean_difference_bootstrap_ci_low{s}": self.bootstrap_ci[0],
                f"mean_difference_bootstrap_ci_high{s}": self.bootstrap_ci[1],
                "bootstrap_method": self.bootstrap_method,
                "bootstrap_n_resamples": self.bootstrap_n_resamples,
                "bootstrap_seed": self.bootstrap_seed,
                "bootstrap_note": self.bootstrap_note,
            }
        )
        out.update(self.t_test.to_dict(prefix="t_test"))
        out.update(self.wilcoxon.to_dict(prefix="wilcoxon"))
        out.update(self.bland_altman.to_dict(unit=u))
        out["cohen_dz"] = self.cohen_dz
        out["cohen_d_av"] = self.cohen_d_av
        return out


def bland_altman(
    ct_values: ArrayLike,
    sct_values: ArrayLike,
    *,
    confidence_level: float = 0.95,
    multiplier: float = LOA_SD_MULTIPLIER,
) -> BlandAltman:
    """Bland-Altman bias and limits of agreement of ``sct - ct``, with confidence intervals.

    Parameters
    ----------
    ct_values, sct_values : (n,) array_like
        Paired values, one per lesion, n >= 2, finite.
    confidence_level : float
        Level of the CIs of the bias and of each limit (default 0.95).
    multiplier : float
        The limits are ``bias +/- multiplier * SD`` (default 1.96).

    Returns
    -------
    BlandAltman
        The CI of the bias is t-based (``scipy.stats.ttest_rel``); the CI of each limit is
        ``limit +/- t_{(1+level)/2, n-1} * sqrt(3 s^2 / n)`` (Bland & Altman 1986, section 5).

    Raises
    ------
    StatisticsInputError
        Unequal lengths, fewer than 2 pairs, NaN or infinite values.

    References
    ----------
    .. [1] J. M. Bland, D. G. Altman, Lancet 327(8476):307-310, 1986.
    """
    ct, sct = paired_values(ct_values, sct_values)
    check_confidence(confidence_level)
    d = sct - ct
    n = d.size
    bias = float(np.mean(d))
    sd = float(np.std(d, ddof=1))
    bias_ci = _t_interval(ct, sct, confidence_level=confidence_level)
    lower, upper = bias - multiplier * sd, bias + multiplier * sd
    t_quantile = float(stats.t.ppf((1 + confidence_level) / 2, n - 1))
    half_width = t_quantile * math.sqrt(3 * sd**2 / n)
    return BlandAltman(
        bias=bias,
        sd_difference=sd,
        loa_lower=lower,
        loa_upper=upper,
        bias_ci=bias_ci,
        loa_lower_ci=(lower - half_width, lower + half_width),
        loa_upper_ci=(upper - half_width, upper + half_width),
        multiplier=float(multiplier),
        confidence_level=confidence_level,
    )


def _differences(ct: NDArray[np.float64], sct: NDArray[np.float64]) -> NDArray[np.float64]:
    """``sct - ct`` rounded to 12 significant digits of the largest absolute difference.

    Floating-point noise of the subtraction (``8.2 - 10.2`` is not exactly ``-2.0``) must
    neither break ties of the signed-rank test nor make a constant difference look variable.
    """
    d = sct - ct
    largest = float(np.max(np.abs(d)))
    if largest == 0.0:
        return d
    step = 10.0 ** (math.floor(math.log10(largest)) - _SIGNIFICANT_DIGITS + 1)
    return np.asarray(np.round(d / step) * step, dtype=np.float64)


def _all_equal(ct: NDArray[np.float64], sct: NDArray[np.float64]) -> bool:
    d = _differences(ct, sct)
    return bool(np.all(d == d[0]))


def _t_interval(
    ct: NDArray[np.float64], sct: NDArray[np.float64], *, confidence_level: float
) -> tuple[float, float]:
    """t-based CI of the mean of ``sct - ct``; the point (d, d) when all differences equal d."""
    if _all_equal(ct, sct):  # zero standard error; scipy would warn about precision loss
        d = float(np.mean(sct - ct))
        return d, d
    ci = stats.ttest_rel(sct, ct).confidence_interval(confidence_level=confidence_level)
    return float(ci.low), float(ci.high)


def _t_test(ct: NDArray[np.float64], sct: NDArray[np.float64]) -> HypothesisTestResult:
    name = "Student's paired t-test"
    method = "scipy.stats.ttest_rel(sct, ct), two-sided"
    if _all_equal(ct, sct):
        return HypothesisTestResult(
            test=name,
            statistic=math.nan,
            p_value=math.nan,
            method=method,
            df=float(ct.size - 1),
            note="undefined: all paired differences are equal (zero variance)",
        )
    result = stats.ttest_rel(sct, ct)
    return HypothesisTestResult(
        test=name,
        statistic=float(result.statistic),
        p_value=float(result.pvalue),
        method=method,
        df=float(result.df),
    )


def _wilcoxon(
    ct: NDArray[np.float64], sct: NDArray[np.float64], *, zero_method: ZeroMethod
) -> HypothesisTestResult:
    d = _differences(ct, sct)
    name = "Wilcoxon signed-rank test"
    setting = (
        f"scipy.stats.wilcoxon(sct - ct to {_SIGNIFICANT_DIGITS} significant digits, "
        f"zero_method={zero_method!r}), two-sided"
    )
    if not np.any(d != 0):
        return HypothesisTestResult(
            test=name,
            statistic=math.nan,
            p_value=math.nan,
            method=f"not run; {setting}",
            note="undefined: all paired differences are zero",
        )
    ranked = d[d != 0] if zero_method == "wilcox" else d
    ties_or_zeros = np.unique(np.abs(ranked)).size < ranked.size or bool(np.any(ranked == 0))
    method: str | stats.PermutationMethod
    if not ties_or_zeros and ranked.size <= _MAX_N_EXACT:
        method, label = "exact", "exact null distribution"
    elif ranked.size <= _MAX_N_EXHAUSTIVE:
        method = stats.PermutationMethod()
        label = "exact conditional (all sign flips; ties or zeros present)"
    else:
        method, label = "asymptotic", "normal approximation (variance adjusted for ties/zeros)"
    result = stats.wilcoxon(d, zero_method=zero_method, method=method)
    dropped = d.size - ranked.size
    return HypothesisTestResult(
        test=name,
        statistic=float(result.statistic),
        p_value=float(result.pvalue),
        method=f"{label}; {setting}",
        note=f"{dropped} zero difference(s) dropped" if dropped else "",
    )


def _bootstrap_ci(
    d: NDArray[np.float64],
    *,
    all_equal: bool,
    method: BootstrapMethod,
    n_resamples: int,
    seed: int,
    confidence_level: float,
) -> tuple[tuple[float, float], str, str]:
    note = ""
    if all_equal:
        method = "percentile"
        note = "all differences are equal: BCa is undefined, the percentile interval is a point"
    result = stats.bootstrap(
        (d,),
        np.mean,
        confidence_level=confidence_level,
        n_resamples=n_resamples,
        method=method,
        rng=np.random.default_rng(seed),
    )
    ci = result.confidence_interval
    label = f"{method} (scipy.stats.bootstrap of the mean of sct - ct, lesions resampled)"
    return (float(ci.low), float(ci.high)), label, note


def _effect_sizes(ct: NDArray[np.float64], sct: NDArray[np.float64]) -> tuple[float, float]:
    """Cohen's d_z and d_av of ``sct - ct`` (pingouin); NaN where the denominator is zero."""
    import pingouin

    d_z = math.nan
    if not _all_equal(ct, sct):
        d_z = float(pingouin.compute_effsize(sct, ct, paired=True, eftype="cohen_dz"))
    d_av = math.nan
    if np.ptp(ct) > 0 or np.ptp(sct) > 0:
        d_av = float(pingouin.compute_effsize(sct, ct, paired=True, eftype="cohen"))
    return d_z, d_av


def compare_paired(
    ct_values: ArrayLike,
    sct_values: ArrayLike,
    *,
    name: str,
    unit: str,
    label: str | None = None,
    seed: int = 0,
    confidence_level: float = 0.95,
    zero_method: ZeroMethod = "wilcox",
    bootstrap_method: BootstrapMethod = "BCa",
    n_resamples: int = BOOTSTRAP_N_RESAMPLES,
) -> PairedComparison:
    """Compare CT and sCT values of one quantity measured on the same lesions.

    Parameters
    ----------
    ct_values, sct_values : (n,) array_like
        One value per lesion, same order, n >= 2, finite (e.g. the ROI mean in HU, or a
        diameter in mm with 0 mm for a lesion that is not visible, as the paper reports).
    name : str
        Short identifier of the quantity (e.g. ``"mean_hu"``, ``"diameter_axial_mm"``).
    unit : str
        Unit of the values (e.g. ``"HU"``, ``"mm"``); lower-cased it ends every key of
        ``to_dict()`` that carries it.
    label : str, optional
        Human-readable name for text (default: ``name`` with spaces for underscores).
    seed : int
        Seed of ``numpy.random.default_rng`` for the bootstrap: the same seed gives the same CI.
    confidence_level : float
        Two-sided level of every CI (default 0.95).
    zero_method : {"wilcox", "pratt", "zsplit"}
        Zero-difference rule of the Wilcoxon signed-rank test (default: drop zeros).
    bootstrap_method : {"BCa", "percentile", "basic"}
        Bootstrap interval (default BCa).
    n_resamples : int
        Bootstrap resamples (default 9,999).

    Returns
    -------
    PairedComparison
        Descriptives of CT, sCT and the differences ``sct - ct``; Student's paired t-test; the
        Wilcoxon signed-rank test; the mean difference with t-based and bootstrap CIs;
        Bland-Altman; Cohen's d_z and d_av. The module docstring states each convention.

    Raises
    ------
    StatisticsInputError
        Unequal lengths, fewer than 2 pairs, NaN or infinite values, non-numbers, a bad option.

    Examples
    --------
    >>> r = compare_paired([113, 280, 551, 608, 766], [20, 15, 12, 30, 27],
    ...                    name="mean_hu", unit="HU")
    >>> r.wilcoxon.p_value, bool(r.t_test.p_value < 0.05)
    (0.0625, True)
    """
    ct, sct = paired_values(ct_values, sct_values)
    check_confidence(confidence_level)
    if zero_method not in ("wilcox", "pratt", "zsplit"):
        raise StatisticsInputError(
            f"unknown zero_method {zero_method!r}",
            path="zero_method",
            fix='use "wilcox", "pratt" or "zsplit"',
        )
    if bootstrap_method not in ("BCa", "percentile", "basic"):
        raise StatisticsInputError(
            f"unknown bootstrap_method {bootstrap_method!r}",
            path="bootstrap_method",
            fix='use "BCa", "percentile" or "basic"',
        )
    if int(n_resamples) < 1:
        raise StatisticsInputError(
            f"n_resamples must be positive, got {n_resamples!r}", path="n_resamples"
        )
    d = sct - ct
    t_ci = _t_interval(ct, sct, confidence_level=confidence_level)
    boot_ci, boot_label, boot_note = _bootstrap_ci(
        d,
        all_equal=_all_equal(ct, sct),
        method=bootstrap_method,
        n_resamples=int(n_resamples),
        seed=seed,
        confidence_level=confidence_level,
    )
    cohen_dz, cohen_d_av = _effect_sizes(ct, sct)
    return PairedComparison(
        name=name,
        unit=unit,
        label=label if label is not None else name.replace("_", " "),
        n_pairs=int(d.size),
        ct=describe(ct, name="ct_values"),
        sct=describe(sct, name="sct_values"),
        difference=describe(d, name="sct_values - ct_values"),
        mean_difference=float(np.mean(d)),
        mean_difference_ci=t_ci,
        bootstrap_ci=boot_ci,
        bootstrap_method=boot_label,
        bootstrap_n_resamples=int(n_resamples),
        bootstrap_seed=int(seed),
        bootstrap_note=boot_note,
        t_test=_t_test(ct, sct),
        wilcoxon=_wilcoxon(ct, sct, zero_method=zero_method),
        bland_altman=bland_altman(ct, sct, confidence_level=confidence_level),
        cohen_dz=cohen_dz,
        cohen_d_av=cohen_d_av,
        confidence_level=confidence_level,
    )
