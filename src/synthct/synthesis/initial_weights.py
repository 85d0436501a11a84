"""Start a training run from the weights of a trained model (fine-tuning).

``training.init_weights`` names a model folder, or a shipped model by name. Its weights replace
the random initial ones when a run starts (a resumed run continues from its own checkpoint).
The folder is verified as for inference (:func:`~synthct.synthesis.model_folder.load_model_folder`:
checksum, format), and the run must use the same network and the same normalisation: the
weights only mean something for the intensities and HU scale they were trained on. The planned
spacing, patches, loss, schedule and cohort may all differ: that is what fine-tuning changes.
So may the smoothing before the reference percentile (:data:`FINE_TUNABLE_CHANGES`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from synthct.synthesis.checkpoint import config_differences
from synthct.synthesis.config import SynthesisConfig
from synthct.synthesis.errors import TrainingConfigError
from synthct.synthesis.model_folder import load_model_folder

#: Normalisation settings a fine-tuning run may change. Smoothing the echoes before their 99th
#: percentile moves each case's scale by about 1 % (the noise's share of the percentile), a shift
#: fine-tuning adapts to; it is how a model is moved to the noise-robust reference.
FINE_TUNABLE_CHANGES = frozenset({("normalisation", "reference_smoothing_mm")})


def load_initial_weights(
    network: nn.Module, config: SynthesisConfig, in_channels: int
) -> dict[str, Any]:
    """Copy ``config.training.init_weights``' weights into ``network``; what was loaded.

    Parameters
    ----------
    network : nn.Module
        A network built from ``config.network`` for ``in_channels`` input channels.
    config : SynthesisConfig
        The run's configuration; ``training.init_weights`` must be set.
    in_channels : int
        The training cases' MR channel count.

    Returns
    -------
    dict
        ``path``, ``name`` and ``weights_sha256`` of the model, for the run's card.

    Raises
    ------
    TrainingConfigError
        The model's network or normalisation differs from the run's, or its channel count
        differs from the cases'.
    ModelFolderError
        The folder is missing, incomplete or corrupt.
    """
    source = config.training.init_weights
    if source is None:
        raise TrainingConfigError(
            "no initial weights were configured", path="training.init_weights"
        )
    model = load_model_folder(source)
    where = model.path if model.path is not None else source
    differences = config_differences(
        model.config, config, sections=("network", "normalisation"), allowed=FINE_TUNABLE_CHANGES
    )
    if differences:
        raise TrainingConfigError(
            "the initial weights come from a model with other settings (model -> this run): "
            + "; ".join(differences),
            path=where,
            fix="copy the model's network and normalisation sections into the training "
            "configuration (its config.yaml), or train from random weights",
        )
    if model.domain.n_echoes != in_channels:
        raise TrainingConfigError(
            f"the initial weights take {model.domain.n_echoes} MR channel(s), the training "
            f"cases have {in_channels}",
            path=where,
            fix="fine-tune with cases of the model's channels, or train from random weights",
        )
    network.load_state_dict(model.network.state_dict(), strict=True)
    # the card's checksum was verified against the weights file on loading
    return {
        "path": str(where),
        "name": model.card.get("name"),
        "weights_sha256": model.card.get("weights_sha256"),
    }
