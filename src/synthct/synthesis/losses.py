"""Training loss of the synthesis network: L1 on the mean plus a heteroscedastic NLL.

Kept apart from :mod:`synthct.synthesis.training` so that the loss (and a training step) can be
used with torch and the config alone, e.g. by ``benchmarks/training_step_throughput.py`` on a
machine without the imaging stack.
"""

from __future__ import annotations

import math

import torch

from synthct.synthesis.config import LossConfig


def loss_terms(
    prediction: torch.Tensor, target: torch.Tensor, config: LossConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Total loss and the L1 term, in scaled HU units.

    ``total = l1_weight * mean|mu - y| + nll_weight * NLL``, with the Laplace NLL
    ``|y - mu| / b + log(2 b)``, ``b = sqrt(var / 2)``, or the Gaussian NLL
    ``0.5 ((y - mu)^2 / var + log var) + 0.5 log(2 pi)``; ``var = exp(log-variance)``.
    """
    mean = prediction[:, 0:1]
    log_var = prediction[:, 1:2]
    l1 = torch.mean(torch.abs(mean - target))
    total = config.l1_weight * l1
    if config.nll != "none" and config.nll_weight > 0:
        mu = mean.detach() if config.detach_mean_in_nll else mean
        if config.nll == "laplace":
            log_b = 0.5 * log_var - 0.5 * math.log(2.0)
            nll = torch.abs(target - mu) * torch.exp(-log_b) + log_b + math.log(2.0)
        else:
            nll = 0.5 * ((target - mu) ** 2 * torch.exp(-log_var) + log_var + math.log(2 * math.pi))
        total = total + config.nll_weight * torch.mean(nll)
    return total, l1
