"""Data-parallel training under ``torchrun``: process group, devices, batch split, precision.

``torchrun --nproc_per_node N -m synthct.cli train ...`` (or ``--nnodes``/``--rdzv-endpoint``
for several machines) starts one process per device and sets ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE``; :func:`init_distributed` reads them and joins the process group (NCCL on CUDA,
gloo on CPU) with a timeout, so a rank that dies cannot leave the others waiting for ever.
Without those variables training runs as one process (world size 1) and nothing here needs a
process group.

Each iteration draws one global batch of ``training.batch_size`` samples; with
``patch_seeding: per_sample`` sample ``n`` of iteration ``t`` has its own random stream
(:func:`sample_seed`), and rank ``r`` draws samples ``r, r + world, ...``
(:func:`rank_samples`). DDP averages the gradients of the ranks' equal shares, which is the
gradient of the mean loss over the whole batch: N processes follow the optimisation path of one
process with the whole batch (exactly up to float summation order when the network has no
batch normalisation or dropout; with them, in distribution).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch

from synthct.synthesis.errors import TrainingConfigError


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a (possibly one-process) data-parallel run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0 writes logs, checkpoints and the model folder."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """Whether a process group is in use (more than one process)."""
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    """Whether ``torchrun`` started this process (``WORLD_SIZE`` and ``RANK`` are set)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def init_distributed(device: str, *, timeout_s: int) -> DistributedContext:
    """Join the ``torchrun`` process group, or return the one-process context.

    Parameters
    ----------
    device : {"cpu", "cuda"}
        The resolved training device: NCCL on CUDA (each rank on ``cuda:LOCAL_RANK``), gloo on
        CPU.
    timeout_s : int
        How long a collective waits for a missing rank before the run fails.
    """
    if not launched_by_torchrun():
        return DistributedContext()
    world = int(os.environ["WORLD_SIZE"])
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world <= 1:
        return DistributedContext(local_rank=local_rank)
    import torch.distributed as dist

    backend = "nccl" if device == "cuda" else "gloo"
    if device == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    return DistributedContext(rank, world, local_rank, backend)


def close_distributed(context: DistributedContext) -> None:
    """Leave the process group (a no-op for one process)."""
    if context.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def rank_device(device: str, context: DistributedContext) -> str:
    """The device of this rank: ``cuda:LOCAL_RANK`` on CUDA, else ``device``."""
    return f"cuda:{context.local_rank}" if device == "cuda" else device


def rank_samples(batch_size: int, context: DistributedContext) -> list[int]:
    """The global-batch sample indices this rank draws: ``rank, rank + world, ...``.

    Raises
    ------
    TrainingConfigError
        When the batch does not split evenly over the ranks.
    """
    if batch_size % context.world_size:
        raise TrainingConfigError(
            f"training.batch_size {batch_size} does not split over {context.world_size} processes",
            path="training.batch_size",
            fix=f"use a multiple of {context.world_size} (it is the global batch of all ranks)",
        )
    return list(range(context.rank, batch_size, context.world_size))


def sample_seed(seed: int, iteration: int, sample: int) -> np.random.Generator:
    """The random stream of global sample ``sample`` of iteration ``iteration``."""
    return np.random.default_rng([seed, iteration, sample])


def step_torch_seed(seed: int, iteration: int, rank: int) -> int:
    """Seed of torch's generator (dropout) for this rank and iteration (resumable exactly)."""
    return int(np.random.SeedSequence([seed, iteration, rank, 7]).generate_state(1)[0])


def autocast(device: str, mode: str) -> contextlib.AbstractContextManager[Any]:
    """bfloat16 autocast on CUDA for ``mode`` ``auto``/``bf16``; float32 otherwise.

    On CPU ``auto`` stays float32 and ``bf16`` uses CPU bfloat16 autocast.
    """
    kind = "cuda" if device.startswith("cuda") else "cpu"
    if mode == "none" or (mode == "auto" and kind == "cpu"):
        return contextlib.nullcontext()
    return torch.autocast(device_type=kind, dtype=torch.bfloat16)


def mean_over_ranks(value: float, context: DistributedContext, device: str) -> float:
    """The mean of a per-rank number over all ranks (the value itself for one process)."""
    if not context.enabled:
        return value
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / context.world_size


def barrier(context: DistributedContext) -> None:
    """Wait for every rank (a no-op for one process)."""
    if context.enabled:
        import torch.distributed as dist

        dist.barrier()
