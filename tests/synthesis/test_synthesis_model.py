"""Model folders and synthesis with a trained model: reload, grids, uncertainty, bad input."""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from synthct.geometry import Geometry
from synthct.imaging.body_mask import body_mask_from_ct
from synthct.imaging.image_metrics import mae_hu
from synthct.io import read_volume
from synthct.synthesis.errors import (
    DomainMismatchError,
    ModelFolderError,
    OutOfDomainWarning,
    SynthesisInputError,
)
from synthct.synthesis.model_folder import load_model_folder, sha256_of, update_card
from synthct.synthesis.result import map_paths
from synthct.synthesis.sliding_window import count_windows
from synthct.synthesis.synthesizer import SynthesisModel
from synthct.synthesis.training import TrainingResult
from synthct.volume import CTVolume, MRProtocol, MultiEchoMR, SyntheticCT


@pytest.fixture(scope="module")
def model(trained: TrainingResult) -> SynthesisModel:
    return SynthesisModel.load(trained.model_dir)


@pytest.fixture(scope="module")
def held_out(render: Callable[..., Any]) -> tuple[CTVolume, MultiEchoMR]:
    return render(11)  # a seed the model never saw


def _quiet(model: SynthesisModel, mr: MultiEchoMR, **kw: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfDomainWarning)  # in-domain: no warning allowed
        return model.synthesize(mr, **kw)


def test_sct_is_in_hu_on_the_mri_grid_and_beats_bulk_values(
    model: SynthesisModel, held_out: tuple[CTVolume, MultiEchoMR]
) -> None:
    ct, mr = held_out
    result = _quiet(model, mr)
    assert isinstance(result.sct, SyntheticCT)
    assert result.sct.geometry.is_close(mr.geometry) and result.sct.dtype == np.float32
    body = body_mask_from_ct(ct.array)
    assert mae_hu(ct.array, result.sct.array, body) < 90.0
    assert np.all(result.sct.array[~result.body_mask] == -1000.0)
    assert result.maps() == {} and result.out_of_domain == []


def test_reloading_the_folder_gives_identical_predictions(
    trained: TrainingResult, model: SynthesisModel, held_out: tuple[CTVolume, MultiEchoMR]
) -> None:
    _, mr = held_out
    again = SynthesisModel.load(trained.model_dir)
    np.testing.assert_array_equal(_quiet(model, mr).sct.array, _quiet(again, mr).sct.array)


def test_windows_outside_the_body_are_skipped_without_changing_the_sct(
    model: SynthesisModel, held_out: tuple[CTVolume, MultiEchoMR]
) -> None:
    _, mr = held_out
    # air around the phantom: a wider field of view, so whole windows hold no body voxel
    n_i, n_j, n_k = mr.spatial_shape
    array = np.zeros((mr.n_echoes, n_i + 80, n_j + 80, n_k), dtype=np.float32)
    array[:, 40:-40, 40:-40] = mr.array
    affine = mr.affine.copy()
    affine[:3, 3] = mr.geometry.index_to_lps([-40, -40, 0])
    wide = MultiEchoMR(array, affine, protocol=mr.protocol)
    counts: list[int] = []
    masked = _quiet(model, wide, progress=lambda done, total: counts.append(total))
    everywhere = _quiet(model, wide, mask_outside_body=False)
    all_windows = model.config.inference_patch_size
    total = count_windows(wide.spatial_shape, all_windows, model.config.inference.overlap)
    assert counts[-1] < total  # some windows were not computed
    body = masked.body_mask
    # batches now group other windows: float32 rounding differs, by far less than 0.01 HU
    np.testing.assert_allclose(masked.sct.array[body], everywhere.sct.array[body], atol=0.01)
    assert np.all(masked.sct.array[~body] == -1000.0)


@pytest.mark.parametrize(
    ("shape", "spacing"),
    [
        ((10, 14, 6), (3.0, 3.0, 3.0)),
        ((43, 33, 19), (3.0, 3.0, 3.0)),
        ((40, 40, 12), (2.8, 3.1, 4.0)),
    ],
    ids=["smaller-than-patch", "non-multiple", "anisotropic"],
)
def test_any_grid_is_synthesised_on_itself(
    model: SynthesisModel,
    held_out: tuple[CTVolume, MultiEchoMR],
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
) -> None:
    _, mr = held_out
    direction = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    geometry = Geometry.from_parameters(shape, spacing, (-20.0, 5.0, 7.0), direction)
    crop = mr.array[:, 4 : 4 + shape[0], 4 : 4 + shape[1], 4 : 4 + shape[2]]
    small = MultiEchoMR(crop, geometry.affine, protocol=mr.protocol)
    result = _quiet(model, small, mask_outside_body=False)
    assert result.sct.spatial_shape == shape
    assert result.sct.geometry.is_close(geometry)
    assert np.isfinite(result.sct.array).all()


