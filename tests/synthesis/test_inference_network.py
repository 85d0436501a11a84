"""The inference copy: batch norm folded, channels-last instance norm, same outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from synthct.synthesis.config import NetworkConfig
from synthct.synthesis.inference_network import ChannelsLastInstanceNorm, inference_network
from synthct.synthesis.network import build_network
from synthct.synthesis.uncertainty import preferred_memory_format, single_pass_predictor


def _with_learned_statistics(network: nn.Module) -> nn.Module:
    """Give every batch norm non-trivial running statistics and affine parameters."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, nn.BatchNorm3d | nn.InstanceNorm3d) and module.affine:
                module.weight.copy_(0.5 + torch.rand(module.weight.shape, generator=generator))
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator))
            if isinstance(module, nn.BatchNorm3d):
                assert module.running_mean is not None and module.running_var is not None
                module.running_mean.copy_(torch.randn(module.num_features, generator=generator))
                module.running_var.copy_(0.2 + torch.rand(module.num_features, generator=generator))
    return network.eval()


@pytest.mark.parametrize(
    ("config", "removed"),
    [
        (NetworkConfig(base_channels=4, levels=3, norm="batch"), nn.BatchNorm3d),
        (
            NetworkConfig(architecture="residual_unet", base_channels=4, levels=3, norm="instance"),
            nn.InstanceNorm3d,
        ),
        (
            NetworkConfig(architecture="residual_unet", base_channels=4, levels=3, norm="batch"),
            nn.BatchNorm3d,
        ),
    ],
    ids=["unet-batch", "residual-instance", "residual-batch"],
)
def test_inference_copy_computes_the_same_outputs_without_the_slow_layers(
    config: NetworkConfig, removed: type[nn.Module]
) -> None:
    torch.manual_seed(0)
    network = _with_learned_statistics(build_network(config, in_channels=2))
    x = torch.rand(2, 2, 16, 16, 8) * 3.0
    with torch.inference_mode():
        expected = network(x)
        fast = inference_network(network)
        got = fast(x.contiguous(memory_format=preferred_memory_format(fast)))
    assert not any(isinstance(m, removed) for m in fast.modules())
    assert any(isinstance(m, removed) for m in network.modules())  # the original is untouched
    # float32 rounding only: 1e-4 network units is 0.1 HU at hu_scale 1000
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert expected.abs().max() > 0.1  # a real signal, not two zeros
    conv = next(m for m in fast.modules() if isinstance(m, nn.Conv3d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert not any(p.requires_grad for p in fast.parameters())


def test_inference_copy_of_the_shipped_model_matches_its_single_pass() -> None:
    from synthct.synthesis.synthesizer import load_shipped_model

    network = load_shipped_model("product_like").networks[0]
    x = torch.rand(1, 2, 32, 32, 16)
    with torch.inference_mode():
        expected = single_pass_predictor(network)(x)
        got = single_pass_predictor(inference_network(network))(x)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("layout", [torch.channels_last_3d, torch.contiguous_format])
@pytest.mark.parametrize("affine", [True, False])
def test_channels_last_instance_norm_equals_torch_instance_norm(
    affine: bool, layout: torch.memory_format
) -> None:
    torch.manual_seed(1)
    reference = nn.InstanceNorm3d(5, affine=affine, eps=1e-5)
    if affine:
        with torch.no_grad():
            reference.weight.uniform_(0.5, 2.0)
            reference.bias.normal_()
    x = (torch.randn(3, 5, 6, 7, 4) * 4.0 + 2.0).contiguous(memory_format=layout)
    got = ChannelsLastInstanceNorm(reference)(x)
    torch.testing.assert_close(got, reference(x), atol=1e-5, rtol=1e-5)
    assert got.is_contiguous(memory_format=layout)
    if not affine:  # each channel of each sample: mean 0, population SD 1
        assert got.mean(dim=(2, 3, 4)).abs().max() < 1e-5
        torch.testing.assert_close(
            got.var(dim=(2, 3, 4), correction=0), torch.ones(3, 5), atol=1e-3, rtol=0
        )


def test_channels_last_instance_norm_keeps_a_small_spread_around_a_large_mean() -> None:
    # Mean 200, SD 0.5: E[x^2] - E[x]^2 in float32 would lose the variance to cancellation.
    torch.manual_seed(2)
    x = (torch.randn(2, 4, 16, 16, 8, dtype=torch.float64) * 0.5 + 200.0).float()
    x = x.contiguous(memory_format=torch.channels_last_3d)
    truth = nn.functional.instance_norm(x.double(), eps=1e-5)
    got = ChannelsLastInstanceNorm(nn.InstanceNorm3d(4, eps=1e-5))(x)
    # float32 holds 200 to 1.5e-5, i.e. 3e-5 SD units: the error stays within a few of those
    assert float((got.double() - truth).abs().max()) < 1.5e-4
