"""Bringing the sCT (and the MRI it was made from) onto the CT grid before any comparison.

Two situations, decided per case:

* **Same frame, other grid** (the sCT was reconstructed on the MRI's grid, which shares the
  scanner frame with the CT, or everything was registered beforehand): the sCT is resampled
  onto the CT grid, linearly (:func:`synthct.resample.resample_to`; voxels outside the sCT's
  field of view are -1024 HU and are left out of the image metrics through the field-of-view
  mask). Label maps are resampled with nearest neighbour.
* **Different frames**: the grids' physical extents barely overlap. Without registration this is
  an error that prints both geometries and the fix; with registration
  (:func:`register_rigid`) the sCT is aligned rigidly to the CT first.

Registration: rigid (Euler 3D, 6 parameters), Mattes mutual information (both images are HU, but
an sCT can be biased, so MI rather than mean squares), regular-step gradient descent with scales
from the physical shift (plain gradient descent oscillates on MI, whose gradient is noisy), three
resolution levels, random sampling with a fixed seed (deterministic). Initialisation is a
multi-start, robust to large rotations (a scan stored upside down, a patient rotated by 180
degrees): the 24 rotations that map the coordinate axes onto themselves, about the CT's centre
of intensity (image moments) moved onto the sCT's, plus the aligned field-of-view centres; each
is scored by the metric at the coarsest level, the best few are optimised briefly there and
the best of those is refined at every level. A mirror image (a flip) cannot be reached by a
rigid transform; the alignment check after registration
(:mod:`synthct.imaging.alignment_check`) catches it and any other poor result. Grids of
any anisotropy are smoothed only along the axes finer than the registration spacing. The
transform maps CT (fixed) points to sCT (moving) points, ITK's convention, and is applied to
the MRI too (the sCT is computed from it, so they share a frame). Lesion annotations and a
given body mask are read in the CT's frame.

References
----------
.. [1] D. Mattes et al., "PET-CT image registration in the chest using free-form deformations",
   IEEE TMI 22(1), 2003 (the mutual information metric).
.. [2] B. C. Lowekamp et al., "The design of SimpleITK", Frontiers in Neuroinformatics 7, 2013.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray
from pydantic import ConfigDict, Field, model_validator

from synthct.errors import GeometryMismatchError
from synthct.geometry import Geometry
from synthct.imaging.alignment_check import mae_and_ncc
from synthct.io.atomic import atomic_file
from synthct.io.itk import array_to_sitk
from synthct.resample import resample_to
from synthct.settings import SettingsBase
from synthct.volume import CTVolume, LabelMap, Volume

__all__ = [
    "Alignment",
    "RegistrationReport",
    "RegistrationSettings",
    "align_case",
    "align_sct",
    "frame_overlap_fraction",
    "label_map_on_grid",
    "mri_on_grid",
    "register_rigid",
    "transform_from_dict",
    "write_transform",
]

#: The registration quality figures use every QUALITY_STRIDE-th CT voxel along each axis.
QUALITY_STRIDE = 2
#: Multi-start: the starts with the best coarse metric optimised briefly, and for how long.
MULTI_START_KEEP = 4
MULTI_START_ITERATIONS = 30
#: ... on the coarsest level with at least this many voxels (mutual information needs samples).
MULTI_START_MIN_VOXELS = 20_000
#: Below this overlap of the two fields of view, the grids are taken as different frames.
DEFAULT_MIN_OVERLAP_FRACTION = 0.25


class RegistrationSettings(SettingsBase):
    """Parameters of the rigid registration (immutable; recorded in ``settings.json``)."""

    model_config = ConfigDict(allow_inf_nan=False)

    spacing_mm: float = Field(
        default=1.5, gt=0, description="images resampled to this isotropic grid when finer"
    )
    histogram_bins: int = Field(default=50, ge=8, description="Mattes MI histogram bins")
    sampling_percentage: float = Field(default=0.2, gt=0, le=1, description="voxels sampled")
    max_samples: int = Field(
        default=50_000, ge=1000, description="at most this many samples per level"
    )
    seed: int = Field(
        default=1, ge=1, description="seed of the random sampling (0 would be SimpleITK's clock)"
    )
    shrink_factors: tuple[int, ...] = Field(default=(4, 2, 1), description="per level")
    smoothing_sigmas_mm: tuple[float, ...] = Field(default=(2.0, 1.0, 0.0), description="per level")
    learning_rate: float = Field(default=1.0, gt=0, description="initial step (scaled units)")
    min_step: float = Field(default=1e-4, gt=0, description="stop when the step falls below")
    relaxation_factor: float = Field(default=0.5, gt=0, lt=1, description="step shrink on turns")
    iterations: int = Field(default=100, ge=1, description="iterations per level (maximum)")
    gradient_tolerance: float = Field(default=1e-8, gt=0, description="stop below this gradient")
    threads: int | None = Field(default=None, ge=1, description="ITK threads (None: default)")

    @model_validator(mode="after")
    def _levels(self) -> RegistrationSettings:
        if len(self.shrink_factors) != len(self.smoothing_sigmas_mm) or not self.shrink_factors:
            raise ValueError(
                "shrink_factors and smoothing_sigmas_mm need one entry per level, got "
                f"{list(self.shrink_factors)} and {list(self.smoothing_sigmas_mm)}"
            )
        return self

    def rules(self) -> str:
        """The method in words, with the values."""
        return (
            "rigid Euler 3D transform, CT fixed, sCT moving, both smoothed (Gaussian, FWHM of "
            f"the new spacing) and resampled to {self.spacing_mm:g} mm isotropic voxels when "
            "finer; Mattes mutual information "
            f"({self.histogram_bins} bins, random sampling of {100 * self.sampling_percentage:g}% "
            f"of the voxels of each level, at most {self.max_samples}, seed {self.seed}); "
            "regular-step gradient descent (initial step "
            f"{self.learning_rate:g}, step x {self.relaxation_factor:g} when the gradient turns, "
            f"stop below step {self.min_step:g} or after {self.iterations} iterations per level), "
            f"scales from the physical shift; levels shrink {list(self.shrink_factors)}, smoothing "
            f"{list(self.smoothing_sigmas_mm)} mm; multi-start initialisation: the 24 rotations "
            "that map the axes onto themselves, about the CT's centre of intensity moved onto "
            "the sCT's, plus the aligned field-of-view centres, ranked by the metric at the "
            f"coarsest level with >= {MULTI_START_MIN_VOXELS} voxels, the best "
            f"{MULTI_START_KEEP} optimised for {MULTI_START_ITERATIONS} iterations there, the "
            "best of those refined; linear interpolation; the transform maps CT points to sCT "
            "points; each axis finer than the new spacing is smoothed, the others are not"
        )


@dataclass(frozen=True)
class RegistrationReport:
    """Result and quality of a rigid registration.

    ``transform`` maps CT (fixed) points in LPS mm to sCT (moving) points. MAE (HU) and NCC are
    taken inside the CT body mask and the sCT's field of view, before (identity) and after.
    """

    transform: sitk.Euler3DTransform
    final_metric_value: float
    iterations: int
    stop_condition: str
    mae_before_hu: float
    mae_after_hu: float
    ncc_before: float
    ncc_after: float

    @property
    def matrix(self) -> NDArray[np.float64]:
        """4x4 LPS affine of the transform (CT point to sCT point)."""
        return transform_matrix(self.transform)

    @property
    def rotation_angle_deg(self) -> float:
        """Angle of the rotation, in degrees."""
        r = self.matrix[:3, :3]
        return math.degrees(math.acos(float(np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0))))

    @property
    def translation_mm(self) -> tuple[float, float, float]:
        """Displacement of the rotation centre (the CT field-of-view centre), in LPS mm."""
        t = self.transform.GetTranslation()
        return (float(t[0]), float(t[1]), float(t[2]))

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-ready quality figures plus the transform's parameters."""
        t = self.translation_mm
        return {
            "registration_final_metric_mattes_mi": self.final_metric_value,
            "registration_iterations": self.iterations,
            "registration_stop_condition": self.stop_condition,
            "registration_rotation_angle_deg": self.rotation_angle_deg,
            "registration_translation_l_mm": t[0],
            "registration_translation_p_mm": t[1],
            "registration_translation_s_mm": t[2],
            "registration_translation_norm_mm": float(np.linalg.norm(t)),
            "registration_mae_before_hu": self.mae_before_hu,
            "registration_mae_after_hu": self.mae_after_hu,
            "registration_ncc_before": self.ncc_before,
            "registration_ncc_after": self.ncc_after,
        }

    def transform_dict(self) -> dict[str, Any]:
        """The transform as JSON (type, parameters, fixed parameters, 4x4 matrix)."""
        return {
            "type": "Euler3DTransform",
            "direction": "CT (fixed) point in LPS mm -> sCT (moving) point",
            "parameters": list(self.transform.GetParameters()),
            "fixed_parameters": list(self.transform.GetFixedParameters()),
            "matrix_lps": self.matrix.tolist(),
        }


