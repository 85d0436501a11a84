"""What `synthct demo` runs (:class:`DemoSettings`), its methods, stages and cohort.

Its own module so that the stages (:mod:`synthct.demo.stages`, :mod:`synthct.demo.audit_stage`)
and the driver (:mod:`synthct.demo.pipeline`) import it without importing each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from synthct.errors import SynthctError
from synthct.settings import SettingsBase

#: The methods compared, in report order: name -> label.
METHODS = {
    "product_like": "synthct, product-like model (no intradural lesions in training)",
    "lesion_aware": "synthct, lesion-aware model",
    "baseline": "synthct, bulk-HU baseline (no learning)",
}
STAGES = ("cohort", "models", "synthesis", "validation", "audit", "report")


class DemoError(SynthctError):
    """A demo stage failed; the message names the stage."""


class DemoSettings(SettingsBase):
    """What the demo runs.

    Parameters
    ----------
    out_dir : Path
        Output folder (created; finished stages are reused on a rerun).
    seed : int
        Seed of the phantom cohort (the paper's patients are fixed; noise and texture vary).
    retrain : bool
        Train both models from scratch (minutes to tens of minutes) instead of the shipped ones.
    quick : bool
        A reduced demo for tests: two patients and a small field of view around each lesion.
    mc_passes : int
        MC-dropout passes for the product-like model's epistemic uncertainty.
    """

    invalid_error: ClassVar[type[SynthctError] | None] = SynthctError
    settings_label: ClassVar[str] = "demo settings"

    out_dir: Path
    seed: int = 2025
    retrain: bool = False
    quick: bool = False
    mc_passes: int = 4

    @property
    def cohort_dir(self) -> Path:
        """Where the phantom cohort goes."""
        return self.out_dir / "cohort"


def demo_cohort_spec(settings: DemoSettings) -> Any:
    """The paper's cohort; reduced (2 patients, 64 x 64 x 32 mm) in quick mode."""
    from synthct.phantom.cohort import paper_cohort

    if not settings.quick:
        return paper_cohort(seed=settings.seed)
    spec = paper_cohort(seed=settings.seed, field_of_view_mm=(64.0, 64.0, 32.0), supersample=1)
    assert spec.cases is not None
    return spec.model_copy(update={"cases": spec.cases[:2]})
