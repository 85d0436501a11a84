"""Implicit tissue models and the sampling machinery the CT and MRI renderers share.

A phantom is an *implicit* tissue model: anything with a ``labels_on(geometry)`` method that
returns the :class:`~synthct.imaging.labels.Tissue` label at the centre of every voxel of any
grid (a slab, a supersampled grid, an oblique grid). Renderers never hold a label volume of the
whole field of view at sub-voxel resolution: they walk the output grid in slabs along array
axis 0, ask the model for the labels of a supersampled copy of each slab, turn labels into
physical quantities with a lookup table and average blocks of sub-voxels back onto the output
voxels (:func:`average_tables`). That average is the partial-volume effect, and the slab size
bounds peak memory.

:class:`ShapesModel` is a known-answer phantom made of primitive shapes (sphere, ellipsoid,
box, cylinder) on a background tissue, used by tests and benchmarks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from synthct.errors import PhantomParameterError
from synthct.geometry import Geometry
from synthct.imaging.labels import Tissue

#: Sub-voxels handled per slab by default: ~4 M keeps a slab's label, coordinate and lookup
#: arrays near 200 MB even for a model that materialises float64 LPS coordinates.
DEFAULT_MAX_SUBVOXELS = 1 << 22

_F = NDArray[np.float64]

_KNOWN_LABELS = np.zeros(256, dtype=bool)
_KNOWN_LABELS[[int(t) for t in Tissue]] = True


@runtime_checkable
class TissueModel(Protocol):
    """Anything that can say which tissue lies at the centres of the voxels of a grid."""

    def labels_on(self, geometry: Geometry) -> NDArray[np.uint8]:
        """Tissue labels (:class:`Tissue` values) at the voxel centres of ``geometry``.

        Parameters
        ----------
        geometry : Geometry
            Any grid: a slab, a supersampled grid, an oblique grid.

        Returns
        -------
        ndarray of uint8, shape ``geometry.shape``
        """
        ...


# -- grids -----------------------------------------------------------------------------------
def _factor3(factor: int | Sequence[int], name: str = "supersample") -> tuple[int, int, int]:
    if isinstance(factor, int | np.integer | float):
        values: tuple[object, ...] = (factor,) * 3
    else:
        values = tuple(factor)
    if len(values) != 3 or not all(
        isinstance(f, int | np.integer) and not isinstance(f, bool) and f >= 1 for f in values
    ):
        raise PhantomParameterError(
            f"{name} must be a positive integer or three positive integers, got {factor!r}",
            path=name,
            fix="use e.g. 1 (no supersampling), 2 or 3 sub-voxels per voxel edge",
        )
    return (int(values[0]), int(values[1]), int(values[2]))  # type: ignore[call-overload]


def supersampled(geometry: Geometry, factor: int | Sequence[int]) -> Geometry:
    """The sub-voxel grid with ``factor`` sub-voxels per voxel edge.

    The sub-voxels tile each coarse voxel exactly, so the mean of the centres of the
    ``factor**3`` sub-voxels of a block is the centre of the coarse voxel.

    Parameters
    ----------
    geometry : Geometry
        The output (coarse) grid.
    factor : int or sequence of 3 int
        Sub-voxels per voxel edge, per array axis.

    Returns
    -------
    Geometry
        Shape ``geometry.shape * factor``, spacing ``geometry.spacing_mm / factor``, same
        orientation.
    """
    f = np.asarray(_factor3(factor), dtype=np.float64)
    columns = geometry.affine[:3, :3]
    affine = np.eye(4)
    affine[:3, :3] = columns / f
    # Sub-voxel 0 of coarse voxel 0 sits (f - 1) / (2 f) coarse steps before its centre.
    affine[:3, 3] = geometry.affine[:3, 3] - columns @ ((f - 1.0) / (2.0 * f))
    shape = tuple(int(n * k) for n, k in zip(geometry.shape, f, strict=True))
    return Geometry(shape, affine)  # type: ignore[arg-type]


def sub_geometry(geometry: Geometry, start: Sequence[int], shape: Sequence[int]) -> Geometry:
    """The block of ``geometry`` of ``shape`` voxels starting at voxel index ``start``."""
    affine = np.array(geometry.affine, copy=True)
    affine[:3, 3] = geometry.index_to_lps(np.asarray(start, dtype=np.float64))
    return Geometry(tuple(int(n) for n in shape), affine)  # type: ignore[arg-type]


def iter_slabs(geometry: Geometry, *, max_voxels: int) -> Iterator[tuple[slice, Geometry]]:
    """Split ``geometry`` into slabs of whole planes along array axis 0.

    Parameters
    ----------
    geometry : Geometry
        The grid to split.
    max_voxels : int
        Largest number of voxels in one slab (a slab holds at least one plane).

    Yields
    ------
    slice, Geometry
        The axis-0 index range of the slab and the slab's own grid.
    """
    if max_voxels < 1:
        raise PhantomParameterError(
            f"max_voxels must be at least 1, got {max_voxels}", path="max_voxels"
        )
    n0, n1, n2 = geometry.shape
    planes = max(1, max_voxels // (n1 * n2))
    for i0 in range(0, n0, planes):
        i1 = min(n0, i0 + planes)
        yield slice(i0, i1), sub_geometry(geometry, (i0, 0, 0), (i1 - i0, n1, n2))


def _block_reduce(array: NDArray[Any], factors: tuple[int, int, int], ufunc: np.ufunc) -> Any:
    """Reduce non-overlapping blocks with a binary ufunc, axis by axis over strided slices.

    About ten times faster than reducing a reshaped 6-D view over its short block axes.
    """
    total = array
    for axis in (2, 1, 0):
        f = factors[axis]
        if f == 1:
            continue
        index: list[slice] = [slice(None)] * 3
        index[axis] = slice(0, None, f)
        first = total[tuple(index)]
        index[axis] = slice(1, None, f)
        acc = ufunc(first, total[tuple(index)])
        for s in range(2, f):
            index[axis] = slice(s, None, f)
            ufunc(acc, total[tuple(index)], out=acc)
        total = acc
    return total


def block_mean(array: NDArray[np.generic], factor: int | Sequence[int]) -> NDArray[np.generic]:
    """Mean over non-overlapping blocks of ``factor`` elements along each of the 3 axes."""
    factors = _factor3(factor)
    if factors == (1, 1, 1):
        return array
    total = _block_reduce(array, factors, np.add)
    return total / np.asarray(np.prod(factors), dtype=total.real.dtype)


def sample_labels(model: TissueModel, geometry: Geometry) -> NDArray[np.uint8]:
    """Ask ``model`` for labels on ``geometry`` and check what it returns."""
    labels = np.asarray(model.labels_on(geometry))
    if labels.shape != geometry.shape or labels.dtype != np.uint8:
        raise PhantomParameterError(
            f"{type(model).__name__}.labels_on returned {labels.dtype} of shape {labels.shape}"
            f" for a grid of shape {geometry.shape}",
            path="model",
            fix="return a uint8 array of Tissue labels with the grid's shape",
        )
    return labels


def average_tables(
    model: TissueModel,
    geometry: Geometry,
    tables: Sequence[NDArray[np.generic]],
    *,
    supersample: int | Sequence[int] = 3,
    max_subvoxels: int = DEFAULT_MAX_SUBVOXELS,
    out: Sequence[NDArray[np.generic]] | None = None,
) -> list[NDArray[np.generic]]:
    """Partial-volume average of per-tissue quantities over each output voxel.

    For every output voxel the model is sampled on ``supersample**3`` sub-voxels, each
    sub-voxel's label is looked up in every table and the values are averaged. A voxel whose
    sub-voxels all carry one label takes that label's table value exactly; only mixed voxels
    are looked up sub-voxel by sub-voxel, which makes the common case cheap.

    Parameters
    ----------
    model : TissueModel
        The phantom.
    geometry : Geometry
        The output grid.
    tables : sequence of ndarray of shape (256,)
        Per-label lookup tables (float or complex), indexed by label value.
    supersample : int or sequence of 3 int
        Sub-voxels per voxel edge.
    max_subvoxels : int
        Sub-voxels processed at once (bounds memory).
    out : sequence of ndarray, optional
        Arrays of shape ``geometry.shape`` to write into (one per table), e.g. views into a
        stacked multi-echo array.

    Returns
    -------
    list of ndarray
        One array of shape ``geometry.shape`` per table (``out`` when given).

    Raises
    ------
    PhantomParameterError
        When the model returns labels that are not :class:`Tissue` values.
    """
    factor = _factor3(supersample)
    for table in tables:
        if table.shape != (256,):
            raise PhantomParameterError(
                f"lookup tables need 256 entries (one per uint8 label), got {table.shape}"
            )
    if out is None:
        outputs = [np.empty(geometry.shape, dtype=t.dtype) for t in tables]
    else:
        outputs = list(out)
        if len(outputs) != len(tables) or any(o.shape != geometry.shape for o in outputs):
            raise PhantomParameterError(
                f"out needs {len(tables)} arrays of shape {geometry.shape}", path="out"
            )
    per_voxel = int(np.prod(factor))
    for index, slab in iter_slabs(geometry, max_voxels=max(1, max_subvoxels // per_voxel)):
        labels = sample_labels(model, supersampled(slab, factor))
        coarse, mixed_idx, mixed_labels = _split_uniform_blocks(labels, factor)
        known = _KNOWN_LABELS[coarse].all() and _KNOWN_LABELS[mixed_labels].all()
        if not known:
            found = np.union1d(np.unique(coarse), np.unique(mixed_labels))
            bad = [int(v) for v in found if not _KNOWN_LABELS[v]]
            raise PhantomParameterError(
                f"the model produced labels {bad} that are not Tissue values",
                path="model",
                fix="draw with synthct.imaging.labels.Tissue members only",
            )
        for table, result in zip(tables, outputs, strict=True):
            values = table[coarse]
            if mixed_labels.size:
                values[mixed_idx] = table[mixed_labels].sum(axis=1) / per_voxel
            result[index] = values
    return outputs


def _split_uniform_blocks(
    labels: NDArray[np.uint8], factor: tuple[int, int, int]
) -> tuple[NDArray[np.uint8], tuple[NDArray[np.intp], ...], NDArray[np.uint8]]:
    """Separate voxels whose sub-voxels share one label from mixed (partial-volume) ones.

    Returns the per-voxel label (valid where uniform), the indices of the mixed voxels and
    their sub-voxel labels, shape ``(n_mixed, prod(factor))``. Most voxels of a phantom are
    uniform, so tables are then looked up per voxel and only mixed voxels per sub-voxel.
    """
    if factor == (1, 1, 1):
        return labels, (np.empty(0, np.intp),) * 3, np.empty((0, 1), np.uint8)
    lo = _block_reduce(labels, factor, np.minimum)
    hi = _block_reduce(labels, factor, np.maximum)
    mixed_idx = np.nonzero(lo != hi)
    f0, f1, f2 = factor
    blocks = labels.reshape(lo.shape[0], f0, lo.shape[1], f1, lo.shape[2], f2)
    # Advanced indices on axes 0, 2, 4 (not adjacent) put the voxel axis first.
    mixed = blocks[mixed_idx[0], :, mixed_idx[1], :, mixed_idx[2], :]
    return lo, mixed_idx, mixed.reshape(len(mixed_idx[0]), f0 * f1 * f2)


def tissue_fraction(
    model: TissueModel,
    geometry: Geometry,
    tissues: Tissue | Sequence[Tissue],
    *,
    supersample: int | Sequence[int] = 3,
    max_subvoxels: int = DEFAULT_MAX_SUBVOXELS,
) -> NDArray[np.float32]:
    """Fraction of each voxel of ``geometry`` occupied by ``tissues`` (0 to 1).

    Useful as a partial-volume ground-truth mask of a lesion or tissue class.
    """
    table = np.zeros(256, dtype=np.float32)
    table[[int(t) for t in np.atleast_1d(np.asarray(tissues, dtype=np.int64))]] = 1.0
    (fraction,) = average_tables(
        model, geometry, [table], supersample=supersample, max_subvoxels=max_subvoxels
    )
    return fraction.astype(np.float32, copy=False)


# -- primitive shapes ------------------------------------------------------------------------
def _as_rotation(axes: ArrayLike | None, name: str) -> NDArray[np.float64]:
    if axes is None:
        return np.eye(3)
    r = np.asarray(axes, dtype=np.float64)
    if r.shape != (3, 3) or not np.allclose(r.T @ r, np.eye(3), atol=1e-6):
        raise PhantomParameterError(
            f"{name} must be an orthonormal 3x3 matrix (columns = the shape's axes in LPS)",
            path=name,
        )
    return r


def _positive(name: str, values: Sequence[float]) -> tuple[float, ...]:
    out = tuple(float(v) for v in values)
    if not all(np.isfinite(v) and v > 0 for v in out):
        raise PhantomParameterError(
            f"{name} must be positive and finite, got {list(out)} mm", path=name
        )
    return out


@dataclass(frozen=True, eq=False, kw_only=True)
class Shape:
    """Base of the primitive shapes: a solid of one tissue in its own frame.

    ``center_lps_mm`` is the centre of the shape; ``axes`` is an orthonormal 3x3 matrix whose
    columns are the shape's local u, v, w axes in LPS (identity: u = L, v = P, w = S).
    A point on the surface counts as inside.
    """

    tissue: Tissue
    center_lps_mm: tuple[float, float, float]
    axes: NDArray[np.float64] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tissue", Tissue(self.tissue))
        c = np.asarray(self.center_lps_mm, dtype=np.float64)
        if c.shape != (3,) or not np.all(np.isfinite(c)):
            raise PhantomParameterError(
                f"center_lps_mm must be 3 finite numbers, got {self.center_lps_mm!r}",
                path="center_lps_mm",
            )
        object.__setattr__(self, "center_lps_mm", (float(c[0]), float(c[1]), float(c[2])))
        object.__setattr__(self, "axes", _as_rotation(self.axes, "axes"))

    @property
    def rotation(self) -> NDArray[np.float64]:
        """Columns: the local u, v, w axes in LPS."""
        assert self.axes is not None
        return self.axes

    def half_extent_mm(self) -> NDArray[np.float64]:
        """Half the size of the shape's bounding box along its local u, v, w axes."""
        raise NotImplementedError

    def inside_local(self, u: _F, v: _F, w: _F) -> NDArray[np.bool_]:
        """Whether local coordinates (mm, relative to the centre) lie in the shape."""
        raise NotImplementedError

    def bounds_lps_mm(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Lower and upper LPS corners of an axis-aligned box enclosing the shape."""
        half = np.abs(self.rotation) @ self.half_extent_mm()
        c = np.asarray(self.center_lps_mm)
        return c - half, c + half

    def contains(self, points_lps_mm: ArrayLike) -> NDArray[np.bool_]:
        """Whether LPS points (shape ``(..., 3)``, mm) lie in the shape."""
        p = np.asarray(points_lps_mm, dtype=np.float64) - np.asarray(self.center_lps_mm)
        local = p @ self.rotation
        return self.inside_local(local[..., 0], local[..., 1], local[..., 2])


@dataclass(frozen=True, eq=False, kw_only=True)
class Sphere(Shape):
    """A ball of ``radius_mm`` around ``center_lps_mm``."""

    radius_mm: float

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("radius_mm", [self.radius_mm])

    def half_extent_mm(self) -> NDArray[np.float64]:
        return np.full(3, float(self.radius_mm))

    def inside_local(self, u: _F, v: _F, w: _F) -> NDArray[np.bool_]:
        return u * u + v * v + w * w <= self.radius_mm**2

    @property
    def volume_mm3(self) -> float:
        """Volume of the ball."""
        return float(4.0 / 3.0 * np.pi * self.radius_mm**3)


@dataclass(frozen=True, eq=False, kw_only=True)
class Ellipsoid(Shape):
    """An ellipsoid with semi-axes ``radii_mm`` along the local u, v, w axes."""

    radii_mm: tuple[float, float, float]

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "radii_mm", _positive("radii_mm", self.radii_mm))

    def half_extent_mm(self) -> NDArray[np.float64]:
        return np.asarray(self.radii_mm, dtype=np.float64)

    def inside_local(self, u: _F, v: _F, w: _F) -> NDArray[np.bool_]:
        a, b, c = self.radii_mm
        return (u / a) ** 2 + (v / b) ** 2 + (w / c) ** 2 <= 1.0


@dataclass(frozen=True, eq=False, kw_only=True)
class Box(Shape):
    """A rectangular box with full edge lengths ``size_mm`` along the local u, v, w axes."""

    size_mm: tuple[float, float, float]

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "size_mm", _positive("size_mm", self.size_mm))

    def half_extent_mm(self) -> NDArray[np.float64]:
        return np.asarray(self.size_mm, dtype=np.float64) / 2.0

    def inside_local(self, u: _F, v: _F, w: _F) -> NDArray[np.bool_]:
        a, b, c = (s / 2.0 for s in self.size_mm)
        return (np.abs(u) <= a) & (np.abs(v) <= b) & (np.abs(w) <= c)


@dataclass(frozen=True, eq=False, kw_only=True)
class Cylinder(Shape):
    """A solid circular cylinder: ``radius_mm`` around the local w axis, ``length_mm`` long."""

    radius_mm: float
    length_mm: float

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("radius_mm/length_mm", [self.radius_mm, self.length_mm])

    def half_extent_mm(self) -> NDArray[np.float64]:
        return np.array([self.radius_mm, self.radius_mm, self.length_mm / 2.0])

    def inside_local(self, u: _F, v: _F, w: _F) -> NDArray[np.bool_]:
        return (u * u + v * v <= self.radius_mm**2) & (np.abs(w) <= self.length_mm / 2.0)


def axes_from_direction(direction_lps: ArrayLike) -> NDArray[np.float64]:
    """An orthonormal frame whose third column (local w) points along ``direction_lps``.

    Handy for cylinders: ``Cylinder(..., axes=axes_from_direction((0, 0.2, 1)))``.
    """
    w = np.asarray(direction_lps, dtype=np.float64)
    norm = float(np.linalg.norm(w))
    if w.shape != (3,) or not np.isfinite(norm) or norm == 0:
        raise PhantomParameterError(
            f"direction_lps must be a non-zero 3-vector, got {direction_lps!r}",
            path="direction_lps",
        )
    w = w / norm
    helper = np.eye(3)[int(np.argmin(np.abs(w)))]
    u = np.cross(helper, w)
    u /= np.linalg.norm(u)
    return np.column_stack([u, np.cross(w, u), w])


class ShapesModel:
    """A known-answer phantom: a background tissue with primitive shapes painted on it.

    Shapes are painted in order, so later shapes override earlier ones where they overlap.

    Parameters
    ----------
    shapes : sequence of Shape
        Spheres, ellipsoids, boxes and cylinders, each with its tissue.
    background : Tissue
        Tissue everywhere no shape covers.
    """

    def __init__(self, shapes: Sequence[Shape] = (), *, background: Tissue = Tissue.AIR) -> None:
        self.shapes: tuple[Shape, ...] = tuple(shapes)
        self.background = Tissue(background)
        for i, s in enumerate(self.shapes):
            if not isinstance(s, Shape):
                raise PhantomParameterError(
                    f"shapes[{i}] is a {type(s).__name__}, not a Shape", path="shapes"
                )

    def labels_on(self, geometry: Geometry) -> NDArray[np.uint8]:
        """Tissue labels at the voxel centres of ``geometry``."""
        out = np.full(geometry.shape, int(self.background), dtype=np.uint8)
        for shape in self.shapes:
            block = _index_block(geometry, shape)
            if block is None:
                continue
            u, v, w = _local_coordinates(geometry, block, shape)
            inside = shape.inside_local(u, v, w)
            view = out[block]
            view[np.broadcast_to(inside, view.shape)] = int(shape.tissue)
        return out

    def __repr__(self) -> str:
        return f"ShapesModel({len(self.shapes)} shapes, background={self.background.name})"


def _index_block(geometry: Geometry, shape: Shape) -> tuple[slice, slice, slice] | None:
    """Index ranges of ``geometry`` that can hold points of ``shape`` (None when none)."""
    lo, hi = shape.bounds_lps_mm()
    corners = np.array(np.meshgrid(*zip(lo, hi, strict=True), indexing="ij")).reshape(3, -1).T
    ijk = geometry.lps_to_index(corners)
    start = np.maximum(np.ceil(ijk.min(axis=0) - 1e-6), 0).astype(int)
    stop = np.minimum(np.floor(ijk.max(axis=0) + 1e-6) + 1, geometry.shape).astype(int)
    if np.any(stop <= start):
        return None
    return (slice(start[0], stop[0]), slice(start[1], stop[1]), slice(start[2], stop[2]))


def _local_coordinates(
    geometry: Geometry, block: tuple[slice, slice, slice], shape: Shape
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Shape-frame coordinates of the voxel centres in ``block`` (broadcastable arrays).

    Each local coordinate is an affine function of (i, j, k), built from 1-D ramps. A local
    axis parallel to a grid axis depends on one index only and stays a thin (n, 1, 1)-like
    array, so for axis-aligned shapes only the final test in ``inside_local`` is full size.
    """
    r = shape.rotation
    step = r.T @ geometry.affine[:3, :3]  # local mm per voxel step, [local axis, array axis]
    offset = r.T @ (geometry.affine[:3, 3] - np.asarray(shape.center_lps_mm))
    # Round-off below 1e-12 of a voxel step is not a real dependence on that axis.
    step[np.abs(step) < 1e-12 * np.abs(step).max()] = 0.0
    ramps = [np.arange(s.start, s.stop, dtype=np.float64) for s in block]
    ramps3 = (ramps[0][:, None, None], ramps[1][None, :, None], ramps[2][None, None, :])
    coords = []
    for m in range(3):
        c: NDArray[np.float64] = np.full((1, 1, 1), offset[m])
        for axis in range(3):
            if step[m, axis] != 0.0:
                c = c + step[m, axis] * ramps3[axis]
        coords.append(c)
    return coords[0], coords[1], coords[2]


# -- seeded randomness -----------------------------------------------------------------------
def check_seed(seed: int) -> int:
    """Return ``seed`` as an int, or raise when it is not a non-negative integer."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise PhantomParameterError(
            f"seed must be a non-negative integer, got {seed!r}", path="seed"
        )
    return int(seed)


def rng_for(seed: int, *key: int) -> np.random.Generator:
    """An independent random stream for ``seed`` and a key (a stream id, a plane index...).

    Noise is drawn plane by plane along array axis 0 with the plane index in the key, so a
    volume's noise does not depend on how rendering was split into slabs.
    """
    return np.random.default_rng(np.random.SeedSequence(entropy=check_seed(seed), spawn_key=key))
