"""Errors of the omission audit.

Like every :class:`~synthct.errors.SynthctError`, each names what is wrong, where, and what to
supply; the CLI prints them and exits with code 2.
"""

from __future__ import annotations

from synthct.errors import SynthctError


class AuditInputError(SynthctError, ValueError):
    """An MRI, sCT or map the audit cannot use (missing protocol values, no overlap, NaNs)."""


class AuditModelError(SynthctError, ValueError):
    """A novelty model or calibration file that is missing, malformed or does not fit."""
