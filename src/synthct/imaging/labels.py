"""Tissue labels shared by the anatomy, the lesion library and the CT/MRI simulators.

This enum is the contract between the modules that *draw* a phantom (``anatomy``, ``lesions``)
and the ones that *render* it (``ct``, ``mri``): a phantom is a ``uint8`` array of these labels
on a (usually supersampled) grid. Lesions are drawn with their own tissue labels; a partially
calcified lesion is a mixture of ``MENINGIOMA`` and ``CALCIFICATION`` sub-voxels, so its mean HU
and its MRI signal both follow from the calcified fraction through the same physics.
The physical properties of each label live in :mod:`synthct.imaging.tissues`.
"""

from __future__ import annotations

from enum import IntEnum


class Tissue(IntEnum):
    """Tissue classes of the spine phantom (values are the voxel labels)."""

    AIR = 0
    SUBCUTANEOUS_FAT = 1
    MUSCLE = 2
    CORTICAL_BONE = 3
    CANCELLOUS_BONE = 4
    DISC = 5
    CSF = 6
    SPINAL_CORD = 7
    EPIDURAL_FAT = 8
    DURA = 9
    LIGAMENT = 10
    SOFT_TISSUE = 11  # viscera / other soft tissue in front of the spine
    # Real-anatomy tissues (CT-derived phantoms; see synthct.phantom.ct_derived)
    MARROW_FF10 = 30  # trabecular bone whose marrow fat fraction is 0.0-0.2 (red marrow)
    MARROW_FF30 = 31  # fat fraction 0.2-0.4
    MARROW_FF50 = 32  # fat fraction 0.4-0.6
    MARROW_FF70 = 33  # fat fraction 0.6-0.8
    MARROW_FF90 = 34  # fat fraction 0.8-1.0 (yellow, fatty marrow)
    LUNG = 40  # lung parenchyma (alveolar air, tissue and capillary blood)
    BOWEL_GAS = 41  # gas inside stomach and bowel (physically air; kept apart from outside air)
    BLOOD = 42  # blood in large vessels and heart chambers
    LIVER = 43
    SPLEEN = 44
    KIDNEY = 45
    HEART = 46  # myocardium and blood pool, as TotalSegmentator labels the heart
    # Lesion tissues
    MENINGIOMA = 20  # non-calcified meningioma matrix
    CALCIFICATION = 21  # dense psammomatous / dystrophic calcification
    SCHWANNOMA = 22
    OSSIFICATION = 23  # heterotopic bone (OPLL, OLF): lamellar bone with marrow
    DISC_HERNIATION = 24  # herniated (non-calcified) disc material
    SYNOVIAL_CYST = 25


#: Trabecular bone labels by marrow fat fraction, in increasing fat fraction (bin centres
#: 0.1, 0.3, 0.5, 0.7, 0.9); see :mod:`synthct.imaging.marrow`.
MARROW_TISSUES = (
    Tissue.MARROW_FF10,
    Tissue.MARROW_FF30,
    Tissue.MARROW_FF50,
    Tissue.MARROW_FF70,
    Tissue.MARROW_FF90,
)

#: Labels that belong to lesions rather than normal anatomy.
LESION_TISSUES = frozenset(
    {
        Tissue.MENINGIOMA,
        Tissue.CALCIFICATION,
        Tissue.SCHWANNOMA,
        Tissue.OSSIFICATION,
        Tissue.DISC_HERNIATION,
        Tissue.SYNOVIAL_CYST,
    }
)
