"""The synthesis network: a small 3D U-Net with a heteroscedastic head and MC dropout.

Input ``[batch, echoes, i, j, k]`` (normalised echo magnitudes), output
``[batch, 2, i, j, k]``: channel 0 is the predicted HU in scaled units
(``(HU - hu_offset) / hu_scale``), channel 1 the log-variance of that prediction in the
same units (the aleatoric, heteroscedastic head [1]_). Dropout after every decoder block and
at the bottleneck gives epistemic uncertainty by Monte Carlo dropout [2]_ when it is switched
on at inference (:func:`mc_dropout`).

Batch normalisation (the default) uses running statistics at inference, so a voxel's
prediction does not depend on which window it was computed in, which keeps sliding-window
outputs free of seams; instance normalisation does depend on the window.

References
----------
.. [1] Kendall A, Gal Y. What uncertainties do we need in Bayesian deep learning for computer
   vision? NeurIPS 2017.
.. [2] Gal Y, Ghahramani Z. Dropout as a Bayesian approximation. ICML 2016.
.. [3] Ronneberger O et al. U-Net. MICCAI 2015; Cicek O et al. 3D U-Net. MICCAI 2016.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from synthct.synthesis.config import NetworkConfig

#: Output channel holding the predicted (scaled) HU.
MEAN_CHANNEL = 0
#: Output channel holding the predicted log-variance (scaled HU units squared).
LOG_VARIANCE_CHANNEL = 1


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    if kind == "instance":
        return nn.InstanceNorm3d(channels, affine=True)
    return nn.Identity()


class ConvBlock(nn.Sequential):
    """Two 3x3x3 convolutions, each followed by normalisation and a leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, norm: str) -> None:
        bias = norm == "none"
        super().__init__(
            nn.Conv3d(in_channels, out_channels, 3, padding=1, bias=bias),
            _norm(norm, out_channels),
            nn.LeakyReLU(0.01, inplace=True),
            nn.Conv3d(out_channels, out_channels, 3, padding=1, bias=bias),
            _norm(norm, out_channels),
            nn.LeakyReLU(0.01, inplace=True),
        )


#: Initial log-variance bias: an SD of 0.1 scaled units (100 HU), so the variance head starts
#: near the size of real errors instead of 1000 HU.
INITIAL_LOG_VARIANCE = 2.0 * math.log(0.1)