@dataclass(frozen=True, eq=False)
class Alignment:
    """A case's images on the CT grid.

    ``sct_fov`` is True where the CT voxel lies inside the sCT's field of view (``None`` when
    the sCT was on the CT grid already, i.e. everywhere).
    """

    sct: CTVolume
    mri: Volume | None
    body_mask: LabelMap | None
    sct_fov: NDArray[np.bool_] | None
    resampled: bool
    overlap_fraction: float
    registration: RegistrationReport | None

    @property
    def transform(self) -> sitk.Euler3DTransform | None:
        """The registration's transform (CT point to sCT point), or None."""
        return None if self.registration is None else self.registration.transform

    def describe(self) -> dict[str, Any]:
        """Flat JSON-ready summary for the case table."""
        out: dict[str, Any] = {
            "sct_resampled": self.resampled,
            "sct_registered": self.registration is not None,
            "fov_overlap_fraction": self.overlap_fraction,
        }
        if self.registration is not None:
            out.update(self.registration.to_dict())
        return out


def _corners_lps(geometry: Geometry) -> NDArray[np.float64]:
    n = np.asarray(geometry.shape, dtype=np.float64)
    edges = [(-0.5, n[i] - 0.5) for i in range(3)]
    grid = np.array(np.meshgrid(*edges, indexing="ij")).reshape(3, -1).T
    return geometry.index_to_lps(grid)


