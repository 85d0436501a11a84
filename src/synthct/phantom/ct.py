"""CT (Hounsfield units) of a tissue model: partial volume, tissue texture, blur and noise.

Order of operations, each one optional:

1. partial volume: the mean HU of the ``supersample**3`` sub-voxels of each voxel
   (:func:`synthct.phantom.model.average_tables`);
2. tissue texture: a seeded Gaussian random field with correlation length
   ``texture_correlation_mm``, unit variance, scaled per voxel by the partial-volume mean of
   the tissues' ``ct_texture_sd_hu`` (trabecular pattern, fat lobules...);
3. blur: a Gaussian of ``blur_fwhm_mm`` in every direction (the scanner's point-spread
   function; the paper's sharp bone kernel on 1 mm slices is about 0.7 mm), spacing-aware;
4. noise: white Gaussian noise of ``noise_sd_hu``, drawn plane by plane from the seed.

The result is float32 HU (no rounding, no clipping), so noise-free renders keep exact tissue
values; write it as int16 at the I/O boundary if a DICOM-like file is wanted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, ClassVar, Self

import numpy as np
from numpy.typing import NDArray
from pydantic import BeforeValidator, model_validator
from scipy.ndimage import gaussian_filter

from synthct.errors import SynthctError
from synthct.geometry import Geometry
from synthct.imaging.tissues import lookup_table
from synthct.phantom.model import (
    DEFAULT_MAX_SUBVOXELS,
    PhantomParameterError,
    TissueModel,
    average_tables,
    check_seed,
    rng_for,
)
from synthct.settings import SettingsBase
from synthct.volume import CTVolume

#: FWHM of a Gaussian over its standard deviation.
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))

# Random stream ids (see synthct.phantom.model.rng_for).
_STREAM_TEXTURE = 1
_STREAM_NOISE = 2


def _check_non_negative(name: str, value: float, unit: str) -> float:
    v = float(value)
    if not np.isfinite(v) or v < 0:
        raise PhantomParameterError(
            f"{name} must be a finite number >= 0 {unit}, got {value}", path=name
        )
    return v


def texture_field(
    geometry: Geometry, *, correlation_mm: float, seed: int = 0
) -> NDArray[np.float32]:
    """A zero-mean, unit-variance Gaussian random field on ``geometry`` (seeded).

    White noise smoothed by a Gaussian of standard deviation ``correlation_mm`` (converted to
    voxels along each axis), then scaled to unit sample variance.
    """
    if not np.isfinite(correlation_mm) or correlation_mm <= 0:
        raise PhantomParameterError(
            f"texture_correlation_mm must be > 0 mm, got {correlation_mm}",
            path="texture_correlation_mm",
        )
    field = _planewise_normal(geometry.shape, seed, _STREAM_TEXTURE)
    sigma_vox = [correlation_mm / s for s in geometry.spacing_mm]
    gaussian_filter(field, sigma_vox, output=field, mode="wrap")
    field -= np.float32(field.mean(dtype=np.float64))
    sd = float(field.std(dtype=np.float64))
    if sd > 0:
        field /= np.float32(sd)
    return field


def render_ct(
    model: TissueModel,
    geometry: Geometry,
    *,
    supersample: int | Sequence[int] = 3,
    noise_sd_hu: float = 12.0,
    blur_fwhm_mm: float = 0.7,
    texture: bool = True,
    texture_correlation_mm: float = 0.8,
    seed: int = 0,
    max_subvoxels: int = DEFAULT_MAX_SUBVOXELS,
) -> CTVolume:
    """Render the CT of ``model`` on ``geometry``, in HU.

    Parameters
    ----------
    model : TissueModel
        The phantom.
    geometry : Geometry
        Output grid.
    supersample : int or sequence of 3 int
        Sub-voxels per voxel edge for partial volume (1 samples voxel centres only).
    noise_sd_hu : float
        Standard deviation of the white Gaussian noise, HU (0: none; CT is ~10-20 HU).
    blur_fwhm_mm : float
        Full width at half maximum of the isotropic Gaussian point-spread function, mm
        (0: none).
    texture : bool
        Add each tissue's correlated texture (``ct_texture_sd_hu`` of the tissue table).
    texture_correlation_mm : float
        Standard deviation of the Gaussian that correlates the texture, mm.
    seed : int
        Seeds texture and noise; the same seed gives identical volumes.
    max_subvoxels : int
        Sub-voxels processed at once (bounds memory).

    Returns
    -------
    CTVolume
        float32 HU on ``geometry``. Noise-free, texture-free and unblurred, a voxel inside a
        homogeneous region holds its tissue's ``ct_hu`` exactly.
    """
    options = CTOptions(
        noise_sd_hu=noise_sd_hu,
        blur_fwhm_mm=blur_fwhm_mm,
        texture=texture,
        texture_correlation_mm=texture_correlation_mm,
        seed=seed,
    )
    averaged = average_tables(
        model, geometry, options.tables(), supersample=supersample, max_subvoxels=max_subvoxels
    )
    return options.finish(averaged, geometry)


class CTOptions(SettingsBase):
    """Validated CT rendering options (see :func:`render_ct`).

    Split into the per-tissue lookup tables averaged over sub-voxels and the steps applied
    afterwards, so that one sampling pass of a model can feed both CT and MRI
    (:func:`synthct.phantom.mri.render_ct_and_mri`).
    """

    invalid_error: ClassVar[type[SynthctError] | None] = PhantomParameterError
    settings_label: ClassVar[str] = "CT rendering options"

    noise_sd_hu: float = 12.0
    blur_fwhm_mm: float = 0.7
    texture: bool = True
    texture_correlation_mm: float = 0.8
    seed: Annotated[int, BeforeValidator(check_seed)] = 0

    @model_validator(mode="after")
    def _check(self) -> Self:
        _check_non_negative("noise_sd_hu", self.noise_sd_hu, "HU")
        _check_non_negative("blur_fwhm_mm", self.blur_fwhm_mm, "mm")
        c = float(self.texture_correlation_mm)
        if not np.isfinite(c) or c <= 0:
            raise PhantomParameterError(
                f"texture_correlation_mm must be > 0 mm, got {self.texture_correlation_mm}",
                path="texture_correlation_mm",
            )
        return self

    def tables(self) -> list[NDArray[np.generic]]:
        """Lookup tables to average: mean HU, then (with texture) the texture SD."""
        tables: list[NDArray[np.generic]] = [lookup_table("ct_hu").astype(np.float32)]
        if self.texture:
            tables.append(lookup_table("ct_texture_sd_hu").astype(np.float32))
        return tables

    def finish(self, averaged: Sequence[NDArray[np.generic]], geometry: Geometry) -> CTVolume:
        """Texture, blur and noise on the averaged tables; the CT volume."""
        hu = np.asarray(averaged[0], dtype=np.float32)
        if self.texture:
            field = texture_field(
                geometry, correlation_mm=self.texture_correlation_mm, seed=self.seed
            )
            field *= np.asarray(averaged[1], dtype=np.float32)
            hu += field
            del field
        if self.blur_fwhm_mm > 0:
            sigma_vox = [self.blur_fwhm_mm / FWHM_PER_SIGMA / s for s in geometry.spacing_mm]
            hu = gaussian_filter(hu, sigma_vox, mode="nearest")
        if self.noise_sd_hu > 0:
            sd = np.float32(self.noise_sd_hu)
            for i in range(hu.shape[0]):
                noise = rng_for(self.seed, _STREAM_NOISE, i).standard_normal(
                    hu.shape[1:], np.float32
                )
                hu[i] += sd * noise
        return CTVolume(hu, geometry.affine)


def _planewise_normal(shape: tuple[int, int, int], seed: int, stream: int) -> NDArray[np.float32]:
    out = np.empty(shape, dtype=np.float32)
    for i in range(shape[0]):
        out[i] = rng_for(seed, stream, i).standard_normal(shape[1:], dtype=np.float32)
    return out
