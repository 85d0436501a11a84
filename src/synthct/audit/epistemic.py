"""Epistemic uncertainty of the synthesis model, when the sCT is ours.

The signal is the epistemic SD map in HU (MC-dropout [1]_ or ensemble spread) on the MRI grid.
It comes from anything with the :data:`EpistemicSD` interface, a callable ``mr -> ScalarVolume``:

* :func:`model_folder_epistemic`: a synthct model folder (or several: an ensemble), through
  :class:`synthct.synthesis.synthesizer.SynthesisModel` (MC dropout for one folder);
* :func:`precomputed_epistemic`: the ``*_epistemic_sd`` map written beside the sCT by
  ``synthct synthesize --uncertainty``;
* :func:`mc_dropout_epistemic`: any torch network with dropout that maps the normalised echoes
  to HU (used by the tests with a tiny network).

The literature warns that MC-dropout variance misses systematic omissions: a model that never
saw a calcified tumour can be confidently wrong about it. The evaluation
(:mod:`synthct.audit.evaluation`) measures whether that holds here.

References
----------
.. [1] Gal Y, Ghahramani Z. Dropout as a Bayesian approximation: representing model
   uncertainty in deep learning. ICML 2016.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from synthct.audit.errors import AuditInputError
from synthct.volume import MultiEchoMR, ScalarVolume

#: The interface: epistemic SD (HU) of the sCT of an MRI, on the MRI's grid.
EpistemicSD = Callable[[MultiEchoMR], ScalarVolume]


def epistemic_map(source: EpistemicSD, mr: MultiEchoMR) -> ScalarVolume:
    """Call ``source`` and check its map: finite, non-negative, on the MRI grid.

    A map on another grid of the same frame is resampled onto the MRI grid.

    Raises
    ------
    AuditInputError
        NaN, infinite or negative values, or a map that does not overlap the MRI.
    """
    from synthct.audit.inputs import sd_map_on_mri_grid

    return sd_map_on_mri_grid(
        source(mr),
        mr,
        what="epistemic SD map",
        fix="pass the *_epistemic_sd map (an SD in HU, from synthct synthesize --uncertainty), "
        "not a difference image",
    )


def precomputed_epistemic(path: str | os.PathLike[str]) -> EpistemicSD:
    """An :data:`EpistemicSD` that reads a map from a file (ignores the MRI it is given)."""

    def read(_mr: MultiEchoMR) -> ScalarVolume:
        from synthct.io import read_volume

        return read_volume(path, kind="scalar").as_scalar()

    return read


def model_folder_epistemic(
    model: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    mc_passes: int | None = None,
    device: str = "cpu",
    seed: int = 0,
) -> EpistemicSD:
    """The epistemic SD of a synthct model folder (MC dropout) or of several (ensemble).

    Parameters
    ----------
    model : path or sequence of paths
        Model folder(s) written by ``synthct train``.
    mc_passes : int, optional
        Dropout passes; the model's configured number when omitted.
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    seed : int
        Seeds the dropout masks.
    """
    from synthct.synthesis.synthesizer import SynthesisModel

    loaded = SynthesisModel.load(model, device=device)

    def compute(mr: MultiEchoMR) -> ScalarVolume:
        result = loaded.synthesize(mr, uncertainty=True, mc_passes=mc_passes, seed=seed)
        if result.epistemic_sd is None:
            raise AuditInputError(
                "the synthesis model returned no epistemic map",
                path=str(model),
                fix="use a model with dropout, or several model folders (an ensemble)",
            )
        return result.epistemic_sd

    return compute


def mc_dropout_epistemic(
    network: Any,
    prepare: Callable[[MultiEchoMR], Any],
    *,
    passes: int = 8,
    hu_scale: float = 1000.0,
    seed: int = 0,
) -> EpistemicSD:
    """MC-dropout SD of any torch network whose output channel 0 is the sCT.

    Parameters
    ----------
    network : torch.nn.Module
        Maps a ``(1, n_echoes, I, J, K)`` tensor to ``(1, C, I, J, K)``; channel 0 is HU /
        ``hu_scale``.
    prepare : callable
        Turns the MRI into the network's input tensor (normalisation).
    passes : int
        Forward passes with dropout on (at least 2).
    hu_scale : float
        HU per network unit.
    seed : int
        Seeds the dropout masks.
    """
    import torch

    if passes < 2:
        raise AuditInputError(f"MC dropout needs at least 2 passes, got {passes}", path="passes")

    def compute(mr: MultiEchoMR) -> ScalarVolume:
        x = prepare(mr)
        modes = {m: m.training for m in network.modules()}
        network.eval()
        for module in network.modules():
            if isinstance(module, torch.nn.modules.dropout._DropoutNd):
                module.train()
        try:
            with torch.random.fork_rng(devices=[]), torch.inference_mode():
                torch.manual_seed(seed)
                samples = torch.stack([network(x)[0, 0] for _ in range(passes)])
        finally:
            for module, mode in modes.items():
                module.train(mode)
        sd = samples.std(dim=0, unbiased=False).numpy() * np.float32(hu_scale)
        return ScalarVolume(sd.astype(np.float32), mr.affine)

    return compute
