"""Training throughput on CPU: patches per second, sampling and optimiser step included.

Two rendered 3 T spine phantoms (1.5 mm, 128 x 128 x 60) are prepared as training cases; each
row times ``--steps`` optimiser steps of the real training step (patch sampling towards bone,
augmentation, forward, L1 + Laplace NLL, backward, Adam) for one network/patch setting, and the
patch sampling alone for comparison. 2 torch threads (the target machine's cores).

Run: .venv/bin/python benchmarks/training_throughput.py [--steps 10]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from synthct.phantom.anatomy import SpineModel, SpineSpec
from synthct.phantom.mri import render_ct_and_mri
from synthct.phantom.protocols import FAST_3T
from synthct.synthesis.config import SynthesisConfig
from synthct.synthesis.losses import loss_terms
from synthct.synthesis.manifest import Case
from synthct.synthesis.network import build_network, count_parameters
from synthct.synthesis.patches import PatchSampler, prepare_case

THREADS = 2
#: (label, base channels, levels, patch size, batch size)
SETTINGS = [
    ("tests (configs/phantom_tiny.yaml)", 6, 2, (16, 16, 16), 4),
    ("default network, 32^3", 12, 3, (32, 32, 32), 2),
    ("base 8, 32^3", 8, 3, (32, 32, 32), 2),
    ("shipped models (configs/product_like.yaml), 24^3", 8, 4, (24, 24, 24), 4),
    ("default network, 48^3", 12, 3, (48, 48, 48), 2),
]


def cases() -> list[Case]:
    """Two rendered phantoms as loaded cases."""
    out = []
    for seed in (1, 2):
        model = SpineModel(SpineSpec(first_level="T3", last_level="T8", seed=seed))
        geometry = FAST_3T.geometry(
            center_lps_mm=model.level_centre_lps_mm("T5"), orientation="axial"
        )
        ct, mr = render_ct_and_mri(model, geometry, FAST_3T, supersample=1, seed=seed)
        out.append(Case(f"case{seed}", mr, ct))
    return out


def train_step(
    sampler: PatchSampler,
    network: torch.nn.Module,
    optimiser: torch.optim.Optimizer,
    config: SynthesisConfig,
    rng: np.random.Generator,
    batch: int,
) -> None:
    """One real training step: sample, forward, loss, backward, Adam."""
    x, y = sampler.sample(rng, batch)
    loss, _ = loss_terms(network(torch.from_numpy(x)), torch.from_numpy(y), config.loss)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    loaded = cases()
    print(f"{THREADS} torch threads; {args.steps} steps per row after 2 warm-up steps")
    print(
        f"{'setting':36s} {'params':>8s} {'patch':>12s} {'batch':>5s} {'patches/s':>10s} "
        f"{'s/step':>7s} {'sampling patches/s':>19s}"
    )
    for label, base, levels, size, batch in SETTINGS:
        config = SynthesisConfig().with_updates(
            {"network": {"base_channels": base, "levels": levels}, "patches": {"size": size}}
        )
        prepared = [prepare_case(c, config.normalisation, config.patches) for c in loaded]
        sampler = PatchSampler(prepared, config.patches, config.normalisation)
        torch.manual_seed(0)
        network = build_network(config.network, 2)
        optimiser = torch.optim.Adam(network.parameters(), lr=1e-3)
        rng = np.random.default_rng(0)

        for _ in range(2):
            train_step(sampler, network, optimiser, config, rng, batch)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            train_step(sampler, network, optimiser, config, rng, batch)
        seconds = (time.perf_counter() - t0) / args.steps
        t0 = time.perf_counter()
        for _ in range(args.steps):
            sampler.sample(rng, batch)
        sampling = args.steps * batch / (time.perf_counter() - t0)
        print(
            f"{label:36s} {count_parameters(network):8d} {'x'.join(map(str, size)):>12s} "
            f"{batch:5d} {batch / seconds:10.2f} {seconds:7.3f} {sampling:19.0f}"
        )


if __name__ == "__main__":
    main()
