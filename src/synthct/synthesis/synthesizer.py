"""MRI in, sCT out: the trained model (or ensemble) behind one interface with the baseline.

:class:`SynthesisModel` loads one model folder (or several, an ensemble), checks the input
MRI (:func:`~synthct.synthesis.normalisation.check_mr_array`) and its training domain
(:func:`~synthct.synthesis.domain.check_domain`), normalises it, runs sliding-window
inference and returns a :class:`SynthesisResult`: the sCT in HU on the MRI grid and, on
request, the aleatoric, epistemic and total SD maps in HU. The baseline
(:class:`~synthct.synthesis.baseline.BaselineSynthesizer`) returns the same result type.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from synthct.geometry import Geometry
from synthct.imaging.body_mask import CT_PADDING_BELOW_HU
from synthct.orientation import Reorientation, reorientation
from synthct.synthesis.config import SynthesisConfig
from synthct.synthesis.domain import TrainingDomain, check_domain
from synthct.synthesis.errors import ModelFolderError, SynthesisInputError
from synthct.synthesis.inference_grid import grid_with_spacing, inference_spacing, outputs_to_grid
from synthct.synthesis.inference_network import inference_network
from synthct.synthesis.model_folder import ModelFolder, load_model_folder
from synthct.synthesis.normalisation import body_mask_from_mri, normalise_mr
from synthct.synthesis.result import SynthesisResult, Synthesizer
from synthct.synthesis.sliding_window import WindowProgress, sliding_window_predict
from synthct.synthesis.uncertainty import (
    ALEATORIC,
    EPISTEMIC,
    MEAN,
    ensemble_predictor,
    flip_sets,
    mc_dropout_predictor,
    single_pass_predictor,
)
from synthct.volume import MultiEchoMR, ScalarVolume, SyntheticCT

Epistemic = Literal["mc_dropout", "ensemble"]


def predict_arrays(
    networks: Sequence[nn.Module],
    inputs: NDArray[np.float32],
    config: SynthesisConfig,
    *,
    epistemic: Epistemic | None = None,
    mc_passes: int | None = None,
    patch_size: Sequence[int] | None = None,
    overlap: float | None = None,
    batch_size: int | None = None,
    device: str = "cpu",
    seed: int = 0,
    progress: WindowProgress | None = None,
    tta_axes: Sequence[int] = (),
    autocast_bf16: bool = False,
    needed: NDArray[np.bool_] | None = None,
) -> NDArray[np.float32]:
    """Sliding-window prediction in network units: ``[mean, aleatoric var(, epistemic var)]``.

    One network without ``epistemic`` is one pass; ``"mc_dropout"`` adds ``mc_passes``
    dropout passes; several networks are an ensemble (``epistemic`` must then be
    ``"ensemble"`` or ``None``). ``tta_axes`` adds test-time augmentation: every combination
    of flips along these array axes (:func:`~synthct.synthesis.uncertainty.flip_sets`) for
    every network, all members of one ensemble. ``autocast_bf16`` runs the networks under
    bfloat16 autocast on CUDA. ``needed``: the voxels whose prediction is used; windows
    without any are skipped (:func:`~synthct.synthesis.sliding_window.sliding_window_predict`).
    """
    inference = config.inference
    flips = flip_sets(tta_axes)
    # Evaluation copies with batch norm folded and channels-last layers: same outputs, faster.
    networks = [inference_network(network).to(device) for network in networks]
    if len(networks) > 1 or len(flips) > 1:
        if epistemic not in (None, "ensemble"):
            raise SynthesisInputError(
                f"epistemic={epistemic!r} with {len(networks)} models and {len(flips)} "
                "test-time flips",
                path="epistemic",
                fix="an ensemble or test-time augmentation gives its own variance; pass one "
                "model without test-time augmentation for MC dropout",
            )
        predictor, n_out = ensemble_predictor(networks, flips=flips), 3
    elif epistemic == "mc_dropout":
        passes = mc_passes or inference.mc_passes
        predictor, n_out = mc_dropout_predictor(networks[0], passes), 3
    elif epistemic == "ensemble":
        raise SynthesisInputError(
            "an ensemble needs at least 2 models",
            path="epistemic",
            fix="pass several model folders, or use MC dropout",
        )
    else:
        predictor, n_out = single_pass_predictor(networks[0]), 2
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return sliding_window_predict(
            inputs,
            predictor,
            n_outputs=n_out,
            patch_size=patch_size or config.inference_patch_size,
            overlap=inference.overlap if overlap is None else overlap,
            batch_size=batch_size or inference.batch_size,
            sigma_scale=inference.sigma_scale,
            device=device,
            progress=progress,
            autocast_bf16=autocast_bf16,
            needed=needed,
        )


class SynthesisModel:
    """A trained synthesis model (one folder) or an ensemble (several folders).

    Parameters
    ----------
    members : sequence of ModelFolder
        Loaded model folders; several must share the echo count and the normalisation.
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available).
    """

    def __init__(self, members: Sequence[ModelFolder], *, device: str = "cpu") -> None:
        if not members:
            raise ModelFolderError("no model folder given", fix="pass at least one model folder")
        first = members[0]
        for other in members[1:]:
            if (
                other.domain.n_echoes != first.domain.n_echoes
                or other.config.normalisation != first.config.normalisation
            ):
                raise ModelFolderError(
                    f"ensemble members {first.name!r} and {other.name!r} differ in echo count "
                    "or normalisation",
                    path=other.path,
                    fix="ensemble only models trained with the same inputs and normalisation",
                )
            if other.domain.orientation != first.domain.orientation:
                # the windows are run on one grid: each member must expect its layout
                raise ModelFolderError(
                    f"ensemble members {first.name!r} and {other.name!r} were trained in "
                    f"different array orientations ({first.domain.orientation!r}, "
                    f"{other.domain.orientation!r})",
                    path=other.path,
                    fix="ensemble only models trained with the same plan.orientation",
                )
        self.members = list(members)
        self.device = resolve_device(device)
        self.name = " + ".join(m.name for m in members)

    @classmethod
    def load(
        cls,
        paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        device: str = "cpu",
    ) -> SynthesisModel:
        """Load one model folder, or several as an ensemble (each verified)."""
        items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
        return cls([load_model_folder(p) for p in items], device=device)

    @property
    def config(self) -> SynthesisConfig:
        """Configuration of the first member (inference settings, normalisation)."""
        return self.members[0].config

    @property
    def domain(self) -> TrainingDomain:
        """Training domain of the first member."""
        return self.members[0].domain

    @property
    def networks(self) -> list[nn.Module]:
        """The members' networks."""
        return [m.network for m in self.members]

    def synthesize(
        self,
        mr: MultiEchoMR,
        *,
        uncertainty: bool = False,
        progress: WindowProgress | None = None,
        epistemic: Epistemic | None = None,
        mc_passes: int | None = None,
        patch_size: Sequence[int] | None = None,
        overlap: float | None = None,
        batch_size: int | None = None,
        mask_outside_body: bool | None = None,
        seed: int = 0,
        tta_axes: Sequence[int] = (),
        resample: bool | None = None,
        autocast_bf16: bool = False,
    ) -> SynthesisResult:
        """Synthesise the CT of ``mr``.

        Parameters
        ----------
        mr : MultiEchoMR
            Echo magnitudes; the echo count must match the training data.
        uncertainty : bool
            Also compute aleatoric, epistemic and total SD maps (HU). The epistemic part is
            the ensemble variance for several members, MC dropout otherwise.
        progress : callable, optional
            Called with (windows done, windows in total).
        epistemic : {"mc_dropout", "ensemble"}, optional
            Override the epistemic method.
        mc_passes, patch_size, overlap, batch_size, mask_outside_body
            Override the configuration's inference settings.
        seed : int
            Seeds the MC-dropout masks (the result is reproducible).
        tta_axes : sequence of int
            Test-time augmentation: the sCT is the mean over every combination of flips along
            these array axes (and over the members of an ensemble); their SD is the epistemic
            map. The axes are those of the grid the network sees: the model's training
            orientation when its card declares one (:func:`default_tta_axes`). Empty: none.
        resample : bool, optional
            Run the network at the model's spacing and bring the result back to the MRI grid
            (:mod:`synthct.synthesis.inference_grid`): ``None`` when the model declares a
            planned spacing, ``True`` also for older models (the middle of their training
            voxel sizes), ``False`` never.
        autocast_bf16 : bool
            On CUDA, run the network under bfloat16 autocast.
        """
        if not isinstance(mr, MultiEchoMR):
            raise SynthesisInputError(
                f"expected a multi-echo MRI, got a {getattr(mr, 'kind', type(mr).__name__)}",
                path=getattr(mr, "source", None),
                fix="read the echoes as MR (kind 'mr')",
            )
        # The network sees the array layout it was trained in (plan.orientation): a sagittal
        # or RAS-stored MRI is permuted and flipped into it, losslessly, and the sCT back.
        turn = network_orientation(self.domain, mr.geometry)
        code = self.domain.orientation
        oriented = mr if turn is None or code is None else mr.reoriented(code)
        spacing = inference_spacing(self.domain, oriented.spacing_mm, resample=resample)
        # At (or resampled to) the model's spacing, the voxel size is no mismatch.
        at_model_spacing = spacing is not None or (
            resample is not False and self.domain.planned_spacing_mm is not None
        )
        found = check_domain(self.domain, mr, model_name=self.name, resampled=at_model_spacing)
        config = self.config
        work = oriented
        if spacing is not None:
            from synthct.resample import resample_to

            work = resample_to(oriented, grid_with_spacing(oriented.geometry, spacing))
        inputs, body, _ = normalise_mr(
            work.array, config.normalisation, source=mr.source, spacing_mm=work.spacing_mm
        )
        method: Epistemic | None = None
        if uncertainty or epistemic is not None:
            several = len(self.members) > 1 or len(flip_sets(tta_axes)) > 1
            method = epistemic or ("ensemble" if several else "mc_dropout")
        mask_out = (
            config.inference.mask_outside_body if mask_outside_body is None else mask_outside_body
        )
        # Outside the body the sCT is set to air and the SD maps to 0: on the MRI's own grid,
        # windows holding no body voxel change nothing and are skipped.
        needed = body if mask_out and spacing is None else None
        out = predict_arrays(
            self.networks,
            inputs,
            config,
            epistemic=method,
            mc_passes=mc_passes,
            patch_size=patch_size,
            overlap=overlap,
            batch_size=batch_size,
            device=self.device,
            seed=seed,
            progress=progress,
            tta_axes=tta_axes,
            autocast_bf16=autocast_bf16,
            needed=needed,
        )
        del inputs
        if spacing is not None:
            norm = config.normalisation
            air = (config.inference.air_hu - norm.hu_offset) / norm.hu_scale
            fills = [air] + [0.0] * (out.shape[0] - 1)
            out = outputs_to_grid(out, work.geometry, mr.geometry, fill_values=fills)
            body, _ = body_mask_from_mri(mr.array, threshold_fraction=norm.body_threshold_fraction)
        elif turn is not None:
            out = np.ascontiguousarray(turn.undo(out, channel_axes=1))
            body = np.ascontiguousarray(turn.undo(body))
        del work, oriented
        return assemble_result(
            out,
            mr,
            body,
            config,
            uncertainty=uncertainty or epistemic is not None,
            epistemic_method=method,
            mc_passes=(mc_passes or config.inference.mc_passes) if method == "mc_dropout" else None,
            mask_outside_body=mask_outside_body,
            out_of_domain=found,
            model_name=self.name,
            inference_spacing_mm=spacing,
            inference_orientation=None if turn is None else code,
        )


