"""Reference disagreement: where a lesion-aware model sees denser tissue than the audited sCT.

The paper's sCT omitted calcified tumours because its model had never seen one; the remedy the
authors call for is domain-specific training. This signal puts such a model beside the audited
sCT: a synthesis model trained with the lesions of interest (by default synthct's shipped
``lesion_aware`` model, trained with calcified lesions inserted into MRI and CT) makes its own
sCT of the same MRI, with its epistemic SD, and the audit looks for places where that
reference says "dense" and the audited sCT does not. It needs only the MRI and the audited
sCT, so it works on anyone's sCT.

Method (settings in :class:`ReferenceSettings`)
-----------------------------------------------
``z = G * [(ref - sct) / sqrt(sd_ref**2 + floor**2) where sct < ceiling, else 0]``: the HU by
which the audited sCT falls short of the reference, in units of the reference's epistemic SD
(MC dropout) with a floor (``floor_hu``: both models' ordinary disagreement in soft tissue),
counted only where the audited sCT renders soft tissue or fluid (below
``omission_ceiling_hu``, the 250 HU bone threshold of the bone Dice), and smoothed by a
Gaussian of ``smoothing_mm`` (the texture of partly calcified tissue). An *omission* is a
dense structure rendered as soft tissue (the paper's tumours: 463.6 HU on CT, 20.9 HU on the
sCT); bone rendered less dense than the reference is an HU error, and on held-out phantoms the
two shipped models disagree that way at cortical bone as much as at any lesion. A shortfall
scores positive; an sCT denser than the reference scores negative and is not flagged (the
MRI consistency signal looks for invented structure).

It is only as good as the reference: it finds what the reference was trained to see, and
nothing when the audited sCT is the reference's own (the report says so). The evidence for it
is in :mod:`synthct.audit.combine`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from synthct.audit.errors import AuditInputError
from synthct.volume import CTVolume, MultiEchoMR, ScalarVolume, SyntheticCT

#: The shipped synthesis model used as reference when none is named.
DEFAULT_REFERENCE_MODEL = "lesion_aware"


@dataclass(frozen=True)
class ReferenceSettings:
    """Settings of the reference disagreement signal (see the module docstring).

    Attributes
    ----------
    floor_hu : float
        SD floor added in quadrature to the reference's epistemic SD, HU.
    smoothing_mm : float
        Gaussian applied to the standardised difference.
    omission_ceiling_hu : float
        Only voxels where the audited sCT is below this count (soft tissue and fluid).
    """

    floor_hu: float = 50.0
    smoothing_mm: float = 1.0
    omission_ceiling_hu: float = 250.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return {
            "floor_hu": self.floor_hu,
            "smoothing_mm": self.smoothing_mm,
            "omission_ceiling_hu": self.omission_ceiling_hu,
        }


@dataclass
class ReferencePrediction:
    """The reference model's sCT of an MRI and its epistemic SD (HU), on the MRI grid.

    Attributes
    ----------
    sct : CTVolume
        Reference sCT.
    sd : ScalarVolume
        Its epistemic SD in HU.
    source : str
        The reference model (name or folder) or the files read.
    weights_sha256 : str or None
        Checksum of the reference weights, when known.
    out_of_domain : list of str
        The reference model's training-domain mismatches for this MRI: its sCT (and the
        signal) may be wrong there, and every report of the audit repeats them.
    """

    sct: CTVolume
    sd: ScalarVolume
    source: str
    weights_sha256: str | None = None
    out_of_domain: list[str] = field(default_factory=list)


#: The interface: MRI -> the reference's sCT and SD of that MRI.
ReferenceSource = Callable[[MultiEchoMR], ReferencePrediction]


def model_reference(
    model: str | os.PathLike[str] = DEFAULT_REFERENCE_MODEL,
    *,
    mc_passes: int = 4,
    device: str = "cpu",
    seed: int = 0,
) -> ReferenceSource:
    """A :data:`ReferenceSource` from a synthct model folder or a shipped model name.

    Parameters
    ----------
    model : str or path
        A shipped name (``lesion_aware``) or a model folder written by ``synthct train``.
    mc_passes : int
        MC-dropout passes for the reference's epistemic SD (at least 2).
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    seed : int
        Seeds the dropout masks.
    """
    from synthct.synthesis.shipped import SHIPPED_MODELS, load_shipped_model
    from synthct.synthesis.synthesizer import SynthesisModel

    if mc_passes < 2:
        raise AuditInputError(
            f"the reference needs at least 2 MC-dropout passes, got {mc_passes}",
            path="mc_passes",
        )
    name = str(model)
    loaded = (
        load_shipped_model(name, device=device)
        if name in SHIPPED_MODELS
        else SynthesisModel.load(model, device=device)
    )
    digest = loaded.members[0].card.get("weights_sha256")

    def predict(mr: MultiEchoMR) -> ReferencePrediction:
        result = loaded.synthesize(mr, uncertainty=True, mc_passes=mc_passes, seed=seed)
        if result.epistemic_sd is None:
            raise AuditInputError(
                "the reference model returned no epistemic SD",
                path=name,
                fix="use a reference model with dropout",
            )
        return ReferencePrediction(
            result.sct, result.epistemic_sd, name, digest, list(result.out_of_domain)
        )

    return predict


def precomputed_reference(
    sct: str | os.PathLike[str], sd: str | os.PathLike[str], *, source: str | None = None
) -> ReferenceSource:
    """A :data:`ReferenceSource` that reads the reference sCT and its epistemic SD map."""

    def read(_mr: MultiEchoMR) -> ReferencePrediction:
        from synthct.io import read_volume

        volume = read_volume(sct, kind="sct")
        assert isinstance(volume, CTVolume)
        sd_map = read_volume(sd, kind="scalar").as_scalar()
        return ReferencePrediction(volume, sd_map, source or str(sct))

    return read


def reference_prediction(source: ReferenceSource, mr: MultiEchoMR) -> ReferencePrediction:
    """Call ``source`` and check its maps: SD non-negative, on (or onto) the MRI grid.

    (Volumes refuse NaN when they are made or read.)

    Raises
    ------
    AuditInputError
        Negative SD, or maps that do not overlap the MRI.
    """
    from synthct.audit.inputs import map_on_mri_grid, sd_map_on_mri_grid

    prediction = source(mr)
    sd = sd_map_on_mri_grid(
        prediction.sd,
        mr,
        what="reference SD map",
        fix="pass the *_epistemic_sd map written with the reference sCT",
    )
    sct = map_on_mri_grid(prediction.sct, mr, what="reference sCT", fill_value=-1000.0)
    return ReferencePrediction(
        sct,
        sd,
        prediction.source,
        prediction.weights_sha256,
        prediction.out_of_domain,
    )


def reference_map(
    prediction: ReferencePrediction,
    sct: CTVolume,
    body: NDArray[np.bool_],
    *,
    settings: ReferenceSettings | None = None,
) -> ScalarVolume:
    """The standardised shortfall of ``sct`` against the reference (module docstring).

    Parameters
    ----------
    prediction : ReferencePrediction
        On the MRI grid (:func:`reference_prediction`).
    sct : CTVolume
        The audited sCT on the same grid.
    body : ndarray of bool
        Audited voxels; 0 elsewhere.
    settings : ReferenceSettings, optional
        Method settings.
    """
    s = settings or ReferenceSettings()
    prediction.sct.require_same_geometry(sct, names=("reference sCT", "sCT"))
    ref = np.asarray(prediction.sct.array, dtype=np.float32)
    sd = np.asarray(prediction.sd.array, dtype=np.float32)
    audited = np.asarray(sct.array, dtype=np.float32)
    z = (ref - audited) / np.sqrt(sd * sd + np.float32(s.floor_hu) ** 2)
    counted = body & (audited < np.float32(s.omission_ceiling_hu))
    sigma = [s.smoothing_mm / spacing for spacing in sct.spacing_mm]
    z = ndimage.gaussian_filter(np.where(counted, z, 0).astype(np.float32), sigma)
    return ScalarVolume(np.where(body, z, 0).astype(np.float32), sct.affine)


def same_as_audited(prediction: ReferencePrediction, sct: CTVolume, body: NDArray[Any]) -> bool:
    """Whether the audited sCT is the reference's own.

    True when the sCT's provenance names the reference model, or when the two agree within
    1 HU everywhere in ``body``.
    """
    from pathlib import Path

    made_by = sct.provenance.get("model") if isinstance(sct, SyntheticCT) else None
    if made_by and Path(str(made_by)).name == Path(prediction.source).name:
        return True
    if not body.any():
        return False
    diff = np.abs(
        np.asarray(prediction.sct.array, dtype=np.float32)[body]
        - np.asarray(sct.array, dtype=np.float32)[body]
    )
    return bool(diff.max() < 1.0)


def calibrated_reference(
    calibration: Any, explicit: str | os.PathLike[str] | None = None, *, enabled: bool = True
) -> tuple[ReferenceSource | None, str | None]:
    """The reference to use: ``explicit``, else the one ``calibration`` was calibrated with.

    Parameters
    ----------
    calibration : AuditCalibration or None
        Its ``info["reference_model"]`` names the reference when the signal was calibrated.
    explicit : str or path, optional
        A shipped name or model folder given by the user.
    enabled : bool
        ``False``: no reference at all.

    Returns
    -------
    source, name : ReferenceSource or None, str or None
    """
    if not enabled:
        return None, None
    name = None if explicit is None else str(explicit)
    if name is None and calibration is not None and "reference" in calibration.signals:
        recorded = calibration.info.get("reference_model")
        name = None if recorded is None else str(recorded)
    if name is None:
        return None, None
    return model_reference(name), name
