"""Omission audit: flag where an sCT probably omits (or invents) what its MRI shows, without CT.

One concept per module, imported directly (this package imports nothing heavy):

=========================  ======================================================================
module                     what it holds
=========================  ======================================================================
``errors``                 the errors of the audit
``inputs``                 protocol completeness, the sCT brought onto the MRI grid
``tissue_classes``         HU bands of the sCT, their MR signals and the envelope they allow
``mri_consistency``        the physics signal: echoes predicted from the sCT's tissues, residuals
``learned_consistency``    the learned signal: echoes a network predicts from the sCT, residuals
``learned_network``        that network (imports torch)
``novelty``                input novelty: a patch PPCA of lesion-free MRI, its model file
``epistemic``              the epistemic SD interface (our model, a precomputed map, MC dropout)
``combine``                standardisation, thresholds for a false-flag target, the flag rule
``regions``                connected flagged regions: where, how big, which signals fired
``signals``                the signals as objects behind one interface (what run_audit loops over)
``pipeline``               :func:`~synthct.audit.pipeline.run_audit`: one MRI and its sCT
``report``                 the output folder: volumes, ``audit.json``, ``report.html``, figures
``model``                  the audit model folder: the shipped one, checksums, loading
``training``               training the audit model (novelty, learned consistency, calibration)
``evaluation``             sensitivity, false flags and ROC per signal on a held-out phantom cohort
=========================  ======================================================================
"""
