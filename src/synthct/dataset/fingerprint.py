"""Dataset fingerprint: what training needs to plan spacing, patch size and normalisation.

As nnU-Net's fingerprint: per MR channel, the voxel spacings and shapes of every case and the
intensity statistics of the voxels inside the body mask; the same for the CT in HU. Intensity
statistics pool a seeded random sample of at most ``samples_per_case`` body voxels per case.

JSON form (``fingerprint.json``, written by ``synthct dataset check``)::

    {
      "format": "synthct-fingerprint/1",
      "n_cases": 12,
      "mr_channels": 2,                       # most common channel count
      "spacing_mm": {"mr": {"median": [..3], "min": [..3], "max": [..3], "per_case": {id: [..3]}},
                     "ct": {...}},
      "shape": {"mr": {"median": [..3], "per_case": {...}}, "ct": {...}},
      "mr": [{"channel": 0, "mean": .., "sd": .., "p0_5": .., "p50": .., "p99_5": ..,
              "min": .., "max": ..}, ...],     # inside the body, per channel
      "ct_hu": {"mean": .., "sd": .., "p0_5": .., "p50": .., "p99_5": .., "min": .., "max": ..},
      "body_mask": "given" | "derived" | "mixed",
      "samples_per_case": 20000, "seed": 0
    }
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from synthct.case import Case

__all__ = ["FINGERPRINT_FORMAT", "DatasetFingerprint", "fingerprint"]

FINGERPRINT_FORMAT = "synthct-fingerprint/1"


def _stats(values: NDArray[np.float64]) -> dict[str, float]:
    if values.size == 0:
        return {k: float("nan") for k in ("mean", "sd", "p0_5", "p50", "p99_5", "min", "max")}
    p = np.percentile(values, [0.5, 50, 99.5])
    return {
        "mean": float(values.mean()),
        "sd": float(values.std()),
        "p0_5": float(p[0]),
        "p50": float(p[1]),
        "p99_5": float(p[2]),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def _summary(per_case: dict[str, list[float]]) -> dict[str, Any]:
    values = np.array(list(per_case.values()), dtype=np.float64)
    return {
        "median": np.median(values, axis=0).tolist(),
        "min": values.min(axis=0).tolist(),
        "max": values.max(axis=0).tolist(),
        "per_case": per_case,
    }


@dataclass(frozen=True)
class DatasetFingerprint:
    """Spacings, shapes and intensity statistics of a dataset (see the module docstring)."""

    n_cases: int
    mr_channels: int
    spacing_mm: dict[str, dict[str, Any]]
    shape: dict[str, dict[str, Any]]
    mr: list[dict[str, float]]
    ct_hu: dict[str, float]
    body_mask: str
    samples_per_case: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "format": FINGERPRINT_FORMAT,
            "n_cases": self.n_cases,
            "mr_channels": self.mr_channels,
            "spacing_mm": self.spacing_mm,
            "shape": self.shape,
            "mr": self.mr,
            "ct_hu": self.ct_hu,
            "body_mask": self.body_mask,
            "samples_per_case": self.samples_per_case,
            "seed": self.seed,
        }


def _body_on_mr(case: Case) -> tuple[NDArray[np.bool_], NDArray[np.bool_], str]:
    """Body masks on the MR and on the CT grid, and whether the mask was given or derived."""
    from synthct.imaging.body_mask import body_mask_volume
    from synthct.resample import resample_to

    ct = case.ct()
    source = "given" if case.has("body_mask") else "derived"
    mask = case.labels("body_mask") if case.has("body_mask") else body_mask_volume(ct)
    on_ct = resample_to(mask, ct) if not mask.same_geometry(ct) else mask
    on_mr = resample_to(mask, case.mr()) if not mask.same_geometry(case.mr()) else mask
    return on_mr.array > 0, on_ct.array > 0, source


def fingerprint(
    cases: Iterable[Case], *, samples_per_case: int = 20000, seed: int = 0
) -> DatasetFingerprint:
    """The fingerprint of ``cases`` (each needs ``ct`` and ``mr``; ``body_mask`` optional).

    Parameters
    ----------
    cases : iterable of Case
        The dataset; cases are read one at a time and unloaded.
    samples_per_case : int
        Body voxels sampled per case for the intensity statistics.
    seed : int
        Seeds the sampling (same seed, same fingerprint).

    Raises
    ------
    SynthctError
        A case that cannot be read, or MR channel counts that differ between cases.
    """
    from synthct.errors import SynthctError

    rng = np.random.default_rng(seed)
    spacing: dict[str, dict[str, list[float]]] = {"mr": {}, "ct": {}}
    shape: dict[str, dict[str, list[float]]] = {"mr": {}, "ct": {}}
    mr_values: list[list[NDArray[np.float64]]] = []
    ct_values: list[NDArray[np.float64]] = []
    channels: Counter[int] = Counter()
    sources: set[str] = set()
    for case in cases:
        mr, ct = case.mr(), case.ct()
        on_mr, on_ct, source = _body_on_mr(case)
        sources.add(source)
        n = mr.array.shape[0]
        if mr_values and n != len(mr_values):
            raise SynthctError(
                f"case {case.case_id!r} has {n} MR channel(s), earlier cases {len(mr_values)}",
                path=case.path("mr"),
                fix="give every case the same MR channels (run `synthct dataset check` to see "
                "which cases differ)",
            )
        channels[n] += 1
        mr_values = mr_values or [[] for _ in range(n)]
        for name, volume in (("mr", mr), ("ct", ct)):
            spacing[name][case.case_id] = [float(s) for s in volume.spacing_mm]
            shape[name][case.case_id] = [float(s) for s in volume.spatial_shape]
        idx_mr = np.flatnonzero(on_mr)
        pick = rng.choice(idx_mr, min(samples_per_case, idx_mr.size), replace=False)
        for c in range(n):
            mr_values[c].append(mr.array[c].reshape(-1)[pick].astype(np.float64))
        idx_ct = np.flatnonzero(on_ct)
        pick = rng.choice(idx_ct, min(samples_per_case, idx_ct.size), replace=False)
        ct_values.append(ct.array.reshape(-1)[pick].astype(np.float64))
        case.unload()
    if not channels:
        raise SynthctError("no case to fingerprint", fix="pass at least one case")
    return DatasetFingerprint(
        n_cases=sum(channels.values()),
        mr_channels=channels.most_common(1)[0][0],
        spacing_mm={k: _summary(v) for k, v in spacing.items()},
        shape={k: _summary(v) for k, v in shape.items()},
        mr=[{"channel": c, **_stats(np.concatenate(v))} for c, v in enumerate(mr_values)],
        ct_hu=_stats(np.concatenate(ct_values)),
        body_mask=sources.pop() if len(sources) == 1 else "mixed",
        samples_per_case=samples_per_case,
        seed=seed,
    )
