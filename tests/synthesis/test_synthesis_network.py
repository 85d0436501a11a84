"""The U-Net: shapes, parameter budget, the log-variance bounds and MC-dropout switching."""

from __future__ import annotations

import pytest
import torch

from synthct.synthesis.config import NetworkConfig
from synthct.synthesis.network import (
    INITIAL_LOG_VARIANCE,
    SynthesisUNet,
    build_network,
    count_parameters,
    has_dropout,
    mc_dropout,
)


def test_default_network_is_small_and_maps_echoes_to_mean_and_log_variance() -> None:
    network = build_network(NetworkConfig(), in_channels=2)
    assert 20_000 <= count_parameters(network) <= 400_000
    out = network.eval()(torch.rand(1, 2, 16, 24, 8))
    assert out.shape == (1, 2, 16, 24, 8)


def test_width_and_depth_are_configurable() -> None:
    small = build_network(NetworkConfig(base_channels=4, levels=2), in_channels=3)
    large = build_network(NetworkConfig(base_channels=16, levels=4), in_channels=3)
    assert count_parameters(small) < 10_000 < 1_000_000 < count_parameters(large)
    assert small(torch.rand(2, 3, 8, 8, 8)).shape == (2, 2, 8, 8, 8)


def test_log_variance_starts_near_100_hu_and_stays_within_bounds() -> None:
    config = NetworkConfig(base_channels=4, levels=2, log_variance_min=-3.0, log_variance_max=1.0)
    network = build_network(config, in_channels=2).eval()
    with torch.no_grad():
        network.head.conv.weight.zero_()  # type: ignore[union-attr]
        assert float(network(torch.rand(1, 2, 8, 8, 8))[:, 1].mean()) == pytest.approx(
            max(INITIAL_LOG_VARIANCE, -3.0)
        )
        network.head.conv.bias.fill_(50.0)  # type: ignore[union-attr]
        assert float(network(torch.rand(1, 2, 8, 8, 8))[:, 1].max()) == 1.0
        network.head.conv.bias.fill_(-50.0)  # type: ignore[union-attr]
        assert float(network(torch.rand(1, 2, 8, 8, 8))[:, 1].min()) == -3.0


def test_mc_dropout_turns_only_dropout_on_and_restores_modes() -> None:
    network = build_network(NetworkConfig(base_channels=4, levels=2, dropout=0.5), 2)
    network.train()
    x = torch.rand(1, 2, 8, 8, 8)
    with mc_dropout(network, enabled=True):
        modes = {type(m).__name__: m.training for m in network.modules()}
        assert modes["Dropout"] and not modes["BatchNorm3d"]
        a, b = network(x), network(x)
        assert not torch.equal(a, b)
    assert all(m.training for m in network.modules())
    with mc_dropout(network, enabled=False):
        assert torch.equal(network(x), network(x))
    assert has_dropout(network)
    assert not has_dropout(build_network(NetworkConfig(base_channels=4, dropout=0.0), 2))


def test_mc_dropout_restores_a_mix_of_modes_module_by_module() -> None:
    network = build_network(NetworkConfig(base_channels=4, levels=2, dropout=0.5), 2)
    network.eval()
    modules = list(network.modules())
    for index in range(0, len(modules), 3):  # an arbitrary mix, parents and children disagree
        modules[index].training = True
    before = [m.training for m in modules]
    for enabled in (True, False):
        with mc_dropout(network, enabled=enabled):
            on = [m for m in modules if m.training]
            if enabled:
                assert on and all(isinstance(m, torch.nn.Dropout3d | torch.nn.Dropout) for m in on)
            else:
                assert not on
        assert [m.training for m in modules] == before


def test_dropout_before_head_can_be_switched_off_and_mc_passes_still_vary() -> None:
    config = NetworkConfig(base_channels=4, levels=3, dropout=0.5, dropout_before_head=False)
    network = build_network(config, 2)
    assert isinstance(network, SynthesisUNet)
    # The last decoder block feeds the head: no dropout there; the deeper ones keep it.
    assert [d.p for d in network.decoder_dropouts] == [0.5, 0.0]
    assert network.bottleneck_dropout.p == 0.5
    x = torch.rand(1, 2, 8, 8, 8)
    with torch.no_grad(), mc_dropout(network, enabled=True):
        assert not torch.equal(network(x), network(x))  # epistemic variance is still there
    default = build_network(NetworkConfig(base_channels=4, levels=3, dropout=0.5), 2)
    assert isinstance(default, SynthesisUNet)
    assert [d.p for d in default.decoder_dropouts] == [0.5, 0.5]


@pytest.mark.slow
def test_monai_basic_unet_variant_has_the_same_outputs() -> None:
    config = NetworkConfig(architecture="monai_basic_unet", base_channels=4)
    network = build_network(config, in_channels=2).eval()
    with torch.no_grad():
        out = network(torch.rand(1, 2, 16, 16, 16))
    assert out.shape == (1, 2, 16, 16, 16)
    assert float(out[:, 1].max()) <= config.log_variance_max
