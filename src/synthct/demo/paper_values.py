"""The numbers Fischer et al. (Acta Neurochirurgica 2025) report, labelled as theirs.

These are the only hand-typed numbers in the demo report; everything else is computed by the run.
Source: the paper's Results ("Radiological features") and Methods ("Statistical analysis"):
Stata v18, chi-square and Student's t-tests, alpha 0.05.
"""

from __future__ import annotations

from typing import Any

CITATION = (
    "Fischer G, et al. Synthetic CT fails to depict calcified intradural tumors. "
    "Acta Neurochirurgica 2025; doi 10.1007/s00701-025-06731-0"
)

#: Per-quantity values: CT, sCT and the p-value of the paper's test.
PAPER_RESULTS: dict[str, dict[str, Any]] = {
    "n_lesions": {"value": 5},
    "visible": {"ct": "5/5 (100%)", "sct": "0/5 (0%)", "test": "chi-square", "p": None,
                "note": "visible on the MRI source in 5/5; well visible on CT in 4/5"},
    "diameter_axial_mm": {"ct": 11.6, "sct": 0.0, "test": "Student's t-test", "p": "< 0.001"},
    "diameter_sagittal_mm": {"ct": 19.6, "sct": 0.0, "test": "Student's t-test", "p": "0.017"},
    "mean_hu": {"ct": 463.6, "sct": 20.9, "test": "Student's t-test", "p": "0.034"},
}  # fmt: skip

#: The patient levels the paper names (Results and Figs. 1-3).
PAPER_LEVELS = ("C5/6", "T1/2", "T4/5", "T5-7", "T8/9")
