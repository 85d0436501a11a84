"""Network training-step throughput (patches/s) on CPU and, when present, on a CUDA GPU.

Times the optimiser step of the shipped models' network alone (forward, L1 + Laplace NLL,
backward, Adam) on ready-made patches, so that the CPU and GPU figures compare the same work in
the same run. Patch sampling, lesion insertion and augmentation are CPU work that this script
leaves out: ``benchmarks/training_throughput.py`` times the whole step with sampling on CPU.

The patches are smooth random fields (not phantoms): the arithmetic of a convolutional network
does not depend on the values, and this keeps the script free of the imaging stack, so it runs
on a machine with torch, pyyaml and pydantic alone.

A second table compares the large residual U-Net for real data (``configs/real_large.yaml``,
26.5M parameters) with the shipped small network on the same patches, in the same run: step
time, patches/s and peak memory (CPU: peak resident memory of a fresh process per row above its
level before the first step; CUDA: ``torch.cuda.max_memory_allocated``), float32 and, on CUDA,
bfloat16 autocast as training uses it.

Run: python benchmarks/training_step_throughput.py [--steps 20] [--devices cpu,cuda]
     python benchmarks/training_step_throughput.py --large-only [--large-patch 64]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch

from synthct.synthesis.config import SynthesisConfig, load_config
from synthct.synthesis.losses import loss_terms
from synthct.synthesis.network import build_network, count_parameters

ROOT = Path(__file__).resolve().parents[1]
#: The shipped models' config (network, loss); both shipped configs share them.
CONFIG = ROOT / "configs" / "product_like.yaml"
#: The large network for real data.
LARGE_CONFIG = ROOT / "configs" / "real_large.yaml"
CPU_THREADS = 2  # the target machine's cores
#: (label, patch size, batch size)
SETTINGS = [
    ("shipped: 24^3, batch 4", (24, 24, 24), 4),
    ("24^3, batch 32", (24, 24, 24), 32),
    ("48^3, batch 8", (48, 48, 48), 8),
    ("64x64x32, batch 16", (64, 64, 32), 16),
]


def smooth_batch(
    batch: int, channels: int, size: tuple[int, int, int], device: torch.device
) -> torch.Tensor:
    """Random fields smoothed by average pooling: image-like values in about [0, 2]."""
    x = torch.rand(batch, channels, *size, device=device)
    return torch.nn.functional.avg_pool3d(x, 5, stride=1, padding=2) * 2.0


def timed(step: Callable[[], None], device: torch.device, *, warmup: int, steps: int) -> float:
    """Seconds for ``steps`` calls of ``step`` after ``warmup`` calls (cuDNN autotuning,
    allocator); CUDA peak-memory statistics are reset after the warm-up."""
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def time_steps(
    config: SynthesisConfig,
    device: torch.device,
    size: tuple[int, int, int],
    batch: int,
    steps: int,
) -> tuple[float, float]:
    """Patches per second and peak GPU memory (GiB; 0 on CPU) over ``steps`` timed steps."""
    torch.manual_seed(0)
    network = build_network(config.network, 2).to(device)
    optimiser = torch.optim.Adam(network.parameters(), lr=config.training.learning_rate)
    x = smooth_batch(batch, 2, size, device)
    y = smooth_batch(batch, 1, size, device) - 1.0

    def step() -> None:
        loss, _ = loss_terms(network(x), y, config.loss)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    network.train()
    seconds = timed(step, device, warmup=3, steps=steps)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0
    return steps * batch / seconds, peak


def _precision(device: str, bf16: bool) -> AbstractContextManager[Any]:
    if not bf16:
        return nullcontext()
    return torch.autocast(device_type=device, dtype=torch.bfloat16)


def large_row(
    config_path: str, device: str, size: int, batch: int, steps: int, bf16: bool
) -> dict[str, float]:
    """One row of the small-vs-large table; run in a fresh process so CPU peaks are its own."""
    torch.set_num_threads(CPU_THREADS)
    config = load_config(config_path)
    dev = torch.device(device)
    torch.manual_seed(0)
    network = build_network(config.network, 1).to(dev)
    optimiser = torch.optim.Adam(network.parameters(), lr=1e-4)
    shape = (size, size, size)
    x = smooth_batch(batch, 1, shape, dev)
    y = smooth_batch(batch, 1, shape, dev) - 1.0

    def step() -> None:
        with _precision(dev.type, bf16):
            prediction = network(x)
        loss, _ = loss_terms(prediction.float(), y, config.loss)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    network.train()
    before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step()  # warm-up outside the CPU-time count
    cpu_start = time.process_time()
    seconds = timed(step, dev, warmup=0, steps=steps) / steps
    cpu_seconds = (time.process_time() - cpu_start) / steps
    if dev.type == "cuda":
        peak_gib = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak_gib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kib) / 2**20
    return {
        "parameters": float(count_parameters(network)),
        "step_s": seconds,
        "cpu_s": cpu_seconds,
        "patches_per_s": batch / seconds,
        "peak_gib": peak_gib,
    }


def large_table(devices: list[str], size: int, batch: int, steps: int) -> None:
    """The large residual U-Net against the shipped small network, same patches, same run."""
    print(
        f"\nsmall (shipped) vs large (real_large) network: {size}^3 patches, batch {batch}, "
        "1 input channel; CPU peak = resident memory growth over the steps, CUDA peak = "
        "torch.cuda.max_memory_allocated; CPU s/step = process CPU time (all threads), less "
        "sensitive than wall time to other load on a shared machine"
    )
    print(
        "| network | parameters | device | precision | s/step | CPU s/step | patches/s | x small "
        "| peak GiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    spawn = multiprocessing.get_context("spawn")
    for device in devices:
        precisions = [False, True] if device == "cuda" else [False]
        for bf16 in precisions:
            small_rate = None
            for name, path in (("small", CONFIG), ("large", LARGE_CONFIG)):
                n = steps if device == "cuda" else max(1, steps // 10)
                with spawn.Pool(1) as pool:
                    row = pool.apply(large_row, (str(path), device, size, batch, n, bf16))
                if name == "small":
                    small_rate = row["patches_per_s"]
                ratio = row["patches_per_s"] / small_rate if small_rate else float("nan")
                print(
                    f"| {name} | {row['parameters'] / 1e6:.2f}M | {device} | "
                    f"{'bf16 autocast' if bf16 else 'float32'} | {row['step_s']:.3f} | "
                    f"{row['cpu_s']:.3f} | "
                    f"{row['patches_per_s']:.2f} | {ratio:.3f} | {row['peak_gib']:.2f} |",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per row")
    parser.add_argument("--devices", default="cpu,cuda", help="comma-separated; cuda if present")
    parser.add_argument(
        "--large-patch", type=int, default=64, help="patch edge of the small-vs-large table"
    )
    parser.add_argument("--large-batch", type=int, default=2, help="batch of that table")
    parser.add_argument(
        "--large-only", action="store_true", help="only the small-vs-large network table"
    )
    args = parser.parse_args()
    torch.set_num_threads(CPU_THREADS)
    devices = [d for d in args.devices.split(",") if d != "cuda" or torch.cuda.is_available()]
    if "cuda" in args.devices and "cuda" not in devices:
        print("cuda: not available (torch.cuda.is_available() is False); CPU rows only")
    if not args.large_only:
        shipped_table(devices, args.steps)
    large_table(devices, args.large_patch, args.large_batch, args.steps)


def shipped_table(devices: list[str], steps_per_row: int) -> None:
    """The shipped network over patch and batch sizes, CPU against CUDA."""
    config = load_config(CONFIG)
    n_params = count_parameters(build_network(config.network, 2))
    print(
        f"network: {config.network.architecture}, base {config.network.base_channels}, "
        f"{config.network.levels} levels, {n_params} parameters; CPU rows with {CPU_THREADS} "
        "threads"
    )
    if "cuda" in devices:
        print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    print("| setting | device | patches/s | x CPU (same setting) | peak GPU memory GiB |")
    print("|---|---|---|---|---|")
    for label, size, batch in SETTINGS:
        cpu_rate = None
        for name in devices:
            steps = steps_per_row if name == "cuda" else max(2, steps_per_row // 4)
            rate, peak = time_steps(config, torch.device(name), size, batch, steps)
            if name == "cpu":
                cpu_rate = rate
            ratio = f"{rate / cpu_rate:.1f}" if cpu_rate else "-"
            memory = f"{peak:.2f}" if name == "cuda" else "-"
            print(f"| {label} | {name} | {rate:.1f} | {ratio} | {memory} |", flush=True)


if __name__ == "__main__":
    main()
