"""A tiny 3D CNN that tells real CT patches from phantom CT patches, and its held-out AUC.

Why a CNN and not gradient boosting on hand-made features: a realism test is only as strict
as its discriminator, and a convolutional network finds whatever gives a phantom away (flat
tissues, white noise, box-shaped bone, missing vessels) without being told what to look for;
hand-made features would pass a generator that fails in a way nobody wrote a feature for. The
network is kept tiny (three 3 x 3 x 3 convolution stages, ~18k parameters, global average
pooling) because there are only a few real patients: a larger one would memorise them. Its
only dependency is torch, which synthct already uses; it trains in seconds on one CPU thread.
This is the "classifier two-sample test" (Lopez-Paz D, Oquab M. Revisiting classifier
two-sample tests. ICLR 2017): on held-out data an AUC of 0.5 means the classifier cannot tell
the two sets apart.

Labels: phantom = 1, real = 0, so the AUC is the probability that a phantom patch scores
higher than a real one (:func:`roc_auc`, the Mann-Whitney statistic, ties counted half).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from scipy import stats
from torch import nn

from synthct.errors import SynthctError

__all__ = [
    "ClassifierSettings",
    "PatchCNN",
    "classifier_scores",
    "held_out_auc",
    "patient_folds",
    "roc_auc",
    "train_patch_classifier",
]


@dataclass(frozen=True)
class ClassifierSettings:
    """Training settings of :func:`train_patch_classifier`.

    ``hu_window`` clips the input (HU) before it is divided by ``hu_scale``; ``flips`` mirrors
    patches at random along every axis, so left-right and head-foot position cannot decide.
    """

    steps: int = 300
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    channels: int = 8
    hu_window: tuple[float, float] = (-1024.0, 2000.0)
    hu_scale: float = 1000.0
    flips: bool = True
    seed: int = 0


class PatchCNN(nn.Module):
    """Three convolution stages (``c``, ``2c``, ``4c`` channels), global pooling, one logit."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        c = int(channels)
        self.features = nn.Sequential(
            nn.Conv3d(1, c, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool3d(2),
            nn.Conv3d(c, 2 * c, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool3d(2),
            nn.Conv3d(2 * c, 4 * c, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool3d(1),
        )
        self.head = nn.Linear(4 * c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (phantom-ness) of a batch ``(n, 1, p, p, p)``."""
        return self.head(self.features(x).flatten(1)).squeeze(1)


def _inputs(patches: NDArray[np.float32], settings: ClassifierSettings) -> torch.Tensor:
    low, high = settings.hu_window
    scaled = np.clip(patches, low, high) / settings.hu_scale
    return torch.from_numpy(np.ascontiguousarray(scaled[:, None], dtype=np.float32))


def _check_patches(name: str, patches: NDArray[np.float32]) -> None:
    if patches.ndim != 4 or len(patches) == 0:
        raise SynthctError(
            f"{name} must be a non-empty (n, p, p, p) stack of patches, got {patches.shape}",
            path=name,
            fix="draw patches with synthct.phantom.realism.patches.sample_patches",
        )


def train_patch_classifier(
    real: ArrayLike, phantom: ArrayLike, settings: ClassifierSettings | None = None
) -> PatchCNN:
    """Train a :class:`PatchCNN` on balanced batches of real (0) and phantom (1) patches.

    Parameters
    ----------
    real, phantom : (n, p, p, p) array_like
        Training patches in HU.
    settings : ClassifierSettings, optional
        Steps, batch, optimiser and seed.

    Returns
    -------
    PatchCNN
        The trained network, in evaluation mode.
    """
    s = settings or ClassifierSettings()
    sets = [np.asarray(real, dtype=np.float32), np.asarray(phantom, dtype=np.float32)]
    for name, patches in zip(("real", "phantom"), sets, strict=True):
        _check_patches(name, patches)
    torch.manual_seed(s.seed)
    rng = np.random.default_rng(s.seed)
    model = PatchCNN(s.channels)
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=s.learning_rate, weight_decay=s.weight_decay
    )
    loss_fn = nn.BCEWithLogitsLoss()
    half = max(1, s.batch_size // 2)
    target = torch.cat([torch.zeros(half), torch.ones(half)])
    model.train()
    for _ in range(s.steps):
        batch = np.concatenate([p[rng.integers(0, len(p), half)] for p in sets])
        if s.flips:
            for axis in (1, 2, 3):
                flip = rng.random(len(batch)) < 0.5
                batch[flip] = np.flip(batch[flip], axis=axis)
        optimiser.zero_grad()
        loss = loss_fn(model(_inputs(batch, s)), target)
        loss.backward()
        optimiser.step()
    return model.eval()


def classifier_scores(
    model: PatchCNN, patches: ArrayLike, settings: ClassifierSettings | None = None
) -> NDArray[np.float64]:
    """The logit (higher: more phantom-like) of each patch.

    Parameters
    ----------
    model : PatchCNN
        A trained classifier.
    patches : (n, p, p, p) array_like
        Patches in HU.
    settings : ClassifierSettings, optional
        Must be the settings it was trained with (the input window and scale).

    Returns
    -------
    (n,) ndarray of float64
    """
    s = settings or ClassifierSettings()
    stack = np.asarray(patches, dtype=np.float32)
    _check_patches("patches", stack)
    with torch.no_grad():
        out = [model(_inputs(stack[i : i + 256], s)) for i in range(0, len(stack), 256)]
    return torch.cat(out).double().numpy()


def roc_auc(negative_scores: ArrayLike, positive_scores: ArrayLike) -> float:
    """Area under the ROC curve: P(positive score > negative score), ties counted half.

    Computed from ranks (the Mann-Whitney U statistic divided by ``n_neg * n_pos``).

    Parameters
    ----------
    negative_scores, positive_scores : array_like
        Scores of the negative (real) and positive (phantom) samples.

    Returns
    -------
    float
        In [0, 1]; 0.5 when the scores do not separate the classes.
    """
    neg = np.asarray(negative_scores, dtype=np.float64).ravel()
    pos = np.asarray(positive_scores, dtype=np.float64).ravel()
    if neg.size == 0 or pos.size == 0:
        raise SynthctError(
            "an AUC needs at least one score of each class",
            path="scores",
            fix="give held-out patches of both real and phantom CTs",
        )
    ranks = stats.rankdata(np.concatenate([neg, pos]))
    u = ranks[neg.size :].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (neg.size * pos.size))


def patient_folds(patients: Sequence[str], sources: Sequence[str | None]) -> list[int]:
    """Leave-one-real-patient-out fold of each phantom case.

    Fold ``k`` holds out real patient ``patients[k]``: its test set is that patient's real
    patches and the phantoms of fold ``k``; every other phantom trains it. A phantom derived
    from a real patient belongs to that patient's fold, so it is never training data while its
    patient's anatomy is held out; a phantom from no real patient (``None``, e.g. a procedural
    case) goes to fold ``i mod len(patients)`` by its position ``i``.

    Raises
    ------
    SynthctError
        When a source names no patient in ``patients``.
    """
    names = list(patients)
    folds = []
    for i, source in enumerate(sources):
        if source is None:
            folds.append(i % len(names))
        elif source in names:
            folds.append(names.index(source))
        else:
            raise SynthctError(
                f"phantom case {i} is derived from {source!r}, which is no real patient here",
                path="sources",
                fix=f"name one of {', '.join(names)} (or None for a case from no patient)",
            )
    return folds


def held_out_auc(
    train_real: ArrayLike,
    train_phantom: ArrayLike,
    test_real: ArrayLike,
    test_phantom: ArrayLike,
    settings: ClassifierSettings | None = None,
) -> float:
    """Train on one set of patches, return the AUC on another (real 0, phantom 1).

    Parameters
    ----------
    train_real, train_phantom : (n, p, p, p) array_like
        Training patches in HU.
    test_real, test_phantom : (m, p, p, p) array_like
        Held-out patches in HU (other patients than the training ones).
    settings : ClassifierSettings, optional
        Training settings and seed.

    Returns
    -------
    float
        The held-out AUC (:func:`roc_auc`).
    """
    s = settings or ClassifierSettings()
    model = train_patch_classifier(train_real, train_phantom, s)
    real_scores = classifier_scores(model, test_real, s)
    return roc_auc(real_scores, classifier_scores(model, test_phantom, s))
