"""`synthct train` and `synthct synthesize` end to end on a tiny cohort."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from synthct.cli import app
from synthct.io import read_volume, write_volume
from synthct.synthesis.training import TrainingResult
from tiny_config import tiny_config

runner = CliRunner()


@pytest.mark.slow
def test_train_then_resume_from_the_command_line(cohort_manifest: Path, tmp_path: Path) -> None:
    config = tiny_config(tmp_path, iterations=4, validation_interval=2, checkpoint_interval=2)
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(cohort_manifest), "-o", str(run), "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "model folder" in result.stdout and (run / "model" / "weights.safetensors").is_file()
    again = runner.invoke(app, ["train", str(cohort_manifest), "-o", str(run), "-c", str(config)])
    assert again.exit_code == 2 and "--resume" in again.stderr
    more = runner.invoke(
        app, ["train", str(cohort_manifest), "-o", str(run), "--resume", "--iterations", "6"]
    )
    assert more.exit_code == 0, more.output
    assert (run / "training_log.csv").read_text().count("\n") == 1 + 3


def test_synthesize_writes_sct_and_sd_maps(
    trained: TrainingResult, render: Callable[..., Any], tmp_path: Path
) -> None:
    _, mr = render(11)
    mr_path = write_volume(mr, tmp_path / "mr.nii.gz")
    out = tmp_path / "sct.nii.gz"
    result = runner.invoke(
        app,
        [
            "synthesize",
            str(mr_path),
            "-m",
            str(trained.model_dir),
            "-o",
            str(out),
            "--uncertainty",
            "--mc-passes",
            "2",
            "--patch-size",
            "32",
        ],
    )
    assert result.exit_code == 0, result.output
    sct = read_volume(out)
    assert sct.kind == "sct" and sct.geometry.is_close(mr.geometry)
    for name in ("aleatoric_sd", "epistemic_sd", "total_sd"):
        sd = read_volume(tmp_path / f"sct_{name}.nii.gz")
        assert sd.geometry.is_close(mr.geometry) and sd.array.min() >= 0
    assert "warning" not in result.stderr


def test_synthesize_warns_out_of_domain_and_runs_the_baseline(
    trained: TrainingResult, render: Callable[..., Any], tmp_path: Path
) -> None:
    from synthct.phantom.protocols import PAPER_1P5T

    protocol = PAPER_1P5T.with_changes(
        voxel_size_mm=(3.0, 3.0, 3.0), field_of_view_mm=(144.0, 144.0, 96.0)
    )
    _, mr = render(11, protocol)
    paths = []
    for e in range(2):  # one file per echo, as scanners export them
        from synthct.volume import MRProtocol, MultiEchoMR

        assert mr.protocol is not None
        p = MRProtocol((mr.protocol.echo_times_ms[e],), 7.0, 10.0, 1.5)
        paths.append(
            write_volume(
                MultiEchoMR(mr.array[e : e + 1], mr.affine, protocol=p),
                tmp_path / f"echo{e + 1}.nii.gz",
            )
        )
    result = runner.invoke(
        app,
        [
            "synthesize",
            *map(str, paths),
            "-m",
            str(trained.model_dir),
            "-o",
            str(tmp_path / "sct.nii.gz"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "out of domain" in result.stderr and "field strength 1.5 T" in result.stderr
    base = runner.invoke(
        app, ["synthesize", *map(str, paths), "-m", "baseline", "-o", str(tmp_path / "b.nrrd")]
    )
    assert base.exit_code == 0, base.output
    assert read_volume(tmp_path / "b.nrrd").kind == "sct"


def test_bad_model_folder_exits_2_with_the_fix(render: Callable[..., Any], tmp_path: Path) -> None:
    _, mr = render(11)
    mr_path = write_volume(mr, tmp_path / "mr.nii.gz")
    result = runner.invoke(
        app, ["synthesize", str(mr_path), "-m", str(tmp_path), "-o", str(tmp_path / "s.nii.gz")]
    )
    assert result.exit_code == 2
    assert "lacks weights.safetensors" in result.stderr and "Fix:" in result.stderr
    one_echo = write_volume(mr.__class__(mr.array[:1], mr.affine), tmp_path / "one.nii.gz")
    result = runner.invoke(
        app, ["synthesize", str(one_echo), "-m", "baseline", "-o", str(tmp_path / "s.nii.gz")]
    )
    assert result.exit_code == 2 and "at least 2 echo" in result.stderr


@pytest.mark.slow
def test_ctrl_c_checkpoints_the_iteration_and_resume_finishes(
    cohort_manifest: Path, tmp_path: Path
) -> None:
    """A real `synthct train` process gets SIGINT mid-run (no checkpoint due for 1000
    iterations): it finishes the iteration, writes the checkpoint, says how to go on and exits
    130; `--resume` then runs the rest to the end."""
    import signal
    import subprocess
    import sys
    import time

    import torch

    config = tiny_config(
        tmp_path, iterations=100000, validation_interval=1000, checkpoint_interval=1000
    )
    run = tmp_path / "run"
    command = [sys.executable, "-m", "synthct.cli", "train", str(cohort_manifest), "-o", str(run)]
    process = subprocess.Popen(
        [*command, "-c", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not (run / "split.json").is_file() and time.monotonic() < deadline:
        time.sleep(0.2)  # the cases are loaded once split.json is written
    time.sleep(3.0)  # some iterations
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "stopped by SIGINT after iteration" in stderr and "--resume" in stderr
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    done = int(state["iteration"])
    assert 0 < done < 1000
    finish = subprocess.run(
        [*command, "--resume", "--iterations", str(done + 3)], capture_output=True, text=True
    )
    assert finish.returncode == 0, finish.stderr
    assert int(torch.load(run / "checkpoints" / "last.pt", weights_only=False)["iteration"]) == (
        done + 3
    )
    assert (run / "model" / "weights.safetensors").is_file()
