"""Byte-mutated image files for fuzzing the readers (tests/io/test_fuzz_readers.py and
benchmarks/fuzz_readers.py).

:func:`seed_files` writes one small valid file per format (uncompressed, so that mutations hit
header fields and voxel bytes rather than only the deflate stream; one gzipped NIfTI too);
:func:`mutate` overwrites bytes and optionally truncates; :func:`read_outcome` reads the result
and says ``"ok"`` or ``"error"`` (a :class:`~synthct.errors.SynthctError`), letting any other
exception through: that is the failure the fuzzing looks for.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from synthct.errors import SynthctError
from synthct.geometry import lps_to_ras
from synthct.io import read_volume
from synthct.io.dicom_write import write_dicom_series
from synthct.io.itk import array_to_sitk
from synthct.volume import CTVolume

FORMATS = ("nifti", "nifti_gz", "nrrd", "mha", "dicom")
_NAMES = {"nifti": "ct.nii", "nifti_gz": "ct.nii.gz", "nrrd": "ct.nrrd", "mha": "ct.mha"}


def _ct() -> CTVolume:
    rng = np.random.default_rng(0)
    array = rng.integers(-1000, 1500, size=(6, 5, 3)).astype(np.int16)
    affine = np.array(
        [[0.8, 0, 0, -10.0], [0, 0.8, 0, 5.0], [0, 0, 2.0, 30.0], [0, 0, 0, 1]], dtype=float
    )
    return CTVolume(array, affine)


def seed_files(folder: Path) -> dict[str, Path]:
    """One valid CT per format in ``folder``: a file, or for DICOM a folder of 3 slices."""
    ct = _ct()
    out = {}
    for fmt, name in _NAMES.items():
        path = folder / name
        if fmt.startswith("nifti"):
            image = nib.Nifti1Image(ct.array, lps_to_ras(ct.affine))
            image.set_qform(lps_to_ras(ct.affine), code=1)
            image.set_sform(lps_to_ras(ct.affine), code=1)
            nib.save(image, str(path))
        else:
            sitk.WriteImage(array_to_sitk(ct.array, ct.affine), str(path), useCompression=False)
        out[fmt] = path
    out["dicom"] = write_dicom_series(ct, folder / "ct_dicom")
    return out


def mutate(data: bytes, edits: Sequence[tuple[int, int]], cut: int | None = None) -> bytes:
    """``data`` with ``data[position % len] = value`` for each edit, then cut to ``cut`` bytes."""
    buffer = bytearray(data)
    for position, value in edits:
        buffer[position % len(buffer)] = value
    if cut is not None:
        del buffer[cut % (len(buffer) + 1) :]
    return bytes(buffer)


def mutated_copy(
    seed: Path, work: Path, edits: Sequence[tuple[int, int]], cut: int | None, which: int = 0
) -> Path:
    """A mutated copy of ``seed`` (a file, or file ``which`` of a DICOM folder) in ``work``."""
    if seed.is_dir():
        target = work / seed.name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(seed, target)
        files = sorted(target.iterdir())
        victim = files[which % len(files)]
        victim.write_bytes(mutate(victim.read_bytes(), edits, cut))
        return target
    target = work / seed.name
    target.write_bytes(mutate(seed.read_bytes(), edits, cut))
    return target


def read_outcome(path: Path) -> str:
    """``"ok"`` when ``path`` reads, ``"error"`` on a synthct error; anything else propagates."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            read_volume(path)
        except SynthctError:
            return "error"
    return "ok"
