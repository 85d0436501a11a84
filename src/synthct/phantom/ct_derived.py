"""CT-derived phantoms: a tissue map built from a real CT, so real anatomy can be simulated as MRI.

The tissue map comes from HU classes, refined by morphology and, where a TotalSegmentator label
map of the same CT is given, by its anatomical labels. The real CT stays the CT ground truth;
:class:`CTDerivedModel` serves the tissue map to the MRI renderer on any grid.

Dense objects apart from the body (the patient couch) are air in the tissue map
(:func:`~synthct.imaging.body_mask.external_objects`): MR does not see them.

HU classes (defaults; Hounsfield ranges from standard CT references, e.g. Kalender, *Computed
Tomography*, 3rd ed., 2011, ch. 1, and the tissue table in :mod:`synthct.imaging.tissues`):

========================  ==========================================
HU                        tissue
========================  ==========================================
< -300                    air: outside air, lung or bowel gas by morphology
                          (:mod:`synthct.phantom.air_regions`)
-300 .. -20               fat
-20 .. 150                soft tissue (muscle, organs, blood where labels say so)
150 .. 600                cancellous bone
>= 600                    cortical bone
========================  ==========================================

With labels (groups in :mod:`synthct.phantom.totalseg_groups`):

* labelled bones split into a cortical shell and trabecular bone whose marrow fat fraction
  follows from HU, in five fat-fraction bins (:mod:`synthct.phantom.bone_shell`,
  :mod:`synthct.imaging.marrow`);
* discs between adjacent labelled vertebral bodies, the spinal canal (CSF, epidural fat), the
  labelled cord with a CSF sleeve (:mod:`synthct.phantom.spine_columns`);
* labelled muscles, lung lobes (air part lung, vessels blood), bowel (gas), vessels (blood, at
  any contrast-enhanced HU below compact bone), heart, liver, spleen and kidneys.

Whatever the labels do not cover comes from HU alone; :class:`DerivedTissueMap` lists those
structures in ``hu_only`` and the generator logs them as a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from synthct.errors import SynthctError, VolumeKindError
from synthct.geometry import Geometry
from synthct.imaging.body_mask import external_objects
from synthct.imaging.labels import Tissue
from synthct.imaging.marrow import DEFAULT_MARROW, MarrowModel
from synthct.phantom.air_regions import classify_air
from synthct.phantom.bone_shell import BoneShellRule, split_bone
from synthct.phantom.label_grid import labels_on_ct_grid
from synthct.phantom.spine_columns import SpineColumns, cranial_axis
from synthct.phantom.totalseg_groups import ORGAN_TISSUES, STRUCTURES, TOTALSEGMENTATOR_V2
from synthct.volume import CTVolume, LabelMap, check_hounsfield

__all__ = [
    "TOTALSEGMENTATOR_V2",
    "CTDerivedModel",
    "DerivedTissueMap",
    "HUClasses",
    "derive_tissue_map",
    "tissue_map_from_ct",
]

_log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class DerivedTissueMap:
    """A CT-derived tissue map and what it was derived from.

    Attributes
    ----------
    tissue_map : LabelMap
        :class:`~synthct.imaging.labels.Tissue` labels on the CT grid.
    hu_only : tuple of str
        Structures (names from :data:`~synthct.phantom.totalseg_groups.STRUCTURES`) that no
        label covered, so they come from HU (and morphology) alone.
    notes : tuple of str
        What else the generator did on the way (e.g. resampled the labels).
    """

    tissue_map: LabelMap
    hu_only: tuple[str, ...]
    notes: tuple[str, ...] = field(default=())

    def fractions(self) -> dict[str, float]:
        """Fraction of the CT's voxels in each tissue present, by tissue name."""
        counts = np.bincount(self.tissue_map.array.ravel(), minlength=256)
        total = float(counts.sum())
        return {Tissue(int(v)).name.lower(): counts[v] / total for v in np.flatnonzero(counts)}


