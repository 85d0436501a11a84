"""Learned MRI consistency: the MRI a synthesis model's sCT implies, predicted by a network.

The physics signal (:mod:`synthct.audit.mri_consistency`) turns HU into tissue classes, and
HU cannot tell muscle, cord and disc apart, so its envelope for "soft tissue" is wide; and an
sCT's own systematic errors (bone) look like omissions to it. This signal learns instead what
MRI goes with *this synthesis model's* sCT: a small 3D convolutional network maps the sCT (with
spatial context: a soft-tissue voxel inside the canal is cord, one beside the vertebra muscle)
to each echo of the MRI, with a heteroscedastic (Laplace) head, trained on lesion-free pairs
of MRI and the sCT of the synthesis model that the audit will check (the CT may stand in for
the sCT). Where the MRI departs from its prediction by more than the predicted spread, the
sCT probably omits (or invents) what the MRI shows: an omitted calcified tumour rendered as
cord-like soft tissue is darker on the MRI than cord.

Method
------
1. **Context features** of each voxel of the sCT on the MRI grid (:func:`context_features`, a
   fixed multi-scale filter bank): a linear-spline encoding of its HU on :data:`HU_KNOTS`
   (after a Gaussian of 0.5 voxel), the HU smoothed by Gaussians of 1, 2, 4 and 8 mm, the
   local SD at 2 mm, and the local fractions of air, fat-like, fluid-like, soft-tissue and
   bone HU within Gaussians of 2 and 5 mm (what surrounds the voxel: a soft-tissue voxel
   inside the bony canal is cord, one beside the vertebra muscle).
2. **Target**: each echo divided by its 99th percentile inside the MRI body mask
   (:func:`synthct.synthesis.normalisation.body_mask_from_mri`), as the synthesis network's
   input (:mod:`synthct.synthesis.normalisation`).
3. **Network** (:class:`~synthct.audit.learned_network.ConsistencyNet`): learned 1x1x1
   convolutions on the features (a per-voxel perceptron, two hidden layers) giving, per
   echo, a location ``mu_e`` and a log-scale ``log s_e``. The locations learn by least
   squares and the scales by the Gaussian likelihood of the residuals
   (:func:`~synthct.audit.learned_network.heteroscedastic_loss`), on voxels sampled inside
   the body of the training pairs, with Adam.
4. **Receive gain** (optional, at inference): the smooth log-gain between the MRI and the
   prediction (:func:`synthct.audit.mri_consistency.fit_log_gain`, polynomial of degree
   ``gain_degree``) rescales ``mu`` and ``s``: coil sensitivity is not in the sCT.
5. **Standardised residual** per echo ``z_e = (m_e - mu_e) / s_e`` and the **local score**
   of the physics signal's step 5: ``sqrt(G * mean_e z_e**2)`` with a Gaussian ``G`` of
   ``score_sigma_mm``, with the sign of ``G * mean_e z_e`` (negative: the MRI is darker than
   predicted); 0 outside the body.

A model is two files in the audit model folder: ``learned_consistency.safetensors`` (the
weights) and ``learned_consistency.json`` (architecture, normalisation, settings, provenance
and the weights' SHA-256, checked at load).

References
----------
.. [1] Kendall A, Gal Y. What uncertainties do we need in Bayesian deep learning for computer
   vision? NeurIPS 2017 (heteroscedastic regression).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from synthct.audit.errors import AuditInputError, AuditModelError
from synthct.errors import SynthctError
from synthct.settings import SettingsBase
from synthct.version import __version__
from synthct.volume import CTVolume, MultiEchoMR, ScalarVolume

#: Weights file inside an audit model folder.
LEARNED_WEIGHTS_FILE = "learned_consistency.safetensors"
#: Settings, normalisation and provenance file inside an audit model folder.
LEARNED_CONFIG_FILE = "learned_consistency.json"
#: Format tag and version of :data:`LEARNED_CONFIG_FILE`.
FORMAT = "synthct.audit.learned_consistency"
FORMAT_VERSION = 1
#: Knots (HU) of the input encoding (:func:`hu_encoding`): air, fat, fluid, cord, muscle, disc,
#: cancellous and cortical bone, denser where tissues are tens of HU apart.
HU_KNOTS: tuple[float, ...] = (
    -1000.0,
    -500.0,
    -150.0,
    -80.0,
    -20.0,
    10.0,
    30.0,
    50.0,
    80.0,
    150.0,
    300.0,
    600.0,
    1000.0,
    1600.0,
)
#: HU per unit of the smoothed-HU features.
HU_SCALE = 1000.0
#: Percentile of each echo inside the MRI body that the echo is divided by.
ECHO_PERCENTILE = 99.0
#: Gaussians (mm) of the smoothed HU features.
SMOOTH_SIGMAS_MM: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
#: Gaussians (mm) of the local tissue-fraction features.
FRACTION_SIGMAS_MM: tuple[float, ...] = (2.0, 5.0)
#: HU bands of the tissue-fraction features: air, fat-like, fluid-like, soft tissue, bone.
FRACTION_BANDS_HU: tuple[tuple[float, float], ...] = (
    (-3000.0, -500.0),
    (-500.0, -40.0),
    (-40.0, 20.0),
    (20.0, 150.0),
    (150.0, 5000.0),
)
#: Context features per voxel (:func:`context_features`).
N_FEATURES = (
    len(HU_KNOTS) + len(SMOOTH_SIGMAS_MM) + 1 + len(FRACTION_BANDS_HU) * len(FRACTION_SIGMAS_MM)
)

#: Called as ``progress(step, done, total)`` during training.
FitProgress = Callable[[str, int, int], None]
_F32 = NDArray[np.float32]


class LearnedConsistencySettings(SettingsBase):
    """Settings of the learned consistency signal (see the module docstring).

    Attributes
    ----------
    hidden : int
        Hidden units per layer of the network.
    samples_per_volume : int
        Training voxels drawn (uniformly inside the body) from each training pair.
    batch_size : int
        Voxels per step.
    steps : int
        Optimiser steps.
    learning_rate : float
        Adam's learning rate (cosine decay to 5% of it; three times larger for the scales).
    score_sigma_mm : float
        Gaussian of the local score.
    gain_degree : int or None
        Degree of the receive-gain polynomial fitted at inference; ``None``: no gain.
    seed : int
        Seeds the weights and the sampling.
    """

    invalid_error: ClassVar[type[SynthctError] | None] = AuditInputError
    settings_label: ClassVar[str] = "learned consistency settings"

    hidden: int = 64
    samples_per_volume: int = 100_000
    batch_size: int = 4096
    steps: int = 2000
    learning_rate: float = 3e-3
    score_sigma_mm: float = 1.5
    gain_degree: int | None = 2
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LearnedConsistencySettings:
        """Read the form written by :meth:`to_dict` (missing keys keep their defaults).

        Keys it does not know are passed over (a model written by a later version).
        """
        known = {k: v for k, v in data.items() if k in cls.model_fields}
        return cls.from_mapping(known, where="learned consistency settings")


def _network(n_echoes: int, hidden: int) -> Any:
    """A fresh :class:`~synthct.audit.learned_network.ConsistencyNet` (torch imported here)."""
    from synthct.audit.learned_network import ConsistencyNet

    return ConsistencyNet(N_FEATURES, n_echoes, hidden)


def hu_encoding(hu: NDArray[Any]) -> _F32:
    """Linear-spline ("hat") encoding ``[len(HU_KNOTS), ...]`` of HU values (float32).

    Channel ``k`` is the weight of knot ``HU_KNOTS[k]`` in the linear interpolation of the
    value between its two neighbouring knots (values outside the knots are clamped), so the
    channels sum to 1 and a linear layer can represent any piecewise-linear function of HU:
    the network need not learn thresholds 30 HU apart (CSF, cord, muscle).
    """
    knots = np.asarray(HU_KNOTS, dtype=np.float32)
    h = np.clip(np.asarray(hu, dtype=np.float32), knots[0], knots[-1])
    upper = np.clip(np.searchsorted(knots, h, side="right"), 1, len(knots) - 1)
    lo_knot, hi_knot = knots[upper - 1], knots[upper]
    frac = (h - lo_knot) / (hi_knot - lo_knot)
    out = np.zeros((len(knots), *h.shape), dtype=np.float32)
    index = np.indices(h.shape, sparse=True)
    out[(upper - 1, *index)] = 1 - frac
    out[(upper, *index)] += frac
    return out


def context_features(
    hu: NDArray[Any], spacing_mm: tuple[float, float, float], mask: NDArray[np.bool_]
) -> _F32:
    """The context features ``[voxels in mask, N_FEATURES]`` of an sCT array in HU.

    See the module docstring (step 1). Filters run on the whole array (so a voxel's features
    do not depend on the mask); only the rows of ``mask`` are returned.
    """
    h = np.asarray(hu, dtype=np.float32)
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    columns: list[_F32] = []
    light = ndimage.gaussian_filter(h, 0.5)
    columns.extend(list(hu_encoding(light[mask])))
    for sigma in SMOOTH_SIGMAS_MM:
        smooth = ndimage.gaussian_filter(h, sigma / spacing, truncate=3.0)
        columns.append(np.clip(smooth[mask] / np.float32(HU_SCALE), -1, 2))
        if sigma == 2.0:
            square = ndimage.gaussian_filter(h * h, sigma / spacing, truncate=3.0)
            sd = np.sqrt(np.maximum(square[mask] - smooth[mask] ** 2, 0))
            columns.append(np.minimum(sd / np.float32(HU_SCALE), 2))
    for low, high in FRACTION_BANDS_HU:
        band = ((h >= low) & (h < high)).astype(np.float32)
        for sigma in FRACTION_SIGMAS_MM:
            columns.append(ndimage.gaussian_filter(band, sigma / spacing, truncate=3.0)[mask])
    return np.stack(columns, axis=1).astype(np.float32, copy=False)


def normalised_echoes(mr: MultiEchoMR, body: NDArray[np.bool_]) -> tuple[_F32, tuple[float, ...]]:
    """Each echo divided by its 99th percentile inside ``body``, and those divisors."""
    data = np.asarray(mr.array, dtype=np.float32)
    refs = []
    for echo in data:
        value = float(np.percentile(echo[body], ECHO_PERCENTILE)) if body.any() else 0.0
        refs.append(value if value > 0 else float(echo.max()) or 1.0)
    out = np.stack([d / np.float32(r) for d, r in zip(data, refs, strict=True)])
    return out.astype(np.float32, copy=False), tuple(refs)


def _mr_body(mr: MultiEchoMR) -> NDArray[np.bool_]:
    from synthct.synthesis.normalisation import body_mask_from_mri

    mask, _ = body_mask_from_mri(mr.array)
    return mask


def _bounding_box(mask: NDArray[np.bool_], margin: int) -> tuple[slice, slice, slice]:
    out = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        if hits.size == 0:
            return (slice(0, 0), slice(0, 0), slice(0, 0))
        out.append(slice(max(int(hits[0]) - margin, 0), int(hits[-1]) + margin + 1))
    return (out[0], out[1], out[2])


@dataclass
class LearnedConsistencyModel:
    """A trained sCT-to-MRI network and what it needs at inference.

    Attributes
    ----------
    network : torch.nn.Module
        The :class:`ConsistencyNet` (evaluation mode).
    n_echoes : int
        Echoes it predicts.
    settings : LearnedConsistencySettings
        Architecture, training and score settings.
    spacing_mm : tuple of 3 float
        Voxel size of the training MRI (the network's context is in voxels).
    echo_times_ms : tuple of float, optional
        Echo times of the training MRI.
    info : dict
        Provenance: training pairs, where their sCTs came from, losses, version.
    """

    network: Any
    n_echoes: int
    settings: LearnedConsistencySettings
    spacing_mm: tuple[float, float, float]
    echo_times_ms: tuple[float, ...] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def config(self) -> dict[str, Any]:
        """JSON-ready description (without the checksum)."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "n_echoes": self.n_echoes,
            "settings": self.settings.to_dict(),
            "spacing_mm": list(self.spacing_mm),
            "echo_times_ms": None if self.echo_times_ms is None else list(self.echo_times_ms),
            "features": "context_features: HU spline, smoothed HU, local SD, tissue fractions",
            "hu_knots": list(HU_KNOTS),
            "smooth_sigmas_mm": list(SMOOTH_SIGMAS_MM),
            "fraction_sigmas_mm": list(FRACTION_SIGMAS_MM),
            "fraction_bands_hu": [list(b) for b in FRACTION_BANDS_HU],
            "target": f"each echo / its {ECHO_PERCENTILE:g}th percentile inside the MRI body",
            "likelihood": "Gaussian(mu_e, s_e) per echo; z_e = (m_e - mu_e) / s_e",
            **self.info,
        }

    def save(self, folder: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write the weights and the JSON (with the weights' SHA-256) into ``folder``."""
        from safetensors.torch import save_file

        from synthct.io.atomic import atomic_file, write_json_atomic
        from synthct.synthesis.model_folder import sha256_of

        target = Path(folder)
        weights = target / LEARNED_WEIGHTS_FILE
        state = {k: v.detach().cpu().contiguous() for k, v in self.network.state_dict().items()}
        with atomic_file(weights) as tmp:
            save_file(state, str(tmp))
        config = {**self.config(), "weights_sha256": sha256_of(weights)}
        write_json_atomic(target / LEARNED_CONFIG_FILE, config)
        return weights, target / LEARNED_CONFIG_FILE

    def predict(
        self, sct_hu: NDArray[Any], spacing_mm: tuple[float, float, float], mask: NDArray[np.bool_]
    ) -> tuple[_F32, _F32]:
        """Per-echo location and scale (normalised echo units) inside ``mask``.

        Returns ``(mu, s)``, each ``(n_echoes, I, J, K)`` (1 outside ``mask``).
        """
        import torch

        features = context_features(sct_hu, spacing_mm, mask)
        out = np.empty((len(features), 2 * self.n_echoes), dtype=np.float32)
        self.network.eval()
        with torch.inference_mode():
            for start in range(0, len(features), 1 << 18):
                chunk = torch.from_numpy(features[start : start + (1 << 18)])
                out[start : start + len(chunk)] = self.network(chunk).numpy()
        mu = np.ones((self.n_echoes, *mask.shape), dtype=np.float32)
        scale = np.ones_like(mu)
        mu[:, mask] = out[:, : self.n_echoes].T
        scale[:, mask] = np.exp(out[:, self.n_echoes :].T)
        return mu, scale


def load_learned_consistency(path: str | os.PathLike[str]) -> LearnedConsistencyModel:
    """Read a learned consistency model (an audit model folder holding its two files).

    Raises
    ------
    AuditModelError
        Missing files, malformed JSON, a checksum that does not match the weights (corrupt
        or replaced), or weights that do not fit the described network.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from synthct.synthesis.model_folder import sha256_of

    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    config_path, weights_path = folder / LEARNED_CONFIG_FILE, folder / LEARNED_WEIGHTS_FILE
    missing = [p.name for p in (config_path, weights_path) if not p.is_file()]
    if missing:
        raise AuditModelError(
            f"no learned consistency model here (missing {', '.join(missing)})",
            path=folder,
            fix="train one with `synthct audit-train --learned-consistency`",
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        if config.get("format") != FORMAT or config.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"format {config.get('format')!r} version {config.get('format_version')!r} "
                f"is not {FORMAT!r} version {FORMAT_VERSION}"
            )
        n_echoes = int(config["n_echoes"])
        settings = LearnedConsistencySettings.from_dict(dict(config["settings"]))
        spacing = tuple(float(v) for v in config["spacing_mm"])
        echo_times = config.get("echo_times_ms")
        expected = str(config["weights_sha256"])
        knots = tuple(float(v) for v in config["hu_knots"])
        sigmas = tuple(float(v) for v in config["smooth_sigmas_mm"])
        if knots != HU_KNOTS or sigmas != SMOOTH_SIGMAS_MM:
            raise ValueError("its features differ from this version's (HU knots, Gaussians)")
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise AuditModelError(
            f"not a learned consistency model description ({exc})",
            path=config_path,
            fix="use the learned_consistency.json written by `synthct audit-train`",
        ) from None
    actual = sha256_of(weights_path)
    if actual != expected:
        raise AuditModelError(
            f"the weights' SHA-256 {actual[:16]}... does not match the recorded "
            f"{expected[:16]}...: the weights are corrupt or belong to another model",
            path=weights_path,
            fix="restore the audit model folder from its source, or retrain it "
            "(synthct audit-train --learned-consistency)",
        )
    network = _network(n_echoes, settings.hidden)
    try:
        state = load_file(str(weights_path))
        network.load_state_dict(state)
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise AuditModelError(
            f"the weights do not fit the described network ({str(exc).splitlines()[0]})",
            path=weights_path,
            fix="keep the weights with the learned_consistency.json written with them",
        ) from None
    network.eval()
    known = {
        "format",
        "format_version",
        "n_echoes",
        "settings",
        "spacing_mm",
        "echo_times_ms",
        "input",
        "target",
        "likelihood",
        "features",
        "hu_knots",
        "smooth_sigmas_mm",
        "fraction_sigmas_mm",
        "fraction_bands_hu",
        "weights_sha256",
    }
    return LearnedConsistencyModel(
        network=network,
        n_echoes=n_echoes,
        settings=settings,
        spacing_mm=(spacing[0], spacing[1], spacing[2]),
        echo_times_ms=None if echo_times is None else tuple(float(t) for t in echo_times),
        info={k: v for k, v in config.items() if k not in known},
    )


def has_learned_consistency(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds a learned consistency model's JSON."""
    return (Path(folder) / LEARNED_CONFIG_FILE).is_file()


def _pair_samples(
    mr: MultiEchoMR, sct: CTVolume, n: int, rng: np.random.Generator
) -> tuple[_F32, _F32]:
    """Features and normalised echoes of ``n`` voxels drawn uniformly inside the body."""
    from synthct.audit.inputs import sct_on_mri_grid

    aligned = sct_on_mri_grid(sct, mr)
    body = _mr_body(mr) & aligned.field_of_view
    target, _ = normalised_echoes(mr, body)
    index = np.flatnonzero(body)
    flat = np.zeros(body.size, dtype=bool)
    flat[rng.choice(index, min(n, index.size), replace=False)] = True
    pick = flat.reshape(body.shape)
    features = context_features(aligned.sct.array, mr.spacing_mm, pick)
    return features, np.ascontiguousarray(target[:, pick].T)


def fit_learned_consistency(
    pairs: Sequence[tuple[MultiEchoMR, CTVolume]],
    *,
    settings: LearnedConsistencySettings | None = None,
    sources: Sequence[str] | None = None,
    sct_source: str = "unspecified",
    progress: FitProgress | None = None,
) -> LearnedConsistencyModel:
    """Train the sCT-to-MRI network on lesion-free pairs.

    Parameters
    ----------
    pairs : sequence of (MultiEchoMR, CTVolume)
        Lesion-free MRI with the sCT of the synthesis model the audit will check (or the CT),
        any grid of the MRI's frame; one echo count.
    settings : LearnedConsistencySettings, optional
        Network and training settings.
    sources : sequence of str, optional
        Names of the pairs, for provenance.
    sct_source : str
        Where the sCTs came from (e.g. ``"synthesis model product_like"`` or ``"CT"``).
    progress : callable, optional
        ``progress("training", step, steps)`` every 100 steps.

    Raises
    ------
    AuditModelError
        No pair, or pairs with different echo counts.
    """
    import torch

    from synthct.audit.learned_network import heteroscedastic_loss

    s = settings or LearnedConsistencySettings()
    if not pairs:
        raise AuditModelError("no training pair given", fix="pass lesion-free MRI with sCTs")
    n_echoes = pairs[0][0].n_echoes
    for mr, _ in pairs:
        if mr.n_echoes != n_echoes:
            raise AuditModelError(
                f"training pairs have {mr.n_echoes} and {n_echoes} echoes",
                path=mr.source,
                fix="train on one protocol",
            )
    rng = np.random.default_rng(s.seed)
    samples = [_pair_samples(mr, sct, s.samples_per_volume, rng) for mr, sct in pairs]
    x_all = torch.from_numpy(np.concatenate([f for f, _ in samples]))
    y_all = torch.from_numpy(np.concatenate([t for _, t in samples]))
    torch.manual_seed(s.seed)
    network = _network(n_echoes, s.hidden)
    scale_ids = {id(q) for q in network.scale_parameters()}
    optimiser = torch.optim.Adam(
        [
            {"params": [q for q in network.parameters() if id(q) not in scale_ids]},
            # The scales span decades (noise to tissue variability): a larger step.
            {"params": network.scale_parameters(), "lr": 3 * s.learning_rate},
        ],
        lr=s.learning_rate,
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda k: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * k / max(s.steps, 1)))
    )
    losses: list[float] = []
    network.train()
    generator = torch.Generator().manual_seed(s.seed)
    for step in range(s.steps):
        batch = torch.randint(len(x_all), (s.batch_size,), generator=generator)
        loss = heteroscedastic_loss(network(x_all[batch]), y_all[batch])
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if progress is not None and (step + 1) % 100 == 0:
            progress("training", step + 1, s.steps)
    network.eval()
    first = pairs[0][0]
    tail = losses[-max(1, len(losses) // 10) :]
    head = losses[: max(1, len(losses) // 10)]
    return LearnedConsistencyModel(
        network=network,
        n_echoes=n_echoes,
        settings=s,
        spacing_mm=first.spacing_mm,
        echo_times_ms=None if first.protocol is None else tuple(first.protocol.echo_times_ms),
        info={
            "sct_source": sct_source,
            "n_training_pairs": len(pairs),
            "training_pairs": list(sources or [mr.source or "" for mr, _ in pairs]),
            "n_training_voxels": len(x_all),
            "first_loss": float(np.mean(head)) if head else None,
            "final_loss": float(np.mean(tail)) if tail else None,
            "synthct_version": __version__,
        },
    )


@dataclass
class LearnedConsistencyResult:
    """The learned consistency signal of one MRI and sCT.

    Attributes
    ----------
    score : ScalarVolume
        Signed local score (negative: the MRI is darker than predicted); 0 outside the body.
    echo_z : list of ScalarVolume
        Standardised residual of each echo.
    predicted : list of ScalarVolume
        Predicted echo (gain applied) in the MRI's signal units.
    """

    score: ScalarVolume
    echo_z: list[ScalarVolume]
    predicted: list[ScalarVolume]


def learned_consistency_map(
    model: LearnedConsistencyModel,
    mr: MultiEchoMR,
    sct: CTVolume,
    *,
    body: NDArray[np.bool_] | None = None,
) -> LearnedConsistencyResult:
    """The learned consistency signal of an sCT on the MRI grid and its MRI.

    Parameters
    ----------
    model : LearnedConsistencyModel
        The trained network.
    mr : MultiEchoMR
        The echoes (same echo count as the model).
    sct : CTVolume
        The sCT in HU on the MRI grid (:func:`~synthct.audit.inputs.sct_on_mri_grid`).
    body : ndarray of bool, optional
        Where to evaluate; the MRI body mask when omitted.

    Raises
    ------
    AuditModelError
        The MRI has another echo count than the model.
    GeometryMismatchError
        The sCT is not on the MRI grid.
    """
    from synthct.audit.mri_consistency import fit_log_gain

    if mr.n_echoes != model.n_echoes:
        raise AuditModelError(
            f"the learned consistency model was trained on {model.n_echoes}-echo MRI, this "
            f"MRI has {mr.n_echoes} echoes",
            fix="use an audit model trained on this protocol (synthct audit-train)",
        )
    mr.require_same_geometry(sct, names=("MRI", "sCT"))
    if body is None:
        body = _mr_body(mr)
    if not body.any():
        raise AuditInputError("no body voxel to audit", path=mr.source)
    s = model.settings
    target, refs = normalised_echoes(mr, body)
    box = _bounding_box(body, 4)
    crop_body = body[box]
    mu, scale = model.predict(np.asarray(sct.array)[box], mr.spacing_mm, crop_body)
    measured = target[(slice(None), *box)]
    if s.gain_degree is not None:
        trusted = [crop_body & (mu[e] > 5 * scale[e]) & (mu[e] > 0.02) for e in range(mr.n_echoes)]
        ratios = [
            np.log(np.maximum(measured[e], 1e-3) / np.maximum(mu[e], 1e-3)).astype(np.float32)
            for e in range(mr.n_echoes)
        ]
        gains = fit_log_gain(ratios, trusted, degree=s.gain_degree)
        for e in range(mr.n_echoes):
            mu[e] *= gains[e]
            scale[e] *= gains[e]
    z = (measured - mu) / scale
    z = np.where(crop_body[None], z, 0).astype(np.float32)
    sigma = [s.score_sigma_mm / sp for sp in mr.spacing_mm]
    chi = np.sqrt(ndimage.gaussian_filter(np.mean(z * z, axis=0), sigma))
    sign = np.sign(ndimage.gaussian_filter(np.mean(z, axis=0), sigma))
    score = np.zeros(body.shape, dtype=np.float32)
    score[box] = np.where(crop_body, sign * chi, 0)
    echo_z, predicted = [], []
    for e in range(mr.n_echoes):
        full = np.zeros(body.shape, dtype=np.float32)
        full[box] = z[e]
        echo_z.append(ScalarVolume(full, mr.affine))
        pred = np.zeros(body.shape, dtype=np.float32)
        pred[box] = mu[e] * np.float32(refs[e])
        predicted.append(ScalarVolume(pred, mr.affine))
    return LearnedConsistencyResult(
        score=ScalarVolume(score, mr.affine), echo_z=echo_z, predicted=predicted
    )
