"""The synthesis configuration: one pydantic model, read from and written to YAML.

Every setting of training and inference lives here with its default, so a model folder's
``config.yaml`` says exactly how the model was made. Unknown keys are errors (a typo must not
be silently ignored). Sections:

``network``        architecture, width, depth, dropout, normalisation layers
``normalisation``  MRI intensity scaling inside the body, HU target scaling
``patches``        patch size and the sampling weights of bone, lesions, body and background
``loss``           L1 on the mean plus a heteroscedastic negative log-likelihood
``training``       iterations, batch, optimiser, validation split, checkpoints, seed, device
``lesion_insertion`` lesion-aware training: library lesions inserted into MRI and CT patches
``inference``      sliding-window overlap, batch, blending, masking outside the body
``card``           what the model card declares beyond what the data tells (anatomy, pathologies)
``plan``           the target voxel spacing training resamples cases to (``synthct plan``)
``data``           where the training MRI comes from: the manifest's files, or domain
                   randomisation from tissue labels (:mod:`synthct.synthesis.randomised_source`)
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)

from synthct.errors import SynthctError
from synthct.settings import SettingsBase, read_yaml_mapping, validation_problems
from synthct.synthesis.errors import TrainingConfigError


class _Section(SettingsBase):
    """Frozen; unknown keys are refused (:class:`~synthct.settings.SettingsBase`)."""


class NetworkConfig(_Section):
    """The network: a 3D U-Net with 2 outputs (HU mean, log-variance) and dropout.

    ``architecture="unet"`` is synthct's own small U-Net (:mod:`synthct.synthesis.network`);
    ``"monai_basic_unet"`` is MONAI's ``BasicUNet`` with the same two outputs (patch sizes must
    then be multiples of 16); ``"residual_unet"`` is MONAI's residual ``UNet`` (``residual_units``
    residual units per level, strided convolutions, channels capped at ``max_channels``), the
    large network for real data (``configs/real_large.yaml``: tens of millions of parameters).
    ``levels`` counts resolution levels (``levels - 1`` down-samplings); channels double per
    level from ``base_channels``.
    """

    architecture: Literal["unet", "monai_basic_unet", "residual_unet"] = "unet"
    base_channels: Annotated[int, Field(ge=2, le=256)] = 12
    levels: Annotated[int, Field(ge=1, le=6)] = 3
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    #: Dropout also on the last decoder block, the output head's input. With few channels there,
    #: the L1-trained train-time median and the evaluation-mode mean differ: the shipped 8-channel
    #: model kept a +30 HU fat and -150 HU cortical bias that shrank without it. ``"unet"`` only.
    dropout_before_head: bool = True
    norm: Literal["batch", "instance", "none"] = "batch"
    #: Bounds of the predicted log-variance (scaled HU units), for numerical stability.
    log_variance_min: float = -14.0
    log_variance_max: float = 4.0
    #: Residual units per level of ``"residual_unet"`` (MONAI ``UNet(num_res_units=...)``).
    residual_units: Annotated[int, Field(ge=1, le=4)] = 2
    #: Channel cap of ``"residual_unet"`` (nnU-Net caps 3D networks at 320).
    max_channels: Annotated[int, Field(ge=2, le=1024)] = 320

    @model_validator(mode="after")
    def _check(self) -> NetworkConfig:
        if not self.dropout_before_head and self.architecture != "unet":
            raise ValueError(
                f"dropout_before_head: false needs architecture 'unet' ({self.architecture!r} "
                "places its own dropout); remove the key or use architecture: unet"
            )
        if self.architecture == "residual_unet" and self.levels < 2:
            raise ValueError("residual_unet needs at least 2 levels")
        return self

    @property
    def size_multiple(self) -> int:
        """Patch sizes must be multiples of this (2 ** number of down-samplings)."""
        return 16 if self.architecture == "monai_basic_unet" else 2 ** (self.levels - 1)


class NormalisationConfig(_Section):
    """Robust MRI intensity scaling inside the body, and the HU target scaling.

    Each echo is divided by its ``percentile`` (or median) inside the MRI body mask
    (``per_echo``), or all echoes by the first echo's value (``per_echo: false``, which keeps
    the echo ratios), then clipped to ``[0, clip_max]``. With ``method: zscore`` each channel
    has the mean inside the body subtracted and is divided by its SD there, then clipped to
    ``[-clip_max, clip_max]`` (nnU-Net's MR normalisation). The target is
    ``(HU - hu_offset) / hu_scale``.

    ``channels`` names the input channels in order (``[T2w]``, ``[T1w]``, ``[water, fat]``,
    ``[echo1, echo2]``...). Empty (the default) means multi-echo magnitudes, at least 2 of them;
    named channels allow any count from 1 and the input must have exactly that many. The names
    are declared in the model card's training domain.
    """

    method: Literal["percentile", "median", "zscore"] = "percentile"
    percentile: Annotated[float, Field(gt=50.0, le=100.0)] = 99.0
    per_echo: bool = True
    clip_max: Annotated[float, Field(gt=0.0)] = 4.0
    #: The body threshold is Otsu's on the echo sum, capped at this fraction of its 99th
    #: percentile (so a field of view with no air still keeps its dark tissue).
    body_threshold_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2
    hu_offset: float = 0.0
    hu_scale: Annotated[float, Field(gt=0.0)] = 1000.0
    channels: tuple[str, ...] = ()
    #: The percentile (or median) is taken on each echo smoothed by a Gaussian of this SD (mm),
    #: so that it reads the tissue's signal rather than its noise: the 99th percentile of a raw
    #: echo rises with the noise, and a 1.5 mm input (less noise per voxel) was scaled 0.7-0.9 %
    #: brighter than the same MRI at 1 mm. 0: the raw echo (every model made before it).
    reference_smoothing_mm: Annotated[float, Field(ge=0.0)] = 0.0

    @model_serializer(mode="wrap")
    def _omit_undeclared_channels(self, handler: SerializerFunctionWrapHandler) -> Any:
        # Undeclared channels are not written, so the normalisation of models made before
        # channels existed (normalisation.json of the shipped models) still compares equal.
        data = handler(self)
        if not self.channels and isinstance(data, dict):
            data.pop("channels", None)
        if not self.reference_smoothing_mm and isinstance(data, dict):
            data.pop("reference_smoothing_mm", None)
        return data

    @model_validator(mode="after")
    def _check(self) -> NormalisationConfig:
        names = [c.strip() for c in self.channels]
        if any(not n for n in names) or len(set(names)) != len(names):
            raise ValueError(
                f"channels must be distinct non-empty names, got {list(self.channels)}"
            )
        return self


class PatchConfig(_Section):
    """Training patches: size in voxels and the sampling weight of each voxel class.

    A patch centre is drawn with probability proportional to ``background_weight`` outside
    the body, ``body_weight`` inside, ``bone_weight`` where the CT is at or above
    ``bone_threshold_hu`` and ``lesion_weight`` inside a lesion label (the largest applies).
    """

    size: tuple[int, int, int] = (32, 32, 32)
    bone_threshold_hu: float = 150.0
    background_weight: Annotated[float, Field(ge=0.0)] = 0.1
    body_weight: Annotated[float, Field(ge=0.0)] = 1.0
    bone_weight: Annotated[float, Field(ge=0.0)] = 4.0
    lesion_weight: Annotated[float, Field(ge=0.0)] = 20.0
    #: Array axes along which patches are flipped at random (augmentation); empty: none.
    flip_axes: tuple[int, ...] = ()
    #: Each echo of a patch is multiplied by ``1 + U(-j, j)`` (intensity augmentation).
    intensity_jitter: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    #: Share of patches whose echoes get the interpolation texture of an MRI acquired at a
    #: coarser voxel size and resampled to the planned grid (sampled, linear, on a grid
    #: ``U(1, resample_factor_max)`` times coarser per axis at a random phase, then back;
    #: :func:`~synthct.synthesis.resolution_augmentation.resample_through`); 0: none. For the
    #: ``files`` MRI source; ``data.mr_source: randomised`` draws its own resolutions
    #: (``data.max_resolution_factor``) and rejects this setting.
    resample_probability: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    resample_factor_max: Annotated[float, Field(ge=1.0, le=4.0)] = 1.5

    @model_validator(mode="after")
    def _check(self) -> PatchConfig:
        if min(self.size) < 4:
            raise ValueError(f"patch size must be at least 4 voxels per axis, got {self.size}")
        if any(a not in (0, 1, 2) for a in self.flip_axes):
            raise ValueError(f"flip_axes must hold array axes 0, 1, 2, got {self.flip_axes}")
        return self


class LossConfig(_Section):
    """``l1_weight * L1(mean) + nll_weight * NLL(mean, log-variance)``, in scaled HU units.

    ``nll`` is a Laplace or Gaussian negative log-likelihood with the predicted log-variance
    (the heteroscedastic, aleatoric head); ``"none"`` trains the mean only. With
    ``detach_mean_in_nll`` the NLL term trains the variance head only, so the mean follows
    the L1 loss alone.
    """

    l1_weight: Annotated[float, Field(ge=0.0)] = 1.0
    nll: Literal["laplace", "gaussian", "none"] = "laplace"
    nll_weight: Annotated[float, Field(ge=0.0)] = 0.5
    detach_mean_in_nll: bool = True
    #: Weight of the L1 where the target CT is bone (at or above ``patches.bone_threshold_hu``;
    #: 1 elsewhere): bone is 1-5 % of a patch's voxels, and an unweighted L1 favours soft tissue.
    bone_weight: Annotated[float, Field(ge=1.0)] = 1.0
    #: Weight of a soft Dice loss between the predicted and the target bone (both at or above
    #: ``patches.bone_threshold_hu``; the prediction's through a sigmoid of width
    #: ``bone_dice_width_hu``). Dice does not depend on how rare bone is in a patch, so it keeps
    #: pulling bone voxels above the threshold where L1 settles on the soft-tissue median.
    bone_dice_weight: Annotated[float, Field(ge=0.0)] = 0.0
    bone_dice_width_hu: Annotated[float, Field(gt=0.0)] = 50.0


class TrainingSettings(_Section):
    """Optimisation, validation, checkpoints, randomness and device."""

    iterations: Annotated[int, Field(ge=1)] = 2000
    batch_size: Annotated[int, Field(ge=1)] = 2
    learning_rate: Annotated[float, Field(gt=0.0)] = 2e-3
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.0
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    #: Fraction of the cases held out for validation (at least one case when there are 2+).
    validation_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.2
    validation_interval: Annotated[int, Field(ge=1)] = 100
    #: Fixed patches per validation case used for the validation loss.
    validation_patches: Annotated[int, Field(ge=1)] = 4
    checkpoint_interval: Annotated[int, Field(ge=1)] = 100
    seed: Annotated[int, Field(ge=0)] = 0
    #: Start from the weights of this model folder (or shipped model name) instead of random
    #: ones: fine-tuning. Its network and normalisation must equal this configuration's
    #: (:mod:`synthct.synthesis.initial_weights`). A resumed run continues from its checkpoint.
    init_weights: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: Also log to TensorBoard (needs the ``tensorboard`` package).
    tensorboard: bool = False
    #: Run a full-volume sliding-window validation of the held-out cases at the end (figures
    #: for the model card).
    final_validation: bool = True
    #: Batches of training patches over which the batch-norm statistics are re-estimated at
    #: the end ("precise BN"; 0: keep the running averages, dominated by the last ~10 batches).
    batch_norm_recalibration_batches: Annotated[int, Field(ge=0)] = 0
    #: How patches are drawn. ``stream``: one random stream for the whole run (the shipped
    #: models). ``per_sample``: sample ``n`` of iteration ``t`` has its own seed
    #: ``(seed, t, n)``, so ``torchrun`` ranks split each global batch (rank ``r`` takes samples
    #: ``r, r + world, ...``) and follow the optimisation path of one process; needed for
    #: multi-process training.
    patch_seeding: Literal["stream", "per_sample"] = "stream"
    #: Mixed precision: ``auto`` is bfloat16 autocast on CUDA and float32 on CPU.
    mixed_precision: Literal["auto", "bf16", "none"] = "auto"
    #: Whole-volume validation (sliding window: body MAE, bone Dice at 250 HU) of the held-out
    #: cases every this many iterations; the best model is kept as ``checkpoints/best.pt``.
    #: 0: only at the end (``final_validation``).
    volume_validation_interval: Annotated[int, Field(ge=0)] = 0
    #: Seconds a rank waits for the others in a collective before the run fails (torchrun).
    distributed_timeout_s: Annotated[int, Field(ge=10)] = 1800
    #: Under torchrun, share the prepared training cases through memory-mapped files in the
    #: run folder (``prepared/``; one copy per machine); off: every rank holds its own copy
    #: in memory. Runs with lesion insertion always keep their cases in memory.
    shared_cases: bool = True
    #: Write ``training_curve.png`` (matplotlib) beside the CSV log at every validation.
    curve_png: bool = True


class LesionInsertionConfig(_Section):
    """Lesion-aware training: lesions inserted consistently into MRI and CT patches.

    With probability ``probability`` a training patch is centred on a random voxel of the
    ``placement_tissues`` (intradural: CSF, spinal cord; from the case's ``tissue_labels``) and
    a library lesion of one of ``types`` is inserted there (see
    :mod:`synthct.synthesis.lesion_insertion`). Diameters are drawn uniformly in their ranges
    (mm; axial along L, thickness along P, sagittal along S), the mean HU of calcifying types
    uniformly in ``mean_hu`` (clipped to what the type can reach), the calcification pattern
    from ``patterns``.

    With ``sham`` the placement is drawn in the same way but nothing is inserted: the
    control arm of an ablation (the same canal-centred patches, no lesion), so that a model
    trained with and one without lesions differ in the lesions alone. ``sham_fraction`` makes
    that share of the canal-centred patches sham ones: without it every close view of the canal
    holds a lesion, a prior that a canal is calcified.
    """

    enabled: bool = False
    sham: bool = False
    probability: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    sham_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    types: tuple[str, ...] = ("meningioma", "schwannoma")
    mean_hu: tuple[float, float] = (40.0, 1000.0)
    axial_diameter_mm: tuple[float, float] = (5.0, 14.0)
    thickness_mm: tuple[float, float] = (4.0, 9.0)
    sagittal_diameter_mm: tuple[float, float] = (6.0, 20.0)
    patterns: tuple[Literal["dense", "partial", "rim"], ...] = ("dense", "partial", "rim")
    placement_tissues: tuple[Literal["csf", "spinal_cord"], ...] = ("csf", "spinal_cord")
    #: Sub-voxels per voxel edge for the lesion's coverage (partial volume).
    supersample: Annotated[int, Field(ge=1, le=4)] = 2
    #: CT noise added where the lesion replaces tissue, scaled by its coverage.
    ct_noise_sd_hu: Annotated[float, Field(ge=0.0)] = 12.0

    @model_validator(mode="after")
    def _check(self) -> LesionInsertionConfig:
        from synthct.phantom.lesions import LESION_TYPES

        unknown = [t for t in self.types if t not in LESION_TYPES]
        if unknown or not self.types:
            raise ValueError(
                f"unknown lesion type(s) {unknown or list(self.types)}; allowed: "
                f"{', '.join(LESION_TYPES)}"
            )
        for name in ("mean_hu", "axial_diameter_mm", "thickness_mm", "sagittal_diameter_mm"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name} must be (low, high) with low <= high, got {(lo, hi)}")
        for name in ("axial_diameter_mm", "thickness_mm", "sagittal_diameter_mm"):
            lo, hi = getattr(self, name)
            if lo < 0.5 or hi > 60.0:
                raise ValueError(f"{name} must lie in 0.5..60 mm, got {(lo, hi)}")
        if not self.patterns or not self.placement_tissues:
            raise ValueError("patterns and placement_tissues must not be empty")
        return self


class InferenceConfig(_Section):
    """Sliding-window inference defaults (the CLI can override them)."""

    #: Window size in voxels (any multiple of the network's size multiple: the network is
    #: fully convolutional); ``None`` uses the training patch size. Larger windows waste less
    #: work on overlaps: 64 x 64 x 32 with overlap 0.25 evaluates ~2.1 voxels per voxel of a
    #: 256 x 256 x 96 volume, 32^3 with overlap 0.5 ~5.
    patch_size: tuple[int, int, int] | None = (64, 64, 32)
    overlap: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.25
    batch_size: Annotated[int, Field(ge=1)] = 2
    #: Standard deviation of the Gaussian blending weights as a fraction of the window size.
    sigma_scale: Annotated[float, Field(gt=0.0)] = 0.125
    #: Set voxels outside the MRI body mask to ``air_hu``.
    mask_outside_body: bool = True
    air_hu: float = -1000.0
    #: Forward passes with dropout on for the epistemic (MC-dropout) SD.
    mc_passes: Annotated[int, Field(ge=2)] = 10


class CardConfig(_Section):
    """What the model card declares that the training data cannot tell by itself."""

    name: str = "synthct-model"
    description: str = ""
    anatomy: tuple[str, ...] = ("spine",)
    #: Pathologies present in the training cases, e.g. ``("none",)`` or
    #: ``("calcified meningioma",)``.
    pathologies: tuple[str, ...] = ("none",)
    #: Lesion types inserted during training (lesion-aware training); empty when none.
    lesion_types: tuple[str, ...] = ()
    intended_use: str = "research only; not for clinical use"


class PlanConfig(_Section):
    """The plan made from the training cases (:mod:`synthct.synthesis.planning`).

    ``target_spacing_mm`` holds the voxel sizes every case is resampled to before training
    (MRI and CT linear, labels nearest), given to a case's axes by rank as at inference (the
    smallest to its finest axis: a sagittal slab keeps its thick axis); ``None`` trains on each
    case's native grid. ``synthct plan`` fills it (median spacing of the training cases, the
    10th percentile on an anisotropic axis) together with the patch size and normalisation.
    ``memory_budget_gb`` is the activation memory the planned patch size is fitted to, for the
    whole ``training.batch_size`` in one process (with N torchrun ranks each holds 1/N of it),
    in float32 unless ``training.mixed_precision`` is ``bf16``.

    ``orientation`` is the array orientation (:mod:`synthct.orientation`, e.g. ``"LPS"``) every
    case is brought into before training, by permuting and flipping axes (lossless); the model
    card records it and inference brings every MRI into it and the sCT back, so an axial, a
    sagittal and a RAS-stored MRI show the network the same layout. ``None`` keeps each case's
    own array layout (models trained before this setting existed). ``patches.flip_axes``
    refer to the axes after reorientation.
    """

    target_spacing_mm: tuple[float, float, float] | None = None
    memory_budget_gb: Annotated[float, Field(gt=0.0)] = 8.0
    orientation: str | None = "LPS"

    @model_validator(mode="after")
    def _check(self) -> PlanConfig:
        if self.target_spacing_mm is not None and min(self.target_spacing_mm) <= 0:
            raise ValueError(f"target_spacing_mm must be positive, got {self.target_spacing_mm}")
        if self.orientation is not None:
            from synthct.orientation import parse_orientation_code

            try:
                code = parse_orientation_code(self.orientation)
            except SynthctError as exc:
                raise ValueError(
                    f"{exc.problem}: give e.g. LPS (the default), RAS or PSL, or null to keep "
                    "each case's own layout"
                ) from exc
            object.__setattr__(self, "orientation", code)
        return self


class DataConfig(_Section):
    """Where the training MRI comes from.

    ``mr_source: files`` reads the MRI of each case from the manifest. ``randomised`` draws a
    new random MR contrast for every training patch from the case's ``tissue_labels``
    (domain randomisation, :mod:`synthct.phantom.domain_randomisation`; the target is the case's
    real CT) after a random spatial augmentation of a ``context_size`` crop around the patch
    (rotation up to ``rotation_deg`` about each axis, isotropic scaling in ``scaling_range``,
    a smooth elastic displacement up to ``elastic_mm``, the ``patches.flip_axes`` flips).
    The channel count is that of ``normalisation.channels`` (at least one name needed). The
    remaining keys are the ranges of :class:`~synthct.phantom.domain_randomisation.
    ContrastRandomisation`; ``marrow_from_fat`` ties the marrow bins to red marrow and fat,
    ``p_physics`` is the share of channels drawn from a random gradient-echo protocol whose
    family the ``physics_*`` ranges give (:class:`~synthct.phantom.physics_contrast.
    GradientEchoRanges`: field strengths in T, TR and TE in ms, flip angle in degrees).
    """

    mr_source: Literal["files", "randomised"] = "files"
    context_size: tuple[int, int, int] = (48, 48, 48)
    rotation_deg: Annotated[float, Field(ge=0.0, le=45.0)] = 10.0
    scaling_range: tuple[float, float] = (0.9, 1.1)
    elastic_mm: Annotated[float, Field(ge=0.0)] = 3.0
    mean_range: tuple[float, float] = (0.0, 1.0)
    sd_max: Annotated[float, Field(ge=0.0)] = 0.1
    dark_mean_max: Annotated[float, Field(ge=0.0)] = 0.12
    p_dark: Annotated[float, Field(ge=0.0, le=1.0)] = 0.75
    p_merge_dark: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    background_mean_max: Annotated[float, Field(ge=0.0)] = 0.05
    bias_sd_max: Annotated[float, Field(ge=0.0)] = 0.4
    bias_grid: Annotated[int, Field(ge=2)] = 4
    max_resolution_factor: Annotated[float, Field(ge=1.0)] = 3.0
    noise_sd_max: Annotated[float, Field(ge=0.0)] = 0.04
    gamma_sd: Annotated[float, Field(ge=0.0)] = 0.4
    marrow_from_fat: bool = False
    p_physics: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    physics_fields_t: tuple[float, ...] = (1.5, 3.0)
    physics_repetition_time_ms: tuple[float, float] = (4.0, 800.0)
    physics_echo_time_ms: tuple[float, float] = (1.0, 20.0)
    physics_flip_angle_deg: tuple[float, float] = (5.0, 80.0)

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        lo, hi = self.scaling_range
        if not 0.5 <= lo <= hi <= 2.0:
            raise ValueError(f"scaling_range must be (low, high) in 0.5..2, got {(lo, hi)}")
        if not 0.0 <= self.mean_range[0] <= self.mean_range[1]:
            raise ValueError(f"mean_range must be (low, high) >= 0, got {self.mean_range}")
        if min(self.context_size) < 4:
            raise ValueError(f"context_size must be at least 4 voxels, got {self.context_size}")
        return self


class SynthesisConfig(_Section):
    """Everything that defines how a synthesis model is trained and run."""

    network: NetworkConfig = NetworkConfig()
    normalisation: NormalisationConfig = NormalisationConfig()
    patches: PatchConfig = PatchConfig()
    loss: LossConfig = LossConfig()
    training: TrainingSettings = TrainingSettings()
    lesion_insertion: LesionInsertionConfig = LesionInsertionConfig()
    inference: InferenceConfig = InferenceConfig()
    card: CardConfig = CardConfig()
    plan: PlanConfig = PlanConfig()
    data: DataConfig = DataConfig()

    @model_serializer(mode="wrap")
    def _omit_default_data(self, handler: SerializerFunctionWrapHandler) -> Any:
        # A model trained on the manifest's files does not write the data section, so the
        # configurations of models made before it existed still compare equal.
        data = handler(self)
        if self.data == DataConfig() and isinstance(data, dict):
            data.pop("data", None)
        return data

    @model_validator(mode="after")
    def _check_sizes(self) -> SynthesisConfig:
        m = self.network.size_multiple
        sizes = {"patches.size": self.patches.size}
        if self.inference.patch_size is not None:
            sizes["inference.patch_size"] = self.inference.patch_size
        if self.data.mr_source == "randomised":
            if not self.normalisation.channels:
                raise ValueError(
                    "data.mr_source: randomised needs named channels (normalisation.channels, "
                    "e.g. [any_contrast])"
                )
            if self.lesion_insertion.enabled:
                raise ValueError(
                    "data.mr_source: randomised does not insert lesions (set "
                    "lesion_insertion.enabled: false)"
                )
            if self.patches.resample_probability > 0:
                raise ValueError(
                    "data.mr_source: randomised draws its own resolutions "
                    "(data.max_resolution_factor); set patches.resample_probability: 0"
                )
            if any(c < p for c, p in zip(self.data.context_size, self.patches.size, strict=True)):
                raise ValueError(
                    f"data.context_size {tuple(self.data.context_size)} must be at least the "
                    f"patch size {tuple(self.patches.size)} on every axis"
                )
        for name, size in sizes.items():
            if any(s % m for s in size):
                raise ValueError(
                    f"{name} {tuple(size)} must be a multiple of {m} on every axis for a "
                    f"{self.network.architecture} with {self.network.levels} levels"
                )
        return self

    @property
    def inference_patch_size(self) -> tuple[int, int, int]:
        """The window size of sliding-window inference."""
        return self.inference.patch_size or self.patches.size

    def with_updates(self, updates: dict[str, dict[str, Any]]) -> SynthesisConfig:
        """A validated copy with some settings replaced, e.g. ``{"training": {"seed": 3}}``."""
        data = self.model_dump(mode="python")
        for section, values in updates.items():
            if section not in SynthesisConfig.model_fields:
                raise TrainingConfigError(f"unknown configuration section {section!r}")
            data[section] = {**data.get(section, {}), **values}
        return config_from_dict(data, where="configuration update")


def config_from_dict(data: dict[str, Any], *, where: str = "configuration") -> SynthesisConfig:
    """Validate a plain dictionary (from YAML or JSON) into a :class:`SynthesisConfig`."""
    try:
        return SynthesisConfig.model_validate(data)
    except ValidationError as exc:
        raise TrainingConfigError(
            f"invalid synthesis configuration: {validation_problems(exc)}",
            path=where,
            fix="correct these settings (see synthct.synthesis.config for every key and its "
            "default, or configs/ for examples)",
        ) from None


def load_config(path: str | os.PathLike[str]) -> SynthesisConfig:
    """Read a YAML configuration file; missing keys take their defaults."""
    data = read_yaml_mapping(path, what="configuration", error=TrainingConfigError)
    return config_from_dict(data, where=str(path))


def config_to_yaml(config: SynthesisConfig) -> str:
    """The full configuration (defaults included) as YAML text."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
