"""Small synthetic validation cases for the report tests: a calcified lesion in CSF.

The CT holds a sphere of known HU in a 10 HU background with noise; the "missed" sCT shows CSF
only (the paper's finding), the "faithful" sCT is the CT with other noise. The two-echo MRI
shows the lesion dark. Lesions are measured with the real ``measure_lesion``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthct.geometry import Geometry
from synthct.validation.lesion_metrics import LesionResult, measure_lesion
from synthct.volume import CTVolume, LabelMap, MRProtocol, MultiEchoMR, SyntheticCT

CSF_HU = 10.0
NOISE_SD_HU = 10.0


@dataclass(frozen=True)
class Case:
    """One synthetic case and its measured lesion."""

    ct: CTVolume
    sct: SyntheticCT
    mri: MultiEchoMR
    labels: LabelMap
    center_lps_mm: np.ndarray
    result: LesionResult


def make_case(
    *,
    lesion_hu: float = 600.0,
    radius_mm: float = 4.0,
    missed: bool = True,
    seed: int = 0,
    spacing_mm: tuple[float, float, float] = (0.8, 0.8, 1.0),
    shape: tuple[int, int, int] = (36, 36, 28),
) -> Case:
    """A CT/sCT/MRI case with one spherical lesion (label 1) in the middle of the grid."""
    geometry = Geometry.from_parameters(shape, spacing_mm, origin_lps_mm=(-14.0, -12.0, 40.0))
    index = np.indices(shape).reshape(3, -1).T
    center = geometry.index_to_lps((np.asarray(shape) - 1) / 2 + 0.3)
    distance = np.linalg.norm(geometry.index_to_lps(index) - center, axis=1).reshape(shape)
    inside = distance <= radius_mm
    rng = np.random.default_rng(seed)
    ct_values = np.where(inside, lesion_hu, CSF_HU) + rng.normal(0, NOISE_SD_HU, shape)
    ct = CTVolume(ct_values.astype(np.float32), geometry.affine)
    if missed:
        sct_values = CSF_HU + rng.normal(0, NOISE_SD_HU, shape)
    else:
        sct_values = np.where(inside, lesion_hu, CSF_HU) + rng.normal(0, NOISE_SD_HU, shape)
    sct = SyntheticCT(sct_values.astype(np.float32), geometry.affine)
    echo1 = np.where(inside, 80.0, 300.0) + rng.normal(0, 10, shape)
    echo2 = np.where(inside, 30.0, 280.0) + rng.normal(0, 10, shape)
    mri = MultiEchoMR(
        np.stack([echo1, echo2]).astype(np.float32),
        geometry.affine,
        protocol=MRProtocol(echo_times_ms=(2.3, 4.6), repetition_time_ms=7.0),
    )
    labels = LabelMap(inside.astype(np.uint8), geometry.affine, label_names={1: "meningioma"})
    result = measure_lesion(ct, sct, labels, lesion_id=1, mri=mri)
    return Case(ct, sct, mri, labels, center, result)
