"""Errors raised by synthct's library code.

Every error names what is wrong, where (file or parameter) and how to fix it; the CLI turns
them into a message and a non-zero exit code. Nothing below ``synthct.cli`` prints or exits.
"""

from __future__ import annotations

from os import PathLike


class SynthctError(Exception):
    """Base class of every error synthct raises on purpose.

    Parameters
    ----------
    problem : str
        What is wrong, in one or two sentences.
    path : str or PathLike, optional
        The file, folder or parameter the problem is in.
    fix : str, optional
        What the user should do about it.
    """

    def __init__(
        self,
        problem: str,
        *,
        path: str | PathLike[str] | None = None,
        fix: str | None = None,
    ) -> None:
        self.problem = problem
        self.path = None if path is None else str(path)
        self.fix = fix
        super().__init__(self._compose())

    def _compose(self) -> str:
        text = f"{self.path}: {self.problem}" if self.path else self.problem
        if self.fix:
            text += f"\n  Fix: {self.fix}"
        return text


class GeometryError(SynthctError, ValueError):
    """An affine or grid that is not a valid LPS voxel-to-world mapping."""


class GeometryMismatchError(GeometryError):
    """Two volumes that were about to be compared or combined live on different grids."""


class VolumeKindError(SynthctError, ValueError):
    """Data that does not fit the kind it was given as (e.g. an MR passed as CT)."""


class ReadError(SynthctError, OSError):
    """A file or folder that cannot be read as a volume."""


class WriteError(SynthctError, OSError):
    """A volume that cannot be written where it was asked to go."""


class PhantomParameterError(SynthctError, ValueError):
    """A phantom, tissue or signal-model parameter outside its allowed range."""


class GeometryWarning(UserWarning):
    """An image geometry synthct accepted but that deserves a look (e.g. qform vs sform)."""
