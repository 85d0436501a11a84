"""A model is a folder: weights, configuration, normalisation and a model card.

==========================  ===================================================================
file                        content
==========================  ===================================================================
``weights.safetensors``     the network's state dict (safetensors: no code runs on load)
``config.yaml``             the full :class:`~synthct.synthesis.config.SynthesisConfig`
``normalisation.json``      intensity and HU scaling, and each training case's echo references
``model_card.json``         identity, architecture, the SHA-256 of the weights, the training
                            domain (:class:`~synthct.synthesis.domain.TrainingDomain`),
                            training summary and validation figures
``model_card.md``           the same card for people
==========================  ===================================================================

The folder is written atomically (it appears complete or not at all). Loading verifies the
checksum of the weights and that they fit the configured network; any inconsistency raises
:class:`~synthct.synthesis.errors.ModelFolderError` naming the file and the fix.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from torch import nn

from synthct.errors import SynthctError
from synthct.io.atomic import atomic_directory, write_text_atomic
from synthct.synthesis.config import SynthesisConfig, config_to_yaml, load_config
from synthct.synthesis.domain import TrainingDomain
from synthct.synthesis.errors import ModelFolderError
from synthct.synthesis.network import build_network, count_parameters

FORMAT = "synthct-model"
FORMAT_VERSION = 1
WEIGHTS = "weights.safetensors"
CONFIG = "config.yaml"
NORMALISATION = "normalisation.json"
CARD_JSON = "model_card.json"
CARD_MD = "model_card.md"
REQUIRED_FILES = (WEIGHTS, CONFIG, NORMALISATION, CARD_JSON)


@dataclass
class ModelFolder:
    """The loaded content of a model folder."""

    path: Path | None
    network: nn.Module
    config: SynthesisConfig
    domain: TrainingDomain
    card: dict[str, Any]
    normalisation: dict[str, Any]

    @property
    def name(self) -> str:
        """The model's name from its card."""
        return str(self.card.get("name") or (self.path.name if self.path else "model"))


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_card(
    *,
    config: SynthesisConfig,
    network: nn.Module,
    domain: TrainingDomain,
    training: dict[str, Any],
    validation: dict[str, Any],
) -> dict[str, Any]:
    """The model card's content, without the checksum (added when the weights are written)."""
    from synthct.version import __version__

    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": config.card.name,
        "description": config.card.description,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "synthct_version": __version__,
        "intended_use": config.card.intended_use,
        "architecture": {
            "name": config.network.architecture,
            "n_parameters": count_parameters(network),
            "in_channels": domain.n_echoes,
            "outputs": ["hu_mean_scaled", "log_variance_scaled"],
            "base_channels": config.network.base_channels,
            "levels": config.network.levels,
            "dropout": config.network.dropout,
            "dropout_before_head": config.network.dropout_before_head,
            "norm": config.network.norm,
        },
        "weights_file": WEIGHTS,
        "domain": domain.model_dump(mode="json"),
        "training": training,
        "validation": validation,
        "limitations": [
            "Trained only on the anatomy, protocols and pathologies listed under domain; "
            "pathologies not listed (e.g. calcified intradural lesions) may be omitted from "
            "the sCT without any warning from the uncertainty maps.",
            "synthct warns (OutOfDomainWarning) when an input's protocol or voxel size lies "
            "outside this domain.",
        ],
    }


def card_markdown(card: dict[str, Any]) -> str:
    """The model card as Markdown."""
    d = card.get("domain", {})
    lines = [
        f"# Model card: {card.get('name')}",
        "",
        card.get("description") or "",
        "",
        f"- Created: {card.get('created_utc')} with synthct {card.get('synthct_version')}",
        f"- Intended use: {card.get('intended_use')}",
        f"- Weights: `{card.get('weights_file')}`, SHA-256 `{card.get('weights_sha256')}`",
        "",
        "## Architecture",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in card.get("architecture", {}).items()]
    lines += ["", "## Training domain", ""]
    lines += [f"- {k}: {v}" for k, v in d.items()]
    lines += ["", "## Training", ""]
    lines += [f"- {k}: {v}" for k, v in card.get("training", {}).items()]
    lines += ["", "## Validation", ""]
    validation = card.get("validation", {})
    cases = validation.get("cases", [])
    lines += [f"- {k}: {v}" for k, v in validation.items() if k != "cases"]
    if cases:
        keys = list(cases[0])
        lines += ["", "| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
        for row in cases:
            lines.append(
                "| "
                + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values())
                + " |"
            )
    for key, heading in (
        ("held_out_validation", "Held-out validation"),
        ("held_out_validation_real_anatomy", "Held-out validation: real anatomy"),
    ):
        held_out = card.get(key)
        if held_out:
            lines += ["", f"## {heading}", ""]
            lines += [f"- {k}: {v}" for k, v in held_out.items()]
    lines += ["", "## Limitations", ""]
    lines += [f"- {text}" for text in card.get("limitations", [])]
    provenance = card.get("provenance")
    if provenance:
        lines += ["", "## Provenance", ""]
        lines += [f"- {k}: {v}" for k, v in provenance.items()]
    return "\n".join(lines) + "\n"


