"""Domain-randomised MRI of a tissue label map: a new random contrast on every draw.

SynthSeg and SynthSR (Billot et al., "SynthSeg: Segmentation of brain MRI scans of any contrast
and resolution without retraining", Medical Image Analysis 86:102789, 2023; Iglesias et al.,
"SynthSR: A public AI tool to turn heterogeneous clinical brain scans into high-resolution
T1-weighted images for 3D morphometry", Science Advances 9:eadd3607, 2023) train networks that
do not depend on the MR contrast by never showing them a real one: each training image is drawn
from a label map with a random Gaussian mixture (one mean and SD per label and channel), then
corrupted by a random bias field, a random acquisition resolution, a random gamma and noise,
and normalised. :func:`randomised_mr` follows that generative model, in this order:

1. **Gaussian mixture**: per label and channel a mean ~ U(``mean_range``) and an SD ~
   U(0, ``sd_max``) (SynthSeg: U(0, 225) and U(0, 35) on a 0-255 scale, i.e. SD up to ~0.14).
   Dark tissues (air, cortical bone, calcification, lung or gas when the tissue table has them)
   are drawn dark with probability ``p_dark`` (they are dark on every common clinical sequence),
   and with probability ``p_merge_dark`` share one mean: the network must then tell air from
   bone by context, as in real scans. Air outside the body (the label ``BACKGROUND_LABEL``,
   see :func:`label_background`) is always dark, so body masks behave as on real scans.
   With ``marrow_from_fat`` the marrow labels (bins of fat fraction) are one marrow: a mix of a
   red-marrow mean and the fat mean by their fat fraction. With probability ``p_physics`` a
   channel's tissue means come instead from a random gradient-echo protocol of a random subject
   (:mod:`synthct.phantom.physics_contrast`: the contrasts scanners make).
2. **Bias field**: ``exp`` of a ``bias_grid``^3 Gaussian grid with SD ~ U(0, ``bias_sd_max``),
   upsampled (SynthSeg's default grid is 4^3 with SD up to 0.5).
3. **Resolution**: one random axis gets a slice thickness up to ``max_resolution_factor`` times
   the voxel size, the others up to a third of that excess; Gaussian blur with
   sigma = 0.75 x factor voxels (SynthSeg's ``blurring_sigma_for_downsampling``), down-sampling,
   acquisition noise (SD ~ U(0, ``noise_sd_max``) of the 99.9th percentile, magnitude taken),
   and linear up-sampling back to the grid.
4. **Gamma**: the image scaled to [0, 1] (clipped at its 99.9th percentile) is raised to
   ``exp(N(0, gamma_sd))`` (SynthSeg: SD 0.5 of the log-gamma).
5. **Normalisation**: min-max to [0, 1].

Everything is drawn from the ``rng`` argument in a fixed order, so one generator state gives
one image.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from synthct.errors import SynthctError
from synthct.geometry import Geometry
from synthct.imaging.labels import Tissue
from synthct.phantom.physics_contrast import GradientEchoRanges, couple_marrow, physics_means

__all__ = [
    "BACKGROUND_LABEL",
    "DARK_TISSUES",
    "ContrastDraw",
    "ContrastRandomisation",
    "draw_contrast",
    "label_background",
    "randomised_mr",
    "resize_linear",
]

#: Pseudo-label of the air outside the body (not a :class:`Tissue`: air that touches the edge of
#: the field of view), always drawn dark.
BACKGROUND_LABEL = 255

_DARK_NAMES = ("AIR", "CORTICAL_BONE", "CALCIFICATION", "LUNG", "BOWEL_GAS", "GAS")
#: Tissues without MR signal on common sequences (short T2* or no protons): the classes that
#: may be merged. Names the tissue table does not define are skipped.
DARK_TISSUES: tuple[int, ...] = tuple(
    int(Tissue[name]) for name in _DARK_NAMES if name in Tissue.__members__
)

#: Quantile the intensity is clipped at before the gamma and normalisation (robust maximum).
_TOP_QUANTILE = 99.9
#: SynthSeg's blur for a down-sampling factor f: sigma = 0.75 f voxels (Billot et al. 2023).
_BLUR_PER_FACTOR = 0.75


@dataclass(frozen=True)
class ContrastRandomisation:
    """Ranges of the random draws of :func:`randomised_mr` (defaults after SynthSeg).

    Intensities are in units of the final [0, 1] range. Set a range to zero to switch a step
    off (``bias_sd_max=0``, ``max_resolution_factor=1``, ``gamma_sd=0``, ``noise_sd_max=0``).
    """

    mean_range: tuple[float, float] = (0.0, 1.0)
    sd_max: float = 0.1
    dark_mean_max: float = 0.12
    p_dark: float = 0.75
    p_merge_dark: float = 0.5
    background_mean_max: float = 0.05
    bias_sd_max: float = 0.4
    bias_grid: int = 4
    max_resolution_factor: float = 3.0
    noise_sd_max: float = 0.04
    gamma_sd: float = 0.4
    #: Tie the marrow labels to a mix of red marrow and fat by their fat fraction
    #: (:func:`~synthct.phantom.physics_contrast.couple_marrow`).
    marrow_from_fat: bool = False
    #: Probability that a channel's means come from a random gradient-echo protocol
    #: (:func:`~synthct.phantom.physics_contrast.physics_means`) instead of the mixture.
    p_physics: float = 0.0
    #: Protocol ranges of the physics-driven draws.
    gradient_echo: GradientEchoRanges = field(default_factory=GradientEchoRanges)

    def __post_init__(self) -> None:
        lo, hi = self.mean_range
        checks = {
            "mean_range": 0.0 <= lo <= hi,
            "sd_max": self.sd_max >= 0,
            "dark_mean_max": self.dark_mean_max >= 0,
            "p_dark": 0.0 <= self.p_dark <= 1.0,
            "p_merge_dark": 0.0 <= self.p_merge_dark <= 1.0,
            "background_mean_max": self.background_mean_max >= 0,
            "bias_sd_max": self.bias_sd_max >= 0,
            "bias_grid": self.bias_grid >= 2,
            "max_resolution_factor": self.max_resolution_factor >= 1.0,
            "noise_sd_max": self.noise_sd_max >= 0,
            "gamma_sd": self.gamma_sd >= 0,
            "p_physics": 0.0 <= self.p_physics <= 1.0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise SynthctError(
                f"invalid contrast randomisation settings: {', '.join(bad)}",
                path="ContrastRandomisation",
                fix="ranges must be non-negative (mean_range low <= high), probabilities in "
                "[0, 1], bias_grid >= 2 and max_resolution_factor >= 1",
            )


@dataclass(frozen=True)
class ContrastDraw:
    """One random Gaussian mixture: the mean and SD of every label in every channel.

    ``labels`` lists the label values; ``means_`` and ``sds_`` are ``[label, channel]`` in the
    units of the unnormalised image (before bias, gamma and normalisation).
    """

    labels: NDArray[np.int64]
    means: NDArray[np.float64]
    sds: NDArray[np.float64]
    merged_dark: bool


def label_background(
    labels: NDArray[np.integer], *, air: int = int(Tissue.AIR)
) -> NDArray[np.uint8]:
    """The label map with the air outside the body relabelled :data:`BACKGROUND_LABEL`.

    Outside air is every air component that touches the edge of the array; enclosed air (lung,
    bowel gas) keeps its label.

    Parameters
    ----------
    labels : (I, J, K) ndarray of int
        Tissue labels (:class:`~synthct.imaging.labels.Tissue` values, below 255).
    air : int
        The air label.

    Returns
    -------
    (I, J, K) ndarray of uint8
    """
    data = np.asarray(labels)
    if data.ndim != 3 or (data.size and (data.min() < 0 or data.max() >= BACKGROUND_LABEL)):
        raise SynthctError(
            f"a tissue label map must be 3D with labels 0..254, got shape {data.shape}",
            path="labels",
            fix="pass a tissue label map (synthct.imaging.labels.Tissue values)",
        )
    out = data.astype(np.uint8)
    components, _ = ndimage.label(data == air)
    edge = np.concatenate(
        [np.take(components, i, axis=a).ravel() for a in range(3) for i in (0, -1)]
    )
    touching = np.unique(edge[edge > 0])
    out[np.isin(components, touching)] = BACKGROUND_LABEL
    return out


def draw_contrast(
    labels: Sequence[int],
    rng: np.random.Generator,
    *,
    n_channels: int = 1,
    settings: ContrastRandomisation | None = None,
    dark_labels: Collection[int] = DARK_TISSUES,
) -> ContrastDraw:
    """Draw the Gaussian mixture of :func:`randomised_mr` (step 1 of the module docstring)."""
    s = settings or ContrastRandomisation()
    values = np.asarray(sorted({int(v) for v in labels}), dtype=np.int64)
    n = values.size
    means = rng.uniform(s.mean_range[0], s.mean_range[1], size=(n, n_channels))
    sds = rng.uniform(0.0, s.sd_max, size=(n, n_channels))
    dark = np.isin(values, np.asarray(sorted(dark_labels), dtype=np.int64))
    draw_dark = rng.random(n_channels) < s.p_dark
    merge = bool(rng.random() < s.p_merge_dark)
    dark_means = rng.uniform(0.0, s.dark_mean_max, size=(n, n_channels))
    if merge:
        dark_means[:] = dark_means[0]
    shared_sd = rng.uniform(0.0, s.sd_max, size=n_channels)
    for c in range(n_channels):
        if draw_dark[c]:
            means[dark, c] = dark_means[dark, c]
        if merge:  # one class: same mean and the same texture
            if not draw_dark[c] and dark.any():
                means[dark, c] = means[np.flatnonzero(dark)[0], c]
            sds[dark, c] = shared_sd[c]
    if s.marrow_from_fat:
        couple_marrow(values, means, rng.uniform(s.mean_range[0], s.mean_range[1], n_channels))
    for c in range(n_channels):
        if s.p_physics > 0 and rng.random() < s.p_physics:
            physical, known = physics_means(values.tolist(), rng, s.gradient_echo)
            means[known, c] = physical[known]
    background = values == BACKGROUND_LABEL
    means[background] = rng.uniform(
        0.0, s.background_mean_max, size=(int(background.sum()), n_channels)
    )
    sds[background] = np.minimum(sds[background], s.background_mean_max / 2)
    return ContrastDraw(values, means, sds, merge)


def _interpolation_matrix(n_out: int, n_in: int) -> NDArray[np.float32]:
    """Linear interpolation weights ``[n_out, n_in]`` with the end points aligned."""
    if n_in == 1:
        return np.ones((n_out, 1), dtype=np.float32)
    x = np.linspace(0.0, n_in - 1.0, n_out)
    lo = np.minimum(np.floor(x).astype(np.int64), n_in - 2)
    w = (x - lo).astype(np.float32)
    matrix = np.zeros((n_out, n_in), dtype=np.float32)
    matrix[np.arange(n_out), lo] = 1.0 - w
    matrix[np.arange(n_out), lo + 1] = w
    return matrix


def resize_linear(array: NDArray[np.floating], shape: Sequence[int]) -> NDArray[np.float32]:
    """Separable linear resize of a 3D array to ``shape`` (corners aligned), as matrix products.

    Much faster than :func:`scipy.ndimage.zoom` for the small grids of smooth random fields.
    """
    out = np.asarray(array, dtype=np.float32)
    for axis, n in enumerate(shape):
        matrix = _interpolation_matrix(int(n), out.shape[axis])
        out = np.moveaxis(np.tensordot(matrix, out, axes=([1], [axis])), 0, axis)
    return np.ascontiguousarray(out)


def _bias_field(
    shape: tuple[int, int, int], rng: np.random.Generator, s: ContrastRandomisation
) -> NDArray[np.float32]:
    sd = rng.uniform(0.0, s.bias_sd_max)
    coarse = rng.normal(0.0, sd, size=(s.bias_grid,) * 3)
    return np.exp(resize_linear(coarse, shape))


def _resolution_factors(rng: np.random.Generator, s: ContrastRandomisation) -> NDArray[np.float64]:
    excess = s.max_resolution_factor - 1.0
    factors = 1.0 + rng.uniform(0.0, excess / 3.0, size=3)
    factors[int(rng.integers(3))] = 1.0 + rng.uniform(0.0, excess)
    return factors


def _acquire(
    image: NDArray[np.float32],
    factors: NDArray[np.float64],
    noise_sd: float,
    rng: np.random.Generator,
) -> NDArray[np.float32]:
    """Blur, down-sample, add noise (magnitude) and up-sample back to the grid."""
    shape = image.shape
    sigma = [_BLUR_PER_FACTOR * f if f > 1.05 else 0.0 for f in factors]
    if any(sigma):
        image = ndimage.gaussian_filter(image, sigma, mode="nearest")
    low = tuple(
        max(2, round(n / f)) if f > 1.05 else n for n, f in zip(shape, factors, strict=True)
    )
    if low != shape:
        image = resize_linear(image, low)
    if noise_sd > 0:
        noise = rng.normal(0.0, noise_sd, size=image.shape).astype(np.float32)
        image = np.abs(image + noise)
    if image.shape != shape:
        image = resize_linear(image, shape)
    return image.astype(np.float32, copy=False)


def _unit_range(image: NDArray[np.float32]) -> NDArray[np.float32]:
    lo = float(image.min())
    hi = float(np.percentile(image, _TOP_QUANTILE))
    if not hi > lo:
        return np.zeros_like(image)
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def randomised_mr(
    labels: NDArray[np.integer],
    geometry: Geometry,
    rng: np.random.Generator,
    n_channels: int = 1,
    *,
    settings: ContrastRandomisation | None = None,
    dark_labels: Collection[int] = DARK_TISSUES,
) -> NDArray[np.float32]:
    """A domain-randomised MR image of a label map (generative model in the module docstring).

    Parameters
    ----------
    labels : (I, J, K) ndarray of int
        Tissue labels; :data:`BACKGROUND_LABEL` marks air outside the body
        (:func:`label_background`), which is always dark.
    geometry : Geometry
        The grid of ``labels`` (its shape must match).
    rng : numpy.random.Generator
        The only source of randomness: the same generator state gives the same image.
    n_channels : int
        Independent random contrasts of the same anatomy (channels of the output).
    settings : ContrastRandomisation, optional
        Ranges of the draws; SynthSeg-like defaults.
    dark_labels : collection of int
        Labels drawn dark (probability ``settings.p_dark``) and sometimes merged.

    Returns
    -------
    (n_channels, I, J, K) ndarray of float32
        Finite, each channel normalised to [0, 1].

    References
    ----------
    Billot B et al., Medical Image Analysis 86:102789, 2023 (SynthSeg); Iglesias JE et al.,
    Science Advances 9:eadd3607, 2023 (SynthSR).
    """
    s = settings or ContrastRandomisation()
    data = np.asarray(labels)
    if data.shape != tuple(geometry.shape):
        raise SynthctError(
            f"labels of shape {data.shape} do not match the grid {geometry.shape}",
            path="labels",
            fix="pass the geometry of the label map",
        )
    if n_channels < 1:
        raise SynthctError(f"n_channels must be >= 1, got {n_channels}", path="n_channels")
    present, index = np.unique(data, return_inverse=True)
    index = index.reshape(data.shape)
    draw = draw_contrast(
        present.tolist(), rng, n_channels=n_channels, settings=s, dark_labels=dark_labels
    )
    out = np.empty((n_channels, *data.shape), dtype=np.float32)
    for c in range(n_channels):
        mean = draw.means[:, c].astype(np.float32)[index]
        texture = draw.sds[:, c].astype(np.float32)[index]
        image = mean + texture * rng.standard_normal(data.shape, dtype=np.float32)
        if s.bias_sd_max > 0:
            image *= _bias_field(data.shape, rng, s)
        factors = _resolution_factors(rng, s)
        top = float(np.percentile(image, _TOP_QUANTILE))
        noise_sd = rng.uniform(0.0, s.noise_sd_max) * max(top, 0.0)
        image = _acquire(np.maximum(image, 0.0), factors, noise_sd, rng)
        image = _unit_range(image)
        if s.gamma_sd > 0:
            image = image ** np.float32(np.exp(rng.normal(0.0, s.gamma_sd)))
        out[c] = _unit_range(image)
    return out
