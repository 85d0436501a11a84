"""Parameters of the spine phantom and of its local canal deformations.

:class:`SpineSpec` holds what a user or a cohort chooses (levels, seed, curvature, habitus);
:class:`CanalDeformation` is a local cord displacement / dural sac widening made by a lesion;
:class:`CanalSection` describes the canal's layers at one arc length of a built
:class:`~synthct.phantom.anatomy.SpineModel`. All lengths are in mm, angles in degrees.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from synthct.phantom.levels import LEVEL_NAMES, level_index
from synthct.phantom.model import PhantomParameterError

# Allowed ranges of the numeric SpineSpec fields: (low, high, unit).
_RANGES: dict[str, tuple[float, float, str]] = {
    "cervical_lordosis_deg": (-30.0, 60.0, "deg"),
    "thoracic_kyphosis_deg": (-10.0, 90.0, "deg"),
    "lumbar_lordosis_deg": (-10.0, 90.0, "deg"),
    "scoliosis_deg": (-40.0, 40.0, "deg"),
    "curvature_jitter_deg": (0.0, 15.0, "deg"),
    "size_jitter_fraction": (0.0, 0.15, ""),
    "subcutaneous_fat_mm": (1.0, 80.0, "mm"),
    "body_size_scale": (0.6, 1.6, ""),
    "cortical_thickness_mm": (0.3, 3.0, "mm"),
    "dura_thickness_mm": (0.2, 1.5, "mm"),
}


@dataclass(frozen=True)
class SpineSpec:
    """Parameters of one spine phantom (all lengths in mm, angles in degrees).

    Parameters
    ----------
    first_level, last_level : str
        Cranial and caudal vertebra drawn, within C2..S1 (e.g. ``"C5"`` and ``"T9"``). The
        discs just above and below the span are drawn too; the canal, cord and body outline
        continue beyond it.
    seed : int
        Seeds the per-level size jitter and the curvature jitter.
    cervical_lordosis_deg, thoracic_kyphosis_deg, lumbar_lordosis_deg : float
        Cobb-like angles of the sagittal curves C2-C7, T1-T12 and L1-S1 (positive values are
        the normal lordosis/kyphosis; typical adults ~20, ~35-40 and ~45-55).
    scoliosis_deg : float
        Coronal C-curve over T1-L5; positive bends the apex to the patient's left (+x).
    curvature_jitter_deg : float
        Standard deviation of the seeded random change of each curve angle.
    size_jitter_fraction : float
        Standard deviation of the seeded per-level relative size change (bone, canal, cord).
    subcutaneous_fat_mm : float
        Thickness of the subcutaneous fat (habitus).
    body_size_scale : float
        Scale of the body outline (habitus; 1 is a mid-size adult).
    cortical_thickness_mm : float
        Thickness of the cortical shell of every bone.
    dura_thickness_mm : float
        Thickness of the dura mater.
    origin_lps_mm : tuple of 3 float
        Where the canal centre at the middle of the span lies. The chord between the canal
        centres of the first and last level is parallel to the S axis.
    thorax : bool
        Draw lungs, the descending aorta and ribs (:mod:`synthct.phantom.thorax_drawing`).
    trabecular_texture : bool
        Cancellous bone as marrow of a seeded, smoothly varying fat fraction (the marrow
        tissues) instead of one uniform ``CANCELLOUS_BONE``.
    """

    first_level: str = "C5"
    last_level: str = "T9"
    seed: int = 0
    cervical_lordosis_deg: float = 20.0
    thoracic_kyphosis_deg: float = 35.0
    lumbar_lordosis_deg: float = 45.0
    scoliosis_deg: float = 0.0
    curvature_jitter_deg: float = 3.0
    size_jitter_fraction: float = 0.03
    subcutaneous_fat_mm: float = 12.0
    body_size_scale: float = 1.0
    cortical_thickness_mm: float = 1.0
    dura_thickness_mm: float = 0.5
    origin_lps_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    thorax: bool = False
    trabecular_texture: bool = False

    def __post_init__(self) -> None:
        first = level_index(self.first_level, parameter="SpineSpec.first_level")
        last = level_index(self.last_level, parameter="SpineSpec.last_level")
        object.__setattr__(self, "first_level", LEVEL_NAMES[first])
        object.__setattr__(self, "last_level", LEVEL_NAMES[last])
        if last < first:
            raise PhantomParameterError(
                f"first_level {LEVEL_NAMES[first]} lies caudal to last_level {LEVEL_NAMES[last]}",
                path="SpineSpec.first_level",
                fix="give the cranial level as first_level, e.g. first_level='C5', last_level='T9'",
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int | np.integer):
            raise PhantomParameterError(
                f"seed must be a whole number, got {self.seed!r}", path="SpineSpec.seed"
            )
        if self.seed < 0:
            raise PhantomParameterError(
                f"seed must be 0 or more, got {self.seed}", path="SpineSpec.seed"
            )
        for name, (lo, hi, unit) in _RANGES.items():
            value = getattr(self, name)
            if not isinstance(value, int | float | np.number) or not lo <= float(value) <= hi:
                raise PhantomParameterError(
                    f"{name} must be between {lo:g} and {hi:g}{' ' + unit if unit else ''}, "
                    f"got {value!r}",
                    path=f"SpineSpec.{name}",
                )
        origin = tuple(float(v) for v in self.origin_lps_mm)
        if len(origin) != 3 or not all(math.isfinite(v) for v in origin):
            raise PhantomParameterError(
                f"origin_lps_mm must be 3 finite numbers, got {self.origin_lps_mm!r}",
                path="SpineSpec.origin_lps_mm",
            )
        object.__setattr__(self, "origin_lps_mm", origin)
        for flag in ("thorax", "trabecular_texture"):
            if not isinstance(getattr(self, flag), bool | np.bool_):
                raise PhantomParameterError(
                    f"{flag} must be true or false, got {getattr(self, flag)!r}",
                    path=f"SpineSpec.{flag}",
                )

    @property
    def levels(self) -> tuple[str, ...]:
        """The vertebrae drawn, cranial first."""
        return LEVEL_NAMES[level_index(self.first_level) : level_index(self.last_level) + 1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters."""
        d = asdict(self)
        d["origin_lps_mm"] = list(self.origin_lps_mm)
        return d


