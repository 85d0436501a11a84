"""Lesion results as DICOM: a SEG of the lesion masks and a TID 1500 measurement report (SR).

Both reference the CT series the lesions were measured on, so a PACS or viewer shows the
outlines on the CT and lists the measurements beside them (highdicom [1]_ builds and checks
both objects).

:func:`write_lesion_seg`
    A binary DICOM Segmentation, one segment per lesion (segment label ``lesion <id>`` or the
    lesion's name, tracking id ``lesion-<id>``), category "Morphologically Abnormal Structure",
    type "Lesion" (SNOMED CT). Masks are given on the CT grid (a :class:`~synthct.volume.LabelMap`
    or arrays with the grid's affine); each CT slice file gets the frame that lies on it, found
    from its ImagePositionPatient and ImageOrientationPatient, so any slice order and any
    orientation the reader produced are handled. Empty frames are left out.
:func:`write_lesion_sr`
    A Comprehensive 3D SR with a TID 1500 Measurement Report. Per lesion two TID 1411
    volumetric measurement groups, one per image (reference CT, synthetic CT), each with the
    lesion's tracking identifier, the ROI (the SEG segment when a SEG is given, else the ROI
    centre as a 3D point) and:

    ======================  ==================================================================
    item                    code
    ======================  ==================================================================
    ROI mean                (112031, DCM, "Attenuation Coefficient"), derivation (373098007,
                            SCT, "Mean"), unit ([hnsf'U], UCUM)
    ROI SD                  the same with derivation (386136009, SCT, "Standard Deviation")
    axial diameter          (81827009, SCT, "Diameter"), method (AXIAL-FERET, 99SYNTHCT,
                            "Maximal axial Feret diameter"), mm
    sagittal diameter       (81827009, SCT, "Diameter"), method (CRANIOCAUDAL, 99SYNTHCT,
                            "Cranio-caudal extent"), mm
    CNR                     (CNR, 99SYNTHCT, "Contrast-to-noise ratio"), unit (1, UCUM)
    visibility              (VISIBLE, 99SYNTHCT, "Lesion visible") = (52101004, SCT,
                            "Present") or (272519000, SCT, "Absent")
    calcification (CT)      (CALC-GRADE, 99SYNTHCT, "Calcification grade") = NONE-OR-BARELY /
                            PARTIAL / DENSE (99SYNTHCT)
    ======================  ==================================================================

    The image a group was measured on is its measurement method: (REFERENCE-CT, 99SYNTHCT,
    "Measured on the reference CT") or (SYNTHETIC-CT, 99SYNTHCT, "Measured on the synthetic
    CT"). Codes exist in DICOM/SNOMED CT for the ROI statistics, the diameter and presence; the
    rest are private codes of the coding scheme ``99SYNTHCT`` (a private scheme, as DICOM PS3.16
    section 8 allows), declared in the SR's Coding Scheme Identification Sequence. Numbers that
    are not finite (an infinite CNR from a noiseless shell, the SD of one voxel) are left out:
    DICOM numeric content items hold finite decimals only.

The CT series is read header-only (:func:`read_ct_datasets`); empty SOP Class/Instance UIDs
are taken from the files' meta information, while empty Study/Series/Frame of Reference UIDs
(as some anonymisers leave them) are refused with an error, since a SEG or SR must reference
them. :func:`lesion_measurements_from_sr` reads a report back into flat rows. The code lives
in :mod:`synthct.io.dicom_references` (CT headers, UIDs, private codes),
:mod:`synthct.validation.dicom_seg` and :mod:`synthct.validation.dicom_sr`; import it from here.

The tracking UID of a lesion is derived from the CT series UID and the lesion id, so the SEG
and the SR written for one case name the same lesion with the same UID. Files are written
atomically.

References
----------
.. [1] C. P. Bridge et al., "Highdicom: a Python library for standardized encoding of image
   annotations and machine learning model outputs in pathology and radiology", J Digit Imaging
   35, 2022.
"""

from synthct.io.dicom_references import (
    PRIVATE_SCHEME,
    lesion_tracking_uid,
    read_ct_datasets,
)
from synthct.validation.dicom_seg import masks_from_results, write_lesion_seg
from synthct.validation.dicom_sr import lesion_measurements_from_sr, write_lesion_sr

__all__ = [
    "PRIVATE_SCHEME",
    "lesion_measurements_from_sr",
    "lesion_tracking_uid",
    "masks_from_results",
    "read_ct_datasets",
    "write_lesion_seg",
    "write_lesion_sr",
]
