"""Rigid MR-to-CT registration by Mattes mutual information, for dataset QA.

The MR (first channel) is the fixed image, the CT the moving one: the transform maps MR-frame
points (LPS mm) to CT-frame points, and the metric is evaluated over the MR's field of view.
Both images are first resampled onto an isotropic grid of ``spacing_mm`` (an anti-aliasing
Gaussian of ``sqrt(new^2 - old^2) / 2.355`` mm SD per axis), so anisotropic voxels (e.g.
0.7 x 0.7 x 3 mm) are handled in physical units; the pyramid's smoothing sigmas are in mm too.

Capture range: gradient descent from the headers' alignment finds offsets of about 15 mm. Scans
that were never registered (another scanner, another session) are often further apart, mostly
along the table (S-I) axis. With ``search`` (the default) starting points are also drawn from a
global translation search: along two lines, the bodies' centroids aligned L-R and A-P and the
headers' L-R and A-P, the MR slides along S-I over the whole CT (a CT shorter than the MR, under
the whole MR) in steps of twice the working spacing, then L-R/A-P are refined around the
best positions, each scored by mutual information on a grid twice as coarse. The registration
runs from the headers' alignment and from the best distinct positions, and the result with the
highest mutual information is kept, so a pair aligned already never gets worse.

Dense objects of the CT apart from the body (the scanner couch,
:func:`~synthct.imaging.body_mask.external_objects`) are air for the registration: the MR does
not see them, and left in they pull the CT towards the MR's background (2.2 mm off throughout
the body on the DICOM thorax here, 0.4 mm without them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from synthct.errors import GeometryError
from synthct.imaging.body_mask import external_objects
from synthct.volume import Volume

#: Registration smooths each image (ITK's recursive Gaussian needs 4 voxels along every axis)
#: and starts at half resolution on the working grid: both need this many voxels per axis.
MIN_VOXELS_PER_AXIS = 4
MIN_WORKING_VOXELS_PER_AXIS = 8
#: A field of view is a slab when its thinnest extent is less than its largest over this...
SLAB_ASPECT = 4.0
#: ... and a slab gets at least this many working voxels across its thinnest extent...
THIN_SLAB_VOXELS = 36.0
#: ... on a working grid no finer than this (mm).
FINEST_WORKING_SPACING_MM = 1.0
#: CT below this separates the couch from the body (the CT-derived tissue map's air threshold).
COUCH_AIR_BELOW_HU = -300.0

__all__ = ["RigidResult", "register_mr_to_ct", "working_spacing_mm"]


@dataclass(frozen=True)
class RigidResult:
    """Outcome of :func:`register_mr_to_ct`.

    Attributes
    ----------
    mi_before, mi_after : float
        Mattes mutual information (nats, higher is better) with the headers' alignment and
        after registration.
    matrix : (4, 4) ndarray
        MR-frame to CT-frame LPS affine found.
    search_peak_ratio : float or None
        How far the global search's best position stands out: its MI over the median MI of
        the positions along S-I (about 1 when no position matches, 2-5 for a real match);
        None without a search.
    """

    mi_before: float
    mi_after: float
    matrix: NDArray[np.float64]
    search_peak_ratio: float | None = None

    @property
    def rotation_deg(self) -> float:
        """Rotation angle of the transform, degrees."""
        cos = (np.trace(self.matrix[:3, :3]) - 1.0) / 2.0
        return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))

    def displacement_mm(self, points_lps_mm: NDArray[np.float64]) -> NDArray[np.float64]:
        """How far the transform moves each point (shape ``(n, 3)``), mm."""
        moved = points_lps_mm @ self.matrix[:3, :3].T + self.matrix[:3, 3]
        return np.asarray(np.linalg.norm(moved - points_lps_mm, axis=-1))


def _isotropic(volume: Volume, array: NDArray[Any], spacing_mm: float) -> Any:
    import SimpleITK as sitk

    from synthct.io.itk import array_to_sitk

    image = array_to_sitk(array.astype(np.float32, copy=False), volume.affine)
    spacing = np.asarray(volume.spacing_mm)
    # ITK needs positive sigmas: 1 % of a voxel stands for none along axes already coarse enough
    sigma = [max(float(np.sqrt(max(spacing_mm**2 - s**2, 0.0)) / 2.355), 0.01 * s) for s in spacing]
    image = sitk.SmoothingRecursiveGaussian(image, sigma)
    size = [
        max(1, math.ceil(n * s / spacing_mm))
        for n, s in zip(volume.spatial_shape, spacing, strict=True)
    ]
    return sitk.Resample(
        image,
        size,
        sitk.Transform(),
        sitk.sitkLinear,
        image.GetOrigin(),
        [spacing_mm] * 3,
        image.GetDirection(),
        float(array.min()),
        sitk.sitkFloat32,
    )


def _check_extent(name: str, volume: Volume, spacing_mm: float) -> None:
    """Refuse a volume too thin to register (e.g. one slice) with the fix, before ITK fails."""
    shape = np.asarray(volume.spatial_shape)
    extent_mm = shape * np.asarray(volume.spacing_mm)
    working = np.ceil(extent_mm / spacing_mm)
    if shape.min() >= MIN_VOXELS_PER_AXIS and working.min() >= MIN_WORKING_VOXELS_PER_AXIS:
        return
    axis = int(
        np.argmin(np.minimum(shape / MIN_VOXELS_PER_AXIS, working / MIN_WORKING_VOXELS_PER_AXIS))
    )
    raise GeometryError(
        f"the {name} is too thin to register: {shape[axis]} voxel(s), "
        f"{extent_mm[axis]:.1f} mm along array axis {axis} (registration needs at least "
        f"{MIN_VOXELS_PER_AXIS} voxels and {MIN_WORKING_VOXELS_PER_AXIS * spacing_mm:.0f} mm "
        "along every axis)",
        path=getattr(volume, "source", None),
        fix="use the whole 3D series (not a single slice or a thin slab), or check the pair "
        "with --no-register if it is already aligned",
    )


def register_mr_to_ct(
    mr: Volume,
    mr_array: NDArray[Any],
    ct: Volume,
    *,
    spacing_mm: float = 3.0,
    iterations: int = 120,
    seed: int = 1,
    search: bool = True,
) -> RigidResult:
    """Rigid registration of an MR channel to a CT by Mattes mutual information.

    Parameters
    ----------
    mr : Volume
        The MR (its grid is used).
    mr_array : (I, J, K) ndarray
        The channel to register (e.g. the first echo).
    ct : Volume
        The CT in HU (clipped to [-1024, 2000] HU).
    spacing_mm : float
        Isotropic working grid, mm; finer for a thin field of view (:func:`working_spacing_mm`).
    iterations : int
        Optimiser iterations per level.
    seed : int
        Seeds the metric's random sampling (same seed, same result); at least 1, since
        SimpleITK reads 0 as "seed from the wall clock".
    search : bool
        Also start from the best positions of a global translation search (module docstring),
        for pairs whose headers are far apart; off: start from the headers' alignment only.

    Returns
    -------
    RigidResult
        Mutual information before and after, and the transform.
    """
    import SimpleITK as sitk

    if seed < 1:
        # SimpleITK's sitkWallClock is 0: the sampling (and, on a pair that does not match, the
        # optimiser's end point) would then differ from run to run.
        raise ValueError(f"seed must be at least 1 (0 is SimpleITK's wall clock), got {seed}")
    # The coarse translation search keeps the requested grid's pace (its cost grows with the
    # grid's fineness, its answer only needs to be within the optimiser's reach).
    search_spacing_mm = 2.0 * spacing_mm
    spacing_mm = working_spacing_mm(mr, ct, spacing_mm)
    for name, volume in (("MR", mr), ("CT", ct)):
        _check_extent(name, volume, spacing_mm)
    # One ITK thread: with several, the metric's per-thread parts are added in the order the
    # threads finish, and on a pair that does not match (another patient) the optimiser then ends
    # in a different place each run (MI after 0.11-0.45 measured on one pair); the registration
    # method's own thread setting does not reach its metric, so the global default is set for
    # the call (dataset check registers one case after another, so no other thread is
    # in ITK meanwhile). The 3 mm working grid keeps one thread cheap.
    previous = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        return _register(
            sitk, mr, mr_array, ct, spacing_mm, search_spacing_mm, iterations, seed, search
        )
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(previous)


def working_spacing_mm(mr: Volume, ct: Volume, spacing_mm: float) -> float:
    """The registration's isotropic grid: ``spacing_mm``, finer for a thin slab.

    A slab (thinnest extent under 1/:data:`SLAB_ASPECT` of the largest: a 40 mm CT slab across
    a 500 mm field of view, an MR of nine 4 mm slices) holds a dozen voxels across at 3 mm, too
    few to pin the tilt about the other axes: an MR of nine 4 mm slices of the DICOM thorax
    here (itself 20 slices of 2 mm) registered 11.5 mm off at 3 mm and within 1.3 mm at 1 mm
    (test). A slab's grid gets at least
    :data:`THIN_SLAB_VOXELS` voxels across its thinnest extent, never finer than
    :data:`FINEST_WORKING_SPACING_MM`; other fields of view keep ``spacing_mm``.
    """
    thinnest = float("inf")
    for volume in (mr, ct):
        extents = np.asarray(volume.spatial_shape) * np.asarray(volume.spacing_mm)
        if extents.min() * SLAB_ASPECT < extents.max():
            thinnest = min(thinnest, float(extents.min()))
    return min(spacing_mm, max(FINEST_WORKING_SPACING_MM, thinnest / THIN_SLAB_VOXELS))


def _register(
    sitk: Any,
    mr: Volume,
    mr_array: NDArray[Any],
    ct: Volume,
    spacing_mm: float,
    search_spacing_mm: float,
    iterations: int,
    seed: int,
    search: bool,
) -> RigidResult:
    fixed = _isotropic(mr, mr_array, spacing_mm)
    ct_hu = np.clip(ct.array, -1024.0, 2000.0)
    couch = external_objects(
        ct_hu, air_below_hu=COUCH_AIR_BELOW_HU, voxel_volume_mm3=ct.geometry.voxel_volume_mm3
    )
    if couch.any():
        ct_hu = np.where(couch, -1000.0, ct_hu)
    moving = _isotropic(ct, ct_hu, spacing_mm)
    size = np.asarray(fixed.GetSize(), dtype=np.float64)
    centre = fixed.TransformContinuousIndexToPhysicalPoint(((size - 1) / 2).tolist())
    percentage = min(1.0, 60000.0 / float(np.prod(size)))
    starts = [np.zeros(3)]
    peak_ratio = None
    if search:
        try:
            coarse = (
                _isotropic(mr, mr_array, search_spacing_mm),
                _isotropic(ct, ct_hu, search_spacing_mm),
            )
            found, peak_ratio = _search_translations(sitk, *coarse, mr, ct, search_spacing_mm, seed)
            starts += found
        except RuntimeError:  # ITK could not search this pair (e.g. too small when coarsened)
            pass  # the registration from the headers still runs
    before = _mutual_information(sitk, fixed, moving, _euler(sitk, centre), percentage, seed)
    before = before if np.isfinite(before) else 0.0  # no overlap: nothing shared
    lattice = _lattice_lps(mr)
    best: tuple[float, float, NDArray[np.float64]] | None = None
    for start in starts:
        euler = _optimise(sitk, fixed, moving, _euler(sitk, centre, start), iterations, seed)
        value = _mutual_information(sitk, fixed, moving, euler, percentage, seed)
        matrix = _matrix(euler)
        # MI is computed on the MR samples that land in the CT: a position that leaves most
        # of the MR outside can score high on the few left, so the score weighs by the share
        # inside (the true position keeps the MR in the CT wherever the CT covers it).
        inside = float(
            np.mean(ct.geometry.contains_lps(lattice @ matrix[:3, :3].T + matrix[:3, 3]))
        )
        score = value * inside
        if np.isfinite(score) and (best is None or score > best[0]):
            best = (score, value, matrix)
    if best is None or best[1] < before:
        return RigidResult(before, before, np.eye(4), peak_ratio)
    return RigidResult(before, best[1], best[2], peak_ratio)


def _matrix(euler: Any) -> NDArray[np.float64]:
    """The 4 x 4 LPS affine of a SimpleITK Euler transform."""
    matrix = np.eye(4)
    rotation = np.asarray(euler.GetMatrix(), dtype=np.float64).reshape(3, 3)
    c = np.asarray(euler.GetCenter())
    matrix[:3, :3] = rotation
    matrix[:3, 3] = np.asarray(euler.GetTranslation()) + c - rotation @ c
    return matrix


def _lattice_lps(volume: Volume, points_per_axis: int = 10) -> NDArray[np.float64]:
    """A regular lattice of points over the volume's field of view, LPS mm."""
    axes = [np.linspace(0, n - 1, min(n, points_per_axis)) for n in volume.spatial_shape]
    ijk = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    return np.asarray(volume.geometry.index_to_lps(ijk), dtype=np.float64)


