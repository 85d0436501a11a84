"""Cohort statistics of a lesion-level sCT validation: the paper's tests and the right ones.

The paper (Fischer et al. 2025) compared CT and sCT over 5 lesions with Student's paired
t-test and a chi-square test (Stata). For such small paired samples this package adds the
Wilcoxon signed-rank test (exact p), the exact McNemar test, confidence intervals (t-based and
bootstrap) and Bland-Altman limits of agreement. Every test is a call into scipy.stats,
statsmodels or pingouin; each module's docstring states its conventions.

* :mod:`.descriptives`: :func:`describe` (mean, SD with ``ddof=1``, median, range, quartiles)
  and :func:`describe_proportion` (Wilson or Clopper-Pearson CI).
* :mod:`.paired`: :func:`compare_paired` for a quantity measured on CT and sCT (differences
  ``sct - ct``) and :func:`bland_altman`.
* :mod:`.visibility`: :func:`compare_visibility` for visible on CT vs visible on sCT.
* :mod:`.cohort`: :func:`cohort_statistics` from per-lesion records (dicts or a DataFrame).
* :mod:`.summary_text`: :func:`results_paragraph`, the Results paragraph from the numbers.

Results are frozen dataclasses whose ``to_dict()`` is flat and JSON-ready (NaN stays NaN),
with units in the keys and the name and settings of every test.
"""

from __future__ import annotations

from synthct.validation.statistics._common import (
    HypothesisTestResult,
    StatisticsInputError,
    unit_key,
)
from synthct.validation.statistics.cohort import (
    DEFAULT_QUANTITIES,
    VISIBILITY_COLUMNS,
    CohortStatistics,
    PairedQuantity,
    cohort_statistics,
)
from synthct.validation.statistics.descriptives import (
    Descriptives,
    Proportion,
    describe,
    describe_proportion,
)
from synthct.validation.statistics.paired import (
    BOOTSTRAP_N_RESAMPLES,
    LOA_SD_MULTIPLIER,
    BlandAltman,
    PairedComparison,
    bland_altman,
    compare_paired,
)
from synthct.validation.statistics.summary_text import format_p_value, results_paragraph
from synthct.validation.statistics.visibility import VisibilityComparison, compare_visibility

__all__ = [
    "BOOTSTRAP_N_RESAMPLES",
    "DEFAULT_QUANTITIES",
    "LOA_SD_MULTIPLIER",
    "VISIBILITY_COLUMNS",
    "BlandAltman",
    "CohortStatistics",
    "Descriptives",
    "HypothesisTestResult",
    "PairedComparison",
    "PairedQuantity",
    "Proportion",
    "StatisticsInputError",
    "VisibilityComparison",
    "bland_altman",
    "cohort_statistics",
    "compare_paired",
    "compare_visibility",
    "describe",
    "describe_proportion",
    "format_p_value",
    "results_paragraph",
    "unit_key",
]