def network_orientation(domain: TrainingDomain, geometry: Geometry) -> Reorientation | None:
    """How to bring an MRI on ``geometry`` into the model's training orientation.

    None when the model declares none (trained on each case's own layout) or the MRI is in it
    already.
    """
    if domain.orientation is None:
        return None
    turn = reorientation(geometry, domain.orientation)
    return None if turn.is_identity else turn


def assemble_result(
    out: NDArray[np.float32],
    mr: MultiEchoMR,
    body: NDArray[np.bool_],
    config: SynthesisConfig,
    *,
    uncertainty: bool,
    epistemic_method: str | None = None,
    mc_passes: int | None = None,
    mask_outside_body: bool | None = None,
    out_of_domain: list[str] | None = None,
    model_name: str | None = None,
    inference_spacing_mm: Sequence[float] | None = None,
    inference_orientation: str | None = None,
) -> SynthesisResult:
    """Turn the network-unit prediction into HU volumes on the MRI grid (in place); the sCT
    is clipped below at -1024 HU, the lowest target training saw."""
    scale = np.float32(config.normalisation.hu_scale)
    offset = np.float32(config.normalisation.hu_offset)
    mask_out = (
        config.inference.mask_outside_body if mask_outside_body is None else mask_outside_body
    )
    sct = out[MEAN]
    sct *= scale
    sct += offset
    # No training target lay below -1024 HU (padding is clamped there, air is -1000 HU): a
    # network that extrapolates below it (-3000 HU and lower on unseen contrasts) is clipped.
    np.maximum(sct, np.float32(CT_PADDING_BELOW_HU), out=sct)
    outside = ~body if mask_out else None
    if outside is not None:
        sct[outside] = config.inference.air_hu
    source = f"synthesised from {mr.source}" if mr.source else None
    provenance: dict[str, object] = {
        "model": model_name,
        "out_of_domain": list(out_of_domain or []),
    }
    if inference_spacing_mm is not None:
        provenance["inference_spacing_mm"] = [float(v) for v in inference_spacing_mm]
    if inference_orientation is not None:
        provenance["inference_orientation"] = inference_orientation
    result = SynthesisResult(
        sct=SyntheticCT(sct, mr.affine, source=source, provenance=provenance),
        body_mask=body,
        out_of_domain=list(out_of_domain or []),
    )
    if not uncertainty:
        return result

    def sd_map(variance: NDArray[np.float32]) -> ScalarVolume:
        sd = np.sqrt(np.maximum(variance, 0.0, out=variance), out=variance)
        sd *= scale
        if outside is not None:
            sd[outside] = 0.0
        return ScalarVolume(sd, mr.affine)

    total = out[ALEATORIC] + out[EPISTEMIC] if out.shape[0] > EPISTEMIC else out[ALEATORIC].copy()
    result.total_sd = sd_map(total)
    result.aleatoric_sd = sd_map(out[ALEATORIC])
    if out.shape[0] > EPISTEMIC:
        result.epistemic_sd = sd_map(out[EPISTEMIC])
        result.epistemic_method = epistemic_method
        result.mc_passes = mc_passes
    return result


