"""Synthesis: multi-echo MRI to synthetic CT in HU, with uncertainty.

One concept per module, imported directly (this package imports nothing heavy):

=====================  ==========================================================================
module                 what it holds
=====================  ==========================================================================
``errors``             the errors and the out-of-domain warning this package raises
``config``             the pydantic training configuration (YAML), every setting with a default
``network``            the 3D U-Net with a heteroscedastic head and MC dropout
``normalisation``      input checks, the MRI body mask and robust per-echo intensity scaling
``manifest``           the cohort manifest (CSV or JSON) and loading its cases
``patches``            patch sampling weighted towards bone and lesions
``sliding_window``     bounded-memory sliding-window inference with Gaussian blending
``uncertainty``        per-patch predictors: one pass, MC dropout, ensemble
``domain``             the training domain a model declares, and the check of an input against it
``model_folder``       saving and loading a model folder (safetensors, config, card, checksum)
``synthesizer``        :class:`~synthct.synthesis.synthesizer.SynthesisModel`: MRI in, sCT out
``baseline``           the non-learning tissue-class baseline behind the same interface
``checkpoint``         training checkpoints (exact resume) and the CSV training log
``training``           the training loop: split, patches, loss, validation, the model folder
``lesion_insertion``   lesion-aware training: library lesions blended into MRI and CT patches
``shipped``            the shipped models (product_like, lesion_aware) as package data
=====================  ==========================================================================
"""
