"""Marrow fat fraction of trabecular bone from its CT number, and its fat-fraction bins.

Trabecular bone is a mixture of mineralised trabeculae and marrow; marrow is a mixture of
hematopoietic (red, water-like) and fatty (yellow) marrow. CT attenuation mixes linearly by
volume, so the trabecular CT number is

    HU(ff) = bv_tv * bone_hu + (1 - bv_tv) * ((1 - ff) * red_marrow_hu + ff * fat_hu)

and a fattier marrow lowers it: this is the marrow-fat error of single-energy QCT (Glueer CC,
Genant HK. Impact of marrow fat on accuracy of quantitative CT. J Comput Assist Tomogr
1989;13:1023-1035; Goodsitt MM et al. Invest Radiol 1987;22:799-810). Inverting it at a fixed
bone volume fraction gives the fat fraction of each voxel.

Defaults
--------
* ``bv_tv = 0.10``: lumbar vertebral trabecular bone volume fraction about 0.09-0.12
  (Hildebrand T et al. J Bone Miner Res 1999;14:1167-1174, L2 BV/TV ~0.09).
* ``bone_hu = 1850``: mineralised bone matrix, as cortical bone in the tissue table.
* ``red_marrow_hu = 40``: cellular (water-like) marrow, as soft tissue (assumption within the
  30-60 HU of cellular soft tissue).
* ``fat_hu = -100``: adipose tissue, as subcutaneous fat in the tissue table.

With these, HU falls from 221 (no fat) to 95 (all fat), 12.6 HU per 0.1 of fat fraction, the
size of the QCT fat error Glueer and Genant report; an adult L1 of ~170 HU (Pickhardt PJ et al.
Ann Intern Med 2013;158:588-595) has a fat fraction of ~0.4, within the 0.3-0.6 of adult
vertebral marrow by MR spectroscopy (Griffith JF et al. Radiology 2005;236:945-951).

The bone volume fraction itself falls with age and osteoporosis; at a fixed ``bv_tv`` that loss
shows up as extra fat. The relation is a model for simulation, not a measurement of a patient.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from synthct.errors import SynthctError
from synthct.imaging.labels import MARROW_TISSUES, Tissue

#: Upper edges of the fat-fraction bins (the last bin ends at 1).
FAT_FRACTION_EDGES = (0.2, 0.4, 0.6, 0.8)
#: Fat fraction at the centre of each bin, in the order of :data:`MARROW_TISSUES`.
BIN_CENTRES = (0.1, 0.3, 0.5, 0.7, 0.9)


@dataclass(frozen=True)
class MarrowModel:
    """Linear mixing of trabeculae, red and fatty marrow (see the module docstring)."""

    bv_tv: float = 0.10
    bone_hu: float = 1850.0
    red_marrow_hu: float = 40.0
    fat_hu: float = -100.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.bv_tv < 1.0:
            raise SynthctError(
                f"bv_tv must lie in 0..1, got {self.bv_tv}",
                path="MarrowModel.bv_tv",
                fix="give the bone volume fraction of trabecular bone, e.g. 0.10",
            )
        if not self.red_marrow_hu > self.fat_hu:
            raise SynthctError(
                "red marrow must attenuate more than fat",
                path="MarrowModel.red_marrow_hu",
                fix="use red_marrow_hu > fat_hu (e.g. 40 and -100 HU)",
            )

    def hu_of_fat_fraction(self, fat_fraction: ArrayLike) -> NDArray[np.float64]:
        """Trabecular CT number (HU) of a marrow fat fraction (0..1)."""
        ff = np.asarray(fat_fraction, dtype=np.float64)
        marrow = (1.0 - ff) * self.red_marrow_hu + ff * self.fat_hu
        return np.asarray(self.bv_tv * self.bone_hu + (1.0 - self.bv_tv) * marrow)

    @property
    def hu_per_fat_fraction(self) -> float:
        """Change of trabecular HU per unit fat fraction (negative)."""
        return -(1.0 - self.bv_tv) * (self.red_marrow_hu - self.fat_hu)

    def fat_fraction_of_hu(self, hu: ArrayLike) -> NDArray[np.float64]:
        """Marrow fat fraction (clipped to 0..1) of a trabecular CT number in HU."""
        h = np.asarray(hu, dtype=np.float64)
        ff = (h - self.hu_of_fat_fraction(0.0)) / self.hu_per_fat_fraction
        return np.asarray(np.clip(ff, 0.0, 1.0))


def fat_fraction_bin(fat_fraction: ArrayLike) -> NDArray[np.intp]:
    """Index (0..4) of the fat-fraction bin of each value."""
    return np.asarray(np.digitize(np.asarray(fat_fraction, np.float64), FAT_FRACTION_EDGES))


def marrow_labels(fat_fraction: ArrayLike) -> NDArray[np.uint8]:
    """The marrow :class:`~synthct.imaging.labels.Tissue` label of each fat fraction."""
    table = np.array([int(t) for t in MARROW_TISSUES], dtype=np.uint8)
    return np.asarray(table[fat_fraction_bin(fat_fraction)])


def marrow_tissue(fat_fraction: float) -> Tissue:
    """The marrow tissue whose bin holds ``fat_fraction``."""
    return MARROW_TISSUES[int(fat_fraction_bin(fat_fraction))]


#: The default relation used by the tissue table and the CT-derived generator.
DEFAULT_MARROW = MarrowModel()
