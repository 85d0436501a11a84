"""Errors and warnings of the synthesis package.

Every error names the file or parameter at fault and the fix, like all
:class:`~synthct.errors.SynthctError` subclasses; the CLI prints them and exits with code 2.
"""

from __future__ import annotations

from synthct.errors import SynthctError
from synthct.manifest import ManifestError

__all__ = [
    "DomainMismatchError",
    "ManifestError",
    "ModelFolderError",
    "SynthesisInputError",
    "TrainingConfigError",
    "TrainingInterrupted",
]


class SynthesisInputError(SynthctError, ValueError):
    """An MRI that cannot be synthesised from (wrong echo count, NaNs, no signal, a CT...)."""


class TrainingConfigError(SynthctError, ValueError):
    """A training configuration (YAML or keyword) with an invalid or inconsistent setting."""


class TrainingInterrupted(SynthctError, RuntimeError):
    """A training run stopped by SIGINT or SIGTERM after checkpointing its last iteration."""


class ModelFolderError(SynthctError, OSError):
    """A model folder that is incomplete, corrupt (checksum) or inconsistent with its config."""


class DomainMismatchError(SynthctError, ValueError):
    """An input the model cannot run on at all (e.g. another number of echoes)."""


class OutOfDomainWarning(UserWarning):
    """The input lies outside the training domain the model card declares.

    The model still runs; the message names each mismatch (field strength, echo time, voxel
    size...). Turn it into an error with ``warnings.simplefilter("error", OutOfDomainWarning)``.
    """
