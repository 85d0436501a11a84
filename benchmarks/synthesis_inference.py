"""Synthesis inference: ours vs MONAI's sliding window, and peak memory, on 2 CPU threads.

1. Speed: a rendered two-echo spine phantom (``--shape``, default 256 x 256 x 96 voxels) through
   two networks, each run by MONAI's ``sliding_window_inference`` and by synthct's sliding
   window in the same run, with the same windows, overlap, batch and Gaussian weights (passed
   to MONAI as ``roi_weight_map``), so the outputs must agree to float precision (the largest
   difference is printed in HU):

   * small: the shipped ``product_like`` model (its weights and inference settings), plus
     synthct's full ``SynthesisModel.synthesize`` (checks, body mask, normalisation, HU);
     target (BRIEF "Targets") <= 15 s;
   * large: the residual 3D U-Net of ``--config`` (default ``configs/real_large.yaml``), or
     where that does not exist or build, MONAI's ``UNet`` with channels 32-64-128-256-320 and
     two residual units per block, built directly (random weights).

   MONAI is called as documented (the network as it is, ``torch.no_grad``); synthct runs what
   ``synthesize`` runs: an inference copy of the network
   (:mod:`synthct.synthesis.inference_network`: batch norm folded into the convolutions,
   instance norm computed channels-last, channels-last weights), made inside the timing, under
   ``torch.inference_mode``, blending in place. Runs are interleaved, best of ``--repeats``
   each; wall and process CPU time are both printed (the CPU is shared). With ``--devices
   cpu,cuda`` (default) the comparison is repeated on CUDA, or a row says CUDA is not
   available. Target (issue 14): synthct >= 1.5x faster at equal output. A third row per
   network times what ``synthesize`` computes when the outside of the body becomes air (only
   windows holding a body voxel; equal output inside the body, air outside for both).
2. Memory: ``synthesize`` of a 512 x 512 x 200 two-echo volume in a fresh subprocess; peak
   resident memory read from ``ru_maxrss`` (input included). Target: <= 4 GB.

Run: .venv/bin/python benchmarks/synthesis_inference.py [--config configs/real_large.yaml]
     [--shape 256,256,96] [--large-patch 64,64,32] [--repeats 1] [--skip-small] [--skip-large]
     [--skip-memory] [--base-channels 8] [--patch 64,64,32] [--overlap 0.25] [--batch-size 2]
     [--devices cpu,cuda]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthct.errors import SynthctError
from synthct.synthesis.config import load_config
from synthct.synthesis.domain import TrainingDomain
from synthct.synthesis.inference_network import inference_network
from synthct.synthesis.model_folder import ModelFolder
from synthct.synthesis.network import build_network, count_parameters
from synthct.synthesis.normalisation import normalise_mr
from synthct.synthesis.sliding_window import (
    count_windows,
    gaussian_weights,
    iter_windows,
    sliding_window_predict,
)
from synthct.synthesis.synthesizer import SynthesisModel, load_shipped_model
from synthct.synthesis.uncertainty import single_pass_predictor
from synthct.volume import MRProtocol, MultiEchoMR

MEMORY_SHAPE = (512, 512, 200)
THREADS = 2


def build_model(args: argparse.Namespace) -> SynthesisModel:
    """The shipped ``product_like`` model with the window settings of ``args``.

    Another width or depth than the shipped network's gives that network with random weights
    (the time does not depend on them).
    """
    shipped = load_shipped_model("product_like")
    patch = tuple(int(p) for p in args.patch.split(","))
    config = shipped.config.with_updates(
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
    if config.network == shipped.config.network:
        network = shipped.networks[0]
    else:
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


def time_it(func: Any, repeats: int, device: str = "cpu") -> tuple[float, float, Any]:
    """Best wall and best process CPU time of ``repeats`` calls (s), and the last result.

    CPU time (all threads) is less sensitive than wall time to other jobs on a shared machine.
    """
    best, best_cpu, result = float("inf"), float("inf"), None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        result = func()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best, best_cpu, result


def large_network(path: str | None) -> tuple[torch.nn.Module, str]:
    """The large residual U-Net: from ``--config`` when it loads, else MONAI's UNet directly.

    The fallback is ``monai.networks.nets.UNet`` (3D, 2 inputs, 2 outputs, channels
    32-64-128-256-320, strides 2, two residual units per block, instance norm).
    """
    if path is not None and Path(path).is_file():
        try:
            config = load_config(path)
            network = build_network(config.network, 2)
            return network.eval(), f"{path} ({config.network.architecture})"
        except (SynthctError, ValueError) as exc:
            print(f"note: {path} does not build here ({exc}); using MONAI's UNet directly")
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    network = UNet(
        spatial_dims=3,
        in_channels=2,
        out_channels=2,
        channels=(32, 64, 128, 256, 320),
        strides=(2, 2, 2, 2),
        num_res_units=2,
    )
    return network.eval(), "monai.networks.nets.UNet(32-64-128-256-320, 2 residual units)"


def compare_with_monai(
    name: str,
    network: torch.nn.Module,
    inputs: np.ndarray,
    args: argparse.Namespace,
    *,
    patch: tuple[int, int, int],
    hu_scale: float,
    device: str = "cpu",
    body: np.ndarray | None = None,
) -> list[tuple[str, float, str]]:
    """Ours vs MONAI's ``sliding_window_inference`` on ``network``, same windows and weights.

    MONAI is called as its documentation shows (the network as it is, under ``no_grad``),
    with our Gaussian passed as ``roi_weight_map``, so both compute the same windows and blend
    them identically: equal output means the same numbers up to float32 rounding, and the
    largest and mean difference in the mean channel are printed in HU. Ours is what
    ``synthesize`` runs: :func:`inference_network` (batch norm folded, channels-last instance
    norm and weights; the copy is made inside the timing) and :func:`sliding_window_predict`.

    With ``body`` (the MRI body mask ``synthesize`` makes) a third row times what
    ``synthesize`` runs when everything outside the body becomes air: only the windows that
    hold a body voxel are computed (``needed``). Its output equals MONAI's inside the body
    (the difference printed is taken there); outside, both become air.
    """
    from monai.inferers import sliding_window_inference

    overlap, batch = args.overlap, args.batch_size
    weights = torch.from_numpy(gaussian_weights(patch, 0.125)).to(device)
    tensor = torch.from_numpy(inputs)[None].to(device)
    network = network.to(device)

    def ours(needed: np.ndarray | None = None) -> np.ndarray:
        predictor = single_pass_predictor(inference_network(network))
        out = sliding_window_predict(
            inputs,
            predictor,
            n_outputs=2,
            patch_size=patch,
            overlap=overlap,
            batch_size=batch,
            device=device,
            needed=needed,
        )
        return np.asarray(out[0])

    def ours_body() -> np.ndarray:
        return ours(body)

    def monai() -> np.ndarray:
        with torch.no_grad():
            out = sliding_window_inference(
                tensor, patch, batch, network, overlap=overlap, roi_weight_map=weights
            )
        assert isinstance(out, torch.Tensor)
        return np.asarray(out[0, 0].cpu().numpy())

    windows = count_windows(inputs.shape[1:], patch, overlap)
    # interleaved (MONAI, ours, MONAI, ours, ...), best of each: fair under a varying load
    t_monai = t_ours = c_monai = c_ours = t_body = float("inf")
    mine_body = None
    for _ in range(args.repeats):
        seconds, cpu, theirs = time_it(monai, 1, device)
        t_monai, c_monai = min(t_monai, seconds), min(c_monai, cpu)
        seconds, cpu, mine = time_it(ours, 1, device)
        t_ours, c_ours = min(t_ours, seconds), min(c_ours, cpu)
        if body is not None:
            seconds, _, mine_body = time_it(ours_body, 1, device)
            t_body = min(t_body, seconds)
    difference = np.abs(mine - theirs) * hu_scale
    note = f"{windows} windows of {patch}, batch {batch}; CPU {c_monai:.1f} s"
    label = f"{name} ({device})"
    print(f"{label}: MONAI {t_monai:.2f} s, synthct {t_ours:.2f} s", flush=True)
    rows = []
    if body is not None and mine_body is not None:
        inside = np.abs(mine_body - theirs)[body] * hu_scale
        kept = sum(
            1
            for start in iter_windows(inputs.shape[1:], patch, overlap)
            if body[tuple(slice(max(a, 0), a + n) for a, n in zip(start, patch, strict=True))].any()
        )
        rows.append(
            (
                f"{label}: synthct, windows in the body",
                t_body,
                f"{t_monai / t_body:.2f}x faster than MONAI; {kept} of {windows} windows hold "
                f"body voxels; |difference| inside the body max {inside.max():.2g} HU",
            )
        )
    return [
        (f"{label}: MONAI sliding_window_inference", t_monai, note),
        (
            f"{label}: synthct sliding window",
            t_ours,
            f"{t_monai / t_ours:.2f}x faster (CPU time {c_monai / c_ours:.2f}x); "
            f"|difference| max {difference.max():.2g} HU, mean {difference.mean():.1g} HU",
        ),
        *rows,
    ]


def speed(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    """Rows (method, seconds, note) for the speed volume."""
    model = build_model(args)
    config = model.config
    mr = phantom_mri(args.shape)
    inputs, body, _ = normalise_mr(mr.array, config.normalisation, spacing_mm=mr.spacing_mm)
    hu_scale = config.normalisation.hu_scale
    rows: list[tuple[str, float, str]] = []
    devices = []
    for device in args.devices.split(","):
        if device == "cuda" and not torch.cuda.is_available():
            rows.append(("cuda: not available", float("nan"), "torch.cuda.is_available() is False"))
        else:
            devices.append(device)
    if not args.skip_small:
        computed: list[int] = []
        model.synthesize(mr, progress=lambda _d, t: computed.append(t))  # warm-up
        seconds, _, _ = time_it(lambda: model.synthesize(mr), args.repeats)
        all_windows = count_windows(args.shape, config.inference_patch_size, args.overlap)
        rows.append(
            (
                "small: synthct synthesize (full, cpu)",
                seconds,
                f"checks, mask, HU; {computed[-1]} of {all_windows} windows hold body voxels",
            )
        )
        for device in devices:
            rows += compare_with_monai(
                "small",
                model.networks[0],
                inputs,
                args,
                patch=config.inference_patch_size,
                hu_scale=hu_scale,
                device=device,
                body=body,
            )
    if not args.skip_large:
        network, label = large_network(args.config)
        print(f"large network: {label}, {count_parameters(network)} parameters")
        for device in devices:
            rows += compare_with_monai(
                "large",
                network,
                inputs,
                args,
                patch=args.large_patch,
                hu_scale=hu_scale,
                device=device,
                body=body,
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
    defaults = load_shipped_model("product_like").config
    parser.add_argument("--base-channels", type=int, default=defaults.network.base_channels)
    parser.add_argument("--levels", type=int, default=defaults.network.levels)
    parser.add_argument("--patch", default=",".join(str(p) for p in defaults.inference_patch_size))
    parser.add_argument("--overlap", type=float, default=defaults.inference.overlap)
    parser.add_argument("--batch-size", type=int, default=defaults.inference.batch_size)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-small", action="store_true")
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument(
        "--config",
        default="configs/real_large.yaml",
        help="configuration of the large network (MONAI's UNet directly when absent)",
    )
    parser.add_argument("--shape", default="256,256,96", help="speed volume, voxels")
    parser.add_argument(
        "--devices", default="cpu,cuda", help="comma-separated; a row says when CUDA is absent"
    )
    parser.add_argument("--large-patch", default="64,64,32", help="window of the large network")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.shape = tuple(int(v) for v in args.shape.split(","))
    args.large_patch = tuple(int(v) for v in args.large_patch.split(","))
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
        f"\nsCT of a {'x'.join(map(str, args.shape))} two-echo volume, one pass "
        f"(best of {args.repeats}; target <= 15 s for the small network)"
    )
    rows = speed(args)
    print(f"\n{'method':44s} {'seconds':>8s}  note")
    for name, seconds, note in rows:
        print(
            f"{name:44s} {seconds:8.2f}  {note}"
            if seconds == seconds
            else f"{name:44s} {'-':>8s}  {note}"
        )
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
