"""Imaging services shared by the products (phantom, synthesis, validation, audit).

Tissue physics (:mod:`~synthct.imaging.labels`, :mod:`~synthct.imaging.tissues`), masks
(:mod:`~synthct.imaging.body_mask`), registration (:mod:`~synthct.imaging.alignment`,
:mod:`~synthct.imaging.alignment_check`), metrics (:mod:`~synthct.imaging.image_metrics`,
:mod:`~synthct.imaging.lesion_size`) and MRI noise (:mod:`~synthct.imaging.mri_noise`). This
layer imports only geometry, volumes and I/O, never a product (the contract in ``.importlinter``);
the package imports nothing so that ``import synthct.imaging.x`` stays cheap.
"""
