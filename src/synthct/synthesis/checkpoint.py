"""Training checkpoints, the CSV training log and the training-curve PNG, written atomically.

A checkpoint (``checkpoints/last.pt``) holds everything needed to continue a run exactly where
it stopped: network, optimiser and scheduler states, the iteration, the numpy and torch random
states, the case split, the log rows and the configuration it was made with. It is read with
``torch.load(weights_only=True)``, so loading runs no pickled code.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import torch

from synthct.io.atomic import atomic_file, write_text_atomic
from synthct.synthesis.config import SynthesisConfig, config_from_dict
from synthct.synthesis.errors import TrainingConfigError

LOG_COLUMNS = (
    "iteration",
    "learning_rate",
    "train_loss",
    "train_l1_hu",
    "validation_loss",
    "validation_mae_hu",
    "elapsed_s",
    "volume_mae_hu",
    "volume_bone_dice_250hu",
)
#: Settings that may change when a run is resumed.
RESUMABLE_CHANGES = {
    ("training", "iterations"),
    ("training", "device"),
    ("training", "tensorboard"),
    ("training", "batch_norm_recalibration_batches"),  # applied after the last iteration
    ("training", "distributed_timeout_s"),
    ("training", "curve_png"),
}


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write a checkpoint dictionary atomically."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(final) as tmp:
        torch.save(state, tmp)
    return final


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors and plain data only)."""
    p = Path(path)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        raise TrainingConfigError(
            f"the checkpoint cannot be read ({exc})",
            path=p,
            fix="delete the run folder and train again without --resume",
        ) from exc
    if not isinstance(state, dict) or "iteration" not in state:
        raise TrainingConfigError("not a synthct training checkpoint", path=p)
    return state


def config_differences(
    old: SynthesisConfig,
    new: SynthesisConfig,
    sections: Sequence[str] | None = None,
    *,
    allowed: Collection[tuple[str, str]] = (),
) -> list[str]:
    """Settings that differ between two configurations, except those a resume may change.

    ``sections``: compare only these (e.g. ``("network", "normalisation")``); default all.
    ``allowed``: further ``(section, key)`` pairs that may differ.
    """
    found = []
    # Section by section: a full dump leaves out a default data section.
    for section in sections if sections is not None else SynthesisConfig.model_fields:
        old_s = getattr(old, section).model_dump(mode="json")
        new_s = getattr(new, section).model_dump(mode="json")
        # Both sides' keys: a setting left out of one dump (at its default) is a difference too.
        for key in sorted(old_s.keys() | new_s.keys()):
            if (section, key) in RESUMABLE_CHANGES or (section, key) in allowed:
                continue
            was = old_s.get(key, getattr(getattr(old, section), key, None))
            now = new_s.get(key, getattr(getattr(new, section), key, None))
            if was != now:
                found.append(f"{section}.{key}: {was!r} -> {now!r}")
    return found


def checkpoint_config(state: dict[str, Any]) -> SynthesisConfig:
    """The configuration a checkpoint was made with."""
    return config_from_dict(state["config"], where="checkpoint configuration")


def write_log(path: str | os.PathLike[str], rows: list[dict[str, Any]]) -> Path:
    """Write the training log as CSV (one row per validation), atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOG_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k)) for k in LOG_COLUMNS})
    return write_text_atomic(path, buffer.getvalue())


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def plot_training_curve(path: str | os.PathLike[str], rows: list[dict[str, Any]]) -> Path:
    """Write the training curve (losses; MAE in HU on a second panel) as a PNG, atomically."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9.0, 3.6), layout="constrained")
    losses, errors = figure.subplots(1, 2)
    steps = [r["iteration"] for r in rows]
    for key, label in (("train_loss", "training loss"), ("validation_loss", "validation loss")):
        losses.plot(steps, [r.get(key) for r in rows], marker=".", label=label)
    losses.set(xlabel="iteration", ylabel="loss (scaled HU units)", title="loss")
    losses.legend()
    for key, label in (
        ("validation_mae_hu", "validation patches"),
        ("volume_mae_hu", "held-out volumes (body)"),
    ):
        points = [(r["iteration"], r[key]) for r in rows if r.get(key) is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            errors.plot(xs, ys, marker=".", label=label)
    errors.set(xlabel="iteration", ylabel="MAE (HU)", title="validation MAE")
    if errors.lines:
        errors.legend()
    final = Path(path)
    with atomic_file(final) as tmp:
        figure.savefig(tmp, format="png", dpi=90)
    return final
