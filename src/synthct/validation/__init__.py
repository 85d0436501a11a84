"""Validation of a synthetic CT against its CT, image-wide and lesion by lesion.

Modules, one concept each: :mod:`~synthct.validation.body_mask` (body mask from CT),
:mod:`~synthct.validation.image_metrics` (SynthRAD2025-compatible MAE, ME, PSNR, MS-SSIM,
per-tissue MAE, bone Dice), the lesion modules (``lesion_*``: ROI statistics, visibility, size)
and :mod:`~synthct.validation.statistics` (cohort statistics). Import from the modules; this
package imports nothing so that ``import synthct.validation.x`` stays cheap.
"""
