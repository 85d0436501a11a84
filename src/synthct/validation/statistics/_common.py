"""Shared pieces of the cohort statistics: the input error, the test result, input checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from synthct.errors import SynthctError

__all__ = ["HypothesisTestResult", "StatisticsInputError"]


class StatisticsInputError(SynthctError, ValueError):
    """Values that cannot be compared: unequal lengths, too few pairs, NaN, non-numbers."""


@dataclass(frozen=True)
class HypothesisTestResult:
    """One test: what was run (``test``, ``method``), its statistic, p-value and any note.

    ``df`` is the degrees of freedom where the test has them, else None. ``note`` says why the
    p-value is NaN (or what else is special about it); it is empty when the test ran normally.
    """

    test: str
    statistic: float
    p_value: float
    method: str
    df: float | None = None
    note: str = ""

    def to_dict(self, *, prefix: str) -> dict[str, Any]:
        """Flat values: ``prefix`` names the test, then ``_statistic``, ``_p``, ..."""
        out: dict[str, Any] = {
            f"{prefix}_test": self.test,
            f"{prefix}_method": self.method,
            f"{prefix}_statistic": self.statistic,
            f"{prefix}_p": self.p_value,
        }
        if self.df is not None:
            out[f"{prefix}_df"] = self.df
        out[f"{prefix}_note"] = self.note
        return out


def unit_key(unit: str) -> str:
    """A unit as it ends a key: ``"HU"`` -> ``"hu"``, ``"mm^3"`` -> ``"mm_3"``, ``""`` -> ``""``."""
    key = "".join(c if c.isalnum() else "_" for c in unit.strip().lower())
    return "_".join(part for part in key.split("_") if part)


def check_confidence(confidence_level: float) -> None:
    """Raise unless ``0 < confidence_level < 1``."""
    if not 0.0 < confidence_level < 1.0:
        raise StatisticsInputError(
            f"confidence_level must be between 0 and 1, got {confidence_level!r}",
            path="confidence_level",
            fix="pass e.g. 0.95",
        )


def finite_values(values: ArrayLike, *, name: str, min_n: int) -> NDArray[np.float64]:
    """``values`` as a finite float64 vector of at least ``min_n`` elements."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise StatisticsInputError(
            f"the values are not all numbers ({exc})",
            path=name,
            fix="pass a sequence of numbers, one per lesion",
        ) from exc
    if array.ndim != 1:
        raise StatisticsInputError(
            f"expected a 1-D sequence (one value per lesion), got shape {array.shape}",
            path=name,
            fix="pass one number per lesion",
        )
    if array.size < min_n:
        raise StatisticsInputError(
            f"{array.size} value(s) given but at least {min_n} are needed",
            path=name,
            fix=f"pass at least {min_n} lesions",
        )
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise StatisticsInputError(
            f"{bad.size} value(s) are NaN or infinite, at position(s) {bad.tolist()}",
            path=name,
            fix="measure those lesions, or leave them out of both the CT and the sCT values",
        )
    return array


def paired_values(
    ct_values: ArrayLike, sct_values: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Finite float64 CT and sCT vectors of equal length, at least 2 pairs."""
    ct = finite_values(ct_values, name="ct_values", min_n=0)
    sct = finite_values(sct_values, name="sct_values", min_n=0)
    if ct.size != sct.size:
        raise StatisticsInputError(
            f"{ct.size} CT values but {sct.size} sCT values; they must be paired by lesion",
            path="sct_values",
            fix="pass one CT and one sCT value per lesion, in the same order",
        )
    if ct.size < 2:
        raise StatisticsInputError(
            f"{ct.size} pair(s) given but the paired tests need at least 2",
            path="ct_values",
            fix="pass at least 2 lesions",
        )
    return ct, sct


def flags(values: ArrayLike, *, name: str) -> NDArray[np.bool_]:
    """Booleans (True/False or 1/0) as a bool vector; anything else (NaN, None) is an error."""
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise StatisticsInputError(
            f"visibility flags cannot be read as an array ({exc})", path=name
        ) from exc
    if array.ndim != 1:
        raise StatisticsInputError(
            f"expected a 1-D sequence (one flag per lesion), got shape {array.shape}",
            path=name,
            fix="pass one True/False per lesion",
        )
    if array.dtype == np.bool_:
        return array
    if array.dtype.kind in "iuf" and bool(np.all(np.isin(array, (0, 1)))):
        return array.astype(bool)
    raise StatisticsInputError(
        f"visibility must be True/False (or 1/0), got {array.tolist()!r}",
        path=name,
        fix="pass booleans; leave out a lesion that was not assessed instead of using NaN/None",
    )
