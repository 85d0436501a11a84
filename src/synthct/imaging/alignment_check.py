"""Is the sCT aligned with the CT? A check on the CT grid before any lesion is measured.

A misaligned sCT looks exactly like an sCT that misses a lesion: the ROI set on the CT falls
beside the lesion on the sCT. A validation must therefore measure alignment before it calls a
lesion missed. :func:`check_alignment` does, inside the body mask and the sCT's field of view:

* **Similarity at the given pose**: normalised cross-correlation (NCC, Pearson's r of the HU
  values, both clipped to ``[-1024, 3071]`` HU), bone Dice at ``bone_threshold_hu`` (250 HU by
  default; only when the CT holds at least ``min_bone_ml`` of bone there) and MAE.
* **A search of small shifts**: the NCC of the CT with the sCT translated by every whole
  voxel of a coarse grid (``search_grid_mm``, block means of the images) up to
  ``max_shift_mm`` along each axis, computed for all shifts at once by FFT cross-correlation
  (scipy.fft [1]_) with the CT region held fixed; the peak is refined to sub-voxel by a parabola
  through its neighbours along each axis. The best shift says where the sCT's anatomy lies
  relative to the CT's (LPS mm): ``sct(x + shift) ~ ct(x)``.

Decision (every threshold in :class:`AlignmentCheckSettings`): the check **fails** when

1. the best shift is longer than ``shift_tolerance_mm`` (or one voxel, when coarser) and
   improves the NCC by at least ``min_ncc_gain``: the sCT is shifted (e.g. a wrong origin);
2. or the NCC at the given pose is below ``min_ncc``: the images do not match at all (a
   mirrored array, a wrong spacing, another patient, a rotation);
3. or the bone Dice at the given pose is below ``min_bone_dice``.

Rule 1 and the mirror search are geometric evidence (:attr:`AlignmentCheck.displaced`) when
the shifted or mirrored sCT matches the CT (NCC at least ``min_ncc``); rules 2 and 3 alone
may also mean a poor sCT whose anatomy is where the CT's is (an early model's), which
``synthct evaluate --align shift`` measures instead of stopping.

The thresholds are loose on purpose: an sCT from a poor model, or one that omits a lesion,
still has its anatomy where the CT has it (the shipped demo's sCTs, body MAE 56-100 HU: NCC
0.63-0.90, bone Dice 0.84-0.97, best shift <= 0.1 mm); a misaligned one does not (a 9 mm header
shift: NCC -0.01 to 0.42, bone Dice 0.14-0.65, best shift 8.6-8.9 mm; a 1.25x spacing error:
NCC 0.09-0.15; mirrors are found by the mirror search, a nearly symmetric phantom mirrored left
to right keeps an NCC of 0.86).

References
----------
.. [1] P. Virtanen et al., "SciPy 1.0: fundamental algorithms for scientific computing in
   Python", Nature Methods 17, 2020 (``scipy.fft``).
.. [2] J. P. Lewis, "Fast normalized cross-correlation", Vision Interface, 1995 (NCC by FFT
   with running sums).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import ConfigDict, Field
from scipy.fft import irfftn, next_fast_len, rfftn
from scipy.ndimage import minimum_filter

from synthct.imaging.lesion_size import dice_coefficient
from synthct.settings import SettingsBase

__all__ = ["AlignmentCheck", "AlignmentCheckSettings", "check_alignment", "mae_and_ncc"]

#: HU range both images are clipped to before the NCC (the SynthRAD2025 range).
CLIP_HU = (-1024.0, 3071.0)
#: The figures at the given pose use every POSE_STRIDE-th voxel along each axis.
POSE_STRIDE = 2
#: The coarse search grid keeps at least this many voxels along each axis.
MIN_SEARCH_VOXELS = 16
#: The shift search compares only CT voxels whose shifted positions all hold sCT data, unless
#: fewer than this fraction of the mask's voxels are left.
MIN_KERNEL_FRACTION = 0.25


class AlignmentCheckSettings(SettingsBase):
    """Thresholds of the alignment check (immutable; recorded in ``settings.json``)."""

    model_config = ConfigDict(allow_inf_nan=False)

    max_shift_mm: float = Field(default=16.0, gt=0, description="shift search range per axis")
    search_grid_mm: float = Field(default=3.0, gt=0, description="coarse grid of the search")
    shift_tolerance_mm: float = Field(
        default=3.0, ge=0, description="a longer best shift (that improves the NCC) fails"
    )
    min_ncc_gain: float = Field(
        default=0.01, ge=0, description="NCC gain that makes a best shift or mirror significant"
    )
    min_ncc: float = Field(default=0.3, ge=-1, le=1, description="lower NCC at the pose fails")
    min_bone_dice: float = Field(default=0.3, ge=0, le=1, description="lower bone Dice fails")
    bone_threshold_hu: float = Field(default=250.0, description="bone: voxels >= this HU")
    min_bone_ml: float = Field(
        default=1.0, ge=0, description="less CT bone in the mask: no bone Dice criterion"
    )

    def rules(self) -> str:
        """The decision in words, with the values."""
        return (
            "inside the body mask and the sCT's field of view on the CT grid: NCC of HU clipped "
            f"to [{CLIP_HU[0]:g}, {CLIP_HU[1]:g}], bone Dice at {self.bone_threshold_hu:g} HU "
            f"(when the CT has >= {self.min_bone_ml:g} ml of bone there), and the shift of the "
            f"sCT (whole voxels of a ~{self.search_grid_mm:g} mm grid up to "
            f"{self.max_shift_mm:g} mm per axis, FFT cross-correlation, parabolic sub-voxel "
            "peak) that maximises the NCC; fails when the best shift exceeds "
            f"{self.shift_tolerance_mm:g} mm (or one voxel) and raises the NCC by >= "
            f"{self.min_ncc_gain:g}, when the NCC is < {self.min_ncc:g}, or when the bone Dice "
            f"is < {self.min_bone_dice:g}"
        )


@dataclass(frozen=True)
class AlignmentCheck:
    """The measured alignment of an sCT with its CT and the verdict.

    ``best_shift_lps_mm`` is where the sCT's anatomy lies relative to the CT's. ``reason`` is
    empty when the check passed. ``bone_dice`` is NaN when the CT has too little bone.
    """

    passed: bool
    reason: str
    ncc: float
    bone_dice: float
    mae_hu: float
    best_shift_lps_mm: tuple[float, float, float]
    ncc_at_best_shift: float
    n_voxels: int
    displaced: bool = False
    """Whether the check found a shift or a mirror (rule 1 or the mirror search) that brings
    the NCC to at least ``min_ncc``: geometric evidence, which a poor match alone (rules 2 and
    3, or a shift between two images that match nowhere) does not give."""

    @property
    def best_shift_mm(self) -> float:
        """Length of the best shift, in mm."""
        return float(np.linalg.norm(self.best_shift_lps_mm))

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-ready columns, prefixed ``alignment_``."""
        shift = self.best_shift_lps_mm
        return {
            "alignment_passed": self.passed,
            "alignment_reason": self.reason,
            "alignment_ncc": self.ncc,
            "alignment_bone_dice": self.bone_dice,
            "alignment_mae_hu": self.mae_hu,
            "alignment_best_shift_mm": self.best_shift_mm,
            "alignment_best_shift_l_mm": shift[0],
            "alignment_best_shift_p_mm": shift[1],
            "alignment_best_shift_s_mm": shift[2],
            "alignment_ncc_at_best_shift": self.ncc_at_best_shift,
        }

    def describe(self) -> str:
        """One line: why it failed, or the figures when it passed."""
        if not self.passed:
            return f"{self.reason} (MAE {self.mae_hu:.1f} HU)"
        l_mm, p_mm, s_mm = self.best_shift_lps_mm
        return (
            f"NCC {self.ncc:.3f}, bone Dice {self.bone_dice:.3f}, MAE {self.mae_hu:.1f} HU; "
            f"best shift {self.best_shift_mm:.1f} mm (L {l_mm:+.1f}, P {p_mm:+.1f}, "
            f"S {s_mm:+.1f} mm)"
        )


