"""Evaluation: a synthesis model run on a cohort (or a split's subset) and scored against CT.

=============  ================================================================================
module         what it holds
=============  ================================================================================
``cases``      the evaluation manifest (synthesis or validation format) and split subsets
``run``        :func:`~synthct.evaluation.run.evaluate_cohort`: sCTs (resumable), validation
``tables``     the SynthRAD2025-style table, cohort mean/SD, Markdown and HTML summaries
=============  ================================================================================
"""
