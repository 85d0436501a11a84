"""Input novelty: how unlike the training domain each region of the MRI is.

A probabilistic PCA (a linear autoencoder with a Gaussian latent, [1]_) of local multi-echo
patches, fitted on lesion-free MRI (the training domain of a synthesis model). The novelty of a
voxel is the negative log-likelihood, up to a constant, of the patch centred on it:

``novelty = (sum_k c_k**2 / lambda_k + |x - mean - W c|**2 / sigma2) / d``

with ``d`` the patch dimension (so a typical training patch scores about 1), ``c`` the patch's
coordinates on the ``k`` principal components (variances ``lambda_k``)
and ``sigma2`` the mean variance left in the other directions. The first term is unusual
combinations of familiar patterns, the second patterns the components cannot represent.

Intensities have no absolute unit: each volume is divided by the 90th percentile of its echo sum
inside the MRI body mask, clipped below at 1% of it (:data:`LOG_FLOOR`, a few noise SDs) and
log-transformed before patches are taken. On a linear scale the bright fat and muscle edges
dominate the patch variance and a dark (calcified) structure in dark CSF is not novel; on a
log scale contrast is relative, so it is. The model works at its own voxel size: an
MRI on another grid is resampled to that voxel size (same orientation and extent), scored,
and the map resampled back. Patches are evaluated for every voxel with 3D convolutions
(``torch.nn.functional.conv3d``), so the cost is ``n_components`` filters per voxel.

A model is one ``.npz`` file: the mean patch, the components, their variances, ``sigma2`` and a
JSON config (patch size, voxel size, echo times, training volumes, synthct version).

References
----------
.. [1] Tipping ME, Bishop CM. Probabilistic principal component analysis. J R Stat Soc B 1999.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from synthct.audit.errors import AuditModelError
from synthct.geometry import Geometry
from synthct.io.atomic import atomic_file
from synthct.version import __version__
from synthct.volume import MultiEchoMR, ScalarVolume

#: File name of the novelty model inside an audit model folder.
NOVELTY_FILE = "novelty.npz"
#: Percentile of the echo sum inside the body that intensities are divided by.
REFERENCE_PERCENTILE = 90.0
#: Intensities (fractions of the reference) are clipped below at this value before the log.
LOG_FLOOR = 0.01


@dataclass
class NoveltyModel:
    """A fitted patch PPCA (see the module docstring).

    Attributes
    ----------
    mean : (n_echoes * p**3,) ndarray
        Mean patch (echo-major, then i, j, k).
    components : (k, n_echoes * p**3) ndarray
        Orthonormal principal directions.
    variances : (k,) ndarray
        Variance along each component.
    residual_variance : float
        Mean variance per dimension outside the components.
    patch_size : int
        Patch edge in voxels (odd).
    spacing_mm : tuple of 3 float
        Voxel size the model works at.
    echo_times_ms : tuple of float, optional
        Echo times of the training MRI (checked loosely at use).
    info : dict
        Provenance (training volumes, patches, version).
    """

    mean: NDArray[np.float32]
    components: NDArray[np.float32]
    variances: NDArray[np.float32]
    residual_variance: float
    patch_size: int
    spacing_mm: tuple[float, float, float]
    echo_times_ms: tuple[float, ...] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_echoes(self) -> int:
        """Echoes per patch."""
        return int(self.mean.size // self.patch_size**3)

    @property
    def n_components(self) -> int:
        """Number of principal components kept."""
        return int(self.components.shape[0])

    def config(self) -> dict[str, Any]:
        """JSON-ready configuration and provenance."""
        return {
            "kind": "synthct.audit.novelty.patch_ppca",
            "patch_size_vox": self.patch_size,
            "spacing_mm": list(self.spacing_mm),
            "n_components": self.n_components,
            "n_echoes": self.n_echoes,
            "echo_times_ms": None if self.echo_times_ms is None else list(self.echo_times_ms),
            "residual_variance": self.residual_variance,
            "reference_percentile": REFERENCE_PERCENTILE,
            "intensity": f"log(max(echo / reference, {LOG_FLOOR}))",
            **self.info,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model as one ``.npz`` (atomic) and return its path."""
        final = Path(path)
        with atomic_file(final) as tmp, tmp.open("wb") as handle:
            np.savez(
                handle,
                mean=self.mean,
                components=self.components,
                variances=self.variances,
                config=np.array(json.dumps(self.config())),
            )
        return final


