"""What training measures on held-out data, and the best checkpoint it keeps.

* :func:`patch_metrics`: loss and MAE on fixed validation patches (every
  ``validation_interval`` iterations);
* :func:`validate_volumes`: sliding-window sCT of whole held-out cases against their CT, body MAE
  and bone Dice (every ``volume_validation_interval`` iterations and at the end);
* :func:`validation_row` gathers both into a log row, :func:`keep_best` keeps the best weights;
* :func:`recalibrate_batch_norm`: precise batch-norm statistics after the last iteration.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from synthct.synthesis.checkpoint import save_checkpoint
from synthct.synthesis.config import SynthesisConfig
from synthct.synthesis.losses import bone_target_threshold, loss_terms
from synthct.synthesis.manifest import Case
from synthct.synthesis.patches import PatchSampler
from synthct.synthesis.synthesizer import assemble_result, predict_arrays


def patch_metrics(
    network: torch.nn.Module,
    patches: tuple[np.ndarray, np.ndarray],
    config: SynthesisConfig,
    device: str,
) -> tuple[float, float]:
    """Validation loss and MAE in HU (voxels with target above -500 HU) on fixed patches.

    Returns
    -------
    tuple of float
        Mean loss per patch and the MAE in HU.
    """
    x_all, y_all = patches
    threshold = (-500.0 - config.normalisation.hu_offset) / config.normalisation.hu_scale
    losses, abs_sum, count = [], 0.0, 0
    network.eval()
    with torch.no_grad():
        for start in range(0, len(x_all), config.training.batch_size):
            x = torch.from_numpy(x_all[start : start + config.training.batch_size]).to(device)
            y = torch.from_numpy(y_all[start : start + config.training.batch_size]).to(device)
            prediction = network(x)
            loss, _ = loss_terms(
                prediction,
                y,
                config.loss,
                bone_target_threshold(config),
                config.normalisation.hu_scale,
            )
            losses.append(float(loss) * len(x))
            inside = y > threshold
            abs_sum += float(torch.abs(prediction[:, 0:1] - y)[inside].sum())
            count += int(inside.sum())
    mae = abs_sum / max(count, 1) * config.normalisation.hu_scale
    return sum(losses) / len(x_all), mae


def validate_volumes(
    network: torch.nn.Module, cases: Sequence[Case], config: SynthesisConfig, device: str
) -> dict[str, Any]:
    """Whole-volume MAE (CT body mask) and bone Dice (150 and 250 HU) of each case."""
    from synthct.imaging.body_mask import body_mask_from_ct
    from synthct.imaging.image_metrics import bone_dice, mae_hu
    from synthct.synthesis.normalisation import normalise_mr

    rows = []
    for case in cases:
        inputs, body, _ = normalise_mr(
            case.mr.array,
            config.normalisation,
            source=case.mr.source,
            spacing_mm=case.mr.spacing_mm,
        )
        out = predict_arrays([network], inputs, config, device=device)
        sct = assemble_result(out, case.mr, body, config, uncertainty=False).sct.array
        ct = np.asarray(case.ct.array, dtype=np.float32)
        mask = body_mask_from_ct(ct)
        row: dict[str, Any] = {"case_id": case.case_id, "mae_hu": mae_hu(ct, sct, mask)}
        for threshold in (150.0, 250.0):
            dice = bone_dice(ct, sct, mask, threshold_hu=threshold)
            row[f"bone_dice_{threshold:g}hu"] = None if math.isnan(dice) else dice
        rows.append(row)
    summary: dict[str, Any] = {
        "method": "sliding-window sCT of each held-out case against its CT; MAE in HU inside "
        "the CT body mask (-500 HU, largest component, holes filled); bone Dice at 150 and "
        "250 HU inside the same mask",
        "cases": rows,
    }
    if rows:
        summary["mean_mae_hu"] = float(np.mean([r["mae_hu"] for r in rows]))
        dices = [r["bone_dice_150hu"] for r in rows if r["bone_dice_150hu"] is not None]
        summary["mean_bone_dice_150hu"] = float(np.mean(dices)) if dices else None
    return summary


def recalibrate_batch_norm(
    network: nn.Module,
    sampler: PatchSampler,
    rng: np.random.Generator,
    *,
    batches: int,
    batch_size: int,
    device: str | torch.device = "cpu",
) -> int:
    """Re-estimate batch-norm statistics as exact averages over many training batches.

    Running averages with momentum 0.1 reflect the last ~10 batches of a few small patches,
    so the evaluation-mode network shifts from checkpoint to checkpoint (precise BN [1]_).
    The weights are not changed; dropout stays off.

    Parameters
    ----------
    network : nn.Module
        The trained network (left in evaluation mode).
    sampler : PatchSampler
        The training patch sampler (the distribution the network was trained on).
    rng : numpy.random.Generator
        Draws the patches.
    batches, batch_size : int
        How many batches of how many patches.
    device : str or torch.device
        Where the network runs.

    Returns
    -------
    int
        Number of batch-norm layers recalibrated.

    References
    ----------
    .. [1] Wu Y, Johnson J. Rethinking "batch" in BatchNorm. arXiv:2105.07576, 2021.
    """
    norms = [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or batches < 1:
        return 0
    network.eval()
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
        m.train()
    with torch.no_grad():
        for _ in range(batches):
            x_np, _ = sampler.sample(rng, batch_size)
            network(torch.from_numpy(x_np).to(device))
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum
    network.eval()
    return len(norms)


def validation_row(
    network: nn.Module,
    patches: tuple[np.ndarray, np.ndarray],
    volumes: Sequence[Case],
    config: SynthesisConfig,
    device: str,
    iteration: int,
    optimiser: torch.optim.Optimizer,
    elapsed: float,
) -> dict[str, Any]:
    """One log row: validation patches, and whole held-out volumes when ``volumes`` is given."""
    val_loss, val_mae = patch_metrics(network, patches, config, device)
    row: dict[str, Any] = {
        "iteration": iteration,
        "learning_rate": optimiser.param_groups[0]["lr"],
        "validation_loss": val_loss,
        "validation_mae_hu": val_mae,
        "elapsed_s": elapsed,
        "volume_mae_hu": None,
        "volume_bone_dice_250hu": None,
    }
    if volumes:
        summary = validate_volumes(network, volumes, config, device)
        row["volume_mae_hu"] = summary["mean_mae_hu"]
        dices = [c["bone_dice_250hu"] for c in summary["cases"] if c["bone_dice_250hu"] is not None]
        row["volume_bone_dice_250hu"] = float(np.mean(dices)) if dices else None
    return row


def keep_best(
    path: Path,
    network: nn.Module,
    config: SynthesisConfig,
    row: dict[str, Any],
    best: dict[str, Any],
) -> dict[str, Any]:
    """Write the best checkpoint ``path`` when ``row`` improves on ``best``; the new best record.

    The criterion is the body MAE of the held-out volumes when whole-volume validation is on
    (``training.volume_validation_interval``), else the MAE on the validation patches.
    """
    key = "volume_mae_hu" if config.training.volume_validation_interval else "validation_mae_hu"
    value = row.get(key)
    if value is None or (best and value >= best["value"]):
        return best
    record = {"iteration": row["iteration"], "metric": key, "value": float(value)}
    save_checkpoint(
        path,
        {**record, "model": network.state_dict(), "config": config.model_dump(mode="json")},
    )
    return record
