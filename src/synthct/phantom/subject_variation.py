"""Many subjects from one real CT: smooth elastic deformation, scaling and per-subject marrow.

A subject is the real CT and its derived tissue map moved by one seeded transform (a global
scaling about the CT's centre composed with a smooth B-spline displacement field), so the two
stay voxel-aligned (the CT's noise moved by nearest neighbour, so it keeps its level and
texture: :func:`warp_ct_keeping_noise`); its marrow is made fattier or leaner by an
age-dependent shift of the fat fraction, applied to the CT's trabecular HU and to the marrow
bins alike
(:mod:`synthct.imaging.marrow`). Lesions are inserted into ``Subject.ct`` and
``Subject.model()`` exactly as into a real CT (:mod:`synthct.phantom.ct_insertion`).

Defaults
--------
* Elastic field: B-spline control points every ``control_spacing_mm = 50`` mm with
  displacements of SD ``elastic_sd_mm = 3`` mm: smooth, anatomy-scale shape change
  (the random B-spline augmentation of e.g. nnU-Net and TorchIO's ``RandomElasticDeformation``,
  with amplitudes kept below the size of a vertebra so the anatomy stays plausible).
* Scaling: SD 0.05 per axis (adult body-size variation of a few percent; assumption).
* Marrow: vertebral marrow fat fraction rises about 0.06 per decade of adult age (Kugel H et al.
  J Magn Reson Imaging 2001;13:263-268; Griffith JF et al. Radiology 2005;236:945-951), age
  drawn in 20..85 years and referred to 50 years for the source CT (assumption).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray
from scipy import ndimage

from synthct.errors import SynthctError
from synthct.imaging.labels import MARROW_TISSUES
from synthct.imaging.marrow import DEFAULT_MARROW, MarrowModel, marrow_labels
from synthct.io.itk import array_to_sitk, sitk_to_array
from synthct.phantom.ct_derived import CTDerivedModel, DerivedTissueMap, derive_tissue_map
from synthct.volume import CTVolume, LabelMap

#: Marrow fat fraction change per decade of adult age (see the module docstring).
MARROW_FAT_PER_DECADE = 0.06
#: Age (years) assumed for the source CT's marrow.
REFERENCE_AGE_YEARS = 50.0
#: Age range (years) subjects are drawn from.
AGE_RANGE_YEARS = (20.0, 85.0)
#: Scale (Gaussian SD, voxels) below which the CT is moved by nearest neighbour, not
#: interpolated: reconstruction noise lives there (NPS peak near 0.2 /mm at 0.7-1.5 mm voxels).
NOISE_SCALE_VOXELS = 1.0


@dataclass(frozen=True)
class SubjectVariation:
    """How much subjects drawn from one CT differ (see the module docstring)."""

    elastic_sd_mm: float = 3.0
    control_spacing_mm: float = 50.0
    scale_sd: float = 0.05
    vary_marrow: bool = True

    def __post_init__(self) -> None:
        for name in ("elastic_sd_mm", "scale_sd"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise SynthctError(
                    f"{name} must be >= 0, got {value}",
                    path=f"SubjectVariation.{name}",
                    fix="use 0 for none",
                )
        if not self.control_spacing_mm > 0:
            raise SynthctError(
                f"control_spacing_mm must be > 0, got {self.control_spacing_mm}",
                path="SubjectVariation.control_spacing_mm",
                fix="use a spacing of tens of mm, e.g. 50",
            )

    @classmethod
    def none(cls) -> SubjectVariation:
        """No variation: the subject is the source CT."""
        return cls(elastic_sd_mm=0.0, scale_sd=0.0, vary_marrow=False)


@dataclass(frozen=True)
class Subject:
    """One subject drawn from a real CT.

    Attributes
    ----------
    ct : CTVolume
        The deformed CT (HU, on the source CT's grid).
    tissue_map : LabelMap
        Its tissue map, moved by the same transform (nearest neighbour).
    hu_only : tuple of str
        Structures the tissue map took from HU alone.
    seed : int
        The seed that drew it.
    scale : tuple of 3 float
        Scale factors along L, P and S.
    age_years, marrow_fat_shift : float
        The drawn age and the marrow fat-fraction shift it gives.
    """

    ct: CTVolume
    tissue_map: LabelMap
    hu_only: tuple[str, ...]
    seed: int
    scale: tuple[float, float, float]
    age_years: float
    marrow_fat_shift: float

    def model(self) -> CTDerivedModel:
        """The subject's tissue model for the MRI renderer and lesion insertion."""
        return CTDerivedModel(self.tissue_map, hu_only=self.hu_only)

    def describe(self) -> dict[str, Any]:
        """JSON-ready parameters of the subject."""
        return {
            "seed": self.seed,
            "scale": list(self.scale),
            "age_years": self.age_years,
            "marrow_fat_shift": self.marrow_fat_shift,
        }


def subject_transform(
    ct: CTVolume, variation: SubjectVariation, rng: np.random.Generator
) -> tuple[sitk.Transform, tuple[float, float, float]]:
    """The seeded scaling + B-spline transform (ITK convention: output point -> CT point)."""
    reference = array_to_sitk(np.zeros(ct.spatial_shape, dtype=np.uint8), ct.affine)
    centre = ct.geometry.index_to_lps((np.asarray(ct.spatial_shape) - 1) / 2.0)
    scale = tuple(float(s) for s in np.clip(rng.normal(1.0, variation.scale_sd, 3), 0.8, 1.2))
    scaling = sitk.ScaleTransform(3, scale)
    scaling.SetCenter([float(v) for v in centre])
    mesh = [
        max(1, round(extent / variation.control_spacing_mm)) for extent in ct.geometry.extent_mm
    ]
    bspline = sitk.BSplineTransformInitializer(reference, mesh, 3)
    n = len(bspline.GetParameters())
    bspline.SetParameters(rng.normal(0.0, variation.elastic_sd_mm, n).tolist())
    composite = sitk.CompositeTransform(3)
    composite.AddTransform(scaling)
    composite.AddTransform(bspline)
    return _as_displacement_field(composite, ct), (scale[0], scale[1], scale[2])


#: Spacing (mm) of the grid on which the smooth transform is tabulated: a few mm resolves a
#: field that varies over the 50 mm control spacing, and evaluating the B-spline there instead
#: of at every voxel makes warping a 512 x 512 slice stack seconds, not a minute.
FIELD_SPACING_MM = 4.0


def _as_displacement_field(transform: sitk.Transform, ct: CTVolume) -> sitk.Transform:
    """``transform`` tabulated on a coarse grid one step beyond the CT (linear in between)."""
    g = ct.geometry
    spacing = np.maximum(FIELD_SPACING_MM, np.asarray(g.spacing_mm))
    size = np.ceil(np.asarray(g.extent_mm) / spacing).astype(int) + 3
    origin = g.affine[:3, 3] - g.direction @ spacing
    field = sitk.TransformToDisplacementField(
        transform,
        sitk.sitkVectorFloat64,
        [int(n) for n in size],
        [float(v) for v in origin],
        [float(v) for v in spacing],
        [float(v) for v in g.direction.ravel()],
    )
    return sitk.DisplacementFieldTransform(field)


def _warp(
    array: NDArray[Any],
    affine: NDArray[np.float64],
    transform: sitk.Transform,
    *,
    labels: bool,
    nearest: bool = False,
) -> NDArray[Any]:
    """Resample on the same grid through ``transform``; beyond the edge the edge continues.

    Labels (and ``nearest``) take the nearest voxel, values otherwise interpolate linearly.
    Nearest-neighbour extrapolation keeps a cropped CT's cut tissue at the border instead of
    pulling air in where the deformation reaches past the field of view.
    """
    image = array_to_sitk(array if labels else array.astype(np.float32), affine)
    resampler = sitk.ResampleImageFilter()
    resampler.SetReferenceImage(image)
    resampler.SetTransform(transform)
    resampler.SetInterpolator(sitk.sitkNearestNeighbor if labels or nearest else sitk.sitkLinear)
    resampler.SetUseNearestNeighborExtrapolator(True)
    data, _ = sitk_to_array(resampler.Execute(image))
    return data


def warp_ct_keeping_noise(
    ct: CTVolume, transform: sitk.Transform, sigma_voxels: float = NOISE_SCALE_VOXELS
) -> CTVolume:
    """Move a CT through ``transform`` without smoothing its noise.

    Linear interpolation averages neighbouring voxels: a real CT's noise loses about half its
    SD and its texture shifts to low frequencies, which gives a deformed subject away (noise
    SD in fat 18.6 vs 27.2 HU real, ``benchmarks/realism.py``). The detail finer than a
    Gaussian of ``sigma_voxels`` (the noise, and anatomy at edges) is moved to the nearest
    voxel, which keeps its values, hence the noise level and spectrum; the difference to its
    linear interpolation is added to the linearly moved CT, bounded by three noise SDs (robust
    SD of the detail), so a noise-free CT moves exactly as with linear interpolation.
    """
    hu = np.asarray(ct.array, dtype=np.float32)
    moved = _warp(hu, ct.affine, transform, labels=False)
    detail = hu - ndimage.gaussian_filter(hu, sigma=sigma_voxels, mode="nearest")
    noise_sd = 1.4826 * float(np.median(np.abs(detail - np.median(detail))))
    if noise_sd > 0:
        # What linear interpolation took from the detail, put back; at edges the detail is
        # anatomy, not noise, and the correction is bounded by the noise (3 SD, robust SD of
        # the detail) so that no edge overshoots.
        lost = _warp(detail, ct.affine, transform, labels=False, nearest=True)
        lost -= _warp(detail, ct.affine, transform, labels=False)
        moved += np.clip(lost, -3.0 * noise_sd, 3.0 * noise_sd)
    return CTVolume(moved, ct.affine, source=ct.source)


def shift_marrow(
    ct: CTVolume, tissue_map: LabelMap, fat_shift: float, marrow: MarrowModel = DEFAULT_MARROW
) -> tuple[CTVolume, LabelMap]:
    """Make the marrow fattier by ``fat_shift``: trabecular HU and marrow bins together."""
    labels = tissue_map.array.copy()
    hu = np.asarray(ct.array, dtype=np.float32).copy()
    inside = np.isin(labels, [int(t) for t in MARROW_TISSUES])
    hu[inside] += np.float32(marrow.hu_per_fat_fraction * fat_shift)
    labels[inside] = marrow_labels(marrow.fat_fraction_of_hu(hu[inside]))
    names = dict(tissue_map.label_names)
    return (
        CTVolume(hu, ct.affine, source=ct.source),
        LabelMap(labels, tissue_map.affine, source=tissue_map.source, label_names=names),
    )


def make_subject(
    ct: CTVolume,
    labels: LabelMap | None = None,
    *,
    seed: int,
    variation: SubjectVariation | None = None,
    derived: DerivedTissueMap | None = None,
) -> Subject:
    """Draw one subject from a real CT (and its labels), deterministic by ``seed``.

    Parameters
    ----------
    ct : CTVolume
        The real CT in HU.
    labels : LabelMap, optional
        Its anatomical labels (see :func:`~synthct.phantom.ct_derived.derive_tissue_map`).
    seed : int
        Draws the transform and the age.
    variation : SubjectVariation, optional
        Amplitudes; the defaults of :class:`SubjectVariation` when omitted.
    derived : DerivedTissueMap, optional
        The CT's tissue map when already derived (many subjects of one CT derive it once).

    Returns
    -------
    Subject
        CT and tissue map, deformed alike, with the drawn parameters.
    """
    v = variation or SubjectVariation()
    if derived is None:
        derived = derive_tissue_map(ct, labels)
    rng = np.random.default_rng(seed)
    transform, scale = subject_transform(ct, v, rng)
    age = float(rng.uniform(*AGE_RANGE_YEARS))
    shift = MARROW_FAT_PER_DECADE * (age - REFERENCE_AGE_YEARS) / 10.0 if v.vary_marrow else 0.0
    moved_ct = warp_ct_keeping_noise(ct, transform)
    tissue = derived.tissue_map
    moved_map = LabelMap(
        _warp(tissue.array, tissue.affine, transform, labels=True),
        tissue.affine,
        source=tissue.source,
        label_names=tissue.label_names,
    )
    if shift:
        moved_ct, moved_map = shift_marrow(moved_ct, moved_map, shift)
    return Subject(
        ct=CTVolume(moved_ct.array, ct.affine, source=ct.source),
        tissue_map=moved_map,
        hu_only=derived.hu_only,
        seed=seed,
        scale=scale,
        age_years=age,
        marrow_fat_shift=shift,
    )
