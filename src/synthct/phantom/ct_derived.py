"""CT-derived phantoms: a tissue map built from a real CT, so real anatomy can be simulated as MRI.

The tissue map comes from HU classes and, where a TotalSegmentator label map of the same CT is
given, from its anatomical labels (spinal cord, back muscles, vertebrae). The real CT stays the
CT ground truth; :class:`CTDerivedModel` serves the tissue map to the MRI renderer on any grid.

HU classes (defaults; Hounsfield ranges from standard CT references, e.g. Kalender, *Computed
Tomography*, 3rd ed., 2011, ch. 1, and the tissue table in :mod:`synthct.imaging.tissues`):

========================  ==========================================
HU                        tissue
========================  ==========================================
< -300                    air (lung and bowel gas included)
-300 .. -20               fat
-20 .. 150                soft tissue (muscle where labels say so)
150 .. 600                cancellous bone
>= 600                    cortical bone
========================  ==========================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from synthct.errors import SynthctError, VolumeKindError
from synthct.geometry import Geometry
from synthct.imaging.labels import Tissue
from synthct.resample import resample_to
from synthct.volume import CTVolume, LabelMap, check_hounsfield

#: TotalSegmentator v2 class numbers used to refine the HU classes (Wasserthal et al. 2023).
TOTALSEGMENTATOR_V2: Mapping[str, tuple[int, ...]] = {
    "vertebrae": (25, *range(26, 51)),  # sacrum, S1 .. C1
    "spinal_cord": (79,),
    "muscle": (80, 81, 82, 83, 84, 85, 86, 87, 88, 89),  # gluteal, autochthon, iliopsoas
}


@dataclass(frozen=True)
class HUClasses:
    """HU thresholds separating air, fat, soft tissue, cancellous and cortical bone."""

    air_below_hu: float = -300.0
    fat_below_hu: float = -20.0
    soft_below_hu: float = 150.0
    cancellous_below_hu: float = 600.0
    #: Thickness of the CSF sleeve assumed around a labelled cord, in mm.
    csf_sleeve_mm: float = 3.0

    def __post_init__(self) -> None:
        edges = [self.air_below_hu, self.fat_below_hu, self.soft_below_hu, self.cancellous_below_hu]
        if edges != sorted(edges) or len(set(edges)) != 4:
            raise SynthctError(
                f"HU class thresholds must increase, got {edges}",
                path="HUClasses",
                fix="order them air < fat < soft < cancellous",
            )
        if self.csf_sleeve_mm < 0:
            raise SynthctError("csf_sleeve_mm must be >= 0", path="HUClasses.csf_sleeve_mm")


def tissue_map_from_ct(
    ct: CTVolume,
    labels: LabelMap | None = None,
    *,
    classes: HUClasses | None = None,
    label_groups: Mapping[str, tuple[int, ...]] = TOTALSEGMENTATOR_V2,
) -> LabelMap:
    """Classify every CT voxel into a :class:`~synthct.imaging.labels.Tissue`.

    Parameters
    ----------
    ct : CTVolume
        A CT in HU (checked).
    labels : LabelMap, optional
        Anatomical labels of the same patient (resampled onto the CT grid when needed). With
        ``label_groups``' spinal cord, the cord becomes ``SPINAL_CORD`` and a sleeve of
        soft-tissue voxels around it ``CSF``; labelled muscles become ``MUSCLE``; soft voxels
        inside labelled vertebrae become ``CANCELLOUS_BONE`` (marrow).
    classes : HUClasses, optional
        HU thresholds; defaults documented in the module docstring.
    label_groups : mapping
        Which label numbers mean vertebrae, spinal cord and muscle (TotalSegmentator v2 by
        default).

    Returns
    -------
    LabelMap
        Tissue labels on the CT grid, with names.
    """
    check_hounsfield(ct)
    c = classes or HUClasses()
    hu = ct.array
    tissue = np.full(hu.shape, Tissue.SOFT_TISSUE, dtype=np.uint8)
    tissue[hu < c.fat_below_hu] = Tissue.SUBCUTANEOUS_FAT
    tissue[hu < c.air_below_hu] = Tissue.AIR
    tissue[hu >= c.soft_below_hu] = Tissue.CANCELLOUS_BONE
    tissue[hu >= c.cancellous_below_hu] = Tissue.CORTICAL_BONE
    if labels is not None:
        on_ct = labels if labels.same_geometry(ct) else resample_to(labels, ct)
        soft = tissue == Tissue.SOFT_TISSUE
        muscle = on_ct.mask(label_groups.get("muscle", ()))
        tissue[muscle & soft] = Tissue.MUSCLE
        vertebra = on_ct.mask(label_groups.get("vertebrae", ()))
        _check_labels_fit(hu, vertebra, labels, ct)
        tissue[vertebra & (soft | (tissue == Tissue.SUBCUTANEOUS_FAT))] = Tissue.CANCELLOUS_BONE
        cord = on_ct.mask(label_groups.get("spinal_cord", ()))
        if cord.any():
            sleeve = _dilate_mm(cord, ct.geometry, c.csf_sleeve_mm) & ~cord
            tissue[sleeve & soft & ~vertebra] = Tissue.CSF
            tissue[cord] = Tissue.SPINAL_CORD
    names = {int(t): t.name.lower() for t in Tissue if np.any(tissue == t)}
    return LabelMap(tissue, ct.affine, source=ct.source, label_names=names)


#: Median HU that voxels labelled as vertebrae must reach for the labels to belong to the CT.
MIN_VERTEBRA_MEDIAN_HU = 80.0


def _check_labels_fit(
    hu: NDArray[np.generic], vertebra: NDArray[np.bool_], labels: LabelMap, ct: CTVolume
) -> None:
    """Refuse labels that do not sit on this CT (wrong patient, or a header that moved)."""
    if not vertebra.any():
        return
    median = float(np.median(np.asarray(hu[vertebra], dtype=np.float64)))
    if median < MIN_VERTEBRA_MEDIAN_HU:
        raise VolumeKindError(
            f"the label map does not fit this CT: voxels labelled as vertebrae have a median of "
            f"{median:.0f} HU on it (bone is above {MIN_VERTEBRA_MEDIAN_HU:g} HU). They belong "
            "to another image, or one of the two headers places it wrongly in space",
            path=labels.source,
            fix=f"give the labels made for {ct.source or 'this CT'} (same grid and frame)",
        )


def _dilate_mm(mask: NDArray[np.bool_], geometry: Geometry, radius_mm: float) -> NDArray[np.bool_]:
    """Dilate by a ball of ``radius_mm`` (distance transform: anisotropic voxels honoured)."""
    if radius_mm <= 0:
        return mask.copy()
    distance = ndimage.distance_transform_edt(~mask, sampling=geometry.spacing_mm)
    return np.asarray(distance <= radius_mm)


class CTDerivedModel:
    """A tissue model that serves a CT-derived tissue map on any grid (nearest neighbour).

    Implements the ``TissueModel`` protocol of :mod:`synthct.phantom.model`: points outside the
    CT's field of view are air.
    """

    def __init__(self, tissue_map: LabelMap) -> None:
        self.tissue_map = tissue_map
        self._inverse = np.linalg.inv(tissue_map.affine)

    @classmethod
    def from_ct(
        cls, ct: CTVolume, labels: LabelMap | None = None, *, classes: HUClasses | None = None
    ) -> CTDerivedModel:
        """Classify ``ct`` (see :func:`tissue_map_from_ct`) and wrap the result."""
        return cls(tissue_map_from_ct(ct, labels, classes=classes))

    @property
    def geometry(self) -> Geometry:
        """The grid of the underlying CT."""
        return self.tissue_map.geometry

    def labels_on(self, geometry: Geometry) -> NDArray[np.uint8]:
        """Tissue labels at the voxel centres of ``geometry``."""
        # index(target) -> LPS -> index(tissue map), composed into one affine.
        to_source = self._inverse @ geometry.affine
        axes = [np.arange(n, dtype=np.float64) for n in geometry.shape]
        source_ijk = [
            np.rint(
                to_source[row, 0] * axes[0][:, None, None]
                + to_source[row, 1] * axes[1][None, :, None]
                + to_source[row, 2] * axes[2][None, None, :]
                + to_source[row, 3]
            ).astype(np.int64)
            for row in range(3)
        ]
        shape = self.tissue_map.spatial_shape
        inside = np.ones(geometry.shape, dtype=bool)
        for dim, idx in enumerate(source_ijk):
            inside &= (idx >= 0) & (idx < shape[dim])
            np.clip(idx, 0, shape[dim] - 1, out=idx)
        values = self.tissue_map.array[source_ijk[0], source_ijk[1], source_ijk[2]]
        return np.where(inside, values, np.uint8(Tissue.AIR)).astype(np.uint8)