def mae_and_ncc(a: NDArray[Any], b: NDArray[Any]) -> tuple[float, float]:
    """Mean absolute difference and normalised cross-correlation (Pearson's r) of two samples.

    NaN for both when there is no value; the NCC is NaN when either sample is constant.
    """
    if a.size == 0:
        return math.nan, math.nan
    x, y = a.astype(np.float64, copy=False), b.astype(np.float64, copy=False)
    mae = float(np.mean(np.abs(y - x)))
    x0, y0 = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float(np.dot(x0, x0)) * float(np.dot(y0, y0)))
    return mae, float(np.dot(x0, y0)) / denominator if denominator > 0 else math.nan


def _block_mean(array: NDArray[Any], factors: tuple[int, ...]) -> NDArray[np.float64]:
    """Means of ``factors``-sized blocks (the array trimmed to whole blocks)."""
    shape = [n // f for n, f in zip(array.shape, factors, strict=True)]
    trimmed = array[tuple(slice(0, n * f) for n, f in zip(shape, factors, strict=True))]
    blocks = trimmed.reshape(shape[0], factors[0], shape[1], factors[1], shape[2], factors[2])
    means: NDArray[np.float64] = blocks.mean(axis=(1, 3, 5), dtype=np.float64)
    return means


def _window(array: NDArray[np.float64], box: tuple[slice, ...], radius: list[int]) -> Any:
    """``array[box]`` grown by ``radius`` voxels per side, air beyond the array."""
    pads, cut = [], []
    for s, r, n in zip(box, radius, array.shape, strict=True):
        lo, hi = int(s.start) - r, int(s.stop) + r
        pads.append((max(0, -lo), max(0, hi - n)))
        cut.append(slice(max(lo, 0), min(hi, n)))
    return np.pad(array[tuple(cut)], pads, constant_values=CLIP_HU[0])


@dataclass(frozen=True)
class _Search:
    """The coarse grid of the shift search: the CT inside the mask, fixed, as a kernel."""

    factors: tuple[int, int, int]
    radius: list[int]
    box: tuple[slice, ...]
    centred: NDArray[np.float64]
    weights: NDArray[np.float64]
    _kernels: tuple[list[int], NDArray[Any], NDArray[Any]] | None = None

    def ncc_map(self, sct: NDArray[np.float64]) -> NDArray[np.float64]:
        """NCC of the CT kernel with the coarse ``sct`` at every shift (index = shift + radius).

        Cross-correlations by FFT (the kernels' transforms are computed once); the sCT's sum
        and sum of squares under the mask give its mean and variance at every shift [2]_.
        """
        volume = _window(sct, self.box, self.radius)
        shape = [next_fast_len(n, real=True) for n in volume.shape]
        if self._kernels is None or self._kernels[0] != shape:
            flipped = (slice(None, None, -1),) * 3
            object.__setattr__(
                self,
                "_kernels",
                (
                    shape,
                    rfftn(self.centred[flipped], shape),
                    rfftn(self.weights[flipped], shape),
                ),
            )
        assert self._kernels is not None
        _, centred_f, weights_f = self._kernels
        valid = tuple(
            slice(k - 1, n) for k, n in zip(self.centred.shape, volume.shape, strict=True)
        )
        volume_f, squares_f = rfftn(volume, shape), rfftn(volume**2, shape)
        cross = irfftn(volume_f * centred_f, shape)[valid]
        sums = irfftn(volume_f * weights_f, shape)[valid]
        squares = irfftn(squares_f * weights_f, shape)[valid]
        n = float(self.weights.sum())
        variance = np.clip(squares - sums**2 / n, 0.0, None)
        denominator = np.sqrt(float(np.sum(self.centred**2)) * variance)
        out: NDArray[np.float64] = np.divide(
            cross, denominator, out=np.full_like(cross, -1.0), where=denominator > 1e-6
        )
        return out

    def best(self, ncc: NDArray[np.float64]) -> tuple[NDArray[np.float64], float]:
        """Best shift in voxels of the full grid (parabolic sub-voxel peak) and its NCC."""
        peak = np.unravel_index(int(np.argmax(ncc)), ncc.shape)
        refined = np.asarray(peak, dtype=np.float64)
        for axis in range(3):
            k = peak[axis]
            if 0 < k < ncc.shape[axis] - 1:
                lo, hi = list(peak), list(peak)
                lo[axis], hi[axis] = k - 1, k + 1
                y0, y1, y2 = float(ncc[tuple(lo)]), float(ncc[peak]), float(ncc[tuple(hi)])
                if y0 - 2 * y1 + y2 < 0:
                    step = 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)
                    refined[axis] += float(np.clip(step, -0.5, 0.5))
        shift = (refined - np.asarray(self.radius)) * np.asarray(self.factors)
        return shift, float(ncc[peak])

    def at_pose(self, ncc: NDArray[np.float64]) -> float:
        """NCC without a shift."""
        return float(ncc[tuple(self.radius)])


