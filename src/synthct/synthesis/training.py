"""Training a synthesis model from a cohort manifest.

:func:`train_model` reads the manifest (:mod:`synthct.synthesis.manifest`), splits the cases
into training and validation, normalises them, and optimises the network on patches drawn
towards bone and lesions (:mod:`synthct.synthesis.patches`) with the loss of
:func:`synthct.synthesis.losses.loss_terms`. Every ``validation_interval`` iterations it
computes the loss and the MAE in HU on fixed validation patches and appends a row to
``training_log.csv``; every ``checkpoint_interval`` iterations it writes
``checkpoints/last.pt``, from which ``resume=True`` continues exactly (same random streams, so
an interrupted and resumed run gives the same weights as an uninterrupted one). At the end it
validates the held-out cases on whole volumes (sliding window) and writes the model
folder ``model/``.

With ``data.mr_source: randomised`` the manifest gives CT and tissue labels and every patch
gets a new random MR contrast (:mod:`synthct.synthesis.randomised_source`); the card then
declares the model contrast-agnostic.

With ``plan.target_spacing_mm`` every case is first resampled to the planned spacing
(:mod:`synthct.synthesis.planning`). Every ``volume_validation_interval`` iterations the
held-out cases are also synthesised whole (body MAE, bone Dice at 250 HU) and the best weights
kept. Under ``torchrun`` every process is one data-parallel rank
(:mod:`synthct.synthesis.distributed`): each draws its share of the global batch, DDP averages
the gradients, rank 0 alone writes the run folder. On CUDA the forward pass runs under
bfloat16 autocast (``training.mixed_precision``).

Run folder::

    OUTPUT/config.yaml            the resolved configuration
    OUTPUT/split.json             training and validation case ids
    OUTPUT/training_log.csv       one row per validation
    OUTPUT/training_curve.png     losses and validation MAE (``training.curve_png``)
    OUTPUT/checkpoints/last.pt    the latest checkpoint
    OUTPUT/checkpoints/best.pt    the weights with the best validation MAE
    OUTPUT/model/                 the model folder (weights, config, card...)
    OUTPUT/model-best/            the same for the best checkpoint (loadable like model/)
    OUTPUT/prepared/<case>/       under torchrun: the prepared training cases, memory-mapped
                                  by every rank (:mod:`synthct.synthesis.prepared_store`)

Nothing here prints: progress goes to the ``progress`` callback.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from synthct.io.atomic import write_text_atomic
from synthct.synthesis.checkpoint import (
    checkpoint_config,
    config_differences,
    load_checkpoint,
    plot_training_curve,
    save_checkpoint,
    write_log,
)
from synthct.synthesis.config import SynthesisConfig, config_to_yaml
from synthct.synthesis.distributed import (
    DistributedContext,
    autocast,
    barrier,
    close_distributed,
    init_distributed,
    mean_over_ranks,
    rank_device,
    rank_samples,
    sample_seed,
    step_torch_seed,
)
from synthct.synthesis.domain import CONTRAST_AGNOSTIC, MRHeaderLike, domain_from_volumes
from synthct.synthesis.errors import TrainingConfigError, TrainingInterrupted
from synthct.synthesis.inference_grid import spacing_by_rank
from synthct.synthesis.initial_weights import load_initial_weights
from synthct.synthesis.losses import bone_target_threshold, loss_terms
from synthct.synthesis.manifest import Case, CaseRecord, load_case, read_manifest
from synthct.synthesis.model_folder import build_card, save_model_folder
from synthct.synthesis.network import build_network, count_parameters
from synthct.synthesis.patches import PatchSampler, PreparedCase, prepare_case
from synthct.synthesis.planning import reorient_case, resample_case, split_cases
from synthct.synthesis.prepared_store import MRHeader, read_case, store_key, write_case
from synthct.synthesis.randomised_source import randomised_training_data, read_label_manifest
from synthct.synthesis.stop_request import StopRequest
from synthct.synthesis.synthesizer import resolve_device
from synthct.synthesis.training_validation import (
    keep_best,
    recalibrate_batch_norm,
    validate_volumes,
    validation_row,
)

Phase = Literal["loading", "training", "validating", "saving", "done"]
CHECKPOINT = Path("checkpoints") / "last.pt"
BEST = Path("checkpoints") / "best.pt"
MODEL = "model"
#: The best checkpoint (``BEST``) as a model folder, written beside ``MODEL`` at the end.
MODEL_BEST = "model-best"
LOG = "training_log.csv"
#: Prepared training cases shared by the ranks of a torchrun run.
PREPARED = "prepared"
CURVE = "training_curve.png"


@dataclass(frozen=True)
class TrainingProgress:
    """What the progress callback receives, after each step."""

    phase: Phase
    iteration: int
    iterations: int
    train_loss: float | None = None
    validation_loss: float | None = None
    validation_mae_hu: float | None = None
    elapsed_s: float = 0.0
    message: str = ""


ProgressCallback = Callable[[TrainingProgress], None]


@dataclass(frozen=True)
class TrainingResult:
    """Where a finished run wrote its outputs, and its final figures."""

    output_dir: Path
    model_dir: Path
    log_path: Path
    checkpoint_path: Path
    iterations: int
    log: list[dict[str, Any]] = field(default_factory=list)
    validation: dict[str, Any] = field(default_factory=dict)
    #: ``checkpoints/best.pt``: the weights with the best validation MAE (None: none yet).
    best_checkpoint_path: Path | None = None
    #: ``model-best/``: the best checkpoint as a loadable model folder (None: no best yet).
    best_model_dir: Path | None = None


def _cosine(iterations: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(step, iterations) / iterations))

    return factor


def train_model(
    manifest: str | os.PathLike[str],
    config: SynthesisConfig,
    output_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    progress: ProgressCallback | None = None,
) -> TrainingResult:
    """Train a synthesis model and write its run folder (layout in the module docstring).

    Under ``torchrun`` each process trains one data-parallel rank
    (:mod:`synthct.synthesis.distributed`); rank 0 writes the run folder.

    Parameters
    ----------
    manifest : path
        Cohort manifest (CSV or JSON, :mod:`synthct.synthesis.manifest`).
    config : SynthesisConfig
        Every setting, seeds included.
    output_dir : path
        Run folder; created when missing. It must not hold a checkpoint unless ``resume``.
    resume : bool
        Continue from ``output_dir/checkpoints/last.pt`` up to ``config.training.iterations``.
    progress : callable, optional
        Receives a :class:`TrainingProgress` after each step (on rank 0 only).
    """
    device_kind = resolve_device(config.training.device)
    context = init_distributed(device_kind, timeout_s=config.training.distributed_timeout_s)
    try:
        return _train(manifest, config, Path(output_dir), context, device_kind, resume, progress)
    finally:
        close_distributed(context)


def _train(
    manifest: str | os.PathLike[str],
    config: SynthesisConfig,
    out: Path,
    context: DistributedContext,
    device_kind: str,
    resume: bool,
    progress: ProgressCallback | None,
) -> TrainingResult:
    """:func:`train_model` on one rank."""
    report = progress if progress is not None and context.is_main else (lambda _p: None)
    settings = config.training
    if context.enabled and settings.patch_seeding != "per_sample":
        raise TrainingConfigError(
            f"training with {context.world_size} processes needs per-sample patch seeding",
            path="training.patch_seeding",
            fix="set training.patch_seeding: per_sample in the configuration",
        )
    samples = rank_samples(settings.batch_size, context)
    state = _open_run(out, config, resume=resume, main=context.is_main)
    device = rank_device(device_kind, context)
    randomised = config.data.mr_source == "randomised"
    records = read_label_manifest(manifest) if randomised else read_manifest(manifest)
    train_ids, val_ids = split_cases(records, config)
    if state is not None and (state["train_ids"], state["validation_ids"]) != (train_ids, val_ids):
        raise TrainingConfigError(
            "the manifest's cases or split differ from those of the checkpoint",
            path=manifest,
            fix="resume with the manifest the run was started with",
        )
    # Only rank 0 validates and writes the model: the other ranks load the training cases alone
    # and keep them prepared only (the raw volumes are dropped), not every case twice.
    wanted = train_ids + val_ids if context.is_main else list(train_ids)
    sampler: PatchSampler
    headers: dict[str, MRHeaderLike] = {}
    if randomised:  # a new random MR contrast per patch from tissue labels
        cases, prepared, native, sampler = randomised_training_data(
            records,
            wanted,
            train_ids,
            config,
            lambda n, total, case_id: report(
                TrainingProgress(
                    "loading", 0, settings.iterations, message=f"{n}/{total} {case_id}"
                )
            ),
        )
    elif context.enabled and settings.shared_cases and not config.lesion_insertion.enabled:
        # One memory-mapped copy of the training cases per machine instead of one per rank.
        cases, prepared, native, headers = _stored_cases(
            records, train_ids, val_ids, config, report, out / PREPARED, context
        )
        sampler = PatchSampler(
            [prepared[i] for i in train_ids],
            config.patches,
            config.normalisation,
            insertion=config.lesion_insertion,
        )
    else:
        cases, prepared, native = _load_cases(records, wanted, config, report, train_ids)
        sampler = PatchSampler(
            [prepared[i] for i in train_ids],
            config.patches,
            config.normalisation,
            insertion=config.lesion_insertion,
        )
    in_channels = next(iter(prepared.values())).n_echoes
    if not context.is_main:
        cases = {}
    else:
        headers.update({i: cases[i].mr for i in train_ids if i in cases})
    val_patches = None
    if context.is_main:  # own seeded stream: skipping it elsewhere changes no rank's path
        val_source = [prepared[i] for i in val_ids] or [prepared[i] for i in train_ids]
        val_patches = PatchSampler(val_source, config.patches, config.normalisation).fixed_patches(
            settings.validation_patches, settings.seed + 1
        )

    run = _Optimisation.build(config, in_channels, context, device_kind, state)
    if context.is_main:
        write_text_atomic(out / "config.yaml", config_to_yaml(config))
        write_text_atomic(
            out / "split.json",
            json.dumps({"train": train_ids, "validation": val_ids}, indent=2) + "\n",
        )
    writer = _tensorboard(out) if settings.tensorboard and context.is_main else None
    val_cases = [cases[i] for i in val_ids] if context.is_main else []

    t0 = time.perf_counter()
    running, running_l1, running_n = 0.0, 0.0, 0
    with StopRequest(enabled=not context.enabled) as stop:
        for iteration in range(run.start, settings.iterations):
            loss, l1 = run.step(sampler, samples, iteration, config, context)
            running += float(loss.detach())
            running_l1 += float(l1.detach())
            running_n += 1
            done = iteration + 1
            elapsed = run.elapsed_before + time.perf_counter() - t0
            report(
                TrainingProgress(
                    "training", done, settings.iterations, float(loss.detach()), elapsed_s=elapsed
                )
            )
            last_step = done == settings.iterations
            if done % settings.validation_interval == 0 or last_step:
                train_loss = mean_over_ranks(running / running_n, context, device)
                train_l1 = mean_over_ranks(running_l1 / running_n, context, device)
                running, running_l1, running_n = 0.0, 0.0, 0
                if context.is_main and val_patches is not None:
                    interval = settings.volume_validation_interval
                    volumes = val_cases if interval and (done % interval == 0 or last_step) else []
                    train = {
                        "train_loss": train_loss,
                        "train_l1_hu": train_l1 * config.normalisation.hu_scale,
                    }
                    row = _log_validation(
                        out, run, (val_patches, volumes), config, (done, elapsed), train, writer
                    )
                    report(
                        TrainingProgress(
                            "validating",
                            done,
                            settings.iterations,
                            train_loss,
                            row["validation_loss"],
                            row["validation_mae_hu"],
                            elapsed,
                        )
                    )
            stopping = stop.signal_name is not None and not last_step
            if context.is_main and (
                done % settings.checkpoint_interval == 0 or last_step or stopping
            ):
                extra = {
                    "log": run.rows,
                    "best": run.best,
                    "elapsed_s": elapsed,
                    "initial_weights": run.initial,
                }
                split = {"train_ids": train_ids, "validation_ids": val_ids}
                save_checkpoint(out / CHECKPOINT, run.state(done, config, context, extra | split))
            if stopping:
                if writer is not None:
                    writer.close()
                raise TrainingInterrupted(
                    f"stopped by {stop.signal_name} after iteration {done} of "
                    f"{settings.iterations}; its checkpoint is {out / CHECKPOINT}",
                    path=out,
                    fix="run the same command with --resume to continue from there",
                )
    if writer is not None:
        writer.close()
    result = TrainingResult(
        output_dir=out,
        model_dir=out / MODEL,
        log_path=out / LOG,
        checkpoint_path=out / CHECKPOINT,
        iterations=settings.iterations,
        log=run.rows,
        best_checkpoint_path=out / BEST if run.best else None,
    )
    if not context.is_main:
        return result
    if settings.batch_norm_recalibration_batches:
        # Its own stream: a resumed run and an uninterrupted one recalibrate identically.
        recalibrate_batch_norm(
            run.network,
            sampler,
            np.random.default_rng([settings.seed, 1]),
            batches=settings.batch_norm_recalibration_batches,
            batch_size=settings.batch_size,
            device=device,
        )

    report(
        TrainingProgress(
            "saving", settings.iterations, settings.iterations, message="validating held-out cases"
        )
    )
    lesion_types = sorted({t for r in records if r.case_id in train_ids for t in r.lesion_types})
    model_dir, validation = _write_model(
        out / MODEL,
        run.network,
        config,
        (val_cases, [headers[i] for i in train_ids]),
        prepared,
        (train_ids, val_ids),
        run.rows,
        device,
        lesion_types,
        native,
        initial=run.initial,
    )
    best_dir = None
    if run.best and (out / BEST).is_file():
        import copy

        best_network = copy.deepcopy(run.network)
        best_network.load_state_dict(load_checkpoint(out / BEST)["model"])
        best_dir, _ = _write_model(
            out / MODEL_BEST, best_network, config, (val_cases, [headers[i] for i in train_ids]),
            prepared, (train_ids, val_ids),
            run.rows, device, lesion_types, native, selected=dict(run.best),
            initial=run.initial,
        )  # fmt: skip
    report(
        TrainingProgress(
            "done",
            settings.iterations,
            settings.iterations,
            elapsed_s=run.rows[-1]["elapsed_s"] if run.rows else 0.0,
        )
    )
    return dataclasses.replace(
        result, model_dir=model_dir, validation=validation, best_model_dir=best_dir
    )


def _log_validation(
    out: Path,
    run: _Optimisation,
    data: tuple[tuple[np.ndarray, np.ndarray], Sequence[Case]],
    config: SynthesisConfig,
    when: tuple[int, float],
    train: dict[str, float],
    writer: Any,
) -> dict[str, Any]:
    """Validate on the patches (and whole volumes, when given); log, plot and keep the best.

    ``when`` is the iteration and the elapsed seconds, ``train`` the training losses of the
    interval. Returns the new log row (also appended to ``run.rows``).
    """
    patches, volumes = data
    iteration, elapsed = when
    row = validation_row(
        run.network, patches, volumes, config, run.device, iteration, run.optimiser, elapsed
    )
    row.update(train)
    run.rows.append(row)
    run.best = keep_best(out / BEST, run.network, config, row, run.best)
    write_log(out / LOG, run.rows)
    if config.training.curve_png:
        plot_training_curve(out / CURVE, run.rows)
    if writer is not None:
        for key in ("train_loss", "validation_loss", "validation_mae_hu"):
            writer.add_scalar(key, row[key], iteration)
    return row


@dataclass
class _Optimisation:
    """Network, optimiser, schedule and random stream of one rank, fresh or from a checkpoint."""

    network: nn.Module
    trained: nn.Module  # the network, wrapped in DDP under torchrun
    optimiser: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    rng: np.random.Generator
    device: str
    start: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)
    elapsed_before: float = 0.0
    #: The model the weights started from (``training.init_weights``), for the card.
    initial: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        config: SynthesisConfig,
        in_channels: int,
        context: DistributedContext,
        device_kind: str,
        state: dict[str, Any] | None,
    ) -> _Optimisation:
        """Fresh weights (``training.seed``, or ``training.init_weights``), or the checkpoint
        ``state``; DDP when needed."""
        settings = config.training
        device = rank_device(device_kind, context)
        torch.manual_seed(settings.seed)
        network = build_network(config.network, in_channels)
        if context.enabled and device_kind == "cuda" and config.network.norm == "batch":
            network = nn.SyncBatchNorm.convert_sync_batchnorm(network)
        network = network.to(device)
        optimiser = torch.optim.Adam(
            network.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
        )
        schedule = (
            _cosine(settings.iterations) if settings.lr_schedule == "cosine" else (lambda _s: 1.0)
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, schedule)
        run = cls(
            network, network, optimiser, scheduler, np.random.default_rng(settings.seed), device
        )
        if state is not None:
            network.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            run.rng.bit_generator.state = state["numpy_rng"]
            torch.set_rng_state(state["torch_rng"])
            if device_kind == "cuda" and state.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(state["cuda_rng"], device)
            run.start = int(state["iteration"])
            run.rows = list(state["log"])
            run.elapsed_before = float(state["elapsed_s"])
            run.best = dict(state.get("best") or {})
            run.initial = dict(state.get("initial_weights") or {})
        elif settings.init_weights is not None:
            run.initial = load_initial_weights(network, config, in_channels)
        if context.enabled:
            from torch.nn.parallel import DistributedDataParallel

            run.trained = DistributedDataParallel(
                network, device_ids=[context.local_rank] if device_kind == "cuda" else None
            )
        return run

    def step(
        self,
        sampler: PatchSampler,
        samples: Sequence[int],
        iteration: int,
        config: SynthesisConfig,
        context: DistributedContext,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step on this rank's share of the batch; ``(loss, l1)`` of the share."""
        settings = config.training
        self.trained.train()
        if settings.patch_seeding == "per_sample":
            torch.manual_seed(step_torch_seed(settings.seed, iteration, context.rank))
            x_np, y_np = sampler.sample_from(
                [sample_seed(settings.seed, iteration, n) for n in samples]
            )
        else:
            x_np, y_np = sampler.sample(self.rng, settings.batch_size)
        x, y = torch.from_numpy(x_np).to(self.device), torch.from_numpy(y_np).to(self.device)
        with autocast(self.device, settings.mixed_precision):
            prediction = self.trained(x)
        loss, l1 = loss_terms(
            prediction.float(),
            y,
            config.loss,
            bone_target_threshold(config),
            config.normalisation.hu_scale,
        )
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        self.scheduler.step()
        return loss.detach(), l1.detach()

    def state(
        self,
        iteration: int,
        config: SynthesisConfig,
        context: DistributedContext,
        extra: dict[str, Any],
    ) -> dict[str, Any]:
        """The checkpoint dictionary after ``iteration`` steps (plus ``extra`` entries)."""
        cuda = self.device.startswith("cuda")
        return {
            "iteration": iteration,
            "model": self.network.state_dict(),
            "optimizer": self.optimiser.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "numpy_rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if cuda else None,
            "config": config.model_dump(mode="json"),
            "world_size": context.world_size,
            **extra,
        }


