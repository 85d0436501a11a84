"""The non-learning baseline: tissue classes from the echoes, bulk HU with partial-volume cortex.

Rule (all thresholds and HU in :class:`BaselineParameters`):

1. **Air**: outside the MRI body mask (:func:`~synthct.synthesis.normalisation.body_mask_from_mri`).
2. The *opposed-phase* and *in-phase* echoes are the echoes whose fat-water phase
   ``2 pi df TE`` (``df = -3.4 ppm x 42.58 MHz/T x B0``) is closest to pi and to 0; without a
   protocol (or field strength) echo 1 is taken as opposed and echo 2 as in phase, the
   paper's order. Their ratio ``OP / IP`` is ~1 for pure water or pure fat and drops where
   water and fat share a voxel (marrow: fat fraction ~0.5 cancels), and where T2* is short.
3. **Bone (cortical)**: in-phase brightness (in-phase signal over its 99th percentile inside
   the body) below ``cortical_brightness_max``: dark on every echo inside the body (cortex has
   almost no MR-visible protons, PD ~0.05, T2* ~0.4 ms).
4. **Bone (marrow)**: ``OP / IP`` below ``marrow_ratio_max`` (water-fat cancellation of
   cancellous bone) in a region at least ``2 x marrow_opening_radius_mm`` across (a
   morphological opening; on voxels coarser than that radius the opening keeps every voxel)
   or within ``marrow_near_cortex_mm`` of cortex.
5. **Fat-water interface**: the other voxels with ``OP / IP`` below ``marrow_ratio_max``: a
   one-voxel layer where fat meets water tissue (skin fat against muscle, epidural fat against
   dura) cancels like marrow but is no bone; its HU is the mean of fat and soft tissue.
6. **Fat**: brightness above ``fat_brightness_min`` (fat is the brightest tissue of a T1-weighted
   spoiled gradient echo; the 99th percentile is fat signal).
7. **Soft tissue**: everything else inside the body (muscle, cord, CSF, discs...).

Later rules give way to earlier ones (a dark voxel is cortex whatever its ratio).

Bulk HU (:meth:`BaselineParameters.class_hu`) are the phantom tissue table's values
(:data:`synthct.imaging.tissues.TISSUES`, literature ranges of the BRIEF): air -1000, fat -100,
soft tissue 40, cancellous bone 350 and pure cortical bone 1850 HU.

**Partial-volume cortex** (:func:`cortical_fraction`): cortex is 1-2 mm thick, so most cortical
voxels also hold marrow or soft tissue. Cortex gives no signal at millisecond echo times, so a
voxel with cortical volume fraction ``f`` and the rest of tissue ``n`` has in-phase signal
``(1 - f) S_n``; hence ``f = 1 - S_IP / S_n``, with ``S_n`` the *local* in-phase signal of
tissue ``n`` (Gaussian-weighted mean of the voxels of that class, ``reference_sigma_mm``, away
from cortex: it follows the coil bias field). ``n`` is the voxel's own class, or for the dark
voxels of rule 3 the class with the most nearby voxels. The fraction is used on cortical
voxels and on fat, soft-tissue and marrow voxels within ``partial_volume_band_mm`` of them
(at least one voxel) where ``f`` reaches ``cortical_fraction_min`` (above noise and bias
residue), and the voxel's HU is the volume average ``f HU_cortex + (1 - f) HU_n``. A cortical
fraction of fat is missed where the rest of the voxel is as bright as soft tissue.

This is the "bulk density assignment" used in MR-only radiotherapy before deep learning, with
partial-volume modelling of the cortex; it has no uncertainty maps. Dark tissues that are not
bone (air in the body, flow voids, dense calcifications) are classified as (partial-volume)
cortical bone, long-T1 fluid and dense connective tissue are soft tissue, and cortex outside
the MRI body mask (where it meets the edge of the field of view) is air: that is what such a
baseline gets wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from synthct.imaging.labels import Tissue
from synthct.imaging.tissues import TISSUES
from synthct.synthesis.errors import SynthesisInputError
from synthct.synthesis.normalisation import body_mask_from_mri, check_mr_array
from synthct.synthesis.result import SynthesisResult
from synthct.synthesis.sliding_window import WindowProgress
from synthct.volume import MultiEchoMR, SyntheticCT

#: Main fat peak relative to water, ppm, and the proton gyromagnetic ratio (Hz/T).
FAT_SHIFT_PPM = -3.4
GYROMAGNETIC_RATIO_HZ_PER_T = 42.577478e6


class TissueClass(IntEnum):
    """Classes of the baseline (values of :func:`classify_tissues`)."""

    AIR = 0
    FAT = 1
    SOFT_TISSUE = 2
    MARROW_BONE = 3
    CORTICAL_BONE = 4
    FAT_WATER_INTERFACE = 5


#: Classes that can share a voxel with cortex (the ``n`` of the partial-volume rule).
NEIGHBOUR_CLASSES = (TissueClass.FAT, TissueClass.SOFT_TISSUE, TissueClass.MARROW_BONE)


@dataclass(frozen=True)
class BaselineParameters:
    """Thresholds of the classification, the partial-volume rule and the bulk HU of each class.

    HU come from the phantom's tissue table (:data:`synthct.imaging.tissues.TISSUES`), whose
    source strings cite the literature; nothing here is fitted to CT.
    """

    # Classification (rules 1-7 of the module docstring).
    marrow_ratio_max: float = 0.6  # OP/IP of water-fat cancellation; pure tissues are ~0.9-1.15
    cortical_brightness_max: float = 0.1  # cortex PD ~0.05 vs >= 0.2 for every other tissue
    fat_brightness_min: float = 0.7  # fat ~1, water tissues ~0.5-0.6 on T1-weighted SPGR
    brightness_percentile: float = 99.0
    body_threshold_fraction: float = 0.2
    marrow_opening_radius_mm: float = 1.2  # marrow spaces are mm wide; an interface, one voxel
    marrow_near_cortex_mm: float = 1.3  # marrow touching cortex (in-plane diagonal neighbours)
    # Partial-volume cortex (:func:`cortical_fraction`).
    reference_sigma_mm: float = 3.0  # local tissue signal: smaller than the bias field's scale
    reference_exclusion_mm: float = 1.0  # voxels touching cortex are partial volume: not refs
    partial_volume_band_mm: float = 1.6  # about two voxels around the dark cortex
    cortical_fraction_min: float = 0.15  # above MR noise (~2-3%) and bias residue of S_n
    # Bulk HU of pure tissue (phantom tissue table: BRIEF ranges).
    air_hu: float = TISSUES[Tissue.AIR].ct_hu
    fat_hu: float = TISSUES[Tissue.SUBCUTANEOUS_FAT].ct_hu
    soft_tissue_hu: float = TISSUES[Tissue.SOFT_TISSUE].ct_hu
    marrow_bone_hu: float = TISSUES[Tissue.CANCELLOUS_BONE].ct_hu
    cortical_bone_hu: float = TISSUES[Tissue.CORTICAL_BONE].ct_hu  # pure cortex, not a PV mean

    def class_hu(self) -> NDArray[np.float32]:
        """Lookup table: HU of each :class:`TissueClass` value (pure tissue, no partial volume)."""
        return np.array(
            [
                self.air_hu,
                self.fat_hu,
                self.soft_tissue_hu,
                self.marrow_bone_hu,
                self.cortical_bone_hu,
                (self.fat_hu + self.soft_tissue_hu) / 2,
            ],
            dtype=np.float32,
        )


def opposed_and_in_phase(mr: MultiEchoMR) -> tuple[int, int]:
    """Indices of the echo closest to fat-water opposed phase and the one closest to in phase."""
    protocol = mr.protocol
    if protocol is None or protocol.field_strength_t is None:
        return 0, min(1, mr.n_echoes - 1)
    shift_hz = FAT_SHIFT_PPM * 1e-6 * GYROMAGNETIC_RATIO_HZ_PER_T * protocol.field_strength_t
    cosines = [np.cos(2 * np.pi * shift_hz * te * 1e-3) for te in protocol.echo_times_ms]
    opposed, in_phase = int(np.argmin(cosines)), int(np.argmax(cosines))
    if opposed == in_phase:
        return 0, mr.n_echoes - 1
    return opposed, in_phase


def _ball(
    radius_mm: float, spacing_mm: tuple[float, ...], *, whole_voxel: bool = False
) -> NDArray[np.bool_]:
    """Structuring element: the voxel offsets within ``radius_mm`` (spacing-aware).

    ``whole_voxel``: the radius is at least the largest voxel edge, so the ball holds the six
    face neighbours (for partial-volume layers, at least one voxel thick at any voxel size).
    """
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    if whole_voxel:
        radius_mm = max(float(radius_mm), float(spacing.max()))
    half = np.floor(radius_mm / spacing + 1e-9).astype(int)
    axes = [np.arange(-h, h + 1) * s for h, s in zip(half, spacing, strict=True)]
    grid = np.meshgrid(*axes, indexing="ij")
    return np.asarray(sum(g**2 for g in grid) <= radius_mm**2 + 1e-9)


def _in_phase_brightness(
    mr: MultiEchoMR, p: BaselineParameters
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.bool_]]:
    """Opposed-phase and in-phase echoes over the in-phase reference, and the body mask."""
    data = check_mr_array(mr.array, source=mr.source)
    body, _ = body_mask_from_mri(data, threshold_fraction=p.body_threshold_fraction)
    opposed, in_phase = opposed_and_in_phase(mr)
    ip = data[in_phase].astype(np.float32)
    reference = float(np.percentile(ip[body], p.brightness_percentile))
    if not reference > 0:
        raise SynthesisInputError(
            "the in-phase echo has no signal inside the body",
            path=mr.source,
            fix="check the echo order and that the echoes are magnitudes",
        )
    scale = np.float32(1.0 / reference)
    return data[opposed].astype(np.float32) * scale, ip * scale, body


def classify_tissues(
    mr: MultiEchoMR, parameters: BaselineParameters | None = None
) -> tuple[NDArray[np.uint8], NDArray[np.bool_]]:
    """Tissue class of every voxel (:class:`TissueClass`, rules of the module docstring).

    Parameters
    ----------
    mr : MultiEchoMR
        At least two echoes (see :func:`opposed_and_in_phase`).
    parameters : BaselineParameters, optional
        Thresholds; the defaults when omitted.

    Returns
    -------
    classes : (I, J, K) uint8 array
        :class:`TissueClass` values.
    body : (I, J, K) bool array
        The MRI body mask (everything outside is air).
    """
    p = parameters or BaselineParameters()
    op, brightness, body = _in_phase_brightness(mr, p)
    spacing = tuple(float(s) for s in mr.geometry.spacing_mm)
    ratio = op / np.maximum(brightness, np.float32(1e-3))
    classes = np.full(body.shape, TissueClass.SOFT_TISSUE, dtype=np.uint8)
    classes[brightness > p.fat_brightness_min] = TissueClass.FAT
    cortex = (brightness < p.cortical_brightness_max) & body
    cancels = (ratio < p.marrow_ratio_max) & ~cortex & body
    marrow = ndimage.binary_opening(cancels, _ball(p.marrow_opening_radius_mm, spacing))
    marrow |= cancels & ndimage.binary_dilation(cortex, _ball(p.marrow_near_cortex_mm, spacing))
    classes[cancels] = TissueClass.FAT_WATER_INTERFACE
    classes[marrow] = TissueClass.MARROW_BONE
    classes[cortex] = TissueClass.CORTICAL_BONE
    classes[~body] = TissueClass.AIR
    return classes, body


def cortical_fraction(
    mr: MultiEchoMR,
    classes: NDArray[np.uint8],
    parameters: BaselineParameters | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.uint8]]:
    """Cortical volume fraction of every voxel and the class of the tissue that shares it.

    ``f = 1 - S_IP / S_n`` (module docstring, partial-volume cortex): ``S_IP`` the voxel's
    in-phase signal, ``S_n`` the local in-phase signal of its neighbour class ``n``, a
    Gaussian-weighted (``reference_sigma_mm``) mean over the voxels of class ``n`` farther than
    ``reference_exclusion_mm`` from cortex. ``n`` is the voxel's own class, or for cortical
    voxels the class of :data:`NEIGHBOUR_CLASSES` with the largest local weight.

    Parameters
    ----------
    mr : MultiEchoMR
        The echoes that ``classes`` were computed from.
    classes : (I, J, K) uint8 array
        :func:`classify_tissues` of ``mr``.
    parameters : BaselineParameters, optional
        The defaults when omitted.

    Returns
    -------
    fraction : (I, J, K) float32 array
        In 0..1; 1 on cortical voxels darker than noise; 0 away from cortex, where ``f`` is below
        ``cortical_fraction_min``, and on air and fat-water interface voxels.
    neighbour : (I, J, K) uint8 array
        :class:`TissueClass` of the non-cortical part of each voxel (``classes`` except on
        cortical voxels).
    """
    p = parameters or BaselineParameters()
    _, ip, _ = _in_phase_brightness(mr, p)
    spacing = tuple(float(s) for s in mr.geometry.spacing_mm)
    sigma = [p.reference_sigma_mm / s for s in spacing]
    cortex = classes == TissueClass.CORTICAL_BONE
    near_cortex = ndimage.binary_dilation(
        cortex, _ball(p.reference_exclusion_mm, spacing, whole_voxel=True)
    )
    reference = np.zeros(ip.shape, dtype=np.float32)
    best_weight = np.full(ip.shape, -1.0, dtype=np.float32)
    neighbour = classes.copy()
    for cls in NEIGHBOUR_CLASSES:
        own = classes == cls
        pure = (own & ~near_cortex).astype(np.float32)
        weight = ndimage.gaussian_filter(pure, sigma)
        signal = ndimage.gaussian_filter(ip * pure, sigma) / np.maximum(weight, np.float32(1e-6))
        wins = cortex & (weight > best_weight)
        neighbour[wins] = cls
        best_weight[wins] = weight[wins]
        uses = own | wins
        reference[uses] = signal[uses]
    has_reference = (reference > 0) & np.isin(neighbour, NEIGHBOUR_CLASSES)
    fraction = np.zeros(ip.shape, dtype=np.float32)
    fraction[has_reference] = 1 - ip[has_reference] / reference[has_reference]
    np.clip(fraction, 0.0, 1.0, out=fraction)
    band = ndimage.binary_dilation(
        cortex, _ball(p.partial_volume_band_mm, spacing, whole_voxel=True)
    )
    keep = cortex | (band & (fraction >= p.cortical_fraction_min))
    fraction[~keep | ~has_reference] = 0.0
    # A dark voxel with no tissue of a neighbour class around it is pure cortex.
    fraction[cortex & ~has_reference] = 1.0
    neighbour[cortex & ~has_reference] = TissueClass.CORTICAL_BONE
    return fraction, neighbour


class BaselineSynthesizer:
    """Tissue classes to bulk HU with partial-volume cortex (module docstring), behind the
    synthesis interface."""

    name = "baseline (tissue classes to bulk HU)"

    def __init__(self, parameters: BaselineParameters | None = None) -> None:
        self.parameters = parameters or BaselineParameters()

    def synthesize(
        self,
        mr: MultiEchoMR,
        *,
        uncertainty: bool = False,
        progress: WindowProgress | None = None,
    ) -> SynthesisResult:
        """Bulk-HU sCT of ``mr``; the baseline has no uncertainty maps."""
        if uncertainty:
            raise SynthesisInputError(
                "the baseline gives no uncertainty maps",
                path="uncertainty",
                fix="use a trained model for uncertainty maps, or drop the request",
            )
        if not isinstance(mr, MultiEchoMR):
            raise SynthesisInputError(
                f"expected a multi-echo MRI, got a {getattr(mr, 'kind', type(mr).__name__)}",
                fix="read the echoes as MR (kind 'mr')",
            )
        p = self.parameters
        classes, body = classify_tissues(mr, p)
        fraction, neighbour = cortical_fraction(mr, classes, p)
        sct = fraction * np.float32(p.cortical_bone_hu) + (1 - fraction) * p.class_hu()[neighbour]
        sct[~body] = np.float32(p.air_hu)
        if progress is not None:
            progress(1, 1)
        source = f"baseline from {mr.source}" if mr.source else None
        return SynthesisResult(
            sct=SyntheticCT(sct.astype(np.float32, copy=False), mr.affine, source=source),
            body_mask=body,
        )
