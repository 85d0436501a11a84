"""Small known-answer phantoms for the audit tests: CT, MRI and sCTs rendered from shapes.

A 96 x 96 x 48 mm block at 1.5 mm (64 x 64 x 32 voxels) holds subcutaneous fat, muscle, a
cancellous "vertebral body" and a CSF-filled "canal" (a cylinder along S). The lesion is a
dense calcification (a sphere of the CALCIFICATION tissue, 1400 HU, PD 0.08, T2* 0.6 ms) in
the canal. The failure sCT is the CT of the same phantom without the lesion (CSF there),
rendered with the same seed, so it equals the CT everywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthct.geometry import Geometry
from synthct.imaging.labels import Tissue
from synthct.phantom.ct import render_ct
from synthct.phantom.model import Box, Cylinder, ShapesModel, Sphere
from synthct.phantom.mri import render_ct_and_mri
from synthct.phantom.protocols import FAST_3T
from synthct.volume import CTVolume, MultiEchoMR, SyntheticCT

VOXEL_MM = 1.5
SHAPE = (64, 64, 32)
CANAL_CENTRE_LPS_MM = (0.0, 20.0, 0.0)
LESION_CENTRE_LPS_MM = (0.0, 20.0, 0.0)
LESION_RADIUS_MM = 4.5
SEED = 7


def grid() -> Geometry:
    """The test grid, centred on the origin, axes along L, P, S."""
    origin = [-(n - 1) * VOXEL_MM / 2.0 for n in SHAPE]
    return Geometry.from_parameters(SHAPE, (VOXEL_MM,) * 3, origin)


def shapes(lesion: bool) -> ShapesModel:
    """The phantom, with or without the calcified lesion in the canal."""
    parts = [
        Box(tissue=Tissue.SUBCUTANEOUS_FAT, center_lps_mm=(0, 0, 0), size_mm=(84, 84, 60)),
        Box(tissue=Tissue.MUSCLE, center_lps_mm=(0, 0, 0), size_mm=(70, 70, 60)),
        Box(tissue=Tissue.CANCELLOUS_BONE, center_lps_mm=(0, -10, 0), size_mm=(24, 16, 60)),
        Cylinder(
            tissue=Tissue.CSF, center_lps_mm=CANAL_CENTRE_LPS_MM, radius_mm=9.0, length_mm=60.0
        ),
    ]
    if lesion:
        parts.append(
            Sphere(
                tissue=Tissue.CALCIFICATION,
                center_lps_mm=LESION_CENTRE_LPS_MM,
                radius_mm=LESION_RADIUS_MM,
            )
        )
    return ShapesModel(parts, background=Tissue.AIR)


@dataclass(frozen=True)
class ShapesCase:
    """CT, MRI, correct and failure sCT, and the lesion mask of one rendering."""

    ct: CTVolume
    mr: MultiEchoMR
    failure: SyntheticCT
    lesion: np.ndarray


def shapes_case(lesion: bool = True, *, seed: int = SEED) -> ShapesCase:
    """Render the phantom (CT, two-echo MRI of the paper's 3 T contrast)."""
    g = grid()
    model = shapes(lesion)
    ct, mr = render_ct_and_mri(model, g, FAST_3T, supersample=2, seed=seed)
    clean = render_ct(shapes(False), g, supersample=2, seed=seed)
    failure = SyntheticCT(clean.array, clean.affine, source="failure sCT")
    mask = model.labels_on(g) == Tissue.CALCIFICATION
    return ShapesCase(ct=ct, mr=mr, failure=failure, lesion=mask)
