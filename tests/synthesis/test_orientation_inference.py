"""The network sees one array orientation: in training (plan.orientation) and at inference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from synthct.synthesis.config import SynthesisConfig
from synthct.synthesis.domain import TrainingDomain
from synthct.synthesis.manifest import Case
from synthct.synthesis.model_folder import ModelFolder
from synthct.synthesis.planning import reorient_case
from synthct.synthesis.synthesizer import SynthesisModel, default_tta_axes
from synthct.synthesis.training import TrainingResult
from synthct.volume import CTVolume, LabelMap, MRProtocol, MultiEchoMR


class _Gradient(nn.Module):
    """Mean = echo 1 minus its neighbour along array axis 1: a network that knows which way
    the arrays run, as a trained one does (a pointwise network would not)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(2, 2, 3, padding=1, bias=True)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0, 1, 1, 1] = 1.0
            self.conv.weight[0, 0, 1, 0, 1] = -1.0
            self.conv.bias.copy_(torch.tensor([0.0, -4.0]))  # type: ignore[union-attr]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _model(orientation: str | None) -> SynthesisModel:
    config = SynthesisConfig().with_updates(
        {"inference": {"patch_size": (16, 16, 16), "overlap": 0.25, "mask_outside_body": False}}
    )
    domain = TrainingDomain(n_echoes=2, orientation=orientation)
    return SynthesisModel([ModelFolder(None, _Gradient().eval(), config, domain, {}, {})])


def _mri() -> MultiEchoMR:
    rng = np.random.default_rng(4)
    array = rng.uniform(0.2, 1.0, (2, 18, 20, 12)).astype(np.float32)
    array[:, 6:12, 8:14, 3:9] += 2.0  # a bright block, so the gradient has edges
    return MultiEchoMR(array, np.diag([1.0, 1.0, 2.0, 1.0]), protocol=MRProtocol((1.15, 2.3)))


def test_a_model_with_an_orientation_gives_the_same_sct_for_a_sagittal_or_ras_mri() -> None:
    mr = _mri()  # LPS
    model = _model("LPS")
    reference = model.synthesize(mr).sct
    assert "inference_orientation" not in reference.provenance
    for code in ("RAS", "PSL", "IAR"):
        stored = mr.reoriented(code)
        result = model.synthesize(stored)
        assert result.sct.geometry.is_close(stored.geometry)  # back on the input grid
        assert result.sct.provenance["inference_orientation"] == "LPS"
        # the same voxels in the input's layout: exactly the LPS result, moved
        np.testing.assert_array_equal(result.sct.reoriented("LPS").array, reference.array)
        assert result.body_mask.shape == stored.spatial_shape


def test_a_model_without_one_runs_on_the_input_layout_and_then_differs() -> None:
    """Why the setting exists: the same MRI stored in RAS gives another sCT (models made before
    it run as they always did)."""
    mr = _mri()
    model = _model(None)
    reference = model.synthesize(mr).sct
    moved = model.synthesize(mr.reoriented("RAS")).sct.reoriented("LPS")
    assert np.abs(moved.array - reference.array).max() > 100.0  # HU


def test_default_flips_are_the_left_right_axis_of_the_grid_the_network_sees() -> None:
    mr = _mri().reoriented("PSL")  # left-right is array axis 2 of the input
    assert default_tta_axes(_model(None), mr) == (2,)
    assert default_tta_axes(_model("LPS"), mr) == (0,)  # axis 0 once reoriented


