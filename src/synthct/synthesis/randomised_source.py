"""Domain-randomised training data: CT plus tissue labels in, a new MR contrast per patch.

With ``data.mr_source: randomised`` (:class:`~synthct.synthesis.config.DataConfig`) training
reads each case's real CT and its tissue label map (``ct`` and ``tissue_labels`` of the
manifest; an MRI is not needed) and never sees a real MR contrast. Every training patch is
drawn in four steps (SynthSR's recipe, Iglesias et al., Science Advances 9:eadd3607, 2023):

1. a patch centre drawn towards bone, as for file-based training
   (:func:`~synthct.synthesis.patches.sampling_weights`);
2. a ``data.context_size`` crop around it, spatially augmented: random rotation, isotropic
   scaling and a smooth elastic displacement, applied to labels (nearest) and CT (linear)
   in one resampling;
3. a random MR contrast of the crop's labels
   (:func:`~synthct.phantom.domain_randomisation.randomised_mr`), scaled as an input MRI is at
   inference (:func:`~synthct.synthesis.normalisation.fit_scaling` over the body of the crop,
   the context of the patch; the body is every label but the outside air, where inference
   finds it from the MRI);
4. the central ``patches.size`` window, randomly flipped; the target is the CT's HU there.

Validation patches and the model card's domain use one fixed, seeded random contrast per case
(:func:`rendered_case`), so the validation loss of a run is comparable over iterations.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from scipy.spatial.transform import Rotation

from synthct.geometry import Geometry
from synthct.phantom.domain_randomisation import (
    BACKGROUND_LABEL,
    ContrastRandomisation,
    label_background,
    randomised_mr,
    resize_linear,
)
from synthct.phantom.physics_contrast import GradientEchoRanges
from synthct.synthesis.config import DataConfig, SynthesisConfig
from synthct.synthesis.errors import SynthesisInputError
from synthct.synthesis.manifest import SPLIT_ALIASES, SPLITS, Case, CaseRecord
from synthct.synthesis.normalisation import apply_scaling, fit_scaling, hu_to_target
from synthct.synthesis.patches import PAD_HU, PatchSampler, PreparedCase, prepare_case
from synthct.volume import CTVolume, LabelMap, MultiEchoMR

__all__ = [
    "LabelledCase",
    "RandomisedPatchSampler",
    "contrast_settings",
    "load_labelled_case",
    "randomised_training_data",
    "read_label_manifest",
    "rendered_case",
    "write_labelled_cohort",
]

#: Points of the coarse elastic displacement grid per axis.
_ELASTIC_GRID = 4
#: Body voxels a context crop needs for its intensities to be scaled.
_MIN_BODY_VOXELS = 64


@dataclass(frozen=True)
class LabelledCase:
    """A case for domain-randomised training: tissue labels and CT on one grid.

    ``tissue`` holds :class:`~synthct.imaging.labels.Tissue` values with the air outside the
    body relabelled :data:`~synthct.phantom.domain_randomisation.BACKGROUND_LABEL`.
    """

    case_id: str
    tissue: NDArray[np.uint8]
    ct_hu: NDArray[np.float32]
    geometry: Geometry


def contrast_settings(data: DataConfig) -> ContrastRandomisation:
    """The contrast ranges of a ``data`` configuration section."""
    return ContrastRandomisation(
        mean_range=data.mean_range,
        sd_max=data.sd_max,
        dark_mean_max=data.dark_mean_max,
        p_dark=data.p_dark,
        p_merge_dark=data.p_merge_dark,
        background_mean_max=data.background_mean_max,
        bias_sd_max=data.bias_sd_max,
        bias_grid=data.bias_grid,
        max_resolution_factor=data.max_resolution_factor,
        noise_sd_max=data.noise_sd_max,
        gamma_sd=data.gamma_sd,
        marrow_from_fat=data.marrow_from_fat,
        p_physics=data.p_physics,
        gradient_echo=GradientEchoRanges(
            fields_t=data.physics_fields_t,
            repetition_time_ms=data.physics_repetition_time_ms,
            echo_time_ms=data.physics_echo_time_ms,
            flip_angle_deg=data.physics_flip_angle_deg,
        ),
    )


def read_label_manifest(path: str | os.PathLike[str]) -> list[CaseRecord]:
    """The cases of a manifest for domain-randomised training: ``ct`` and ``tissue_labels``.

    An ``mr`` column is allowed and ignored.

    Raises
    ------
    SynthesisInputError
        A case without CT or tissue labels, a missing file or an unknown split.
    """
    from synthct.manifest import read_manifest

    manifest = read_manifest(path)
    source = manifest.source or Path(path)
    records = []
    for case in manifest:
        ct, tissue = case.path("ct"), case.path("tissue_labels")
        for role, p in (("ct", ct), ("tissue_labels", tissue)):
            if p is None or not p.exists():
                raise SynthesisInputError(
                    f"case {case.case_id!r}: domain-randomised training needs its {role} file"
                    + ("" if p is None else f" ({p} does not exist)"),
                    path=source,
                    fix=f"fill in the {role} column (synthct phantom-from-ct writes both), or "
                    "train with data.mr_source: files",
                )
        split = case.split
        split = SPLIT_ALIASES.get(split, split) if split is not None else None
        if split is not None and split not in SPLITS:
            raise SynthesisInputError(
                f"case {case.case_id!r} has split {split!r}",
                path=source,
                fix=f"use one of {', '.join(SPLITS)} or leave it empty",
            )
        assert ct is not None and tissue is not None
        records.append(CaseRecord(case.case_id, ct, (), tissue_labels=tissue, split=split))
    return records


def write_labelled_cohort(
    cases: Sequence[tuple[str, CTVolume, LabelMap | None, str | None]],
    out_dir: str | os.PathLike[str],
) -> Path:
    """Write CTs and their tissue label maps as a cohort for domain-randomised training.

    Parameters
    ----------
    cases : sequence of (case_id, CT, anatomical labels or None, split or None)
        Real CTs; the tissue map comes from
        :func:`~synthct.phantom.ct_derived.tissue_map_from_ct` (HU classes refined by the
        labels, e.g. TotalSegmentator's).
    out_dir : path
        Folder to create; it gets ``<case_id>/ct.nii.gz``, ``<case_id>/tissue_labels.nii.gz``
        and ``manifest.csv``.

    Returns
    -------
    Path
        The manifest.
    """
    from synthct.case import Case as OneCase
    from synthct.io import write_volume
    from synthct.manifest import write_manifest
    from synthct.phantom.ct_derived import tissue_map_from_ct

    out = Path(out_dir)
    rows = []
    for case_id, ct, labels, split in cases:
        folder = out / case_id
        folder.mkdir(parents=True, exist_ok=True)
        ct_path = write_volume(ct, folder / "ct.nii.gz")
        tissue_path = write_volume(tissue_map_from_ct(ct, labels), folder / "tissue_labels.nii.gz")
        meta = {"split": split} if split else {}
        rows.append(OneCase(case_id, {"ct": ct_path, "tissue_labels": tissue_path}, meta))
    return write_manifest(rows, out / "manifest.csv")


def _grid_at(geometry: Geometry, spacing_mm: Sequence[float]) -> Geometry:
    """A grid of ``spacing_mm`` over the same field of view (outer corner kept)."""
    old = np.asarray(geometry.spacing_mm)
    new = np.asarray(spacing_mm, dtype=np.float64)
    shape = tuple(max(1, round(float(e))) for e in np.asarray(geometry.shape) * old / new)
    corner = geometry.affine[:3, 3] - geometry.direction @ (old / 2.0)
    origin = corner + geometry.direction @ (new / 2.0)
    return Geometry.from_parameters(shape, tuple(new), tuple(origin), geometry.direction)


def load_labelled_case(
    record: CaseRecord,
    spacing_mm: Sequence[float] | None = None,
    orientation: str | None = None,
) -> LabelledCase:
    """Read a case's CT and tissue labels onto the CT grid (at the sizes ``spacing_mm`` when
    given, matched to the CT's axes by rank as training and inference match them).

    With ``orientation`` the CT's grid is first brought into it (``plan.orientation``,
    lossless: :mod:`synthct.orientation`). The CT outside the body (the labels' outside air)
    becomes air (``PAD_HU``).
    """
    from synthct.io import read_volume
    from synthct.resample import resample_to
    from synthct.synthesis.inference_grid import spacing_by_rank

    assert record.tissue_labels is not None
    ct = read_volume(record.ct, kind="ct")
    labels = read_volume(record.tissue_labels, kind="label")
    assert isinstance(ct, CTVolume) and isinstance(labels, LabelMap)
    if orientation is not None:
        ct = ct.reoriented(orientation)
    grid = (
        ct.geometry
        if spacing_mm is None
        else _grid_at(ct.geometry, spacing_by_rank(spacing_mm, ct.spacing_mm))
    )
    if not ct.geometry.is_close(grid):
        ct = resample_to(ct, grid)
    if not labels.geometry.is_close(grid):
        labels = resample_to(labels, grid)
    tissue = label_background(np.asarray(labels.array))
    hu = np.array(ct.array, dtype=np.float32)
    # Outside the body the target is air: a scanner couch (150-500 HU under the patient on CTs
    # that keep it) would otherwise teach the network dark background = bone, and the
    # bone-weighted patch sampling would centre patches on it.
    hu[tissue == BACKGROUND_LABEL] = PAD_HU
    return LabelledCase(record.case_id, tissue, hu, grid)


def rendered_case(case: LabelledCase, config: SynthesisConfig, seed: int) -> Case:
    """The case with one fixed random contrast (seeded) as its MRI, for validation."""
    mr = randomised_mr(
        case.tissue,
        case.geometry,
        np.random.default_rng(seed),
        len(config.normalisation.channels),
        settings=contrast_settings(config.data),
    )
    return Case(
        case.case_id,
        MultiEchoMR(mr, case.geometry.affine, source=f"{case.case_id} (random contrast)"),
        CTVolume(case.ct_hu, case.geometry.affine),
    )


def randomised_training_data(
    records: Sequence[CaseRecord],
    wanted: Sequence[str],
    train_ids: Sequence[str],
    config: SynthesisConfig,
    on_case: Callable[[int, int, str], None] | None = None,
) -> tuple[
    dict[str, Case], dict[str, PreparedCase], dict[str, tuple[float, float, float]], PatchSampler
]:
    """Load the ``wanted`` cases and build the sampler of randomised training patches.

    Returns the cases with their fixed validation contrast, the prepared cases, each case's
    native voxel size and a :class:`RandomisedPatchSampler` over ``train_ids``. ``on_case``
    is called with ``(n, total, case_id)`` before each case is loaded.
    """
    by_id = {r.case_id: r for r in records}
    spacing = config.plan.target_spacing_mm
    cases: dict[str, Case] = {}
    prepared: dict[str, PreparedCase] = {}
    native: dict[str, tuple[float, float, float]] = {}
    labelled: dict[str, LabelledCase] = {}
    for n, case_id in enumerate(wanted):
        if on_case is not None:
            on_case(n + 1, len(wanted), case_id)
        labelled[case_id] = load_labelled_case(by_id[case_id], spacing, config.plan.orientation)
        native[case_id] = _native_spacing(by_id[case_id])
        cases[case_id] = rendered_case(labelled[case_id], config, config.training.seed + 7919 + n)
        prepared[case_id] = prepare_case(cases[case_id], config.normalisation, config.patches)
    sampler = RandomisedPatchSampler(
        [prepared[i] for i in train_ids], [labelled[i] for i in train_ids], config
    )
    return cases, prepared, native, sampler


def _native_spacing(record: CaseRecord) -> tuple[float, float, float]:
    from synthct.io import read_volume

    return read_volume(record.ct, kind="ct").spacing_mm


class RandomisedPatchSampler(PatchSampler):
    """Training patches with a new random MR contrast each (steps in the module docstring).

    Parameters
    ----------
    cases : sequence of PreparedCase
        The cases with their fixed contrast: patch-centre weights and validation patches.
    sources : sequence of LabelledCase
        The same cases' labels and CT, in the same order.
    config : SynthesisConfig
        Patches, normalisation and the ``data`` section.
    """

    def __init__(
        self,
        cases: Sequence[PreparedCase],
        sources: Sequence[LabelledCase],
        config: SynthesisConfig,
    ) -> None:
        super().__init__(cases, config.patches, config.normalisation)
        if len(sources) != len(self.cases):
            raise ValueError("one labelled source per prepared case is needed")
        self.sources = list(sources)
        self.data = config.data
        self.contrast = contrast_settings(config.data)
        self.n_channels = len(config.normalisation.channels)

    def _one(self, rng: np.random.Generator) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        n = int(rng.integers(len(self.cases)))
        x, y = self.randomised_patch(n, self.centre(self.cases[n], rng), rng)
        for axis in self.config.flip_axes:
            if rng.random() < 0.5:
                x = np.flip(x, axis=axis + 1)
                y = np.flip(y, axis=axis + 1)
        return np.ascontiguousarray(x), np.ascontiguousarray(y)

    def randomised_patch(
        self, case_index: int, centre: Sequence[int], rng: np.random.Generator
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Input ``[channel, *size]`` (a new random contrast) and target ``[1, *size]`` around
        ``centre`` of case ``case_index``, augmented spatially but not flipped."""
        source = self.sources[case_index]
        tissue, hu = warped_context(source, centre, self.data, rng)
        context = Geometry.from_parameters(tissue.shape, source.geometry.spacing_mm)
        mr = randomised_mr(tissue, context, rng, self.n_channels, settings=self.contrast)
        x = self._normalised(mr, tissue != BACKGROUND_LABEL, context.spacing_mm)
        y = hu_to_target(hu, self.normalisation)[np.newaxis]
        # The crop's centre voxel (n // 2) becomes the patch's (size // 2), as in patch_start.
        window = tuple(
            slice(c // 2 - s // 2, c // 2 - s // 2 + s)
            for c, s in zip(tissue.shape, self.config.size, strict=True)
        )
        return x[(slice(None), *window)], y[(slice(None), *window)]

    def _normalised(
        self,
        mr: NDArray[np.float32],
        body: NDArray[np.bool_],
        spacing_mm: Sequence[float],
    ) -> NDArray[np.float32]:
        """Scaled as at inference, inside the body the labels give (what the MRI mask finds)."""
        if body.sum() < _MIN_BODY_VOXELS:  # a crop of background alone: nothing to scale by
            return np.zeros_like(mr)
        try:
            scaling = fit_scaling(
                mr, body, self.normalisation, threshold=0.0, spacing_mm=spacing_mm
            )
        except SynthesisInputError:  # a channel without signal in the body
            return np.zeros_like(mr)
        return apply_scaling(mr, scaling, self.normalisation)


def warped_context(
    case: LabelledCase,
    centre: Sequence[int],
    data: DataConfig,
    rng: np.random.Generator,
) -> tuple[NDArray[np.uint8], NDArray[np.float32]]:
    """Labels and CT (HU) of a randomly rotated, scaled and deformed crop around ``centre``.

    The crop has ``data.context_size`` voxels of the case's spacing; outside the case it is
    background and air (``PAD_HU``).
    """
    size = np.asarray(data.context_size)
    spacing = np.asarray(case.geometry.spacing_mm)
    angles = rng.uniform(-data.rotation_deg, data.rotation_deg, size=3)
    scale = rng.uniform(*data.scaling_range)
    rotation = Rotation.from_euler("xyz", angles, degrees=True).as_matrix()
    # Output voxel offsets (mm) -> rotated and scaled -> source voxel offsets.
    matrix = (rotation / scale) * (1.0 / spacing)[:, None] * spacing[None, :]
    # Voxel n // 2 of the crop is the centre (as in patch_start): no half-voxel shift.
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in size], indexing="ij")
    offsets = np.stack([g.ravel() for g in grids])
    coords = matrix @ offsets + np.asarray(centre, dtype=np.float64)[:, None]
    shape = tuple(int(n) for n in size)
    if data.elastic_mm > 0:
        coarse = rng.normal(0.0, data.elastic_mm / 2.0, size=(3, *(_ELASTIC_GRID,) * 3))
        for axis in range(3):
            field = resize_linear(coarse[axis], shape)
            coords[axis] += (
                np.clip(field, -data.elastic_mm, data.elastic_mm).ravel() / spacing[axis]
            )
    tissue = ndimage.map_coordinates(
        case.tissue, coords, order=0, mode="constant", cval=BACKGROUND_LABEL
    ).reshape(shape)
    hu = ndimage.map_coordinates(case.ct_hu, coords, order=1, mode="constant", cval=PAD_HU).reshape(
        shape
    )
    return tissue.astype(np.uint8), hu.astype(np.float32)
