"""Helpers: tiny MR/CT pairs with known values, written in the SynthRAD layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synthct.io import write_volume
from synthct.volume import CTVolume, LabelMap, MultiEchoMR, ScalarVolume

SHAPE = (20, 20, 16)
SPACING_MM = 2.0
BODY_HU = 40.0
MR_VALUES = (100.0, 200.0, 300.0)


def body(shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    """A centred ellipsoid filling most of the grid."""
    idx = np.indices(shape, dtype=np.float64)
    centre = (np.asarray(shape) - 1) / 2
    r = sum(((idx[a] - centre[a]) / (0.4 * shape[a])) ** 2 for a in range(3))
    return np.asarray(r <= 1.0)


def affine(origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """Axis-aligned LPS affine with 2 mm voxels."""
    a = np.diag([SPACING_MM, SPACING_MM, SPACING_MM, 1.0])
    a[:3, 3] = origin_mm
    return a


def write_pair(
    folder: Path,
    *,
    channels: int = 2,
    mr_origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
    mask: bool = True,
    seed: int = 0,
    mr_as_ct: bool = False,
) -> Path:
    """``folder/{ct,mr,mask}.nii.gz``: CT air -1000 HU, body ``BODY_HU`` plus a seeded blob;
    MR channel c = ``MR_VALUES[c]`` in the body, 0 outside (several channels: ``mr_<c>``)."""
    folder.mkdir(parents=True)
    inside = body()
    rng = np.random.default_rng(seed)
    ct = np.where(inside, BODY_HU, -1000.0).astype(np.float32)
    blob = rng.integers(4, 14, size=3)  # a bright voxel block that differs per seed
    ct[blob[0] : blob[0] + 2, blob[1] : blob[1] + 2, blob[2] : blob[2] + 2] = 700.0
    ct_volume = CTVolume(ct, affine())
    mr = np.stack([np.where(inside, v, 0.0) for v in MR_VALUES[:channels]]).astype(np.float32)
    mr[:, 0, 0, seed % SHAPE[2]] = 1.0 + seed  # outside the body: MR voxels differ per seed
    if mr_as_ct:  # an MR image (non-negative magnitudes) where the CT should be
        write_volume(ScalarVolume(mr[0], affine()), folder / "ct.nii.gz")
    else:
        write_volume(ct_volume, folder / "ct.nii.gz")
    if channels == 1:
        write_volume(MultiEchoMR(mr, affine(mr_origin_mm)), folder / "mr.nii.gz")
    else:
        for c in range(channels):
            write_volume(
                MultiEchoMR(mr[c : c + 1], affine(mr_origin_mm)), folder / f"mr_{c + 1}.nii.gz"
            )
    if mask:
        write_volume(LabelMap(inside.astype(np.uint8), affine()), folder / "mask.nii.gz")
    return folder
