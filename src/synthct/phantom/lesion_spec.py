"""Lesion specifications (what to insert, where) and placed-lesion metadata.

See :mod:`synthct.phantom.lesions` for how a :class:`LesionSpec` is placed in a spine.
Positions are angles in the canal's axial plane from dorsal (0 deg) toward the patient's left
(90 deg); diameters are in the canal's frame (axial: largest in-plane extent; sagittal:
cranio-caudal; thickness: in-plane extent along the position direction).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from synthct.imaging.labels import Tissue
from synthct.phantom.calcification import PATTERNS
from synthct.phantom.levels import parse_level
from synthct.phantom.model import PhantomParameterError

Shape = Literal["ellipsoid", "ventral_plate", "dorsal_plate"]
_MAX_SIZE_MM = 80.0


@dataclass(frozen=True)
class LesionType:
    """What a lesion type is made of and where it sits by default."""

    compartment: Literal["intradural", "extradural"]
    shape: Shape
    base_tissue: Tissue
    dense_tissue: Tissue | None
    position_deg: float
    pattern: str
    calcified_fraction: float
    thickness_ratio: float  # default thickness = ratio * axial diameter ...
    thickness_mm: float | None  # ... unless a fixed default is given


#: The lesion types: meningioma calcification ranges from none (~40 HU) to dense (~1000 HU).
LESION_TYPES: dict[str, LesionType] = {
    "meningioma": LesionType("intradural", "ellipsoid", Tissue.MENINGIOMA,
                             Tissue.CALCIFICATION, 45.0, "partial", 0.0, 0.8, None),
    "schwannoma": LesionType("intradural", "ellipsoid", Tissue.SCHWANNOMA, None, 315.0,
                             "none", 0.0, 0.8, None),
    "disc_herniation": LesionType("extradural", "ellipsoid", Tissue.DISC_HERNIATION,
                                  Tissue.CALCIFICATION, 180.0, "dense", 0.6, 0.5, None),
    "opll": LesionType("extradural", "ventral_plate", Tissue.LIGAMENT, Tissue.OSSIFICATION,
                       180.0, "dense", 0.9, 0.0, 4.0),
    "olf": LesionType("extradural", "dorsal_plate", Tissue.LIGAMENT, Tissue.OSSIFICATION,
                      0.0, "dense", 0.9, 0.0, 4.0),
    "synovial_cyst": LesionType("extradural", "ellipsoid", Tissue.SYNOVIAL_CYST,
                                Tissue.CALCIFICATION, 45.0, "rim", 0.3, 0.9, None),
    # Calcifying pseudoneoplasm: fibrous (ligament-like) matrix with dense calcification.
    "capnon": LesionType("extradural", "ellipsoid", Tissue.LIGAMENT, Tissue.CALCIFICATION,
                         0.0, "dense", 0.8, 0.8, None),
}  # fmt: skip

#: Named positions in the canal (degrees from dorsal toward the patient's left).
POSITIONS: dict[str, float] = {
    "dorsal": 0.0, "dorsolateral_left": 45.0, "left": 90.0, "ventrolateral_left": 135.0,
    "ventral": 180.0, "ventrolateral_right": 225.0, "right": 270.0, "dorsolateral_right": 315.0,
}  # fmt: skip


@dataclass(frozen=True)
class LesionSpec:
    """What lesion to insert and where.

    Parameters
    ----------
    type : str
        One of :data:`LESION_TYPES`.
    level : str
        ``"T8"`` (vertebral body level), ``"T8/9"`` (disc level) or ``"T5-7"`` (the middle of a
        span of vertebrae).
    axial_diameter_mm, sagittal_diameter_mm : float
        Largest in-plane diameter and cranio-caudal diameter.
    thickness_mm : float, optional
        In-plane extent along the position direction (at most the axial diameter); a
        type-dependent default when omitted (0.8 x axial for tumours, 4 mm for OPLL/OLF).
    position : str or float, optional
        A name from :data:`POSITIONS` or an angle in degrees; the type's usual site when
        omitted. OPLL is always ventral and OLF dorsal.
    mean_hu : float, optional
        Target noise-free mean CT number of the lesion; sets the calcified fraction.
    calcified_fraction : float, optional
        Fraction of dense sub-voxels, instead of ``mean_hu``.
    pattern : {"none", "partial", "dense", "rim"}, optional
        Arrangement of the calcification (see :mod:`synthct.phantom.calcification`).
    offset_mm : float
        Cranio-caudal shift from the level's centre along the canal.
    seed : int
        Seeds the calcification pattern.
    """

    type: str
    level: str
    axial_diameter_mm: float = 10.0
    sagittal_diameter_mm: float = 15.0
    thickness_mm: float | None = None
    position: str | float | None = None
    mean_hu: float | None = None
    calcified_fraction: float | None = None
    pattern: str | None = None
    offset_mm: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.type not in LESION_TYPES:
            raise PhantomParameterError(
                f"unknown lesion type {self.type!r}; choose one of {sorted(LESION_TYPES)}",
                path="LesionSpec.type",
            )
        parse_level(self.level, parameter="LesionSpec.level")
        for name in ("axial_diameter_mm", "sagittal_diameter_mm", "thickness_mm"):
            value = getattr(self, name)
            if value is None and name == "thickness_mm":
                continue
            if not _finite(value) or not 0 < float(value) <= _MAX_SIZE_MM:
                raise PhantomParameterError(
                    f"{name} must be more than 0 and at most {_MAX_SIZE_MM:g} mm, got {value!r}",
                    path=f"LesionSpec.{name}",
                )
        if self.thickness_mm is not None and self.thickness_mm > self.axial_diameter_mm:
            raise PhantomParameterError(
                f"thickness_mm {self.thickness_mm:g} exceeds axial_diameter_mm "
                f"{self.axial_diameter_mm:g}: the axial diameter is the largest in-plane extent",
                path="LesionSpec.thickness_mm",
            )
        if isinstance(self.position, str) and self.position not in POSITIONS:
            raise PhantomParameterError(
                f"unknown position {self.position!r}; use an angle in degrees or one of "
                f"{list(POSITIONS)}",
                path="LesionSpec.position",
            )
        if (
            self.position is not None
            and not isinstance(self.position, str)
            and (not _finite(self.position))
        ):
            raise PhantomParameterError(
                f"position must be a finite angle in degrees, got {self.position!r}",
                path="LesionSpec.position",
            )
        if self.mean_hu is not None and self.calcified_fraction is not None:
            raise PhantomParameterError(
                "give mean_hu or calcified_fraction, not both", path="LesionSpec.mean_hu"
            )
        if self.mean_hu is not None and (
            not _finite(self.mean_hu) or not -1024 <= self.mean_hu <= 3071
        ):
            raise PhantomParameterError(
                f"mean_hu must lie in -1024..3071 HU, got {self.mean_hu!r}",
                path="LesionSpec.mean_hu",
            )
        fraction = self.calcified_fraction
        if fraction is not None and (not _finite(fraction) or not 0 <= fraction <= 1):
            raise PhantomParameterError(
                f"calcified_fraction must lie in 0..1, got {fraction!r}",
                path="LesionSpec.calcified_fraction",
            )
        if self.pattern is not None and self.pattern not in PATTERNS:
            raise PhantomParameterError(
                f"unknown calcification pattern {self.pattern!r}; choose one of {list(PATTERNS)}",
                path="LesionSpec.pattern",
            )
        if not _finite(self.offset_mm):
            raise PhantomParameterError(
                f"offset_mm must be finite, got {self.offset_mm!r}", path="LesionSpec.offset_mm"
            )
        if (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, int | np.integer)
            or (self.seed < 0)
        ):
            raise PhantomParameterError(
                f"seed must be a whole number >= 0, got {self.seed!r}", path="LesionSpec.seed"
            )

    @property
    def info(self) -> LesionType:
        """The type's defaults."""
        return LESION_TYPES[self.type]

    def resolved_position_deg(self) -> float:
        """Position angle in degrees in [0, 360)."""
        info = self.info
        if info.shape != "ellipsoid":
            if self.position is not None and _angle(self.position) != info.position_deg:
                raise PhantomParameterError(
                    f"{self.type} lies {'ventral' if info.position_deg else 'dorsal'} in the "
                    f"canal; position {self.position!r} is not possible",
                    path="LesionSpec.position",
                    fix="leave position unset for opll and olf",
                )
            return info.position_deg
        return info.position_deg if self.position is None else _angle(self.position)

    def resolved_thickness_mm(self) -> float:
        """In-plane thickness along the position direction, in mm."""
        if self.thickness_mm is not None:
            return float(self.thickness_mm)
        info = self.info
        if info.thickness_mm is not None:
            return min(info.thickness_mm, self.axial_diameter_mm)
        return info.thickness_ratio * self.axial_diameter_mm

    def resolved_fraction(self) -> tuple[float, str]:
        """Calcified fraction and pattern, from ``mean_hu`` and the tissue table if given."""
        from synthct.imaging.tissues import TISSUES  # the table is only needed here

        info = self.info
        if self.mean_hu is not None:
            base_hu = TISSUES[info.base_tissue].ct_hu
            if info.dense_tissue is None:
                fraction = 0.0 if abs(self.mean_hu - base_hu) < 1e-6 else math.nan
                dense_hu = base_hu
            else:
                dense_hu = TISSUES[info.dense_tissue].ct_hu
                fraction = (self.mean_hu - base_hu) / (dense_hu - base_hu)
            if not 0.0 <= fraction <= 1.0:
                raise PhantomParameterError(
                    f"mean_hu {self.mean_hu:g} HU is not reachable for a {self.type}: it must lie "
                    f"between {base_hu:g} HU ({info.base_tissue.name}) and {dense_hu:g} HU "
                    f"({(info.dense_tissue or info.base_tissue).name})",
                    path="LesionSpec.mean_hu",
                )
        elif self.calcified_fraction is not None:
            fraction = float(self.calcified_fraction)
        else:
            fraction = info.calcified_fraction
        if info.dense_tissue is None and fraction > 0:
            raise PhantomParameterError(
                f"a {self.type} is not calcified in this library; got calcified fraction "
                f"{fraction:g}",
                path="LesionSpec.calcified_fraction",
            )
        pattern = self.pattern or (info.pattern if fraction > 0 else "none")
        if pattern == "none" and fraction > 0:
            raise PhantomParameterError(
                f"pattern 'none' contradicts a calcified fraction of {fraction:.3g}",
                path="LesionSpec.pattern",
                fix="choose 'partial', 'dense' or 'rim', or set mean_hu to the base tissue's HU",
            )
        return fraction, pattern


@dataclass(frozen=True)
class LesionInstance:
    """Ground truth of one placed lesion (all lengths in mm, LPS coordinates)."""

    id: int
    type: str
    level: str
    compartment: str
    position_deg: float
    centre_lps_mm: tuple[float, float, float]
    s_mm: float
    diameter_axial_mm: float
    diameter_sagittal_mm: float
    thickness_mm: float
    mean_hu: float
    calcified_fraction: float
    pattern: str
    base_tissue: Tissue
    dense_tissue: Tissue | None
    label: int
    cord_shift_mm: float
    cord_compression: float
    canal_tilt_deg: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready metadata (tissues by name)."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["centre_lps_mm"] = list(self.centre_lps_mm)
        d["base_tissue"] = self.base_tissue.name
        d["dense_tissue"] = None if self.dense_tissue is None else self.dense_tissue.name
        return d


def _finite(value: Any) -> bool:
    return (
        isinstance(value, int | float | np.number)
        and not isinstance(value, bool)
        and (math.isfinite(float(value)))
    )


def _angle(position: str | float) -> float:
    value = POSITIONS[position] if isinstance(position, str) else float(position)
    return value % 360.0
