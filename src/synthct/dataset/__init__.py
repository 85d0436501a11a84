"""Paired MR/CT datasets: reading them as cases, QA, patient-level splits, fingerprint, export.

Modules, one concept each: :mod:`~synthct.dataset.readers` (SynthRAD2023/2025 layouts, DICOM
studies and manifests, all read as :class:`synthct.case.Case`), :mod:`~synthct.dataset.qa`
(one QA row per case, cohort flags), :mod:`~synthct.dataset.registration` (rigid MR-to-CT by
mutual information), :mod:`~synthct.dataset.check` (``synthct dataset check``: the QA folder),
:mod:`~synthct.dataset.split` (the split file), :mod:`~synthct.dataset.fingerprint` (what
training plans from) and :mod:`~synthct.dataset.export` (the SynthRAD layout). Import from the
modules; this package imports nothing so that ``import synthct.dataset.x`` stays cheap.
"""