def derive_tissue_map(
    ct: CTVolume,
    labels: LabelMap | None = None,
    *,
    classes: HUClasses | None = None,
    label_groups: Mapping[str, tuple[int, ...]] = TOTALSEGMENTATOR_V2,
    bone_rule: BoneShellRule | None = None,
    marrow: MarrowModel = DEFAULT_MARROW,
) -> DerivedTissueMap:
    """Classify every CT voxel into a :class:`~synthct.imaging.labels.Tissue` (module docstring).

    Parameters
    ----------
    ct : CTVolume
        A CT in HU (checked).
    labels : LabelMap, optional
        Anatomical labels of the same CT. On another grid they are resampled by nearest
        neighbour when they cover the CT, and refused otherwise
        (:func:`~synthct.phantom.label_grid.labels_on_ct_grid`).
    classes : HUClasses, optional
        HU thresholds; defaults documented in the module docstring.
    label_groups : mapping
        Which label numbers form each group (TotalSegmentator v2 by default).
    bone_rule : BoneShellRule, optional
        Cortex/marrow thresholds inside labelled bones.
    marrow : MarrowModel
        HU to marrow fat fraction relation.

    Returns
    -------
    DerivedTissueMap
        The tissue map, the structures that came from HU alone and notes.

    Raises
    ------
    VolumeKindError
        When ``ct`` is not in HU, or the labelled vertebrae are not bone on this CT.
    GeometryMismatchError
        When the labels lie on a grid that does not cover the CT.
    """
    check_hounsfield(ct)
    c = classes or HUClasses()
    hu = ct.array
    tissue = np.full(hu.shape, Tissue.SOFT_TISSUE, dtype=np.uint8)
    tissue[hu < c.fat_below_hu] = Tissue.SUBCUTANEOUS_FAT
    tissue[hu >= c.soft_below_hu] = Tissue.CANCELLOUS_BONE
    tissue[hu >= c.cancellous_below_hu] = Tissue.CORTICAL_BONE
    air = hu < c.air_below_hu
    axis, _ = cranial_axis(ct.geometry)
    tissue[air] = classify_air(
        hu, air, voxel_volume_mm3=ct.geometry.voxel_volume_mm3, cranial_axis=axis
    )[air]
    from_labels: set[str] = set()
    notes: list[str] = []
    objects = external_objects(
        hu, air_below_hu=c.air_below_hu, voxel_volume_mm3=ct.geometry.voxel_volume_mm3
    )
    if objects.any():
        tissue[objects] = Tissue.AIR
        volume_ml = float(objects.sum()) * ct.geometry.voxel_volume_mm3 / 1000.0
        notes.append(
            f"{volume_ml:.0f} mL of dense objects apart from the body (patient couch) are air "
            "in the tissue map (no MR signal); the CT keeps them"
        )
    if labels is not None:
        on_ct, note = labels_on_ct_grid(labels, ct)
        if note:
            notes.append(note)
        from_labels = _apply_labels(tissue, hu, on_ct, ct, c, label_groups, bone_rule, marrow)
    hu_only = tuple(s for s in STRUCTURES if s not in from_labels)
    if hu_only:
        _log.warning(
            "CT-derived tissue map of %s: no labels for %s; these come from HU alone",
            ct.source or "the CT",
            ", ".join(hu_only),
        )
    names = {int(t): t.name.lower() for t in Tissue if np.any(tissue == t)}
    tissue_map = LabelMap(tissue, ct.affine, source=ct.source, label_names=names)
    return DerivedTissueMap(tissue_map, hu_only, tuple(notes))


