"""MRI protocol presets: the paper's 3D T1-weighted two-echo spoiled gradient echo and a fast grid.

The study (Fischer 2025, Methods, "MRI protocol") acquired a 3D RF-spoiled T1-weighted multiple
gradient echo with 2 echoes, TR 7 ms, TE1 1.1-2.1 ms, TE2 2.2-4.2 ms, FOV 250 x 250 x 90 mm and
reconstructed voxels of 0.74 x 0.74 x 0.9 mm, at 1.5 T or 3 T. The echo times here are the
opposed- and in-phase times of fat at -3.4 ppm (1.15 / 2.30 ms at 3 T, 2.30 / 4.61 ms at
1.5 T), which lie inside the paper's ranges. The flip angle is not stated in the paper; see
:data:`ASSUMED_FLIP_ANGLE_DEG`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from synthct.geometry import Geometry
from synthct.phantom.model import PhantomParameterError
from synthct.volume import MRProtocol

#: Flip angle used by the presets (degrees). The paper does not state it. A spoiled GRE with
#: TR 7 ms is T1-weighted above the Ernst angle of soft tissue (arccos(exp(-TR/T1)) ~ 7 deg for
#: T1 ~ 1 s), and clinical 3D T1w spoiled GRE of the spine typically use 8-15 deg; 10 deg keeps
#: CSF darker than cord (T1 weighting) while leaving enough CSF signal for the intradural
#: anatomy to show.
ASSUMED_FLIP_ANGLE_DEG = 10.0

#: Orientation of the acquisition slab: the LPS direction of array axes 0, 1, 2.
#: "sagittal" is a 90 mm left-right slab (axes A->P, I->S, R->L) as a spine acquisition with a
#: 250 x 250 x 90 mm field of view is planned; "axial" and "coronal" are the alternatives.
_DIRECTIONS: dict[str, NDArray[np.float64]] = {
    "sagittal": np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
    "axial": np.eye(3),
    "coronal": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]),
}

Orientation = Literal["sagittal", "axial", "coronal"]


@dataclass(frozen=True)
class SpgrProtocol:
    """A 3D multi-echo RF-spoiled gradient-echo acquisition and its reconstruction grid.

    Parameters
    ----------
    name : str
        Preset name.
    field_strength_t : float
        Main field, tesla (1.0-3.5 T, the range of the tissue table).
    repetition_time_ms : float
        TR, ms.
    echo_times_ms : tuple of float
        Increasing echo times, each shorter than TR, ms.
    flip_angle_deg : float
        Excitation flip angle, degrees (0, 90].
    voxel_size_mm : tuple of 3 float
        Reconstructed voxel size along array axes 0, 1, 2 (the third is the slab direction).
    field_of_view_mm : tuple of 3 float
        Field of view along array axes 0, 1, 2.
    description : str
        Where the values come from.
    """

    name: str
    field_strength_t: float
    repetition_time_ms: float
    echo_times_ms: tuple[float, ...]
    flip_angle_deg: float
    voxel_size_mm: tuple[float, float, float]
    field_of_view_mm: tuple[float, float, float]
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "echo_times_ms", tuple(float(t) for t in self.echo_times_ms))
        tes = self.echo_times_ms
        tr = float(self.repetition_time_ms)
        if not 1.0 <= self.field_strength_t <= 3.5:
            raise PhantomParameterError(
                f"field_strength_t must lie in 1.0..3.5 T, got {self.field_strength_t}",
                path="field_strength_t",
            )
        if not (np.isfinite(tr) and tr > 0):
            raise PhantomParameterError(
                f"repetition_time_ms must be positive, got {self.repetition_time_ms}",
                path="repetition_time_ms",
            )
        if len(tes) < 1:
            raise PhantomParameterError(
                "echo_times_ms needs at least one echo time", path="echo_times_ms"
            )
        if any(not (np.isfinite(t) and 0 < t < tr) for t in tes):
            raise PhantomParameterError(
                f"every echo time must lie in 0 < TE < TR = {tr} ms, got {list(tes)} ms",
                path="echo_times_ms",
                fix="shorten the echo times or lengthen repetition_time_ms",
            )
        if any(b <= a for a, b in pairwise(tes)):
            raise PhantomParameterError(
                f"echo times must be strictly increasing, got {list(tes)} ms",
                path="echo_times_ms",
            )
        if not 0 < self.flip_angle_deg <= 90:
            raise PhantomParameterError(
                f"flip_angle_deg must lie in (0, 90] degrees, got {self.flip_angle_deg}",
                path="flip_angle_deg",
            )
        for label in ("voxel_size_mm", "field_of_view_mm"):
            values = tuple(float(v) for v in getattr(self, label))
            if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
                raise PhantomParameterError(
                    f"{label} must be 3 positive numbers, got {getattr(self, label)!r}",
                    path=label,
                )
            object.__setattr__(self, label, values)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid size: field of view over voxel size, rounded (338 x 338 x 100 for the paper)."""
        n = np.rint(np.asarray(self.field_of_view_mm) / np.asarray(self.voxel_size_mm))
        return (max(int(n[0]), 1), max(int(n[1]), 1), max(int(n[2]), 1))

    def to_mr_protocol(self) -> MRProtocol:
        """The acquisition parameters that travel with the rendered MR volume."""
        return MRProtocol(
            echo_times_ms=self.echo_times_ms,
            repetition_time_ms=float(self.repetition_time_ms),
            flip_angle_deg=float(self.flip_angle_deg),
            field_strength_t=float(self.field_strength_t),
            extra={"sequence": "3D RF-spoiled multi-echo gradient echo", "preset": self.name},
        )

    def geometry(
        self,
        *,
        center_lps_mm: ArrayLike = (0.0, 0.0, 0.0),
        orientation: Orientation = "sagittal",
    ) -> Geometry:
        """The reconstruction grid, centred on ``center_lps_mm``.

        Parameters
        ----------
        center_lps_mm : array_like of 3 float
            LPS position of the centre of the field of view.
        orientation : {"sagittal", "axial", "coronal"}
            Plane of the slab; the third array axis is the slab (through-plane) direction.
        """
        if orientation not in _DIRECTIONS:
            raise PhantomParameterError(
                f"orientation must be one of {sorted(_DIRECTIONS)}, got {orientation!r}",
                path="orientation",
            )
        direction = _DIRECTIONS[orientation]
        spacing = np.asarray(self.voxel_size_mm)
        shape = self.shape
        half = (np.asarray(shape) - 1) / 2.0
        origin = np.asarray(center_lps_mm, dtype=np.float64) - direction @ (spacing * half)
        return Geometry.from_parameters(shape, self.voxel_size_mm, origin.tolist(), direction)

    def with_changes(self, **changes: object) -> SpgrProtocol:
        """A copy with some fields replaced (validated again)."""
        return replace(self, **changes)  # type: ignore[arg-type]


