"""Lesion-aware training: library lesions inserted consistently into MRI and CT patches.

A model trained only on lesion-free spines renders a calcified intradural meningioma as CSF
(Fischer et al., Acta Neurochir 2025: 5 of 5 missed). Lesion insertion shows the network such
lesions during training. With probability :attr:`LesionInsertionConfig.probability` a training
patch is centred on a random intradural voxel (CSF or spinal cord in the case's
``tissue_labels``) and an ellipsoidal library lesion (:class:`~synthct.phantom.ct_insertion.
EllipsoidLesion`: its type's tissues, a seeded calcification pattern whose calcified fraction
gives the drawn mean HU) is placed there and rendered on the patch grid with ``supersample``
sub-voxels per edge:

* **CT** (HU): ``(1 - occ) * CT + occ * lesion HU + occ * N(0, ct_noise_sd_hu)``, ``occ`` the
  lesion's sub-voxel coverage, exactly the rule of
  :func:`synthct.phantom.ct_insertion.insert_lesions_into_ct` (both use
  :func:`~synthct.phantom.ct_insertion.rasterise_lesion`).
* **MRI** (raw magnitudes, before normalisation): each sub-voxel's complex signal per echo from
  the spoiled gradient echo equation (:func:`synthct.imaging.signal_equation.spgr_signal` via
  the tissue table, with the case's echo times, TR, flip angle and field strength from
  ``MultiEchoMR.protocol``) averaged over the voxel, times the static-dephasing factor of the
  voxel's dense inclusions (``exp(-mean exponent)``, as the phantom renderer applies it), times
  the case's local receive gain (the median ratio of observed to predicted signal of the pure
  tissues around the lesion: it carries the coil bias and any global scale), blended as
  ``|(1 - occ) * M + gain * s_lesion + n|`` with complex Gaussian noise ``n`` of SD
  ``sigma * sqrt(1 - (1 - occ)^2)``, so the voxel's noise level stays the case's background
  noise ``sigma`` (estimated from the air voxels, Rayleigh second moment).

The patch is then normalised with the case's own echo scaling, so inserted and real tissue go
through the same normalisation. Draws come from the sampler's generator only when insertion is
enabled, so a seed gives the same patches and a disabled insertion changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from synthct.geometry import Geometry
from synthct.imaging.labels import Tissue
from synthct.imaging.tissues import TISSUES
from synthct.phantom.ct_insertion import EllipsoidLesion, rasterise_lesion
from synthct.phantom.lesions import LESION_TYPES
from synthct.synthesis.config import LesionInsertionConfig
from synthct.volume import MRProtocol

#: Tissues whose pure voxels calibrate the local receive gain (moderate, well-modelled signal).
_GAIN_TISSUES = (Tissue.CSF, Tissue.SPINAL_CORD, Tissue.MUSCLE, Tissue.SUBCUTANEOUS_FAT)


@dataclass(frozen=True)
class InsertionSource:
    """What a case needs for lesion insertion.

    Parameters
    ----------
    raw_mr : (echo, I, J, K) ndarray of float32
        The un-normalised echo magnitudes.
    tissue : (I, J, K) ndarray of uint8
        Tissue labels (:class:`synthct.imaging.labels.Tissue`) on the MRI grid.
    affine : (4, 4) ndarray
        LPS affine of the MRI grid.
    candidates : (n,) ndarray of int64
        Flat indices of intradural voxels (placement sites).
    noise_sd : (echo,) ndarray of float64
        Background noise SD per echo (Gaussian SD of each complex channel).
    signal_tables : (echo, 256) ndarray of complex128
        Noise- and bias-free complex signal of each tissue label per echo (no dephasing).
    dephasing_tables : (echo, 256) ndarray of float64
        Static-dephasing exponent of each tissue label per unit volume fraction, per echo.
    """

    raw_mr: NDArray[np.float32]
    tissue: NDArray[np.uint8]
    affine: NDArray[np.float64]
    candidates: NDArray[np.int64]
    noise_sd: NDArray[np.float64]
    signal_tables: NDArray[np.complex128]
    dephasing_tables: NDArray[np.float64]

    def pure_tissue_signal(self, echo: int) -> NDArray[np.complex128]:
        """Signal of a voxel filled with one tissue (its own dephasing applied), by label."""
        return self.signal_tables[echo] * np.exp(-self.dephasing_tables[echo])


def tissue_signal_tables(
    protocol: MRProtocol,
) -> tuple[NDArray[np.complex128], NDArray[np.float64]]:
    """Per echo and tissue label: complex SPGR signal and static-dephasing exponent.

    Uses the phantom's MRI options (:class:`synthct.phantom.mri.MRIOptions`): the tissue table's
    PD, fat fraction, T1 and T2* at the protocol's field strength, and the exponent per unit
    volume fraction of dense inclusions (calcification). Both ``(echo, 256)``; labels that are
    no tissue hold 0.
    """
    from synthct.phantom.mri import MRIOptions

    options = MRIOptions(protocol=protocol, noise_sd=0.0, bias_field_strength=0.0)
    tables = options.tables()
    n = options.n_echoes
    signal = np.nan_to_num(np.stack([np.asarray(t, dtype=np.complex128) for t in tables[:n]]))
    dephasing = np.zeros(signal.shape, dtype=np.float64)
    for e, expo in enumerate(tables[n:]):
        dephasing[e] = np.nan_to_num(np.asarray(expo, dtype=np.float64))
    return signal, dephasing


def background_noise_sd(
    raw_mr: NDArray[np.floating], air: NDArray[np.bool_]
) -> NDArray[np.float64]:
    """Per echo, the complex-channel noise SD from air voxels: ``sqrt(mean(M^2) / 2)``.

    In air the magnitude is Rayleigh distributed with second moment ``2 sigma^2``. Zero when
    the case has no air voxels.
    """
    if not air.any():
        return np.zeros(raw_mr.shape[0])
    return np.array(
        [float(np.sqrt(np.mean(np.square(echo[air], dtype=np.float64)) / 2.0)) for echo in raw_mr]
    )


def placement_sites(
    tissue: NDArray[np.integer],
    config: LesionInsertionConfig,
    allowed: NDArray[np.bool_] | None = None,
) -> NDArray[np.bool_]:
    """Voxels of ``config.placement_tissues`` (and ``allowed``) where a lesion may be centred."""
    labels = np.asarray(tissue)
    placement = np.isin(labels, [int(Tissue[name.upper()]) for name in config.placement_tissues])
    if allowed is not None:
        placement &= allowed
    return placement


def has_placement_site(
    tissue: NDArray[np.integer],
    config: LesionInsertionConfig,
    allowed: NDArray[np.bool_] | None = None,
) -> bool:
    """Whether ``tissue`` holds any voxel a lesion may be placed in (:func:`placement_sites`)."""
    return bool(placement_sites(tissue, config, allowed).any())


def prepare_insertion_source(
    raw_mr: NDArray[np.floating],
    tissue: NDArray[np.integer],
    affine: NDArray[np.float64],
    protocol: MRProtocol | None,
    config: LesionInsertionConfig,
    *,
    allowed: NDArray[np.bool_] | None = None,
) -> InsertionSource:
    """The insertion data of one case (see :class:`InsertionSource`).

    Raises
    ------
    ValueError
        No MR protocol with TR, flip angle and field strength, a tissue map of another shape,
        or no intradural voxel to place lesions in.
    """
    if protocol is None or None in (
        protocol.repetition_time_ms,
        protocol.flip_angle_deg,
        protocol.field_strength_t,
    ):
        raise ValueError(
            "lesion insertion needs the MRI protocol (echo times, TR, flip angle, field "
            "strength) in the echoes' JSON sidecars"
        )
    if tuple(tissue.shape) != tuple(raw_mr.shape[1:]):
        raise ValueError(
            f"tissue labels {tuple(tissue.shape)} and MRI {tuple(raw_mr.shape[1:])} differ"
        )
    labels = np.asarray(tissue, dtype=np.uint8)
    candidates = np.flatnonzero(placement_sites(labels, config, allowed)).astype(np.int64)
    if candidates.size == 0:
        raise ValueError(
            f"no {'/'.join(config.placement_tissues)} voxel to place an intradural lesion in"
        )
    raw = np.asarray(raw_mr, dtype=np.float32)
    signal, dephasing = tissue_signal_tables(protocol)
    return InsertionSource(
        raw_mr=raw,
        tissue=labels,
        affine=np.asarray(affine, dtype=np.float64),
        candidates=candidates,
        noise_sd=background_noise_sd(raw, labels == int(Tissue.AIR)),
        signal_tables=signal,
        dephasing_tables=dephasing,
    )


def draw_lesion(
    config: LesionInsertionConfig, centre_lps_mm: Sequence[float], rng: np.random.Generator
) -> EllipsoidLesion:
    """A random library lesion at ``centre_lps_mm`` from the configured types and ranges."""
    kind = config.types[int(rng.integers(len(config.types)))]
    info = LESION_TYPES[kind]
    axial = float(rng.uniform(*config.axial_diameter_mm))
    sagittal = float(rng.uniform(*config.sagittal_diameter_mm))
    thickness = float(rng.uniform(*config.thickness_mm))
    pattern = config.patterns[int(rng.integers(len(config.patterns)))]
    mean_hu: float | None
    if info.dense_tissue is None:
        mean_hu = None
    else:
        base = TISSUES[info.base_tissue].ct_hu
        dense = TISSUES[info.dense_tissue].ct_hu
        lo = max(config.mean_hu[0], base)
        hi = min(config.mean_hu[1], dense)
        mean_hu = float(rng.uniform(lo, max(lo, hi)))
    return EllipsoidLesion(
        type=kind,
        centre_lps_mm=(float(centre_lps_mm[0]), float(centre_lps_mm[1]), float(centre_lps_mm[2])),
        axial_diameter_mm=axial,
        thickness_mm=min(thickness, axial),
        sagittal_diameter_mm=sagittal,
        mean_hu=mean_hu,
        pattern=pattern,
        seed=int(rng.integers(2**31 - 1)),
    )


def patch_geometry(
    affine: NDArray[np.float64], start: Sequence[int], size: Sequence[int]
) -> Geometry:
    """The grid of the patch ``[start, start + size)`` of a volume with ``affine``."""
    moved = np.array(affine, dtype=np.float64, copy=True)
    moved[:3, 3] = affine[:3, :3] @ np.asarray(start, dtype=np.float64) + affine[:3, 3]
    return Geometry((int(size[0]), int(size[1]), int(size[2])), moved)


def local_gain(
    mr: NDArray[np.floating],
    tissue: NDArray[np.uint8],
    source: InsertionSource,
) -> NDArray[np.float64]:
    """Per echo, median observed / predicted magnitude over pure gain-calibration voxels.

    ``mr`` is ``(echo, ...)`` and ``tissue`` the labels of the same voxels. Falls back to the
    median over every voxel with a predicted signal when no calibration tissue is present,
    and to 1 when there is none at all.
    """
    keep = np.isin(tissue, [int(t) for t in _GAIN_TISSUES])
    gains = np.ones(mr.shape[0])
    for e in range(mr.shape[0]):
        predicted = np.abs(source.pure_tissue_signal(e)[tissue])
        ok = keep & np.isfinite(predicted) & (predicted > 1e-3)
        if not ok.any():
            ok = np.isfinite(predicted) & (predicted > 1e-3)
        if ok.any():
            gains[e] = float(np.median(mr[e][ok] / predicted[ok]))
    return gains


def insert_lesion_into_patch(
    mr_patch: NDArray[np.float32],
    ct_patch_hu: NDArray[np.float32],
    tissue_patch: NDArray[np.uint8],
    geometry: Geometry,
    lesion: EllipsoidLesion,
    source: InsertionSource,
    config: LesionInsertionConfig,
    rng: np.random.Generator,
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    """Blend one lesion into raw MRI and CT patches on ``geometry``.

    Returns
    -------
    mr, ct, coverage
        The new raw echoes ``(echo, *size)``, the new CT in HU and the lesion's voxel coverage.
    """
    raster = rasterise_lesion(lesion, geometry, supersample=config.supersample, margin=1)
    mr_out = np.array(mr_patch, dtype=np.float32, copy=True)
    ct_out = np.array(ct_patch_hu, dtype=np.float32, copy=True)
    coverage = np.zeros(geometry.shape, dtype=np.float32)
    if raster is None:
        return mr_out, ct_out, coverage
    box = raster.box
    occ = raster.coverage
    coverage[box] = occ
    noise = rng.normal(0.0, config.ct_noise_sd_hu, occ.shape) * occ
    ct_out[box] = (1 - occ) * ct_out[box] + occ * raster.mean_hu + noise
    gains = local_gain(mr_patch, tissue_patch, source)
    fine_inside = raster.fine_inside
    fine_labels = raster.fine_labels
    keep = 1.0 - occ
    extra_sd = np.sqrt(np.clip(1.0 - keep**2, 0.0, 1.0))
    for e in range(mr_out.shape[0]):
        sub = np.where(fine_inside, source.signal_tables[e][fine_labels], 0.0)
        expo = np.where(fine_inside, source.dephasing_tables[e][fine_labels], 0.0)
        dephasing = np.exp(-raster.block_mean(expo))
        lesion_signal = raster.block_mean(sub) * dephasing * gains[e]
        sigma = float(source.noise_sd[e]) * extra_sd
        n = rng.normal(0.0, 1.0, occ.shape) * sigma + 1j * rng.normal(0.0, 1.0, occ.shape) * sigma
        blended = np.abs(keep * mr_out[e][box] + lesion_signal + n)
        mr_out[e][box] = np.where(occ > 0, blended, mr_out[e][box]).astype(np.float32)
    return mr_out, ct_out, coverage


def lesion_config_summary(config: LesionInsertionConfig) -> dict[str, Any]:
    """What the model card records about the insertion."""
    return config.model_dump(mode="json")
