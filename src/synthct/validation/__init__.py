"""Validation of a synthetic CT against its CT, image-wide and lesion by lesion.

Modules, one concept each: the lesion modules (``lesion_*``: ROI statistics, visibility, the
per-lesion figure), :mod:`~synthct.validation.statistics` (cohort statistics), the case and the
cohort runner, the DICOM SEG/SR of the lesion results and the audit column. The image metrics,
body mask, registration and lesion size it uses are shared services in :mod:`synthct.imaging`.
Import from the modules; this package imports nothing so that ``import synthct.validation.x``
stays cheap.
"""