def _open_run(
    out: Path, config: SynthesisConfig, *, resume: bool, main: bool = True
) -> dict[str, Any] | None:
    """The checkpoint to resume from (``None`` for a new run), after checking the run folder.

    Only the main rank (``main``) checks for an existing run and creates the folder.
    """
    checkpoint_path = out / CHECKPOINT
    state: dict[str, Any] | None = None
    if resume:
        if not checkpoint_path.is_file():
            raise TrainingConfigError(
                "there is no checkpoint to resume from",
                path=checkpoint_path,
                fix="train without --resume, or point --output at the run to continue",
            )
        state = load_checkpoint(checkpoint_path)
        differences = config_differences(checkpoint_config(state), config)
        if differences:
            raise TrainingConfigError(
                "the configuration differs from the checkpoint's: " + "; ".join(differences),
                path=checkpoint_path,
                fix="resume with the run's own config.yaml (only training.iterations and the "
                "device may change)",
            )
    elif main and checkpoint_path.exists():
        raise TrainingConfigError(
            "this run folder already holds a training run",
            path=out,
            fix="pass --resume to continue it, or choose a new output folder",
        )
    if main:
        out.mkdir(parents=True, exist_ok=True)
    return state


def _tissue_labels(record: CaseRecord, case: Case) -> np.ndarray:
    """The case's tissue labels on its MRI grid (lesion insertion places lesions with them)."""
    from synthct.io import read_volume
    from synthct.resample import resample_to
    from synthct.volume import LabelMap

    if record.tissue_labels is None:
        raise TrainingConfigError(
            f"case {record.case_id!r} has no tissue_labels, which lesion insertion needs to "
            "place intradural lesions",
            path="manifest",
            fix="add a tissue_labels column (synthct phantom writes one) or disable "
            "lesion_insertion",
        )
    labels = read_volume(record.tissue_labels, kind="label")
    assert isinstance(labels, LabelMap)
    if not labels.same_geometry(case.mr):
        labels = resample_to(labels, case.mr)
    return np.asarray(labels.array)


