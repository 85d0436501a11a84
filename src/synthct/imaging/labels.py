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
    # Lesion tissues
    MENINGIOMA = 20  # non-calcified meningioma matrix
    CALCIFICATION = 21  # dense psammomatous / dystrophic calcification
    SCHWANNOMA = 22
    OSSIFICATION = 23  # heterotopic bone (OPLL, OLF): lamellar bone with marrow
    DISC_HERNIATION = 24  # herniated (non-calcified) disc material
    SYNOVIAL_CYST = 25


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
