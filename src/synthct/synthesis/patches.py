"""Training patches: cases prepared for the network and patches drawn towards bone and lesions.

A patch centre is drawn voxel by voxel with a probability proportional to a weight map built
from the CT and the lesion labels (:func:`sampling_weights`): bone and lesions are rare in a
field of view but are exactly what the synthesis must get right, so they are over-sampled. The
patch is the window of :attr:`PatchConfig.size` around that centre, moved inside the volume
when it would stick out, and padded (normalised MRI 0, target air) when the volume is smaller
than the patch. Parts of the CT apart from the body that the MRI does not see (the scanner
couch, :func:`mr_invisible_objects`) are air in the target and draw no patches.

With lesion insertion enabled (:class:`~synthct.synthesis.config.LesionInsertionConfig`), a
fraction of the patches is centred near an intradural voxel instead and gets a library lesion
blended into its raw echoes and CT before normalisation (:mod:`synthct.synthesis.lesion_insertion`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from synthct.imaging.body_mask import CT_PADDING_BELOW_HU
from synthct.synthesis.config import LesionInsertionConfig, NormalisationConfig, PatchConfig
from synthct.synthesis.lesion_insertion import (
    InsertionSource,
    draw_lesion,
    has_placement_site,
    insert_lesion_into_patch,
    patch_geometry,
    prepare_insertion_source,
)
from synthct.synthesis.manifest import Case
from synthct.synthesis.normalisation import (
    EchoScaling,
    apply_scaling,
    hu_to_target,
    mri_signal_mask,
    normalise_mr,
)
from synthct.synthesis.resolution_augmentation import resample_through

#: HU used to pad the target outside the field of view (air).
PAD_HU = -1000.0

#: CT below this separates objects from the body (the air threshold of the CT-derived tissue map).
OBJECT_AIR_BELOW_HU = -300.0
#: A CT region apart from the body is MR-invisible (a couch, not an arm) when at most this
#: fraction of its voxels has MR signal.
MR_INVISIBLE_MAX_SIGNAL_FRACTION = 0.1


@dataclass(frozen=True)
class PreparedCase:
    """A case in network units.

    Parameters
    ----------
    case_id : str
        Name from the manifest.
    inputs : (echo, I, J, K) ndarray of float32
        Normalised echoes.
    target : (I, J, K) ndarray of float32
        CT in target units, ``(HU - hu_offset) / hu_scale``.
    body : (I, J, K) ndarray of bool
        MRI body mask.
    lesions : (I, J, K) ndarray of bool or None
        Lesion voxels, when the case has lesion labels.
    scaling : EchoScaling
        How the echoes were scaled.
    cumulative_weights : (I*J*K,) ndarray of float64
        Cumulative patch-centre sampling weights (C order).
    insertion : InsertionSource or None
        Raw echoes, tissue labels and signal tables for lesion insertion (None: no insertion).
    """

    case_id: str
    inputs: NDArray[np.float32]
    target: NDArray[np.float32]
    body: NDArray[np.bool_]
    lesions: NDArray[np.bool_] | None
    scaling: EchoScaling
    cumulative_weights: NDArray[np.float64]
    insertion: InsertionSource | None = None

    @property
    def n_echoes(self) -> int:
        """Number of input channels."""
        return int(self.inputs.shape[0])


def sampling_weights(
    ct_hu: NDArray[np.floating],
    body: NDArray[np.bool_],
    lesions: NDArray[np.bool_] | None,
    config: PatchConfig,
) -> NDArray[np.float64]:
    """Per-voxel weight of being a patch centre: background, body, bone, lesion (largest wins).

    Returns
    -------
    (I, J, K) ndarray of float64
        Non-negative weights, not normalised.
    """
    weights = np.full(ct_hu.shape, config.background_weight, dtype=np.float64)
    weights[body] = config.body_weight
    bone = ct_hu >= config.bone_threshold_hu
    weights[bone] = np.maximum(weights[bone], config.bone_weight)
    if lesions is not None:
        weights[lesions] = np.maximum(weights[lesions], config.lesion_weight)
    return weights


def mr_invisible_objects(
    ct_hu: NDArray[np.floating], mr_signal: NDArray[np.bool_]
) -> NDArray[np.bool_]:
    """Parts of the CT apart from the body that the MRI does not see: the couch, cables, pads.

    Clinical CTs keep the couch (150-500 HU under the patient: carbon-fibre shells around foam).
    On the MRI it is background, so as a synthesis target it would teach "dark background is
    bone", and bone-weighted sampling would centre patches on it. A part is a 3D connected
    region of non-air CT (``ct_hu >= OBJECT_AIR_BELOW_HU``, face connectivity) other than the
    largest (the body); it is MR-invisible when at most :data:`MR_INVISIBLE_MAX_SIGNAL_FRACTION`
    of its voxels have MR signal. A body part apart from the trunk (an arm, a hand) has signal
    and stays. Unlike the CT-only rule of :func:`~synthct.imaging.body_mask.external_objects`,
    this needs neither a minimum volume nor a density: on a coarse grid the thin shells of a
    couch fall apart into small pieces of partial-volume HU.

    Parameters
    ----------
    ct_hu : (I, J, K) ndarray
        CT on the MRI grid, in HU.
    mr_signal : (I, J, K) ndarray of bool
        MRI voxels with signal (:func:`~synthct.synthesis.normalisation.mri_signal_mask`).

    Returns
    -------
    (I, J, K) ndarray of bool
        True on MR-invisible parts.
    """
    regions, count = ndimage.label(ct_hu >= OBJECT_AIR_BELOW_HU)
    if count < 2:
        return np.zeros(ct_hu.shape, dtype=bool)
    sizes = np.bincount(regions.ravel())
    sizes[0] = 0
    with_signal = np.bincount(regions[mr_signal], minlength=count + 1)
    invisible = with_signal <= MR_INVISIBLE_MAX_SIGNAL_FRACTION * sizes
    invisible[[0, int(np.argmax(sizes))]] = False
    return np.asarray(invisible[regions], dtype=bool)


def prepare_case(
    case: Case,
    normalisation: NormalisationConfig,
    patches: PatchConfig,
    *,
    insertion: LesionInsertionConfig | None = None,
    tissue_labels: NDArray[np.integer] | None = None,
) -> PreparedCase:
    """Normalise a loaded case and compute its patch sampling weights.

    With ``insertion`` enabled and the case's ``tissue_labels`` (on the MRI grid), the case
    also keeps what lesion insertion needs (:class:`InsertionSource`).
    """
    inputs, body, scaling = normalise_mr(
        case.mr.array, normalisation, source=case.mr.source, spacing_mm=case.mr.spacing_mm
    )
    ct_hu = np.asarray(case.ct.array, dtype=np.float32)
    # Scanner padding (-2048, -3024 HU outside the reconstruction circle) was never measured:
    # no patch is centred there and its target is air, not a value no tissue has.
    padding = ct_hu < CT_PADDING_BELOW_HU
    if padding.any():
        ct_hu = np.maximum(ct_hu, np.float32(CT_PADDING_BELOW_HU))
    # The couch is air on the MRI: its target is air, and it is no bone to centre patches on.
    signal, _ = mri_signal_mask(
        case.mr.array, threshold_fraction=normalisation.body_threshold_fraction
    )
    couch = mr_invisible_objects(ct_hu, signal)
    if couch.any():
        ct_hu = np.where(couch, np.float32(PAD_HU), ct_hu)
    lesions = None if case.lesion_labels is None else case.lesion_labels.mask()
    weights = sampling_weights(ct_hu, body, lesions, patches)
    if case.ct_coverage is not None:
        weights[~case.ct_coverage] = 0.0
    weights[padding] = 0.0
    cumulative = np.cumsum(weights.ravel())
    if not cumulative[-1] > 0:
        cumulative = np.arange(1, weights.size + 1, dtype=np.float64)
    source = None
    allowed = body if case.ct_coverage is None else body & case.ct_coverage
    # A case without an intradural voxel (a CT-derived case whose canal came from HU alone)
    # still trains; it only gets no lesion (or sham) patches.
    if (
        insertion is not None
        and insertion.enabled
        and tissue_labels is not None
        and has_placement_site(tissue_labels, insertion, allowed)
    ):
        source = prepare_insertion_source(
            np.asarray(case.mr.array),
            np.asarray(tissue_labels),
            case.mr.affine,
            case.mr.protocol,
            insertion,
            allowed=allowed,
        )
    return PreparedCase(
        case_id=case.case_id,
        inputs=inputs,
        target=hu_to_target(ct_hu, normalisation),
        body=body,
        lesions=lesions,
        scaling=scaling,
        cumulative_weights=cumulative,
        insertion=source,
    )


def patch_start(
    centre: Sequence[int], shape: Sequence[int], size: Sequence[int]
) -> tuple[int, int, int]:
    """First voxel of the ``size`` window around ``centre``, kept inside ``shape`` if it fits.

    Along an axis shorter than the window the window is centred on the volume (negative start;
    the part outside is padded).
    """
    start = []
    for c, n, s in zip(centre, shape, size, strict=True):
        start.append(min(max(int(c) - s // 2, 0), n - s) if n >= s else (n - s) // 2)
    return (start[0], start[1], start[2])


def extract_patch(
    array: NDArray[np.float32], start: Sequence[int], size: Sequence[int], fill: float
) -> NDArray[np.float32]:
    """The window ``[start, start + size)`` of the last 3 axes, padded with ``fill`` outside."""
    lead = array.shape[:-3]
    out = np.full((*lead, *size), fill, dtype=np.float32)
    src: list[slice] = []
    dst: list[slice] = []
    for s, size_axis, n in zip(start, size, array.shape[-3:], strict=True):
        lo, hi = max(s, 0), min(s + size_axis, n)
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    dst_index: tuple[Any, ...] = (Ellipsis, *dst)
    src_index: tuple[Any, ...] = (Ellipsis, *src)
    out[dst_index] = array[src_index]
    return out


class PatchSampler:
    """Draws training patches from prepared cases.

    Parameters
    ----------
    cases : sequence of PreparedCase
        Training cases; each patch comes from a case chosen uniformly.
    config : PatchConfig
        Patch size, weights and augmentation.
    normalisation : NormalisationConfig
        For the target value of padding (air) and the scaling of patches with lesions.
    insertion : LesionInsertionConfig, optional
        Lesion insertion; applied to cases prepared with an :class:`InsertionSource`.
    """

    def __init__(
        self,
        cases: Sequence[PreparedCase],
        config: PatchConfig,
        normalisation: NormalisationConfig,
        insertion: LesionInsertionConfig | None = None,
    ) -> None:
        if not cases:
            raise ValueError("a patch sampler needs at least one case")
        self.cases = list(cases)
        self.config = config
        self.normalisation = normalisation
        active = insertion is not None and insertion.enabled and insertion.probability > 0
        # Disabled (or probability 0) insertion draws nothing: the patches stay as without it.
        self.insertion = insertion if active else None
        self.pad_target = float(hu_to_target(PAD_HU, normalisation))

    def centre(self, case: PreparedCase, rng: np.random.Generator) -> tuple[int, int, int]:
        """A voxel drawn with probability proportional to the case's sampling weights."""
        total = case.cumulative_weights[-1]
        flat = int(np.searchsorted(case.cumulative_weights, rng.random() * total, side="right"))
        flat = min(flat, case.cumulative_weights.size - 1)
        i, j, k = np.unravel_index(flat, case.target.shape)
        return (int(i), int(j), int(k))

    def patch(
        self, case: PreparedCase, centre: Sequence[int]
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Input ``[echo, *size]`` and target ``[1, *size]`` of the window around ``centre``."""
        size = self.config.size
        start = patch_start(centre, case.target.shape, size)
        x = extract_patch(case.inputs, start, size, 0.0)
        y = extract_patch(case.target, start, size, self.pad_target)[np.newaxis]
        return x, y

    def lesion_patch(
        self, case: PreparedCase, rng: np.random.Generator
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """A patch around a random intradural voxel with a library lesion inserted there.

        With ``sham`` insertion the same patch is returned without a lesion.

        The lesion is blended into the raw echoes and the CT (HU) of the patch, which are then
        normalised with the case's own scaling. Needs ``case.insertion`` and ``self.insertion``.
        """
        source, settings = case.insertion, self.insertion
        assert source is not None and settings is not None
        size = self.config.size
        shape = case.target.shape
        flat = int(source.candidates[int(rng.integers(source.candidates.size))])
        site = np.unravel_index(flat, shape)
        # Move the patch centre by up to a quarter patch so the lesion is not always central.
        shift = [int(rng.integers(-(s // 4), s // 4 + 1)) for s in size]
        centre = [int(c) + d for c, d in zip(site, shift, strict=True)]
        # the control arm (sham), or a share of lesion-free canal views; drawn only when
        # enabled, so that older configs draw the same patches as before
        if settings.sham or (settings.sham_fraction > 0 and rng.random() < settings.sham_fraction):
            return self.patch(case, centre)
        start = patch_start(centre, shape, size)
        site_lps = source.affine[:3, :3] @ np.asarray(site, np.float64) + source.affine[:3, 3]
        lesion = draw_lesion(settings, tuple(site_lps), rng)
        norm = self.normalisation
        raw = extract_patch(source.raw_mr, start, size, 0.0)
        hu = extract_patch(case.target, start, size, self.pad_target) * norm.hu_scale
        hu = hu + norm.hu_offset
        tissue = extract_patch(source.tissue.astype(np.float32), start, size, 0.0)
        mr, ct, _ = insert_lesion_into_patch(
            raw,
            hu,
            tissue.astype(np.uint8),
            patch_geometry(source.affine, start, size),
            lesion,
            source,
            settings,
            rng,
        )
        return apply_scaling(mr, case.scaling, norm), hu_to_target(ct, norm)[np.newaxis]

    def sample(
        self, rng: np.random.Generator, batch_size: int
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """A batch ``([B, echo, *size], [B, 1, *size])`` with augmentation applied."""
        return self.sample_from([rng] * batch_size)

    def sample_from(
        self, rngs: Sequence[np.random.Generator]
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """A batch with one sample drawn from each of ``rngs`` (in order; they may repeat).

        With one generator per global sample (``patch_seeding: per_sample``) a sample does not
        depend on which process draws it or on what was drawn before.
        """
        xs, ys = [], []
        for rng in rngs:
            x, y = self._one(rng)
            xs.append(x)
            ys.append(y)
        return np.stack(xs), np.stack(ys)

    def _one(self, rng: np.random.Generator) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """One augmented training sample drawn from ``rng``."""
        case = self.cases[int(rng.integers(len(self.cases)))]
        if (
            self.insertion is not None
            and case.insertion is not None
            and rng.random() < self.insertion.probability
        ):
            x, y = self.lesion_patch(case, rng)
        else:
            x, y = self.patch(case, self.centre(case, rng))
        for axis in self.config.flip_axes:
            if rng.random() < 0.5:
                x = np.flip(x, axis=axis + 1)
                y = np.flip(y, axis=axis + 1)
        if self.config.intensity_jitter > 0:
            j = self.config.intensity_jitter
            factors = np.asarray(1.0 + rng.uniform(-j, j, size=x.shape[0]), np.float32)
            x = x * factors[:, None, None, None]
        # drawn only when enabled, so that older configs draw the same patches as before
        if self.config.resample_probability > 0 and rng.random() < self.config.resample_probability:
            voxel = rng.uniform(1.0, self.config.resample_factor_max, size=3)
            x = resample_through(x, voxel, rng.uniform(0.0, voxel))
        return np.ascontiguousarray(x), np.ascontiguousarray(y)

    def fixed_patches(
        self, n_per_case: int, seed: int
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """The same patches every call (no augmentation), for a stable validation loss."""
        rng = np.random.default_rng(seed)
        xs, ys = [], []
        for case in self.cases:
            for _ in range(n_per_case):
                x, y = self.patch(case, self.centre(case, rng))
                xs.append(x)
                ys.append(y)
        return np.stack(xs), np.stack(ys)
