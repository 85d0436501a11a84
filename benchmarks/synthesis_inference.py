"""Synthesis inference: speed of one sCT and peak memory of a large one, on 2 CPU threads.

1. Speed: a rendered two-echo spine phantom of 256 x 256 x 96 voxels through the default
   network (random weights: the time does not depend on them). Rows: synthct's full
   ``SynthesisModel.synthesize`` (checks, body mask, normalisation, sliding window, HU); synthct's
   sliding window alone; MONAI's ``sliding_window_inference`` on the same normalised input with
   the same predictor, window, overlap, batch and Gaussian blending, in the same run. Target
   (BRIEF "Targets"): <= 15 s for one pass.
2. Memory: ``synthesize`` of a 512 x 512 x 200 two-echo volume in a fresh subprocess; peak
   resident memory read from ``ru_maxrss`` (input included). Target: <= 4 GB.

Run: .venv/bin/python benchmarks/synthesis_inference.py [--base-channels 12] [--patch 64,64,32]
     [--overlap 0.25] [--batch-size 2] [--skip-memory] [--skip-monai]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

import numpy as np
import torch

from synthct.synthesis.config import SynthesisConfig
from synthct.synthesis.domain import TrainingDomain
from synthct.synthesis.model_folder import ModelFolder
from synthct.synthesis.network import build_network, count_parameters
from synthct.synthesis.normalisation import normalise_mr
from synthct.synthesis.sliding_window import count_windows, sliding_window_predict
from synthct.synthesis.synthesizer import SynthesisModel
from synthct.synthesis.uncertainty import single_pass_predictor
from synthct.volume import MRProtocol, MultiEchoMR

SPEED_SHAPE = (256, 256, 96)
MEMORY_SHAPE = (512, 512, 200)
THREADS = 2


def build_model(args: argparse.Namespace) -> SynthesisModel:
    """The default configuration's network (random weights) as a synthesis model."""
    patch = tuple(int(p) for p in args.patch.split(","))
    config = SynthesisConfig().with_updates(
        {
            "network": {"base_channels": args.base_channels, "levels": args.levels},
            "inference": {
                "patch_size": patch,
                "overlap": args.overlap,
                "batch_size": args.batch_size,
                "mask_outside_body": True,
            },
        }
    )
    torch.manual_seed(0)
    network = build_network(config.network, 2).eval()
    folder = ModelFolder(None, network, config, TrainingDomain(n_echoes=2), {}, {})
    return SynthesisModel([folder])


def phantom_mri(shape: tuple[int, int, int]) -> MultiEchoMR:
    """A rendered 3 T two-echo spine phantom on a ``shape`` grid of 0.9 x 0.9 x 1 mm."""
    from synthct.phantom.anatomy import SpineModel, SpineSpec
    from synthct.phantom.mri import render_mri
    from synthct.phantom.protocols import PAPER_3T

    protocol = PAPER_3T.with_changes(
        voxel_size_mm=(0.9, 0.9, 1.0),
        field_of_view_mm=(shape[0] * 0.9, shape[1] * 0.9, shape[2] * 1.0),
    )
    model = SpineModel(SpineSpec(first_level="T3", last_level="T8", seed=0))
    geometry = protocol.geometry(center_lps_mm=model.level_centre_lps_mm("T5"), orientation="axial")
    return render_mri(model, geometry, protocol, supersample=1, seed=0)


def synthetic_body(shape: tuple[int, int, int]) -> MultiEchoMR:
    """A cheap large two-echo volume: an elliptic body cylinder with a dark core and noise."""
    i, j = np.ogrid[: shape[0], : shape[1]]
    r2 = ((i - shape[0] / 2) / (0.42 * shape[0])) ** 2 + (
        (j - shape[1] / 2) / (0.3 * shape[1])
    ) ** 2
    body = (r2 <= 1.0).astype(np.float32)
    core = (r2 <= 0.05).astype(np.float32)
    array = np.empty((2, *shape), dtype=np.float32)
    rng = np.random.default_rng(0)
    for echo, level in enumerate((0.05, 0.06)):
        plane = level * body - 0.6 * level * core
        for k in range(shape[2]):
            array[echo, :, :, k] = plane + 0.002 * rng.random(shape[:2], dtype=np.float32)
    protocol = MRProtocol((1.15, 2.30), 7.0, 10.0, 3.0)
    affine = np.diag([0.5, 0.5, 0.8, 1.0])
    return MultiEchoMR(array, affine, protocol=protocol)


