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
``z = G * [(max(ref, soft) - max(sct, soft)) / sqrt(sd_ref**2 + floor**2)]``, counted only
where the audited sCT renders soft tissue or fluid (below ``omission_ceiling_hu``, 150 HU)
more than ``bone_margin_mm`` from its bone (``bone_hu``, the 250 HU of the bone Dice) and more
than ``edge_margin_mm`` from the edge of the field of view, 0 elsewhere, smoothed by a
Gaussian of ``smoothing_mm`` (the texture of partly calcified tissue). It is the density by
which the audited sCT falls short of the reference *above soft tissue* (``soft_tissue_hu``,
40 HU), in units of the reference's epistemic SD (MC dropout) with a floor (``floor_hu``: the
two models' ordinary disagreement in soft tissue).

An *omission* is a dense structure rendered as soft tissue: the paper's tumours were 463.6 HU
on CT and 20.9 HU on the sCT, and synthct calls a lesion omitted when its sCT mean is below
130 HU. Each restriction removes a kind of disagreement that is not one, measured on the 52
development cases of ``benchmarks/audit.py --eval-cases 90`` (product-like sCT, lesion-aware
reference; the largest background regions of lesion-free volumes):

- bone rendered less dense than the reference (vertebral bodies at ~230 HU against ~370 HU)
  is an HU error: with a 250 HU ceiling it set every lesion-free volume's largest region, so
  the ceiling is 150 HU, just above the 130 HU calcification level;
- at bone surfaces the two models put the edge ~1 voxel apart (disc at the endplate: sCT 138,
  reference 373, CT 101 HU), hence the bone margin;
- next to the edge of the field of view both networks see padding, hence the edge margin;
- fat and air rendered lighter than the reference's (subcutaneous fat at -370 against
  -190 HU) differ below soft tissue, hence the soft-tissue level.

With all four, the largest background region of 22 lesion-free development volumes scored
0.64 (a 32 HU shortfall), the 8 omitted calcified tumours >= 5 mm 1.8 to 4.7. A calibration never
sets the threshold below ``min_shortfall_hu / floor_hu`` (50 HU): at such small
disagreements a few lesion-free volumes say little about the next one.

A shortfall scores positive; an sCT denser than the reference scores negative and is not
flagged (the MRI consistency signal looks for invented structure). The thresholds hold for the
settings they were calibrated with: a calibration records them
(:func:`calibrated_reference_settings`) and the audit uses them.

It is only as good as the reference: it finds what the reference was trained to see, and
nothing when the audited sCT is the reference's own (the report says so). The evidence for it
is in :mod:`synthct.audit.combine`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import numpy as np
from numpy.typing import NDArray
from pydantic import model_validator
from scipy import ndimage

from synthct.audit.errors import AuditInputError
from synthct.errors import SynthctError
from synthct.settings import SettingsBase
from synthct.volume import CTVolume, MultiEchoMR, ScalarVolume, SyntheticCT

#: The shipped synthesis model used as reference when none is named.
DEFAULT_REFERENCE_MODEL = "lesion_aware"