def load_novelty_model(path: str | os.PathLike[str]) -> NoveltyModel:
    """Read a novelty model (a ``.npz`` file, or a folder holding ``novelty.npz``).

    Raises
    ------
    AuditModelError
        Missing or malformed file.
    ReadError
        A folder whose ``checksums.json`` does not match its files.
    """
    p = Path(path)
    if p.is_dir():
        from synthct.io.checksums import verify_checksums

        verify_checksums(p, what="audit model folder")  # when it has checksums.json
        p = p / NOVELTY_FILE
    if not p.is_file():
        raise AuditModelError(
            "no novelty model here",
            path=p,
            fix="train one with `synthct audit-train` (or synthct.audit.novelty.fit_novelty_model)",
        )
    try:
        with np.load(p, allow_pickle=False) as data:
            config = json.loads(str(data["config"]))
            model = NoveltyModel(
                mean=data["mean"].astype(np.float32),
                components=data["components"].astype(np.float32),
                variances=data["variances"].astype(np.float32),
                residual_variance=float(config["residual_variance"]),
                patch_size=int(config["patch_size_vox"]),
                spacing_mm=tuple(float(v) for v in config["spacing_mm"]),  # type: ignore[arg-type]
                echo_times_ms=None
                if config.get("echo_times_ms") is None
                else tuple(float(t) for t in config["echo_times_ms"]),
                info={
                    k: v
                    for k, v in config.items()
                    if k
                    not in {
                        "kind",
                        "patch_size_vox",
                        "spacing_mm",
                        "n_components",
                        "n_echoes",
                        "echo_times_ms",
                        "residual_variance",
                        "reference_percentile",
                        "intensity",
                    }
                },
            )
    except Exception as exc:  # a damaged archive: zipfile, zlib, numpy or JSON errors
        raise AuditModelError(
            f"not a synthct novelty model, or a damaged one ({type(exc).__name__}: {exc})",
            path=p,
            fix="point to the novelty.npz written by `synthct audit-train`",
        ) from None
    if model.components.shape[1] != model.mean.size or model.variances.size != model.n_components:
        raise AuditModelError("the model's arrays do not fit together", path=p)
    return model


def normalised_echoes(mr: MultiEchoMR, body: NDArray[np.bool_]) -> NDArray[np.float32]:
    """``log(max(echo / reference, LOG_FLOOR))``: the reference is the 90th percentile of the
    echo sum inside ``body``."""
    data = np.asarray(mr.array, dtype=np.float32)
    total = data.sum(axis=0)
    reference = float(np.percentile(total[body], REFERENCE_PERCENTILE)) if body.any() else 0.0
    if not reference > 0:
        reference = float(total.max()) or 1.0
    scaled = data / np.float32(reference)
    np.maximum(scaled, np.float32(LOG_FLOOR), out=scaled)
    return np.log(scaled, out=scaled)


def model_grid(geometry: Geometry, spacing_mm: Sequence[float]) -> Geometry:
    """``geometry``'s field of view and orientation at another voxel size."""
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    extent = np.asarray(geometry.extent_mm)
    shape = np.maximum(np.rint(extent / spacing).astype(int), 1)
    centre = geometry.index_to_lps((np.asarray(geometry.shape) - 1) / 2.0)
    direction = geometry.direction
    origin = centre - direction @ (spacing * (shape - 1) / 2.0)
    return Geometry.from_parameters(
        tuple(int(n) for n in shape), tuple(spacing), tuple(origin), direction
    )


def _on_model_grid(mr: MultiEchoMR, spacing_mm: Sequence[float]) -> MultiEchoMR:
    if np.allclose(mr.spacing_mm, spacing_mm, rtol=0.02, atol=0):
        return mr
    from synthct.resample import resample_to

    return resample_to(mr, model_grid(mr.geometry, spacing_mm))


def _body(mr: MultiEchoMR) -> NDArray[np.bool_]:
    from synthct.synthesis.normalisation import body_mask_from_mri

    mask, _ = body_mask_from_mri(mr.array)
    return mask


