"""Fine-tuning: a run that starts from a trained model's weights (``training.init_weights``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from synthct.synthesis.errors import ModelFolderError, TrainingConfigError
from synthct.synthesis.training import TrainingResult, train_model


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    """The convolution kernels (not the batch-norm buffers, which a training step updates)."""
    state = load_file(str(model_dir / "weights.safetensors"))
    return {k: v for k, v in state.items() if k.endswith("weight") and v.dim() > 1}


def test_a_run_starts_from_the_given_weights_and_records_them(
    trained: TrainingResult, cohort_manifest: Path, make_config: Callable[..., Any], tmp_path: Path
) -> None:
    source = trained.model_dir
    # one step at a learning rate so small that Adam moves no kernel by more than ~1e-12
    frozen = {"iterations": 1, "learning_rate": 1e-12, "validation_interval": 1}
    tuned = train_model(
        cohort_manifest,
        make_config(training={**frozen, "init_weights": str(source)}),
        tmp_path / "tuned",
    )
    scratch = train_model(cohort_manifest, make_config(training=frozen), tmp_path / "scratch")
    want, got, fresh = _weights(source), _weights(tuned.model_dir), _weights(scratch.model_dir)
    assert want.keys() == got.keys() and want
    assert max(float((want[k] - got[k]).abs().max()) for k in want) < 1e-9
    assert max(float((want[k] - fresh[k]).abs().max()) for k in want) > 1e-2
    card = json.loads((tuned.model_dir / "model_card.json").read_text())
    source_card = json.loads((source / "model_card.json").read_text())
    initial = card["training"]["initial_weights"]
    assert initial["weights_sha256"] == source_card["weights_sha256"]
    assert Path(initial["path"]) == source
    assert (
        "initial_weights"
        not in json.loads((scratch.model_dir / "model_card.json").read_text())["training"]
    )


def test_fine_tuning_starts_where_the_source_model_ended(
    trained: TrainingResult, cohort_manifest: Path, make_config: Callable[..., Any], tmp_path: Path
) -> None:
    """20 steps from the trained weights validate far better than 20 steps from random ones."""
    short = {"iterations": 20, "validation_interval": 20, "checkpoint_interval": 20}
    tuned = train_model(
        cohort_manifest,
        make_config(training={**short, "init_weights": str(trained.model_dir)}),
        tmp_path / "tuned",
    )
    scratch = train_model(cohort_manifest, make_config(training=short), tmp_path / "scratch")
    # measured: 50.7 HU fine-tuned, 72.9 HU from scratch, 55.1 HU the source model's last
    assert tuned.log[0]["validation_mae_hu"] < 0.8 * scratch.log[0]["validation_mae_hu"]
    assert tuned.log[0]["validation_mae_hu"] < 1.1 * trained.log[-1]["validation_mae_hu"]


def test_initial_weights_of_another_network_or_scaling_are_refused(
    trained: TrainingResult, cohort_manifest: Path, make_config: Callable[..., Any], tmp_path: Path
) -> None:
    source = str(trained.model_dir)
    with pytest.raises(TrainingConfigError, match=r"network\.base_channels: 6 -> 8") as e:
        train_model(
            cohort_manifest,
            make_config(network={"base_channels": 8}, training={"init_weights": source}),
            tmp_path / "a",
        )
    assert str(trained.model_dir) in str(e.value) and "config.yaml" in str(e.value)
    with pytest.raises(TrainingConfigError, match=r"normalisation\.percentile"):
        train_model(
            cohort_manifest,
            make_config(normalisation={"percentile": 95.0}, training={"init_weights": source}),
            tmp_path / "b",
        )
    with pytest.raises(ModelFolderError, match="no such directory"):
        train_model(
            cohort_manifest,
            make_config(training={"init_weights": str(tmp_path / "missing")}),
            tmp_path / "c",
        )
    # nothing was trained: no checkpoint is left behind that a resume would take as a run
    for name in ("a", "b", "c"):
        assert not (tmp_path / name / "checkpoints").exists()


def test_fine_tuning_may_move_a_model_to_the_smoothed_reference_and_a_resume_may_not(
    trained: TrainingResult, cohort_manifest: Path, make_config: Callable[..., Any], tmp_path: Path
) -> None:
    """``normalisation.reference_smoothing_mm`` is the one normalisation setting a fine-tuning
    run may change (it moves each case's scale by ~1 %); a resume must keep it."""
    from synthct.synthesis.checkpoint import config_differences
    from synthct.synthesis.model_folder import load_model_folder

    smoothed = {"normalisation": {"reference_smoothing_mm": 1.5}}
    tuned = train_model(
        cohort_manifest,
        make_config(
            **smoothed,
            training={
                "iterations": 1,
                "validation_interval": 1,
                "init_weights": str(trained.model_dir),
            },
        ),
        tmp_path / "tuned",
    )
    model = load_model_folder(tuned.model_dir)
    assert model.config.normalisation.reference_smoothing_mm == 1.5
    # the source model's config has no such key: the difference is still seen for a resume
    source = load_model_folder(trained.model_dir).config
    assert config_differences(source, model.config, sections=("normalisation",)) == [
        "normalisation.reference_smoothing_mm: 0.0 -> 1.5"
    ]
    with pytest.raises(TrainingConfigError, match=r"reference_smoothing_mm: 1\.5 -> 0\.0"):
        train_model(
            cohort_manifest,
            make_config(training={"iterations": 2, "validation_interval": 1}),
            tmp_path / "tuned",
            resume=True,
        )
