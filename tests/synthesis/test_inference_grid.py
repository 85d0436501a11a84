"""Inference at the model's spacing: the grid chosen, the sCT back on the input grid, no warning."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from synthct.resample import resample_to
from synthct.synthesis.config import SynthesisConfig
from synthct.synthesis.domain import TrainingDomain, domain_mismatches
from synthct.synthesis.errors import OutOfDomainWarning
from synthct.synthesis.inference_grid import grid_with_spacing, inference_spacing
from synthct.synthesis.model_folder import ModelFolder
from synthct.synthesis.synthesizer import SynthesisModel
from synthct.volume import MRProtocol, MultiEchoMR

OLD_DOMAIN = TrainingDomain(
    n_echoes=2, voxel_size_mm=((0.7, 0.8), (0.7, 0.8), (0.9, 0.9))
)  # sorted sizes, like the shipped cards


def test_inference_spacing_follows_the_planned_spacing_by_rank() -> None:
    planned = OLD_DOMAIN.model_copy(update={"planned_spacing_mm": (3.0, 1.0, 1.0)})
    # the input's coarse axis is axis 0: it gets the largest planned size
    assert inference_spacing(planned, (2.0, 0.5, 0.5)) == (3.0, 1.0, 1.0)
    assert inference_spacing(planned, (0.5, 0.5, 2.0)) == (1.0, 1.0, 3.0)
    assert inference_spacing(planned, (1.005, 0.999, 3.0)) is None  # within 1%: native
    assert inference_spacing(planned, (2.0, 0.5, 0.5), resample=False) is None


def test_old_models_resample_only_when_asked_to_the_middle_of_their_sizes() -> None:
    assert inference_spacing(OLD_DOMAIN, (1.5, 1.5, 1.5)) is None
    assert inference_spacing(OLD_DOMAIN, (1.5, 1.5, 1.5), resample=True) == pytest.approx(
        (0.75, 0.75, 0.9)
    )
    assert inference_spacing(TrainingDomain(n_echoes=2), (1.5, 1.5, 1.5), resample=True) is None


def test_grid_with_spacing_keeps_the_box_and_orientation() -> None:
    source = MultiEchoMR(np.ones((1, 30, 20, 10), np.float32), np.diag([-1.0, -1.0, 2.0, 1.0]))
    grid = grid_with_spacing(source.geometry, (0.5, 0.5, 1.0))
    assert grid.shape == (60, 40, 20)
    assert grid.orientation_code == source.geometry.orientation_code
    np.testing.assert_allclose(grid.extent_mm, source.geometry.extent_mm)
    # first voxel edge: centre minus half a voxel along each axis, the same on both grids
    corner = np.asarray(source.geometry.origin_lps_mm) - source.geometry.direction @ [0.5, 0.5, 1]
    new_corner = np.asarray(grid.origin_lps_mm) - grid.direction @ [0.25, 0.25, 0.5]
    np.testing.assert_allclose(new_corner, corner)


def test_a_planned_spacing_takes_the_voxel_size_out_of_the_domain_check() -> None:
    mr = MultiEchoMR(
        np.ones((2, 8, 8, 8), np.float32),
        np.diag([3.0, 3.0, 3.0, 1.0]),
        protocol=MRProtocol((1.15, 2.3), 7.0, 10.0, 3.0),
    )
    assert any("voxel size" in m for m in domain_mismatches(OLD_DOMAIN, mr))
    planned = OLD_DOMAIN.model_copy(update={"planned_spacing_mm": (0.75, 0.75, 0.9)})
    assert domain_mismatches(planned, mr) == []
    assert any("voxel size" in m for m in domain_mismatches(planned, mr, resampled=False))


class _Affine(nn.Module):
    """Mean = a * echo 1 + b, log-variance constant: a pointwise network with known output."""

    def __init__(self, a: float, b: float) -> None:
        super().__init__()
        self.conv = nn.Conv3d(2, 2, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0] = a
            self.conv.bias.copy_(torch.tensor([b, -4.0]))  # type: ignore[union-attr]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _model(domain: TrainingDomain, network: nn.Module) -> SynthesisModel:
    config = SynthesisConfig().with_updates(
        {"inference": {"patch_size": (16, 16, 16), "overlap": 0.25, "mask_outside_body": False}}
    )
    return SynthesisModel([ModelFolder(None, network.eval(), config, domain, {}, {})])


def test_a_constant_prediction_comes_back_exactly_on_the_input_grid() -> None:
    rng = np.random.default_rng(0)
    mr = MultiEchoMR(
        rng.uniform(0.5, 1.0, (2, 20, 18, 9)).astype(np.float32),
        np.diag([1.5, 1.5, 3.0, 1.0]),
        protocol=MRProtocol((1.15, 2.3), 7.0, 10.0, 3.0),
    )
    domain = OLD_DOMAIN.model_copy(update={"planned_spacing_mm": (1.0, 1.0, 2.0)})
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfDomainWarning)  # no voxel-size warning
        result = _model(domain, _Affine(0.0, 0.25)).synthesize(mr, uncertainty=True)
    assert result.sct.geometry.is_close(mr.geometry)
    # every voxel, edges included, is the constant: nothing was filled with air on the way back
    np.testing.assert_allclose(result.sct.array, 250.0, atol=1e-3)
    assert result.sct.provenance["inference_spacing_mm"] == [1.0, 1.0, 2.0]
    assert result.aleatoric_sd is not None
    np.testing.assert_allclose(result.aleatoric_sd.array, 1000.0 * np.exp(-2.0), rtol=1e-4)


@pytest.mark.slow
def test_a_shipped_model_gives_the_same_sct_at_1_and_at_1_5_mm(
    render: Callable[..., Any],
) -> None:
    """product_like at 1.0 mm and 1.5 mm, each resampled to its planned spacing.

    The shipped model declares a planned spacing (0.74 x 0.74 x 0.9 mm), so every input is run
    there by default and no voxel size is a domain mismatch. Measured over the body voxels of the
    1.5 mm grid (the 1.0 mm sCT resampled onto it), with the model shipped in session 18 (LPS):
    |difference| mean 14.9 HU, median 1.55 HU, 95th percentile 60 HU (bone edges the 1.5 mm
    input no longer resolves); the 1.5 mm input run at its own grid (``resample=False``): mean
    32.5 HU (the session-12 model: 13.0, 0.5, 64 and 59.0 HU). Tolerances: mean < 18 HU, median
    < 2 HU (1.5 HU for the session-12 model), and below 60% of the own-grid run's mean (85%
    before). Why the median rose (session 19): the raw 99th-percentile reference scales the less
    noisy 1.5 mm copy 0.7-0.9 % brighter, and this model turns that into a -1.0 HU soft-tissue
    shift (with the two scales made equal the median is 0.92 HU); the fix, a smoothed reference
    (``normalisation.reference_smoothing_mm``), is tested in test_synthesis_normalisation.py and
    measured 0.88 HU on a pair fine-tuned with it, which is not shipped (README, "Intensity
    scale").
    """
    from synthct.phantom.protocols import FAST_3T
    from synthct.synthesis.synthesizer import load_shipped_model

    torch.set_num_threads(2)
    protocol = FAST_3T.with_changes(
        name="test_1mm", voxel_size_mm=(1.0, 1.0, 1.0), field_of_view_mm=(96.0, 96.0, 48.0)
    )
    _, mr_1mm = render(3, protocol)
    mr_15mm = resample_to(mr_1mm, grid_with_spacing(mr_1mm.geometry, (1.5, 1.5, 1.5)))
    model = load_shipped_model("product_like")
    assert model.domain.planned_spacing_mm is not None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", OutOfDomainWarning)
        fine = model.synthesize(mr_1mm)
        coarse = model.synthesize(mr_15mm)
        explicit = model.synthesize(mr_15mm, resample=True)
    assert not [str(w.message) for w in caught if "voxel size" in str(w.message)]
    own_grid = model.synthesize(mr_15mm, resample=False)
    assert coarse.sct.geometry.is_close(mr_15mm.geometry)
    np.testing.assert_array_equal(coarse.sct.array, explicit.sct.array)  # the default
    fine_on_coarse = resample_to(fine.sct, mr_15mm).array
    body = coarse.body_mask & own_grid.body_mask
    resampled = np.abs(coarse.sct.array - fine_on_coarse)[body]
    own_grid_error = float(np.abs(own_grid.sct.array - fine_on_coarse)[body].mean())
    assert float(resampled.mean()) < 18.0
    assert float(np.median(resampled)) < 2.0
    assert float(resampled.mean()) < 0.6 * own_grid_error


def test_planned_sizes_go_to_a_case_by_rank_in_training_as_at_inference() -> None:
    from synthct.synthesis.inference_grid import spacing_by_rank

    # a sagittal slab brought into LPS: its 0.9 mm slab axis is now axis 0 (left-right)
    assert spacing_by_rank((0.74, 0.74, 0.9), (0.9, 0.74, 0.74)) == (0.9, 0.74, 0.74)
    assert spacing_by_rank((0.74, 0.9, 0.74), (1.0, 1.0, 1.0)) == (0.74, 0.74, 0.9)
    assert spacing_by_rank((3.0, 1.0, 1.0), (0.5, 2.0, 0.5)) == (1.0, 3.0, 1.0)