def _load_cases(
    records: Sequence[CaseRecord],
    wanted: list[str],
    config: SynthesisConfig,
    report: ProgressCallback,
    train_ids: Sequence[str] = (),
) -> tuple[dict[str, Case], dict[str, PreparedCase], dict[str, tuple[float, float, float]]]:
    """Load and prepare the ``wanted`` cases; they must share one channel count.

    Each case is brought into ``plan.orientation`` (:func:`~synthct.synthesis.planning.
    reorient_case`) and, with ``plan.target_spacing_mm``, resampled to its sizes matched to the
    case's axes by rank, as inference does
    (:func:`~synthct.synthesis.inference_grid.spacing_by_rank`,
    :func:`~synthct.synthesis.planning.resample_case`): a sagittal slab keeps its thick axis.
    Training cases (``train_ids``) keep lesion insertion data when it is enabled. Returns the
    cases, the prepared cases and each case's native voxel size.
    """
    by_id = {r.case_id: r for r in records}
    cases: dict[str, Case] = {}
    prepared: dict[str, PreparedCase] = {}
    native: dict[str, tuple[float, float, float]] = {}
    spacing = config.plan.target_spacing_mm
    for n, case_id in enumerate(wanted):
        report(
            TrainingProgress(
                "loading", 0, config.training.iterations, message=f"{n + 1}/{len(wanted)} {case_id}"
            )
        )
        case = reorient_case(load_case(by_id[case_id]), config.plan.orientation)
        native[case_id] = case.mr.spacing_mm
        cases[case_id] = (
            case
            if spacing is None
            else resample_case(case, spacing_by_rank(spacing, case.mr.spacing_mm))
        )
        tissue = None
        if config.lesion_insertion.enabled and case_id in train_ids:
            tissue = _tissue_labels(by_id[case_id], cases[case_id])
        prepared[case_id] = prepare_case(
            cases[case_id],
            config.normalisation,
            config.patches,
            insertion=config.lesion_insertion if tissue is not None else None,
            tissue_labels=tissue,
        )
    n_echoes = {c.mr.n_echoes for c in cases.values()}
    if len(n_echoes) != 1:
        raise TrainingConfigError(
            f"the cases have different echo counts {sorted(n_echoes)}",
            path="manifest",
            fix="train on cases with the same number of echoes",
        )
    return cases, prepared, native


