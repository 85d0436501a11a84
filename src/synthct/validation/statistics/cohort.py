"""All cohort comparisons from per-lesion records (one row per lesion, CT and sCT columns).

A record holds, for one lesion, ``ct_<quantity>`` and ``sct_<quantity>`` for each paired
quantity and ``ct_visible`` / ``sct_visible`` (the column names of
:meth:`synthct.validation.lesion_metrics.LesionResult.to_dict`). :func:`cohort_statistics`
runs :func:`~synthct.validation.statistics.paired.compare_paired` on each quantity and
:func:`~synthct.validation.statistics.visibility.compare_visibility` on the flags.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

from synthct.validation.statistics._common import StatisticsInputError
from synthct.validation.statistics.descriptives import ProportionCIMethod
from synthct.validation.statistics.paired import (
    BOOTSTRAP_N_RESAMPLES,
    PairedComparison,
    ZeroMethod,
    compare_paired,
)
from synthct.validation.statistics.visibility import VisibilityComparison, compare_visibility

__all__ = [
    "DEFAULT_QUANTITIES",
    "VISIBILITY_COLUMNS",
    "CohortStatistics",
    "PairedQuantity",
    "cohort_statistics",
]


class PairedQuantity(NamedTuple):
    """A quantity measured on CT and sCT: columns ``ct_<name>`` and ``sct_<name>``."""

    name: str
    unit: str
    label: str


#: The paper's quantities: ROI mean density and maximal axial and sagittal diameters.
DEFAULT_QUANTITIES: tuple[PairedQuantity, ...] = (
    PairedQuantity("mean_hu", "HU", "Mean density of the lesion ROI"),
    PairedQuantity("diameter_axial_mm", "mm", "Maximal axial diameter"),
    PairedQuantity("diameter_sagittal_mm", "mm", "Maximal sagittal diameter"),
)
#: Columns of the visibility flags on CT and on sCT.
VISIBILITY_COLUMNS: tuple[str, str] = ("ct_visible", "sct_visible")


@dataclass(frozen=True)
class CohortStatistics:
    """Every cohort comparison: visibility (None without the flag columns) and each quantity.

    ``comparisons`` maps the quantity name (e.g. ``"mean_hu"``) to its comparison, in the
    order the quantities were given.
    """

    n_lesions: int
    visibility: VisibilityComparison | None
    comparisons: dict[str, PairedComparison]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``n_lesions``, ``visibility`` (a dict or None), ``comparisons`` by name."""
        return {
            "n_lesions": self.n_lesions,
            "visibility": None if self.visibility is None else self.visibility.to_dict(),
            "comparisons": {name: c.to_dict() for name, c in self.comparisons.items()},
        }


_MISSING = object()


def _columns(records: Any) -> tuple[int, dict[str, list[Any]]]:
    """Number of lesions and the values of each column (a DataFrame or a list of mappings)."""
    if hasattr(records, "columns") and hasattr(records, "to_dict"):  # a pandas DataFrame
        columns = {str(k): list(v) for k, v in records.to_dict(orient="list").items()}
        return len(records), columns
    if isinstance(records, Mapping) or not isinstance(records, Iterable):
        raise StatisticsInputError(
            f"expected a list of per-lesion dicts or a DataFrame, got {type(records).__name__}",
            path="records",
            fix="pass one dict per lesion (e.g. LesionResult.to_dict()) or a pandas DataFrame",
        )
    rows = list(records)
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise StatisticsInputError(
                f"record {i} is a {type(row).__name__}, not a mapping",
                path=f"records[{i}]",
                fix="pass one dict per lesion",
            )
    keys = {str(key) for row in rows for key in row}
    return len(rows), {key: [row.get(key, _MISSING) for row in rows] for key in keys}


def _column(columns: dict[str, list[Any]], key: str) -> list[Any]:
    values = columns[key]
    missing = [i for i, value in enumerate(values) if value is _MISSING]
    if missing:
        raise StatisticsInputError(
            f"column {key!r} is missing from record(s) {missing}",
            path=f"records[{missing[0]}]",
            fix=f"give every lesion a {key!r} value, or leave the lesion out",
        )
    return values


@contextmanager
def _naming_columns(parameter_to_column: dict[str, str]) -> Iterator[None]:
    """Re-raise an input error of the comparison functions with the record column's name."""
    try:
        yield
    except StatisticsInputError as exc:
        column = parameter_to_column.get(exc.path or "", exc.path)
        raise StatisticsInputError(
            f"column {column!r}: {exc.problem}", path="records", fix=exc.fix
        ) from exc


