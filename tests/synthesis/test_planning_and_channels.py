"""Any MR input (named channels, z-score), planning from case fingerprints, the large network."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from synthct.cli import app
from synthct.io import read_volume
from synthct.synthesis.config import NetworkConfig, NormalisationConfig, load_config
from synthct.synthesis.distributed import autocast
from synthct.synthesis.errors import SynthesisInputError
from synthct.synthesis.manifest import Case
from synthct.synthesis.network import build_network, count_parameters
from synthct.synthesis.normalisation import EchoScaling, check_mr_array, normalise_mr
from synthct.synthesis.planning import (
    estimate_activation_bytes,
    plan_patch_size,
    plan_spacing,
    resample_case,
)
from synthct.synthesis.training import train_model

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def test_planned_spacing_is_the_median_with_nnunet_anisotropy_rule() -> None:
    assert plan_spacing([(1.0, 1.0, 1.0), (1.2, 1.2, 1.2), (0.8, 0.8, 1.0)]) == (1.0, 1.0, 1.0)
    # Median (0.5, 0.5, 5): the thick axis takes the 10th percentile of 3, 4, 5, 5, 6 = 3.4.
    thick = [(0.5, 0.5, 5.0), (0.5, 0.5, 6.0), (0.6, 0.6, 3.0), (0.5, 0.5, 4.0), (0.7, 0.7, 5.0)]
    assert plan_spacing(thick) == pytest.approx((0.5, 0.5, 3.4))
    # ...but never finer than the other axes (coarse ranks 7, 7, 7, 1, 1: 10th percentile
    # 1.0 -> 2.0).
    cohort = [(2, 2, 7), (2, 2, 7), (2, 2, 7), (1, 1, 1), (1, 1, 1)]
    assert plan_spacing(cohort) == pytest.approx((2.0, 2.0, 2.0))


def test_planned_spacing_of_a_mixed_sagittal_and_axial_cohort_is_their_voxel() -> None:
    # Two sagittal (thick along axis 0) and two axial (thick along axis 2) 0.5 x 0.5 x 3 mm
    # series: per-axis medians would plan 1.75 x 0.5 x 1.75 mm, interpolating every series.
    cohort = [(3.0, 0.5, 0.5), (3.0, 0.5, 0.5), (0.5, 0.5, 3.0), (0.5, 0.5, 3.0)]
    assert sorted(plan_spacing(cohort)) == pytest.approx([0.5, 0.5, 3.0])
    # the thick spacing goes to the axis that is thick in the majority of the cohort
    sagittal_majority = [*cohort, (3.0, 0.5, 0.5)]
    assert plan_spacing(sagittal_majority) == pytest.approx((3.0, 0.5, 0.5))
    assert plan_spacing([(0.5, 0.5, 3.0)] * 3 + [(3.0, 0.5, 0.5)]) == pytest.approx((0.5, 0.5, 3.0))


def test_patch_size_is_a_multiple_and_fits_the_memory_budget() -> None:
    tiny = NetworkConfig(base_channels=2, levels=1)
    # 2 channels x 8 voxels x 12 values x 4 bytes, batch 1
    assert estimate_activation_bytes(tiny, (2, 2, 2), batch_size=1) == 2 * 8 * 12 * 4
    net = NetworkConfig(base_channels=12, levels=3)  # size multiple 4
    roomy = plan_patch_size((50, 61, 30), (1, 1, 1), net, batch_size=2, memory_budget_gb=100)
    assert roomy == (52, 64, 32)
    # A budget between the estimates of 64 x 64 x 28 and 64 x 64 x 32: the longest axis in mm
    # (the third, 32 x 3 mm) loses one multiple first.
    low = estimate_activation_bytes(net, (64, 64, 28), batch_size=2)
    high = estimate_activation_bytes(net, (64, 64, 32), batch_size=2)
    budget_gb = (low + high) / 2 / 1024**3
    assert plan_patch_size(
        (64, 64, 32), (1, 1, 3), net, batch_size=2, memory_budget_gb=budget_gb
    ) == (64, 64, 28)
    small = plan_patch_size((200, 200, 200), (1, 1, 1), net, batch_size=2, memory_budget_gb=0.05)
    assert all(s % 4 == 0 for s in small)
    assert estimate_activation_bytes(net, small, batch_size=2) <= 0.05 * 1024**3
    # An impossible budget stops at two multiples per axis (a 2-voxel bottleneck).
    assert plan_patch_size((99, 99, 99), (1, 1, 1), net, batch_size=2, memory_budget_gb=1e-9) == (
        8,
        8,
        8,
    )


def test_zscore_scales_each_channel_to_mean_0_sd_1_inside_the_body() -> None:
    rng = np.random.default_rng(0)
    data = np.zeros((2, 16, 16, 16), np.float32)
    data[0, 4:12, 4:12, 4:12] = rng.normal(300.0, 40.0, (8, 8, 8))
    data[1, 4:12, 4:12, 4:12] = rng.normal(80.0, 5.0, (8, 8, 8))
    config = NormalisationConfig(method="zscore", clip_max=10.0, channels=("water", "fat"))
    out, body, scaling = normalise_mr(data, config)
    assert body[4:12, 4:12, 4:12].all() and body.sum() == 512
    for channel in range(2):
        inside = out[channel][body]
        assert inside.mean() == pytest.approx(0.0, abs=1e-5)
        assert inside.std() == pytest.approx(1.0, abs=1e-4)
    assert scaling.offsets[0] == pytest.approx(float(data[0][body].mean()), rel=1e-6)
    assert scaling.to_dict()["offsets"] == list(scaling.offsets)
    assert EchoScaling((1.0,), 0.5, 0.0).to_dict()["offsets"] == []  # old scalings: no offset


def test_declared_channels_allow_one_contrast_and_check_the_count() -> None:
    one = np.random.default_rng(1).uniform(1.0, 2.0, (1, 8, 8, 8))
    assert check_mr_array(one, channels=("T2w",)).shape == (1, 8, 8, 8)
    with pytest.raises(SynthesisInputError, match="at least 2 echo"):
        check_mr_array(one)  # undeclared channels: multi-echo, as before
    with pytest.raises(SynthesisInputError, match=r"2 channel\(s\) but .* declares 1: T2w") as e:
        check_mr_array(np.concatenate([one, one]), channels=("T2w",), source="t2.nii.gz")
    assert e.value.path == "t2.nii.gz" and "normalisation.channels" in (e.value.fix or "")
    with pytest.raises(ValueError, match="distinct"):
        NormalisationConfig(channels=("T1w", "T1w"))


def test_resampled_case_keeps_its_field_of_view_and_values(render: Callable[..., Any]) -> None:
    from synthct.volume import CTVolume

    _, mr = render(1)
    i = np.arange(mr.spatial_shape[0], dtype=np.float32)[:, None, None]
    ramp = CTVolume(np.broadcast_to(10.0 * i, mr.spatial_shape).copy(), mr.affine)
    case = Case("c", mr, ramp)
    coarse = resample_case(case, (6.0, 6.0, 4.0))
    assert coarse.mr.spatial_shape == (24, 24, 24) and coarse.ct.spatial_shape == (24, 24, 24)
    assert coarse.mr.spacing_mm == pytest.approx((6.0, 6.0, 4.0))
    assert coarse.mr.geometry.extent_mm == pytest.approx(mr.geometry.extent_mm)
    old_corner = mr.geometry.index_to_lps(np.array([-0.5, -0.5, -0.5]))
    new_corner = coarse.mr.geometry.index_to_lps(np.array([-0.5, -0.5, -0.5]))
    np.testing.assert_allclose(new_corner, old_corner, atol=1e-6)
    # Coarse voxel n sits at fine index 2 n + 0.5: a linear ramp of 10 HU per fine voxel
    # reads 20 n + 5 HU there (inside the field of view).
    n = np.arange(1, 23)
    np.testing.assert_allclose(coarse.ct.array[1:23, 5, 5], 20.0 * n + 5.0, atol=1e-3)
    assert resample_case(case, mr.spacing_mm) is case


def test_large_residual_unet_has_tens_of_millions_of_parameters() -> None:
    config = load_config(ROOT / "configs" / "real_large.yaml")
    network = build_network(config.network, 1)
    n = count_parameters(network)
    assert n == 26_502_505  # 32-64-128-256-320-320 channels, 2 residual units per level
    assert config.network.size_multiple == 32 and config.training.patch_seeding == "per_sample"
    tiny = NetworkConfig(architecture="residual_unet", base_channels=4, levels=3, norm="instance")
    with torch.no_grad():
        out = build_network(tiny, 2)(torch.rand(2, 2, 8, 8, 8))
    assert out.shape == (2, 2, 8, 8, 8)
    assert float(out[:, 1].min()) >= tiny.log_variance_min


def test_existing_configurations_keep_their_behaviour() -> None:
    models = (ROOT / "src" / "synthct" / "models").glob("*/config.yaml")
    paths = [*sorted((ROOT / "configs").glob("*.yaml")), *models]
    # real_large and the domain-randomised model plan a spacing and name their channels; the
    # new-world configs, and the shipped models trained with them, plan the paper's 3 T grid
    # (their cohort mixes 1 mm real-anatomy crops with phantoms).
    new_style = {
        "real_large",
        "dr_contrast_agnostic",
        "dr_bone_dice",
        "dr_fine_tune",
        "product_like_world",
        "lesion_aware_world",
        "product_like_world_robust",
        "lesion_aware_world_robust",
        "product_like_world_resample",
        "lesion_aware_world_resample",
        "lesion_aware_world_sham",
    }
    shipped = {"product_like", "lesion_aware"}
    old = [
        p
        for p in paths
        if not new_style & {p.stem, p.parent.name}
        and not (p.parent.parent.name == "models" and p.parent.name in shipped)
    ]
    stems = {p.stem for p in old}
    assert stems == {"lesion_aware", "phantom_tiny", "product_like", "spine_phantom"}
    for name in shipped:
        config = load_config(ROOT / "src" / "synthct" / "models" / name / "config.yaml")
        assert config.plan.target_spacing_mm == (0.74, 0.74, 0.9)
    for path in old:
        config = load_config(path)
        assert config.plan.target_spacing_mm is None, path
        assert config.normalisation.channels == () and config.normalisation.method != "zscore"
        assert config.normalisation.reference_smoothing_mm == 0.0, path
        assert config.training.patch_seeding == "stream", path
        assert config.network.architecture in ("unet", "monai_basic_unet"), path


def test_new_world_configurations_plan_the_paper_grid_and_fine_tune() -> None:
    for name in ("product_like_world", "lesion_aware_world"):
        config = load_config(ROOT / "configs" / f"{name}.yaml")
        assert config.plan.target_spacing_mm == (0.74, 0.74, 0.9), name
        assert config.patches.size == (48, 48, 48), name
        # stage 1 is the procedural model of the same name (scripts/train_world_models.sh)
        stem = name.removesuffix("_world")
        assert config.training.init_weights == f"out/procedural_models/{stem}", name
        stage_1 = load_config(ROOT / "configs" / f"{stem}.yaml")
        assert (config.network, config.normalisation) == (stage_1.network, stage_1.normalisation)
        # the stage-3 experiment (not shipped) differs from stage 2 in the smoothed intensity
        # reference and a short schedule
        stage_3 = load_config(ROOT / "configs" / f"{name}_robust.yaml")
        assert stage_3.training.init_weights == f"out/world_models/{stem}", name
        assert stage_3.normalisation == config.normalisation.model_copy(
            update={"reference_smoothing_mm": 1.5}
        )
        schedule = {"init_weights", "iterations", "learning_rate"}
        schedule |= {"validation_interval", "checkpoint_interval"}
        assert stage_3.training.model_dump(exclude=schedule) == config.training.model_dump(
            exclude=schedule
        )
        sections = ("network", "patches", "loss", "lesion_insertion", "plan", "inference")
        assert all(getattr(stage_3, k) == getattr(config, k) for k in sections), name


def test_bfloat16_autocast_on_cuda_and_float32_by_default_on_cpu() -> None:
    with warnings.catch_warnings():  # a CPU-only build disables CUDA autocast with a warning
        warnings.simplefilter("ignore", UserWarning)
        cuda = autocast("cuda:0", "auto")
    assert isinstance(cuda, torch.autocast) and cuda.fast_dtype == torch.bfloat16
    with autocast("cpu", "auto"):
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32
    with autocast("cpu", "bf16"):
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.bfloat16


def _write_plain_t2w(mr_echo: np.ndarray, affine_lps: np.ndarray, path: Path) -> str:
    """One contrast as a plain NIfTI (no sidecar, no echo times): what a scanner export gives."""
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_lps
    nib.save(nib.Nifti1Image(np.asarray(mr_echo, np.float32), ras), str(path))
    return path.name


@pytest.mark.slow
def test_single_t2w_channel_is_planned_trained_and_synthesized(
    render: Callable[..., Any], make_config: Callable[..., Any], tmp_path: Path
) -> None:
    from synthct.io import write_volume
    from synthct.phantom.protocols import FAST_3T

    thick = FAST_3T.with_changes(
        name="thick", voxel_size_mm=(3.0, 3.0, 4.5), field_of_view_mm=(144.0, 144.0, 96.0)
    )
    rows = ["case_id,ct,mr_echoes"]
    for seed in (1, 2, 3, 4):
        ct, mr = render(seed, thick) if seed == 4 else render(seed)
        write_volume(ct, tmp_path / f"c{seed}_ct.nii.gz")
        name = _write_plain_t2w(mr.array[1], mr.affine, tmp_path / f"c{seed}_t2.nii")
        rows.append(f"c{seed},c{seed}_ct.nii.gz,{name}")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    base = tmp_path / "tiny.yaml"
    tiny = make_config(training={"iterations": 4, "validation_interval": 2, "batch_size": 2})
    base.write_text(yaml.safe_dump(tiny.model_dump(mode="json")))

    planned = tmp_path / "planned.yaml"
    result = runner.invoke(app, ["plan", str(manifest), "-c", str(base), "-o", str(planned)])
    assert result.exit_code == 0, result.output
    plan = load_config(planned)
    assert plan.normalisation.method == "zscore" and plan.normalisation.channels == ("channel1",)
    assert plan.plan.target_spacing_mm == (3.0, 3.0, 3.0)  # median of the 3 training cases
    fingerprint = json.loads((tmp_path / "planned.plan.json").read_text())
    assert [c["n_channels"] for c in fingerprint["cases"]] == [1, 1, 1]
    assert not any(c["has_echo_times"] for c in fingerprint["cases"])

    run = tmp_path / "run"
    result = runner.invoke(
        app, ["train", str(manifest), "-c", str(base), "-o", str(run), "--plan", "auto"]
    )
    assert result.exit_code == 0, result.output
    assert load_config(run / "config.yaml") == plan  # --plan auto plans as `synthct plan`
    # what the plan replaced is said, not silent: the whole 48 x 48 x 32 case, not 16^3
    assert plan.patches.size == (48, 48, 32) and tiny.patches.size == (16, 16, 16)
    assert "patch 48 x 48 x 32 (the configuration had 16 x 16 x 16)" in result.output
    assert (run / "plan.json").is_file() and (run / "training_curve.png").is_file()
    card = json.loads((run / "model" / "model_card.json").read_text())
    domain = card["domain"]
    assert domain["n_echoes"] == 1 and domain["channel_names"] == ["channel1"]
    assert domain["planned_spacing_mm"] == [3.0, 3.0, 3.0]
    assert domain["echo_times_ms"] is None
    train_ids = json.loads((run / "split.json").read_text())["train"]
    thickest = 4.5 if "c4" in train_ids else 3.0
    assert domain["voxel_size_mm"] == [[3.0, 3.0], [3.0, 3.0], [3.0, thickest]]  # native

    _, mr = render(11)
    t2 = tmp_path / _write_plain_t2w(mr.array[1], mr.affine, tmp_path / "new_t2.nii")
    out = tmp_path / "sct.nii.gz"
    result = runner.invoke(app, ["synthesize", str(t2), "-m", str(run / "model"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    sct = read_volume(out, kind="sct")
    assert sct.spatial_shape == mr.spatial_shape and np.isfinite(sct.array).all()
    wrong = tmp_path / "two_echoes.nii.gz"  # two echoes for a one-channel model
    write_volume(mr, wrong)
    result = runner.invoke(
        app, ["synthesize", str(wrong), "-m", str(run / "model"), "-o", str(tmp_path / "x.nii.gz")]
    )
    assert result.exit_code != 0 and "trained on 1" in result.output


@pytest.mark.slow
def test_residual_unet_trains_and_its_model_folder_reloads(
    cohort_manifest: Path, make_config: Callable[..., Any], tmp_path: Path
) -> None:
    from synthct.synthesis.model_folder import load_model_folder

    config = make_config(
        network={"architecture": "residual_unet", "base_channels": 4, "levels": 2},
        training={"iterations": 4, "validation_interval": 2, "volume_validation_interval": 2},
    )
    result = train_model(cohort_manifest, config, tmp_path / "run")
    assert [r["iteration"] for r in result.log] == [2, 4]
    assert all(r["volume_mae_hu"] > 0 for r in result.log)
    assert all(0.0 <= r["volume_bone_dice_250hu"] <= 1.0 for r in result.log)
    best = torch.load(tmp_path / "run" / "checkpoints" / "best.pt", weights_only=True)
    assert best["value"] == min(r["volume_mae_hu"] for r in result.log)
    assert best["metric"] == "volume_mae_hu"
    folder = load_model_folder(result.model_dir)  # rebuilt from config.yaml, weights strict
    assert count_parameters(folder.network) == count_parameters(build_network(config.network, 2))
