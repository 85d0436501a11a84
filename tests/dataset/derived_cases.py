"""Helpers: datasets built from the real CTs: CT-derived cases with MR and CT on different grids.

Each source case is a crop of a real CT (../shared/data/real/totalsegmentator) with its
multi-echo MRI simulated from it (:func:`synthct.phantom.ct_insertion.write_ct_derived_case`);
the MRI is then resampled onto its own coarser, smaller grid and the CT's header moved by the
known rigid transform :data:`KNOWN_OFFSET` (4 degrees about S, 5/-3/4 mm), so MR and CT differ
as unregistered scans do. Two cases are broken on purpose: ``wrong01`` carries another
patient's MRI, ``far01`` an MRI 600 mm away from its CT.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synthct.geometry import Geometry
from synthct.io import read_volume
from synthct.phantom.ct_insertion import write_ct_derived_case
from synthct.resample import resample_to
from synthct.volume import CTVolume, MultiEchoMR


def rigid(angle_deg: float, shift_mm: tuple[float, float, float], about: np.ndarray) -> np.ndarray:
    """4x4 LPS rotation about S by ``angle_deg`` around ``about``, then a shift."""
    t = np.radians(angle_deg)
    rotation = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = about - rotation @ about + np.asarray(shift_mm)
    return matrix


#: Rotation (degrees about S) and shift (mm) applied to every CT header, about the CT's centre.
KNOWN_OFFSET = (4.0, (5.0, -3.0, 4.0))


def crop(ct: CTVolume, centre_fraction: tuple[float, float, float], half: int) -> CTVolume:
    """A cube of ``2 * half`` voxels of ``ct`` around a fractional centre."""
    centre = [int(f * n) for f, n in zip(centre_fraction, ct.spatial_shape, strict=True)]
    shape = ct.spatial_shape
    starts = [min(max(0, c - half), n - 2 * half) for c, n in zip(centre, shape, strict=True)]
    region = tuple(slice(s, s + 2 * half) for s in starts)
    affine = ct.affine.copy()
    affine[:3, 3] = ct.geometry.index_to_lps(starts)
    return CTVolume(ct.array[region], affine)


def derived_pair(ct: CTVolume, work: Path) -> tuple[MultiEchoMR, CTVolume]:
    """The CT-derived MRI (2 echoes, on the CT grid) and CT of ``ct``."""
    folder = write_ct_derived_case(ct, work, supersample=1)
    mr = read_volume(folder / "case-000" / "mr_echo-1.nii.gz", kind="mr")
    mr2 = read_volume(folder / "case-000" / "mr_echo-2.nii.gz", kind="mr")
    out_ct = read_volume(folder / "case-000" / "ct.nii.gz", kind="ct")
    assert isinstance(mr, MultiEchoMR) and isinstance(mr2, MultiEchoMR)
    assert isinstance(out_ct, CTVolume)
    both = MultiEchoMR(np.concatenate([mr.array, mr2.array]), mr.affine, protocol=None)
    return both, out_ct


def own_mr_grid(mr: MultiEchoMR) -> MultiEchoMR:
    """The MRI on its own grid: 1.3 x 1.3 x 2 times coarser, 80 % of the field of view."""
    g = mr.geometry
    factors = np.array([1.3, 1.3, 2.0])
    spacing = np.asarray(g.spacing_mm) * factors
    shape = np.maximum(4, (0.8 * np.asarray(g.shape) / factors).astype(int))
    centre = g.index_to_lps((np.asarray(g.shape) - 1) / 2)
    affine = np.eye(4)
    affine[:3, :3] = g.direction * spacing
    affine[:3, 3] = centre - affine[:3, :3] @ ((shape - 1) / 2)
    return resample_to(mr, Geometry(tuple(int(n) for n in shape), affine))


def move_header(ct: CTVolume, matrix: np.ndarray) -> CTVolume:
    """The same voxels with the affine moved by ``matrix`` (LPS)."""
    return CTVolume(ct.array, matrix @ ct.affine)