def test_uncertainty_maps_are_non_negative_and_add_up(
    model: SynthesisModel, held_out: tuple[CTVolume, MultiEchoMR], tmp_path: Path
) -> None:
    _, mr = held_out
    result = _quiet(model, mr, uncertainty=True, mc_passes=3)
    assert set(result.maps()) == {"aleatoric_sd", "epistemic_sd", "total_sd"}
    assert result.epistemic_method == "mc_dropout" and result.mc_passes == 3
    a, e, t = (result.maps()[k].array for k in ("aleatoric_sd", "epistemic_sd", "total_sd"))
    for sd in (a, e, t):
        assert sd.shape == mr.spatial_shape and sd.min() >= 0
    np.testing.assert_allclose(t**2, a**2 + e**2, rtol=1e-4, atol=1e-2)
    inside = result.body_mask
    assert a[inside].mean() > 1.0 and e[inside].mean() > 0.1
    again = _quiet(model, mr, uncertainty=True, mc_passes=3)  # seeded: reproducible
    np.testing.assert_array_equal(again.maps()["epistemic_sd"].array, e)
    written = result.write(tmp_path / "sct.nii.gz")
    assert written["total_sd"] == map_paths(tmp_path / "sct.nii.gz")["total_sd"]
    assert written["total_sd"].name == "sct_total_sd.nii.gz"
    assert read_volume(written["sct"]).kind == "sct"


def test_mc_dropout_sd_is_zero_when_dropout_is_off(
    trained: TrainingResult, held_out: tuple[CTVolume, MultiEchoMR]
) -> None:
    folder = load_model_folder(trained.model_dir)
    for m in folder.network.modules():
        if hasattr(m, "p") and isinstance(m.p, float):
            m.p = 0.0
    result = _quiet(SynthesisModel([folder]), held_out[1], uncertainty=True, mc_passes=3)
    assert float(result.maps()["epistemic_sd"].array.max()) == 0.0


def test_ensemble_of_two_folders(
    trained: TrainingResult, held_out: tuple[CTVolume, MultiEchoMR]
) -> None:
    ensemble = SynthesisModel.load([trained.model_dir, trained.model_dir])
    result = _quiet(ensemble, held_out[1], uncertainty=True)
    assert result.epistemic_method == "ensemble"
    assert float(result.maps()["epistemic_sd"].array.max()) == 0.0  # identical members


def test_out_of_domain_input_warns_naming_the_mismatch(
    model: SynthesisModel, render: Callable[..., Any]
) -> None:
    from synthct.phantom.protocols import PAPER_1P5T

    protocol = PAPER_1P5T.with_changes(
        voxel_size_mm=(3.0, 3.0, 3.0), field_of_view_mm=(144.0, 144.0, 96.0)
    )
    _, mr = render(11, protocol)
    with pytest.warns(OutOfDomainWarning, match=r"field strength 1\.5 T \(trained on 3 T\)") as w:
        result = model.synthesize(mr)
    assert "echo 1 TE 2.3 ms" in str(w[0].message)
    assert any("field strength" in m for m in result.out_of_domain)
    # ... and travel with the sCT (its sidecar) to every report that uses it
    assert result.sct.out_of_domain == result.out_of_domain
    assert result.sct.provenance["model"] == model.name
    fine = MultiEchoMR(mr.array, np.diag([0.7, 0.7, 0.7, 1.0]), protocol=model_protocol())
    with pytest.warns(OutOfDomainWarning, match="voxel size 0.7 x 0.7 x 0.7 mm"):
        model.synthesize(fine)


def model_protocol() -> MRProtocol:
    return MRProtocol((1.15, 2.3), 7.0, 10.0, 3.0)


