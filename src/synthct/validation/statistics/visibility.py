"""Paired comparison of a binary outcome (lesion visible on CT, visible on sCT).

Conventions
-----------
* The paper's test [1]_: a chi-square test on the 2x2 table modality (CT, sCT) x visible
  (yes, no), ``scipy.stats.chi2_contingency``. It treats the two modalities as independent
  groups although each lesion appears in both. ``correction=False`` by default: Pearson's
  chi-square without continuity correction, which is what Stata's ``tabulate ..., chi2`` (the
  paper's software) reports, whereas scipy would apply Yates' correction to a 2x2 table by
  default; the Yates-corrected p-value is reported beside it. For 5/5 vs 0/5 that is
  chi2 = 10.0, p = 0.0016 (Yates: 6.4, p = 0.011). With expected counts below 5 (always so
  with 5 lesions) the approximation is poor, and the result says so.
* Fisher's exact test on the same table (``scipy.stats.fisher_exact``), the exact
  counterpart for independent groups (Stata's ``tabulate ..., exact``).
* The paired test is the exact McNemar test [2]_ on the table CT visible (yes, no) x sCT
  visible (yes, no): ``statsmodels.stats.contingency_tables.mcnemar(exact=True)``, a two-sided
  binomial test of the discordant pairs against 1/2. For 5/5 vs 0/5 it gives p = 2 / 2**5 =
  0.0625, the smallest value 5 lesions allow.
* Degenerate tables: with an empty row or column of the modality table (e.g. every lesion
  visible on both, or on neither) the chi-square is undefined (0/0): statistic and p are NaN
  with a note, and Fisher's test gives p = 1. With no discordant pair McNemar gives p = 1
  (statsmodels' binomial test with 0 trials), with a note.
* Proportions carry a Wilson score CI by default (see
  :mod:`synthct.validation.statistics.descriptives`).

References
----------
.. [1] K. Pearson, "On the criterion that a given system of deviations from the probable...",
   Philos Mag 50(302), 1900; F. Yates, "Contingency tables involving small numbers and the
   chi2 test", J R Stat Soc Suppl 1(2), 1934.
.. [2] Q. McNemar, "Note on the sampling error of the difference between correlated
   proportions or percentages", Psychometrika 12(2), 1947.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from synthct.validation.statistics._common import (
    HypothesisTestResult,
    StatisticsInputError,
    flags,
)
from synthct.validation.statistics.descriptives import (
    Proportion,
    ProportionCIMethod,
    describe_proportion,
)

__all__ = ["VisibilityComparison", "compare_visibility"]

Table2x2 = tuple[tuple[int, int], tuple[int, int]]


@dataclass(frozen=True)
class VisibilityComparison:
    """Visible on CT vs visible on sCT over the same lesions.

    ``paired_table`` is ``((both, ct_only), (sct_only, neither))``: rows CT visible yes/no,
    columns sCT visible yes/no (McNemar's table). ``modality_table`` is
    ``((ct_visible, ct_not_visible), (sct_visible, sct_not_visible))`` (the chi-square's).
    """

    n_lesions: int
    ct: Proportion
    sct: Proportion
    paired_table: Table2x2
    modality_table: Table2x2
    chi_square: HypothesisTestResult
    chi_square_yates_p: float
    chi_square_min_expected_count: float
    fisher_exact: HypothesisTestResult
    mcnemar: HypothesisTestResult

    def to_dict(self) -> dict[str, Any]:
        """Flat, JSON-ready values with the name and settings of every test."""
        (both, ct_only), (sct_only, neither) = self.paired_table
        out: dict[str, Any] = {"n_lesions": self.n_lesions}
        out.update(self.ct.to_dict(prefix="ct_visible_"))
        out.update(self.sct.to_dict(prefix="sct_visible_"))
        out.update(
            {
                "both_visible_count": both,
                "ct_only_visible_count": ct_only,
                "sct_only_visible_count": sct_only,
                "neither_visible_count": neither,
            }
        )
        out.update(self.chi_square.to_dict(prefix="chi_square"))
        out["chi_square_yates_p"] = self.chi_square_yates_p
        out["chi_square_min_expected_count"] = self.chi_square_min_expected_count
        out.update(self.fisher_exact.to_dict(prefix="fisher_exact"))
        out.update(self.mcnemar.to_dict(prefix="mcnemar"))
        return out


def _chi_square(
    table: NDArray[np.int64], *, yates_correction: bool
) -> tuple[HypothesisTestResult, float, float]:
    """The chosen chi-square, the Yates-corrected p and the smallest expected count."""
    name = "Pearson chi-square test of modality x visible"
    if yates_correction:
        kind = "Yates continuity correction"
    else:
        kind = "no continuity correction, as Stata's tabulate, chi2"
    method = (
        f"scipy.stats.chi2_contingency(correction={yates_correction}); {kind}; "
        "ignores the pairing (the paper's test)"
    )
    if np.any(table.sum(axis=0) == 0) or np.any(table.sum(axis=1) == 0):
        note = "undefined: a row or column of the table is empty (no variation to test)"
        result = HypothesisTestResult(name, math.nan, math.nan, method, df=1.0, note=note)
        return result, math.nan, math.nan
    chosen = stats.chi2_contingency(table, correction=yates_correction)
    yates = stats.chi2_contingency(table, correction=True)
    min_expected = float(np.min(chosen.expected_freq))
    note = ""
    if min_expected < 5:
        note = f"smallest expected count {min_expected:g} < 5: the chi-square approximation is poor"
    result = HypothesisTestResult(
        name,
        float(chosen.statistic),
        float(chosen.pvalue),
        method,
        df=float(chosen.dof),
        note=note,
    )
    return result, float(yates.pvalue), min_expected


def compare_visibility(
    ct_visible: ArrayLike,
    sct_visible: ArrayLike,
    *,
    yates_correction: bool = False,
    proportion_ci_method: ProportionCIMethod = "wilson",
    confidence_level: float = 0.95,
) -> VisibilityComparison:
    """Compare lesion visibility on CT and on sCT over the same lesions.

    Parameters
    ----------
    ct_visible, sct_visible : (n,) array_like of bool
        Visible or not, one flag per lesion, same order (1/0 accepted), n >= 2.
    yates_correction : bool
        Continuity correction of the chi-square (default False: Pearson's chi-square as
        Stata's ``tabulate, chi2`` reports it; the corrected p-value is reported as well).
    proportion_ci_method : {"wilson", "beta"}
        CI of each proportion: Wilson score (default) or Clopper-Pearson.
    confidence_level : float
        Level of the proportion CIs (default 0.95).

    Returns
    -------
    VisibilityComparison
        Proportions with CIs, the paired and the modality 2x2 tables, the paper's chi-square,
        Fisher's exact test, and the exact McNemar test on the paired table.

    Raises
    ------
    StatisticsInputError
        Unequal lengths, fewer than 2 lesions, or flags that are not booleans.

    Examples
    --------
    >>> v = compare_visibility([True] * 5, [False] * 5)
    >>> float(v.mcnemar.p_value), float(v.chi_square.statistic)
    (0.0625, 10.0)
    """
    from statsmodels.stats.contingency_tables import mcnemar

    ct = flags(ct_visible, name="ct_visible")
    sct = flags(sct_visible, name="sct_visible")
    if ct.size != sct.size:
        raise StatisticsInputError(
            f"{ct.size} CT flags but {sct.size} sCT flags; they must be paired by lesion",
            path="sct_visible",
            fix="pass one CT and one sCT flag per lesion, in the same order",
        )
    if ct.size < 2:
        raise StatisticsInputError(
            f"{ct.size} lesion(s) given but at least 2 are needed",
            path="ct_visible",
            fix="pass at least 2 lesions",
        )
    n = int(ct.size)
    both = int(np.sum(ct & sct))
    ct_only = int(np.sum(ct & ~sct))
    sct_only = int(np.sum(~ct & sct))
    neither = n - both - ct_only - sct_only
    k_ct, k_sct = both + ct_only, both + sct_only
    paired = np.array([[both, ct_only], [sct_only, neither]], dtype=np.int64)
    modality = np.array([[k_ct, n - k_ct], [k_sct, n - k_sct]], dtype=np.int64)

    chi_square, yates_p, min_expected = _chi_square(modality, yates_correction=yates_correction)
    fisher = stats.fisher_exact(modality)
    mc = mcnemar(paired, exact=True)
    discordant = ct_only + sct_only
    return VisibilityComparison(
        n_lesions=n,
        ct=describe_proportion(
            k_ct, n, method=proportion_ci_method, confidence_level=confidence_level
        ),
        sct=describe_proportion(
            k_sct, n, method=proportion_ci_method, confidence_level=confidence_level
        ),
        paired_table=((both, ct_only), (sct_only, neither)),
        modality_table=((k_ct, n - k_ct), (k_sct, n - k_sct)),
        chi_square=chi_square,
        chi_square_yates_p=yates_p,
        chi_square_min_expected_count=min_expected,
        fisher_exact=HypothesisTestResult(
            "Fisher's exact test of modality x visible",
            float(fisher.statistic),
            float(fisher.pvalue),
            "scipy.stats.fisher_exact, two-sided; statistic is the sample odds ratio; "
            "ignores the pairing",
        ),
        mcnemar=HypothesisTestResult(
            "McNemar test (exact)",
            float(mc.statistic),
            float(mc.pvalue),
            "statsmodels mcnemar(exact=True): two-sided binomial test of the discordant pairs; "
            "statistic is the smaller discordant count",
            note="" if discordant else "no discordant pair: p = 1, no evidence of a difference",
        ),
    )
