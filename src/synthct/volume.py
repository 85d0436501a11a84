"""The volume type: a voxel array on a :class:`~synthct.geometry.Geometry`, with kinds as types.

``Volume.array`` is indexed ``[i, j, k]`` along the affine's columns (multi-echo MR has the
echo axis first: ``[echo, i, j, k]``). The kinds differ in what their values mean and how
they are resampled:

=================  ====================================  =============
kind               values                                interpolation
=================  ====================================  =============
:class:`CTVolume`   Hounsfield units                      linear
:class:`SyntheticCT` Hounsfield units, made from MRI       linear
:class:`MultiEchoMR` echo magnitudes, protocol attached    linear
:class:`LabelMap`   integer labels (0 = background)       nearest
:class:`ScalarVolume` any other real-valued map            linear
=================  ====================================  =============

Arithmetic between two volumes checks their geometry first and fails loudly when they differ.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from synthct.errors import VolumeKindError
from synthct.geometry import Geometry, require_same_geometry

Interpolation = Literal["linear", "nearest"]

#: HU below this count as air or fat (fat is about -120..-90 HU) when a CT is checked for HU.
#: Raw detector values and MR magnitudes are never this negative.
HU_AIR_OR_FAT = -60.0


class Volume:
    """A 3D image: voxel array plus LPS affine, validated on construction.

    Parameters
    ----------
    array : array_like
        Voxel values indexed ``[i, j, k]`` (``[channel, i, j, k]`` for multi-channel kinds).
    affine : (4, 4) array_like
        Voxel index to LPS mm.
    source : str, optional
        Where the data came from (a path), used in error messages.
    """

    kind: ClassVar[str] = "scalar"
    interpolation: ClassVar[Interpolation] = "linear"
    #: Value for voxels outside the source grid after resampling.
    fill_value: ClassVar[float] = 0.0
    #: Number of leading non-spatial axes (1 for multi-echo MR).
    channel_axes: ClassVar[int] = 0
    #: Unit of the voxel values, for printing and column names.
    unit: ClassVar[str] = ""

    def __init__(self, array: ArrayLike, affine: ArrayLike, *, source: str | None = None) -> None:
        data = np.asarray(array)
        if data.ndim != 3 + self.channel_axes:
            axes = "[echo, i, j, k]" if self.channel_axes else "[i, j, k]"
            raise VolumeKindError(
                f"a {self.kind} volume needs a {3 + self.channel_axes}D array {axes}, "
                f"got shape {data.shape}",
                path=source,
            )
        if data.dtype.kind not in "biuf":
            raise VolumeKindError(
                f"voxel values must be real numbers, got dtype {data.dtype}", path=source
            )
        self._geometry = Geometry(data.shape[self.channel_axes :], affine)  # type: ignore[arg-type]
        self._array = data
        self.source = source
        self._validate()

    # -- hooks for kinds -------------------------------------------------------------------
    def _validate(self) -> None:
        """Check kind-specific invariants; subclasses extend."""
        if self._array.dtype.kind == "f" and not np.all(np.isfinite(self._array)):
            n_bad = int(np.count_nonzero(~np.isfinite(self._array)))
            raise VolumeKindError(
                f"{n_bad} voxels are NaN or infinite in this {self.kind} volume",
                path=self.source,
                fix="replace them (e.g. with the background value) before loading, or check "
                "the exporting software",
            )

    def _metadata_repr(self) -> str:
        return ""

    # -- basic properties ------------------------------------------------------------------
    @property
    def array(self) -> NDArray[Any]:
        """The voxel values (a view, not a copy)."""
        return self._array

    @property
    def geometry(self) -> Geometry:
        """Spatial grid (shape and affine)."""
        return self._geometry

    @property
    def affine(self) -> NDArray[np.float64]:
        """Read-only float64 voxel-to-LPS affine."""
        return self._geometry.affine

    @property
    def shape(self) -> tuple[int, ...]:
        """Full array shape, channel axes included."""
        return tuple(self._array.shape)

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        """Number of voxels along the three spatial axes."""
        return self._geometry.shape

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size along array axes, in mm."""
        return self._geometry.spacing_mm

    @property
    def origin_lps_mm(self) -> tuple[float, float, float]:
        """LPS position of voxel (0, 0, 0), in mm."""
        return self._geometry.origin_lps_mm

    @property
    def orientation_code(self) -> str:
        """Anatomical direction each array axis increases toward, e.g. ``"LPS"``."""
        return self._geometry.orientation_code

    @property
    def dtype(self) -> np.dtype[Any]:
        """Data type of the voxel array."""
        return self._array.dtype

    def value_range(self) -> tuple[float, float]:
        """Minimum and maximum voxel value."""
        return float(self._array.min()), float(self._array.max())

    # -- derived volumes -------------------------------------------------------------------
    def with_array(self, array: ArrayLike, *, source: str | None = None) -> Self:
        """A volume of the same kind, grid and metadata holding ``array`` instead."""
        new = copy.copy(self)
        data = np.asarray(array)
        if data.shape != self._array.shape:
            raise VolumeKindError(
                f"replacement array has shape {data.shape}, the volume has {self._array.shape}",
                path=source or self.source,
            )
        new._array = data
        new.source = source if source is not None else self.source
        new._validate()
        return new

    def on_grid(self, array: ArrayLike, affine: ArrayLike, *, source: str | None = None) -> Self:
        """A volume of the same kind and metadata holding ``array`` on a new grid."""
        new = copy.copy(self)
        data = np.asarray(array)
        new._geometry = Geometry(data.shape[self.channel_axes :], affine)  # type: ignore[arg-type]
        new._array = data
        new.source = source
        new._validate()
        return new

    def reoriented(self, code: str) -> Self:
        """The same voxels with array axes permuted and flipped into orientation ``code``.

        Lossless (no interpolation): see :mod:`synthct.orientation`. ``self`` when it is in
        that orientation already.
        """
        from synthct.orientation import reorientation

        plan = reorientation(self._geometry, code)
        if plan.is_identity:
            return self
        array = plan.apply(self._array, channel_axes=self.channel_axes)
        return self.on_grid(array, plan.geometry.affine, source=self.source)

    def as_scalar(self) -> ScalarVolume:
        """The same voxels as a plain real-valued map (kind-free)."""
        if self.channel_axes:
            raise VolumeKindError(
                f"a {self.kind} volume has {self.shape[0]} channels; pick one first",
                path=self.source,
            )
        return ScalarVolume(self._array, self.affine, source=self.source)

    # -- geometry-checked arithmetic -------------------------------------------------------
    def _operand(self, other: object, op_name: str) -> Any:
        if isinstance(other, Volume):
            require_same_geometry(
                self.geometry,
                other.geometry,
                names=(self._label(), other._label()),
            )
            if other.channel_axes != self.channel_axes:
                raise VolumeKindError(
                    f"cannot {op_name} a {self.kind} and a {other.kind} volume: their channel "
                    "layouts differ"
                )
            return other.array
        operand = np.asarray(other)
        if operand.ndim >= 3 and operand.shape != self._array.shape:
            raise VolumeKindError(
                f"cannot {op_name} an array of shape {operand.shape} with a volume of shape "
                f"{self._array.shape}",
                path=self.source,
            )
        return operand

    def _binary(
        self, other: object, op: Callable[[Any, Any], Any], op_name: str, reflected: bool = False
    ) -> ScalarVolume:
        if self.channel_axes:
            raise VolumeKindError(
                f"arithmetic on {self.kind} volumes is defined per channel; pick a channel first"
            )
        operand = self._operand(other, op_name)
        values = op(operand, self._array) if reflected else op(self._array, operand)
        return ScalarVolume(values, self.affine)

    def __add__(self, other: object) -> ScalarVolume:
        return self._binary(other, operator.add, "add")

    def __radd__(self, other: object) -> ScalarVolume:
        return self._binary(other, operator.add, "add", reflected=True)

    def __sub__(self, other: object) -> ScalarVolume:
        return self._binary(other, operator.sub, "subtract")

    def __rsub__(self, other: object) -> ScalarVolume:
        return self._binary(other, operator.sub, "subtract", reflected=True)

    def __mul__(self, other: object) -> ScalarVolume:
        return self._binary(other, operator.mul, "multiply")

    def __rmul__(self, other: object) -> ScalarVolume:
        return self._binary(other, operator.mul, "multiply", reflected=True)

    def __truediv__(self, other: object) -> ScalarVolume:
        return self._binary(other, operator.truediv, "divide")

    def same_geometry(self, other: Volume | Geometry) -> bool:
        """True when ``other`` is on this volume's grid (default tolerances)."""
        g = other.geometry if isinstance(other, Volume) else other
        return self._geometry.is_close(g)

    def require_same_geometry(self, other: Volume, *, names: tuple[str, str] | None = None) -> None:
        """Raise :class:`~synthct.errors.GeometryMismatchError` unless ``other`` shares the grid."""
        require_same_geometry(
            self.geometry, other.geometry, names=names or (self._label(), other._label())
        )

    def array_equal(self, other: Volume) -> bool:
        """Same grid and identical voxel values (a geometry mismatch raises)."""
        self.require_same_geometry(other)
        return bool(np.array_equal(self._array, other.array))

    # -- printing ----------------------------------------------------------------------------
    def _label(self) -> str:
        return f"{self.kind} volume" + (f" ({self.source})" if self.source else "")

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary: kind, grid, dtype, value range and kind-specific metadata."""
        lo, hi = self.value_range()
        return {
            "kind": self.kind,
            "source": self.source,
            **self.geometry.to_dict(),
            "dtype": str(self.dtype),
            "value_range": [lo, hi],
            "unit": self.unit,
        }

    def __repr__(self) -> str:
        lo, hi = self.value_range()
        unit = f" {self.unit}" if self.unit else ""
        spacing = ", ".join(f"{s:.4g}" for s in self.spacing_mm)
        origin = ", ".join(f"{o:.4g}" for o in self.origin_lps_mm)
        text = (
            f"{type(self).__name__}(shape={self.shape}, spacing_mm=({spacing}), "
            f"orientation={self.orientation_code}, origin_lps_mm=({origin}), "
            f"dtype={self.dtype}, range={lo:.6g}..{hi:.6g}{unit}{self._metadata_repr()}"
        )
        if self.source:
            text += f", source={self.source!r}"
        return text + ")"


class ScalarVolume(Volume):
    """A real-valued map with no special meaning (differences, uncertainty, probabilities)."""

    kind = "scalar"


class CTVolume(Volume):
    """A CT in Hounsfield units. NaNs are rejected; see :func:`check_hounsfield` for units."""

    kind = "ct"
    fill_value = -1024.0
    unit = "HU"


class SyntheticCT(CTVolume):
    """A CT in HU synthesised from MRI (ours or a product's).

    Parameters
    ----------
    provenance : mapping, optional
        How it was made (e.g. ``{"model": ..., "out_of_domain": [...]}``); kept through
        resampling, written to the image's sidecar and read back, so that every report that
        uses the sCT can repeat its model's warnings.
    """

    kind = "sct"

    def __init__(
        self,
        array: ArrayLike,
        affine: ArrayLike,
        *,
        source: str | None = None,
        provenance: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(array, affine, source=source)
        self.provenance: dict[str, Any] = dict(provenance or {})

    @property
    def out_of_domain(self) -> list[str]:
        """The synthesis model's out-of-domain warnings for this sCT (empty when none)."""
        return [str(w) for w in self.provenance.get("out_of_domain", [])]


class LabelMap(Volume):
    """Integer labels (0 = background), resampled with nearest neighbour.

    Parameters
    ----------
    label_names : mapping of int to str, optional
        Names of the labels, e.g. ``{1: "vertebra_L1"}``.
    """

    kind = "label"
    interpolation = "nearest"

    def __init__(
        self,
        array: ArrayLike,
        affine: ArrayLike,
        *,
        source: str | None = None,
        label_names: Mapping[int, str] | None = None,
    ) -> None:
        data = np.asarray(array)
        if data.dtype == np.bool_:
            data = data.astype(np.uint8)
        elif data.dtype.kind == "f":
            if not np.all(np.isfinite(data)) or not np.all(data == np.round(data)):
                raise VolumeKindError(
                    "a label map must hold whole numbers; this one has fractional or NaN values",
                    path=source,
                    fix="load it as a scalar volume, or threshold/round it into labels first",
                )
            data = data.astype(np.int32)
        self.label_names: dict[int, str] = dict(label_names or {})
        super().__init__(data, affine, source=source)

    def labels(self) -> list[int]:
        """The non-zero labels present, sorted."""
        values = np.unique(self._array)
        return [int(v) for v in values if v != 0]

    def mask(self, label: int | Sequence[int] | None = None) -> NDArray[np.bool_]:
        """Boolean mask of ``label`` (one or several), or of every non-zero label."""
        if label is None:
            return self._array != 0
        return np.isin(self._array, np.atleast_1d(label))

    def _metadata_repr(self) -> str:
        return f", labels={len(self.labels())}"

    def describe(self) -> dict[str, Any]:
        """Summary with the labels present and their names."""
        info = super().describe()
        info["labels"] = self.labels()
        if self.label_names:
            info["label_names"] = {str(k): v for k, v in self.label_names.items()}
        return info


@dataclass(frozen=True)
class MRProtocol:
    """Acquisition parameters that travel with MR data.

    Parameters
    ----------
    echo_times_ms : tuple of float
        Echo time of each echo channel, in ms.
    repetition_time_ms, flip_angle_deg, field_strength_t : float, optional
        TR in ms, flip angle in degrees, main field in tesla; ``None`` when unknown.
    """

    echo_times_ms: tuple[float, ...]
    repetition_time_ms: float | None = None
    flip_angle_deg: float | None = None
    field_strength_t: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (units in the keys)."""
        d = asdict(self)
        d["echo_times_ms"] = list(self.echo_times_ms)
        return d


class MultiEchoMR(Volume):
    """Multi-echo MR magnitudes on one grid, array ``[echo, i, j, k]``, protocol attached.

    Parameters
    ----------
    protocol : MRProtocol, optional
        Echo times (one per channel), TR, flip angle, field strength. When omitted the echo
        times are unknown (``None``) and physics-based steps will ask for them.
    """

    kind = "mr"
    channel_axes = 1

    def __init__(
        self,
        array: ArrayLike,
        affine: ArrayLike,
        *,
        protocol: MRProtocol | None = None,
        source: str | None = None,
    ) -> None:
        self.protocol = protocol
        super().__init__(array, affine, source=source)

    def _validate(self) -> None:
        super()._validate()
        if self.protocol is None:
            return
        tes = self.protocol.echo_times_ms
        if len(tes) != self.n_echoes:
            raise VolumeKindError(
                f"{self.n_echoes} echo channels but {len(tes)} echo times {list(tes)}",
                path=self.source,
                fix="give one echo time per echo channel",
            )
        if len(set(tes)) != len(tes) or any(t <= 0 for t in tes):
            raise VolumeKindError(
                f"echo times must be positive and distinct, got {list(tes)} ms", path=self.source
            )
        tr = self.protocol.repetition_time_ms
        if tr is not None and max(tes) >= tr:
            raise VolumeKindError(
                f"echo time {max(tes)} ms is not shorter than TR {tr} ms", path=self.source
            )

    @classmethod
    def from_echoes(
        cls,
        echoes: Sequence[Volume],
        *,
        protocol: MRProtocol | None = None,
        source: str | None = None,
    ) -> MultiEchoMR:
        """Stack single-echo volumes (same grid, checked) into one multi-echo volume."""
        if not echoes:
            raise VolumeKindError("no echoes given", path=source, fix="pass at least one echo")
        first = echoes[0]
        for e in echoes[1:]:
            first.require_same_geometry(e)
        stacked = np.stack([np.asarray(e.array) for e in echoes])
        return cls(stacked, first.affine, protocol=protocol, source=source)

    @property
    def n_echoes(self) -> int:
        """Number of echo channels."""
        return int(self._array.shape[0])

    @property
    def echo_times_ms(self) -> tuple[float, ...] | None:
        """Echo times in ms, or ``None`` when unknown."""
        return None if self.protocol is None else self.protocol.echo_times_ms

    def echo(self, index: int) -> ScalarVolume:
        """One echo as a scalar volume on the same grid."""
        if not -self.n_echoes <= index < self.n_echoes:
            raise IndexError(f"echo {index} requested, the volume has {self.n_echoes} echoes")
        return ScalarVolume(self._array[index], self.affine, source=self.source)

    def _metadata_repr(self) -> str:
        tes = self.echo_times_ms
        return f", echoes={self.n_echoes}" + (
            f", TE_ms={[round(t, 3) for t in tes]}" if tes else ""
        )

    def describe(self) -> dict[str, Any]:
        """Summary with the echo count and protocol."""
        info = super().describe()
        info["n_echoes"] = self.n_echoes
        info["echo_times_ms"] = None if self.echo_times_ms is None else list(self.echo_times_ms)
        info["protocol"] = None if self.protocol is None else self.protocol.to_dict()
        return info


def check_hounsfield(volume: Volume, *, min_negative_fraction: float = 1e-3) -> None:
    """Raise :class:`VolumeKindError` unless ``volume`` plausibly holds Hounsfield units.

    A CT in HU of any body region shows air or fat (below -60 HU) somewhere in its field of
    view. Raw detector values (0..4095 without the rescale intercept) and MR magnitudes are
    non-negative, so they fail this test.

    Parameters
    ----------
    volume : Volume
        The data claimed to be CT.
    min_negative_fraction : float
        Fraction of voxels that must lie below :data:`HU_AIR_OR_FAT`.
    """
    data = volume.array
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        n_bad = int(np.count_nonzero(~np.isfinite(data)))
        raise VolumeKindError(
            f"{n_bad} voxels are NaN or infinite where Hounsfield units are expected",
            path=volume.source,
            fix="replace them with -1024 HU (air) or fix the export",
        )
    fraction = float(np.count_nonzero(data < HU_AIR_OR_FAT)) / data.size
    if fraction < min_negative_fraction:
        lo, hi = volume.value_range()
        raise VolumeKindError(
            f"values {lo:.6g}..{hi:.6g} do not look like Hounsfield units: only "
            f"{100 * fraction:.3g}% of voxels are below {HU_AIR_OR_FAT:g} HU, but a CT "
            "shows air or fat. This is probably raw stored values (missing rescale intercept) "
            "or an MR image",
            path=volume.source,
            fix="apply RescaleSlope/RescaleIntercept (DICOM) or subtract 1024, or pass the MR "
            "as MR; if this CT truly has no air or fat in view, skip the check "
            "(check_hu=False / --no-check-hu)",
        )


#: The kinds by name, as used by ``--kind`` and sidecars.
KINDS: dict[str, type[Volume]] = {
    cls.kind: cls for cls in (CTVolume, SyntheticCT, MultiEchoMR, LabelMap, ScalarVolume)
}