def _quantities(
    quantities: Sequence[PairedQuantity | tuple[str, str] | tuple[str, str, str]] | None,
    columns: dict[str, list[Any]],
) -> list[PairedQuantity]:
    if quantities is None:
        chosen = []
        for q in DEFAULT_QUANTITIES:
            have = [f"{m}_{q.name}" in columns for m in ("ct", "sct")]
            if all(have):
                chosen.append(q)
            elif any(have):
                missing = f"{'sct' if have[0] else 'ct'}_{q.name}"
                raise StatisticsInputError(
                    f"column {missing!r} is missing although its pair is there",
                    path="records",
                    fix=f"add {missing!r} to every record, or drop its pair",
                )
        return chosen
    out = []
    for spec in quantities:
        name, unit, *rest = spec
        item = PairedQuantity(name, unit, rest[0] if rest else name.replace("_", " "))
        for column in (f"ct_{name}", f"sct_{name}"):
            if column not in columns:
                raise StatisticsInputError(
                    f"quantity {name!r} needs column {column!r}, which the records lack",
                    path="quantities",
                    fix=f"add ct_{name} and sct_{name} to the records, or drop {name!r}",
                )
        out.append(item)
    return out


def cohort_statistics(
    records: Any,
    *,
    quantities: Sequence[PairedQuantity | tuple[str, str] | tuple[str, str, str]] | None = None,
    visibility_columns: tuple[str, str] = VISIBILITY_COLUMNS,
    seed: int = 0,
    confidence_level: float = 0.95,
    zero_method: ZeroMethod = "wilcox",
    n_resamples: int = BOOTSTRAP_N_RESAMPLES,
    yates_correction: bool = False,
    proportion_ci_method: ProportionCIMethod = "wilson",
) -> CohortStatistics:
    """Compare CT and sCT over a cohort of lesions: visibility and each paired quantity.

    Parameters
    ----------
    records : list of dict or pandas.DataFrame
        One record per lesion (e.g. ``LesionResult.to_dict()`` rows) with ``ct_<name>`` and
        ``sct_<name>`` columns for each quantity and the two visibility columns.
    quantities : sequence of PairedQuantity or (name, unit[, label]), optional
        Quantities to compare; each must have both columns. Default: those of
        :data:`DEFAULT_QUANTITIES` (``mean_hu`` in HU, ``diameter_axial_mm`` and
        ``diameter_sagittal_mm`` in mm) whose two columns are present.
    visibility_columns : (str, str)
        CT and sCT visibility columns; compared when both are present.
    seed : int
        Bootstrap seed, the same for every quantity (results are deterministic for a seed).
    confidence_level, zero_method, n_resamples
        As in :func:`~synthct.validation.statistics.paired.compare_paired`.
    yates_correction, proportion_ci_method
        As in :func:`~synthct.validation.statistics.visibility.compare_visibility`.

    Returns
    -------
    CohortStatistics

    Raises
    ------
    StatisticsInputError
        Records that are not a list of mappings or a DataFrame, a column present for one
        modality only, a missing or NaN value, fewer than 2 lesions, or nothing to compare.
    """
    n_lesions, columns = _columns(records)
    chosen = _quantities(quantities, columns)
    have_flags = [column in columns for column in visibility_columns]
    if any(have_flags) and not all(have_flags):
        missing = visibility_columns[have_flags.index(False)]
        raise StatisticsInputError(
            f"visibility column {missing!r} is missing although its pair is there",
            path="visibility_columns",
            fix=f"add {missing!r} to every record, or drop the other visibility column",
        )
    if not chosen and not all(have_flags):
        raise StatisticsInputError(
            "the records have no paired CT/sCT columns to compare "
            f"(looked for ct_/sct_ {[q.name for q in DEFAULT_QUANTITIES]} and "
            f"{list(visibility_columns)})",
            path="records",
            fix="pass LesionResult.to_dict() rows, or name the columns with quantities=...",
        )
    visibility = None
    if all(have_flags):
        ct_column, sct_column = visibility_columns
        ct_flags, sct_flags = _column(columns, ct_column), _column(columns, sct_column)
        with _naming_columns({"ct_visible": ct_column, "sct_visible": sct_column}):
            visibility = compare_visibility(
                ct_flags,
                sct_flags,
                yates_correction=yates_correction,
                proportion_ci_method=proportion_ci_method,
                confidence_level=confidence_level,
            )
    comparisons = {}
    for q in chosen:
        ct_column, sct_column = f"ct_{q.name}", f"sct_{q.name}"
        ct_values, sct_values = _column(columns, ct_column), _column(columns, sct_column)
        with _naming_columns({"ct_values": ct_column, "sct_values": sct_column}):
            comparisons[q.name] = compare_paired(
                ct_values,
                sct_values,
                name=q.name,
                unit=q.unit,
                label=q.label,
                seed=seed,
                confidence_level=confidence_level,
                zero_method=zero_method,
                n_resamples=n_resamples,
            )
    return CohortStatistics(n_lesions=n_lesions, visibility=visibility, comparisons=comparisons)