def default_tta_axes(model: SynthesisModel, mr: MultiEchoMR) -> tuple[int, ...]:
    """Flip axes for test-time augmentation when none are chosen.

    The axes the model was trained with flipped (``patches.flip_axes``); for a model trained
    without flips, the array axis of ``mr`` closest to left-right, the one flip that gives
    anatomy like the training data's (bodies are nearly left-right symmetric).
    """
    trained = tuple(model.config.patches.flip_axes)
    if trained:
        return trained
    # The axes are those of the grid the network sees (the model's orientation, if any).
    turn = network_orientation(model.domain, mr.geometry)
    geometry = mr.geometry if turn is None else turn.geometry
    left_right = np.abs(geometry.direction[0])
    return (int(np.argmax(left_right)),)


def resolve_device(device: str) -> str:
    """``"auto"`` to ``"cuda"`` when available, else ``"cpu"``; check an explicit CUDA request."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SynthesisInputError(
            "CUDA was requested but no CUDA device is available",
            path="device",
            fix="use device 'cpu' or 'auto'",
        )
    return device


def load_synthesizer(
    model: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *, device: str = "cpu"
) -> Synthesizer:
    """``"baseline"`` for the tissue-class baseline, else model folder(s) (an ensemble)."""
    if isinstance(model, str) and model == "baseline":
        from synthct.synthesis.baseline import BaselineSynthesizer

        return BaselineSynthesizer()
    return SynthesisModel.load(model, device=device)


def load_shipped_model(name: str, *, device: str = "cpu") -> SynthesisModel:
    """Load a shipped model; its weights are checked against the card's SHA-256."""
    from synthct.synthesis.shipped import shipped_model_path

    return SynthesisModel.load(shipped_model_path(name), device=device)
