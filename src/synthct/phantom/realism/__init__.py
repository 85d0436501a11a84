"""Measuring how real phantom CTs look: per-tissue HU statistics, noise power, a patch classifier.

The pieces of ``benchmarks/realism.py`` (issue #15, "Must show"), each usable on its own:

* :mod:`~synthct.phantom.realism.tissue_hu`: tissue masks from smoothed HU classes and the HU
  mean and SD inside them.
* :mod:`~synthct.phantom.realism.noise_power`: the radial noise power spectrum of axial ROIs in
  uniform regions.
* :mod:`~synthct.phantom.realism.patches`: CT patches on a common grid for the classifier.
* :mod:`~synthct.phantom.realism.classifier`: a tiny 3D CNN that tells real from phantom CT
  patches, and the AUC of its scores on held-out patches.
"""
