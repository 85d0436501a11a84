"""Test-time augmentation by flips and ensembles: the mean is the sCT, the SD the epistemic map."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from synthct.cli import app
from synthct.io import read_volume
from synthct.synthesis.config import SynthesisConfig
from synthct.synthesis.domain import TrainingDomain
from synthct.synthesis.errors import SynthesisInputError
from synthct.synthesis.model_folder import ModelFolder
from synthct.synthesis.synthesizer import SynthesisModel, default_tta_axes
from synthct.synthesis.uncertainty import flip_sets
from synthct.volume import MRProtocol, MultiEchoMR

CONFIG = SynthesisConfig().with_updates(
    {
        "inference": {
            "patch_size": (16, 16, 8),
            "overlap": 0.25,
            "batch_size": 3,
            "mask_outside_body": False,
        }
    }
)


def _folder(network: nn.Module) -> ModelFolder:
    return ModelFolder(None, network.eval(), CONFIG, TrainingDomain(n_echoes=2), {}, {})


def _mri(seed: int = 0) -> MultiEchoMR:
    rng = np.random.default_rng(seed)
    return MultiEchoMR(
        rng.uniform(0.2, 1.0, (2, 24, 20, 12)).astype(np.float32),
        np.diag([1.0, 1.0, 2.0, 1.0]),
        protocol=MRProtocol((1.15, 2.3), 7.0, 10.0, 3.0),
    )


class _Conv(nn.Module):
    """One 3x3x3 convolution to (mean, log-variance) with a chosen kernel for the mean."""

    def __init__(self, kernel: torch.Tensor) -> None:
        super().__init__()
        self.conv = nn.Conv3d(2, 2, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0] = kernel
            self.conv.bias.copy_(torch.tensor([0.1, -6.0]))  # type: ignore[union-attr]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _symmetric_kernel() -> torch.Tensor:
    """Invariant under a flip of any axis: the convolution is flip-equivariant."""
    g = torch.tensor([0.25, 0.5, 0.25])
    return g[:, None, None] * g[None, :, None] * g[None, None, :]


def test_flip_sets_are_every_combination_of_the_axes() -> None:
    assert flip_sets(()) == [()]
    assert flip_sets((0, 2)) == [(), (0,), (2,), (0, 2)]
    assert len(flip_sets((0, 1, 2))) == 8
    with pytest.raises(ValueError, match="0, 1, 2"):
        flip_sets((3,))


def test_flip_tta_of_a_flip_equivariant_network_has_no_disagreement() -> None:
    model = SynthesisModel([_folder(_Conv(_symmetric_kernel()))])
    mr = _mri()
    plain = model.synthesize(mr)
    tta = model.synthesize(mr, uncertainty=True, tta_axes=(0, 1, 2))
    assert tta.epistemic_method == "ensemble" and tta.epistemic_sd is not None
    assert float(tta.epistemic_sd.array.max()) < 1e-3  # HU
    np.testing.assert_allclose(tta.sct.array, plain.sct.array, atol=1e-3)


def test_flip_tta_of_an_asymmetric_network_disagrees_by_the_known_amount() -> None:
    """Mean = echo 1 shifted one voxel along axis 0; flipped, it is shifted the other way.

    Away from the window edges the two members predict x[i-1] and x[i+1]: the mean is their
    average and the population SD half their difference, exactly.
    """
    kernel = torch.zeros(3, 3, 3)
    kernel[0, 1, 1] = 1.0  # out[i] = x[i - 1]
    model = SynthesisModel([_folder(_Conv(kernel))])
    mr = _mri()
    tta = model.synthesize(mr, uncertainty=True, tta_axes=(0,))
    assert tta.epistemic_sd is not None
    x = mr.array[0]
    # network units are 1000 HU; the normalisation divides echo 1 by its 99th percentile
    inputs = x / np.percentile(x[x > 0], 99.0)
    expected_sd = 1000.0 * np.abs(inputs[2:] - inputs[:-2]) / 2.0
    expected_mean = 1000.0 * ((inputs[2:] + inputs[:-2]) / 2.0 + 0.1)
    # voxels 1..22 along axis 0 (both neighbours exist); at window edges the zero padding of
    # a window differs from the volume, which the Gaussian blend down-weights: 5% tolerance
    got_sd, got_mean = tta.epistemic_sd.array[1:-1], tta.sct.array[1:-1]
    assert np.abs(got_sd - expected_sd).mean() < 0.05 * expected_sd.mean()
    assert np.abs(got_mean - expected_mean).mean() < 0.05 * 1000.0 * 0.1
    # without TTA there is no disagreement map at all, and the sCT is the shifted echo
    plain = model.synthesize(mr)
    assert plain.epistemic_sd is None


class _Constant(nn.Module):
    """Predicts the same (mean, log-variance) everywhere, whatever the input."""

    def __init__(self, mean: float, log_variance: float) -> None:
        super().__init__()
        self.value: torch.Tensor
        self.register_buffer("value", torch.tensor([mean, log_variance]))
        self.weight = nn.Parameter(torch.zeros(1, 2, 1, 1, 1))  # a 5D parameter, like a conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0], 2, *x.shape[2:])
        return self.value[None, :, None, None, None].expand(shape) + 0 * self.weight.sum()


def test_an_ensemble_of_two_offset_models_gives_their_mean_and_known_sd() -> None:
    model = SynthesisModel(
        [_folder(_Constant(0.10, np.log(0.04))), _folder(_Constant(0.30, np.log(0.01)))]
    )
    result = model.synthesize(_mri(), uncertainty=True)
    assert result.epistemic_method == "ensemble"
    assert result.epistemic_sd is not None and result.aleatoric_sd is not None
    assert result.total_sd is not None
    np.testing.assert_allclose(result.sct.array, 200.0, atol=1e-3)  # (100 + 300) / 2 HU
    np.testing.assert_allclose(result.epistemic_sd.array, 100.0, atol=1e-3)  # |300-100| / 2
    aleatoric = 1000.0 * np.sqrt((0.04 + 0.01) / 2)
    np.testing.assert_allclose(result.aleatoric_sd.array, aleatoric, rtol=1e-5)
    np.testing.assert_allclose(result.total_sd.array, np.hypot(aleatoric, 100.0), rtol=1e-5)
    # TTA on top: flips change nothing for a constant, so the figures stay the same
    flipped = model.synthesize(_mri(), uncertainty=True, tta_axes=(0, 1))
    assert flipped.epistemic_sd is not None
    np.testing.assert_allclose(flipped.epistemic_sd.array, 100.0, atol=1e-3)


def test_mc_dropout_cannot_be_combined_with_tta() -> None:
    model = SynthesisModel([_folder(_Conv(_symmetric_kernel()))])
    with pytest.raises(SynthesisInputError, match="test-time"):
        model.synthesize(_mri(), epistemic="mc_dropout", tta_axes=(0,))


def test_default_tta_axis_is_the_left_right_axis_of_the_mri() -> None:
    model = SynthesisModel([_folder(_Conv(_symmetric_kernel()))])
    mr = _mri()
    assert default_tta_axes(model, mr) == (0,)
    sagittal = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [-1, 0, 0, 0], [0, 0, 0, 1]], float)
    turned = MultiEchoMR(mr.array, sagittal, protocol=mr.protocol)
    assert default_tta_axes(model, turned) == (2,)  # axis 2 runs along L


def test_synthesize_command_with_tta_and_resample_options(
    tmp_path: Path, make_cohort: Callable[..., Path]
) -> None:
    from synthct.synthesis.shipped import shipped_model_path

    folder = make_cohort(tmp_path / "cohort", (5,)).parent
    echoes = [str(folder / f"case005_echo{e}.nii.gz") for e in (1, 2)]
    model = str(shipped_model_path("product_like"))
    out = tmp_path / "sct.nii.gz"
    runner = CliRunner()
    done = runner.invoke(
        app,
        ["synthesize", *echoes, "-o", str(out), "-m", model, "--tta", "--tta-axes", "0,1",
         "--uncertainty", "--no-resample"],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    sct = read_volume(out, kind="sct")
    epistemic = read_volume(tmp_path / "sct_epistemic_sd.nii.gz")
    assert epistemic.spatial_shape == sct.spatial_shape
    assert float(np.asarray(epistemic.array).max()) > 0  # flips of a real model disagree
    # A fresh output path, so the option errors are what refuses, not the overwrite guard.
    refused = tmp_path / "refused.nii.gz"
    done = runner.invoke(
        app, ["synthesize", *echoes, "-o", str(refused), "-m", model, "--tta-axes", "0"]
    )
    assert done.exit_code == 2 and "--tta" in done.output
    done = runner.invoke(
        app, ["synthesize", *echoes, "-o", str(refused), "-m", "baseline", "--tta"]
    )
    assert done.exit_code == 2 and "trained model" in done.output
    assert not refused.exists()
