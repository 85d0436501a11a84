"""Rigid MR-to-CT registration by Mattes mutual information, for dataset QA.

The MR (first channel) is the fixed image, the CT the moving one: the transform maps MR-frame
points (LPS mm) to CT-frame points, and the metric is evaluated over the MR's field of view.
Both images are first resampled onto an isotropic grid of ``spacing_mm`` (an anti-aliasing
Gaussian of ``sqrt(new^2 - old^2) / 2.355`` mm SD per axis), so anisotropic voxels (e.g.
0.7 x 0.7 x 3 mm) are handled in physical units; the pyramid's smoothing sigmas are in mm too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from synthct.errors import GeometryError
from synthct.volume import Volume

#: Registration smooths each image (ITK's recursive Gaussian needs 4 voxels along every axis)
#: and starts at half resolution on the working grid: both need this many voxels per axis.
MIN_VOXELS_PER_AXIS = 4
MIN_WORKING_VOXELS_PER_AXIS = 8

__all__ = ["RigidResult", "register_mr_to_ct"]


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
    """

    mi_before: float
    mi_after: float
    matrix: NDArray[np.float64]

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
        Isotropic working grid, mm.
    iterations : int
        Optimiser iterations per level.
    seed : int
        Seeds the metric's random sampling (same seed, same result); at least 1, since
        SimpleITK reads 0 as "seed from the wall clock".

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
        return _register(sitk, mr, mr_array, ct, spacing_mm, iterations, seed)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(previous)


def _register(
    sitk: Any,
    mr: Volume,
    mr_array: NDArray[Any],
    ct: Volume,
    spacing_mm: float,
    iterations: int,
    seed: int,
) -> RigidResult:
    fixed = _isotropic(mr, mr_array, spacing_mm)
    moving = _isotropic(ct, np.clip(ct.array, -1024.0, 2000.0), spacing_mm)
    size = np.asarray(fixed.GetSize(), dtype=np.float64)
    centre = fixed.TransformContinuousIndexToPhysicalPoint(((size - 1) / 2).tolist())
    initial = sitk.Euler3DTransform()
    initial.SetCenter(centre)
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
    before = -float(method.MetricEvaluate(fixed, moving))
    result = method.Execute(fixed, moving)
    euler = sitk.Euler3DTransform(sitk.CompositeTransform(result).GetNthTransform(0))
    check = sitk.ImageRegistrationMethod()
    check.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    check.SetMetricSamplingStrategy(check.REGULAR)
    check.SetMetricSamplingPercentage(min(1.0, 60000.0 / float(np.prod(size))), seed)
    check.SetInterpolator(sitk.sitkLinear)
    check.SetInitialTransform(euler, inPlace=False)
    after = -float(check.MetricEvaluate(fixed, moving))
    matrix = np.eye(4)
    rotation = np.asarray(euler.GetMatrix(), dtype=np.float64).reshape(3, 3)
    c = np.asarray(euler.GetCenter())
    matrix[:3, :3] = rotation
    matrix[:3, 3] = np.asarray(euler.GetTranslation()) + c - rotation @ c
    return RigidResult(before, max(after, before), matrix if after >= before else np.eye(4))
