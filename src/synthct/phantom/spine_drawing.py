"""Drawing the spine's structures into a label array, each only inside its own index box.

Called by :meth:`synthct.phantom.anatomy.SpineModel.labels_on` in this order (later layers
override earlier ones): body outline (air, subcutaneous fat, soft tissue, paraspinal
muscle), discs, bones (one union per vertebra, so the cortical shell is only at the outer
surface), then the canal (epidural fat, ligaments, dura, CSF, cord).

Shapes are modelling choices sized by the level table (:mod:`synthct.phantom.levels`): the
vertebral body is a rounded-rectangle cylinder (superellipse exponent 3); the pedicles and
laminae are parts of elliptic rings around the canal; the articular pillars are vertical
elliptic cylinders with a ~1 mm facet joint gap at the disc mid-plane; spinous and
transverse processes are ellipsoids.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from synthct.imaging.labels import Tissue
from synthct.phantom.implicit import (
    Box,
    FloatArray,
    GridSampler,
    ellipsoid_depth,
    local_box_to_lps,
    paint,
    superellipse_depth,
)
from synthct.phantom.levels import region_of

if TYPE_CHECKING:
    from synthct.phantom.anatomy import Segment, SpineModel

#: Epidural fat fills background voxels this far (mm) outside the bony canal (recesses).
FILL_MARGIN_MM = 1.5
#: Largest chunk (voxels) of the body-outline pass, to bound temporary memory.
_MAX_CHUNK_VOXELS = 4_000_000
#: Length (mm) of the pieces in which a segment's canal is evaluated.
_CANAL_CHUNK_MM = 12.0
#: Facet joint gap at the disc mid-plane, mm.
_FACET_GAP_MM = 1.2

DepthFn = Callable[[FloatArray, FloatArray, FloatArray], FloatArray]
_BACKGROUND = (Tissue.AIR, Tissue.SUBCUTANEOUS_FAT, Tissue.MUSCLE, Tissue.SOFT_TISSUE)


def draw_background(model: SpineModel, sampler: GridSampler, out: NDArray[np.uint8]) -> None:
    """Air, subcutaneous fat, ventral soft tissue and paraspinal muscle from axial ellipses.

    At each height the lean body is an ellipse whose dorsal edge lies ``back_depth`` behind
    the canal; fat surrounds it; the paraspinal muscle is an ellipse from the vertebral body
    centre to the dorsal edge.
    """
    fat = np.float32(model.spec.subcutaneous_fat_mm)
    for box in iter_chunks(sampler.full_box()):
        x, y, z = sampler.points(box)
        xs, ys, s = model.line_at_height(z)
        lean_a, lean_b, back, muscle_a, body_v = model.params_at(
            s, ("lean_a", "lean_b", "back", "muscle_a", "body_v")
        )
        dx = (x - xs).astype(np.float32)
        dy = (y - ys).astype(np.float32)
        dy_body = dy - (back - lean_b)
        outer = _sq(dx / (lean_a + fat)) + _sq(dy_body / (lean_b + fat)) <= 1
        lean = _sq(dx / lean_a) + _sq(dy_body / lean_b) <= 1
        muscle_b = 0.5 * (back - body_v)
        muscle = _sq(dx / muscle_a) + _sq((dy - (back - muscle_b)) / muscle_b) <= 1
        paint(out, box, outer, Tissue.SUBCUTANEOUS_FAT)
        paint(out, box, lean, Tissue.SOFT_TISSUE)
        paint(out, box, lean & muscle, Tissue.MUSCLE)


def draw_discs(
    model: SpineModel, seg: Segment, sampler: GridSampler, out: NDArray[np.uint8]
) -> None:
    """The halves of the discs above and below a vertebra, in its frame.

    A disc between two drawn vertebrae is drawn from both sides over 1.5 times its height
    (bones drawn later trim the excess), so a wedge-shaped disc is filled completely.
    """
    h = seg.dims.body_height_mm
    first, last = model.segments[0], model.segments[-1]
    parts = []
    if seg.disc_above_mm > 0:
        ext = seg.disc_above_mm * (1.0 if seg is first else 1.5)
        parts.append((h / 2, h / 2 + ext))
    if seg.disc_below_mm > 0:
        ext = seg.disc_below_mm * (1.0 if seg is last else 1.5)
        parts.append((-h / 2 - ext, -h / 2))
    for w0, w1 in parts:
        a, b, v0 = model.params_at(
            np.array([seg.s_mm + w0, seg.s_mm + w1]), ("body_a", "body_b", "body_v")
        )
        lo = (-a.max(), (v0 - b).min(), w0)
        hi = (a.max(), (v0 + b).max(), w1)
        box = sampler.box(*local_box_to_lps(seg.origin, seg.axes, lo, hi))
        if box is None:
            continue
        u, v, w = seg.local(sampler.points(box))
        pa, pb, pv = model.params_at(seg.s_mm + w, ("body_a", "body_b", "body_v"))
        inside = superellipse_depth(u, v - pv, pa, pb, n=3) >= 0
        paint(out, box, inside & (w >= w0) & (w <= w1), Tissue.DISC)


def draw_bones(
    model: SpineModel, seg: Segment, sampler: GridSampler, out: NDArray[np.uint8]
) -> None:
    """One vertebra: the union of its parts, cortical within the shell thickness."""
    parts = []
    for lo, hi, fn in vertebra_parts(model, seg):
        box = sampler.box(*local_box_to_lps(seg.origin, seg.axes, lo, hi))
        if box is not None:
            parts.append((box, fn))
    if not parts:
        return
    union = tuple(
        slice(min(b[a].start for b, _ in parts), max(b[a].stop for b, _ in parts)) for a in range(3)
    )
    shape = tuple(sl.stop - sl.start for sl in union)
    depth = np.full(shape, -1.0, dtype=np.float32)
    for box, fn in parts:
        u, v, w = seg.local(sampler.points(box))
        sub = tuple(
            slice(b.start - ub.start, b.stop - ub.start) for b, ub in zip(box, union, strict=True)
        )
        view = depth[sub]
        np.maximum(view, fn(u, v, w), out=view)
    t = np.float32(model.spec.cortical_thickness_mm)
    region: Box = (union[0], union[1], union[2])
    paint(out, region, (depth > 0) & (depth < t), Tissue.CORTICAL_BONE)
    paint(out, region, depth >= t, Tissue.CANCELLOUS_BONE)


def vertebra_parts(
    model: SpineModel, seg: Segment
) -> list[tuple[tuple[float, float, float], tuple[float, float, float], DepthFn]]:
    """The bony parts of one vertebra: local bounding box and depth function of ``(u, v, w)``."""
    dm = seg.dims
    region = region_of(seg.index)
    h = dm.body_height_mm
    a_b, b_b = dm.body_width_mm / 2, dm.body_depth_mm / 2
    a_c, b_c = dm.canal_width_mm / 2 * 1.05, dm.canal_ap_mm / 2 * 1.05  # bbox slack
    v_b = -(dm.canal_ap_mm / 2 + b_b)
    s0 = seg.s_mm

    def canal(u: FloatArray, v: FloatArray, w: FloatArray, grow: float = 0.0) -> FloatArray:
        ca, cb = model.params_at(s0 + w, ("canal_a", "canal_b"))
        return superellipse_depth(u, v, ca + np.float32(grow), cb + np.float32(grow))

    def body(u: FloatArray, v: FloatArray, w: FloatArray) -> FloatArray:
        return np.minimum(superellipse_depth(u, v - v_b, a_b, b_b, n=3), h / 2 - np.abs(w))

    parts: list[tuple[tuple[float, float, float], tuple[float, float, float], DepthFn]] = [
        ((-a_b, v_b - b_b, -h / 2), (a_b, v_b + b_b, h / 2), body)
    ]

    # Pedicles: the ventral half of a ring around the canal, in the cranial part of the body.
    pw = dm.pedicle_width_mm
    p_top, p_bot = h / 2 - 0.5, max(h / 2 - dm.pedicle_height_mm, -h / 2)
    p_cut = 0.25 * b_c

    def pedicles(u: FloatArray, v: FloatArray, w: FloatArray) -> FloatArray:
        d = np.minimum(canal(u, v, w, pw), -canal(u, v, w))
        return np.minimum(np.minimum(d, p_cut - v), np.minimum(p_top - w, w - p_bot))

    parts.append(((-a_c - pw, -b_c - pw, p_bot), (a_c + pw, p_cut, p_top), pedicles))

    # Laminae: the dorsal half of a thinner ring, shifted caudally (they shingle).
    lt = dm.lamina_thickness_mm
    l_top, l_bot = h / 2 - 1.5, -h / 2 - 0.6 * seg.disc_below_mm

    def laminae(u: FloatArray, v: FloatArray, w: FloatArray) -> FloatArray:
        ca, cb = model.params_at(s0 + w, ("canal_a", "canal_b"))
        outer = superellipse_depth(u, v, ca + np.float32(lt + 2.0), cb + np.float32(lt))
        d = np.minimum(np.minimum(outer, -superellipse_depth(u, v, ca, cb)), v)
        return np.minimum(d, np.minimum(l_top - w, w - l_bot))

    parts.append(((-a_c - lt - 2, -0.5, l_bot), (a_c + lt + 2, b_c + lt, l_top), laminae))

    # Articular pillars (lateral masses), with a facet gap at each disc mid-plane.
    fw = dm.facet_width_mm
    fu, fv = dm.canal_width_mm / 2 + 0.3 * fw, 0.3 * dm.canal_ap_mm / 2
    ra, rb = fw / 2, 0.45 * fw
    f_top = h / 2 + max(seg.disc_above_mm / 2 - _FACET_GAP_MM / 2, 0.0)
    f_bot = -h / 2 - max(seg.disc_below_mm / 2 - _FACET_GAP_MM / 2, 0.0)
    for side in (-1.0, 1.0):

        def pillar(u: FloatArray, v: FloatArray, w: FloatArray, side: float = side) -> FloatArray:
            d = superellipse_depth(u - side * fu, v - fv, ra, rb)
            d = np.minimum(d, -canal(u, v, w))
            return np.minimum(d, np.minimum(f_top - w, w - f_bot))

        lo_u, hi_u = side * fu - ra, side * fu + ra
        parts.append(((lo_u, fv - rb, f_bot), (hi_u, fv + rb, f_top), pillar))

    # Spinous process: an ellipsoid from the dorsal canal wall, inclined caudally.
    sp_len = dm.spinous_length_mm
    phi = np.radians(dm.spinous_angle_deg)
    axis = np.array([0.0, np.cos(phi), -np.sin(phi)])
    normal = np.array([0.0, np.sin(phi), np.cos(phi)])
    r_u, r_n = {"cervical": (2.5, 4.0), "thoracic": (3.5, 5.0)}.get(region, (4.0, 8.0))
    start = np.array([0.0, dm.canal_ap_mm / 2, 0.5 * (l_top + l_bot)])
    parts.append(
        _ellipsoid_part(start + axis * sp_len / 2, axis, normal, (r_u, sp_len / 2 + 1.0, r_n))
    )

    # Transverse processes: ellipsoids from the pillars, tilted dorsally (<0: ventrally).
    beta = np.radians(dm.transverse_angle_deg)
    r_v, r_w = {"cervical": (3.0, 3.5), "thoracic": (5.0, 5.5), "lumbar": (3.0, 6.0)}.get(
        region, (9.0, 10.0)
    )
    tp_len = max((dm.transverse_span_mm / 2 - fu) / np.cos(beta), 2.0)
    for side in (-1.0, 1.0):
        direction = np.array([side * np.cos(beta), np.sin(beta), 0.0])
        origin = np.array([side * fu, fv, 0.2 * h])
        perp = np.array([-side * np.sin(beta), np.cos(beta), 0.0])
        parts.append(
            _ellipsoid_part(
                origin + direction * tp_len / 2,
                direction,
                perp,
                (r_w, tp_len / 2 + 2.0, r_v),
                third_axis_is_w=True,
            )
        )
    return parts


def _ellipsoid_part(
    centre: NDArray[np.float64],
    axis: NDArray[np.float64],
    second: NDArray[np.float64],
    radii: tuple[float, float, float],
    *,
    third_axis_is_w: bool = False,
) -> tuple[tuple[float, float, float], tuple[float, float, float], DepthFn]:
    """An ellipsoid in a vertebra's frame with its long semi-axis ``radii[1]`` along ``axis``.

    ``radii[0]`` lies along ``u`` (or along ``w`` when ``third_axis_is_w``) and ``radii[2]``
    along ``second``.
    """
    other = np.array([0.0, 0.0, 1.0]) if third_axis_is_w else np.array([1.0, 0.0, 0.0])
    frame = np.column_stack([other, axis, second])
    extent = np.abs(frame) @ np.asarray(radii)
    c = [np.float32(x) for x in centre]
    m = frame.astype(np.float32)

    def depth(u: FloatArray, v: FloatArray, w: FloatArray) -> FloatArray:
        du, dv, dw = u - c[0], v - c[1], w - c[2]
        coords = [du * m[0, k] + dv * m[1, k] + dw * m[2, k] for k in range(3)]
        return ellipsoid_depth(coords[0], coords[1], coords[2], *radii)

    lo = centre - extent
    hi = centre + extent
    return (
        (float(lo[0]), float(lo[1]), float(lo[2])),
        (float(hi[0]), float(hi[1]), float(hi[2])),
        depth,
    )


def draw_canal(
    model: SpineModel, seg: Segment, sampler: GridSampler, out: NDArray[np.uint8]
) -> None:
    """Epidural fat, ligaments (PLL, flavum), dura, CSF and cord within a segment's slab."""
    w_lo, w_hi = _slab_w_range(seg, sampler)
    if w_hi <= w_lo:
        return
    s_probe = seg.s_mm + np.linspace(w_lo, w_hi, 64)
    ca_max, cb_max = model.params_at(s_probe, ("canal_a", "canal_b")).max(axis=1)
    half_u, half_v = float(ca_max) + FILL_MARGIN_MM, float(cb_max) + FILL_MARGIN_MM
    t_dura = np.float32(model.spec.dura_thickness_mm)
    n_chunks = max(1, int(np.ceil((w_hi - w_lo) / _CANAL_CHUNK_MM)))
    edges = np.linspace(w_lo, w_hi, n_chunks + 1)
    for w0, w1 in itertools.pairwise(edges):
        lo, hi = local_box_to_lps(
            seg.origin, seg.axes, (-half_u, -half_v, w0), (half_u, half_v, w1)
        )
        box = sampler.box(lo, hi)
        if box is None:
            continue
        xyz = sampler.points(box)
        u, v, w = seg.local(xyz)
        region = seg.in_slab(xyz) & (w >= w0) & (w < w1)
        names = (
            "canal_a",
            "pll",
            "flavum",
            "ventral",
            "dorsal",
            "cord_a",
            "cord_b",
            "cord_du",
            "cord_dv",
            "cord_quu",
            "cord_quv",
            "cord_qvv",
        )
        p = dict(zip(names, model.params_at(seg.s_mm + w, names), strict=True))
        d_canal, d_sac = model.canal_depths(u, v, seg.s_mm + w)
        view = out[box]
        background = np.isin(view, _BACKGROUND)
        paint(out, box, region & (d_canal > -FILL_MARGIN_MM) & background, Tissue.EPIDURAL_FAT)
        canal = region & (d_canal >= 0)
        paint(out, box, canal, Tissue.EPIDURAL_FAT)
        abs_u = np.abs(u)
        pll = (v < 0) & (d_canal < p["pll"]) & (abs_u < 0.5 * p["canal_a"])
        flavum = (v > 0) & (d_canal < p["flavum"]) & (abs_u < 0.85 * p["canal_a"])
        paint(out, box, canal & (pll | flavum), Tissue.LIGAMENT)
        paint(out, box, region & (d_sac >= 0), Tissue.DURA)
        paint(out, box, region & (d_sac >= t_dura), Tissue.CSF)
        xu = u - p["cord_du"]
        xv = v - (0.5 * (p["ventral"] - p["dorsal"]) + p["cord_dv"])
        yu = xu + p["cord_quu"] * xu + p["cord_quv"] * xv
        yv = xv + p["cord_quv"] * xu + p["cord_qvv"] * xv
        cord_a, cord_b = p["cord_a"], p["cord_b"]
        d_cord = superellipse_depth(yu, yv, np.maximum(cord_a, 0.05), np.maximum(cord_b, 0.05))
        paint(out, box, region & (d_cord >= 0) & (cord_a > 0.1), Tissue.SPINAL_CORD)


