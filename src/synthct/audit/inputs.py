"""What the audit needs from its inputs: a complete MR protocol and the sCT on the MRI grid.

The audit works on the MRI's voxel grid: the signals are maps of the MRI, and an sCT made
from that MRI shares its frame. An sCT on another grid of the same frame (another voxel size,
a crop, a DICOM export) is resampled onto the MRI grid, linearly, with -1024 HU outside its
field of view (:func:`synthct.resample.resample_to`). Grids whose fields of view barely overlap
are in different frames: that is an error with both geometries printed, unless a rigid
registration is asked for (:func:`sct_on_mri_grid` with ``register=True``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from synthct.audit.errors import AuditInputError
from synthct.errors import GeometryMismatchError
from synthct.resample import resample_to
from synthct.volume import (
    CTVolume,
    LabelMap,
    MRProtocol,
    MultiEchoMR,
    ScalarVolume,
    SyntheticCT,
    Volume,
)

V = TypeVar("V", bound=Volume)

#: Below this overlap of the two fields of view the sCT and the MRI are in different frames.
DEFAULT_MIN_OVERLAP_FRACTION = 0.25

#: How to supply each protocol value, on the command line and in Python.
PROTOCOL_OPTIONS: dict[str, str] = {
    "echo_times_ms": "--echo-times 1.15,2.3",
    "repetition_time_ms": "--tr 7",
    "flip_angle_deg": "--flip-angle 10",
    "field_strength_t": "--field-strength 3",
}


def with_protocol(
    mr: MultiEchoMR,
    *,
    echo_times_ms: tuple[float, ...] | None = None,
    repetition_time_ms: float | None = None,
    flip_angle_deg: float | None = None,
    field_strength_t: float | None = None,
) -> MultiEchoMR:
    """The MRI with protocol values filled in or replaced (``None`` keeps what the file says).

    Parameters
    ----------
    mr : MultiEchoMR
        The echoes.
    echo_times_ms : tuple of float, optional
        One echo time per echo, ms.
    repetition_time_ms, flip_angle_deg, field_strength_t : float, optional
        TR (ms), flip angle (degrees), main field (T).
    """
    given = {
        "echo_times_ms": None if echo_times_ms is None else tuple(float(t) for t in echo_times_ms),
        "repetition_time_ms": repetition_time_ms,
        "flip_angle_deg": flip_angle_deg,
        "field_strength_t": field_strength_t,
    }
    changes = {k: v for k, v in given.items() if v is not None}
    if not changes:
        return mr
    base = mr.protocol or MRProtocol(echo_times_ms=())
    protocol = replace(base, **changes)  # type: ignore[arg-type]
    return MultiEchoMR(mr.array, mr.affine, protocol=protocol, source=mr.source)


def signal_protocol(mr: MultiEchoMR) -> MRProtocol:
    """The MRI's protocol, checked complete enough for the spoiled gradient-echo equation.

    Raises
    ------
    AuditInputError
        When a value is missing or implausible; the message names each missing value and the
        option that supplies it (``--echo-times``, ``--tr``, ``--flip-angle``,
        ``--field-strength``).
    """
    protocol = mr.protocol
    missing = []
    if protocol is None or not protocol.echo_times_ms:
        missing.append("echo_times_ms")
    for name in ("repetition_time_ms", "flip_angle_deg", "field_strength_t"):
        if protocol is None or getattr(protocol, name) is None:
            missing.append(name)
    if missing:
        raise AuditInputError(
            "the MRI consistency signal predicts each echo from the sCT with the spoiled "
            f"gradient-echo equation, which needs {', '.join(missing)}; the MRI's header or "
            "sidecar does not give them",
            path=mr.source or "MRI protocol",
            fix="supply them: "
            + " ".join(PROTOCOL_OPTIONS[m] for m in missing)
            + " (values of your sequence; in Python: synthct.audit.inputs.with_protocol)",
        )
    assert protocol is not None
    tes = protocol.echo_times_ms
    tr = float(protocol.repetition_time_ms)  # type: ignore[arg-type]
    problems = []
    if len(tes) != mr.n_echoes:
        problems.append(f"{len(tes)} echo times for {mr.n_echoes} echoes")
    if any(not (np.isfinite(t) and 0 < t < tr) for t in tes):
        problems.append(f"echo times {list(tes)} ms must lie in 0 < TE < TR = {tr:g} ms")
    if any(b <= a for a, b in pairwise(tes)):
        problems.append(f"echo times {list(tes)} ms must increase")
    flip = float(protocol.flip_angle_deg)  # type: ignore[arg-type]
    if not 0 < flip <= 90:
        problems.append(f"flip angle {flip:g} deg must lie in (0, 90]")
    field = float(protocol.field_strength_t)  # type: ignore[arg-type]
    if not 1.0 <= field <= 3.5:
        problems.append(f"field strength {field:g} T lies outside the tissue table's 1.0-3.5 T")
    if problems:
        raise AuditInputError(
            "the MRI protocol cannot be used by the signal equation: " + "; ".join(problems),
            path=mr.source or "MRI protocol",
            fix="correct them with " + " ".join(PROTOCOL_OPTIONS.values()),
        )
    return protocol


@dataclass(frozen=True)
class SCTOnGrid:
    """The sCT on the MRI grid and where it has data.

    Attributes
    ----------
    sct : SyntheticCT
        HU on the MRI grid.
    field_of_view : ndarray of bool
        Voxels of the MRI grid inside the sCT's field of view.
    resampled : bool
        Whether the sCT was resampled (its grid differed from the MRI's).
    registered : bool
        Whether a rigid registration moved it.
    overlap_fraction : float
        Overlap of the two fields of view (1 when one lies inside the other).
    """

    sct: SyntheticCT
    field_of_view: NDArray[np.bool_]
    resampled: bool
    registered: bool
    overlap_fraction: float


def sct_on_mri_grid(
    sct: CTVolume,
    mr: MultiEchoMR,
    *,
    register: bool = False,
    min_overlap_fraction: float = DEFAULT_MIN_OVERLAP_FRACTION,
) -> SCTOnGrid:
    """Bring the sCT onto the MRI grid (resample; optionally register rigidly first).

    Parameters
    ----------
    sct : CTVolume
        The synthetic CT in HU, any grid.
    mr : MultiEchoMR
        The MRI it was made from.
    register : bool
        Register the sCT to the MRI's echo sum rigidly (Mattes mutual information) before
        resampling, for an sCT that is not in the MRI's frame.
    min_overlap_fraction : float
        Without registration, fields of view that overlap less than this are different frames.

    Raises
    ------
    GeometryMismatchError
        The grids do not overlap (both geometries and the fix are in the message).
    """
    from synthct.imaging.alignment import frame_overlap_fraction

    target = mr.geometry
    overlap = frame_overlap_fraction(target, sct.geometry)
    if isinstance(sct, SyntheticCT):
        as_sct = sct
    else:
        as_sct = SyntheticCT(sct.array, sct.affine, source=sct.source)
    if not register and sct.geometry.is_close(target):
        return SCTOnGrid(as_sct, np.ones(target.shape, dtype=bool), False, False, overlap)
    transform = None
    if register:
        transform = _register(mr, sct)
    elif overlap < min_overlap_fraction:
        raise GeometryMismatchError(
            f"the sCT and the MRI do not share a frame: their fields of view overlap by "
            f"{100 * overlap:.3g}% (at least {100 * min_overlap_fraction:g}% expected).\n"
            f"  MRI: {target.describe()}\n"
            f"  sCT: {sct.geometry.describe()}",
            path=sct.source,
            fix="pass the sCT made from this MRI, check both headers (origin, orientation), "
            "or register them (--register)",
        )
    moved = resample_to(as_sct, target, transform=transform)
    ones = LabelMap(np.ones(sct.spatial_shape, dtype=np.uint8), sct.affine)
    fov = resample_to(ones, target, transform=transform, fill_value=0).array > 0
    if not fov.any():
        raise GeometryMismatchError(
            "after registration the sCT covers no voxel of the MRI.\n"
            f"  MRI: {target.describe()}\n  sCT: {sct.geometry.describe()}",
            path=sct.source,
            fix="check that the sCT belongs to this MRI",
        )
    return SCTOnGrid(moved, fov, True, transform is not None, overlap)


def _register(mr: MultiEchoMR, sct: Volume) -> Any:
    """Rigid transform (MRI points to sCT points) by Mattes mutual information."""
    from synthct.imaging.alignment import register_rigid

    echo_sum = np.sum(mr.array, axis=0, dtype=np.float32)
    # register_rigid reads only the arrays and affines; the MRI's echo sum is the fixed image
    # and mutual information does not need both to be HU.
    fixed = CTVolume(echo_sum, mr.affine, source=mr.source)
    moving = CTVolume(np.asarray(sct.array, dtype=np.float32), sct.affine, source=sct.source)
    transform, _, _, _ = register_rigid(fixed, moving)
    return transform


def sd_map_on_mri_grid(volume: Volume, mr: MultiEchoMR, *, what: str, fix: str) -> ScalarVolume:
    """An SD map (HU) made from ``mr``, checked finite and non-negative, on (or resampled onto)
    its grid.

    Raises
    ------
    AuditInputError
        NaN, infinite or negative values (``fix`` says what to pass; a map can be corrupted
        in place after it was built), or a map that does not overlap the MRI.
    """
    values = np.asarray(volume.array)
    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
        raise AuditInputError(
            f"the {what} holds {int(np.count_nonzero(~np.isfinite(values)))} NaN or infinite "
            "voxels",
            path=volume.source or what,
            fix=fix,
        )
    if np.any(values < 0):
        raise AuditInputError(
            f"the {what} has negative values: it is not a standard deviation",
            path=volume.source or what,
            fix=fix,
        )
    return map_on_mri_grid(volume, mr, what=what, fill_value=0.0).as_scalar()


def map_on_mri_grid(volume: V, mr: MultiEchoMR, *, what: str, fill_value: float) -> V:
    """A map made from ``mr`` (SD map, reference sCT) on its grid; resampled from another grid
    of the same frame (linear, ``fill_value`` outside the map).

    Raises
    ------
    AuditInputError
        The map's field of view overlaps the MRI's by less than
        :data:`DEFAULT_MIN_OVERLAP_FRACTION`.
    """
    if volume.same_geometry(mr):
        return volume
    from synthct.imaging.alignment import frame_overlap_fraction

    overlap = frame_overlap_fraction(mr.geometry, volume.geometry)
    if overlap < DEFAULT_MIN_OVERLAP_FRACTION:
        raise AuditInputError(
            f"the {what} and the MRI overlap by {100 * overlap:.3g}% only.\n"
            f"  MRI: {mr.geometry.describe()}\n  map: {volume.geometry.describe()}",
            path=volume.source or what,
            fix="pass the map made from this MRI",
        )
    return resample_to(volume, mr.geometry, fill_value=fill_value)