def frame_overlap_fraction(a: Geometry, b: Geometry) -> float:
    """Overlap of two fields of view: intersection / smaller volume of their LPS bounding boxes.

    1 when one field of view lies inside the other, 0 when they are disjoint. Two grids of the
    same scanner frame overlap; a grid expressed in another frame usually does not.
    """
    boxes = []
    for g in (a, b):
        corners = _corners_lps(g)
        boxes.append((corners.min(axis=0), corners.max(axis=0)))
    (lo_a, hi_a), (lo_b, hi_b) = boxes
    side = np.clip(np.minimum(hi_a, hi_b) - np.maximum(lo_a, lo_b), 0.0, None)
    smaller = min(float(np.prod(hi_a - lo_a)), float(np.prod(hi_b - lo_b)))
    return float(np.prod(side)) / smaller if smaller > 0 else 0.0


def transform_matrix(transform: sitk.Euler3DTransform) -> NDArray[np.float64]:
    """4x4 LPS affine of a SimpleITK matrix-offset transform."""
    matrix = np.asarray(transform.GetMatrix(), dtype=np.float64).reshape(3, 3)
    center = np.asarray(transform.GetCenter(), dtype=np.float64)
    translation = np.asarray(transform.GetTranslation(), dtype=np.float64)
    out = np.eye(4)
    out[:3, :3] = matrix
    out[:3, 3] = center + translation - matrix @ center
    return out


def transform_from_dict(data: dict[str, Any]) -> sitk.Euler3DTransform:
    """The Euler transform of :meth:`RegistrationReport.transform_dict`."""
    transform = sitk.Euler3DTransform()
    transform.SetFixedParameters([float(v) for v in data["fixed_parameters"]])
    transform.SetParameters([float(v) for v in data["parameters"]])
    return transform


def write_transform(transform: sitk.Transform, path: str | os.PathLike[str]) -> Path:
    """Write an ITK transform file (``.tfm``) atomically and return its path."""
    final = Path(path)
    with atomic_file(final) as tmp:
        sitk.WriteTransform(transform, str(tmp))
    return final