@dataclass(frozen=True)
class CanalDeformation:
    """A local change of the canal contents around ``s_mm`` (made by a lesion).

    The weight is 1 within ``half_length_mm`` of ``s_mm`` and falls to 0 with a cosine taper
    over ``taper_mm``.

    Parameters
    ----------
    cord_shift_mm : (float, float)
        Displacement of the cord centre along the segment frame's ``u`` (left) and ``v``
        (posterior) axes.
    cord_squeeze : (float, float)
        Factors (0..1] on the cord's extent along ``squeeze_direction`` and across it (below
        1: the cord is flattened against the lesion; 0.5 halves it in that direction).
    squeeze_direction : (float, float)
        Unit vector ``(u, v)`` of the main compression.
    sac_expansion : float
        0 keeps the dural sac; 1 widens it to the bony canal (epidural fat squeezed out and
        ligaments compressed, as around a large intradural mass).
    """

    s_mm: float
    half_length_mm: float
    taper_mm: float
    cord_shift_mm: tuple[float, float] = (0.0, 0.0)
    cord_squeeze: tuple[float, float] = (1.0, 1.0)
    squeeze_direction: tuple[float, float] = (0.0, 1.0)
    sac_expansion: float = 0.0

    def weight(self, s_mm: NDArray[np.float64]) -> NDArray[np.float64]:
        """Weight in [0, 1] at arc lengths ``s_mm``."""
        excess = np.clip((np.abs(s_mm - self.s_mm) - self.half_length_mm) / self.taper_mm, 0, 1)
        return 0.5 * (1.0 + np.cos(np.pi * excess))


@dataclass(frozen=True)
class CanalSection:
    """The canal at one arc length ``s_mm`` in segment-frame coordinates ``(u, v)`` (mm).

    ``axes`` holds the frame's ``u`` (left), ``v`` (posterior), ``w`` (cranial) unit vectors
    as columns; ``centre_lps_mm`` is the canal centre. Ellipses are given by their centre
    ``(u, v)`` and semi-axes ``(a_u, b_v)``. The dural sac's inner wall is its outer ellipse
    shrunk by ``dura_thickness_mm``. A squeezed cord is the set of points ``x`` for which
    ``(I + Q)(x - centre)`` lies in the cord ellipse, ``cord_q = (Q_uu, Q_uv, Q_vv)``.
    """

    s_mm: float
    segment: str
    centre_lps_mm: NDArray[np.float64]
    axes: NDArray[np.float64]
    canal_semi_axes_mm: tuple[float, float]
    sac_centre_mm: tuple[float, float]
    sac_semi_axes_mm: tuple[float, float]
    expanded_sac_centre_mm: tuple[float, float]
    expanded_sac_semi_axes_mm: tuple[float, float]
    dura_thickness_mm: float
    cord_centre_mm: tuple[float, float]
    cord_semi_axes_mm: tuple[float, float]
    cord_q: tuple[float, float, float]
    pll_thickness_mm: float
    flavum_thickness_mm: float
    body_centre_v_mm: float
    body_semi_axes_mm: tuple[float, float]


def squeeze_matrix(direction: Sequence[float], factors: Sequence[float]) -> NDArray[np.float64]:
    """``Q`` with ``(I + Q)`` undoing a squeeze by ``factors`` along ``direction`` and across it."""
    p = np.asarray(direction, dtype=np.float64)
    n = np.array([-p[1], p[0]])
    return (1.0 / factors[0] - 1.0) * np.outer(p, p) + (1.0 / factors[1] - 1.0) * np.outer(n, n)


def sac_margins(
    ventral: Any, dorsal: Any, lateral: Any, pll: Any, flavum: Any, expansion: Any
) -> tuple[Any, Any, Any]:
    """Epidural margins (ventral, dorsal, lateral; mm) between bony canal and dural sac.

    ``expansion`` (0..1) blends the normal margins toward those around a large intradural
    mass: epidural fat squeezed out, ligaments compressed to half their thickness.
    """
    keep = 1.0 - expansion
    ventral = keep * ventral + expansion * (0.5 * pll + 0.1)
    dorsal = keep * dorsal + expansion * (0.5 * flavum + 0.1)
    lateral = keep * lateral + expansion * 0.3
    return ventral, dorsal, lateral
