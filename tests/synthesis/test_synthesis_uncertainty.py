"""MC dropout and ensemble predictors against explicit computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthct.synthesis.config import NetworkConfig
from synthct.synthesis.network import build_network, mc_dropout
from synthct.synthesis.uncertainty import (
    ALEATORIC,
    EPISTEMIC,
    MEAN,
    ensemble_predictor,
    mc_dropout_predictor,
    single_pass_predictor,
)


def _network(seed: int, dropout: float) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_network(NetworkConfig(base_channels=4, levels=2, dropout=dropout), 2).eval()


X = torch.rand(2, 2, 8, 8, 8, generator=torch.Generator().manual_seed(3))


def test_single_pass_gives_mean_and_variance_of_the_head() -> None:
    network = _network(0, 0.3)
    out = single_pass_predictor(network)(X)
    with torch.no_grad():
        raw = network(X)
    torch.testing.assert_close(out[:, MEAN], raw[:, 0])
    torch.testing.assert_close(out[:, ALEATORIC], torch.exp(raw[:, 1]))


def test_mc_dropout_variance_equals_the_variance_over_explicit_passes() -> None:
    network = _network(0, 0.3)
    torch.manual_seed(11)
    with torch.no_grad():
        out = mc_dropout_predictor(network, passes=5)(X)
    torch.manual_seed(11)
    x = X.contiguous(memory_format=torch.channels_last_3d)  # the predictors' memory layout
    with torch.no_grad(), mc_dropout(network, enabled=True):
        samples = torch.stack([network(x)[:, 0] for _ in range(5)])
    torch.testing.assert_close(out[:, EPISTEMIC], samples.var(dim=0, unbiased=False))
    assert float(out[:, EPISTEMIC].mean()) > 0
    with torch.no_grad():  # the mean channel is the dropout-free pass
        torch.testing.assert_close(out[:, MEAN], network(X)[:, 0])


def test_mc_dropout_variance_is_zero_without_dropout() -> None:
    with torch.no_grad():
        out = mc_dropout_predictor(_network(0, 0.0), passes=4)(X)
    assert float(out[:, EPISTEMIC].abs().max()) == 0.0


def test_ensemble_of_identical_members_has_no_epistemic_variance() -> None:
    a, b = _network(0, 0.1), _network(0, 0.1)
    with torch.no_grad():
        same = ensemble_predictor([a, b])(X)
        different = ensemble_predictor([a, _network(1, 0.1)])(X)
    assert float(same[:, EPISTEMIC].abs().max()) == 0.0
    torch.testing.assert_close(same[:, MEAN], single_pass_predictor(a)(X)[:, MEAN])
    means = torch.stack([single_pass_predictor(n)(X)[:, MEAN] for n in (a, _network(1, 0.1))])
    torch.testing.assert_close(different[:, EPISTEMIC], means.var(dim=0, unbiased=False))


def test_too_few_passes_or_members_raise() -> None:
    with pytest.raises(ValueError, match="at least 2 passes"):
        mc_dropout_predictor(_network(0, 0.1), passes=1)
    with pytest.raises(ValueError, match="at least 2 members"):
        ensemble_predictor([_network(0, 0.1)])
    with torch.no_grad():
        assert np.isfinite(float(single_pass_predictor(_network(0, 0.1))(X).sum()))