def _stored_cases(
    records: Sequence[CaseRecord],
    train_ids: list[str],
    val_ids: list[str],
    config: SynthesisConfig,
    report: ProgressCallback,
    store: Path,
    context: DistributedContext,
) -> tuple[
    dict[str, Case],
    dict[str, PreparedCase],
    dict[str, tuple[float, float, float]],
    dict[str, MRHeaderLike],
]:
    """The training cases through the prepared store; rank 0 also loads the held-out cases.

    Rank ``r`` prepares the training cases ``r, r + world, ...`` that the store does not hold
    yet (one at a time: a rank never holds more than one raw case), waits for the others, then
    every rank opens all training cases memory-mapped. Returns the held-out cases (rank 0),
    the prepared cases, the native voxel sizes and the training MRIs' headers.
    """
    by_id = {r.case_id: r for r in records}
    keys = {i: store_key(by_id[i], config) for i in train_ids}
    for n, case_id in enumerate(train_ids):
        if n % context.world_size != context.rank or read_case(store, case_id, keys[case_id]):
            continue
        one_case, one_prepared, one_native = _load_cases(records, [case_id], config, report)
        mr = one_case[case_id].mr
        header = MRHeader(mr.n_echoes, mr.protocol, mr.spacing_mm)
        write_case(store, one_prepared[case_id], header, one_native[case_id], keys[case_id])
    barrier(context)
    prepared: dict[str, PreparedCase] = {}
    native: dict[str, tuple[float, float, float]] = {}
    headers: dict[str, MRHeaderLike] = {}
    for case_id in train_ids:
        stored = read_case(store, case_id, keys[case_id])
        if stored is None:
            raise TrainingConfigError(
                f"training case {case_id!r} is missing from the prepared store {store} "
                "after every rank wrote its share",
                path=store,
                fix="give every rank the same run folder on a shared file system (or one "
                "machine), or delete the folder and start again",
            )
        prepared[case_id] = stored.prepared
        native[case_id] = stored.native_spacing_mm
        headers[case_id] = stored.header
    val_cases: dict[str, Case] = {}
    if context.is_main and val_ids:
        val_cases, val_prepared, val_native = _load_cases(records, val_ids, config, report)
        prepared |= val_prepared
        native |= val_native
    n_echoes = sorted({p.n_echoes for p in prepared.values()})
    if len(n_echoes) != 1:
        raise TrainingConfigError(
            f"the cases have different echo counts {n_echoes}",
            path="manifest",
            fix="train on cases with the same number of echoes",
        )
    return val_cases, prepared, native, headers


