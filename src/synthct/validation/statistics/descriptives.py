"""Descriptive statistics of one sample and proportions with a confidence interval.

Conventions
-----------
* SD is the sample SD (``ddof=1``), as Stata's ``summarize`` reports it; NaN for one value.
* Percentiles are numpy's default linear interpolation (type 7 of Hyndman & Fan [1]_), so
  p25/p75 may differ slightly from Stata's ``summarize, detail`` (which uses another type).
* A proportion's CI is the Wilson score interval [2]_ by default, or the exact Clopper-Pearson
  interval [3]_ (``method="beta"``), both from
  ``statsmodels.stats.proportion.proportion_confint``.

References
----------
.. [1] R. J. Hyndman, Y. Fan, "Sample quantiles in statistical packages", Am Stat 50(4), 1996.
.. [2] E. B. Wilson, "Probable inference, the law of succession, and statistical inference",
   J Am Stat Assoc 22(158), 1927.
.. [3] C. J. Clopper, E. S. Pearson, "The use of confidence or fiducial limits illustrated in
   the case of the binomial", Biometrika 26(4), 1934.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from synthct.validation.statistics._common import (
    StatisticsInputError,
    check_confidence,
    finite_values,
)

__all__ = ["Descriptives", "Proportion", "ProportionCIMethod", "describe", "describe_proportion"]

ProportionCIMethod = Literal["wilson", "beta"]
_CI_NAMES = {"wilson": "Wilson score", "beta": "Clopper-Pearson exact"}


@dataclass(frozen=True)
class Descriptives:
    """n, mean, SD (``ddof=1``; NaN for one value), median, range and quartiles of a sample."""

    n: int
    mean: float
    sd: float
    median: float
    minimum: float
    maximum: float
    p25: float
    p75: float

    def to_dict(self, *, prefix: str = "", unit: str = "") -> dict[str, Any]:
        """Flat values: ``prefix`` before and ``_unit`` after each key (``n`` has no unit)."""
        u = f"_{unit}" if unit else ""
        return {
            f"{prefix}n": self.n,
            f"{prefix}mean{u}": self.mean,
            f"{prefix}sd{u}": self.sd,
            f"{prefix}median{u}": self.median,
            f"{prefix}min{u}": self.minimum,
            f"{prefix}max{u}": self.maximum,
            f"{prefix}p25{u}": self.p25,
            f"{prefix}p75{u}": self.p75,
        }


@dataclass(frozen=True)
class Proportion:
    """``count`` of ``n`` with a two-sided confidence interval of the proportion (0 to 1)."""

    count: int
    n: int
    proportion: float
    ci_low: float
    ci_high: float
    ci_method: str
    confidence_level: float

    def to_dict(self, *, prefix: str = "") -> dict[str, Any]:
        """Flat values, each key starting with ``prefix``."""
        return {
            f"{prefix}count": self.count,
            f"{prefix}n": self.n,
            f"{prefix}proportion": self.proportion,
            f"{prefix}ci_low": self.ci_low,
            f"{prefix}ci_high": self.ci_high,
            f"{prefix}ci_method": self.ci_method,
        }


def describe(values: ArrayLike, *, name: str = "values") -> Descriptives:
    """Descriptive statistics of one sample.

    Parameters
    ----------
    values : (n,) array_like
        Finite numbers, n >= 1.
    name : str
        Parameter name used in error messages.

    Returns
    -------
    Descriptives
        n, mean, sample SD (``ddof=1``; NaN when n = 1), median, min, max and the 25th and
        75th percentiles (numpy's linear interpolation, Hyndman & Fan type 7).

    Raises
    ------
    StatisticsInputError
        No value, NaN or infinite values, or values that are not numbers.

    Examples
    --------
    >>> d = describe([1.0, 2.0, 3.0, 4.0, 5.0])
    >>> d.mean, d.median, d.p25, d.p75
    (3.0, 3.0, 2.0, 4.0)
    """
    x = finite_values(values, name=name, min_n=1)
    p25, median, p75 = np.percentile(x, [25.0, 50.0, 75.0])
    return Descriptives(
        n=int(x.size),
        mean=float(np.mean(x)),
        sd=float(np.std(x, ddof=1)) if x.size > 1 else math.nan,
        median=float(median),
        minimum=float(np.min(x)),
        maximum=float(np.max(x)),
        p25=float(p25),
        p75=float(p75),
    )


def describe_proportion(
    count: int,
    n: int,
    *,
    method: ProportionCIMethod = "wilson",
    confidence_level: float = 0.95,
) -> Proportion:
    """A proportion ``count / n`` with its two-sided confidence interval.

    Parameters
    ----------
    count, n : int
        Successes and trials, ``0 <= count <= n`` and ``n >= 1``.
    method : {"wilson", "beta"}
        Wilson score interval (default) or exact Clopper-Pearson (``"beta"``), both from
        ``statsmodels.stats.proportion.proportion_confint``.
    confidence_level : float
        Two-sided confidence level (default 0.95).

    Returns
    -------
    Proportion

    Raises
    ------
    StatisticsInputError
        ``n < 1``, ``count`` outside ``[0, n]``, an unknown method or a bad level.

    Examples
    --------
    >>> p = describe_proportion(0, 5)
    >>> p.proportion, p.ci_low, round(p.ci_high, 3)
    (0.0, 0.0, 0.434)
    """
    from statsmodels.stats.proportion import proportion_confint

    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise StatisticsInputError(f"n must be a positive integer, got {n!r}", path="n")
    if isinstance(count, bool) or not isinstance(count, int | np.integer) or not 0 <= count <= n:
        raise StatisticsInputError(
            f"count must be an integer between 0 and n = {n}, got {count!r}", path="count"
        )
    if method not in _CI_NAMES:
        raise StatisticsInputError(
            f"unknown proportion CI method {method!r}",
            path="method",
            fix='use "wilson" or "beta" (Clopper-Pearson)',
        )
    check_confidence(confidence_level)
    low, high = proportion_confint(int(count), int(n), alpha=1 - confidence_level, method=method)
    return Proportion(
        count=int(count),
        n=int(n),
        proportion=int(count) / int(n),
        ci_low=float(low),
        ci_high=float(high),
        ci_method=f"{_CI_NAMES[method]} (statsmodels proportion_confint, method={method!r})",
        confidence_level=confidence_level,
    )