def _agreement(
    ct: NDArray[Any], sct: NDArray[Any], inside: NDArray[np.bool_]
) -> tuple[float, float]:
    """MAE (HU) and normalised cross-correlation of two arrays inside a mask."""
    return mae_and_ncc(ct[inside], sct[inside])


def _registration_image(volume: CTVolume, spacing_mm: float) -> sitk.Image:
    """The volume as a float32 SimpleITK image, on an isotropic ``spacing_mm`` grid if finer.

    The anti-aliasing Gaussian has, per axis, the SD that takes the voxel's own width to the
    new one: ``sqrt(new^2 - old^2) / 2.355`` (FWHM to SD).
    """
    image = array_to_sitk(volume.array.astype(np.float32, copy=False), volume.affine)
    spacing = np.asarray(volume.spacing_mm)
    if np.all(spacing >= spacing_mm * 0.999):
        return image
    smooth = image
    for axis, step in enumerate(spacing):
        # only the axes finer than the new grid: a zero sigma is an error in ITK's filters
        # (an axis of 2 mm next to 1 mm ones made every anisotropic CT fail)
        sigma = float(np.sqrt(max(spacing_mm**2 - step**2, 0.0)) / 2.355)
        if sigma > 1e-3 * spacing_mm:
            smooth = sitk.RecursiveGaussian(smooth, sigma, False, _ZERO_ORDER, axis)
    shape = volume.spatial_shape
    size = [max(1, math.ceil(n * s / spacing_mm)) for n, s in zip(shape, spacing, strict=True)]
    return sitk.Resample(
        smooth,
        size,
        sitk.Transform(),
        sitk.sitkLinear,
        image.GetOrigin(),
        [spacing_mm] * 3,
        image.GetDirection(),
        float(volume.fill_value),
        sitk.sitkFloat32,
    )


_ZERO_ORDER = sitk.RecursiveGaussianImageFilter.ZeroOrder


def _cube_rotations() -> list[NDArray[np.float64]]:
    """The 24 rotations that map the coordinate axes onto themselves (identity first)."""
    import itertools

    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            r = np.zeros((3, 3))
            for row, (col, sign) in enumerate(zip(perm, signs, strict=True)):
                r[row, col] = sign
            if np.linalg.det(r) > 0:
                out.append(r)
    out.sort(key=lambda r: -float(np.trace(r)))  # identity first
    return out


def _centroid_lps(image: sitk.Image) -> NDArray[np.float64]:
    """Intensity-weighted centre (weights: value minus the image minimum), in LPS mm."""
    array = sitk.GetArrayViewFromImage(image)  # z, y, x
    weights = np.asarray(array, dtype=np.float64) - float(array.min())
    total = float(weights.sum())
    if not total > 0:
        size = np.asarray(image.GetSize(), dtype=np.float64)
        return np.asarray(image.TransformContinuousIndexToPhysicalPoint((size - 1) / 2))
    index = [
        float(np.dot(weights.sum(axis=tuple(a for a in range(3) if a != axis)), np.arange(n)))
        / total
        for axis, n in enumerate(array.shape)
    ]
    return np.asarray(image.TransformContinuousIndexToPhysicalPoint(index[::-1]))


def _start_transforms(fixed: sitk.Image, moving: sitk.Image) -> list[sitk.Euler3DTransform]:
    """Starting poses: the 24 axis rotations about the fixed image's centre of intensity, each
    moving it onto the moving image's, plus the aligned field-of-view centres (no rotation)."""
    centre_fixed, centre_moving = _centroid_lps(fixed), _centroid_lps(moving)
    starts = [
        sitk.Euler3DTransform(
            sitk.CenteredTransformInitializer(
                fixed,
                moving,
                sitk.Euler3DTransform(),
                sitk.CenteredTransformInitializerFilter.GEOMETRY,
            )
        )
    ]
    for rotation in _cube_rotations():
        start = sitk.Euler3DTransform()
        start.SetCenter([float(c) for c in centre_fixed])
        start.SetMatrix([float(v) for v in rotation.ravel()])
        start.SetTranslation([float(v) for v in centre_moving - centre_fixed])
        starts.append(start)
    return starts