class HeteroscedasticHead(nn.Module):
    """1x1x1 convolution to (mean, log-variance), the log-variance clamped to its bounds."""

    def __init__(self, in_channels: int, log_variance_min: float, log_variance_max: float) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, 2, 1)
        bias = self.conv.bias
        assert bias is not None
        with torch.no_grad():
            bias[LOG_VARIANCE_CHANNEL] = INITIAL_LOG_VARIANCE
        self.log_variance_min = float(log_variance_min)
        self.log_variance_max = float(log_variance_max)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map features to ``[batch, 2, ...]``: mean and clamped log-variance."""
        out = self.conv(x)
        mean = out[:, MEAN_CHANNEL : MEAN_CHANNEL + 1]
        log_var = out[:, LOG_VARIANCE_CHANNEL : LOG_VARIANCE_CHANNEL + 1].clamp(
            self.log_variance_min, self.log_variance_max
        )
        return torch.cat([mean, log_var], dim=1)


class SynthesisUNet(nn.Module):
    """3D U-Net: ``levels`` resolution levels, channels doubling from ``base_channels``.

    Parameters
    ----------
    in_channels : int
        Number of input channels (echoes).
    base_channels : int
        Channels at full resolution.
    levels : int
        Resolution levels; spatial input sizes must be multiples of ``2 ** (levels - 1)``.
    dropout : float
        Dropout probability after each decoder block and at the bottleneck (0: none).
    dropout_before_head : bool
        Whether the last decoder block (the head's input) also gets dropout.
    norm : {"batch", "instance", "none"}
        Normalisation layer after each convolution.
    log_variance_min, log_variance_max : float
        Bounds of the log-variance output.
    """

    def __init__(
        self,
        in_channels: int,
        *,
        base_channels: int = 12,
        levels: int = 3,
        dropout: float = 0.1,
        dropout_before_head: bool = True,
        norm: str = "batch",
        log_variance_min: float = -14.0,
        log_variance_max: float = 4.0,
    ) -> None:
        super().__init__()
        widths = [base_channels * 2**n for n in range(levels)]
        self.encoders = nn.ModuleList()
        previous = in_channels
        for width in widths:
            self.encoders.append(ConvBlock(previous, width, norm))
            previous = width
        self.pool = nn.MaxPool3d(2)
        self.bottleneck_dropout = nn.Dropout(dropout)
        self.upsamplers = nn.ModuleList()
        self.decoders = nn.ModuleList()
        self.decoder_dropouts = nn.ModuleList()
        for n, width in enumerate(reversed(widths[:-1])):
            self.upsamplers.append(nn.ConvTranspose3d(width * 2, width, 2, stride=2))
            self.decoders.append(ConvBlock(width * 2, width, norm))
            last = n == levels - 2
            self.decoder_dropouts.append(
                nn.Dropout(0.0 if last and not dropout_before_head else dropout)
            )
        self.head = HeteroscedasticHead(widths[0], log_variance_min, log_variance_max)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, echoes, i, j, k]`` to ``[batch, 2, i, j, k]`` (mean, log-variance)."""
        return self.decode(self.encode(x))

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder features of every level (no dropout here: MC passes can share them)."""
        skips = []
        for n, encoder in enumerate(self.encoders):
            if n:
                x = self.pool(x)
            x = encoder(x)
            skips.append(x)
        return skips

    def decode(self, skips: Sequence[torch.Tensor]) -> torch.Tensor:
        """Bottleneck dropout, decoder and head from :meth:`encode`'s features."""
        features = list(skips)
        x = self.bottleneck_dropout(features.pop())
        for up, decoder, drop in zip(
            self.upsamplers, self.decoders, self.decoder_dropouts, strict=True
        ):
            x = up(x)
            x = drop(decoder(torch.cat([features.pop(), x], dim=1)))
        return self.head(x)


class MonaiBasicUNet(nn.Module):
    """MONAI's ``BasicUNet`` with 2 outputs, the log-variance clamped like ours."""

    def __init__(self, in_channels: int, config: NetworkConfig) -> None:
        super().__init__()
        from monai.networks.nets import BasicUNet

        b = config.base_channels
        norm: tuple[str, dict[str, bool]] | str = (
            ("instance", {"affine": True}) if config.norm == "instance" else config.norm
        )
        self.unet = BasicUNet(
            spatial_dims=3,
            in_channels=in_channels,
            out_channels=2,
            features=(b, b, 2 * b, 4 * b, 8 * b, b),
            dropout=config.dropout,
            norm=norm if config.norm != "none" else ("batch", {"affine": False}),
        )
        self.log_variance_min = config.log_variance_min
        self.log_variance_max = config.log_variance_max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, echoes, i, j, k]`` to ``[batch, 2, i, j, k]`` (mean, log-variance)."""
        out = self.unet(x)
        return torch.cat(
            [out[:, :1], out[:, 1:2].clamp(self.log_variance_min, self.log_variance_max)], dim=1
        )


class ResidualUNet(nn.Module):
    """MONAI's residual 3D ``UNet`` [4]_ with 2 outputs, the log-variance clamped like ours.

    ``levels`` resolution levels with channels doubling from ``base_channels`` up to
    ``max_channels``, strided-convolution down-sampling, ``residual_units`` residual units per
    level, dropout in every unit and the configured normalisation (instance normalisation, as in
    nnU-Net, suits small per-GPU batches). With the defaults of ``configs/real_large.yaml``
    (32 base channels, 6 levels, 2 residual units) it holds 26.5M parameters.

    References
    ----------
    .. [4] Kerfoot E et al. Left-ventricle quantification using residual U-Net. STACOM 2018
       (MONAI ``UNet`` with ``num_res_units``).
    """

    def __init__(self, in_channels: int, config: NetworkConfig) -> None:
        super().__init__()
        from monai.networks.nets import UNet

        widths = tuple(
            min(config.base_channels * 2**n, config.max_channels) for n in range(config.levels)
        )
        norms: dict[str, tuple[str, dict[str, bool]] | str | None] = {
            "instance": ("instance", {"affine": True}),
            "batch": "batch",
            "none": None,
        }
        norm = norms[config.norm]
        self.unet = UNet(
            spatial_dims=3,
            in_channels=in_channels,
            out_channels=2,
            channels=widths,
            strides=(2,) * (config.levels - 1),
            num_res_units=config.residual_units,
            norm=norm,  # type: ignore[arg-type]  # MONAI takes None (no norm); its hint omits it
            dropout=config.dropout,
        )
        self.log_variance_min = config.log_variance_min
        self.log_variance_max = config.log_variance_max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, channels, i, j, k]`` to ``[batch, 2, i, j, k]`` (mean, log-variance)."""
        out = self.unet(x)
        return torch.cat(
            [out[:, :1], out[:, 1:2].clamp(self.log_variance_min, self.log_variance_max)], dim=1
        )


def build_network(config: NetworkConfig, in_channels: int) -> nn.Module:
    """The network ``config`` describes, for ``in_channels`` input echoes (fresh weights)."""
    if config.architecture == "monai_basic_unet":
        return MonaiBasicUNet(in_channels, config)
    if config.architecture == "residual_unet":
        return ResidualUNet(in_channels, config)
    return SynthesisUNet(
        in_channels,
        base_channels=config.base_channels,
        levels=config.levels,
        dropout=config.dropout,
        dropout_before_head=config.dropout_before_head,
        norm=config.norm,
        log_variance_min=config.log_variance_min,
        log_variance_max=config.log_variance_max,
    )


def count_parameters(network: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in network.parameters() if p.requires_grad)


def has_dropout(network: nn.Module) -> bool:
    """Whether the network holds a dropout layer with a non-zero probability."""
    return any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in network.modules())


@contextmanager
def mc_dropout(network: nn.Module, enabled: bool = True) -> Iterator[nn.Module]:
    """Evaluate ``network`` with only its dropout layers in training mode (MC dropout).

    Normalisation layers stay in evaluation mode (running statistics). The previous modes are
    restored on exit.
    """
    modes = {m: m.training for m in network.modules()}
    # Set and restore each module's flag directly: ``Module.train`` recurses into children, so
    # calling it per module costs O(modules x depth), milliseconds per window batch on a large
    # U-Net.
    for m in modes:
        m.training = enabled and isinstance(m, nn.modules.dropout._DropoutNd)
    try:
        yield network
    finally:
        for m, mode in modes.items():
            m.training = mode
