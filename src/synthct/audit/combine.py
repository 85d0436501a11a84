"""Combining the signals into one flag map: calibration, thresholds and the rule.

The rule
--------
1. **Standardise** each signal ``s`` against lesion-free volumes:
   ``z_s = (value - centre_s) / scale_s``. The MRI consistency scores (physics and learned)
   are standardised residuals by construction (centre 0, scale 1) and are used two-sided
   (``|z|``: darker and brighter than the sCT allows both count). Novelty and epistemic SD
   are one-sided, with the median and robust SD (1.4826 MAD) of their values inside the body
   of lesion-free calibration volumes as centre and scale.
2. **Threshold** each signal at ``t_s`` for at most ``target / n`` flagged regions per
   lesion-free volume (``n`` signals in the rule; a region is a 26-connected component of
   ``z_s >= t_s`` of at least ``min_region_volume_mm3``): the larger of the smallest such
   value on held-out lesion-free volumes and a Gumbel extrapolation of their largest region
   scores (:func:`choose_threshold`; a few volumes alone underestimate the tail), and never
   below the reference disagreement's smallest meaningful shortfall
   (:attr:`~synthct.audit.reference.ReferenceSettings.min_threshold`). A signal outside the
   rule gets the whole target.
3. **Combine by maximum** over the signals in the rule: ``flag_score = max_s z_s / t_s``; a
   voxel is flagged where ``flag_score >= 1`` (any of them above its threshold). By the union
   bound the combination keeps at most ``target`` false flags per lesion-free volume on the
   calibration data.

Which signals are in the rule is part of the calibration (``in_rule``). The default,
:data:`DEFAULT_RULE`, is the physics MRI consistency signal plus, when a reference model is
given, the reference disagreement (:mod:`synthct.audit.reference`; it is computed only then).
Consistency carries every detection of the paper's failure sCT (lesion rendered as CSF,
``benchmarks/audit.py``). The reference carries the result on a learned product-like sCT that
renders the tumours as soft tissue: with the shipped product-like model (weights 2ee1d3a0...)
on the 90 held-out phantoms of ``benchmarks/audit.py --synthesis-model product_like --rule
consistency,reference --reference-model lesion_aware --eval-cases 90`` (thresholds from 12
lesion-free sCTs of that model: consistency 8.94, reference 1.0, the smallest shortfall
flagged), **14/14** target lesions (calcified, omitted, >= 5 mm; 131-434 HU on CT) are flagged
at 0.07 false flags per lesion-free volume (40 volumes; all from consistency). The reference
alone: 14/14 at 0.00, lesion-level AUC 0.999; the lowest target scored 1.8 times its threshold
(a 131 HU tumour of 5 mm), the highest lesion-free background 0.64. The reference settings
(:mod:`synthct.audit.reference`) were chosen on the first 52 cases; the other 38 (6 targets,
18 lesion-free volumes) gave 6/6 at 0.11. Physics consistency alone: 0/14, lesion-level AUC
0.01; input novelty 0/14 (AUC 0.07: an omitted calcified tumour is less unusual than the
most unusual normal anatomy of a clean volume); MC-dropout SD of the audited model flags
14/14 only at 42 false flags per volume (lesion-level AUC 0.51: the model is as unsure of the
tumours as of normal anatomy, so its variance does not single out what it omits). They are
still computed, written and reported. When no signal of the rule is available (no protocol
for the physics), the available ones flag.

The learned consistency signal (:mod:`synthct.audit.learned_consistency`) is not in the
default rule either, because it did not earn a place: on the same 90 held-out cases (trained
on 12 lesion-free pairs of MRI and the product-like sCT), it flags 0/14 targets, with 0.40
false flags per lesion-free volume and a lesion-level AUC of 0.02 (voxel-level 0.92: the
lesion is abnormal, but less so than the worst normal region). The product-like model renders
omitted tumours as 30-130 HU soft tissue whose MRI is close to what such tissue shows. Put
it in the rule of an audit model trained for one synthesis model with ``synthct audit-train
--synthesis-model M --learned-consistency --rule consistency,learned_consistency`` when that
model's own measurements support it.

Without a calibration (:data:`DEFAULT_CALIBRATION`), consistency uses a fixed threshold of
:data:`DEFAULT_CONSISTENCY_THRESHOLD` standardised units, and novelty and epistemic SD are
standardised against the audited volume itself (its own body median and robust SD) with a
threshold of :data:`DEFAULT_SELF_THRESHOLD`; the report says so. The fixed 6 comes from
development phantoms at 0.8 mm (the paper's protocol is 0.74 x 0.74 x 0.9 mm): the largest
region score of 28 lesion-free volumes was 4.1, omitted calcified meningiomas of 4-8 mm
scored 6.4-9.2. On coarser grids (1.5 mm) normal anatomy reaches 8: calibrate there
(``synthct audit-train``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from synthct.audit.errors import AuditModelError
from synthct.io.atomic import write_json_atomic

#: The signals, in report order.
SIGNALS: tuple[str, ...] = (
    "consistency",
    "learned_consistency",
    "reference",
    "novelty",
    "epistemic",
)
#: Signals flagged on both tails (|z|).
TWO_SIDED = frozenset({"consistency", "learned_consistency"})
#: Signals that are standardised by construction (centre 0, scale 1).
STANDARDISED = TWO_SIDED | {"reference"}
#: File name of the calibration inside an audit model folder.
CALIBRATION_FILE = "calibration.json"
#: Fixed threshold of the consistency score without calibration (standardised units).
DEFAULT_CONSISTENCY_THRESHOLD = 6.0
#: Fixed threshold of the learned consistency score without calibration (its score is about
#: 1 in normal tissue: a local root mean square of standardised residuals).
DEFAULT_LEARNED_THRESHOLD = 6.0
#: Fixed threshold of the reference disagreement without calibration (reference SDs: 75 HU
#: of shortfall at the 50 HU floor). With the default settings
#: (:class:`~synthct.audit.reference.ReferenceSettings`) the largest region score of 22
#: lesion-free development volumes (product-like sCT against the shipped lesion-aware
#: reference, 0.8 mm) was 0.64; omitted calcified tumours >= 5 mm scored 1.8-4.7.
DEFAULT_REFERENCE_THRESHOLD = 1.5
#: Threshold of self-standardised signals without calibration (robust SDs).
DEFAULT_SELF_THRESHOLD = 10.0
#: Smallest flagged region kept, mm^3.
DEFAULT_MIN_REGION_VOLUME_MM3 = 8.0
#: Target false flags per lesion-free volume of the whole combination.
DEFAULT_TARGET_FALSE_FLAGS = 0.1
#: Flagged components at most this far apart (mm) are one region, one finding to review: the
#: size of the lesions the audit is for (the paper's calcified meningiomas measured 11.6 x 19.6
#: mm; targets are >= 5 mm). Chosen in session 19 after the demo: its 5 tumour flags had 6
#: fragments 2-14 mm from them, which the reference model's picture of each tumour leaves
#: around it (README, "Shipped models"). Calibrations written before it have none (0).
DEFAULT_MERGE_GAP_MM = 10.0
#: Signals in the flag rule by default (see the module docstring for the evidence); the
#: reference disagreement counts only when a reference model is given.
DEFAULT_RULE: tuple[str, ...] = ("consistency", "reference")

_STRUCTURE = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True)
class SignalCalibration:
    """How one signal is standardised and thresholded.

    Attributes
    ----------
    centre, scale : float or None
        ``z = (value - centre) / scale``; ``None`` means the audited volume's own body median
        and robust SD (self-standardisation).
    threshold : float
        Flag threshold on ``z`` (on ``|z|`` for two-sided signals).
    source : str
        Where the numbers come from.
    in_rule : bool
        Whether the signal flags regions; a signal out of the rule is computed, written and
        reported (its ``z / t`` in every region) but does not flag on its own.
    """

    centre: float | None
    scale: float | None
    threshold: float
    source: str = "default"
    in_rule: bool = True

    def standardise(
        self, name: str, values: NDArray[Any], body: NDArray[np.bool_]
    ) -> NDArray[np.float32]:
        """``z`` of ``values`` (``|z|`` for two-sided signals), 0 outside ``body``."""
        v = np.asarray(values, dtype=np.float32)
        centre, scale = self.centre, self.scale
        if centre is None or scale is None:
            centre, scale = robust_centre_scale(v[body])
        z = (v - np.float32(centre)) / np.float32(max(scale, 1e-12))
        if name in TWO_SIDED:
            z = np.abs(z)
        return np.where(body, z, 0).astype(np.float32)


@dataclass(frozen=True)
class AuditCalibration:
    """Per-signal calibration plus the region rule (see the module docstring).

    Attributes
    ----------
    signals : dict of str to SignalCalibration
        One entry per signal that has a calibration.
    min_region_volume_mm3 : float
        Smallest flagged region.
    target_false_flags_per_volume : float
        The target the thresholds were chosen for.
    merge_gap_mm : float
        Flagged components at most this far apart are one region (0: none merged). The
        thresholds are chosen on unmerged components, so merging only removes flags.
    info : dict
        Provenance (volumes, achieved false-flag rates).
    """

    signals: dict[str, SignalCalibration]
    min_region_volume_mm3: float = DEFAULT_MIN_REGION_VOLUME_MM3
    target_false_flags_per_volume: float = DEFAULT_TARGET_FALSE_FLAGS
    merge_gap_mm: float = DEFAULT_MERGE_GAP_MM
    info: dict[str, Any] = field(default_factory=dict)

    def for_signal(self, name: str) -> SignalCalibration:
        """The calibration of ``name``, or the default (self-standardised) one."""
        if name in self.signals:
            return self.signals[name]
        return DEFAULT_CALIBRATION.signals[name]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the rule is stated in it)."""
        return {
            "rule": "flag_score = max over the signals in the rule (in_rule) of z_s / threshold_s; "
            "flagged where >= 1; "
            "z = (value - centre) / scale (|z| for consistency); centre/scale null = the "
            "audited volume's own body median and 1.4826 MAD; regions are 26-connected "
            "components of at least min_region_volume_mm3, those at most merge_gap_mm apart "
            "joined into one",
            "signals": {k: asdict(v) for k, v in self.signals.items()},
            "min_region_volume_mm3": self.min_region_volume_mm3,
            "target_false_flags_per_volume": self.target_false_flags_per_volume,
            "merge_gap_mm": self.merge_gap_mm,
            "info": self.info,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write as JSON (atomic)."""
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "calibration") -> AuditCalibration:
        """Read the form written by :meth:`to_dict`."""
        try:
            signals = {
                str(k): SignalCalibration(
                    centre=None if v["centre"] is None else float(v["centre"]),
                    scale=None if v["scale"] is None else float(v["scale"]),
                    threshold=float(v["threshold"]),
                    source=str(v.get("source", "")),
                    in_rule=bool(v.get("in_rule", True)),
                )
                for k, v in dict(data["signals"]).items()
            }
            unknown = sorted(set(signals) - set(SIGNALS))
            if unknown:
                raise ValueError(f"unknown signals {unknown}")
            return cls(
                signals=signals,
                min_region_volume_mm3=float(data["min_region_volume_mm3"]),
                target_false_flags_per_volume=float(data["target_false_flags_per_volume"]),
                # calibrations written before merging existed flag every component apart
                merge_gap_mm=float(data.get("merge_gap_mm", 0.0)),
                info=dict(data.get("info", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AuditModelError(
                f"not an audit calibration ({exc})",
                path=where,
                fix="use the calibration.json written by `synthct audit-train`",
            ) from None


def load_calibration(path: str | os.PathLike[str]) -> AuditCalibration:
    """Read ``calibration.json`` (a file, or a folder holding it)."""
    p = Path(path)
    if p.is_dir():
        p = p / CALIBRATION_FILE
    if not p.is_file():
        raise AuditModelError(
            "no audit calibration here",
            path=p,
            fix="train one with `synthct audit-train`, or leave it out to use the defaults",
        )
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise AuditModelError(f"malformed JSON ({exc})", path=p) from None
    return AuditCalibration.from_dict(data, where=str(p))


#: Used when no calibration is given (see the module docstring).
DEFAULT_CALIBRATION = AuditCalibration(
    signals={
        "consistency": SignalCalibration(0.0, 1.0, DEFAULT_CONSISTENCY_THRESHOLD, "default"),
        "learned_consistency": SignalCalibration(
            0.0, 1.0, DEFAULT_LEARNED_THRESHOLD, "default", in_rule=False
        ),
        "reference": SignalCalibration(0.0, 1.0, DEFAULT_REFERENCE_THRESHOLD, "default"),
        "novelty": SignalCalibration(
            None, None, DEFAULT_SELF_THRESHOLD, "self-standardised", in_rule=False
        ),
        "epistemic": SignalCalibration(
            None, None, DEFAULT_SELF_THRESHOLD, "self-standardised", in_rule=False
        ),
    },
    info={"note": "defaults: not calibrated on lesion-free data"},
)


def robust_centre_scale(values: NDArray[Any]) -> tuple[float, float]:
    """Median and 1.4826 x MAD of ``values`` (scale at least 1e-6 of the median's size)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return 0.0, 1.0
    centre = float(np.median(v))
    scale = 1.4826 * float(np.median(np.abs(v - centre)))
    if scale <= 0:
        scale = float(np.std(v)) or max(abs(centre) * 1e-6, 1e-12)
    return centre, scale


def rule_signals(names: Sequence[str], calibration: AuditCalibration) -> list[str]:
    """The signals among ``names`` that flag: those in the rule, or all when none of them is."""
    chosen = [n for n in names if calibration.for_signal(n).in_rule]
    return chosen or list(names)


def flag_score(
    z_maps: Mapping[str, NDArray[np.float32]], calibration: AuditCalibration
) -> tuple[NDArray[np.float32], dict[str, NDArray[np.float32]]]:
    """``max_s z_s / t_s`` over the rule's signals, and every signal's ratio ``z_s / t_s``."""
    ratios = {
        name: (z / np.float32(calibration.for_signal(name).threshold)).astype(np.float32)
        for name, z in z_maps.items()
    }
    if not ratios:
        raise AuditModelError("no signal to combine", fix="give an sCT with its MRI")
    flagging = rule_signals(list(ratios), calibration)
    score = np.maximum.reduce([ratios[n] for n in flagging])
    return score.astype(np.float32), ratios


def count_regions(mask: NDArray[np.bool_], min_voxels: int) -> int:
    """Number of 26-connected components of ``mask`` with at least ``min_voxels`` voxels."""
    labels, n = ndimage.label(mask, structure=_STRUCTURE)
    if n == 0:
        return 0
    sizes = np.bincount(labels.ravel())[1:]
    return int(np.count_nonzero(sizes >= min_voxels))


def region_peak(values: NDArray[Any], min_voxels: int, *, iterations: int = 30) -> float:
    """The highest threshold at which ``values`` still holds a region of ``min_voxels`` voxels.

    The score of a volume's most conspicuous region: thresholding at any value below it flags
    at least one region. Found by bisection (to ``max / 2**iterations``); 0 when no region of
    that size exists above 0.
    """
    top = float(np.max(values)) if values.size else 0.0
    if top <= 0 or count_regions(values > 0, min_voxels) == 0:
        return 0.0
    lo, hi = 0.0, top
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if count_regions(values >= mid, min_voxels) else (lo, mid)
    return lo


def min_region_voxels(min_region_volume_mm3: float, voxel_volume_mm3: float) -> int:
    """Voxels in the smallest region kept (at least 1)."""
    return max(1, int(np.ceil(min_region_volume_mm3 / voxel_volume_mm3 - 1e-9)))


def gumbel_threshold(peaks: Sequence[float], exceedance: float) -> float:
    """The value a volume's largest region score exceeds with probability ``exceedance``.

    The per-volume maxima are modelled by a Gumbel distribution (the limit law of maxima of
    many weakly dependent variables [1]_) fitted by the method of moments:
    ``beta = sd sqrt(6) / pi``, ``mu = mean - 0.5772 beta``; the threshold is
    ``mu - beta ln(-ln(1 - exceedance))``.

    References
    ----------
    .. [1] Gumbel EJ. Statistics of extremes. Columbia University Press, 1958.
    """
    values = np.asarray(peaks, dtype=np.float64)
    if values.size < 2:
        return float(values.max()) if values.size else 0.0
    beta = float(np.std(values, ddof=1)) * np.sqrt(6.0) / np.pi
    mu = float(np.mean(values)) - 0.5772156649 * beta
    p = min(max(exceedance, 1e-6), 0.5)
    return mu - beta * float(np.log(-np.log(1.0 - p)))


def choose_threshold(
    z_maps: Sequence[NDArray[np.float32]],
    *,
    min_voxels: Sequence[int],
    target_per_volume: float,
    n_candidates: int = 64,
    minimum: float = 0.0,
) -> tuple[float, float]:
    """A threshold for at most ``target_per_volume`` flagged regions per lesion-free volume.

    The larger of two estimates: the smallest threshold whose mean region count over
    ``z_maps`` is at most the target (empirical; with few volumes it is their largest region
    score, an optimistic estimate of the tail), and the Gumbel extrapolation of the
    per-volume largest region scores (:func:`region_peak`) to an exceedance probability of
    ``target_per_volume`` (:func:`gumbel_threshold`).

    Parameters
    ----------
    z_maps : sequence of ndarray
        Standardised maps of held-out lesion-free volumes.
    min_voxels : sequence of int
        Smallest region of each volume, in voxels.
    target_per_volume : float
        Allowed mean number of regions per volume.
    n_candidates : int
        Thresholds tried by the empirical estimate, spaced geometrically between the pooled
        99th percentile and the largest value.
    minimum : float
        The threshold is at least this (a signal's smallest meaningful value).

    Returns
    -------
    threshold, achieved : float
        The threshold and the mean region count it gives on ``z_maps``.
    """
    peaks = [float(z.max()) if z.size else 0.0 for z in z_maps]
    top = max([*peaks, 1e-6])
    sample = np.concatenate([z[z > 0].ravel()[::50] for z in z_maps] + [np.zeros(1)])
    low = max(float(np.percentile(sample, 99.0)), top * 1e-3, 1e-6)
    empirical = float(top * 1.0001)
    for t in np.geomspace(low, top * 1.0001, n_candidates):
        counts = [count_regions(z >= t, m) for z, m in zip(z_maps, min_voxels, strict=True)]
        if float(np.mean(counts)) <= target_per_volume:
            empirical = float(t)
            break
    region_peaks = [region_peak(z, m) for z, m in zip(z_maps, min_voxels, strict=True)]
    threshold = max(empirical, gumbel_threshold(region_peaks, target_per_volume), minimum)
    counts = [count_regions(z >= threshold, m) for z, m in zip(z_maps, min_voxels, strict=True)]
    return threshold, float(np.mean(counts))
