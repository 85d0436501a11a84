"""TotalSegmentator v2 ``total`` class numbers, grouped by the tissue they become.

Class numbers and names from the label table of TotalSegmentator v2 (Wasserthal J et al.
TotalSegmentator: robust segmentation of 104 anatomic structures in CT images. Radiol Artif
Intell 2023;5:e230024); a test checks every number against the shipped table
(``totalsegmentator_total_v2_labels.json``).
"""

from __future__ import annotations

from collections.abc import Mapping

from synthct.imaging.labels import Tissue

_VERTEBRAE = tuple(range(26, 51))  # S1, L5 .. L1, T12 .. T1, C7 .. C1 (caudal to cranial)
_RIBS = tuple(range(92, 116))  # rib_left_1 .. rib_right_12

#: Label groups (name -> class numbers) used by :func:`synthct.phantom.ct_derived
#: .tissue_map_from_ct`.
TOTALSEGMENTATOR_V2: Mapping[str, tuple[int, ...]] = {
    # Vertebrae in caudal-to-cranial order: neighbours in this tuple are adjacent levels.
    "vertebrae": _VERTEBRAE,
    "spinal_cord": (79,),
    "muscle": (80, 81, 82, 83, 84, 85, 86, 87, 88, 89),  # gluteal, autochthon, iliopsoas
    # Bones whose outer shell is cortex and whose inside is marrow (vertebrae included).
    # sacrum, vertebrae, humerus/scapula/clavicle/femur/hip (69-78), skull, ribs, sternum
    "bone": (25, *_VERTEBRAE, *range(69, 79), 91, *_RIBS, 116),
    "lung": (10, 11, 12, 13, 14),
    "airway": (16,),  # trachea
    "bowel": (6, 15, 18, 19, 20),  # stomach, oesophagus, small bowel, duodenum, colon
    "vessels": (52, 53, 54, 55, 56, 57, 58, 59, 60, 62, 63, 64, 65, 66, 67, 68),
    "heart": (51, 61),  # heart, left atrial appendage
    "liver": (5,),
    "spleen": (1,),
    "kidney": (2, 3, 23, 24),  # kidneys and kidney cysts
}

#: Groups painted as one tissue wherever their label is (solid organs, vessels).
ORGAN_TISSUES: Mapping[str, Tissue] = {
    "vessels": Tissue.BLOOD,
    "heart": Tissue.HEART,
    "liver": Tissue.LIVER,
    "spleen": Tissue.SPLEEN,
    "kidney": Tissue.KIDNEY,
}

#: Names of the structures the generator can take from labels, as reported when they are
#: missing and come from HU alone.
STRUCTURES = (
    "bone (cortex vs marrow)",
    "intervertebral discs",
    "spinal canal",
    "spinal cord",
    "muscle",
    "lung",
    "bowel gas",
    "vessels",
    "heart",
    "liver",
    "spleen",
    "kidney",
)
