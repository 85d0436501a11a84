"""Multi-echo MRI from several files: one 4D file, or one 3D file per echo stacked in order."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from synthct.errors import ReadError
from synthct.volume import MRProtocol, MultiEchoMR


def read_echoes(
    paths: Sequence[str | os.PathLike[str]], *, series_uid: str | None = None
) -> MultiEchoMR:
    """Read echo magnitudes into one :class:`~synthct.volume.MultiEchoMR`.

    Parameters
    ----------
    paths : sequence of path
        One multi-echo file or folder, or one single-echo file per echo, in echo order.
    series_uid : str, optional
        The series to read from a DICOM folder that holds several (one folder only).

    Returns
    -------
    MultiEchoMR
        The echoes stacked on the first axis. The echo times of separate files are joined from
        their sidecars (or DICOM headers); TR, flip angle and field strength must agree.

    Raises
    ------
    ReadError
        No path, a file that is not MR, echoes on different grids or from different
        acquisitions.
    """
    from synthct.io import read_volume

    if not paths:
        raise ReadError("no MRI echo files given", fix="pass the echo files in echo order")
    volumes: list[MultiEchoMR] = []
    if series_uid is not None and len(paths) > 1:
        raise ReadError(
            f"a series UID picks one series of one DICOM folder, but {len(paths)} paths are given",
            path=paths[0],
            fix="give the MR as one DICOM folder, or drop the series UID",
        )
    for p in paths:
        v = read_volume(p, kind="mr", series_uid=series_uid)
        if not isinstance(v, MultiEchoMR):  # pragma: no cover - read_volume honours kind="mr"
            raise ReadError(f"not an MRI: {v.kind}", path=p, fix="pass MRI echo files")
        volumes.append(v)
    if len(volumes) == 1:
        return volumes[0]
    first = volumes[0]
    for p, v in zip(paths[1:], volumes[1:], strict=True):
        first.require_same_geometry(
            v, names=(f"MR channel file {paths[0]}", f"MR channel file {p}")
        )
    protocol = None
    if all(v.protocol is not None for v in volumes):
        base = first.protocol
        assert base is not None
        acquisition = (base.repetition_time_ms, base.flip_angle_deg, base.field_strength_t)
        for p, v in zip(paths[1:], volumes[1:], strict=True):
            assert v.protocol is not None
            other = v.protocol
            if (other.repetition_time_ms, other.flip_angle_deg, other.field_strength_t) != (
                acquisition
            ):
                raise ReadError(
                    "echo files disagree on TR, flip angle or field strength "
                    f"(first: {acquisition}, this one: {other.repetition_time_ms}, "
                    f"{other.flip_angle_deg}, {other.field_strength_t})",
                    path=p,
                    fix="stack only echoes of one acquisition",
                )
        echo_times = [te for v in volumes if v.protocol for te in v.protocol.echo_times_ms]
        protocol = MRProtocol(
            tuple(float(te) for te in echo_times), *acquisition, extra=dict(base.extra)
        )
    array = np.concatenate([v.array for v in volumes], axis=0)
    return MultiEchoMR(array, first.affine, protocol=protocol, source=str(Path(paths[0])))
