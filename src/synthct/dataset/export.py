"""Writing cases in the SynthRAD layout: ``<region>/<case>/{mr,ct,mask}.<ext>``.

Each case folder gets ``ct`` (HU, whole numbers in int16 as scanners store them), ``mr`` (one
file; several channels are written as ``mr_<k>.<ext>``, k = 1, 2, ... in channel order, so the
channel order survives) and ``mask`` (the case's body mask, or one derived from the CT), each
on its own grid as the case holds it: nothing is resampled or registered. The case folder's
name is the case id; ``patients.csv`` at the top maps case ids to patient ids (one patient
may have several cases), which :func:`synthct.dataset.readers.read_dataset` reads. The whole
folder is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from synthct.case import Case
from synthct.manifest import Manifest
from synthct.volume import MultiEchoMR

__all__ = ["export_synthrad"]

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _write_case(case: Case, folder: Path, ext: str) -> None:
    from synthct.imaging.body_mask import body_mask_volume
    from synthct.io import write_volume

    folder.mkdir(parents=True)
    ct = case.ct()
    ct = ct.with_array(np.rint(ct.array).astype(np.int16))
    write_volume(ct, folder / f"ct{ext}")
    mr = case.mr()
    if mr.array.shape[0] == 1:
        names = [f"mr{ext}"]
        write_volume(mr, folder / names[0])
    else:
        names = [f"mr_{c + 1}{ext}" for c in range(mr.array.shape[0])]
        protocol = mr.protocol
        for c, name in enumerate(names):
            single = None
            if protocol is not None and len(protocol.echo_times_ms) == mr.array.shape[0]:
                from synthct.volume import MRProtocol

                single = MRProtocol(
                    (protocol.echo_times_ms[c],),
                    protocol.repetition_time_ms,
                    protocol.flip_angle_deg,
                    protocol.field_strength_t,
                    dict(protocol.extra),
                )
            channel = MultiEchoMR(mr.array[c : c + 1], mr.affine, protocol=single)
            write_volume(channel, folder / name)
    mask = case.labels("body_mask") if case.has("body_mask") else body_mask_volume(ct)
    write_volume(mask.with_array((mask.array > 0).astype(np.uint8)), folder / f"mask{ext}")
    case.unload()


def export_synthrad(
    cases: Manifest,
    out: str | os.PathLike[str],
    *,
    region: str | None = None,
    extension: str = ".nii.gz",
    overwrite: bool = False,
) -> Path:
    """Write ``cases`` as a SynthRAD-layout dataset folder (see the module docstring).

    Parameters
    ----------
    cases : Manifest
        The cases (need ``ct`` and ``mr``).
    out : path
        Dataset folder to create.
    region : str, optional
        Region folder for cases without a ``region``; without either, no region level.
    extension : str
        ``.nii.gz`` (SynthRAD2023) or ``.mha`` (SynthRAD2025), or ``.nii``/``.nrrd``.
    overwrite : bool
        Replace an existing folder.

    Returns
    -------
    Path
        The folder.

    Raises
    ------
    SynthctError
        A case id or region that cannot name a folder, an unreadable case, an existing folder
        without ``overwrite``; nothing is left under ``out`` then.
    """
    from synthct.dataset.readers import IMAGE_EXTENSIONS, PATIENTS_FILE, DatasetError, read_error
    from synthct.io.atomic import atomic_directory

    ext = extension if extension.startswith(".") else f".{extension}"
    if ext not in IMAGE_EXTENSIONS:
        raise DatasetError(
            f"unsupported image format {extension!r}",
            path="--format",
            fix=f"use one of {', '.join(e.lstrip('.') for e in IMAGE_EXTENSIONS)}",
        )
    for case in cases:
        unreadable = read_error(case)
        if unreadable is not None:
            raise DatasetError(f"case {case.case_id!r}: {unreadable}", path=case.path("ct"))
        for name in (case.case_id, case.region or region or "x", case.patient_id):
            if not _SAFE.match(name):
                raise DatasetError(
                    f"{name!r} cannot name a folder (case {case.case_id!r})",
                    path=cases.source,
                    fix="use letters, digits, '.', '_' and '-' in case ids, regions and "
                    "patient ids",
                )
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        for case in cases:
            where = case.region or region
            _write_case(case, tmp / where / case.case_id if where else tmp / case.case_id, ext)
        lines = ["case_id,patient_id", *(f"{c.case_id},{c.patient_id}" for c in cases)]
        (tmp / PATIENTS_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Path(out)
