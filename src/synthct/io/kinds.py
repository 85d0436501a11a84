"""Deciding which kind of volume a file holds when the user did not say."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from synthct.errors import VolumeKindError
from synthct.volume import HU_AIR_OR_FAT, KINDS

#: A label map has at most this many distinct labels.
MAX_LABELS = 512
#: DICOM Modality values and the kind they map to.
MODALITY_KINDS = {"CT": "ct", "MR": "mr", "SEG": "label"}


def parse_kind(kind: str, *, where: str = "--kind") -> str:
    """Normalise a user-supplied kind name, or raise with the allowed names."""
    aliases = {
        "hu": "ct",
        "synthetic-ct": "sct",
        "labels": "label",
        "seg": "label",
        "mask": "label",
    }
    name = aliases.get(kind.lower(), kind.lower())
    if name not in KINDS:
        raise VolumeKindError(
            f"unknown kind {kind!r}",
            path=where,
            fix=f"use one of {', '.join(sorted(KINDS))}",
        )
    return name


def infer_kind(array: NDArray[Any], *, modality: str | None = None) -> str:
    """Guess the kind of ``array`` from the DICOM modality or from its values.

    Rules, in order: a DICOM modality decides; 4D data is multi-echo MR; non-negative integers
    with at most :data:`MAX_LABELS` distinct values are labels; data with air or fat (below
    -60 HU in at least 0.1% of voxels) is CT in HU; anything else is treated as MR.
    """
    if modality and modality.upper() in MODALITY_KINDS:
        return MODALITY_KINDS[modality.upper()]
    if array.ndim == 4:
        return "mr"
    if array.dtype == np.bool_:
        return "label"
    if array.dtype.kind in "iu" and array.size and array.min() >= 0 and array.max() < 2**16:
        counts = np.bincount(array.ravel().astype(np.int64))
        if np.count_nonzero(counts) <= MAX_LABELS:
            return "label"
    if array.size and np.count_nonzero(array < HU_AIR_OR_FAT) >= 1e-3 * array.size:
        return "ct"
    return "mr"
