"""Spinal levels: names, references ("C5", "C5/6", "T5-7") and a per-level dimension table.

The table gives one adult, mid-size value per vertebra from C2 to S1. The numbers are rounded
from the ranges reported in the cited morphometric series (means of the published cadaver/CT
measurements, read off their tables and figures and smoothed between levels); they are
representative, not a copy of any one table, and the phantom jitters them per level.

References
----------
.. [Pc] Panjabi MM, Duranceau J, Goel V, Oxland T, Takata K. Cervical human vertebrae:
   quantitative three-dimensional anatomy of the middle and lower regions. Spine
   1991;16(8):861-869. (C2-C7 endplates, canal, pedicles, spinous processes)
.. [Pt] Panjabi MM, Takata K, Goel V, et al. Thoracic human vertebrae: quantitative
   three-dimensional anatomy. Spine 1991;16(8):888-901. (T1-T12)
.. [Pl] Panjabi MM, Goel V, Oxland T, et al. Human lumbar vertebrae: quantitative
   three-dimensional anatomy. Spine 1992;17(3):299-306. (L1-L5)
.. [Tan] Tan SH, Teo EC, Chua HC. Quantitative three-dimensional anatomy of cervical, thoracic
   and lumbar vertebrae of Chinese Singaporeans. Eur Spine J 2004;13(2):137-146. (lamina
   thickness, transverse process span, S1)
.. [Ka] Kameyama T, Hashizume Y, Sobue G. Morphologic features of the normal human cadaveric
   spinal cord. Spine 1996;21(11):1285-1290. (cord transverse and AP diameters, cervical and
   lumbar enlargements, conus at L1)
.. [GN] Gilad I, Nissan M. A study of vertebra and disc geometric relations of the human
   cervical and lumbar spine. Spine 1986;11(2):154-157. (disc heights)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Literal

from synthct.phantom.model import PhantomParameterError

#: Every level the phantom can draw, cranial to caudal.
LEVEL_NAMES: tuple[str, ...] = (
    *(f"C{i}" for i in range(2, 8)),
    *(f"T{i}" for i in range(1, 13)),
    *(f"L{i}" for i in range(1, 6)),
    "S1",
)
_LEVEL_INDEX = {name: i for i, name in enumerate(LEVEL_NAMES)}
_ALLOWED = "C2..C7, T1..T12, L1..L5, S1"


def level_index(name: str, *, parameter: str = "level") -> int:
    """Index of a vertebra in :data:`LEVEL_NAMES` (0 = C2); unknown names raise an error."""
    key = str(name).strip().upper()
    if key not in _LEVEL_INDEX:
        raise PhantomParameterError(
            f"unknown vertebra {name!r}; the phantom models {_ALLOWED}",
            path=parameter,
            fix="use a name such as 'C5', 'T8' or 'L1'",
        )
    return _LEVEL_INDEX[key]


RefKind = Literal["vertebra", "disc", "range"]


@dataclass(frozen=True)
class LevelRef:
    """A parsed level reference: one vertebra, the disc between two, or a span of vertebrae.

    ``first`` and ``last`` are indices into :data:`LEVEL_NAMES` (cranial first); for a disc
    ``last == first + 1``, for a vertebra ``last == first``.
    """

    kind: RefKind
    first: int
    last: int

    @property
    def name(self) -> str:
        """Canonical spelling: ``"T8"``, ``"T8/9"``, ``"C7/T1"``, ``"T5-7"``, ``"C7-T2"``."""
        a, b = LEVEL_NAMES[self.first], LEVEL_NAMES[self.last]
        if self.kind == "vertebra":
            return a
        tail = b[1:] if a[0] == b[0] else b
        return f"{a}{'/' if self.kind == 'disc' else '-'}{tail}"

    @property
    def vertebrae(self) -> tuple[str, ...]:
        """The vertebrae the reference touches, cranial first."""
        return LEVEL_NAMES[self.first : self.last + 1]


_REF_PATTERN = re.compile(r"^([CTLS])(\d{1,2})\s*([/-])\s*([CTLS])?(\d{1,2})$")


def parse_level(text: str, *, parameter: str = "level") -> LevelRef:
    """Parse ``"C5"``, ``"C5/6"``, ``"C7/T1"``, ``"T5-7"`` or ``"T5-T7"`` into a :class:`LevelRef`.

    Raises
    ------
    PhantomParameterError
        For names outside C2..S1, discs between non-adjacent vertebrae and reversed ranges.
    """
    key = str(text).strip().upper()
    if key in _LEVEL_INDEX:
        i = _LEVEL_INDEX[key]
        return LevelRef("vertebra", i, i)
    match = _REF_PATTERN.match(key)
    if match is None:
        raise PhantomParameterError(
            f"cannot read the level {text!r}",
            path=parameter,
            fix="write a vertebra ('T8'), a disc ('T8/9', 'C7/T1') or a span ('T5-7')",
        )
    region, n1, sep, region2, n2 = match.groups()
    first = level_index(f"{region}{n1}", parameter=parameter)
    last = level_index(f"{region2 or region}{n2}", parameter=parameter)
    if sep == "/":
        if last != first + 1:
            raise PhantomParameterError(
                f"{text!r} is not a disc: a disc lies between two adjacent vertebrae",
                path=parameter,
                fix=f"e.g. '{LEVEL_NAMES[first]}/{LEVEL_NAMES[min(first + 1, 23)][1:]}'",
            )
        return LevelRef("disc", first, last)
    if last <= first:
        raise PhantomParameterError(
            f"the span {text!r} must run from a cranial to a more caudal vertebra",
            path=parameter,
            fix="write the cranial level first, e.g. 'T5-7'",
        )
    return LevelRef("range", first, last)


def region_of(index: int) -> Literal["cervical", "thoracic", "lumbar", "sacral"]:
    """Region of the vertebra at ``index`` in :data:`LEVEL_NAMES`."""
    letter = LEVEL_NAMES[index][0]
    return {"C": "cervical", "T": "thoracic", "L": "lumbar"}.get(letter, "sacral")  # type: ignore[return-value]


@dataclass(frozen=True)
class LevelDimensions:
    """Mid-size adult dimensions of one vertebra and its neighbourhood, in mm and degrees.

    Bone and canal columns follow [Pc]_, [Pt]_, [Pl]_ and [Tan]_, the cord [Ka]_, discs [GN]_
    (thoracic discs interpolated). The last four columns describe the body outline used for
    the soft tissues (modelling choices, not measurements).
    """

    body_width_mm: float  # endplate width, transverse
    body_depth_mm: float  # endplate depth, AP
    body_height_mm: float  # posterior body height
    disc_below_mm: float  # height of the disc caudal to this level (0 for S1)
    canal_ap_mm: float  # sagittal diameter of the bony canal
    canal_width_mm: float  # transverse diameter of the bony canal
    cord_ap_mm: float  # 0 below the conus
    cord_width_mm: float
    pedicle_width_mm: float
    pedicle_height_mm: float
    lamina_thickness_mm: float
    spinous_length_mm: float  # from the dorsal canal wall to the tip
    spinous_angle_deg: float  # caudal inclination of the spinous process from the AP axis
    transverse_span_mm: float  # tip to tip
    transverse_angle_deg: float  # dorsal inclination of the transverse processes (<0: ventral)
    facet_width_mm: float  # width of the articular pillar (lateral mass)
    lean_half_width_mm: float  # half width of the body without subcutaneous fat
    lean_half_depth_mm: float  # half AP depth of the body without subcutaneous fat
    back_depth_mm: float  # canal centre to the dorsal muscle/fat boundary
    muscle_half_width_mm: float  # half width of the paraspinal muscle mass


# fmt: off
# Columns: body width, depth, height, disc below | canal AP, width | cord AP, width |
# pedicle width, height | lamina thickness | spinous length, angle | transverse span, angle | facet
_BONE: dict[str, tuple[float, ...]] = {
    "C2": (17.0, 15.5, 16.0, 4.5, 16.0, 24.5, 8.0, 11.0, 7.5, 8.0, 3.5, 28, 20, 52, -15, 11.0),
    "C3": (15.5, 15.0, 11.5, 5.0, 14.6, 24.0, 7.9, 11.8, 5.3, 7.0, 2.8, 18, 20, 52, -20, 11.0),
    "C4": (16.0, 15.5, 11.5, 5.5, 14.3, 24.5, 7.8, 12.4, 5.4, 7.0, 2.8, 19, 20, 54, -20, 11.0),
    "C5": (16.8, 15.8, 11.3, 5.5, 14.2, 25.0, 7.6, 12.9, 5.5, 7.0, 2.8, 21, 25, 56, -20, 11.0),
    "C6": (18.5, 16.3, 11.5, 5.5, 14.0, 25.0, 7.4, 12.5, 5.6, 7.0, 2.9, 26, 25, 58, -15, 11.0),
    "C7": (19.8, 16.5, 13.5, 5.0, 14.2, 24.0, 7.1, 11.3, 6.4, 7.5, 3.5, 33, 30, 70, 0, 10.0),
    "T1": (24.5, 17.5, 15.0, 4.5, 15.0, 21.5, 6.8, 10.0, 7.8, 10.0, 5.0, 38, 40, 78, 20, 9.0),
    "T2": (25.0, 18.5, 16.0, 4.5, 15.0, 18.5, 6.6, 9.0, 6.5, 12.0, 5.5, 40, 45, 76, 25, 9.0),
    "T3": (25.5, 20.0, 16.5, 4.5, 14.9, 17.0, 6.5, 8.6, 5.2, 12.0, 5.5, 41, 50, 74, 25, 9.0),
    "T4": (26.0, 22.0, 17.0, 4.5, 14.8, 16.5, 6.4, 8.4, 5.0, 12.0, 5.5, 42, 55, 72, 25, 9.0),
    "T5": (27.0, 23.5, 17.5, 5.0, 14.8, 16.0, 6.3, 8.3, 5.0, 11.5, 5.5, 42, 60, 70, 25, 9.0),
    "T6": (28.0, 25.0, 18.0, 5.0, 14.7, 16.0, 6.3, 8.2, 5.2, 11.5, 5.5, 42, 60, 68, 25, 9.0),
    "T7": (29.0, 26.0, 18.5, 5.0, 14.7, 16.0, 6.3, 8.1, 5.5, 12.0, 5.5, 41, 60, 66, 25, 9.0),
    "T8": (30.0, 27.0, 19.0, 5.5, 14.8, 16.2, 6.3, 8.1, 6.0, 12.5, 5.8, 40, 55, 64, 25, 9.0),
    "T9": (31.5, 28.0, 20.0, 6.0, 15.0, 16.5, 6.4, 8.3, 6.5, 13.5, 6.0, 38, 50, 62, 25, 9.5),
    "T10": (34.0, 29.0, 21.0, 6.5, 15.5, 17.0, 6.6, 8.6, 7.0, 15.0, 6.0, 36, 40, 58, 20, 10.0),
    "T11": (37.0, 30.0, 22.5, 7.0, 16.0, 18.5, 7.0, 9.2, 8.0, 16.0, 6.0, 34, 30, 52, 15, 10.5),
    "T12": (40.0, 31.5, 23.5, 8.0, 16.5, 21.0, 7.4, 9.4, 8.0, 16.0, 6.0, 32, 20, 48, 10, 11.0),
    "L1": (42.0, 34.0, 25.0, 9.0, 17.0, 22.0, 5.5, 6.5, 8.5, 15.0, 6.2, 32, 10, 70, 5, 12.0),
    "L2": (44.0, 35.0, 25.5, 10.0, 16.5, 22.5, 0.0, 0.0, 9.0, 15.0, 6.3, 32, 5, 80, 0, 12.0),
    "L3": (46.0, 35.5, 25.5, 11.0, 16.0, 23.5, 0.0, 0.0, 10.5, 14.5, 6.5, 31, 0, 88, 0, 13.0),
    "L4": (48.0, 36.0, 25.0, 11.0, 16.5, 24.0, 0.0, 0.0, 12.5, 14.0, 6.8, 29, 0, 86, 0, 14.0),
    "L5": (50.0, 35.0, 24.0, 11.0, 17.5, 26.0, 0.0, 0.0, 16.0, 14.0, 7.0, 25, -5, 90, 0, 15.0),
    "S1": (50.0, 33.0, 25.0, 0.0, 15.0, 28.0, 0.0, 0.0, 18.0, 20.0, 7.0, 18, -10, 100, 0, 16.0),
}
# Columns: lean half width, lean half depth, back depth, paraspinal muscle half width
_OUTLINE: dict[str, tuple[float, ...]] = {
    "C2": (50, 55, 50, 40),
    "C3": (50, 55, 50, 40),
    "C4": (50, 55, 50, 40),
    "C5": (52, 55, 50, 40),
    "C6": (55, 57, 50, 42),
    "C7": (65, 62, 50, 45),
    "T1": (120, 90, 45, 55),
    "T2": (140, 100, 45, 55),
    "T3": (140, 100, 45, 55),
    "T4": (140, 100, 45, 55),
    "T5": (140, 100, 45, 55),
    "T6": (140, 100, 45, 55),
    "T7": (140, 100, 45, 55),
    "T8": (140, 100, 45, 55),
    "T9": (140, 100, 45, 55),
    "T10": (140, 100, 45, 55),
    "T11": (135, 100, 50, 60),
    "T12": (135, 100, 50, 60),
    "L1": (130, 100, 55, 60),
    "L2": (130, 100, 55, 60),
    "L3": (130, 100, 55, 60),
    "L4": (130, 100, 55, 60),
    "L5": (130, 100, 55, 60),
    "S1": (140, 95, 55, 65),
}
# fmt: on

#: The dimension table, one :class:`LevelDimensions` per name in :data:`LEVEL_NAMES`.
LEVEL_TABLE: dict[str, LevelDimensions] = {
    name: LevelDimensions(*(float(v) for v in (*_BONE[name], *_OUTLINE[name])))
    for name in LEVEL_NAMES
}
#: Column names of :class:`LevelDimensions`, in order.
DIMENSION_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(LevelDimensions))


@dataclass(frozen=True)
class CanalLining:
    """Soft-tissue layers between the bony canal and the dural sac, per region, in mm.

    Epidural space is thin ventrally and widest dorsally (fat between the ligamentum flavum
    and the dura); the margins include the ligaments. Thicknesses are typical MRI/anatomy
    values: posterior longitudinal ligament ~1 mm, ligamentum flavum ~1.5-3.5 mm increasing
    caudally (normal below 4 mm), dura ~0.3-0.5 mm (modelling choices within those ranges).
    """

    ventral_mm: float
    dorsal_mm: float
    lateral_mm: float
    pll_mm: float
    flavum_mm: float


CANAL_LINING: dict[str, CanalLining] = {
    "cervical": CanalLining(
        ventral_mm=0.8, dorsal_mm=2.0, lateral_mm=1.0, pll_mm=0.8, flavum_mm=1.4
    ),
    "thoracic": CanalLining(
        ventral_mm=1.0, dorsal_mm=3.6, lateral_mm=1.5, pll_mm=1.0, flavum_mm=2.4
    ),
    "lumbar": CanalLining(ventral_mm=1.5, dorsal_mm=4.5, lateral_mm=2.5, pll_mm=1.0, flavum_mm=3.4),
    "sacral": CanalLining(ventral_mm=1.5, dorsal_mm=4.5, lateral_mm=2.5, pll_mm=1.0, flavum_mm=3.4),
}
