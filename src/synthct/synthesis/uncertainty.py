"""Window predictors with uncertainty: one pass, Monte Carlo dropout, ensemble.

Each predictor maps a batch of windows to variances, not log-variances, because variances are
what can be averaged when overlapping windows are blended:

=================  =========================================================================
channel            meaning (network units; multiply SDs by ``hu_scale`` for HU)
=================  =========================================================================
0 ``MEAN``         predicted value: the dropout-free pass, or the ensemble mean
1 ``ALEATORIC``    aleatoric variance, ``exp(log-variance)`` of the heteroscedastic head
                   (averaged over the ensemble members)
2 ``EPISTEMIC``    epistemic variance: the variance of the mean over ``passes`` forward passes
                   with dropout on [1]_, or over the ensemble members [2]_ and the flips of
                   test-time augmentation (MC and ensemble predictors only)
=================  =========================================================================

The MC-dropout variance is a population variance over the passes (Welford's running
update), so a network without active dropout gives exactly 0. The total SD is
``sqrt(aleatoric + epistemic)`` (the law of total variance).

References
----------
.. [1] Gal Y, Ghahramani Z. Dropout as a Bayesian approximation. ICML 2016.
.. [2] Lakshminarayanan B et al. Simple and scalable predictive uncertainty estimation using
   deep ensembles. NeurIPS 2017.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from synthct.synthesis.network import LOG_VARIANCE_CHANNEL, MEAN_CHANNEL, SynthesisUNet, mc_dropout
from synthct.synthesis.sliding_window import WindowPredictor

MEAN = 0
ALEATORIC = 1
EPISTEMIC = 2


def preferred_memory_format(network: nn.Module) -> torch.memory_format:
    """Channels-last for networks without instance or group normalisation, else contiguous.

    oneDNN's 3D convolutions run about 1.5x faster channels-last on the CPU, but PyTorch's
    instance and group normalisation need channels-first memory and become slower than the
    convolutions gain. The inference copy of a network
    (:func:`~synthct.synthesis.inference_network.inference_network`, what ``synthesize`` runs)
    replaces instance normalisation with a channels-last one, so it runs channels-last.
    """
    slow = (nn.InstanceNorm3d, nn.GroupNorm)
    if any(isinstance(m, slow) for m in network.modules()):
        return torch.contiguous_format
    return torch.channels_last_3d


def _forward(network: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return _split(network(x.contiguous(memory_format=preferred_memory_format(network))))


def _split(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = out[:, MEAN_CHANNEL : MEAN_CHANNEL + 1]
    variance = torch.exp(out[:, LOG_VARIANCE_CHANNEL : LOG_VARIANCE_CHANNEL + 1])
    return mean, variance


def single_pass_predictor(network: nn.Module) -> WindowPredictor:
    """Mean and aleatoric variance from one dropout-free pass (2 channels)."""

    def predict(x: torch.Tensor) -> torch.Tensor:
        with mc_dropout(network, enabled=False):
            mean, variance = _forward(network, x)
        return torch.cat([mean, variance], dim=1)

    return predict


def mc_dropout_predictor(network: nn.Module, passes: int) -> WindowPredictor:
    """Dropout-free mean and aleatoric variance, plus the MC-dropout variance (3 channels).

    Parameters
    ----------
    network : nn.Module
        A network with dropout layers (their probability may be 0: the variance is then 0).
    passes : int
        Forward passes with dropout on (at least 2).
    """
    if passes < 2:
        raise ValueError(f"MC dropout needs at least 2 passes, got {passes}")

    # Dropout sits after the encoder of our U-Net: its features are computed once per window
    # and only the decoder runs again for each pass (the same draws, about a third less work).
    unet = network if isinstance(network, SynthesisUNet) else None

    def run(x: torch.Tensor, skips: list[torch.Tensor] | None) -> torch.Tensor:
        return network(x) if unet is None or skips is None else unet.decode(skips)

    def predict(x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=preferred_memory_format(network))
        with mc_dropout(network, enabled=False):
            skips = unet.encode(x) if unet is not None else None
            mean, variance = _split(run(x, skips))
        running_mean = torch.zeros_like(mean)
        m2 = torch.zeros_like(mean)
        with mc_dropout(network, enabled=True):
            for n in range(1, passes + 1):
                sample, _ = _split(run(x, skips))
                delta = sample - running_mean
                running_mean += delta / n
                m2 += delta * (sample - running_mean)
        return torch.cat([mean, variance, m2 / passes], dim=1)

    return predict


def ensemble_predictor(
    networks: Sequence[nn.Module], *, flips: Sequence[tuple[int, ...]] = ((),)
) -> WindowPredictor:
    """Mean, mean aleatoric variance and variance of the member means (3 channels).

    The members are every network under every flip of ``flips`` (test-time augmentation):
    a flip is a tuple of window axes 0, 1, 2 (``()`` is the window as it is); the window is
    flipped before the network and its prediction flipped back. The epistemic channel is the
    population variance over all members, so a flip-equivariant network has none from flips.

    Parameters
    ----------
    networks : sequence of nn.Module
        One network (then ``flips`` must give at least 2 members) or several.
    flips : sequence of tuple of int
        Spatial flips, as axes of the window.
    """
    members = [(network, tuple(flip)) for network in networks for flip in flips]
    if len(members) < 2:
        raise ValueError(
            f"an ensemble needs at least 2 members, got {len(networks)} network(s) x "
            f"{len(flips)} flip(s)"
        )
    for flip in flips:
        if any(a not in (0, 1, 2) for a in flip):
            raise ValueError(f"flips hold window axes 0, 1, 2, got {flip}")

    def predict(x: torch.Tensor) -> torch.Tensor:
        means, variances = [], []
        for network, flip in members:
            dims = [2 + a for a in flip]
            with mc_dropout(network, enabled=False):
                mean, variance = _forward(network, torch.flip(x, dims) if dims else x)
            if dims:
                mean, variance = torch.flip(mean, dims), torch.flip(variance, dims)
            means.append(mean)
            variances.append(variance)
        stacked = torch.stack(means)
        return torch.cat(
            [
                stacked.mean(dim=0),
                torch.stack(variances).mean(dim=0),
                stacked.var(dim=0, unbiased=False),
            ],
            dim=1,
        )

    return predict


def flip_sets(axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every combination of flips along ``axes``, the unflipped window first.

    ``flip_sets((0, 1))`` is ``[(), (0,), (1,), (0, 1)]`` (the mirroring of nnU-Net's test-time
    augmentation [3]_).

    References
    ----------
    .. [3] Isensee F et al. nnU-Net. Nat Methods 2021;18:203-211.
    """
    unique = sorted({int(a) for a in axes})
    if any(a not in (0, 1, 2) for a in unique):
        raise ValueError(f"flip axes must be array axes 0, 1, 2, got {tuple(axes)}")
    return [c for n in range(len(unique) + 1) for c in itertools.combinations(unique, n)]