def _apply_labels(
    tissue: NDArray[np.uint8],
    hu: NDArray[np.floating] | NDArray[np.integer],
    on_ct: LabelMap,
    ct: CTVolume,
    c: HUClasses,
    groups: Mapping[str, tuple[int, ...]],
    bone_rule: BoneShellRule | None,
    marrow: MarrowModel,
) -> set[str]:
    """Refine ``tissue`` in place with the label groups; return the structures they gave."""
    lab = on_ct.array
    group = {name: np.isin(lab, numbers) for name, numbers in groups.items()}
    air = hu < c.air_below_hu
    soft = (hu >= c.fat_below_hu) & (hu < c.soft_below_hu)
    below_compact = hu < c.cancellous_below_hu
    done: set[str] = set()

    def paint(name: str, where: NDArray[np.bool_], value: Tissue, structure: str) -> None:
        mask = group.get(name)
        if mask is not None and mask.any():
            tissue[mask & where] = value
            done.add(structure)

    paint("muscle", soft, Tissue.MUSCLE, "muscle")
    for name, value in ORGAN_TISSUES.items():
        # Vessels keep any contrast-enhanced HU; calcified plaque (compact-bone HU) stays bone.
        where = ~air if name == "vessels" else soft | (hu >= c.soft_below_hu)
        paint(name, where & below_compact, value, name)
    paint("lung", air, Tissue.LUNG, "lung")
    paint("lung", ~air & below_compact, Tissue.BLOOD, "lung")  # vessels inside the lobes
    paint("bowel", air, Tissue.BOWEL_GAS, "bowel gas")
    paint("airway", air, Tissue.AIR, "airway")  # tracheal air is air, like outside air
    vertebrae = groups.get("vertebrae", ())
    _check_labels_fit(hu, group.get("vertebrae", np.zeros(hu.shape, bool)), on_ct, ct)
    bone_mask = group.get("bone", np.zeros(hu.shape, bool))
    if bone_mask.any():
        bone = split_bone(
            hu, np.where(bone_mask, lab, 0), ct.geometry.spacing_mm, rule=bone_rule, marrow=marrow
        )
        tissue[bone_mask] = bone[bone_mask]
        done.add("bone (cortex vs marrow)")
    cord_numbers = groups.get("spinal_cord", ())
    spine = SpineColumns(
        lab, vertebrae, ct.geometry, cord_label=cord_numbers[0] if cord_numbers else None
    )
    discs = spine.discs(hu, other_bone=bone_mask)
    if discs.any():
        tissue[discs] = Tissue.DISC
        done.add("intervertebral discs")
    canal = spine.canal() & ~bone_mask & ~air
    if canal.any():
        tissue[canal] = np.where(hu[canal] < c.fat_below_hu, Tissue.EPIDURAL_FAT, Tissue.CSF)
        done.add("spinal canal")
    cord = group.get("spinal_cord", np.zeros(hu.shape, bool))
    if cord.any():
        sleeve = _dilate_mm(cord, ct.geometry, c.csf_sleeve_mm) & ~cord
        tissue[sleeve & soft & ~bone_mask & ~discs] = Tissue.CSF
        tissue[cord] = Tissue.SPINAL_CORD
        done.add("spinal cord")
    return done


def tissue_map_from_ct(
    ct: CTVolume,
    labels: LabelMap | None = None,
    *,
    classes: HUClasses | None = None,
    label_groups: Mapping[str, tuple[int, ...]] = TOTALSEGMENTATOR_V2,
) -> LabelMap:
    """The tissue map of :func:`derive_tissue_map` alone (same parameters).

    Returns
    -------
    LabelMap
        Tissue labels on the CT grid, with names.
    """
    return derive_tissue_map(ct, labels, classes=classes, label_groups=label_groups).tissue_map


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
    if radius_mm <= 0 or not mask.any():
        return mask.copy()
    # Only the mask's bounding box grown by the radius can change: transform that box alone.
    margin = [int(np.ceil(radius_mm / sp)) + 1 for sp in geometry.spacing_mm]
    found = np.argwhere(mask)
    lo = np.maximum(found.min(axis=0) - margin, 0)
    hi = np.minimum(found.max(axis=0) + 1 + np.asarray(margin), mask.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    distance = ndimage.distance_transform_edt(~mask[box], sampling=geometry.spacing_mm)
    out = np.zeros_like(mask)
    out[box] = distance <= radius_mm
    return out


class CTDerivedModel:
    """A tissue model that serves a CT-derived tissue map on any grid (nearest neighbour).

    Implements the ``TissueModel`` protocol of :mod:`synthct.phantom.model`: points outside the
    CT's field of view are air.
    """

    def __init__(self, tissue_map: LabelMap, *, hu_only: tuple[str, ...] = ()) -> None:
        self.tissue_map = tissue_map
        #: Structures the tissue map took from HU alone (see :class:`DerivedTissueMap`).
        self.hu_only = hu_only
        self._inverse = np.linalg.inv(tissue_map.affine)

    @classmethod
    def from_ct(
        cls, ct: CTVolume, labels: LabelMap | None = None, *, classes: HUClasses | None = None
    ) -> CTDerivedModel:
        """Classify ``ct`` (see :func:`tissue_map_from_ct`) and wrap the result."""
        derived = derive_tissue_map(ct, labels, classes=classes)
        return cls(derived.tissue_map, hu_only=derived.hu_only)

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