def time_it(func: Any, repeats: int) -> float:
    """Best wall time of ``repeats`` calls, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - t0)
    return best


def speed(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    """Rows (method, seconds, note) for the 256 x 256 x 96 volume."""
    model = build_model(args)
    config = model.config
    mr = phantom_mri(SPEED_SHAPE)
    network = model.networks[0]
    predictor = single_pass_predictor(network)
    inputs, _, _ = normalise_mr(mr.array, config.normalisation)
    patch = config.inference_patch_size
    windows = count_windows(SPEED_SHAPE, patch, config.inference.overlap)
    model.synthesize(mr)  # warm-up (allocator, oneDNN kernels)
    rows = [
        (
            "synthct synthesize (full)",
            time_it(lambda: model.synthesize(mr), args.repeats),
            "checks, body mask, normalisation, sliding window, HU",
        ),
        (
            "synthct sliding window",
            time_it(
                lambda: sliding_window_predict(
                    inputs,
                    predictor,
                    n_outputs=2,
                    patch_size=patch,
                    overlap=config.inference.overlap,
                    batch_size=config.inference.batch_size,
                ),
                args.repeats,
            ),
            f"{windows} windows of {patch}",
        ),
    ]
    if not args.skip_monai:
        from monai.inferers import sliding_window_inference

        tensor = torch.from_numpy(inputs)[None]

        def monai_run() -> None:
            with torch.no_grad():
                sliding_window_inference(
                    tensor,
                    patch,
                    config.inference.batch_size,
                    predictor,
                    overlap=config.inference.overlap,
                    mode="gaussian",
                    sigma_scale=config.inference.sigma_scale,
                )

        rows.append(
            (
                "MONAI sliding_window_inference",
                time_it(monai_run, args.repeats),
                "same predictor, window, overlap, batch",
            )
        )
    return rows


def memory_child(args: argparse.Namespace) -> None:
    """Subprocess body: synthesise a 512 x 512 x 200 volume and print peak RSS as JSON."""
    torch.set_num_threads(THREADS)
    model = build_model(args)
    mr = synthetic_body(MEMORY_SHAPE)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    result = model.synthesize(mr)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sys.stdout.write(
        json.dumps(
            {
                "peak_kb": peak,
                "before_kb": before,
                "seconds": seconds,
                "shape": list(result.sct.spatial_shape),
            }
        )
        + "\n"
    )


def memory(args: argparse.Namespace) -> dict[str, Any]:
    """Run :func:`memory_child` in a fresh interpreter and read its report."""
    command = [
        sys.executable,
        __file__,
        "--memory-child",
        "--base-channels",
        str(args.base_channels),
        "--levels",
        str(args.levels),
        "--patch",
        args.patch,
        "--overlap",
        str(args.overlap),
        "--batch-size",
        str(args.batch_size),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = SynthesisConfig()
    parser.add_argument("--base-channels", type=int, default=defaults.network.base_channels)
    parser.add_argument("--levels", type=int, default=defaults.network.levels)
    parser.add_argument("--patch", default=",".join(str(p) for p in defaults.inference_patch_size))
    parser.add_argument("--overlap", type=float, default=defaults.inference.overlap)
    parser.add_argument("--batch-size", type=int, default=defaults.inference.batch_size)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-monai", action="store_true")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args)
        return
    torch.set_num_threads(THREADS)
    model = build_model(args)
    n_params = count_parameters(model.networks[0])
    print(
        f"network: {args.base_channels} base channels, {args.levels} levels, {n_params} "
        f"parameters; window {args.patch}, overlap {args.overlap}, batch {args.batch_size}; "
        f"{THREADS} torch threads"
    )
    print(
        f"\nsCT of a {'x'.join(map(str, SPEED_SHAPE))} two-echo volume, one pass "
        f"(best of {args.repeats}; target <= 15 s)"
    )
    print(f"{'method':34s} {'seconds':>8s}  note")
    for name, seconds, note in speed(args):
        print(f"{name:34s} {seconds:8.2f}  {note}")
    if not args.skip_memory:
        report = memory(args)
        print(
            f"\nsCT of a {'x'.join(map(str, MEMORY_SHAPE))} two-echo volume (subprocess; "
            "target <= 4 GB peak)"
        )
        print(
            f"peak RSS {report['peak_kb'] / 1024**2:.2f} GB (input built: "
            f"{report['before_kb'] / 1024**2:.2f} GB), {report['seconds']:.1f} s"
        )


if __name__ == "__main__":
    main()
