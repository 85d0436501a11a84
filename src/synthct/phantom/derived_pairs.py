"""Paired MR/CT cases from real CTs, on different grids and with a known rigid offset.

A test bed for dataset QA and registration with known answers: each case is a crop of a real
CT with its multi-echo MRI simulated from it
(:func:`synthct.phantom.ct_insertion.write_ct_derived_case`); the MRI is resampled onto its own
grid (coarser by :attr:`PairSpec.mr_coarsening`, a fraction of the field of view), and the
CT's header is moved by a known rigid transform about the CT's centre, as scans that were
never registered are. A case may carry another case's MRI (centred
on its own CT: an MR of the wrong patient) or an MRI shifted far away (no overlap).

The cases are written as ``<case>/{ct,mr}.nii.gz`` with a manifest (:mod:`synthct.manifest`)
whose extra columns record the truth: ``offset_rotation_deg`` (about S), ``offset_shift_mm``,
``mr_shift_mm`` (how far the MRI's header was moved from the anatomy it shows) and ``mr_of``
(whose MRI the case holds).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from synthct.case import Case
from synthct.geometry import Geometry
from synthct.manifest import Manifest, write_manifest
from synthct.volume import CTVolume, MultiEchoMR

__all__ = ["PairSpec", "crop_ct", "rigid_about", "write_derived_pairs"]


@dataclass(frozen=True)
class PairSpec:
    """One case of :func:`write_derived_pairs`.

    Parameters
    ----------
    case_id, patient_id : str
        Names of the case and of its patient.
    ct : CTVolume
        The real CT (crop) the case is made from.
    mr_of : str, optional
        Take the MRI of this (earlier) case instead of the own one.
    mr_shift_mm : tuple of 3 float
        Move the MRI by this much (LPS), e.g. far away for a case without overlap.
    mr_coarsening : tuple of 3 float
        The MR grid's voxels are this much larger than the CT's.
    mr_fov_fraction : float
        The MR grid covers this fraction of the CT's field of view along each axis.
    """

    case_id: str
    patient_id: str
    ct: CTVolume
    mr_of: str | None = None
    mr_shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    mr_coarsening: tuple[float, float, float] = (1.3, 1.3, 2.0)
    mr_fov_fraction: float = 0.8


def rigid_about(
    rotation_deg: float, shift_mm: Sequence[float], about_lps_mm: NDArray[np.float64]
) -> NDArray[np.float64]:
    """4x4 LPS transform: rotation by ``rotation_deg`` about S around a point, then a shift."""
    t = np.radians(rotation_deg)
    rotation = np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0, 0, 1]])
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = about_lps_mm - rotation @ about_lps_mm + np.asarray(shift_mm, dtype=float)
    return matrix


def crop_ct(ct: CTVolume, centre_fraction: Sequence[float], half_voxels: int) -> CTVolume:
    """A cube of ``2 * half_voxels`` voxels of ``ct`` around a centre given as grid fractions."""
    shape = ct.spatial_shape
    centre = [int(f * n) for f, n in zip(centre_fraction, shape, strict=True)]
    starts = [
        min(max(0, c - half_voxels), max(0, n - 2 * half_voxels))
        for c, n in zip(centre, shape, strict=True)
    ]
    region = tuple(slice(s, s + 2 * half_voxels) for s in starts)
    affine = ct.affine.copy()
    affine[:3, 3] = ct.geometry.index_to_lps(starts)
    return CTVolume(ct.array[region], affine)


def _centre(geometry: Geometry) -> NDArray[np.float64]:
    return geometry.index_to_lps((np.asarray(geometry.shape) - 1) / 2.0)


def _own_grid(mr: MultiEchoMR, coarsening: Sequence[float], fraction: float) -> MultiEchoMR:
    from synthct.resample import resample_to

    g = mr.geometry
    factors = np.asarray(coarsening, dtype=float)
    spacing = np.asarray(g.spacing_mm) * factors
    shape = np.maximum(4, (fraction * np.asarray(g.shape) / factors).astype(int))
    affine = np.eye(4)
    affine[:3, :3] = g.direction * spacing
    affine[:3, 3] = _centre(g) - affine[:3, :3] @ ((shape - 1) / 2.0)
    grid = Geometry((int(shape[0]), int(shape[1]), int(shape[2])), affine)
    return resample_to(mr, grid)


def _derived(ct: CTVolume, work: Path, seed: int) -> tuple[MultiEchoMR, CTVolume]:
    from synthct.io import read_volume
    from synthct.phantom.cohort_files import CT_FILE, PhantomCase
    from synthct.phantom.ct_insertion import write_ct_derived_case

    folder = write_ct_derived_case(ct, work, supersample=1, seed=seed) / "case-000"
    out_ct = read_volume(folder / CT_FILE, kind="ct")
    assert isinstance(out_ct, CTVolume)
    return PhantomCase(folder).mr(), out_ct


def write_derived_pairs(
    specs: Sequence[PairSpec],
    out: str | os.PathLike[str],
    *,
    rotation_deg: float = 4.0,
    shift_mm: Sequence[float] = (5.0, -3.0, 4.0),
    region: str | None = None,
    seed: int = 0,
) -> Path:
    """Write the cases of ``specs`` (see the module docstring) and their manifest.

    Parameters
    ----------
    specs : sequence of PairSpec
        The cases, in order (``mr_of`` refers to an earlier one).
    out : path
        Folder to create; ``out/manifest.csv`` lists the cases.
    rotation_deg, shift_mm : float, sequence of 3 float
        The known rigid offset of every CT header (rotation about S around the CT's centre,
        then the shift, LPS mm): an MR point x lies at ``T x`` in the CT's moved frame.
    region : str, optional
        Region recorded for every case.
    seed : int
        Seeds the simulated MRI and CT noise.

    Returns
    -------
    Path
        The manifest.
    """
    import shutil
    import tempfile

    from synthct.io import write_volume
    from synthct.io.atomic import atomic_directory

    pairs: dict[str, MultiEchoMR] = {}
    cases = []
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(out) as tmp, tempfile.TemporaryDirectory() as scratch:
        for n, spec in enumerate(specs):
            mr, ct = _derived(spec.ct, Path(scratch) / spec.case_id, seed + n)
            pairs[spec.case_id] = mr
            if spec.mr_of is not None:  # another patient's MRI, centred on this CT
                other = pairs[spec.mr_of]
                move = np.eye(4)
                move[:3, 3] = _centre(ct.geometry) - _centre(other.geometry)
                mr = MultiEchoMR(other.array, move @ other.affine, protocol=other.protocol)
            if any(spec.mr_shift_mm):
                move = np.eye(4)
                move[:3, 3] = spec.mr_shift_mm
                mr = MultiEchoMR(mr.array, move @ mr.affine, protocol=mr.protocol)
            matrix = rigid_about(rotation_deg, shift_mm, _centre(ct.geometry))
            folder = tmp / spec.case_id
            folder.mkdir()
            write_volume(
                _own_grid(mr, spec.mr_coarsening, spec.mr_fov_fraction), folder / "mr.nii.gz"
            )
            write_volume(CTVolume(ct.array, matrix @ ct.affine), folder / "ct.nii.gz")
            shutil.rmtree(Path(scratch) / spec.case_id)
            cases.append(
                Case(
                    spec.case_id,
                    {"ct": folder / "ct.nii.gz", "mr": folder / "mr.nii.gz"},
                    {"patient_id": spec.patient_id, "region": region},
                    {
                        "offset_rotation_deg": rotation_deg,
                        "offset_shift_mm": ";".join(f"{v:g}" for v in shift_mm),
                        "mr_shift_mm": ";".join(f"{v:g}" for v in spec.mr_shift_mm),
                        "mr_of": spec.mr_of or spec.case_id,
                    },
                )
            )
        write_manifest(Manifest(cases), tmp / "manifest.csv")
    return Path(out) / "manifest.csv"