def _euler(sitk: Any, centre: Any, translation: NDArray[np.float64] | None = None) -> Any:
    euler = sitk.Euler3DTransform()
    euler.SetCenter(centre)
    if translation is not None:
        euler.SetTranslation([float(v) for v in translation])
    return euler


def _optimise(sitk: Any, fixed: Any, moving: Any, initial: Any, iterations: int, seed: int) -> Any:
    """Multi-resolution gradient descent on Mattes MI from ``initial``; the Euler transform."""
    size = np.asarray(fixed.GetSize(), dtype=np.float64)
    spacing_mm = float(fixed.GetSpacing()[0])
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.REGULAR)
    method.SetMetricSamplingPercentage(min(1.0, 60000.0 / float(np.prod(size))), seed)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0,
        minStep=0.01,
        numberOfIterations=iterations,
        relaxationFactor=0.6,
        gradientMagnitudeTolerance=1e-6,
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([2, 1])
    method.SetSmoothingSigmasPerLevel([2.0 * spacing_mm, 0.0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(initial, inPlace=False)
    try:
        result = method.Execute(fixed, moving)
    except RuntimeError:  # e.g. every sample left the CT on the way: this start is no answer
        return initial
    return sitk.Euler3DTransform(sitk.CompositeTransform(result).GetNthTransform(0))


def _mutual_information(
    sitk: Any, fixed: Any, moving: Any, transform: Any, percentage: float, seed: int
) -> float:
    """Mattes MI (nats, higher is better) with ``transform``; -inf when no sample overlaps."""
    check = sitk.ImageRegistrationMethod()
    check.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    check.SetMetricSamplingStrategy(check.REGULAR)
    check.SetMetricSamplingPercentage(percentage, seed)
    check.SetInterpolator(sitk.sitkLinear)
    check.SetInitialTransform(transform, inPlace=False)
    try:
        return -float(check.MetricEvaluate(fixed, moving))
    except RuntimeError:
        return float("-inf")


#: Share of their possible overlap (:func:`_box_overlap`) the MR's and the CT's boxes must
#: have for a search position to count.
SEARCH_MIN_OVERLAP = 0.3
#: Starting positions the search hands to the registration (besides the headers').
SEARCH_STARTS = 2


def _search_translations(
    sitk: Any,
    fixed: Any,
    moving: Any,
    mr: Volume,
    ct: Volume,
    step_mm: float,
    seed: int,
) -> tuple[list[NDArray[np.float64]], float | None]:
    """The best MR-to-CT translations of a coarse global search and its peak ratio.

    See the module docstring; the ratio is the best MI along S-I over the median there.
    """
    mr_box, ct_box = _box_lps(mr), _box_lps(ct)
    size = np.asarray(fixed.GetSize(), dtype=np.float64)
    centre = fixed.TransformContinuousIndexToPhysicalPoint(((size - 1) / 2).tolist())
    percentage = min(1.0, 20000.0 / float(np.prod(size)))
    body = _body_centroid(sitk, fixed, mr=True), _body_centroid(sitk, moving, mr=False)
    # Two lines along S-I: the bodies' centroids aligned L-R / A-P, and the headers' L-R / A-P
    # (an MR field of view cropped inside the body has its centroid elsewhere than the CT
    # body's, while scanners mostly disagree along the table only).
    lines = [np.zeros(2)]
    if body[0] is not None and body[1] is not None:
        lines.append((body[1] - body[0])[:2])
    # The shorter image's centre slides over the longer one's S-I extent: an MR shorter than
    # the CT over the CT, a CT slab shorter than the MR (a few vertebrae against a whole
    # spine) under the MR, so that it can sit anywhere the MR reaches.
    mr_centre, ct_centre = mr_box.mean(axis=0), ct_box.mean(axis=0)
    if mr_box[1, 2] - mr_box[0, 2] <= ct_box[1, 2] - ct_box[0, 2]:
        z_range = (ct_box[0, 2] - mr_centre[2], ct_box[1, 2] - mr_centre[2])
    else:
        z_range = (ct_centre[2] - mr_box[1, 2], ct_centre[2] - mr_box[0, 2])
    z_values = np.arange(z_range[0], z_range[1] + step_mm, step_mm)

    def score(t: NDArray[np.float64]) -> float:
        if _box_overlap(mr_box + t, ct_box) < SEARCH_MIN_OVERLAP:
            return float("-inf")
        return _mutual_information(sitk, fixed, moving, _euler(sitk, centre, t), percentage, seed)

    along = [
        (score(t), tuple(t))
        for xy in lines
        for t in (np.array([xy[0], xy[1], z]) for z in z_values)
    ]
    along = [a for a in along if np.isfinite(a[0])]
    if not along:
        return [], None
    values = np.array([a[0] for a in along])
    median = float(np.median(values))
    peak_ratio = float(values.max() / median) if median > 0 else None
    refined: list[tuple[float, tuple[float, ...]]] = []
    offsets = np.arange(-2, 3) * 2.0 * step_mm  # L-R and A-P: -4..+4 steps, every second one
    for _, t in sorted(along, reverse=True)[:3]:
        for dx in offsets:
            for dy in offsets:
                moved = np.asarray(t) + np.array([dx, dy, 0.0])
                value = score(moved)
                if np.isfinite(value):
                    refined.append((value, tuple(moved)))
    chosen: list[NDArray[np.float64]] = []
    for _, t in sorted(refined, reverse=True):
        candidate = np.asarray(t)
        if all(np.linalg.norm(candidate - c) > 4.0 * step_mm for c in [np.zeros(3), *chosen]):
            chosen.append(candidate)
        if len(chosen) == SEARCH_STARTS:
            break
    return chosen, peak_ratio


def _box_lps(volume: Volume) -> NDArray[np.float64]:
    """``[[min x, y, z], [max x, y, z]]`` of the voxel centres' corners, LPS mm."""
    ends = [(0, n - 1) for n in volume.spatial_shape]
    corners = np.array(np.meshgrid(*ends, indexing="ij")).reshape(3, -1).T
    points = volume.geometry.index_to_lps(corners)
    return np.stack([points.min(axis=0), points.max(axis=0)])


def _box_overlap(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    """How much of the overlap that boxes ``a`` and ``b`` could have they have: per axis the
    shared length over the shorter of the two, multiplied (``a``'s share inside ``b`` when
    ``a`` is the shorter along every axis)."""
    inter = np.clip(np.minimum(a[1], b[1]) - np.maximum(a[0], b[0]), 0.0, None)
    shorter = np.maximum(np.minimum(a[1] - a[0], b[1] - b[0]), 1e-6)
    return float(np.prod(inter / shorter))


def _body_centroid(sitk: Any, image: Any, *, mr: bool) -> NDArray[np.float64] | None:
    """Physical centroid of the body (MR: signal above min(Otsu, 0.2 x 99th percentile); CT:
    above -500 HU), or None."""
    if mr:
        # Any tissue, as the synthesis body mask: Otsu's value, at most a fifth of the 99th
        # percentile (in a field of view with little air Otsu alone splits fat from water).
        values = sitk.GetArrayViewFromImage(image)
        high = float(np.percentile(values, 99.0))
        otsu = sitk.OtsuThresholdImageFilter()
        otsu.Execute(image)
        level = min(float(otsu.GetThreshold()), 0.2 * high)
        mask = sitk.BinaryThreshold(image, level, 1e30, 1, 0)
    else:
        mask = sitk.BinaryThreshold(image, -500.0, 1e9, 1, 0)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(sitk.Cast(mask, sitk.sitkUInt8))
    if 1 not in stats.GetLabels():
        return None
    return np.asarray(stats.GetCentroid(1), dtype=np.float64)
