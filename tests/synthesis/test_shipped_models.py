"""The shipped models (package data) load, pass their checksum and synthesize."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from synthct.synthesis.errors import ModelFolderError
from synthct.synthesis.model_folder import load_model_folder, sha256_of
from synthct.synthesis.shipped import SHIPPED_MODELS, shipped_model_path
from synthct.synthesis.synthesizer import load_shipped_model
from synthct.volume import MRProtocol, MultiEchoMR


def _small_mr() -> MultiEchoMR:
    """A 2-echo paper_3t-like volume: a bright block (fat-like) in dark air, with noise."""
    rng = np.random.default_rng(0)
    data = np.abs(rng.normal(0.0, 1e-3, (2, 32, 32, 16))).astype(np.float32)
    data[:, 6:26, 6:26, 2:14] += np.array([0.08, 0.07], np.float32)[:, None, None, None]
    affine = np.diag([0.74, 0.74, 0.9, 1.0])
    protocol = MRProtocol((1.15, 2.30), 7.0, 10.0, 3.0)
    return MultiEchoMR(data, affine, protocol=protocol)


@pytest.mark.parametrize("name", SHIPPED_MODELS)
def test_shipped_model_loads_checks_and_synthesizes(name: str) -> None:
    folder = shipped_model_path(name)
    card = load_model_folder(folder).card
    assert card["weights_sha256"] == sha256_of(folder / "weights.safetensors")
    assert card["provenance"]["cohort_seed"] not in (301, 302, 2025)
    assert sum(f.stat().st_size for f in folder.iterdir()) < 2_000_000
    model = load_shipped_model(name)
    result = model.synthesize(_small_mr(), uncertainty=True, mc_passes=2)
    sct = np.asarray(result.sct.array)
    assert sct.shape == (32, 32, 16) and np.isfinite(sct).all()
    assert result.total_sd is not None and np.all(np.asarray(result.total_sd.array) >= 0)


def test_shipped_models_differ_only_in_lesion_insertion() -> None:
    a = load_shipped_model("product_like").config
    b = load_shipped_model("lesion_aware").config
    # the control arm draws the same canal-centred patches and inserts nothing (sham)
    assert a.lesion_insertion.enabled and a.lesion_insertion.sham
    assert b.lesion_insertion.enabled and not b.lesion_insertion.sham
    assert a.lesion_insertion.probability == b.lesion_insertion.probability
    assert a.lesion_insertion.placement_tissues == b.lesion_insertion.placement_tissues
    assert a.network == b.network and a.patches == b.patches and a.plan == b.plan
    # Each was fine-tuned from the procedural-world model of its own name (itself one of a pair
    # that differs only in lesion insertion: configs/product_like.yaml, lesion_aware.yaml); the
    # optimisation is otherwise the same.
    assert a.training.init_weights is not None and b.training.init_weights is not None
    assert Path(a.training.init_weights).name == "product_like"
    assert Path(b.training.init_weights).name == "lesion_aware"
    unset = {"init_weights": None}
    assert a.training.model_copy(update=unset) == b.training.model_copy(update=unset)
    cards = [load_model_folder(n).card["training"]["initial_weights"] for n in SHIPPED_MODELS]
    assert [c["name"] for c in cards] == ["product-like", "lesion-aware"]
    assert all(len(c["weights_sha256"]) == 64 for c in cards)


def test_the_procedural_stage_configs_differ_only_in_lesion_insertion() -> None:
    from synthct.synthesis.config import load_config

    root = Path(__file__).resolve().parents[2] / "configs"
    a, b = load_config(root / "product_like.yaml"), load_config(root / "lesion_aware.yaml")
    assert a.lesion_insertion.sham and not b.lesion_insertion.sham
    assert (a.network, a.training, a.patches, a.loss, a.normalisation, a.plan) == (
        b.network, b.training, b.patches, b.loss, b.normalisation, b.plan
    )  # fmt: skip


def test_unknown_or_corrupt_shipped_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelFolderError, match="no shipped model"):
        shipped_model_path("bonemri")
    copy = tmp_path / "m"
    shutil.copytree(shipped_model_path("product_like"), copy)
    with (copy / "weights.safetensors").open("r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    with pytest.raises(ModelFolderError, match="SHA-256"):
        load_model_folder(copy)


def test_a_shipped_model_name_is_taken_wherever_a_model_folder_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from synthct.cli import app
    from synthct.io import read_volume, write_volume

    monkeypatch.chdir(tmp_path)  # no folder of that name here: the name means the shipped model
    assert load_model_folder("product_like").path == shipped_model_path("product_like")
    write_volume(_small_mr(), tmp_path / "mr.nii.gz")
    done = CliRunner().invoke(
        app, ["synthesize", "mr.nii.gz", "-m", "product_like", "-o", "sct.nii.gz"]
    )
    assert done.exit_code == 0, done.output
    assert read_volume(tmp_path / "sct.nii.gz", kind="sct").spatial_shape == (32, 32, 16)
    (tmp_path / "lesion_aware").mkdir()  # a folder of that name is the user's, and is not a model
    with pytest.raises(ModelFolderError, match=r"weights\.safetensors|missing"):
        load_model_folder("lesion_aware")
