"""Prepared training cases on disk, memory-mapped: one copy per machine, not one per rank.

Under ``torchrun`` every rank samples patches from every training case. Held in each process,
the prepared arrays (normalised channels, target, body, lesions and the float64 cumulative
sampling weights: about 21 bytes per voxel for two channels) cost ``world_size`` times the
dataset in memory. Here rank ``r`` prepares the training cases ``r, r + world, ...`` once and
writes them into the run folder (``prepared/<case>/``, one ``.npy`` per array); after a barrier
every rank opens all of them with ``numpy.load(mmap_mode="r")``. The pages are shared through
the operating system's page cache, so a node holds the dataset once, and the arrays are
bit-for-bit those :func:`~synthct.synthesis.patches.prepare_case` returns, so the sampled
patches (and the optimisation path) do not change. A resumed run finds the store and reuses
it; a store written from other files or settings is refused by its key and written again.

Each case folder is written under a temporary name and renamed when complete
(:func:`~synthct.io.atomic.atomic_directory`), so a killed run never leaves a half-written case
that looks complete.

Layout of ``prepared/<case>/``: ``meta.json`` (key, case id, echo scaling, MR protocol and native
voxel size), ``inputs.npy``, ``target.npy``, ``body.npy``, ``cumulative_weights.npy`` and, when
the case has lesion labels, ``lesions.npy``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from synthct.io.atomic import atomic_directory
from synthct.synthesis.config import SynthesisConfig
from synthct.synthesis.manifest import CaseRecord
from synthct.synthesis.normalisation import EchoScaling
from synthct.synthesis.patches import PreparedCase
from synthct.volume import MRProtocol

#: Bumped when the layout or the preparation changes: older stores are written again.
STORE_VERSION = 2
_ARRAYS = ("inputs", "target", "body", "cumulative_weights")


@dataclass(frozen=True)
class MRHeader:
    """What the training domain needs of a case's MRI, without its voxels.

    Parameters
    ----------
    n_echoes : int
        Input channels.
    protocol : MRProtocol or None
        Acquisition parameters.
    spacing_mm : tuple of 3 float
        Voxel size of the MRI as trained on (after planning's resampling).
    """

    n_echoes: int
    protocol: MRProtocol | None
    spacing_mm: tuple[float, float, float]


@dataclass(frozen=True)
class StoredCase:
    """A prepared case opened from the store, its MRI header and its native voxel size."""

    prepared: PreparedCase
    header: MRHeader
    native_spacing_mm: tuple[float, float, float]


def store_key(record: CaseRecord, config: SynthesisConfig) -> str:
    """A digest of the case's files (path, size, modification time; every file of a folder) and
    the preparing settings.

    Any change of the input files, the normalisation, the patch sampling weights or the
    planned spacing gives another key.
    """
    files = [record.ct, *record.mr_echoes]
    if record.lesion_labels is not None:
        files.append(record.lesion_labels)
    described = []
    for path in files:
        # a DICOM series is a folder: its files' changes do not touch the folder's own times
        inner = sorted(p for p in Path(path).rglob("*") if p.is_file()) if path.is_dir() else []
        for item in [Path(path), *inner]:
            stat = item.stat()
            described.append([str(item.resolve()), stat.st_size, stat.st_mtime_ns])
    settings = {
        "version": STORE_VERSION,
        "case_id": record.case_id,
        "series": [record.ct_series_uid, record.mr_series_uid],
        "files": described,
        "normalisation": config.normalisation.model_dump(mode="json"),
        "patches": config.patches.model_dump(mode="json"),
        "plan": config.plan.model_dump(mode="json"),
    }
    text = json.dumps(settings, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def case_folder(store: Path, case_id: str) -> Path:
    """The folder of one case in the store."""
    return store / case_id


def write_case(
    store: Path,
    prepared: PreparedCase,
    header: MRHeader,
    native_spacing_mm: Sequence[float],
    key: str,
) -> Path:
    """Write one prepared case into ``store`` atomically (temporary folder, then rename).

    Lesion insertion data (:attr:`PreparedCase.insertion`) are not stored: runs that insert
    lesions keep their cases in memory.
    """
    if prepared.insertion is not None:
        raise ValueError("cases with lesion insertion data are not stored on disk")
    store.mkdir(parents=True, exist_ok=True)
    target = case_folder(store, prepared.case_id)
    # a stale case is replaced whole, never mixed with the new one
    with atomic_directory(target, overwrite=True) as scratch:
        arrays: dict[str, np.ndarray] = {name: getattr(prepared, name) for name in _ARRAYS}
        if prepared.lesions is not None:
            arrays["lesions"] = prepared.lesions
        for name, array in arrays.items():
            np.save(scratch / f"{name}.npy", np.ascontiguousarray(array))
        meta = {
            "key": key,
            "case_id": prepared.case_id,
            "scaling": prepared.scaling.to_dict(),
            "n_echoes": header.n_echoes,
            "protocol": None if header.protocol is None else header.protocol.to_dict(),
            "spacing_mm": list(header.spacing_mm),
            "native_spacing_mm": [float(x) for x in native_spacing_mm],
        }
        (scratch / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return target


def read_case(store: Path, case_id: str, key: str) -> StoredCase | None:
    """Open a stored case memory-mapped, or ``None`` when it is missing or its key differs."""
    folder = case_folder(store, case_id)
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return None
    meta: dict[str, Any] = json.loads(meta_path.read_text())
    if meta.get("key") != key:
        return None
    arrays = {
        name: np.load(folder / f"{name}.npy", mmap_mode="r")
        for name in _ARRAYS
        if (folder / f"{name}.npy").is_file()
    }
    if set(arrays) != set(_ARRAYS):
        return None
    lesions_path = folder / "lesions.npy"
    lesions = np.load(lesions_path, mmap_mode="r") if lesions_path.is_file() else None
    scaling = meta["scaling"]
    prepared = PreparedCase(
        case_id=case_id,
        inputs=arrays["inputs"],
        target=arrays["target"],
        body=arrays["body"],
        lesions=lesions,
        scaling=EchoScaling(
            reference_values=tuple(scaling["reference_values"]),
            body_fraction=float(scaling["body_fraction"]),
            body_threshold=float(scaling["body_threshold"]),
            offsets=tuple(scaling.get("offsets", ())),
        ),
        cumulative_weights=arrays["cumulative_weights"],
    )
    protocol = meta["protocol"]
    header = MRHeader(
        n_echoes=int(meta["n_echoes"]),
        protocol=None
        if protocol is None
        else MRProtocol(**{**protocol, "echo_times_ms": tuple(protocol["echo_times_ms"])}),
        spacing_mm=_three(meta["spacing_mm"]),
    )
    return StoredCase(prepared, header, _three(meta["native_spacing_mm"]))


def _three(values: Sequence[float]) -> tuple[float, float, float]:
    return (float(values[0]), float(values[1]), float(values[2]))
