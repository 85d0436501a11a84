"""Physically plausible random MR contrasts for domain randomisation.

A fully random Gaussian mixture (:mod:`synthct.phantom.domain_randomisation`) shows the network
contrasts no scanner makes, which makes the task harder than it needs to be for the sequences
users actually bring. Physics-driven randomisation (Jog et al., "PSACNN: Pulse sequence adaptive
fast whole brain segmentation", NeuroImage 199:553-569, 2019; Borges et al., "Acquisition-
invariant brain MRI segmentation with informative uncertainties", Medical Image Analysis
92:103058, 2024) draws the protocol instead and computes every tissue's intensity from its
relaxation times. :func:`physics_means` does that for the RF-spoiled gradient echo
(:func:`~synthct.imaging.signal_equation.spgr_signal`) over the range clinical gradient-echo
protocols span, for one random subject (:func:`~synthct.phantom.mri_subject.
draw_subject_tissues`):

- field 1.5 T or 3 T;
- TR log-uniform in 4-800 ms (3D T1w VIBE/LAVA ~4 ms, 2D T1w FLASH 150-250 ms, T2*w GRE
  500-800 ms);
- TE uniform in 1-20 ms, below TR (in- and opposed-phase fat-water echoes included);
- flip angle uniform in 5-80 degrees (proton-density to T1 weighting).

So the fat-water and T1 relations between tissues hold (marrow between red marrow and fat by its
fat fraction, cortical bone and air dark, CSF dark on T1w and bright on T2*w).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from synthct.errors import SynthctError
from synthct.imaging.labels import MARROW_TISSUES, Tissue
from synthct.imaging.signal_equation import spgr_signal
from synthct.imaging.tissues import TISSUES
from synthct.phantom.mri_subject import draw_subject_tissues

__all__ = ["MARROW_FAT_FRACTIONS", "GradientEchoRanges", "couple_marrow", "physics_means"]

#: Fat fraction of each marrow label's bin centre (the tissue table's value).
MARROW_FAT_FRACTIONS: dict[int, float] = {
    int(t): float(TISSUES[t].fat_fraction) for t in MARROW_TISSUES
}
_FAT_LABELS = (int(Tissue.SUBCUTANEOUS_FAT), int(Tissue.EPIDURAL_FAT))
_MARROW_REFERENCE = Tissue.MARROW_FF50
_TISSUE_VALUES = frozenset(int(t) for t in Tissue)
#: Longest echo time as a share of TR (the readout and spoiling need the rest).
_MAX_TE_PER_TR = 0.9


@dataclass(frozen=True)
class GradientEchoRanges:
    """Ranges of the random gradient-echo protocol of :func:`physics_means`."""

    fields_t: tuple[float, ...] = (1.5, 3.0)
    repetition_time_ms: tuple[float, float] = (4.0, 800.0)
    echo_time_ms: tuple[float, float] = (1.0, 20.0)
    flip_angle_deg: tuple[float, float] = (5.0, 80.0)

    def __post_init__(self) -> None:
        ranges = {
            "repetition_time_ms": self.repetition_time_ms,
            "echo_time_ms": self.echo_time_ms,
            "flip_angle_deg": self.flip_angle_deg,
        }
        bad = [name for name, (lo, hi) in ranges.items() if not 0.0 < lo <= hi]
        if self.flip_angle_deg[1] > 90.0:
            bad.append("flip_angle_deg")
        if self.echo_time_ms[0] > _MAX_TE_PER_TR * self.repetition_time_ms[1]:
            bad.append("echo_time_ms")
        if not self.fields_t or min(self.fields_t) <= 0:
            bad.append("fields_t")
        if bad:
            raise SynthctError(
                f"invalid gradient-echo ranges: {', '.join(sorted(set(bad)))}",
                path="GradientEchoRanges",
                fix="give (low, high) with 0 < low <= high, flip angles up to 90 degrees, the "
                "shortest TE at most 0.9 x the longest TR and at least one positive field strength",
            )


def physics_means(
    labels: Sequence[int],
    rng: np.random.Generator,
    ranges: GradientEchoRanges | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Intensities of ``labels`` on a random gradient-echo protocol of a random subject.

    Parameters
    ----------
    labels : sequence of int
        Label values; those that are :class:`~synthct.imaging.labels.Tissue` members get a
        physical intensity.
    rng : numpy.random.Generator
        Source of the protocol and the subject seed (same state, same draw).
    ranges : GradientEchoRanges, optional
        Protocol ranges (defaults in the module docstring).

    Returns
    -------
    means : ndarray of float64, shape ``(len(labels),)``
        Signal magnitudes scaled so that the brightest tissue is 1 (0 for other labels).
    known : ndarray of bool
        Which labels are tissues (the others keep whatever intensity the caller draws).
    """
    r = ranges or GradientEchoRanges()
    field = float(r.fields_t[int(rng.integers(len(r.fields_t)))])
    # TR at least the shortest TE / 0.9, so that an echo time of the range fits every TR drawn.
    tr_low = max(r.repetition_time_ms[0], r.echo_time_ms[0] / _MAX_TE_PER_TR)
    tr = float(np.exp(rng.uniform(np.log(tr_low), np.log(r.repetition_time_ms[1]))))
    te = float(rng.uniform(r.echo_time_ms[0], min(r.echo_time_ms[1], _MAX_TE_PER_TR * tr)))
    flip = float(rng.uniform(*r.flip_angle_deg))
    seed = int(rng.integers(2**31 - 1))
    values = [int(v) for v in labels]
    known = np.array([v in _TISSUE_VALUES for v in values], dtype=bool)
    means = np.zeros(len(values), dtype=np.float64)
    if not known.any():
        return means, known
    tissues = [Tissue(v) for v, k in zip(values, known, strict=True) if k]
    subject = draw_subject_tissues(seed, field, tissues=[*tissues, _MARROW_REFERENCE])
    # One marrow per subject: the bins share its water and fat relaxation and proton density
    # and differ by their fat fraction alone.
    marrow = subject[_MARROW_REFERENCE]
    for t in tissues:
        if int(t) in MARROW_FAT_FRACTIONS:
            subject[t] = replace(marrow, fat_fraction=MARROW_FAT_FRACTIONS[int(t)])
    params = [subject[t] for t in tissues]
    signal = spgr_signal(
        proton_density=[p.proton_density for p in params],
        fat_fraction=[p.fat_fraction for p in params],
        t1_ms=[p.relaxation.t1_ms for p in params],
        t2star_water_ms=[p.relaxation.t2star_water_ms for p in params],
        t2star_fat_ms=[p.relaxation.t2star_fat_ms for p in params],
        t1_fat_ms=[p.relaxation.t1_fat_ms for p in params],
        echo_times_ms=[te],
        repetition_time_ms=tr,
        flip_angle_deg=flip,
        field_strength_t=field,
    )
    magnitude = np.abs(signal[0])
    top = float(magnitude.max())
    means[known] = magnitude / top if top > 0 else magnitude
    return means, known


def couple_marrow(
    values: NDArray[np.int64], means: NDArray[np.float64], red_marrow: NDArray[np.float64]
) -> None:
    """Set marrow means to the mix of red marrow and fat by each label's fat fraction (in place).

    Marrow signal is the sum of its water (red marrow) and fat components, and the fat is the
    same fat as subcutaneous fat, so on every sequence a marrow label lies between a red-marrow
    intensity (``red_marrow``, one per channel) and the fat intensity in proportion to its fat
    fraction. Without this a random mixture turns a vertebral body, whose voxels fall into
    several marrow bins, into an unrelated patchwork. Epidural fat follows subcutaneous fat.
    """
    index = {int(v): n for n, v in enumerate(values)}
    fat_rows = [index[f] for f in _FAT_LABELS if f in index]
    if not fat_rows:
        return
    fat = means[fat_rows[0]].copy()
    for row in fat_rows[1:]:
        means[row] = fat
    for label, ff in MARROW_FAT_FRACTIONS.items():
        if label in index:
            means[index[label]] = (1.0 - ff) * red_marrow + ff * fat
