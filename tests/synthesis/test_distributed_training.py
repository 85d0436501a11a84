"""Data-parallel training through real `torchrun` processes on CPU (gloo).

Two ranks with half the batch each follow the optimisation path of one process with the whole
batch; a rank killed with SIGKILL stops the run (no hang) and `--resume` finishes it exactly as an
uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from synthct.synthesis.checkpoint import load_checkpoint
from synthct.synthesis.config import SynthesisConfig, config_to_yaml
from synthct.synthesis.distributed import DistributedContext, rank_samples, sample_seed
from synthct.synthesis.errors import TrainingConfigError
from synthct.synthesis.manifest import Case
from synthct.synthesis.patches import PatchSampler, prepare_case
from synthct.synthesis.training import train_model

#: Losses of 1 process (batch 4) and 2 ranks (batch 2 each) after the same steps agree to this
#: (float summation order differs: the gradient is a sum of two half-batch all-reduced means).
LOSS_TOLERANCE = 1e-5
#: Seconds within which torchrun must end after a rank is killed.
KILL_TIMEOUT_S = 90.0


def _ddp_config(make_config: Callable[..., SynthesisConfig], **training: Any) -> SynthesisConfig:
    """Tiny network without batch norm or dropout, per-sample seeding: exactly comparable."""
    return make_config(
        network={"dropout": 0.0, "norm": "instance"},
        training={
            "iterations": 8,
            "batch_size": 4,
            "validation_interval": 4,
            "checkpoint_interval": 4,
            "patch_seeding": "per_sample",
            "final_validation": False,
            **training,
        },
    )


def _torchrun(
    manifest: Path, config: SynthesisConfig, out: Path, *extra: str
) -> subprocess.Popen[str]:
    path = out.parent / f"{out.name}.yaml"
    path.write_text(config_to_yaml(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "synthct.cli",
        "train",
        str(manifest),
        "--config",
        str(path),
        "--output",
        str(out),
        *extra,
    ]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _finish(process: subprocess.Popen[str], timeout: float = 300.0) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output
    return output


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model" / "weights.safetensors"))


@pytest.mark.slow
def test_two_ranks_follow_the_path_of_one_process_with_the_whole_batch(
    cohort_manifest: Path, make_config: Callable[..., SynthesisConfig], tmp_path: Path
) -> None:
    config = _ddp_config(make_config)
    torch.set_num_threads(1)
    single = train_model(cohort_manifest, config, tmp_path / "one")
    _finish(_torchrun(cohort_manifest, config, tmp_path / "two"))
    state = load_checkpoint(tmp_path / "two" / "checkpoints" / "last.pt")
    assert state["world_size"] == 2 and state["iteration"] == 8
    two = state["log"]
    assert [r["iteration"] for r in two] == [r["iteration"] for r in single.log] == [4, 8]
    for a, b in zip(single.log, two, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=LOSS_TOLERANCE)
        assert b["validation_loss"] == pytest.approx(a["validation_loss"], abs=LOSS_TOLERANCE)
    # The path is not trivially the same: training moved the loss.
    assert abs(two[1]["validation_loss"] - two[0]["validation_loss"]) > 100 * LOSS_TOLERANCE
    a_w, b_w = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for key in a_w:
        torch.testing.assert_close(b_w[key], a_w[key], rtol=1e-3, atol=1e-4)
    # The ranks sampled from one memory-mapped store of the training cases, each case written
    # once and complete; the card's training domain is the one the in-memory run computed.
    split = json.loads((tmp_path / "two" / "split.json").read_text())
    store = tmp_path / "two" / "prepared"
    assert sorted(p.name for p in store.iterdir()) == sorted(split["train"])
    assert not (tmp_path / "one" / "prepared").exists()
    cards = [
        json.loads((tmp_path / r / "model" / "model_card.json").read_text()) for r in ("one", "two")
    ]
    assert cards[1]["domain"] == cards[0]["domain"]
    # Rank 0 alone wrote the run folder: log, curve, model folder, one checkpoint file each.
    assert (tmp_path / "two" / "training_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir()) == [
        "best.pt",
        "last.pt",
    ]


def _worker_pids(parent: int) -> dict[int, int]:
    """``{rank: pid}`` of the torchrun workers below ``parent`` (read from /proc)."""
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid != parent:
            continue
        for item in environ:
            if item.startswith(b"RANK="):
                found[int(item[5:])] = int(entry.name)
    return found


@pytest.mark.slow
def test_a_killed_rank_stops_the_run_and_resume_finishes_it_exactly(
    cohort_manifest: Path, make_config: Callable[..., SynthesisConfig], tmp_path: Path
) -> None:
    config = _ddp_config(
        make_config,
        iterations=100,
        validation_interval=25,
        checkpoint_interval=5,
        curve_png=False,
    )
    straight = tmp_path / "straight"
    _finish(_torchrun(cohort_manifest, config, straight))

    run = tmp_path / "killed"
    process = _torchrun(cohort_manifest, config, run)
    checkpoint = run / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 240.0
    while not checkpoint.exists():
        assert process.poll() is None, "the run ended before a rank could be killed"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    workers = _worker_pids(process.pid)
    assert set(workers) == {0, 1}, workers
    os.kill(workers[1], signal.SIGKILL)
    started = time.monotonic()
    output, _ = process.communicate(timeout=KILL_TIMEOUT_S)
    assert time.monotonic() - started < KILL_TIMEOUT_S
    assert process.returncode != 0
    assert "SIGKILL" in output and "rank" in output.lower(), output[-3000:]
    state = load_checkpoint(checkpoint)  # whole and readable: written atomically
    stopped_at = int(state["iteration"])
    assert 5 <= stopped_at < 100 and stopped_at % 5 == 0
    assert not (run / "model").exists()

    _finish(_torchrun(cohort_manifest, config, run, "--resume"))
    resumed, reference = _weights(run), _weights(straight)
    for key in reference:
        torch.testing.assert_close(resumed[key], reference[key], rtol=0, atol=1e-6)
    log = load_checkpoint(checkpoint)["log"]
    expected = load_checkpoint(straight / "checkpoints" / "last.pt")["log"]
    assert [r["iteration"] for r in log] == [25, 50, 75, 100]
    assert log[-1]["validation_loss"] == pytest.approx(expected[-1]["validation_loss"], abs=1e-6)


@pytest.mark.slow
def test_multi_process_training_needs_per_sample_seeding(
    cohort_manifest: Path, make_config: Callable[..., SynthesisConfig], tmp_path: Path
) -> None:
    stream = make_config(training={"iterations": 2, "final_validation": False})
    process = _torchrun(cohort_manifest, stream, tmp_path / "stream")
    output, _ = process.communicate(timeout=300)
    assert process.returncode != 0 and "patch_seeding: per_sample" in output
    assert not (tmp_path / "stream" / "checkpoints").exists()


def test_ranks_split_the_global_batch_into_the_samples_of_one_process(
    render: Callable[..., Any], make_config: Callable[..., SynthesisConfig]
) -> None:
    config = make_config(patches={"flip_axes": (0, 1, 2)})
    ct, mr = render(1)
    prepared = prepare_case(Case("c", mr, ct), config.normalisation, config.patches)
    sampler = PatchSampler([prepared], config.patches, config.normalisation)
    whole = sampler.sample_from([sample_seed(5, 3, n) for n in range(4)])
    ranks = [DistributedContext(rank=r, world_size=2) for r in (0, 1)]
    assert [rank_samples(4, c) for c in ranks] == [[0, 2], [1, 3]]
    for context in ranks:
        samples = rank_samples(4, context)
        x, y = sampler.sample_from([sample_seed(5, 3, n) for n in samples])
        np.testing.assert_array_equal(x, whole[0][samples])
        np.testing.assert_array_equal(y, whole[1][samples])
    assert not np.array_equal(whole[0][0], whole[0][1])  # distinct samples, not one repeated
    with pytest.raises(TrainingConfigError, match="batch_size 3 does not split over 2"):
        rank_samples(3, ranks[1])
