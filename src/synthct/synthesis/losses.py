"""Training loss of the synthesis network: L1 on the mean plus a heteroscedastic NLL.

Kept apart from :mod:`synthct.synthesis.training` so that the loss (and a training step) can be
used with torch and the config alone, e.g. by ``benchmarks/training_step_throughput.py`` on a
machine without the imaging stack.
"""

from __future__ import annotations

import math

import torch

from synthct.synthesis.config import LossConfig, SynthesisConfig


def loss_terms(
    prediction: torch.Tensor,
    target: torch.Tensor,
    config: LossConfig,
    bone_target: float | None = None,
    scale_hu: float = 1000.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Total loss and the (unweighted) L1 term, in scaled HU units.

    ``total = l1_weight * L1 + nll_weight * NLL`` (``scale_hu``: HU per target unit, for the
    Dice term's width; ``normalisation.hu_scale``), with the Laplace NLL
    ``|y - mu| / b + log(2 b)``, ``b = sqrt(var / 2)``, or the Gaussian NLL
    ``0.5 ((y - mu)^2 / var + log var) + 0.5 log(2 pi)``; ``var = exp(log-variance)``.
    ``L1`` is ``mean|mu - y|``, or with ``config.bone_weight`` > 1 and ``bone_target`` (the
    bone threshold in target units, :func:`bone_target_threshold`) the weighted mean with
    weight ``bone_weight`` where ``y >= bone_target`` and 1 elsewhere. With
    ``config.bone_dice_weight`` > 0 and ``bone_target`` the total also gets that weight times
    :func:`soft_bone_dice_loss`.
    """
    mean = prediction[:, 0:1]
    log_var = prediction[:, 1:2]
    error = torch.abs(mean - target)
    l1 = torch.mean(error)
    if config.bone_weight != 1.0 and bone_target is not None:
        weight = 1.0 + (config.bone_weight - 1.0) * (target >= bone_target).to(error.dtype)
        total = config.l1_weight * torch.sum(weight * error) / torch.sum(weight)
    else:
        total = config.l1_weight * l1
    if config.bone_dice_weight > 0 and bone_target is not None:
        width = config.bone_dice_width_hu / scale_hu
        total = total + config.bone_dice_weight * soft_bone_dice_loss(
            mean, target, bone_target, width
        )
    if config.nll != "none" and config.nll_weight > 0:
        mu = mean.detach() if config.detach_mean_in_nll else mean
        if config.nll == "laplace":
            log_b = 0.5 * log_var - 0.5 * math.log(2.0)
            nll = torch.abs(target - mu) * torch.exp(-log_b) + log_b + math.log(2.0)
        else:
            nll = 0.5 * ((target - mu) ** 2 * torch.exp(-log_var) + log_var + math.log(2 * math.pi))
        total = total + config.nll_weight * torch.mean(nll)
    return total, l1


def soft_bone_dice_loss(
    mean: torch.Tensor, target: torch.Tensor, bone_target: float, width: float
) -> torch.Tensor:
    """``1 - soft Dice`` of bone over the batch (Milletari et al., V-Net, 3DV 2016).

    The target bone is ``target >= bone_target``; the predicted bone is
    ``sigmoid((mean - bone_target) / width)``, so a voxel one ``width`` below the threshold
    counts 0.27 and one ``width`` above 0.73. A batch without target bone gives a loss that only
    pushes predicted bone down (1 - 1/(1 + sum p)); 0 when neither has any.
    """
    predicted = torch.sigmoid((mean - bone_target) / width)
    truth = (target >= bone_target).to(predicted.dtype)
    overlap = torch.sum(predicted * truth)
    return 1.0 - (2.0 * overlap + 1.0) / (torch.sum(predicted) + torch.sum(truth) + 1.0)


def bone_target_threshold(config: SynthesisConfig) -> float:
    """The bone threshold (``config.patches.bone_threshold_hu``, the one patch sampling uses)
    in the network's target units."""
    n = config.normalisation
    return (config.patches.bone_threshold_hu - n.hu_offset) / n.hu_scale