_PAPER = (
    "Fischer 2025 Methods: 3D RF-spoiled T1w multiple gradient echo, 2 echoes, TR 7 ms, "
    "FOV 250 x 250 x 90 mm, voxels 0.74 x 0.74 x 0.9 mm; TEs = fat opposed/in phase; "
    f"flip angle {ASSUMED_FLIP_ANGLE_DEG:g} deg assumed (not stated in the paper)"
)

#: The paper's protocol at 3 T: TE 1.15 / 2.30 ms (fat opposed / in phase).
PAPER_3T = SpgrProtocol(
    name="paper_3t",
    field_strength_t=3.0,
    repetition_time_ms=7.0,
    echo_times_ms=(1.15, 2.30),
    flip_angle_deg=ASSUMED_FLIP_ANGLE_DEG,
    voxel_size_mm=(0.74, 0.74, 0.9),
    field_of_view_mm=(250.0, 250.0, 90.0),
    description=_PAPER,
)

#: The paper's protocol at 1.5 T: TE 2.30 / 4.61 ms (fat opposed / in phase).
PAPER_1P5T = replace(PAPER_3T, name="paper_1p5t", field_strength_t=1.5, echo_times_ms=(2.30, 4.61))

#: The 3 T contrast on a coarse 1.5 mm isotropic grid (fast renders for tests and training).
FAST_3T = replace(
    PAPER_3T,
    name="fast_3t",
    voxel_size_mm=(1.5, 1.5, 1.5),
    field_of_view_mm=(192.0, 192.0, 90.0),
    description="paper_3t contrast on a 1.5 mm isotropic grid, 128 x 128 x 60 voxels",
)

#: Presets by name.
PRESETS: dict[str, SpgrProtocol] = {p.name: p for p in (PAPER_3T, PAPER_1P5T, FAST_3T)}


def get_preset(name: str) -> SpgrProtocol:
    """The preset called ``name`` (``paper_3t``, ``paper_1p5t`` or ``fast_3t``)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise PhantomParameterError(
            f"unknown MRI protocol preset {name!r}; choose one of {sorted(PRESETS)}",
            path="protocol",
        ) from None