def _method(
    s: RegistrationSettings, fixed: sitk.Image, iterations: int | None = None
) -> sitk.ImageRegistrationMethod:
    """The registration method of ``s`` (``iterations`` per level, when given)."""
    shrink = list(s.shrink_factors)
    smoothing = list(s.smoothing_sigmas_mm)
    method = sitk.ImageRegistrationMethod()
    if s.threads is not None:
        method.SetNumberOfThreads(s.threads)
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=s.histogram_bins)
    method.SetMetricSamplingStrategy(method.RANDOM)
    voxels = [float(np.prod([math.ceil(n / f) for n in fixed.GetSize()])) for f in shrink]
    percentages = [min(s.sampling_percentage, s.max_samples / n) for n in voxels]
    method.SetMetricSamplingPercentagePerLevel(percentages, s.seed)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=s.learning_rate,
        minStep=s.min_step,
        numberOfIterations=iterations or s.iterations,
        relaxationFactor=s.relaxation_factor,
        gradientMagnitudeTolerance=s.gradient_tolerance,
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(shrinkFactors=shrink)
    method.SetSmoothingSigmasPerLevel(smoothingSigmas=smoothing)
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return method


def _coarse(image: sitk.Image, shrink: int, sigma_mm: float) -> sitk.Image:
    """``image`` smoothed (Gaussian SD ``sigma_mm``) and subsampled by ``shrink``."""
    if sigma_mm > 0:
        image = sitk.SmoothingRecursiveGaussian(image, sigma_mm)
    return sitk.Shrink(image, [shrink] * image.GetDimension()) if shrink > 1 else image


def _best_start(
    s: RegistrationSettings, fixed: sitk.Image, moving: sitk.Image
) -> sitk.Euler3DTransform:
    """Multi-start on the coarsest level that keeps MULTI_START_MIN_VOXELS voxels: every
    start's metric; the best few optimised briefly; the one with the best metric after that."""
    voxels = float(np.prod(fixed.GetSize()))
    level = next(
        (n for n, f in enumerate(s.shrink_factors) if voxels / f**3 >= MULTI_START_MIN_VOXELS),
        len(s.shrink_factors) - 1,
    )
    shrink, sigma = s.shrink_factors[level], s.smoothing_sigmas_mm[level]
    fixed_coarse, moving_coarse = _coarse(fixed, shrink, sigma), _coarse(moving, shrink, sigma)
    coarse = s.model_copy(update={"shrink_factors": (1,), "smoothing_sigmas_mm": (0.0,)})
    scores: list[tuple[float, int]] = []
    starts = _start_transforms(fixed, moving)
    for n, start in enumerate(starts):
        method = _method(coarse, fixed_coarse)
        method.SetInitialTransform(start, inPlace=False)
        try:
            scores.append((float(method.MetricEvaluate(fixed_coarse, moving_coarse)), n))
        except RuntimeError:  # too little overlap for the metric: not a start
            continue
    best: tuple[float, sitk.Euler3DTransform] | None = None
    for _, n in sorted(scores)[:MULTI_START_KEEP]:
        method = _method(coarse, fixed_coarse, iterations=MULTI_START_ITERATIONS)
        method.SetInitialTransform(starts[n], inPlace=False)
        try:
            result = method.Execute(fixed_coarse, moving_coarse)
        except RuntimeError:
            continue
        value = float(method.GetMetricValue())
        if best is None or value < best[0]:
            euler = sitk.Euler3DTransform(sitk.CompositeTransform(result).GetNthTransform(0))
            best = (value, euler)
    return starts[0] if best is None else best[1]


