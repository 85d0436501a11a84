"""Layers as NIfTI bytes for NiiVue: LPS volumes converted to RAS world mm at this boundary.

synthct volumes map voxel indices to LPS mm; NIfTI (and NiiVue) use RAS mm. The voxel array
is written as it is and the affine is flipped, ``A_ras = diag(-1, -1, 1, 1) @ A_lps``, so
voxel ``(i, j, k)`` keeps its place and a point ``(L, P, S)`` shows at RAS ``(-L, -P, S)``.
Both the sform and the qform carry the affine (code 1, scanner), so any reader agrees.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from synthct.view.catalogue import Layer, ViewCase, layer_kind

if TYPE_CHECKING:
    from synthct.geometry import Geometry
    from synthct.volume import Volume

__all__ = [
    "LPS_TO_RAS",
    "VolumeCache",
    "crop_geometry",
    "display_array",
    "layer_volume",
    "nifti_bytes",
    "read_nifti_bytes",
]

#: Multiplies an LPS affine into a RAS one (and back: it is its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def nifti_bytes(
    array: NDArray[np.generic], affine_lps: NDArray[np.float64], *, compress: bool
) -> bytes:
    """A NIfTI-1 file of ``array`` on the LPS affine, written with the RAS affine.

    HU and difference maps go as int16 (whole HU), labels as uint8/int16, other maps as float32.
    """
    import nibabel as nib

    image = nib.Nifti1Image(np.asarray(array), LPS_TO_RAS @ affine_lps)
    image.header.set_sform(LPS_TO_RAS @ affine_lps, code=1)
    image.header.set_qform(LPS_TO_RAS @ affine_lps, code=1)
    image.header.set_xyzt_units("mm")
    data = image.to_bytes()
    return gzip.compress(data, compresslevel=1) if compress else data


def display_array(name: str, values: NDArray[np.generic]) -> NDArray[np.generic]:
    kind = layer_kind(name)
    if kind in ("hu", "difference"):
        return np.clip(np.rint(values), -32768, 32767).astype(np.int16)
    if kind == "label":
        top = int(values.max()) if values.size else 0
        return values.astype(np.uint8 if top < 256 else np.int16)
    return values.astype(np.float32)


def layer_volume(case: ViewCase, layer: Layer) -> Volume:
    """The layer's volume (one echo of an MR file; sCT - CT on the CT grid for ``difference``)."""
    from synthct.io import read_volume
    from synthct.volume import MultiEchoMR, ScalarVolume

    if layer.derived == "difference":
        from synthct.resample import resample_to

        ct = layer_volume(case, case.layers["ct"])
        sct = resample_to(layer_volume(case, case.layers[layer.of or "sct"]), ct.geometry)
        return ScalarVolume(
            np.asarray(sct.array, np.float32) - np.asarray(ct.array, np.float32), ct.affine
        )
    assert layer.path is not None
    volume = read_volume(layer.path, kind=layer.read_kind, check_hu=False)
    if isinstance(volume, MultiEchoMR):
        echo = min(layer.echo or 0, volume.array.shape[0] - 1)
        return ScalarVolume(volume.array[echo], volume.affine, source=str(layer.path))
    return volume


def crop_geometry(
    reference: Geometry, centres_lps_mm: Sequence[Sequence[float]], margin_mm: float
) -> tuple[slice, slice, slice]:
    """Index box of ``reference`` holding every centre with ``margin_mm`` around it (whole grid
    when there is no centre)."""
    shape = reference.shape
    if not centres_lps_mm:
        return tuple(slice(0, n) for n in shape)  # type: ignore[return-value]
    index = reference.lps_to_index(np.asarray(centres_lps_mm, dtype=np.float64))
    spacing = np.asarray(reference.spacing_mm)
    pad = np.ceil(margin_mm / spacing)
    lo = np.clip(np.floor(index.min(axis=0) - pad), 0, np.asarray(shape) - 1).astype(int)
    hi = np.clip(np.ceil(index.max(axis=0) + pad) + 1, 1, np.asarray(shape)).astype(int)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))  # type: ignore[return-value]


class VolumeCache:
    """NIfTI bytes of layers, made once per (case, layer) and kept (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._data: dict[tuple[str, str], bytes] = {}

    def get(self, case: ViewCase, layer: Layer) -> bytes:
        """The layer as (uncompressed) NIfTI bytes in RAS."""
        key = (case.case_id, layer.name)
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._data:
                volume = layer_volume(case, layer)
                array = display_array(layer.name, np.asarray(volume.array))
                self._data[key] = nifti_bytes(array, volume.affine, compress=False)
            return self._data[key]

    def forget(self, case_id: str) -> None:
        """Drop a case's layers (after its annotation changed)."""
        with self._lock:
            for key in [k for k in self._data if k[0] == case_id]:
                del self._data[key]


def read_nifti_bytes(data: bytes) -> tuple[NDArray[np.generic], NDArray[np.float64]]:
    """Array and LPS affine of NIfTI bytes (gzipped or not), e.g. a drawing saved by the page."""
    import nibabel as nib

    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    image = nib.Nifti1Image.from_bytes(data)
    return np.asarray(image.dataobj), LPS_TO_RAS @ np.asarray(image.affine, dtype=np.float64)