def update_card(path: str | os.PathLike[str], **sections: Any) -> dict[str, Any]:
    """Set top-level sections of a model folder's card (JSON and Markdown, each atomically).

    Used for what is known only after training: ``provenance`` (the command that made the
    model) and ``held_out_validation`` (figures on a held-out cohort, e.g. from
    ``benchmarks/synthesis_accuracy.py --record-in-cards``). The weights are not touched, so
    their checksum stays valid.

    Returns
    -------
    dict
        The updated card.
    """
    folder = Path(path)
    card_path = folder / CARD_JSON
    if not card_path.is_file():
        raise ModelFolderError("no model card", path=card_path, fix="pass a model folder")
    card = {**_read_json(card_path), **sections}
    write_text_atomic(card_path, json.dumps(card, indent=2, default=float) + "\n")
    write_text_atomic(folder / CARD_MD, card_markdown(card))
    return card


def save_model_folder(
    path: str | os.PathLike[str],
    *,
    network: nn.Module,
    config: SynthesisConfig,
    card: dict[str, Any],
    normalisation: dict[str, Any],
    overwrite: bool = True,
) -> Path:
    """Write a model folder atomically and return its path (the card gets the checksum)."""
    from safetensors.torch import save_file

    final = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    with atomic_directory(final, overwrite=overwrite) as tmp:
        save_file(state, str(tmp / WEIGHTS), metadata={"format": FORMAT})
        card = {**card, "weights_sha256": sha256_of(tmp / WEIGHTS)}
        (tmp / CONFIG).write_text(config_to_yaml(config), encoding="utf-8")
        (tmp / NORMALISATION).write_text(json.dumps(normalisation, indent=2) + "\n", "utf-8")
        (tmp / CARD_JSON).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        (tmp / CARD_MD).write_text(card_markdown(card), encoding="utf-8")
    return final


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelFolderError(
            f"unreadable JSON ({exc})", path=path, fix="restore the model folder from its source"
        ) from exc
    if not isinstance(data, dict):
        raise ModelFolderError("must hold a JSON object", path=path)
    return data


def load_model_folder(path: str | os.PathLike[str], *, device: str = "cpu") -> ModelFolder:
    """Load and verify a model folder, or a shipped model by name (``"product_like"``).

    Raises
    ------
    ModelFolderError
        Missing folder or file, wrong format, a checksum that does not match the weights
        (corrupt or replaced), a configuration that does not load, or weights that do not fit
        the configured network.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from synthct.synthesis.shipped import SHIPPED_MODELS, shipped_model_path

    folder = Path(path)
    if not folder.exists() and str(path) in SHIPPED_MODELS:
        folder = shipped_model_path(str(path))  # a name, wherever a model folder is taken
    if not folder.is_dir():
        raise ModelFolderError(
            "is not a model folder (no such directory)",
            path=folder,
            fix="pass the folder written by `synthct train` (it holds weights.safetensors), "
            f"or a shipped model's name ({', '.join(SHIPPED_MODELS)})",
        )
    missing = [f for f in REQUIRED_FILES if not (folder / f).is_file()]
    if missing:
        raise ModelFolderError(
            f"the model folder lacks {', '.join(missing)}",
            path=folder,
            fix="copy the complete folder written by `synthct train`",
        )
    card = _read_json(folder / CARD_JSON)
    if card.get("format") != FORMAT or card.get("format_version") != FORMAT_VERSION:
        raise ModelFolderError(
            f"model card format {card.get('format')!r} version {card.get('format_version')!r} "
            f"is not {FORMAT!r} version {FORMAT_VERSION}",
            path=folder / CARD_JSON,
            fix="retrain or convert the model with this version of synthct",
        )
    actual = sha256_of(folder / WEIGHTS)
    if actual != card.get("weights_sha256"):
        raise ModelFolderError(
            f"the weights' SHA-256 {actual[:16]}... does not match the model card's "
            f"{str(card.get('weights_sha256'))[:16]}...: the weights are corrupt or were "
            "replaced",
            path=folder / WEIGHTS,
            fix="restore the folder from its source; never mix files of different models",
        )
    try:
        config = load_config(folder / CONFIG)
        domain = TrainingDomain.model_validate(card.get("domain"))
    except (SynthctError, ValueError) as exc:
        raise ModelFolderError(
            f"the configuration or card does not load: {exc}", path=folder
        ) from exc
    if domain.orientation is None:
        # trained before plan.orientation existed: on each case's own array layout
        config = config.with_updates({"plan": {"orientation": None}})
    elif config.plan.orientation != domain.orientation:
        raise ModelFolderError(
            f"config.yaml trains in orientation {config.plan.orientation!r} but the model card "
            f"says the network was trained in {domain.orientation!r}",
            path=folder / CONFIG,
            fix="restore the folder from its source; never mix files of different models",
        )
    normalisation = _read_json(folder / NORMALISATION)
    if normalisation.get("config") != config.normalisation.model_dump(mode="json"):
        raise ModelFolderError(
            "normalisation.json and config.yaml disagree on the intensity/HU scaling",
            path=folder / NORMALISATION,
            fix="restore the folder from its source; never mix files of different models",
        )
    network = build_network(config.network, domain.n_echoes)
    try:
        state = load_file(str(folder / WEIGHTS))
        network.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFolderError(
            f"the weights do not fit the network in config.yaml ({first})",
            path=folder / WEIGHTS,
            fix="use the config.yaml that was saved with these weights",
        ) from exc
    network.to(device).eval()
    return ModelFolder(folder, network, config, domain, card, normalisation)
