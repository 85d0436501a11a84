"""An inference copy of a synthesis network: the same function, computed faster on the CPU.

:func:`inference_network` returns an evaluation-mode copy of a network that computes the same
outputs (to float32 rounding, about 1e-5 network units = 0.01 HU) with less work:

* **batch normalisation folded into the convolution before it** (eval mode uses running
  statistics, an affine map per channel, which the convolution's weights and bias absorb):
  one pass over the activations less per convolution;
* **instance normalisation computed channels-last**: PyTorch's ``InstanceNorm3d`` runs as a
  batch norm over a ``[1, B*C, ...]`` view, which needs contiguous (channels-first) memory, so a
  channels-last network pays two layout copies per normalisation and ends slower than the
  convolutions gain; :class:`ChannelsLastInstanceNorm` takes the statistics as means over the
  rows of a ``[batch, voxels, channels]`` view of the channels-last tensor (vectorised over
  the channels; ``torch.var_mean`` over the spatial axes, a strided reduction, made the whole
  large network 15 % slower than the original) and applies the affine map in one ``addcmul``;
* **channels-last memory** (``channels_last_3d``) for the weights, the layout in which oneDNN's
  3D convolutions are fastest on the CPU.

Dropout layers are kept (MC dropout switches them on), and a normalisation whose statistics
depend on the batch is never folded. ``benchmarks/synthesis_inference.py`` measures the gain
against MONAI's ``sliding_window_inference`` running the original network.
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn


class ChannelsLastInstanceNorm(nn.Module):
    """Instance normalisation (no running statistics) that keeps the input's memory format.

    Parameters
    ----------
    norm : nn.InstanceNorm3d
        The layer to replace: its ``eps`` and, when ``affine``, its weight and bias are used.
    """

    def __init__(self, norm: nn.InstanceNorm3d) -> None:
        super().__init__()
        self.eps = float(norm.eps)
        self.weight = norm.weight if norm.affine else None
        self.bias = norm.bias if norm.affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise each channel of each sample over its spatial axes (population variance).

        On a channels-last tensor the channels are the innermost axis: the statistics are
        means over the rows of a ``[B, voxels, C]`` view (vectorised over the channels), which
        is several times faster than ``torch.var_mean`` over the spatial axes (a strided
        reduction) or a layout copy for ``InstanceNorm3d``. The variance is the mean squared
        deviation from the mean (two passes), as precise as the Welford update in float32.
        """
        if not x.is_contiguous(memory_format=torch.channels_last_3d) or x.ndim != 5:
            return self._forward_any_layout(x)
        batch, channels = x.shape[:2]
        rows = x.permute(0, 2, 3, 4, 1).reshape(batch, -1, channels)  # a view: no copy
        deviation = rows - rows.mean(dim=1, keepdim=True)
        variance = (deviation * deviation).mean(dim=1, keepdim=True)
        scale = torch.rsqrt(variance + self.eps)
        if self.weight is not None:
            scale = scale * self.weight
        if self.bias is not None:
            out = torch.addcmul(self.bias, deviation, scale)
        else:
            out = deviation.mul_(scale)
        return out.view(batch, *x.shape[2:], channels).permute(0, 4, 1, 2, 3)

    def _forward_any_layout(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(2, x.ndim))
        variance, mean = torch.var_mean(x, dim=dims, keepdim=True, correction=0)
        scale = torch.rsqrt(variance + self.eps)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        if self.weight is not None:
            scale = scale * self.weight.view(shape)
        shift = -mean * scale
        if self.bias is not None:
            shift = shift + self.bias.view(shape)
        return torch.addcmul(shift, x, scale)


def inference_network(network: nn.Module) -> nn.Module:
    """An evaluation-mode copy of ``network`` optimised for inference on the CPU.

    The copy holds batch normalisation folded into the convolutions, channels-last instance
    normalisation and channels-last weights (see the module docstring); ``network`` itself is
    left as it is. Feed the copy channels-last input
    (:func:`~synthct.synthesis.uncertainty.preferred_memory_format` says which).
    """
    fast = copy.deepcopy(network).eval()
    with torch.no_grad():
        _fold_batch_norms(fast)
    _replace_instance_norms(fast)
    if not any(isinstance(m, nn.GroupNorm) for m in fast.modules()):
        fast.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    for parameter in fast.parameters():
        parameter.requires_grad_(False)
    return fast


def _fold_batch_norms(network: nn.Module) -> None:
    """Fold every ``BatchNorm3d`` that directly follows a (transposed) 3D convolution into it.

    "Directly follows" means the next module of the same ``nn.Sequential`` (synthct's
    ``ConvBlock``) or, in MONAI's ``Convolution`` blocks (``conv`` then an ``adn`` block whose
    first layer ``N`` is the norm), the norm that opens the next block.
    """
    for module in network.modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.named_children())
        for (_, first), (second_name, second) in itertools.pairwise(children):
            if _is_conv(first) and _foldable(second):
                _fold(first, second)  # type: ignore[arg-type]
                module._modules[second_name] = nn.Identity()
            elif (
                _is_conv(first)
                and isinstance(second, nn.Sequential)
                and _foldable(second._modules.get("N"))
            ):
                _fold(first, second._modules["N"])  # type: ignore[arg-type]
                second._modules["N"] = nn.Identity()


def _is_conv(module: nn.Module) -> bool:
    """A 3D convolution whose output channels the fold can scale (transposed: one group)."""
    if isinstance(module, nn.ConvTranspose3d):
        return module.groups == 1
    return isinstance(module, nn.Conv3d)


def _foldable(module: nn.Module | None) -> bool:
    return (
        isinstance(module, nn.BatchNorm3d)
        and module.track_running_stats
        and module.running_mean is not None
        and module.running_var is not None
    )


def _fold(conv: nn.Conv3d | nn.ConvTranspose3d, norm: nn.BatchNorm3d) -> None:
    """``norm(conv(x)) == conv'(x)``: scale the output channels' weights, shift the bias."""
    assert norm.running_mean is not None and norm.running_var is not None
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
    shift = (bias - norm.running_mean) * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    # output channels: axis 0 of a convolution's weight, axis 1 of a transposed one's
    axis = 1 if isinstance(conv, nn.ConvTranspose3d) else 0
    shape = [1] * conv.weight.ndim
    shape[axis] = -1
    conv.weight.mul_(scale.view(shape))
    conv.bias = nn.Parameter(shift)


def _replace_instance_norms(network: nn.Module) -> None:
    """Swap every ``InstanceNorm3d`` without running statistics for the channels-last one."""
    for module in list(network.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.InstanceNorm3d) and not child.track_running_stats:
                module._modules[name] = ChannelsLastInstanceNorm(child)