def _search_grid(
    ct: NDArray[Any],
    inside: NDArray[np.bool_],
    sct_fov: NDArray[np.bool_] | None,
    spacing_mm: NDArray[np.float64],
    s: AlignmentCheckSettings,
) -> _Search | None:
    """The coarse CT kernel: block means inside the mask's bounding box.

    The kernel keeps the mask's voxels whose every shifted position still has sCT data: at
    least the search radius away from the CT grid's faces and from the edge of the sCT's field
    of view (when that leaves too little, the whole mask is used).
    """
    factors = tuple(
        max(1, min(round(s.search_grid_mm / d), n // MIN_SEARCH_VOXELS))
        for d, n in zip(spacing_mm, ct.shape, strict=True)
    )
    radius = [
        max(1, math.ceil(s.max_shift_mm / (d * f)))
        for d, f in zip(spacing_mm, factors, strict=True)
    ]
    a = np.clip(_block_mean(ct, factors), *CLIP_HU)
    m = _block_mean(inside, factors) >= 0.5
    data = np.ones(m.shape, dtype=bool) if sct_fov is None else _block_mean(sct_fov, factors) > 0.99
    reachable = minimum_filter(data, size=[2 * r + 1 for r in radius], mode="constant", cval=0)
    if np.count_nonzero(m & reachable) >= MIN_KERNEL_FRACTION * np.count_nonzero(m):
        m = m & reachable
    found = np.nonzero(m)
    if found[0].size < 2:
        return None
    box = tuple(slice(int(f.min()), int(f.max()) + 1) for f in found)
    weights = m[box].astype(np.float64)
    centred = (a[box] - a[m].mean()) * weights
    return _Search((factors[0], factors[1], factors[2]), radius, box, centred, weights)


def _axis_name(affine: NDArray[np.float64], axis: int) -> str:
    direction = affine[:3, axis]
    return "LPS"[int(np.argmax(np.abs(direction)))]


#: Without contrast inside the body (NCC undefined), the largest MAE that still passes.
FLAT_MAX_MAE_HU = 100.0


def check_alignment(
    ct_hu: NDArray[Any],
    sct_hu: NDArray[Any],
    inside: NDArray[np.bool_],
    *,
    affine: NDArray[np.float64],
    sct_fov: NDArray[np.bool_] | None = None,
    settings: AlignmentCheckSettings | None = None,
) -> AlignmentCheck:
    """Measure the alignment of an sCT with its CT on the CT grid and decide.

    Parameters
    ----------
    ct_hu, sct_hu : (I, J, K) ndarray
        The CT and the sCT on the same grid, in HU.
    inside : (I, J, K) ndarray of bool
        Where to compare: the body mask within the sCT's field of view.
    affine : (4, 4) ndarray
        Voxel index to LPS mm of the grid (spacing and directions of the shift).
    sct_fov : (I, J, K) ndarray of bool, optional
        Where the CT grid lies inside the sCT's field of view (everywhere when omitted).
    settings : AlignmentCheckSettings, optional
        Thresholds; defaults when omitted.

    Returns
    -------
    AlignmentCheck
        Figures, best shift (LPS mm) and verdict; see the module notes for the rule.
    """
    s = settings or AlignmentCheckSettings()
    mask = np.asarray(inside, dtype=bool)
    a = np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(a[:3, :3], axis=0)
    sub = (slice(None, None, POSE_STRIDE),) * 3
    mask_sub = mask[sub]
    n_voxels = int(np.count_nonzero(mask_sub))
    kernel = _search_grid(np.asarray(ct_hu), mask, sct_fov, spacing, s)
    if n_voxels < 2 or kernel is None:
        return AlignmentCheck(
            False, "the sCT and the CT share no body voxel", math.nan, math.nan, math.nan,
            (0.0, 0.0, 0.0), math.nan, n_voxels,
        )  # fmt: skip
    ct_in = np.clip(np.asarray(ct_hu)[sub][mask_sub].astype(np.float64), *CLIP_HU)
    sct_in = np.clip(np.asarray(sct_hu)[sub][mask_sub].astype(np.float64), *CLIP_HU)
    mae, ncc = mae_and_ncc(ct_in, sct_in)
    bone_ct = ct_in >= s.bone_threshold_hu
    voxel_ml = float(abs(np.linalg.det(a[:3, :3]))) * POSE_STRIDE**3 / 1000.0
    bone_dice = (
        dice_coefficient(bone_ct, sct_in >= s.bone_threshold_hu)
        if np.count_nonzero(bone_ct) * voxel_ml >= s.min_bone_ml
        else math.nan
    )
    sct_array = np.asarray(sct_hu)
    coarse_sct = np.clip(_block_mean(sct_array, kernel.factors), *CLIP_HU)
    plain = kernel.ncc_map(coarse_sct)
    shift_voxels, ncc_best = kernel.best(plain)
    ncc_coarse = kernel.at_pose(plain)
    shift_lps = a[:3, :3] @ shift_voxels
    length = float(np.linalg.norm(shift_lps))
    reasons = []
    # Geometric evidence needs a match to move to: an sCT that matches the CT nowhere (an
    # untrained model's) also peaks somewhere, below min_ncc.
    displaced = False
    if length > max(s.shift_tolerance_mm, float(spacing.max())) and (
        ncc_best - ncc_coarse >= s.min_ncc_gain
    ):
        displaced = ncc_best >= s.min_ncc
        l_mm, p_mm, s_mm = shift_lps
        reasons.append(
            f"the sCT appears shifted by {length:.1f} mm (L {l_mm:+.1f}, P {p_mm:+.1f}, "
            f"S {s_mm:+.1f} mm) relative to the CT: shifted back, its NCC with the CT rises "
            f"from {ncc_coarse:.3f} to {ncc_best:.3f}"
        )
    for axis in range(3):
        flipped = np.clip(_block_mean(np.flip(sct_array, axis), kernel.factors), *CLIP_HU)
        mirrored = kernel.best(kernel.ncc_map(flipped))[1]
        if mirrored - ncc_best >= s.min_ncc_gain:
            displaced = displaced or mirrored >= s.min_ncc
            reasons.append(
                f"the sCT looks mirrored along array axis {axis} (the "
                f"{_axis_name(a, axis)} direction): flipped, its NCC with the CT rises from "
                f"{ncc_best:.3f} to {mirrored:.3f}"
            )
    if math.isnan(ncc):
        shift_lps = np.full(3, math.nan)  # no correlation peak to report
        # No contrast inside the body (a uniform phantom, an empty sCT): correlation cannot
        # measure alignment, so only a gross HU disagreement can be told.
        if not mae <= FLAT_MAX_MAE_HU:
            reasons.append(
                f"the images have no contrast inside the body to align by, and their MAE "
                f"{mae:.1f} HU exceeds {FLAT_MAX_MAE_HU:g} HU"
            )
    elif not ncc >= s.min_ncc:
        reasons.append(
            f"NCC {ncc:.3f} < {s.min_ncc:g}: the images do not match (mirrored, rotated, wrong "
            "spacing or another patient?)"
        )
    if bone_dice < s.min_bone_dice:
        reasons.append(
            f"bone Dice {bone_dice:.3f} < {s.min_bone_dice:g} at {s.bone_threshold_hu:g} HU"
        )
    return AlignmentCheck(
        passed=not reasons,
        reason="; ".join(reasons),
        displaced=displaced,
        ncc=ncc,
        bone_dice=bone_dice,
        mae_hu=mae,
        best_shift_lps_mm=(float(shift_lps[0]), float(shift_lps[1]), float(shift_lps[2])),
        ncc_at_best_shift=ncc_best,
        n_voxels=n_voxels,
    )