def test_bad_inputs_raise_clear_errors(
    model: SynthesisModel, held_out: tuple[CTVolume, MultiEchoMR]
) -> None:
    ct, mr = held_out
    three = MultiEchoMR(np.concatenate([mr.array, mr.array[:1]]), mr.affine)
    with pytest.raises(DomainMismatchError, match="3 echoes but the model was trained on 2"):
        model.synthesize(three)
    as_mr = MultiEchoMR(np.stack([ct.array, ct.array]), ct.affine, protocol=model_protocol())
    with pytest.raises(SynthesisInputError, match="looks like a CT"):
        model.synthesize(as_mr)
    empty = MultiEchoMR(np.zeros_like(mr.array), mr.affine, protocol=model_protocol())
    with pytest.raises(SynthesisInputError, match="no signal"):
        model.synthesize(empty)
    with pytest.raises(SynthesisInputError, match="multi-echo MRI"):
        model.synthesize(ct)  # type: ignore[arg-type]


def test_corrupt_or_mismatched_folders_are_refused(trained: TrainingResult, tmp_path: Path) -> None:
    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(trained.model_dir, target)
        return target

    with pytest.raises(ModelFolderError, match="no such directory"):
        load_model_folder(tmp_path / "absent")
    missing = copy("missing")
    (missing / "normalisation.json").unlink()
    with pytest.raises(ModelFolderError, match=r"lacks normalisation\.json"):
        load_model_folder(missing)
    corrupt = copy("corrupt")
    data = bytearray((corrupt / "weights.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (corrupt / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelFolderError, match="corrupt or were replaced"):
        load_model_folder(corrupt)
    wider = copy("wider")
    config = (wider / "config.yaml").read_text().replace("base_channels: 6", "base_channels: 8")
    (wider / "config.yaml").write_text(config)
    with pytest.raises(ModelFolderError, match="do not fit the network"):
        load_model_folder(wider)
    rescaled = copy("rescaled")
    norm = json.loads((rescaled / "normalisation.json").read_text())
    norm["config"]["hu_scale"] = 500.0
    (rescaled / "normalisation.json").write_text(json.dumps(norm))
    with pytest.raises(ModelFolderError, match="disagree"):
        load_model_folder(rescaled)
    turned = copy("turned")  # a card that says another training orientation than config.yaml
    card = json.loads((turned / "model_card.json").read_text())
    card["domain"]["orientation"] = "RAS"
    (turned / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ModelFolderError, match=r"orientation 'LPS'.*'RAS'"):
        load_model_folder(turned)
    card = json.loads((trained.model_dir / "model_card.json").read_text())
    assert card["weights_sha256"] == sha256_of(trained.model_dir / "weights.safetensors")


def test_update_card_adds_sections_and_keeps_the_weights_valid(
    trained: TrainingResult, tmp_path: Path
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(trained.model_dir, folder)
    before = json.loads((folder / "model_card.json").read_text())
    update_card(
        folder,
        provenance={"command": "scripts/train.sh tiny"},
        held_out_validation={"body_mae_hu": 27.5, "bone_dice_250hu": 0.98},
        held_out_validation_real_anatomy={"body_mae_hu": 61.0},
    )
    card = json.loads((folder / "model_card.json").read_text())
    assert card["held_out_validation"] == {"body_mae_hu": 27.5, "bone_dice_250hu": 0.98}
    assert card["provenance"] == {"command": "scripts/train.sh tiny"}
    assert {k: v for k, v in card.items() if k in before} == before  # nothing else changed
    markdown = (folder / "model_card.md").read_text()
    assert "## Held-out validation\n\n- body_mae_hu: 27.5" in markdown
    assert "## Held-out validation: real anatomy\n\n- body_mae_hu: 61.0" in markdown
    assert "## Provenance\n\n- command: scripts/train.sh tiny" in markdown
    load_model_folder(folder)  # the checksum still matches the weights
    with pytest.raises(ModelFolderError, match="no model card"):
        update_card(tmp_path / "absent", provenance={})


def test_an_sct_below_the_lowest_training_target_is_clipped_to_it(
    trained: TrainingResult, held_out: tuple[CTVolume, MultiEchoMR]
) -> None:
    """A network pushed to predict -10,000 HU (as an unseen contrast can drive one to -3000 HU
    and below) gives -1024 HU, the lowest target training saw; not a value no tissue has."""
    import torch

    _, mr = held_out
    model = SynthesisModel.load(trained.model_dir)
    (network,) = model.networks
    head = [m for m in network.modules() if isinstance(m, torch.nn.Conv3d)][-1]
    assert head.bias is not None
    with torch.no_grad():
        head.bias[0] -= 10.0  # network units: 1000 HU each
    sct = _quiet(model, mr, mask_outside_body=False).sct.array
    assert sct.min() == pytest.approx(-1024.0)
    assert np.mean(sct == np.float32(-1024.0)) > 0.99