def register_rigid(
    fixed: CTVolume,
    moving: CTVolume,
    *,
    settings: RegistrationSettings | None = None,
) -> tuple[sitk.Euler3DTransform, float, int, str]:
    """Rigid registration of ``moving`` onto ``fixed`` (Mattes MI, multi-resolution).

    Parameters
    ----------
    fixed : CTVolume
        The CT.
    moving : CTVolume
        The sCT (any grid, any frame).
    settings : RegistrationSettings, optional
        Method parameters; defaults when omitted.

    Returns
    -------
    transform : SimpleITK.Euler3DTransform
        Maps fixed (CT) points to moving (sCT) points, in LPS mm.
    final_metric_value : float
        Mattes MI at the end (negative; lower is better).
    iterations : int
        Iterations of the last level.
    stop_condition : str
        The optimizer's reason to stop.
    """
    s = settings or RegistrationSettings()
    fixed_image = _registration_image(fixed, s.spacing_mm)
    moving_image = _registration_image(moving, s.spacing_mm)
    initial = _best_start(s, fixed_image, moving_image)
    method = _method(s, fixed_image)
    method.SetInitialTransform(initial, inPlace=False)
    result = method.Execute(fixed_image, moving_image)
    composite = sitk.CompositeTransform(result)
    euler = sitk.Euler3DTransform(composite.GetNthTransform(0))
    return (
        euler,
        float(method.GetMetricValue()),
        int(method.GetOptimizerIteration()),
        str(method.GetOptimizerStopConditionDescription()),
    )


def _require_overlap(
    ct: Geometry, other: Geometry, *, what: str, source: str | None, minimum: float
) -> float:
    overlap = frame_overlap_fraction(ct, other)
    if overlap < minimum:
        raise GeometryMismatchError(
            f"the {what} and the CT do not share a frame: their fields of view overlap by "
            f"{100 * overlap:.3g}% (at least {100 * minimum:g}% expected).\n"
            f"  CT: {ct.describe()}\n"
            f"  {what}: {other.describe()}",
            path=source,
            fix="register the sCT to the CT (synthct validate --register), or check that the "
            f"{what} belongs to this patient and that its header (origin, orientation) is right",
        )
    return overlap


def _quality(
    ct: CTVolume, sct: CTVolume, inside: NDArray[np.bool_], transform: sitk.Transform | None
) -> tuple[float, float, float, float]:
    """MAE and NCC before (identity) and after ``transform``, on every other CT voxel.

    Only voxels inside ``inside`` and inside the sCT's field of view count; the CT's sub-grid
    of every second voxel along each axis keeps the figures cheap for large volumes.
    """
    step = np.diag([QUALITY_STRIDE, QUALITY_STRIDE, QUALITY_STRIDE, 1.0])
    sub = Geometry(
        tuple(math.ceil(n / QUALITY_STRIDE) for n in ct.spatial_shape),  # type: ignore[arg-type]
        ct.affine @ step,
    )
    index = (slice(None, None, QUALITY_STRIDE),) * 3
    ct_sub, inside_sub = ct.array[index], inside[index]
    figures: list[float] = []
    for tx in (None, transform):
        moved = resample_to(sct, sub, transform=tx)
        fov = _fov_mask(sct, sub, tx)
        figures.extend(_agreement(ct_sub, moved.array, inside_sub & fov))
    return figures[0], figures[1], figures[2], figures[3]


def _fov_mask(moving: Volume, ct: Geometry, transform: sitk.Transform | None) -> NDArray[np.bool_]:
    ones = LabelMap(np.ones(moving.spatial_shape, dtype=np.uint8), moving.affine)
    return resample_to(ones, ct, transform=transform, fill_value=0).array > 0


def label_map_on_grid(
    mask: LabelMap,
    geometry: Geometry,
    *,
    what: str = "body mask",
    min_overlap_fraction: float = DEFAULT_MIN_OVERLAP_FRACTION,
) -> LabelMap:
    """A label map (in the CT's frame) on the CT grid, nearest neighbour; checked to overlap."""
    if mask.geometry.is_close(geometry):
        return mask
    _require_overlap(
        geometry, mask.geometry, what=what, source=mask.source, minimum=min_overlap_fraction
    )
    return resample_to(mask, geometry, fill_value=0)


def mri_on_grid(
    mri: Volume,
    geometry: Geometry,
    *,
    transform: sitk.Transform | None = None,
    min_overlap_fraction: float = DEFAULT_MIN_OVERLAP_FRACTION,
) -> Volume:
    """The MRI (in the sCT's frame) on the CT grid, moved by the sCT's registration if any."""
    if transform is None:
        if mri.geometry.is_close(geometry):
            return mri
        _require_overlap(
            geometry, mri.geometry, what="MRI", source=mri.source, minimum=min_overlap_fraction
        )
    return resample_to(mri, geometry, transform=transform)


