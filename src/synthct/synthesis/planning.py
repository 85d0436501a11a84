"""Planning a training run from a fingerprint of its cases, as nnU-Net plans [1]_.

:func:`case_fingerprint` measures one case (voxel spacing, grid, per-channel intensity
statistics inside the MRI body mask, whether an echo-time protocol is known);
:func:`plan_training` turns the fingerprints of the training cases into a :class:`TrainingPlan`:

* **target spacing**: the median of each spacing rank (finest, middle, coarsest axis of each
  case, so sagittal and axial series of one voxel size agree); when the coarsest is more
  than :data:`ANISOTROPY_RATIO` times the finest, it takes the 10th percentile of the cases'
  coarsest spacings instead (never finer than the other axes), so thick-slice cases are not
  interpolated into many invented slices (nnU-Net's rule);
* **normalisation**: multi-echo magnitudes with a known echo-time protocol keep the robust
  per-echo percentile scaling (the echo ratios carry T2*, fat and water); any other input
  (a single T1w or T2w, Dixon water/fat without protocol) is z-scored per channel inside the
  body; the channels get names when the configuration declares none;
* **patch size**: the median grid at the target spacing, rounded to the network's size
  multiple and capped at :data:`MAX_PATCH_VOXELS_PER_AXIS`, then shrunk along its longest
  axis (in mm) until the estimated training activation memory
  (:func:`estimate_activation_bytes`) fits the budget.

:func:`resample_case` puts a case on the planned spacing (MRI and CT linear, labels nearest).

References
----------
.. [1] Isensee F et al. nnU-Net: a self-configuring method for deep learning-based biomedical
   image segmentation. Nature Methods 18, 203-211 (2021).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from synthct.synthesis.config import NetworkConfig, SynthesisConfig
from synthct.synthesis.errors import TrainingConfigError
from synthct.synthesis.inference_grid import spacing_by_rank
from synthct.synthesis.manifest import Case, CaseRecord

#: An axis whose spacing exceeds this multiple of the finest axis's is anisotropic.
ANISOTROPY_RATIO = 3.0
#: Largest planned patch edge, in voxels.
MAX_PATCH_VOXELS_PER_AXIS = 256
#: Float values kept per voxel and output channel of a level for the backward pass (inputs of
#: every convolution, normalisation and activation, decoder concatenations), per residual unit.
#: A rough upper estimate; ``benchmarks/training_step_throughput.py`` prints the measured peak.
VALUES_PER_VOXEL_CHANNEL = 12


@dataclass(frozen=True)
class CaseFingerprint:
    """What the planner needs to know about one case.

    Parameters
    ----------
    case_id : str
        Name from the manifest.
    spacing_mm : tuple of 3 float
        Voxel size along array axes 0, 1, 2 of the MRI grid.
    shape : tuple of 3 int
        MRI grid.
    n_channels : int
        MRI channels (echoes, contrasts).
    has_echo_times : bool
        Whether the MRI carries an echo-time protocol.
    channel_statistics : tuple of dict
        Per channel, inside the MRI body mask: ``mean``, ``sd``, ``p00_5``, ``p50``,
        ``p99_5``.
    """

    case_id: str
    spacing_mm: tuple[float, float, float]
    shape: tuple[int, int, int]
    n_channels: int
    has_echo_times: bool
    channel_statistics: tuple[dict[str, float], ...]


def case_fingerprint(case: Case, *, body_threshold_fraction: float = 0.2) -> CaseFingerprint:
    """Measure one loaded case (a row of a dataset fingerprint).

    A dataset fingerprint written by another tool can stand in for this function: the planner
    reads only the fields of :class:`CaseFingerprint`.
    """
    from synthct.synthesis.normalisation import body_mask_from_mri, check_mr_array

    any_count = ("channel",) * case.mr.n_echoes  # the fingerprint accepts any channel count
    data = check_mr_array(case.mr.array, source=case.mr.source, channels=any_count)
    body, _ = body_mask_from_mri(data, threshold_fraction=body_threshold_fraction)
    stats = []
    for channel in data:
        inside = channel[body].astype(np.float64)
        p = np.percentile(inside, [0.5, 50.0, 99.5])
        stats.append(
            {
                "mean": float(inside.mean()),
                "sd": float(inside.std()),
                "p00_5": float(p[0]),
                "p50": float(p[1]),
                "p99_5": float(p[2]),
            }
        )
    protocol = case.mr.protocol
    return CaseFingerprint(
        case_id=case.case_id,
        spacing_mm=case.mr.spacing_mm,
        shape=case.mr.spatial_shape,
        n_channels=case.mr.n_echoes,
        has_echo_times=protocol is not None and len(protocol.echo_times_ms) == case.mr.n_echoes,
        channel_statistics=tuple(stats),
    )


def plan_spacing(spacings_mm: Sequence[Sequence[float]]) -> tuple[float, float, float]:
    """Target spacing: the median of each spacing rank, the 10th percentile on an anisotropic
    coarse rank.

    Each case's spacings are sorted first (finest, middle, coarsest), so a cohort that mixes
    sagittal and axial acquisitions of one voxel size plans that voxel size; per-axis medians
    would average a thick axis with a thin one. The result is given to the axes by the rank of
    the per-axis medians; training and inference apply it by rank
    (:func:`synthct.synthesis.inference_grid.spacing_by_rank`).
    """
    values = np.asarray(spacings_mm, dtype=np.float64).reshape(-1, 3)
    by_rank = np.sort(values, axis=1)
    target = np.median(by_rank, axis=0)
    if target[2] > ANISOTROPY_RATIO * target[0]:
        # nnU-Net's rule: do not invent slices along a thick axis; never finer than the others
        target[2] = max(float(np.percentile(by_rank[:, 2], 10.0)), float(target[1]))
    return spacing_by_rank(target.tolist(), np.median(values, axis=0).tolist())


def estimate_activation_bytes(
    network: NetworkConfig,
    patch_size: Sequence[int],
    *,
    batch_size: int,
    bytes_per_value: int = 4,
) -> float:
    """Rough activation memory of one training step (forward values kept for backward).

    ``batch * sum over levels (width_l * voxels_l) * VALUES_PER_VOXEL_CHANNEL * units`` values,
    ``voxels_l`` the patch voxels at level ``l`` (divided by 8 per level).
    """
    voxels = float(np.prod(patch_size))
    units = network.residual_units if network.architecture == "residual_unet" else 1
    cap = network.max_channels if network.architecture == "residual_unet" else 10**9
    total = 0.0
    for level in range(network.levels):
        width = min(network.base_channels * 2**level, cap)
        total += width * voxels / 8**level
    return batch_size * total * VALUES_PER_VOXEL_CHANNEL * units * bytes_per_value


def plan_patch_size(
    median_shape: Sequence[float],
    spacing_mm: Sequence[float],
    network: NetworkConfig,
    *,
    batch_size: int,
    memory_budget_gb: float,
    bytes_per_value: int = 4,
) -> tuple[int, int, int]:
    """Largest patch (multiple of the network's size multiple) whose estimate fits the budget.

    Starts from ``median_shape`` (voxels at the target spacing) rounded up to the multiple and
    capped at :data:`MAX_PATCH_VOXELS_PER_AXIS`; while the activation estimate exceeds the
    budget, the axis with the largest extent in mm loses one multiple. No axis goes below two
    multiples (a bottleneck of 2 voxels), even when the budget is not met.
    """
    m = network.size_multiple
    smallest = 2 * m  # the bottleneck keeps 2 voxels per axis (instance norm needs > 1)
    cap = max(MAX_PATCH_VOXELS_PER_AXIS // m * m, smallest)
    patch = [min(max(smallest, int(np.ceil(float(n) / m)) * m), cap) for n in median_shape]
    budget = memory_budget_gb * 1024**3

    def fits() -> bool:
        estimate = estimate_activation_bytes(
            network, patch, batch_size=batch_size, bytes_per_value=bytes_per_value
        )
        return estimate <= budget

    while not fits():
        shrinkable = [a for a in range(3) if patch[a] > smallest]
        if not shrinkable:
            break
        axis = max(shrinkable, key=lambda a: patch[a] * float(spacing_mm[a]))
        patch[axis] -= m
    return (patch[0], patch[1], patch[2])


@dataclass(frozen=True)
class TrainingPlan:
    """A plan and the fingerprints it was made from (JSON via :meth:`to_json`)."""

    target_spacing_mm: tuple[float, float, float]
    patch_size: tuple[int, int, int]
    normalisation_method: str
    channels: tuple[str, ...]
    median_shape_at_target: tuple[float, float, float]
    estimated_activation_gb: float
    cases: tuple[CaseFingerprint, ...]

    def config_updates(self) -> dict[str, dict[str, Any]]:
        """The configuration sections the plan sets (for :meth:`SynthesisConfig.with_updates`)."""
        return {
            "plan": {"target_spacing_mm": self.target_spacing_mm},
            "patches": {"size": self.patch_size},
            "normalisation": {"method": self.normalisation_method, "channels": self.channels},
        }

    def to_json(self) -> str:
        """The plan with its fingerprints as JSON text."""
        return json.dumps(asdict(self), indent=2) + "\n"


def plan_training(fingerprints: Sequence[CaseFingerprint], config: SynthesisConfig) -> TrainingPlan:
    """Plan spacing, normalisation and patch size from the training cases' fingerprints.

    Raises
    ------
    ValueError
        When there is no fingerprint or the cases have different channel counts.
    """
    if not fingerprints:
        raise ValueError("planning needs at least one training case")
    counts = sorted({f.n_channels for f in fingerprints})
    if len(counts) != 1:
        raise ValueError(f"the training cases have different channel counts {counts}")
    n_channels = counts[0]
    spacing = plan_spacing([f.spacing_mm for f in fingerprints])
    extents = np.asarray([np.multiply(f.shape, f.spacing_mm) for f in fingerprints])
    median_shape = np.median(extents, axis=0) / np.asarray(spacing)
    bytes_per_value = 2 if config.training.mixed_precision == "bf16" else 4
    patch = plan_patch_size(
        median_shape,
        spacing,
        config.network,
        batch_size=config.training.batch_size,
        memory_budget_gb=config.plan.memory_budget_gb,
        bytes_per_value=bytes_per_value,
    )
    multi_echo = n_channels >= 2 and all(f.has_echo_times for f in fingerprints)
    method = config.normalisation.method if multi_echo else "zscore"
    channels = config.normalisation.channels
    if not channels:
        prefix = "echo" if multi_echo else "channel"
        channels = tuple(f"{prefix}{n + 1}" for n in range(n_channels))
    estimate = estimate_activation_bytes(
        config.network,
        patch,
        batch_size=config.training.batch_size,
        bytes_per_value=bytes_per_value,
    )
    return TrainingPlan(
        target_spacing_mm=spacing,
        patch_size=patch,
        normalisation_method=method,
        channels=tuple(channels),
        median_shape_at_target=(
            float(median_shape[0]),
            float(median_shape[1]),
            float(median_shape[2]),
        ),
        estimated_activation_gb=estimate / 1024**3,
        cases=tuple(fingerprints),
    )


def apply_plan(config: SynthesisConfig, plan: TrainingPlan) -> SynthesisConfig:
    """``config`` with the plan's spacing, patch size and normalisation.

    The inference window keeps its size when it is a multiple of the network's size multiple,
    and otherwise follows the training patch size.
    """
    updates = plan.config_updates()
    window = config.inference.patch_size
    if window is not None and any(s % config.network.size_multiple for s in window):
        updates["inference"] = {"patch_size": None}
    return config.with_updates(updates)


def reorient_case(case: Case, code: str | None) -> Case:
    """The case with its arrays permuted and flipped into orientation ``code`` (lossless).

    MRI, CT, lesion labels and CT coverage move together (:mod:`synthct.orientation`); a case
    already in that orientation, or ``code`` None, is returned unchanged.
    """
    if code is None:
        return case
    from synthct.orientation import reorientation

    plan = reorientation(case.mr.geometry, code)
    if plan.is_identity:
        return case
    lesions = None if case.lesion_labels is None else case.lesion_labels.reoriented(code)
    coverage = None if case.ct_coverage is None else plan.apply(case.ct_coverage)
    return Case(case.case_id, case.mr.reoriented(code), case.ct.reoriented(code), lesions, coverage)


def resample_case(case: Case, spacing_mm: Sequence[float]) -> Case:
    """The case on a grid of ``spacing_mm`` covering the same field of view as its MRI.

    The new grid keeps the MRI's orientation and outer edges (the first voxel's corner stays
    put); MRI and CT are resampled linearly, lesion labels and the CT coverage by nearest
    neighbour. A case already at the spacing (within 1e-3 mm) is returned unchanged.
    """
    from synthct.geometry import Geometry
    from synthct.resample import resample_to
    from synthct.volume import LabelMap, ScalarVolume

    old = case.mr.geometry
    new_spacing = np.asarray(spacing_mm, dtype=np.float64)
    old_spacing = np.asarray(old.spacing_mm)
    if np.allclose(old_spacing, new_spacing, atol=1e-3):
        return case
    extent = np.asarray(old.shape) * old_spacing
    shape = tuple(max(1, round(float(e))) for e in extent / new_spacing)
    direction = old.direction
    corner = old.affine[:3, 3] - direction @ (old_spacing / 2.0)
    origin = corner + direction @ (new_spacing / 2.0)
    grid = Geometry.from_parameters(shape, tuple(new_spacing), tuple(origin), direction)
    coverage = None
    if case.ct_coverage is not None:
        covered = ScalarVolume(case.ct_coverage.astype(np.float32), case.mr.affine)
        coverage = resample_to(covered, grid, fill_value=0.0).array > 0.5
    lesions = None
    if case.lesion_labels is not None:
        lesions = resample_to(case.lesion_labels, grid)
        assert isinstance(lesions, LabelMap)
    return Case(
        case.case_id,
        resample_to(case.mr, grid),
        resample_to(case.ct, grid),
        lesions,
        coverage,
    )


def plan_from_manifest(manifest: str | os.PathLike[str], config: SynthesisConfig) -> TrainingPlan:
    """Fingerprint the training cases of a manifest (its split, as training draws it) and plan.

    Cases are loaded one at a time, so memory holds one case. Validation and test cases are not
    looked at (the plan must not see held-out data).

    Raises
    ------
    TrainingConfigError
        When the training cases have different channel counts.
    """
    from synthct.synthesis.manifest import load_case, read_manifest

    records = read_manifest(manifest)
    train_ids, _ = split_cases(records, config)
    by_id = {r.case_id: r for r in records}
    threshold = config.normalisation.body_threshold_fraction
    fingerprints = [
        case_fingerprint(
            reorient_case(load_case(by_id[i]), config.plan.orientation),
            body_threshold_fraction=threshold,
        )
        for i in train_ids
    ]
    try:
        return plan_training(fingerprints, config)
    except ValueError as exc:
        raise TrainingConfigError(
            str(exc), path=manifest, fix="train on cases with the same MRI channels"
        ) from exc


def split_cases(
    records: Sequence[CaseRecord], config: SynthesisConfig
) -> tuple[list[str], list[str]]:
    """Training and validation case ids: the manifest's ``split`` column, or a seeded draw."""
    usable = [r for r in records if r.split != "test"]
    if any(r.split for r in usable):
        train = [r.case_id for r in usable if r.split in (None, "train")]
        validation = [r.case_id for r in usable if r.split == "validation"]
    else:
        ids = [r.case_id for r in usable]
        n_val = 0
        if len(ids) >= 2 and config.training.validation_fraction > 0:
            n_val = max(1, round(config.training.validation_fraction * len(ids)))
            n_val = min(n_val, len(ids) - 1)
        order = np.random.default_rng(config.training.seed).permutation(len(ids))
        validation = sorted(ids[i] for i in order[:n_val])
        train = [i for i in ids if i not in validation]
    if not train:
        raise TrainingConfigError(
            "no training case (every case is marked validation or test)",
            path="manifest",
            fix="mark at least one case as train, or leave the split column empty",
        )
    return train, validation
