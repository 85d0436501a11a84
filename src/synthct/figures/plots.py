"""Cohort plots of a validation: Bland-Altman, CT vs sCT per lesion, visibility (CNR).

Plain functions: values in, PNG out (written atomically through :func:`save_figure`), the
statistics passed in rather than recomputed, so a plot shows exactly the numbers of the
tables (the bias and limits of agreement come from
:func:`synthct.validation.statistics.bland_altman`). Differences are ``sCT - CT`` throughout.
matplotlib is imported inside the functions with the Agg backend.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from synthct.io.atomic import atomic_file

__all__ = [
    "bland_altman_figure",
    "paired_values_figure",
    "save_figure",
    "visibility_figure",
]

_CT_COLOR = "#1f77b4"
_SCT_COLOR = "#d62728"


def save_figure(fig: Any, path: str | os.PathLike[str], *, dpi: int = 100) -> Path:
    """Save a matplotlib figure as PNG atomically, close it and return the path.

    The figure is saved at its own size (no tight bounding box), so the PNG measures
    ``figsize * dpi`` pixels.
    """
    import matplotlib.pyplot as plt

    final = Path(path)
    try:
        with atomic_file(final) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return final


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _paired(ct_values: ArrayLike, sct_values: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    ct = np.asarray(ct_values, dtype=np.float64)
    sct = np.asarray(sct_values, dtype=np.float64)
    if ct.shape != sct.shape or ct.ndim != 1:
        raise ValueError(f"CT {ct.shape} and sCT {sct.shape} values must be paired 1-D vectors")
    return ct, sct


def bland_altman_figure(
    path: str | os.PathLike[str],
    ct_values: ArrayLike,
    sct_values: ArrayLike,
    *,
    bias: float,
    loa_lower: float,
    loa_upper: float,
    unit: str,
    label: str,
    point_labels: Sequence[str] | None = None,
    dpi: int = 100,
) -> Path:
    """Bland-Altman plot: ``sCT - CT`` against the mean of the pair, bias and limits drawn.

    Parameters
    ----------
    path : path
        Output PNG.
    ct_values, sct_values : (n,) array_like
        The paired values, one per lesion.
    bias, loa_lower, loa_upper : float
        Bias and limits of agreement as reported by the statistics (not recomputed here);
        a NaN limit is not drawn.
    unit, label : str
        Unit (e.g. ``"HU"``) and name of the quantity for the axes.
    point_labels : sequence of str, optional
        A short label per point (e.g. ``case/lesion``).
    """
    plt = _pyplot()
    ct, sct = _paired(ct_values, sct_values)
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    mean, difference = (ct + sct) / 2, sct - ct
    ax.scatter(mean, difference, color="black", s=18, zorder=3)
    for name, value, style in (
        ("bias", bias, "-"),
        ("lower LoA", loa_lower, "--"),
        ("upper LoA", loa_upper, "--"),
    ):
        if math.isfinite(value):
            ax.axhline(value, color=_SCT_COLOR, linestyle=style, linewidth=1)
            ax.annotate(
                f"{name} {value:.1f}",
                (1.0, value),
                xycoords=("axes fraction", "data"),
                xytext=(-2, 2),
                textcoords="offset points",
                ha="right",
                fontsize=7,
                color=_SCT_COLOR,
            )
    ax.axhline(0.0, color="grey", linewidth=0.6)
    for x, y, text in zip(mean, difference, point_labels or [], strict=False):
        ax.annotate(text, (x, y), xytext=(3, 3), textcoords="offset points", fontsize=6)
    ax.set_xlabel(f"mean of CT and sCT ({unit})")
    ax.set_ylabel(f"sCT - CT ({unit})")
    ax.set_title(f"Bland-Altman: {label}", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=dpi)


def paired_values_figure(
    path: str | os.PathLike[str],
    ct_values: ArrayLike,
    sct_values: ArrayLike,
    *,
    point_labels: Sequence[str],
    unit: str,
    label: str,
    dpi: int = 100,
) -> Path:
    """Per-lesion bars of the CT and sCT value side by side.

    Parameters
    ----------
    path : path
        Output PNG.
    ct_values, sct_values : (n,) array_like
        The paired values, one per lesion.
    point_labels : sequence of str
        One label per lesion for the x axis.
    unit, label : str
        Unit and name of the quantity.
    """
    plt = _pyplot()
    ct, sct = _paired(ct_values, sct_values)
    x = np.arange(ct.size)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * ct.size + 2.0), 3.4))
    ax.bar(x - 0.2, ct, width=0.4, color=_CT_COLOR, label="CT")
    ax.bar(x + 0.2, sct, width=0.4, color=_SCT_COLOR, label="sCT")
    ax.axhline(0.0, color="grey", linewidth=0.6)
    ax.set_xticks(x, list(point_labels), rotation=45, ha="right", fontsize=7)
    ax.set_ylabel(f"{label} ({unit})")
    ax.set_title(f"{label}: CT vs sCT per lesion", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path, dpi=dpi)


def visibility_figure(
    path: str | os.PathLike[str],
    ct_cnr: ArrayLike,
    sct_cnr: ArrayLike,
    *,
    point_labels: Sequence[str],
    threshold: float,
    dpi: int = 100,
) -> Path:
    """Per-lesion |CNR| on CT and sCT against the visibility threshold (Rose criterion).

    Infinite CNRs (a shell without noise) are drawn at the top of the axis. The |CNR|
    threshold alone does not make a lesion visible (the segmentation must also reach the
    minimum size); the tables give the flags.
    """
    plt = _pyplot()
    ct, sct = (np.abs(v) for v in _paired(ct_cnr, sct_cnr))
    finite = np.concatenate([ct[np.isfinite(ct)], sct[np.isfinite(sct)], [threshold, 1.0]])
    top = float(finite.max()) * 1.15
    x = np.arange(ct.size)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * ct.size + 2.0), 3.4))
    for values, shift, color, name in ((ct, -0.1, _CT_COLOR, "CT"), (sct, 0.1, _SCT_COLOR, "sCT")):
        shown = np.where(np.isfinite(values), values, top)
        ax.scatter(x + shift, shown, color=color, label=name, s=22, zorder=3)
    ax.axhline(threshold, color="black", linestyle="--", linewidth=1)
    ax.annotate(
        f"|CNR| = {threshold:g}",
        (0.0, threshold),
        xycoords=("axes fraction", "data"),
        xytext=(2, 2),
        textcoords="offset points",
        fontsize=7,
    )
    ax.set_ylim(0.0, top * 1.05)
    ax.set_xticks(x, list(point_labels), rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("|CNR| of lesion vs shell")
    ax.set_title("Visibility: |CNR| on CT and sCT", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path, dpi=dpi)