def fit_novelty_model(
    volumes: Sequence[MultiEchoMR],
    *,
    patch_size: int = 5,
    n_components: int = 16,
    spacing_mm: Sequence[float] | None = None,
    patches_per_volume: int = 40_000,
    seed: int = 0,
    sources: Sequence[str] | None = None,
) -> NoveltyModel:
    """Fit the patch PPCA on lesion-free MRI volumes.

    Parameters
    ----------
    volumes : sequence of MultiEchoMR
        Training MRI (the domain a synthesis model was trained on), same echo count.
    patch_size : int
        Odd patch edge in voxels.
    n_components : int
        Principal components kept.
    spacing_mm : sequence of 3 float, optional
        Voxel size of the model; the first volume's when omitted.
    patches_per_volume : int
        Patches sampled (uniformly inside the body) per volume.
    seed : int
        Seeds the sampling.
    sources : sequence of str, optional
        Names of the volumes, recorded as provenance.
    """
    if not volumes:
        raise AuditModelError("no training volume given", fix="pass lesion-free MRI volumes")
    if patch_size < 3 or patch_size % 2 == 0:
        raise AuditModelError(f"patch_size must be odd and >= 3, got {patch_size}")
    n_echoes = volumes[0].n_echoes
    spacing = tuple(float(v) for v in (spacing_mm or volumes[0].spacing_mm))
    rng = np.random.default_rng(seed)
    half = patch_size // 2
    rows = []
    for volume in volumes:
        if volume.n_echoes != n_echoes:
            raise AuditModelError(
                f"training volumes have {volume.n_echoes} and {n_echoes} echoes",
                path=volume.source,
                fix="train on one protocol",
            )
        grid = _on_model_grid(volume, spacing)
        body = _body(grid)
        data = normalised_echoes(grid, body)
        index = np.argwhere(body)
        shape = np.asarray(body.shape)
        index = index[np.all((index >= half) & (index < shape - half), axis=1)]
        if len(index) == 0:
            continue
        pick = index[rng.choice(len(index), min(patches_per_volume, len(index)), replace=False)]
        offsets = np.arange(-half, half + 1)
        ii = pick[:, 0, None, None, None] + offsets[None, :, None, None]
        jj = pick[:, 1, None, None, None] + offsets[None, None, :, None]
        kk = pick[:, 2, None, None, None] + offsets[None, None, None, :]
        patches = data[:, ii, jj, kk]  # (echo, n, p, p, p)
        rows.append(np.moveaxis(patches, 0, 1).reshape(len(pick), -1))
    if not rows:
        raise AuditModelError("no body voxel found in the training volumes")
    x = np.concatenate(rows).astype(np.float64)
    mean = x.mean(axis=0)
    _, singular, vt = np.linalg.svd(x - mean, full_matrices=False)
    variances = singular**2 / len(x)
    k = min(n_components, len(variances) - 1)
    residual = float(variances[k:].sum() / max(len(variances) - k, 1))
    protocol = volumes[0].protocol
    return NoveltyModel(
        mean=mean.astype(np.float32),
        components=vt[:k].astype(np.float32),
        variances=variances[:k].astype(np.float32),
        residual_variance=max(residual, 1e-12),
        patch_size=patch_size,
        spacing_mm=spacing,  # type: ignore[arg-type]
        echo_times_ms=None if protocol is None else tuple(protocol.echo_times_ms),
        info={
            "n_training_volumes": len(volumes),
            "n_patches": len(x),
            "training_volumes": list(sources or [v.source or "" for v in volumes]),
            "seed": seed,
            "synthct_version": __version__,
        },
    )


def novelty_map(model: NoveltyModel, mr: MultiEchoMR) -> ScalarVolume:
    """Novelty of every voxel of ``mr`` (0 outside the body), on the MRI grid.

    Raises
    ------
    AuditModelError
        The MRI has another echo count than the model.
    """
    import torch
    import torch.nn.functional as F

    from synthct.resample import resample_to

    if mr.n_echoes != model.n_echoes:
        raise AuditModelError(
            f"the novelty model was trained on {model.n_echoes}-echo MRI, this MRI has "
            f"{mr.n_echoes} echoes",
            fix="use a novelty model trained on this protocol (synthct audit-train)",
        )
    grid = _on_model_grid(mr, model.spacing_mm)
    body = _body(grid)
    data = normalised_echoes(grid, body)
    p = model.patch_size
    k = model.n_components
    weights = torch.from_numpy(model.components.reshape(k, model.n_echoes, p, p, p).copy())
    mean = torch.from_numpy(model.mean.reshape(1, model.n_echoes, p, p, p).copy())
    x = torch.from_numpy(data)[None]
    pad = p // 2
    with torch.inference_mode():
        x = F.pad(x, (pad,) * 6, mode="replicate")
        projection = F.conv3d(x, weights)[0]  # (k, I, J, K): components . x
        x_dot_mean = F.conv3d(x, mean)[0, 0]
        x_sq = F.avg_pool3d((x * x).sum(dim=1, keepdim=True), p, stride=1)[0, 0] * p**3
        offset = torch.from_numpy((model.components @ model.mean).astype(np.float32))
        coefficients = projection - offset[:, None, None, None]
        centred_sq = x_sq - 2 * x_dot_mean + float(model.mean.astype(np.float64) @ model.mean)
        residual = torch.clamp(centred_sq - (coefficients**2).sum(dim=0), min=0)
        variances = torch.from_numpy(model.variances)[:, None, None, None]
        score = (coefficients**2 / variances).sum(dim=0) + residual / model.residual_variance
        score /= float(model.mean.size)
    values = np.where(body, score.numpy(), 0).astype(np.float32)
    out = ScalarVolume(values, grid.affine)
    if grid is not mr:
        out = resample_to(out, mr.geometry, fill_value=0.0)
    return out
