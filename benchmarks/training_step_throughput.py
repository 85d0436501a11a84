"""Network training-step throughput (patches/s) on CPU and, when present, on a CUDA GPU.

Times the optimiser step of the shipped models' network alone (forward, L1 + Laplace NLL,
backward, Adam) on ready-made patches, so that the CPU and GPU figures compare the same work in
the same run. Patch sampling, lesion insertion and augmentation are CPU work that this script
leaves out: ``benchmarks/training_throughput.py`` times the whole step with sampling on CPU.

The patches are smooth random fields (not phantoms): the arithmetic of a convolutional network
does not depend on the values, and this keeps the script free of the imaging stack, so it runs
on a machine with torch, pyyaml and pydantic alone.

Run: python benchmarks/training_step_throughput.py [--steps 20] [--devices cpu,cuda]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from synthct.synthesis.config import SynthesisConfig, load_config
from synthct.synthesis.losses import loss_terms
from synthct.synthesis.network import build_network, count_parameters

ROOT = Path(__file__).resolve().parents[1]
#: The shipped models' config (network, loss); both shipped configs share them.
CONFIG = ROOT / "configs" / "product_like.yaml"
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
    for _ in range(3):  # warm-up: cuDNN autotuning, allocator
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0
    return steps * batch / seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per row")
    parser.add_argument("--devices", default="cpu,cuda", help="comma-separated; cuda if present")
    args = parser.parse_args()
    torch.set_num_threads(CPU_THREADS)
    devices = [d for d in args.devices.split(",") if d != "cuda" or torch.cuda.is_available()]
    if "cuda" in args.devices and "cuda" not in devices:
        print("no CUDA device: CPU rows only")
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
            steps = args.steps if name == "cuda" else max(2, args.steps // 4)
            rate, peak = time_steps(config, torch.device(name), size, batch, steps)
            if name == "cpu":
                cpu_rate = rate
            ratio = f"{rate / cpu_rate:.1f}" if cpu_rate else "-"
            memory = f"{peak:.2f}" if name == "cuda" else "-"
            print(f"| {label} | {name} | {rate:.1f} | {ratio} | {memory} |", flush=True)


if __name__ == "__main__":
    main()
