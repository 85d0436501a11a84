"""`synthct demo`: the paper reproduced end to end on phantoms, stage by stage.

Stages, each writing under the output folder (rerunning reuses finished work):

1. ``cohort``: the paper's five patients as phantoms (:func:`synthct.phantom.cohort.paper_cohort`),
   on the paper's MRI protocol;
2. ``models``: the shipped product-like and lesion-aware models (or, with ``retrain``, both
   trained from scratch with the committed configs) and the non-learning baseline;
3. ``synthesis``: an sCT of every case by every method (the product-like one with its
   epistemic uncertainty, which the audit uses);
4. ``validation``: every sCT against CT with ``synthct validate`` (tables, statistics, report);
5. ``audit``: the omission audit of the product-like sCTs, without CT;
6. ``report``: one HTML page with the paper's numbers beside ours.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthct.demo.settings import DemoError, DemoSettings
from synthct.errors import SynthctError

StageProgress = Callable[[str, str, int, int], None]


@dataclass
class DemoResult:
    """Paths and timings of a demo run."""

    out_dir: Path
    report: Path | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)


def run_demo(settings: DemoSettings, *, progress: StageProgress | None = None) -> DemoResult:
    """Run every stage; return the report's path and the summary numbers.

    Parameters
    ----------
    settings : DemoSettings
        What to run.
    progress : callable, optional
        ``progress(stage, item, done, total)`` as work finishes.
    """
    result = DemoResult(out_dir=settings.out_dir)
    settings.out_dir.mkdir(parents=True, exist_ok=True)

    def step(stage: str, item: str, done: int, total: int) -> None:
        if progress is not None:
            progress(stage, item, done, total)

    def timed(stage: str, func: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            value = func()
        except SynthctError as exc:
            raise DemoError(
                f"demo stage '{stage}' failed: {exc.problem}", path=exc.path, fix=exc.fix
            ) from exc
        result.timings_s[stage] = time.perf_counter() - start
        return value

    from synthct.demo import stages

    cases = timed("cohort", lambda: stages.make_cohort(settings, step))
    models = timed("models", lambda: stages.get_models(settings, step))
    scts = timed("synthesis", lambda: stages.synthesize_all(settings, cases, models, step))
    validations = timed("validation", lambda: stages.validate_all(settings, cases, scts, step))
    audits = timed("audit", lambda: stages.audit_all(settings, cases, scts, models, step))
    summary = stages.summarise(settings, cases, models, validations, audits)
    result.summary = summary
    from synthct.demo.report import write_demo_report

    result.report = timed(
        "report", lambda: write_demo_report(settings.out_dir, summary, result.timings_s)
    )
    from synthct.io.atomic import write_json_atomic

    summary["timings_s"] = result.timings_s
    write_json_atomic(
        settings.out_dir / "demo_summary.json", json.loads(json.dumps(summary, default=str))
    )
    return result