def test_a_training_case_moves_with_its_ct_lesions_and_coverage() -> None:
    mr = _mri()
    ct = CTVolume(np.linspace(-1000, 1000, mr.array[0].size).reshape(mr.spatial_shape), mr.affine)
    lesions = LabelMap((mr.array[0] > 2.0).astype(np.uint8), mr.affine)
    coverage = np.zeros(mr.spatial_shape, dtype=bool)
    coverage[:9] = True
    stored = Case(
        "c1",
        mr.reoriented("PSL"),
        ct.reoriented("PSL"),
        lesions.reoriented("PSL"),
        reorient_case(Case("c1", mr, ct, None, coverage), "PSL").ct_coverage,
    )
    back = reorient_case(stored, "LPS")
    assert back.mr.orientation_code == "LPS" and back.ct.geometry.is_close(mr.geometry)
    np.testing.assert_array_equal(back.mr.array, mr.array)
    np.testing.assert_array_equal(back.ct.array, ct.array)
    assert back.lesion_labels is not None
    np.testing.assert_array_equal(back.lesion_labels.array, lesions.array)
    np.testing.assert_array_equal(back.ct_coverage, coverage)
    assert reorient_case(stored, None) is stored


def test_the_trained_card_records_the_orientation_it_trained_in(trained: TrainingResult) -> None:
    import json

    card = json.loads((trained.model_dir / "model_card.json").read_text())
    assert card["domain"]["orientation"] == "LPS"


def test_the_shipped_models_are_trained_in_lps_and_a_legacy_folder_keeps_its_layout(
    tmp_path: Path,
) -> None:
    import json
    import shutil

    import yaml

    from synthct.synthesis.shipped import SHIPPED_MODELS, shipped_model_path
    from synthct.synthesis.synthesizer import load_shipped_model

    for name in SHIPPED_MODELS:
        shipped = load_shipped_model(name)
        assert shipped.domain.orientation == shipped.config.plan.orientation == "LPS"
    # A folder made before plan.orientation existed: no orientation in card or config.
    legacy_dir = tmp_path / "legacy"
    shutil.copytree(shipped_model_path("product_like"), legacy_dir)
    card = json.loads((legacy_dir / "model_card.json").read_text())
    del card["domain"]["orientation"]
    (legacy_dir / "model_card.json").write_text(json.dumps(card))
    config = yaml.safe_load((legacy_dir / "config.yaml").read_text())
    config["plan"]["orientation"] = None
    (legacy_dir / "config.yaml").write_text(yaml.safe_dump(config))
    legacy = SynthesisModel.load(legacy_dir)
    assert legacy.domain.orientation is None and legacy.config.plan.orientation is None

    rng = np.random.default_rng(0)
    data = np.abs(rng.normal(0.0, 1e-3, (2, 32, 32, 16))).astype(np.float32)
    data[:, 6:26, 6:26, 2:14] += np.array([0.08, 0.07], np.float32)[:, None, None, None]
    data[:, 12:20, 14:18, 4:12] *= 0.3  # a dark structure off-centre, so layout matters
    mr = MultiEchoMR(
        data, np.diag([0.74, 0.74, 0.9, 1.0]), protocol=MRProtocol((1.15, 2.30), 7.0, 10.0, 3.0)
    )
    sagittal = mr.reoriented("PSL")
    for model, same in ((load_shipped_model("product_like"), True), (legacy, False)):
        axial_sct = np.asarray(model.synthesize(mr).sct.array)
        back = model.synthesize(sagittal).sct.reoriented("LPS")
        assert back.same_geometry(mr)
        difference = float(np.abs(np.asarray(back.array) - axial_sct).max())
        assert (difference < 1e-3) if same else (difference > 1.0), difference


def test_an_ensemble_of_models_trained_in_different_orientations_is_refused() -> None:
    from synthct.synthesis.errors import ModelFolderError

    with pytest.raises(ModelFolderError, match="different array orientations"):
        SynthesisModel(_model("LPS").members + _model(None).members)


def test_a_bad_plan_orientation_is_refused_with_examples(tmp_path: Path) -> None:
    from synthct.synthesis.config import load_config
    from synthct.synthesis.errors import TrainingConfigError

    path = tmp_path / "config.yaml"
    path.write_text("plan:\n  orientation: LPP\n")
    with pytest.raises(TrainingConfigError, match=r"one of each pair.*LPS.*null") as info:
        load_config(path)
    assert str(path) in str(info.value)
    path.write_text("plan:\n  orientation: ras\n")
    assert load_config(path).plan.orientation == "RAS"