def loss_description(config: SynthesisConfig) -> str:
    """The training loss in words for the card, with the bone terms when they are on."""
    loss = config.loss
    text = f"{loss.l1_weight:g} x L1"
    if loss.bone_weight != 1.0:
        text += f" (x {loss.bone_weight:g} where the CT is bone)"
    text += f" + {loss.nll_weight:g} x {loss.nll} NLL"
    if loss.bone_dice_weight > 0:
        text += f" + {loss.bone_dice_weight:g} x soft bone Dice"
    return text


def _write_model(
    path: Path,
    network: torch.nn.Module,
    config: SynthesisConfig,
    volumes: tuple[list[Case], list[MRHeaderLike]],
    prepared: dict[str, PreparedCase],
    split: tuple[list[str], list[str]],
    rows: list[dict[str, Any]],
    device: str,
    lesion_types: Sequence[str],
    native_spacing: dict[str, tuple[float, float, float]],
    selected: dict[str, Any] | None = None,
    initial: dict[str, Any] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Validate the held-out cases on whole volumes, build the card, write the model folder.

    ``volumes`` holds the held-out cases and the training cases' MRIs (or their headers).
    ``selected`` is the best checkpoint's record (iteration, metric, value) when the weights
    are those of ``checkpoints/best.pt``; the card's training section names it, and
    ``initial`` the model the run started from (fine-tuning).
    """
    train_ids, val_ids = split
    val_cases, train_mrs = volumes
    validation: dict[str, Any] = {"cases": [], "note": "no held-out case"}
    if val_ids and config.training.final_validation:
        validation = validate_volumes(network, val_cases, config, device)
    network.to("cpu")
    domain = domain_from_volumes(
        train_mrs,
        config.card,
        n_training_cases=len(train_ids),
        n_validation_cases=len(val_ids),
        n_cases_with_lesions=sum(_has_lesions(prepared[i]) for i in train_ids),
        lesion_types=lesion_types,
        channel_names=config.normalisation.channels,
        planned_spacing_mm=config.plan.target_spacing_mm,
        orientation=config.plan.orientation,
        voxel_sizes_mm=[native_spacing[i] for i in train_ids],
        contrast=CONTRAST_AGNOSTIC if config.data.mr_source == "randomised" else "",
    )
    last = rows[-1] if rows else {}
    training_summary = {
        "iterations": config.training.iterations,
        "batch_size": config.training.batch_size,
        "patch_size": list(config.patches.size),
        "loss": loss_description(config),
        "final_train_loss": last.get("train_loss"),
        "final_validation_loss": last.get("validation_loss"),
        "final_validation_patch_mae_hu": last.get("validation_mae_hu"),
        "seed": config.training.seed,
        "device": device,
        "duration_s": last.get("elapsed_s"),
        "n_parameters": count_parameters(network),
        "training_case_ids": train_ids,
        "validation_case_ids": val_ids,
        "weights": {"checkpoint": "best", **selected} if selected else {"checkpoint": "last"},
    }
    if initial:
        training_summary["initial_weights"] = initial
    normalisation = {
        "config": config.normalisation.model_dump(mode="json"),
        "training_cases": {i: prepared[i].scaling.to_dict() for i in train_ids},
    }
    card = build_card(
        config=config,
        network=network,
        domain=domain,
        training=training_summary,
        validation=validation,
    )
    folder = save_model_folder(
        path, network=network, config=config, card=card, normalisation=normalisation
    )
    return folder, validation


def _has_lesions(case: PreparedCase) -> bool:
    return case.lesions is not None and bool(case.lesions.any())


def _tensorboard(out: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise TrainingConfigError(
            "training.tensorboard is on but TensorBoard is not installed",
            path="training.tensorboard",
            fix="pip install tensorboard, or set training.tensorboard: false (the CSV log "
            "is always written)",
        ) from exc
    return SummaryWriter(log_dir=str(out / "tensorboard"))