def _slab_w_range(seg: Segment, sampler: GridSampler) -> tuple[float, float]:
    """The ``w`` interval of a segment's slab that can meet the grid (ends clipped to it)."""
    corners = sampler.corners_lps()
    w_grid = (corners - seg.origin) @ seg.axes[:, 2]
    pad = 4.0  # the disc mid-planes are tilted against the segment frame
    w_lo = seg.s_low_mm - seg.s_mm - pad if np.isfinite(seg.s_low_mm) else w_grid.min() - pad
    w_hi = seg.s_high_mm - seg.s_mm + pad if np.isfinite(seg.s_high_mm) else w_grid.max() + pad
    return float(max(w_lo, w_grid.min() - pad)), float(min(w_hi, w_grid.max() + pad))


def iter_chunks(box: Box) -> Iterator[Box]:
    """Split a box along axis 0 into pieces of at most ``_MAX_CHUNK_VOXELS`` voxels.

    Parameters
    ----------
    box : Box
        Index box of a grid.

    Yields
    ------
    Box
        Consecutive pieces of ``box`` along axis 0.
    """
    n0 = box[0].stop - box[0].start
    per_slice = max((box[1].stop - box[1].start) * (box[2].stop - box[2].start), 1)
    step = max(1, _MAX_CHUNK_VOXELS // per_slice)
    for start in range(box[0].start, box[0].stop, step):
        yield (slice(start, min(start + step, box[0].start + n0)), box[1], box[2])


def _sq(x: NDArray[np.float32]) -> NDArray[np.float32]:
    return x * x
