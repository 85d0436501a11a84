"""Library lesions inserted into a real CT and its simulated MRI, consistently.

A lesion is an ellipsoid in LPS (axial diameter along L, thickness along P, sagittal diameter
along S) made of its type's base tissue and, for calcifying types, dense sub-voxels arranged by
a seeded smooth field (:mod:`synthct.phantom.calcification`) whose fraction gives the target
mean HU (the tissue table's HU of both tissues, as in :mod:`synthct.phantom.lesions`).

* The **tissue model** (:class:`LesionOverlayModel`) paints the lesion over any base model
  (e.g. :class:`~synthct.phantom.ct_derived.CTDerivedModel`), so the MRI renderer sees it.
* The **CT** keeps every real voxel outside the lesion; a voxel the lesion covers by a fraction
  ``occ`` of its sub-voxels becomes ``(1 - occ) * CT + occ * lesion HU`` plus scanner-like noise
  scaled by ``occ``: the same partial-volume rule the phantom CT renderer applies.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from synthct.errors import WriteError
from synthct.geometry import Geometry
from synthct.imaging.labels import Tissue
from synthct.imaging.tissues import TISSUES
from synthct.phantom.calcification import (
    calibration_offsets,
    pattern_field,
    threshold_for_fraction,
)
from synthct.phantom.lesions import LESION_TYPES
from synthct.phantom.model import PhantomParameterError, TissueModel, block_mean, supersampled
from synthct.version import __version__
from synthct.volume import CTVolume, LabelMap

if TYPE_CHECKING:
    from synthct.phantom.subject_variation import SubjectVariation


@dataclass(frozen=True)
class EllipsoidLesion:
    """A library lesion placed by its centre and diameters in patient space.

    Parameters
    ----------
    type : str
        One of :data:`synthct.phantom.lesions.LESION_TYPES` (its tissues are used).
    centre_lps_mm : tuple of 3 float
        Centre in LPS mm.
    axial_diameter_mm, thickness_mm, sagittal_diameter_mm : float
        Diameters along L, P and S.
    mean_hu : float, optional
        Target noise-free mean HU; the type's default calcified fraction when omitted.
    pattern : str
        Calcification arrangement: ``"dense"``, ``"partial"`` or ``"rim"``.
    seed : int
        Seeds the calcification pattern.
    """

    type: str
    centre_lps_mm: tuple[float, float, float]
    axial_diameter_mm: float = 12.0
    thickness_mm: float = 8.0
    sagittal_diameter_mm: float = 18.0
    mean_hu: float | None = None
    pattern: str = "dense"
    seed: int = 0
    fraction: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        if self.type not in LESION_TYPES:
            raise PhantomParameterError(
                f"unknown lesion type {self.type!r}",
                path="lesion type",
                fix=f"use one of {', '.join(LESION_TYPES)}",
            )
        for name in ("axial_diameter_mm", "thickness_mm", "sagittal_diameter_mm"):
            value = getattr(self, name)
            if not np.isfinite(value) or not 0.5 <= value <= 60.0:
                raise PhantomParameterError(
                    f"{name} must lie in 0.5..60 mm, got {value}", path=name
                )
        info = LESION_TYPES[self.type]
        base_hu = TISSUES[info.base_tissue].ct_hu
        dense = info.dense_tissue
        if self.mean_hu is None:
            fraction = info.calcified_fraction
        elif dense is None:
            fraction = 0.0
            if abs(self.mean_hu - base_hu) > 1e-6:
                raise PhantomParameterError(
                    f"a {self.type} does not calcify: its mean HU is {base_hu:g}",
                    path="mean_hu",
                )
        else:
            dense_hu = TISSUES[dense].ct_hu
            fraction = (self.mean_hu - base_hu) / (dense_hu - base_hu)
            if not 0.0 <= fraction <= 1.0:
                raise PhantomParameterError(
                    f"mean_hu {self.mean_hu:g} HU is out of reach for a {self.type}: allowed "
                    f"{base_hu:g}..{dense_hu:g} HU",
                    path="mean_hu",
                )
        object.__setattr__(self, "fraction", float(fraction))
        object.__setattr__(self, "centre_lps_mm", tuple(float(v) for v in self.centre_lps_mm))

    @property
    def semi_axes_mm(self) -> NDArray[np.float64]:
        """Semi-axes along L, P and S."""
        return (
            np.array([self.axial_diameter_mm, self.thickness_mm, self.sagittal_diameter_mm]) / 2.0
        )

    @property
    def noise_free_mean_hu(self) -> float:
        """Mean HU of the lesion from its calcified fraction and the tissue table."""
        info = LESION_TYPES[self.type]
        base = TISSUES[info.base_tissue].ct_hu
        dense = TISSUES[info.dense_tissue].ct_hu if info.dense_tissue is not None else base
        return float(base + self.fraction * (dense - base))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready metadata (the same keys as phantom lesion instances where they exist)."""
        d = asdict(self)
        d["centre_lps_mm"] = list(self.centre_lps_mm)
        d["diameter_axial_mm"] = self.axial_diameter_mm
        d["diameter_sagittal_mm"] = self.sagittal_diameter_mm
        d["calcified_fraction"] = self.fraction
        d["mean_hu"] = self.noise_free_mean_hu
        return d


