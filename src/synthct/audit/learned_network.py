"""The network of the learned consistency signal (:mod:`synthct.audit.learned_consistency`).

Kept apart so that importing the audit does not import torch. The network acts on each voxel's
context features (:func:`synthct.audit.learned_consistency.context_features`): a fixed
multi-scale filter bank of the sCT followed by learned 1x1x1 convolutions, written here as a
per-voxel multilayer perceptron.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: Bounds of the predicted log-scale (normalised echo units).
LOG_SCALE_BOUNDS = (-7.0, 2.0)
#: Initial location and scale of the prediction (normalised echo units: fractions of the 99th
#: percentile): a typical tissue and a few times the noise.
INITIAL_LOCATION = 0.5
INITIAL_SCALE = 0.05


class ConsistencyNet(nn.Module):
    """Context features to the per-echo location and log-scale (``2 n_echoes`` outputs).

    A location branch (``n_features -> hidden -> hidden -> n_echoes``, leaky ReLU) and a scale
    branch (one hidden layer on the location branch's last hidden features, which it does not
    train: see :meth:`forward`).

    Parameters
    ----------
    n_features : int
        Context features per voxel.
    n_echoes : int
        Echoes predicted.
    hidden : int
        Hidden units per layer.
    """

    def __init__(self, n_features: int, n_echoes: int, hidden: int = 64) -> None:
        super().__init__()
        self.n_echoes = n_echoes
        self.trunk = nn.Sequential(
            nn.Linear(n_features, hidden),
            nn.LeakyReLU(0.01),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.01),
        )
        self.loc_head = nn.Linear(hidden, n_echoes)
        self.scale_branch = nn.Sequential(nn.Linear(hidden, hidden // 2), nn.LeakyReLU(0.01))
        self.scale_head = nn.Linear(hidden // 2, n_echoes)
        with torch.no_grad():
            self.loc_head.bias.fill_(INITIAL_LOCATION)
            self.scale_head.bias.fill_(math.log(INITIAL_SCALE))

    def scale_parameters(self) -> list[nn.Parameter]:
        """Parameters of the scale branch (trained only by the likelihood of the scales)."""
        return [*self.scale_branch.parameters(), *self.scale_head.parameters()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[voxels, n_features]`` to ``[voxels, 2 n_echoes]`` (locations, then log-scales)."""
        hidden = self.trunk(x)
        loc = self.loc_head(hidden)
        # The scale branch reads the features without training them: the shared layers learn
        # the locations only (a scale gradient would rather widen the scale of a small
        # structure than fit it).
        raw = self.scale_head(self.scale_branch(hidden.detach()))
        return torch.cat([loc, soft_bounds(raw, *LOG_SCALE_BOUNDS)], dim=1)


def soft_bounds(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``x`` kept inside ``(low, high)`` by softplus walls: the identity well inside, and a
    gradient everywhere (a hard clamp stops training a scale that reached a bound)."""
    x = high - F.softplus(high - x)
    return low + F.softplus(x - low)


def heteroscedastic_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error of the locations plus the Gaussian NLL of the scales.

    ``mean (m - mu)**2 + mean ((m - sg(mu))**2 / (2 s**2) + log s)`` with ``sg`` stopping the
    gradient: the locations learn by least squares, in which a small structure with a large
    residual (CSF or cord: a few percent of the body) weighs by its residual, and the scales
    learn ``s**2 = E (m - mu)**2`` (the Gaussian maximum likelihood). Under a plain NLL the
    mean of such a structure stalls while its variance absorbs the residual [1]_; the network
    also keeps its shared layers out of the scale's gradient (:class:`ConsistencyNet`).

    Parameters
    ----------
    out : tensor ``[voxels, 2 n_echoes]``
        Network output (locations, log-scales ``log s``).
    target : tensor ``[voxels, n_echoes]``
        Normalised echoes.

    References
    ----------
    .. [1] Seitzer M et al. On the pitfalls of heteroscedastic uncertainty estimation with
       probabilistic neural networks. ICLR 2022.
    """
    n = target.shape[1]
    loc, log_scale = out[:, :n], out[:, n:]
    squared = (target - loc) ** 2
    nll = 0.5 * squared.detach() * torch.exp(-2 * log_scale) + log_scale
    return (squared + nll).mean()