class ReferenceSettings(SettingsBase):
    """Settings of the reference disagreement signal (see the module docstring).

    Attributes
    ----------
    floor_hu : float
        SD floor added in quadrature to the reference's epistemic SD, HU.
    smoothing_mm : float
        Gaussian applied to the standardised difference.
    omission_ceiling_hu : float
        Only voxels where the audited sCT is below this count (soft tissue and fluid).
    soft_tissue_hu : float
        Density is compared above this level only: both maps are raised to it first.
    min_shortfall_hu : float
        Smallest shortfall a calibration may flag (its threshold is at least this over
        ``floor_hu``).
    bone_hu : float
        The audited sCT's bone, for ``bone_margin_mm``.
    bone_margin_mm : float
        Voxels this close to the audited sCT's bone do not count.
    edge_margin_mm : float
        Voxels this close to the edge of the field of view do not count.
    """

    invalid_error: ClassVar[type[SynthctError] | None] = AuditInputError
    settings_label: ClassVar[str] = "reference settings"

    floor_hu: float = 50.0
    smoothing_mm: float = 1.0
    omission_ceiling_hu: float = 150.0
    soft_tissue_hu: float = 40.0
    min_shortfall_hu: float = 50.0
    bone_hu: float = 250.0
    bone_margin_mm: float = 1.0
    edge_margin_mm: float = 3.0

    @property
    def min_threshold(self) -> float:
        """The lowest threshold a calibration may set, in the signal's units."""
        return self.min_shortfall_hu / self.floor_hu

    @model_validator(mode="after")
    def _check(self) -> Self:
        for name in (
            "floor_hu",
            "smoothing_mm",
            "min_shortfall_hu",
            "bone_margin_mm",
            "edge_margin_mm",
        ):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0 or (name == "floor_hu" and value == 0):
                raise AuditInputError(
                    f"reference setting {name} must be a finite number >= 0"
                    f"{' and > 0' if name == 'floor_hu' else ''}, got {value}",
                    path=name,
                )
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReferenceSettings:
        """Settings from :meth:`to_dict`'s output.

        Keys missing from ``data`` (a calibration written before they existed) take the
        values that calibration was made with: a plain difference (no soft-tissue level),
        a 250 HU ceiling, no bone or edge margin, no minimum shortfall.

        Raises
        ------
        AuditInputError
            Unknown keys or values that are not numbers.
        """
        legacy = {
            "omission_ceiling_hu": 250.0,
            "soft_tissue_hu": -10000.0,  # no HU lies below: plain difference
            "min_shortfall_hu": 0.0,
            "bone_margin_mm": 0.0,
            "edge_margin_mm": 0.0,
        }
        unknown = sorted(set(data) - set(cls.model_fields))
        if unknown:  # before the numbers: an unknown key is the likelier mistake
            return cls.from_mapping(data, where="reference_settings")
        try:
            values = {k: float(v) for k, v in data.items()}
        except (TypeError, ValueError) as exc:
            raise AuditInputError(
                f"reference settings must be numbers ({exc})",
                path="reference_settings",
                fix="write them with ReferenceSettings.to_dict()",
            ) from exc
        return cls.from_mapping({**legacy, **values}, where="reference_settings")


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
    from synthct.synthesis.shipped import SHIPPED_MODELS
    from synthct.synthesis.synthesizer import SynthesisModel, load_shipped_model

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
    field_of_view: NDArray[np.bool_] | None = None,
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
    field_of_view : ndarray of bool, optional
        Where both sCTs hold predictions (default: the whole grid); nothing within
        ``edge_margin_mm`` of its edge counts.
    """
    s = settings or ReferenceSettings()
    prediction.sct.require_same_geometry(sct, names=("reference sCT", "sCT"))
    ref = np.asarray(prediction.sct.array, dtype=np.float32)
    sd = np.asarray(prediction.sd.array, dtype=np.float32)
    audited = np.asarray(sct.array, dtype=np.float32)
    soft = np.float32(s.soft_tissue_hu)
    shortfall = np.maximum(ref, soft) - np.maximum(audited, soft)
    z = shortfall / np.sqrt(sd * sd + np.float32(s.floor_hu) ** 2)
    counted = body & (audited < np.float32(s.omission_ceiling_hu))
    spacing_mm = sct.spacing_mm
    if s.bone_margin_mm > 0:
        counted &= _farther_than(audited < np.float32(s.bone_hu), s.bone_margin_mm, spacing_mm)
    if s.edge_margin_mm > 0:
        inside = np.ones(audited.shape, dtype=bool) if field_of_view is None else field_of_view
        counted &= _away_from_edge(inside, s.edge_margin_mm, spacing_mm)
    sigma = [s.smoothing_mm / spacing for spacing in spacing_mm]
    z = ndimage.gaussian_filter(np.where(counted, z, 0).astype(np.float32), sigma)
    return ScalarVolume(np.where(body, z, 0).astype(np.float32), sct.affine)


def _farther_than(
    inside: NDArray[np.bool_], distance_mm: float, spacing_mm: tuple[float, ...]
) -> NDArray[np.bool_]:
    """Voxels of ``inside`` more than ``distance_mm`` from every voxel outside it.

    The same as ``distance_transform_edt(inside) > distance_mm``, as a dilation of the
    outside by the ball of that radius: 20 times faster for 1 mm at 1 mm voxels.
    """
    outside = ~inside
    if not outside.any():
        return inside.copy()
    radius = [int(np.floor(distance_mm / s + 1e-9)) for s in spacing_mm]
    offsets = np.meshgrid(*[np.arange(-r, r + 1) for r in radius], indexing="ij")
    ball = sum((o * s) ** 2 for o, s in zip(offsets, spacing_mm, strict=True))
    near = ndimage.binary_dilation(outside, structure=ball <= distance_mm**2 + 1e-9)
    return np.asarray(inside & ~near, dtype=bool)


def _away_from_edge(
    field_of_view: NDArray[np.bool_], distance_mm: float, spacing_mm: tuple[float, ...]
) -> NDArray[np.bool_]:
    """Voxels of the field of view more than ``distance_mm`` from its edge (or the grid's)."""
    if not field_of_view.all():
        padded = np.pad(np.asarray(field_of_view, dtype=bool), 1, constant_values=False)
        return _farther_than(padded, distance_mm, spacing_mm)[1:-1, 1:-1, 1:-1]
    shape = field_of_view.shape
    away = np.ones(shape, dtype=bool)
    for axis, spacing in enumerate(spacing_mm):
        # index k lies (k + 1) * spacing from the voxel just outside the grid
        n = min(int(np.floor(distance_mm / spacing + 1e-9)), shape[axis])
        if n:
            index: list[slice] = [slice(None)] * len(shape)
            index[axis] = slice(0, n)
            away[tuple(index)] = False
            index[axis] = slice(shape[axis] - n, None)
            away[tuple(index)] = False
    return away


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


def calibrated_reference_settings(calibration: Any) -> ReferenceSettings:
    """The reference settings ``calibration``'s thresholds hold for.

    Those recorded in its ``info["reference_settings"]``; the settings of the time for a
    calibrated reference signal written before they were recorded; the defaults otherwise
    (no calibration, or one without the reference signal).
    """
    info = getattr(calibration, "info", None) or {}
    if "reference_settings" in info:
        return ReferenceSettings.from_dict(info["reference_settings"])
    signals = getattr(calibration, "signals", None) or {}
    if "reference" in signals and info.get("reference_model") is not None:
        return ReferenceSettings.from_dict({})
    return ReferenceSettings()


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