def align_sct(
    ct: CTVolume,
    sct: CTVolume,
    *,
    body: NDArray[np.bool_] | None = None,
    register: bool = False,
    registration: RegistrationSettings | None = None,
    min_overlap_fraction: float = DEFAULT_MIN_OVERLAP_FRACTION,
) -> Alignment:
    """The sCT on the CT grid, registered first with ``register`` (see :func:`align_case`)."""
    target = ct.geometry
    overlap = frame_overlap_fraction(target, sct.geometry)
    report = None
    transform: sitk.Euler3DTransform | None = None
    if register:
        transform, metric, iterations, stop = register_rigid(ct, sct, settings=registration)
    elif not sct.geometry.is_close(target):
        _require_overlap(
            target, sct.geometry, what="sCT", source=sct.source, minimum=min_overlap_fraction
        )
    resampled = transform is not None or not sct.geometry.is_close(target)
    sct_on_grid = resample_to(sct, target, transform=transform) if resampled else sct
    fov = _fov_mask(sct, target, transform) if resampled else None
    if transform is not None:
        inside = np.ones(target.shape, dtype=bool) if body is None else body
        mae_before, ncc_before, mae_after, ncc_after = _quality(ct, sct, inside, transform)
        report = RegistrationReport(
            transform=transform,
            final_metric_value=metric,
            iterations=iterations,
            stop_condition=stop,
            mae_before_hu=mae_before,
            mae_after_hu=mae_after,
            ncc_before=ncc_before,
            ncc_after=ncc_after,
        )
    return Alignment(
        sct=sct_on_grid,
        mri=None,
        body_mask=None,
        sct_fov=fov,
        resampled=resampled,
        overlap_fraction=overlap,
        registration=report,
    )


def align_case(
    ct: CTVolume,
    sct: CTVolume,
    *,
    mri: Volume | None = None,
    body_mask: LabelMap | None = None,
    body: NDArray[np.bool_] | None = None,
    register: bool = False,
    registration: RegistrationSettings | None = None,
    min_overlap_fraction: float = DEFAULT_MIN_OVERLAP_FRACTION,
) -> Alignment:
    """Put the sCT, the MRI and a given body mask on the CT grid.

    Parameters
    ----------
    ct : CTVolume
        The reference; its grid is the target.
    sct : CTVolume
        The synthetic CT (any grid).
    mri : Volume, optional
        The MRI source, in the sCT's frame.
    body_mask : LabelMap, optional
        A body mask in the CT's frame (resampled with nearest neighbour when on another grid);
        it is also where the registration quality figures are taken.
    body : ndarray of bool, optional
        Body mask on the CT grid for the registration quality figures (MAE, NCC inside it),
        when ``body_mask`` is not given.
    register : bool
        Register the sCT rigidly to the CT (and move the MRI with it).
    registration : RegistrationSettings, optional
        Registration parameters.
    min_overlap_fraction : float
        Without registration, grids whose fields of view overlap less than this are in
        different frames (:func:`frame_overlap_fraction`).

    Raises
    ------
    GeometryMismatchError
        Without registration, when the sCT or the MRI does not overlap the CT (both geometries
        and the fix are in the message); a body mask that does not overlap the CT.
    """
    mask_on_grid = None
    if body_mask is not None:
        mask_on_grid = label_map_on_grid(
            body_mask, ct.geometry, min_overlap_fraction=min_overlap_fraction
        )
        body = np.asarray(mask_on_grid.array) > 0
    aligned = align_sct(
        ct,
        sct,
        body=body,
        register=register,
        registration=registration,
        min_overlap_fraction=min_overlap_fraction,
    )
    mri_aligned = None
    if mri is not None:
        mri_aligned = mri_on_grid(
            mri,
            ct.geometry,
            transform=aligned.transform,
            min_overlap_fraction=min_overlap_fraction,
        )
    return replace(aligned, mri=mri_aligned, body_mask=mask_on_grid)
