"""Tissue classes of an sCT and the MRI signal envelope they allow.

An sCT says which tissue is where only through its HU. The classes here are HU bands (air,
fat, fluid, soft tissue, cancellous and cortical bone), each with the MR properties of tissues
of the table (:mod:`synthct.imaging.tissues`) and the spoiled gradient-echo equation
(:func:`synthct.imaging.signal_equation.spgr_signal`). :func:`predicted_envelope` gives, voxel
by voxel, the lowest and highest echo magnitude that the voxel's class, or a two-class
partial-volume mixture of classes present around it, could produce (the method is described in
:mod:`synthct.audit.mri_consistency`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from synthct.imaging.labels import LESION_TISSUES, MARROW_TISSUES, Tissue
from synthct.imaging.signal_equation import spgr_signal
from synthct.imaging.tissues import TISSUES
from synthct.volume import MRProtocol

_F32 = NDArray[np.float32]


@dataclass(frozen=True)
class TissueClass:
    """An HU band of the sCT and the tissue whose MR properties it takes.

    Attributes
    ----------
    name : str
        Class name.
    tissue : Tissue
        Row of the tissue table giving PD, fat fraction and relaxation (the class's signal in
        partial-volume mixtures).
    hu_low, hu_high : float
        The band: the class alone (no partial volume) within these HU.
    members : tuple of Tissue
        Other tissues of the band; a voxel of the class may show any signal between the
        lowest and the highest of them (HU cannot tell muscle from cord or disc).
    """

    name: str
    tissue: Tissue
    hu_low: float
    hu_high: float
    members: tuple[Tissue, ...] = ()

    @property
    def hu_mixing(self) -> float:
        """HU of the pure class in a mixture (the tissue table's)."""
        return float(TISSUES[self.tissue].ct_hu)


def table_class(
    name: str,
    tissue: Tissue,
    hu_band: tuple[float, float] | None = None,
    *,
    group: tuple[Tissue, ...] = (),
    exclude: frozenset[Tissue] = frozenset(),
    texture_sds: float = 2.0,
) -> TissueClass:
    """A class whose band and members come from the tissue table.

    Parameters
    ----------
    name : str
        Class name.
    tissue : Tissue
        The tissue whose signal the class takes in mixtures (its table HU is the mixing HU).
    hu_band : tuple of 2 float, optional
        The band. Without it: the span of the table HU of ``group`` when given, else the
        tissue's table HU +- ``texture_sds`` of its texture SD.
    group : tuple of Tissue
        The class's tissues when they are a known group (the marrow fat-fraction bins); the
        members are then exactly these.
    exclude : frozenset of Tissue
        Tissues that belong to another class's group and never join this one.
    texture_sds : float
        Half-width of a band made from the texture SD, in SDs.

    Returns
    -------
    TissueClass
        With members: ``group``, or every normal (non-lesion) tissue of the table whose HU
        lies in the band (HU cannot tell them apart, so any of their signals is allowed).
    """
    if group:
        hus = [TISSUES[t].ct_hu for t in group]
        band = hu_band or (float(min(hus)), float(max(hus)))
        members = tuple(t for t in group if t != tissue)
    else:
        props = TISSUES[tissue]
        half = texture_sds * props.ct_texture_sd_hu
        band = hu_band or (props.ct_hu - half, props.ct_hu + half)
        members = tuple(
            t
            for t, p in TISSUES.items()
            if t != tissue
            and t not in LESION_TISSUES
            and t not in exclude
            and band[0] <= p.ct_hu <= band[1]
        )
    return TissueClass(name, tissue, float(band[0]), float(band[1]), members)


_MARROW = frozenset(MARROW_TISSUES)

#: The classes: bands around the table HU of air, lung, fat, CSF, muscle, marrow, cancellous
#: and cortical bone; members are the table's normal tissues within each band (air holds bowel
#: gas; soft tissue, 20-130 HU, holds muscle, viscera, blood, heart, cord, disc, ligament and
#: dura, whose signals differ). Lung is -850 HU +- 2 texture SDs; marrow spans the HU of the
#: marrow fat-fraction bins (108-208 HU) and overlaps soft tissue: a voxel in two bands may
#: hold either class. Between bands a voxel is a mixture.
DEFAULT_CLASSES: tuple[TissueClass, ...] = (
    table_class("air", Tissue.AIR, (-1100.0, -900.0)),
    table_class("lung", Tissue.LUNG),
    table_class("fat", Tissue.SUBCUTANEOUS_FAT, (-200.0, -40.0)),
    table_class("fluid", Tissue.CSF, (-5.0, 15.0)),
    table_class("soft_tissue", Tissue.MUSCLE, (20.0, 130.0), exclude=_MARROW),
    table_class("marrow", Tissue.MARROW_FF50, group=MARROW_TISSUES),
    table_class("cancellous_bone", Tissue.CANCELLOUS_BONE, (250.0, 500.0)),
    table_class("cortical_bone", Tissue.CORTICAL_BONE, (1200.0, 4000.0)),
)


def class_signals(
    protocol: MRProtocol, classes: tuple[TissueClass, ...] = DEFAULT_CLASSES
) -> NDArray[np.complex128]:
    """Complex signal of each class on each echo, shape ``(n_echoes, n_classes)``."""
    assert protocol.field_strength_t is not None
    assert protocol.repetition_time_ms is not None and protocol.flip_angle_deg is not None
    props = [TISSUES[c.tissue] for c in classes]
    relax = [p.relaxation(float(protocol.field_strength_t)) for p in props]
    return spgr_signal(
        proton_density=[p.proton_density for p in props],
        fat_fraction=[p.fat_fraction for p in props],
        t1_ms=[r.t1_ms for r in relax],
        t2star_water_ms=[r.t2star_water_ms for r in relax],
        t2star_fat_ms=[r.t2star_fat_ms for r in relax],
        t1_fat_ms=[r.t1_fat_ms for r in relax],
        echo_times_ms=protocol.echo_times_ms,
        repetition_time_ms=float(protocol.repetition_time_ms),
        flip_angle_deg=float(protocol.flip_angle_deg),
        field_strength_t=float(protocol.field_strength_t),
    )


def class_intervals(
    protocol: MRProtocol, classes: tuple[TissueClass, ...] = DEFAULT_CLASSES
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Lowest and highest magnitude of each class's tissues, shape ``(n_echoes, n_classes)``."""
    base = np.abs(class_signals(protocol, classes))
    lo, hi = base.copy(), base.copy()
    for c, cls in enumerate(classes):
        if not cls.members:
            continue
        extra = [TissueClass(cls.name, t, cls.hu_low, cls.hu_high) for t in cls.members]
        members = np.abs(class_signals(protocol, tuple(extra)))
        lo[:, c] = np.minimum(lo[:, c], members.min(axis=1))
        hi[:, c] = np.maximum(hi[:, c], members.max(axis=1))
    return lo.astype(np.float32), hi.astype(np.float32)


def window_size(spacing_mm: tuple[float, float, float], radius_mm: float) -> tuple[int, int, int]:
    """Edge of the box filter covering ``radius_mm`` around a voxel (at least 3 voxels)."""
    r = [max(1, round(radius_mm / s)) for s in spacing_mm]
    return (2 * r[0] + 1, 2 * r[1] + 1, 2 * r[2] + 1)


def predicted_envelope(
    hu: _F32,
    raw_hu: NDArray[Any],
    protocol: MRProtocol,
    spacing_mm: tuple[float, float, float],
    *,
    classes: tuple[TissueClass, ...] = DEFAULT_CLASSES,
    radius_mm: float = 1.0,
    hu_tolerance_sd: float = 1.0,
) -> tuple[_F32, _F32]:
    """Lowest and highest magnitude per echo that tissue mixtures compatible with ``hu`` allow.

    Parameters
    ----------
    hu : (I, J, K) ndarray
        The smoothed sCT in HU.
    raw_hu : (I, J, K) ndarray
        The sCT before smoothing (thin structures keep their class there).
    protocol : MRProtocol
        A complete protocol (:func:`~synthct.audit.inputs.signal_protocol`).
    spacing_mm : tuple of 3 float
        Voxel size.
    classes : tuple of TissueClass
        The HU bands.
    radius_mm : float
        Neighbourhood in which classes count as present (at least one voxel).
    hu_tolerance_sd : float
        Allowed HU error, in local standard deviations of ``hu``.

    Returns
    -------
    lo, hi : (n_echoes, I, J, K) ndarray of float32
        Envelope before the spatial widening and the gain (signal units: water = 1).
    """
    signals = class_signals(protocol, classes).astype(np.complex64)
    size = window_size(spacing_mm, radius_mm)
    mean = ndimage.uniform_filter(hu, size)
    mean_sq = ndimage.uniform_filter(hu * hu, size)
    delta = np.float32(hu_tolerance_sd) * np.sqrt(np.maximum(mean_sq - mean * mean, 0))
    del mean, mean_sq
    hu_lo, hu_hi = hu - delta, hu + delta
    del delta
    own, present = _classes_present(hu, raw_hu, classes, size)
    own_lo, own_hi = class_intervals(protocol, classes)
    # Each class's complex signal scaled to its darkest and brightest tissue (phase kept).
    size_of = np.abs(signals)
    unit = np.where(size_of > 0, signals / np.maximum(size_of, 1e-30), 0).astype(np.complex64)
    dark, bright = unit * own_lo, unit * own_hi
    # A voxel in two overlapping bands (marrow and soft tissue) may be either class.
    lo = np.stack([own_lo[e][own[0]] for e in range(signals.shape[0])])
    hi = np.stack([own_hi[e][own[0]] for e in range(signals.shape[0])])
    for also in own[1:]:
        for e in range(signals.shape[0]):
            lo[e] = np.minimum(lo[e], own_lo[e][also])
            hi[e] = np.maximum(hi[e], own_hi[e][also])
    mix_hu = [c.hu_mixing for c in classes]
    order = np.argsort(mix_hu)
    for ia, a in enumerate(order):
        for b in order[ia + 1 :]:
            ha, hb = mix_hu[a], mix_hu[b]
            valid = present[a] & present[b] & (hu_hi >= ha) & (hu_lo <= hb)
            if not valid.any():
                continue
            f0 = np.clip((hu_lo[valid] - ha) / (hb - ha), 0, 1)
            f1 = np.clip((hu_hi[valid] - ha) / (hb - ha), 0, 1)
            for e in range(signals.shape[0]):
                # Lowest mixtures from each class's darkest tissue, highest from the brightest.
                sa, sb = dark[e, a], dark[e, b]
                d = sb - sa
                # The point of the segment sa + f d closest to 0 gives the lowest magnitude.
                f_star = np.clip(-(np.conj(d) * sa).real / max(abs(d) ** 2, 1e-30), f0, f1)
                m0, m1, ms = (np.abs(sa + f * d) for f in (f0, f1, f_star))
                lo[e][valid] = np.minimum(lo[e][valid], np.minimum(np.minimum(m0, m1), ms))
                sa, sb = bright[e, a], bright[e, b]
                d = sb - sa
                m0, m1 = (np.abs(sa + f * d) for f in (f0, f1))
                hi[e][valid] = np.maximum(hi[e][valid], np.maximum(m0, m1))
    return lo, hi


def _classes_present(
    hu: _F32, raw_hu: NDArray[Any], classes: tuple[TissueClass, ...], size: tuple[int, int, int]
) -> tuple[list[NDArray[np.uint8]], list[NDArray[np.bool_]]]:
    """Each voxel's own classes and, per class, whether it occurs within the window.

    The own class is the band nearest to the smoothed HU; where bands overlap, every band
    holding the HU gives one (the first array is the nearest, the others repeat it where a
    voxel lies in one band only). A class occurs at a voxel when the
    raw or the smoothed HU lies in its band, or when the smoothed HU lies in no band and
    between the class's mixing HU and that of the next class (a partial-volume voxel holds
    both). Noise around a band's centre does not make its neighbours occur.
    """
    band_lo = np.array([c.hu_low for c in classes], dtype=np.float32)
    band_hi = np.array([c.hu_high for c in classes], dtype=np.float32)
    distance = np.stack(
        [np.maximum(np.maximum(band_lo[c] - hu, hu - band_hi[c]), 0) for c in range(len(classes))]
    )
    own = [np.argmin(distance, axis=0).astype(np.uint8)]
    for c in range(len(classes)):
        # classes whose band overlaps another's: where the voxel is in both, it may be either
        if any(
            d != c
            and classes[d].hu_low <= classes[c].hu_high
            and classes[c].hu_low <= classes[d].hu_high
            for d in range(len(classes))
        ):
            own.append(np.where(distance[c] == 0, np.uint8(c), own[0]).astype(np.uint8))
    del distance
    mixing = np.array([c.hu_mixing for c in classes])
    order = np.argsort(mixing)
    sorted_hu = mixing[order]
    # Index (in mixing order) of the class at or below each voxel's HU, and the one above.
    below = np.clip(np.searchsorted(sorted_hu, hu, side="right") - 1, 0, len(classes) - 1)
    above = np.clip(below + 1, 0, len(classes) - 1)
    in_band = [(hu >= band_lo[c]) & (hu <= band_hi[c]) for c in range(len(classes))]
    between = ~np.logical_or.reduce(in_band)
    present = []
    for c in range(len(classes)):
        rank = int(np.flatnonzero(order == c)[0])
        here = (raw_hu >= band_lo[c]) & (raw_hu <= band_hi[c])
        here |= in_band[c]
        here |= between & ((below == rank) | (above == rank))
        present.append(ndimage.maximum_filter(here, size))
    return own, present
