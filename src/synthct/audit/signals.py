"""The audit's signals as objects behind one interface, so that the audit is a loop over them.

Each signal turns the MRI and the sCT on the MRI grid (:class:`SignalInputs`) into a map on the
MRI grid and what the report records about it (:class:`SignalOutput`):

=========================  ==================================================================
:class:`ConsistencySignal`  MRI consistency (physics; :mod:`synthct.audit.mri_consistency`)
:class:`LearnedSignal`      learned MRI consistency (:mod:`synthct.audit.learned_consistency`)
:class:`ReferenceSignal`    disagreement with a lesion-aware model (:mod:`synthct.audit.reference`)
:class:`NoveltySignal`      input novelty (:mod:`synthct.audit.novelty`)
:class:`EpistemicSignal`    epistemic SD of our synthesis model (:mod:`synthct.audit.epistemic`)
=========================  ==================================================================

A new signal is a class with a ``name`` (one of :data:`synthct.audit.combine.SIGNALS`, which
fixes its calibration and report order) and a ``compute`` method;
:func:`synthct.audit.pipeline.run_audit` standardises and combines whatever the signals return.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from synthct.audit.epistemic import EpistemicSD, epistemic_map
from synthct.audit.inputs import SCTOnGrid
from synthct.audit.learned_consistency import LearnedConsistencyModel, learned_consistency_map
from synthct.audit.mri_consistency import ConsistencySettings, consistency_map
from synthct.audit.novelty import NoveltyModel, novelty_map
from synthct.audit.reference import (
    ReferenceSettings,
    ReferenceSource,
    reference_map,
    reference_prediction,
    same_as_audited,
)
from synthct.volume import CTVolume, MultiEchoMR, ScalarVolume


@dataclass(frozen=True, eq=False)
class SignalInputs:
    """What every signal may read: the MRI, the sCT on its grid and the audited body mask."""

    mr: MultiEchoMR
    aligned: SCTOnGrid
    body: NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class SignalOutput:
    """A signal's map on the MRI grid, what the report records, and a reference sCT if any."""

    map: ScalarVolume
    info: dict[str, Any] | None = None
    reference_sct: CTVolume | None = None


class AuditSignal(Protocol):
    """One signal of the audit."""

    @property
    def name(self) -> str:
        """One of :data:`synthct.audit.combine.SIGNALS`."""
        ...

    def compute(self, inputs: SignalInputs) -> SignalOutput:
        """The signal's map on the MRI grid (and its report entry)."""
        ...


@dataclass(frozen=True, eq=False)
class ConsistencySignal:
    """MRI consistency: the echoes against what the sCT's tissues would show."""

    settings: ConsistencySettings | None = None
    name: str = "consistency"

    def compute(self, inputs: SignalInputs) -> SignalOutput:
        """Standardised residual of the echoes (see :func:`consistency_map`)."""
        result = consistency_map(
            inputs.mr, inputs.aligned.sct, body=inputs.body, settings=self.settings
        )
        info = {
            "noise_sd": result.noise_sd,
            "relative_model_error": result.relative_error,
            "settings": (self.settings or ConsistencySettings()).to_dict(),
        }
        return SignalOutput(result.score, info)


@dataclass(frozen=True, eq=False)
class LearnedSignal:
    """Learned MRI consistency: the echoes against a network's prediction from the sCT."""

    model: LearnedConsistencyModel
    name: str = "learned_consistency"

    def compute(self, inputs: SignalInputs) -> SignalOutput:
        """Standardised residual (see :func:`learned_consistency_map`)."""
        score = learned_consistency_map(
            self.model, inputs.mr, inputs.aligned.sct, body=inputs.body
        ).score
        return SignalOutput(score, self.model.config())


@dataclass(frozen=True, eq=False)
class ReferenceSignal:
    """Reference disagreement: how far the sCT falls short of a lesion-aware model's sCT."""

    source: ReferenceSource
    settings: ReferenceSettings
    name: str = "reference"

    def compute(self, inputs: SignalInputs) -> SignalOutput:
        """HU shortfall in reference SDs (see :func:`reference_map`); keeps the reference sCT."""
        prediction = reference_prediction(self.source, inputs.mr)
        score = reference_map(
            prediction,
            inputs.aligned.sct,
            inputs.body,
            settings=self.settings,
            field_of_view=inputs.aligned.field_of_view,
        )
        info = {
            "model": prediction.source,
            "weights_sha256": prediction.weights_sha256,
            # the reference is a synthesis model: outside its domain its sCT is not a reference
            "out_of_domain": prediction.out_of_domain,
            "settings": self.settings.to_dict(),
            # the signal is empty by construction when the audited sCT is the reference's own
            "same_as_audited_sct": same_as_audited(prediction, inputs.aligned.sct, inputs.body),
        }
        return SignalOutput(score, info, reference_sct=prediction.sct)


@dataclass(frozen=True, eq=False)
class NoveltySignal:
    """Input novelty: patch likelihood under lesion-free training MRI."""

    model: NoveltyModel
    name: str = "novelty"

    def compute(self, inputs: SignalInputs) -> SignalOutput:
        """Negative log-likelihood map (see :func:`novelty_map`)."""
        return SignalOutput(novelty_map(self.model, inputs.mr), self.model.config())


@dataclass(frozen=True, eq=False)
class EpistemicSignal:
    """Epistemic uncertainty of our synthesis model (MC dropout, ensemble, or a given map)."""

    source: EpistemicSD
    name: str = "epistemic"

    def compute(self, inputs: SignalInputs) -> SignalOutput:
        """SD map in HU on the MRI grid (see :func:`epistemic_map`)."""
        return SignalOutput(epistemic_map(self.source, inputs.mr))