class _Placed:
    """A lesion with its calcification threshold calibrated on a fine grid."""

    def __init__(self, lesion: EllipsoidLesion, label: int) -> None:
        self.lesion = lesion
        self.label = label
        info = LESION_TYPES[lesion.type]
        self.base = info.base_tissue
        self.dense = info.dense_tissue
        self.threshold = -np.inf
        if lesion.fraction > 0:
            spacing = float(np.clip(lesion.semi_axes_mm.min() / 20.0, 0.05, 0.3))
            lo, hi = self.bounds()
            shape = tuple(int(n) for n in np.ceil((hi - lo) / spacing))
            grid = Geometry.from_parameters(
                shape, (spacing,) * 3, tuple(lo + calibration_offsets([spacing] * 3))
            )
            points, r2 = self._inside_points(grid)
            field_values = pattern_field(lesion.pattern, lesion.seed, points, r2)
            self.threshold = threshold_for_fraction(field_values, lesion.fraction)

    def bounds(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        centre = np.asarray(self.lesion.centre_lps_mm)
        return centre - self.lesion.semi_axes_mm, centre + self.lesion.semi_axes_mm

    def _inside_points(self, geometry: Geometry) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        ijk = np.indices(geometry.shape).reshape(3, -1).T
        points = geometry.index_to_lps(ijk)
        r2 = np.sum(
            ((points - np.asarray(self.lesion.centre_lps_mm)) / self.lesion.semi_axes_mm) ** 2,
            axis=1,
        )
        inside = r2 <= 1.0
        return points[inside], r2[inside]

    def paint(self, geometry: Geometry, labels: NDArray[np.uint8]) -> NDArray[np.bool_]:
        """Paint the lesion's tissues into ``labels``; return its mask on the grid."""
        inside = np.zeros(geometry.shape, dtype=bool)
        lo, hi = self.bounds()
        corners = np.array(
            [[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
        )
        ijk = geometry.lps_to_index(corners)
        start = np.maximum(np.floor(ijk.min(axis=0)).astype(int), 0)
        stop = np.minimum(np.ceil(ijk.max(axis=0)).astype(int) + 1, geometry.shape)
        if np.any(stop <= start):
            return inside  # the lesion does not reach this grid (e.g. another slab)
        box = tuple(slice(a, b) for a, b in zip(start, stop, strict=True))
        local = np.indices(tuple(stop - start)).reshape(3, -1).T + start
        points = geometry.index_to_lps(local)
        r2 = np.sum(
            ((points - np.asarray(self.lesion.centre_lps_mm)) / self.lesion.semi_axes_mm) ** 2,
            axis=1,
        )
        flat = r2 <= 1.0
        box_inside = flat.reshape(tuple(stop - start))
        inside[box] = box_inside
        region = labels[box]
        region[box_inside] = self.base
        if self.dense is not None and self.lesion.fraction > 0 and flat.any():
            values = pattern_field(self.lesion.pattern, self.lesion.seed, points[flat], r2[flat])
            calcified = np.zeros(flat.shape, dtype=bool)
            calcified[flat] = values < self.threshold
            region[calcified.reshape(box_inside.shape)] = self.dense
        return inside


class LesionOverlayModel:
    """A tissue model with lesions painted over a base model (implements ``TissueModel``).

    Parameters
    ----------
    base : TissueModel
        The anatomy (e.g. a CT-derived model).
    lesions : sequence of EllipsoidLesion
        Lesions, ids 1, 2, ... in order.
    """

    def __init__(self, base: TissueModel, lesions: Sequence[EllipsoidLesion]) -> None:
        self.base = base
        self.lesions = tuple(lesions)
        self._placed = [_Placed(lesion, i + 1) for i, lesion in enumerate(self.lesions)]

    def labels_on(self, geometry: Geometry) -> NDArray[np.uint8]:
        """Base labels with the lesions painted in."""
        labels = self.base.labels_on(geometry)
        for placed in self._placed:
            placed.paint(geometry, labels)
        return labels

    def lesion_labels_on(self, geometry: Geometry) -> NDArray[np.uint16]:
        """Lesion ids (0 = none) at the voxel centres of a grid."""
        out = np.zeros(geometry.shape, dtype=np.uint16)
        scratch = np.zeros(geometry.shape, dtype=np.uint8)
        for placed in self._placed:
            out[placed.paint(geometry, scratch)] = placed.label
        return out


def insert_lesions_into_ct(
    ct: CTVolume,
    model: LesionOverlayModel,
    *,
    supersample: int = 3,
    noise_sd_hu: float = 12.0,
    seed: int = 0,
) -> CTVolume:
    """The real CT with the model's lesions blended in by their sub-voxel coverage.

    Parameters
    ----------
    ct : CTVolume
        The real CT (HU).
    model : LesionOverlayModel
        Holds the lesions (its base model is not used here).
    supersample : int
        Sub-voxels per voxel edge used to compute coverage and mean lesion HU.
    noise_sd_hu : float
        SD of the Gaussian noise added where the lesion replaces tissue (scaled by coverage),
        so the inserted lesion is as noisy as CT tissue.
    seed : int
        Seeds that noise.
    """
    if noise_sd_hu < 0:
        raise PhantomParameterError(
            f"noise_sd_hu must be >= 0, got {noise_sd_hu}", path="noise_sd_hu"
        )
    out = ct.array.astype(np.float32, copy=True)
    rng = np.random.default_rng(seed)
    for placed in model._placed:
        raster = rasterise_lesion(placed, ct.geometry, supersample=supersample, margin=1)
        if raster is None:
            raise PhantomParameterError(
                f"lesion at {list(placed.lesion.centre_lps_mm)} mm lies outside the CT's "
                "field of view",
                path="centre_lps_mm",
                fix="give a centre inside the CT (see `synthct info CT` for its extent)",
            )
        coverage = raster.coverage
        noise = rng.normal(0.0, noise_sd_hu, coverage.shape) * coverage
        region = out[raster.box]
        out[raster.box] = (1 - coverage) * region + coverage * raster.mean_hu + noise
    return CTVolume(out, ct.affine, source=ct.source)


@dataclass(frozen=True)
class LesionRaster:
    """A lesion rendered on a box of a grid by sub-voxel coverage.

    Attributes
    ----------
    box : tuple of 3 slices
        The box of the grid the lesion (plus a margin) covers.
    coverage : ndarray of float64
        Fraction of each box voxel's sub-voxels inside the lesion.
    mean_hu : ndarray of float64
        Mean HU of the lesion's sub-voxels in each voxel (0 where the coverage is 0).
    fine_labels : ndarray of uint8
        Tissue labels of the sub-voxels (lesion tissues inside, 0 elsewhere).
    fine_inside : ndarray of bool
        Sub-voxels inside the lesion.
    supersample : int
        Sub-voxels per voxel edge.
    """

    box: tuple[slice, slice, slice]
    coverage: NDArray[np.float64]
    mean_hu: NDArray[np.float64]
    fine_labels: NDArray[np.uint8]
    fine_inside: NDArray[np.bool_]
    supersample: int

    def block_mean(self, fine: NDArray[Any]) -> NDArray[Any]:
        """Mean of a sub-voxel array over each voxel of the box."""
        return np.asarray(block_mean(fine, self.supersample))


def _hu_table() -> NDArray[np.float64]:
    hu_of = np.zeros(256, dtype=np.float64)
    for tissue, props in TISSUES.items():
        hu_of[int(tissue)] = props.ct_hu
    return hu_of


def rasterise_lesion(
    lesion: EllipsoidLesion | _Placed,
    geometry: Geometry,
    *,
    supersample: int = 3,
    margin: int = 1,
) -> LesionRaster | None:
    """A lesion's sub-voxel coverage, mean HU and sub-voxel tissues on a grid.

    The box spans the lesion's bounding box plus ``margin`` voxels (clipped to the grid);
    ``None`` when the lesion does not reach the grid. Both
    :func:`insert_lesions_into_ct` and lesion-aware training
    (:mod:`synthct.synthesis.lesion_insertion`) blend with it.
    """
    placed = lesion if isinstance(lesion, _Placed) else _Placed(lesion, 1)
    lo, hi = placed.bounds()
    corners = np.array(
        [[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
    )
    ijk = geometry.lps_to_index(corners)
    start = np.maximum(np.floor(ijk.min(axis=0)).astype(int) - margin, 0)
    stop = np.minimum(np.ceil(ijk.max(axis=0)).astype(int) + 1 + margin, geometry.shape)
    if np.any(stop <= start):
        return None
    box = (slice(start[0], stop[0]), slice(start[1], stop[1]), slice(start[2], stop[2]))
    origin = geometry.index_to_lps(start)
    box_grid = Geometry(
        tuple(int(n) for n in stop - start),  # type: ignore[arg-type]
        _with_origin(geometry.affine, origin),
    )
    fine = supersampled(box_grid, supersample)
    labels = np.zeros(fine.shape, dtype=np.uint8)
    inside = placed.paint(fine, labels)
    coverage = np.asarray(block_mean(inside.astype(np.float64), supersample), np.float64)
    hu_sum = np.asarray(
        block_mean(np.where(inside, _hu_table()[labels], 0.0), supersample), np.float64
    )
    mean_hu = np.divide(hu_sum, coverage, out=np.zeros_like(hu_sum), where=coverage > 0)
    return LesionRaster(box, coverage, mean_hu, labels, inside, supersample)


def _with_origin(affine: NDArray[np.float64], origin: NDArray[np.float64]) -> NDArray[np.float64]:
    moved = np.array(affine, copy=True)
    moved[:3, 3] = origin
    return moved


def default_lesion_centre(
    tissue: NDArray[np.uint8], geometry: Geometry, *, dorsal_offset_mm: float = 2.0
) -> NDArray[np.float64]:
    """A plausible intradural site: the middle of the labelled cord, shifted dorsally.

    Raises when the tissue map has no spinal cord (give the centre explicitly then).
    """
    cord = np.argwhere(tissue == Tissue.SPINAL_CORD)
    if cord.size == 0:
        raise PhantomParameterError(
            "the CT-derived tissue map has no spinal cord to place the lesion by",
            path="lesion centre",
            fix="give --labels with a spinal cord label (TotalSegmentator 79) or an explicit "
            "--lesion-centre x,y,z in LPS mm",
        )
    points = geometry.index_to_lps(cord)
    middle = np.median(points[:, 2])
    near = points[np.abs(points[:, 2] - middle) <= max(geometry.spacing_mm)]
    centre = near.mean(axis=0)
    centre[1] += dorsal_offset_mm  # +P is dorsal
    return centre


def random_calcified_meningioma(
    tissue: NDArray[np.uint8], geometry: Geometry, rng: np.random.Generator, *, seed: int
) -> EllipsoidLesion:
    """A calcified intradural meningioma drawn at random, at the labelled cord.

    The paper's lesions as ranges: 6-12 mm axial, 4-7 mm thick, 8-16 mm sagittal, mean
    150-1000 HU, a dense, partial or rim calcification pattern, 0-3 mm dorsal of the cord's
    middle (:func:`default_lesion_centre`). ``rng`` draws the sizes (seven draws, in a fixed
    order, so that a seeded cohort is reproducible); ``seed`` seeds the lesion's own texture.
    """
    centre = default_lesion_centre(tissue, geometry, dorsal_offset_mm=float(rng.uniform(0.0, 3.0)))
    return EllipsoidLesion(
        "meningioma",
        (float(centre[0]), float(centre[1]), float(centre[2])),
        axial_diameter_mm=float(rng.uniform(6.0, 12.0)),
        thickness_mm=float(rng.uniform(4.0, 7.0)),
        sagittal_diameter_mm=float(rng.uniform(8.0, 16.0)),
        mean_hu=float(rng.uniform(150.0, 1000.0)),
        pattern=str(rng.choice(["dense", "partial", "rim"])),
        seed=seed,
    )


def write_ct_derived_case(
    ct: CTVolume,
    out_dir: str | os.PathLike[str],
    *,
    labels: LabelMap | None = None,
    lesions: Sequence[EllipsoidLesion] = (),
    protocol: str = "paper_3t",
    mr_grid: Literal["ct", "protocol"] = "ct",
    supersample: int = 3,
    mr_noise_sd: float = 1e-3,
    ct_noise_sd_hu: float = 12.0,
    seed: int = 0,
    overwrite: bool = False,
    montage: bool = False,
    variation: SubjectVariation | None = None,
    mr_realism: str = "classic",
) -> Path:
    """A one-case cohort from a real CT: the CT (lesions blended in) and its simulated MRI.

    Parameters
    ----------
    ct : CTVolume
        The real CT in HU.
    out_dir : path
        Cohort folder to create (same layout as :func:`synthct.phantom.cohort.generate_cohort`).
    labels : LabelMap, optional
        TotalSegmentator labels of the same CT (refine the tissue map).
    lesions : sequence of EllipsoidLesion
        Lesions to insert into CT and MRI.
    protocol : str
        MRI protocol preset (echo times, TR, flip angle, field strength; and its grid when
        ``mr_grid="protocol"``).
    mr_grid : {"ct", "protocol"}
        Render the MRI on the CT grid, or on the protocol's grid centred on the first lesion
        (or the CT's centre).
    variation : SubjectVariation, optional
        Draw a new subject from the CT (deformation, scaling, marrow; seeded by ``seed``)
        before inserting the lesions; the real CT as it is when omitted.
    mr_realism : {"classic", "realistic"}
        MRI realism preset (:data:`synthct.phantom.mri.REALISM_PRESETS`).
    """
    from synthct.io.atomic import atomic_directory, write_json_atomic, write_text_atomic
    from synthct.phantom import cohort_files as files
    from synthct.phantom.ct_derived import CTDerivedModel
    from synthct.phantom.ct_levels import check_lesion_fits
    from synthct.phantom.mri import realism_preset, render_mri
    from synthct.phantom.protocols import get_preset
    from synthct.phantom.subject_variation import make_subject

    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise WriteError(
            "the output folder already exists",
            path=out,
            fix="choose a new folder or pass --overwrite",
        )
    preset = get_preset(protocol)
    realism = realism_preset(mr_realism)
    for lesion in lesions:
        check_lesion_fits(ct.geometry, lesion.centre_lps_mm, lesion.semi_axes_mm)
    subject = None
    if variation is None:
        base = CTDerivedModel.from_ct(ct, labels)
    else:
        subject = make_subject(ct, labels, seed=seed, variation=variation)
        ct, base = subject.ct, subject.model()
    model = LesionOverlayModel(base, lesions)
    centre = (
        np.asarray(lesions[0].centre_lps_mm)
        if lesions
        else ct.geometry.index_to_lps((np.asarray(ct.spatial_shape) - 1) / 2.0)
    )
    grid = ct.geometry if mr_grid == "ct" else preset.geometry(center_lps_mm=centre)
    mr = render_mri(
        model,
        grid,
        preset,
        supersample=supersample,
        noise_sd=mr_noise_sd,
        seed=seed,
        realism=realism,
    )
    ct_out = insert_lesions_into_ct(
        ct, model, supersample=supersample, noise_sd_hu=ct_noise_sd_hu, seed=seed + 1
    )
    names = {int(t): t.name.lower() for t in Tissue}
    tissue = LabelMap(model.labels_on(grid), grid.affine, label_names=names)
    lesion_names = {i + 1: f"{lesion.type}@custom" for i, lesion in enumerate(lesions)}
    lesions_mr = LabelMap(model.lesion_labels_on(grid), grid.affine, label_names=lesion_names)
    lesions_ct = None
    if mr_grid != "ct":
        lesions_ct = LabelMap(
            model.lesion_labels_on(ct.geometry), ct.affine, label_names=lesion_names
        )
    if out.exists():
        import shutil

        shutil.rmtree(out)
    out.mkdir(parents=True)
    meta = {
        "case_id": files.case_id(0),
        "synthct_version": __version__,
        "mode": "ct-derived",
        "source_ct": ct.source,
        "source_labels": None if labels is None else labels.source,
        "derived_from_hu_alone": list(base.hu_only),
        "subject": None if subject is None else subject.describe(),
        "render_seed": seed,
        "protocol_preset": preset.name,
        "mr_realism": mr_realism,
        "lesions": [{"id": i + 1, **lesion.to_dict()} for i, lesion in enumerate(lesions)],
        "ct_to_mr": {
            "rotation_deg_xyz": [0.0, 0.0, 0.0],
            "translation_mm": [0.0, 0.0, 0.0],
            "about_lps_mm": [float(v) for v in centre],
        },
    }
    case_dir = out / files.case_id(0)
    with atomic_directory(case_dir) as tmp:
        files.write_case_files(
            tmp,
            meta=meta,
            ct=ct_out,
            mr=mr,
            tissue=tissue,
            lesions_mr=lesions_mr,
            lesions_ct=lesions_ct,
            montage_point_lps_mm=centre if montage else None,
        )
    rows = [files.manifest_row(out, case_dir)]
    write_text_atomic(out / files.MANIFEST_CSV, files.manifest_rows_csv(rows))
    write_json_atomic(
        out / files.MANIFEST_JSON,
        {"synthct_version": __version__, "mode": "ct-derived", "cases": rows},
    )
    return out
