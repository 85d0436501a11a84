"""The synthesis models shipped with synthct, as package data.

``product_like``  trained on spine phantoms WITHOUT intradural lesions (extradural degenerative
                  lesions only), as the commercial sCT of Fischer et al. (Acta Neurochir 2025)
                  was: the model expected to miss calcified intradural meningiomas.
``lesion_aware``  the same cohort and settings plus lesion insertion of intradural meningiomas
                  (40-1000 HU) and schwannomas (:mod:`synthct.synthesis.lesion_insertion`).

Both are made by ``INSTALL=1 scripts/train_world_models.sh NAME`` for the paper's protocol
(two-echo 3 T SPGR, TR 7 ms, TE 1.15/2.30 ms, 0.74 x 0.74 x 0.9 mm): the procedural-world
model (``configs/NAME.yaml``, 6 phantoms) fine-tuned on real-anatomy subjects and phantoms
(``configs/NAME_world.yaml``); each card records the commands, seeds, starting weights and
version.
Loading (:func:`synthct.synthesis.synthesizer.load_shipped_model`) verifies the weights'
SHA-256 against the card.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from synthct.synthesis.errors import ModelFolderError

#: Names of the shipped models (folders under ``synthct/models/``).
SHIPPED_MODELS: tuple[str, ...] = ("product_like", "lesion_aware")


def shipped_model_path(name: str) -> Path:
    """The folder of a shipped model, e.g. ``shipped_model_path("lesion_aware")``.

    Raises
    ------
    ModelFolderError
        An unknown name, or a model missing from this installation.
    """
    if name not in SHIPPED_MODELS:
        raise ModelFolderError(
            f"no shipped model named {name!r}",
            path="synthct/models",
            fix=f"use one of {', '.join(SHIPPED_MODELS)}",
        )
    folder = Path(str(resources.files("synthct").joinpath("models", name)))
    if not (folder / "model_card.json").is_file():
        raise ModelFolderError(
            f"the shipped model {name!r} is missing from this installation",
            path=folder,
            fix="reinstall synthct, or train it with INSTALL=1 scripts/train_world_models.sh "
            f"{name} (it copies the model folder here)",
        )
    return folder
