"""What a synthesizer returns (:class:`SynthesisResult`) and what a synthesizer is.

Its own module so that every synthesizer (the learned :mod:`~synthct.synthesis.synthesizer`,
the tissue-class :mod:`~synthct.synthesis.baseline`) can return it without importing another.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from synthct.io.image_files import image_suffix
from synthct.synthesis.sliding_window import WindowProgress
from synthct.volume import MultiEchoMR, ScalarVolume, SyntheticCT

#: File name endings of the uncertainty maps written beside the sCT.
MAP_SUFFIXES = {
    "aleatoric_sd": "_aleatoric_sd",
    "epistemic_sd": "_epistemic_sd",
    "total_sd": "_total_sd",
}


def map_paths(sct_path: str | os.PathLike[str]) -> dict[str, Path]:
    """Where the SD maps of an sCT file go: ``<stem>_aleatoric_sd<suffix>`` and so on."""
    p = Path(sct_path)
    suffix = image_suffix(p) or p.suffix
    stem = p.name[: len(p.name) - len(suffix)] if suffix else p.name
    return {k: p.with_name(stem + v + suffix) for k, v in MAP_SUFFIXES.items()}


@dataclass
class SynthesisResult:
    """An sCT and, when requested, its uncertainty maps (SD in HU), all on the MRI grid.

    Parameters
    ----------
    sct : SyntheticCT
        The synthetic CT in HU.
    body_mask : (I, J, K) ndarray of bool
        The MRI body mask used for normalisation (and masking, when on).
    aleatoric_sd, epistemic_sd, total_sd : ScalarVolume, optional
        SD maps in HU.
    epistemic_method : str, optional
        ``"mc_dropout"`` (with ``mc_passes``) or ``"ensemble"``.
    out_of_domain : list of str
        The training-domain mismatches found (each was also warned about).
    """

    sct: SyntheticCT
    body_mask: NDArray[np.bool_]
    aleatoric_sd: ScalarVolume | None = None
    epistemic_sd: ScalarVolume | None = None
    total_sd: ScalarVolume | None = None
    epistemic_method: str | None = None
    mc_passes: int | None = None
    out_of_domain: list[str] = field(default_factory=list)

    def maps(self) -> dict[str, ScalarVolume]:
        """The SD maps present, by name (``aleatoric_sd``, ``epistemic_sd``, ``total_sd``)."""
        found = {
            "aleatoric_sd": self.aleatoric_sd,
            "epistemic_sd": self.epistemic_sd,
            "total_sd": self.total_sd,
        }
        return {k: v for k, v in found.items() if v is not None}

    def write(
        self, path: str | os.PathLike[str], *, overwrite: bool = True, **dicom: Any
    ) -> dict[str, Path]:
        """Write the sCT to ``path`` and its SD maps beside it (atomic writes); return paths.

        Extra keyword arguments go to the DICOM writer when ``path`` is a DICOM folder.
        """
        from synthct.io import write_volume

        written = {"sct": write_volume(self.sct, path, overwrite=overwrite, **dicom)}
        targets = map_paths(path)
        for name, volume in self.maps().items():
            written[name] = write_volume(volume, targets[name], overwrite=overwrite)
        return written


class Synthesizer(Protocol):
    """Anything that turns a multi-echo MRI into a :class:`SynthesisResult`."""

    name: str

    def synthesize(
        self,
        mr: MultiEchoMR,
        *,
        uncertainty: bool = False,
        progress: WindowProgress | None = None,
    ) -> SynthesisResult:
        """The sCT of ``mr`` (and SD maps when ``uncertainty``)."""
        ...
