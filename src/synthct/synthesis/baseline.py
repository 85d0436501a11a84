"""The non-learning baseline: tissue classes from the echoes, mapped to bulk HU.

Rule (all thresholds in :class:`BaselineParameters`):

1. **Air**: outside the MRI body mask (:func:`~synthct.synthesis.normalisation.body_mask_from_mri`).
2. The *opposed-phase* and *in-phase* echoes are the echoes whose fat-water phase
   ``2 pi df TE`` (``df = -3.4 ppm x 42.58 MHz/T x B0``) is closest to pi and to 0; without a
   protocol (or field strength) echo 1 is taken as opposed and echo 2 as in phase, the
   paper's order. Their ratio ``OP / IP`` is ~1 for pure water or pure fat and drops where
   water and fat share a voxel (marrow: fat fraction ~0.5 cancels), and where T2* is short.
3. **Bone (cortical)**: in-phase brightness (in-phase signal over its 99th percentile inside
   the body) below ``cortical_brightness_max``: dark on every echo inside the body (cortex has
   almost no MR-visible protons, PD ~0.05, T2* ~0.4 ms).
4. **Bone (marrow)**: ``OP / IP`` below ``marrow_ratio_max``: water-fat cancellation of
   cancellous bone.
5. **Fat**: brightness above ``fat_brightness_min`` (fat is the brightest tissue of a T1-weighted
   spoiled gradient echo; the 99th percentile is fat signal).
6. **Soft tissue**: everything else inside the body (muscle, cord, CSF, discs...).

Each class gets one HU value (:class:`BaselineParameters`; fat and soft tissue from the phantom's
tissue table, cancellous bone from the BRIEF's +300..+400 HU, cortex as the partial-volume
average of a 1-2 mm cortex at clinical voxel sizes). This is the "bulk density assignment" used
in MR-only radiotherapy before deep learning; it has no uncertainty maps. Dark tissues that are
not bone (air in the body, flow voids, dense calcifications) are classified as cortical bone,
and long-T1 fluid is soft tissue: that is what such a baseline gets wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from numpy.typing import NDArray

from synthct.synthesis.errors import SynthesisInputError
from synthct.synthesis.normalisation import body_mask_from_mri, check_mr_array
from synthct.synthesis.sliding_window import WindowProgress
from synthct.synthesis.synthesizer import SynthesisResult
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


@dataclass(frozen=True)
class BaselineParameters:
    """Thresholds of the classification and the bulk HU of each class."""

    marrow_ratio_max: float = 0.6
    cortical_brightness_max: float = 0.1
    fat_brightness_min: float = 0.7
    brightness_percentile: float = 99.0
    body_threshold_fraction: float = 0.2
    air_hu: float = -1000.0
    fat_hu: float = -100.0
    soft_tissue_hu: float = 40.0
    marrow_bone_hu: float = 350.0
    cortical_bone_hu: float = 1000.0

    def class_hu(self) -> NDArray[np.float32]:
        """Lookup table: HU of each :class:`TissueClass` value."""
        return np.array(
            [
                self.air_hu,
                self.fat_hu,
                self.soft_tissue_hu,
                self.marrow_bone_hu,
                self.cortical_bone_hu,
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


def classify_tissues(
    mr: MultiEchoMR, parameters: BaselineParameters | None = None
) -> tuple[NDArray[np.uint8], NDArray[np.bool_]]:
    """Tissue class of every voxel (:class:`TissueClass`) and the body mask."""
    p = parameters or BaselineParameters()
    data = check_mr_array(mr.array, source=mr.source)
    body, _ = body_mask_from_mri(data, threshold_fraction=p.body_threshold_fraction)
    opposed, in_phase = opposed_and_in_phase(mr)
    op = data[opposed].astype(np.float32)
    ip = data[in_phase].astype(np.float32)
    reference = float(np.percentile(ip[body], p.brightness_percentile))
    if not reference > 0:
        raise SynthesisInputError(
            "the in-phase echo has no signal inside the body",
            path=mr.source,
            fix="check the echo order and that the echoes are magnitudes",
        )
    brightness = ip / np.float32(reference)
    ratio = op / np.maximum(ip, np.float32(reference * 1e-3))
    classes = np.full(body.shape, TissueClass.SOFT_TISSUE, dtype=np.uint8)
    classes[brightness > p.fat_brightness_min] = TissueClass.FAT
    classes[ratio < p.marrow_ratio_max] = TissueClass.MARROW_BONE
    classes[brightness < p.cortical_brightness_max] = TissueClass.CORTICAL_BONE
    classes[~body] = TissueClass.AIR
    return classes, body


class BaselineSynthesizer:
    """Tissue classes to bulk HU (see the module docstring), behind the synthesis interface."""

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
        classes, body = classify_tissues(mr, self.parameters)
        sct = self.parameters.class_hu()[classes]
        if progress is not None:
            progress(1, 1)
        source = f"baseline from {mr.source}" if mr.source else None
        return SynthesisResult(sct=SyntheticCT(sct, mr.affine, source=source), body_mask=body)
