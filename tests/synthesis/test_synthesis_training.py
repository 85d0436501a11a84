"""Training on a tiny rendered phantom cohort: learning, outputs, exact resume, bad runs."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from synthct.synthesis.config import LossConfig
from synthct.synthesis.errors import ManifestError, TrainingConfigError
from synthct.synthesis.losses import loss_terms
from synthct.synthesis.manifest import read_manifest
from synthct.synthesis.planning import split_cases
from synthct.synthesis.training import TrainingResult, train_model


def test_training_lowers_the_loss_and_learns_hu(trained: TrainingResult) -> None:
    log = trained.log
    assert [row["iteration"] for row in log] == [20, 40, 60, 80]
    assert log[-1]["validation_loss"] < log[0]["validation_loss"] - 0.2
    assert log[-1]["validation_mae_hu"] < 0.8 * log[0]["validation_mae_hu"]
    # Held-out case, whole volume: far better than the best constant sCT (~200 HU here).
    (case,) = trained.validation["cases"]
    assert case["mae_hu"] < 80.0
    assert case["bone_dice_150hu"] > 0.6


def test_run_folder_holds_log_checkpoint_split_and_model(trained: TrainingResult) -> None:
    out = trained.output_dir
    with trained.log_path.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and "validation_mae_hu" in rows[0]
    assert trained.checkpoint_path.is_file()
    split = json.loads((out / "split.json").read_text())
    assert len(split["train"]) == 3 and len(split["validation"]) == 1
    model = trained.model_dir
    for name in (
        "weights.safetensors",
        "config.yaml",
        "normalisation.json",
        "model_card.json",
        "model_card.md",
    ):
        assert (model / name).is_file(), name
    card = json.loads((model / "model_card.json").read_text())
    domain = card["domain"]
    assert domain["n_echoes"] == 2 and domain["field_strengths_t"] == [3.0]
    assert domain["echo_times_ms"] == [[1.15, 1.15], [2.3, 2.3]]
    assert domain["voxel_size_mm"] == [[3.0, 3.0]] * 3
    assert domain["n_training_cases"] == 3 and domain["n_validation_cases"] == 1
    lesion_in_training = "case002" in split["train"]
    assert domain["n_cases_with_lesions"] == int(lesion_in_training)
    assert domain["lesion_types"] == (["calcified_meningioma"] if lesion_in_training else [])
    assert card["validation"]["cases"][0]["case_id"] == split["validation"][0]
    assert "Training domain" in (model / "model_card.md").read_text()


@pytest.mark.slow
def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(
    cohort_manifest: Path, make_config: Callable[..., Any], tmp_path: Path
) -> None:
    config = make_config(
        training={
            "iterations": 12,
            "checkpoint_interval": 6,
            "validation_interval": 6,
            # precise BN after the last iteration: also identical after a resume
            "batch_norm_recalibration_batches": 3,
        },
        card={"name": "resume"},
    )
    straight = train_model(
        cohort_manifest,
        config.with_updates({"training": {"final_validation": False}}),
        tmp_path / "a",
    )

    class Stop(Exception):
        pass

    def crash_after_9(p: Any) -> None:
        if p.phase == "training" and p.iteration == 9:
            raise Stop

    run = tmp_path / "b"
    config_b = config.with_updates({"training": {"final_validation": False}})
    with pytest.raises(Stop):
        train_model(cohort_manifest, config_b, run, progress=crash_after_9)
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["iteration"] == 6
    with pytest.raises(TrainingConfigError, match="--resume"):
        train_model(cohort_manifest, config_b, run)
    resumed = train_model(cohort_manifest, config_b, run, resume=True)
    a = load_file(str(straight.model_dir / "weights.safetensors"))
    b = load_file(str(resumed.model_dir / "weights.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert [r["iteration"] for r in resumed.log] == [6, 12]
    assert resumed.log[-1]["validation_loss"] == pytest.approx(straight.log[-1]["validation_loss"])


def test_resume_checks_the_checkpoint_and_configuration(
    cohort_manifest: Path, make_config: Callable[..., Any], tmp_path: Path
) -> None:
    config = make_config(training={"iterations": 2, "final_validation": False})
    with pytest.raises(TrainingConfigError, match="no checkpoint"):
        train_model(cohort_manifest, config, tmp_path / "none", resume=True)
    train_model(cohort_manifest, config, tmp_path / "run")
    changed = config.with_updates({"training": {"learning_rate": 0.1}})
    with pytest.raises(TrainingConfigError, match="learning_rate"):
        train_model(cohort_manifest, changed, tmp_path / "run", resume=True)
    longer = config.with_updates({"training": {"iterations": 4}})
    assert (
        train_model(cohort_manifest, longer, tmp_path / "run", resume=True).log[-1]["iteration"]
        == 4
    )


def test_split_column_and_seeded_split(
    cohort_manifest: Path, make_config: Callable[..., Any], tmp_path: Path
) -> None:
    records = read_manifest(cohort_manifest)
    train, val = split_cases(records, make_config())
    assert (
        len(train) == 3 and len(val) == 1 and set(train) | set(val) == {r.case_id for r in records}
    )
    assert split_cases(records, make_config()) == (train, val)  # same seed, same split
    rows = list(csv.DictReader(cohort_manifest.open()))
    for row, split in zip(rows, ["train", "validation", "test", "train"], strict=True):
        row["split"] = split
    manifest = cohort_manifest.parent / "split_manifest.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert split_cases(read_manifest(manifest), make_config()) == (
        ["case001", "case004"],
        ["case002"],
    )


def test_manifest_errors_name_the_case_and_file(cohort_manifest: Path, tmp_path: Path) -> None:
    bad = tmp_path / "m.csv"
    bad.write_text("case_id,ct\nx,a.nii.gz\n")
    with pytest.raises(ManifestError, match="mr_echoes"):
        read_manifest(bad)
    bad.write_text(f"case_id,ct,mr_echoes\nx,{cohort_manifest.parent}/case001_ct.nii.gz,nope.nii\n")
    with pytest.raises(ManifestError, match=r"case .x.: the mr_echoes file .*nope.nii"):
        read_manifest(bad)
    js = tmp_path / "m.json"
    folder = cohort_manifest.parent
    js.write_text(
        json.dumps(
            {
                "cases": [
                    {
                        "case_id": "j",
                        "ct": str(folder / "case001_ct.nii.gz"),
                        "mr_echoes": [
                            str(folder / "case001_echo1.nii.gz"),
                            str(folder / "case001_echo2.nii.gz"),
                        ],
                    }
                ]
            }
        )
    )
    (record,) = read_manifest(js)
    assert len(record.mr_echoes) == 2 and record.lesion_labels is None


def test_laplace_and_gaussian_losses_have_their_known_minimum() -> None:
    target = torch.zeros(1, 1, 2, 2, 2)
    error = 0.3
    for nll, best_log_var in (("laplace", np.log(2 * error**2)), ("gaussian", np.log(error**2))):
        config = LossConfig(nll=nll, l1_weight=0.0, nll_weight=1.0)
        values = []
        for log_var in np.linspace(-8, 2, 201):
            prediction = torch.cat(
                [torch.full_like(target, error), torch.full_like(target, float(log_var))], 1
            )
            values.append(float(loss_terms(prediction, target, config)[0]))
        assert np.linspace(-8, 2, 201)[int(np.argmin(values))] == pytest.approx(
            best_log_var, abs=0.06
        )


def test_bone_weighted_l1_has_its_known_value_and_threshold_in_target_units() -> None:
    from synthct.synthesis.config import SynthesisConfig
    from synthct.synthesis.losses import bone_target_threshold

    config = SynthesisConfig.model_validate(
        {"loss": {"bone_weight": 5.0, "nll": "none"}, "patches": {"bone_threshold_hu": 200.0}}
    )
    threshold = bone_target_threshold(config)
    norm = config.normalisation
    assert threshold == pytest.approx((200.0 - norm.hu_offset) / norm.hu_scale)
    # Four voxels: one bone voxel off by 0.4, three soft-tissue voxels off by 0.1.
    target = torch.tensor([threshold + 0.2, 0.0, 0.0, 0.0]).reshape(1, 1, 4, 1, 1)
    mean = target + torch.tensor([0.4, 0.1, -0.1, 0.1]).reshape(1, 1, 4, 1, 1)
    prediction = torch.cat([mean, torch.zeros_like(mean)], 1)
    total, l1 = loss_terms(prediction, target, config.loss, threshold)
    assert float(l1) == pytest.approx((0.4 + 0.3) / 4)  # logged L1: unweighted
    assert float(total) == pytest.approx((5 * 0.4 + 0.3) / (5 + 3))
    plain, _ = loss_terms(prediction, target, LossConfig(nll="none"), threshold)
    assert float(plain) == pytest.approx(float(l1))
    with pytest.raises(ValueError, match="bone_weight"):
        LossConfig(bone_weight=0.5)


def test_soft_bone_dice_has_its_known_values_and_adds_to_the_loss() -> None:
    from synthct.synthesis.losses import soft_bone_dice_loss

    threshold, width = 0.15, 0.05
    target = torch.tensor([0.3, 0.3, 0.0, 0.0])
    # A prediction far above the threshold where the target is bone, far below elsewhere.
    perfect = torch.tensor([1.0, 1.0, -1.0, -1.0])
    assert float(soft_bone_dice_loss(perfect, target, threshold, width)) == pytest.approx(
        0, abs=1e-6
    )
    # All soft tissue predicted (40 HU): each voxel counts p = sigmoid(-2.2) = 0.10 as bone, so
    # overlap 2p, predicted 4p, truth 2: 1 - (2 * 2p + 1) / (4p + 2 + 1).
    missed = torch.tensor([0.04, 0.04, 0.04, 0.04])
    p = 1 / (1 + math.exp((threshold - 0.04) / width))
    expected = 1 - (4 * p + 1) / (4 * p + 3)
    assert float(soft_bone_dice_loss(missed, target, threshold, width)) == pytest.approx(expected)
    # At the threshold a voxel counts half.
    half = torch.tensor([threshold, -1.0, -1.0, -1.0])
    one = torch.tensor([0.3, 0.0, 0.0, 0.0])
    assert float(soft_bone_dice_loss(half, one, threshold, width)) == pytest.approx(
        1 - (2 * 0.5 + 1) / (0.5 + 1 + 1), abs=1e-4
    )
    # The term joins the total with its weight and a width given in HU.
    config = LossConfig(nll="none", bone_dice_weight=2.0, bone_dice_width_hu=50.0)
    mean = missed.reshape(1, 1, 4, 1, 1)
    prediction = torch.cat([mean, torch.zeros_like(mean)], 1)
    target5 = target.reshape(1, 1, 4, 1, 1)
    total, l1 = loss_terms(prediction, target5, config, threshold, 1000.0)
    assert float(total) == pytest.approx(float(l1) + 2 * expected, rel=1e-5)
    with pytest.raises(ValueError, match="bone_dice_width_hu"):
        LossConfig(bone_dice_width_hu=0.0)


def test_a_ct_on_another_grid_is_resampled_onto_the_mri(
    render: Callable[..., Any], tmp_path: Path
) -> None:
    from synthct.io import write_volume
    from synthct.synthesis.manifest import CaseRecord, load_case
    from synthct.volume import CTVolume

    ct, mr = render(3)
    shifted = np.array(ct.affine)
    shifted[:3, 3] = ct.geometry.index_to_lps((2, 0, 0))  # starts 2 planes further along axis 0
    write_volume(CTVolume(ct.array[2:], shifted), tmp_path / "ct.nii.gz")
    write_volume(mr, tmp_path / "mr.nii.gz")
    case = load_case(CaseRecord("c", tmp_path / "ct.nii.gz", (tmp_path / "mr.nii.gz",)))
    assert case.ct.geometry.is_close(mr.geometry)
    np.testing.assert_allclose(case.ct.array[2:], ct.array[2:], atol=1e-3)
    assert case.ct_coverage is not None
    assert not case.ct_coverage[:2].any() and case.ct_coverage[2:].all()


class _FixedBatches:
    """Stands in for the patch sampler: known batches, in order."""

    def __init__(self, batches: list[np.ndarray]) -> None:
        self.batches = iter(batches)

    def sample(self, rng: np.random.Generator, batch_size: int) -> tuple[np.ndarray, None]:
        return next(self.batches), None


def test_batch_norm_recalibration_gives_exact_averages_over_the_batches() -> None:
    import torch

    from synthct.synthesis.training import recalibrate_batch_norm

    rng = np.random.default_rng(0)
    batches = [
        rng.normal(
            [[[[[3.0]]], [[[-1.0]]]]], [[[[[2.0]]], [[[0.5]]]]], size=(4, 2, 3, 3, 3)
        ).astype(np.float32)
        for _ in range(20)
    ]
    network = torch.nn.Sequential(torch.nn.BatchNorm3d(2), torch.nn.Dropout(0.5))
    network[0].running_mean.fill_(100.0)  # stale statistics
    n = recalibrate_batch_norm(
        network,
        _FixedBatches(batches),  # type: ignore[arg-type]
        rng,
        batches=20,
        batch_size=4,
    )
    assert n == 1
    assert not network.training and network[0].momentum == 0.1  # restored, evaluation mode
    means = np.mean([b.mean(axis=(0, 2, 3, 4)) for b in batches], axis=0)
    variances = np.mean([b.var(axis=(0, 2, 3, 4), ddof=1) for b in batches], axis=0)
    np.testing.assert_allclose(network[0].running_mean.numpy(), means, rtol=1e-5)
    np.testing.assert_allclose(network[0].running_var.numpy(), variances, rtol=1e-5)
    np.testing.assert_allclose(means, [3.0, -1.0], atol=0.1)


def test_the_card_names_the_loss_terms_that_were_on() -> None:
    from synthct.synthesis.config import SynthesisConfig
    from synthct.synthesis.training import loss_description

    assert loss_description(SynthesisConfig()) == "1 x L1 + 0.5 x laplace NLL"  # defaults
    weighted = SynthesisConfig().with_updates(
        {"loss": {"bone_weight": 5.0, "bone_dice_weight": 0.5}}
    )
    assert loss_description(weighted) == (
        "1 x L1 (x 5 where the CT is bone) + 0.5 x laplace NLL + 0.5 x soft bone Dice"
    )
