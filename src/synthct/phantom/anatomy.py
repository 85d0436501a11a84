"""The spine phantom's anatomy: a seeded, curved spine evaluated as an implicit tissue model.

Conventions: LPS millimetres (``x`` to the patient's left, ``y`` posterior, ``z`` cranial); the
patient lies supine. The spine is laid out along the *canal line*, a smooth curve with
cervical lordosis, thoracic kyphosis, lumbar lordosis and an optional mild scoliosis, and
parametrised by arc length ``s`` (mm, increasing cranially, 0 at the bottom of S1). Each
drawn vertebra owns a rigid *segment frame* at its canal centre: columns ``u`` (left),
``v`` (posterior) and ``w`` (cranial, the curve's tangent). Points between the mid-planes of
the discs above and below a vertebra belong to its segment; canal contents and discs are
evaluated there in ``(u, v, s = s_vertebra + w)``, bones rigidly in the vertebra's frame.

:class:`SpineModel` implements the renderers' ``TissueModel`` protocol
(``labels_on(geometry) -> uint8 labels``) and exposes landmarks for lesions and tests.

Default curvatures are mid-range adult values: cervical lordosis C2-C7 ~20 deg (Gore DR et al.,
Spine 1986;11:521-524), thoracic kyphosis T1-T12 ~35 deg (normal 20-50 deg, Fon GT et al., AJR
1980;134:979-983), lumbar lordosis L1-S1 ~45 deg (normal ~40-60 deg). Dimensions per level are
in :mod:`synthct.phantom.levels`.

Not modelled: ribs and costovertebral joints, lungs and airway (the thorax and neck ventral to
the spine are soft tissue), the dens of C2, uncinate processes, foramina transversaria, nerve
roots and the cauda equina (CSF below the conus), the sacrum's shape (S1 is drawn as a
vertebra).
"""

from __future__ import annotations

__all__ = ["CanalDeformation", "CanalSection", "Segment", "SpineModel", "SpineSpec"]

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from synthct.geometry import Geometry
from synthct.imaging.labels import Tissue
from synthct.phantom import spine_drawing, thorax_drawing
from synthct.phantom.implicit import GridSampler, plane_side, superellipse_depth, to_local
from synthct.phantom.levels import (
    CANAL_LINING,
    LEVEL_NAMES,
    LEVEL_TABLE,
    LevelDimensions,
    LevelRef,
    PhantomParameterError,
    level_index,
    parse_level,
    region_of,
)
from synthct.phantom.spine_spec import (
    CanalDeformation,
    CanalSection,
    SpineSpec,
    sac_margins,
    squeeze_matrix,
)

#: Straight extension of the canal line beyond C2 and S1, in mm.
_MARGIN_MM = 400.0
#: Step of the tables along the canal line, in mm.
_DS_MM = 0.2

# Parameters tabulated along the canal line (rows of SpineModel._table).
_PARAMS = (
    "canal_a", "canal_b", "body_a", "body_b", "body_v", "cord_a", "cord_b",
    "ventral", "dorsal", "lateral", "pll", "flavum",
    "lean_a", "lean_b", "back", "muscle_a",
    "cord_du", "cord_dv", "cord_quu", "cord_quv", "cord_qvv", "expand",
)  # fmt: skip
_ROW = {name: i for i, name in enumerate(_PARAMS)}


@dataclass(frozen=True)
class Segment:
    """One drawn vertebra: its frame, extent along the canal line and dimensions."""

    index: int  # into LEVEL_NAMES
    name: str
    s_mm: float
    origin: NDArray[np.float64]  # canal centre, LPS
    axes: NDArray[np.float64]  # columns u, v, w
    dims: LevelDimensions
    disc_above_mm: float  # 0 when no disc is drawn above
    disc_below_mm: float
    s_low_mm: float  # -inf for the most caudal segment
    s_high_mm: float  # +inf for the most cranial segment
    planes: tuple[tuple[NDArray[np.float64], NDArray[np.float64], bool], ...] = field(default=())

    def local(
        self, xyz: Sequence[NDArray[np.float64]]
    ) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
        """Segment-frame coordinates ``(u, v, w)`` of LPS points."""
        return to_local(xyz, self.origin, self.axes)

    def in_slab(self, xyz: Sequence[NDArray[np.float64]]) -> NDArray[np.bool_] | bool:
        """Whether LPS points lie between this segment's two disc mid-planes."""
        inside: NDArray[np.bool_] | bool = True
        for point, normal, is_lower in self.planes:
            side = plane_side(xyz, point, normal)
            inside = inside & ((side >= 0) if is_lower else (side < 0))
        return inside


class SpineModel:
    """A curved, seeded spine that labels any grid (implements ``TissueModel``).

    Parameters
    ----------
    spec : SpineSpec
        The phantom's parameters.
    deformations : sequence of CanalDeformation, optional
        Local cord displacements and dural sac expansions (made by lesions, see
        :mod:`synthct.phantom.lesions`).
    """

    def __init__(self, spec: SpineSpec, deformations: Sequence[CanalDeformation] = ()) -> None:
        self.spec = spec
        self.deformations = tuple(deformations)
        self._first = level_index(spec.first_level)
        self._last = level_index(spec.last_level)
        rng = np.random.default_rng(spec.seed)
        self._dims = _jittered_dimensions(rng, spec.size_jitter_fraction)
        angles = spec.curvature_jitter_deg * rng.standard_normal(4)
        heights = np.array([d.body_height_mm for d in self._dims])
        discs = np.array([d.disc_below_mm for d in self._dims])
        centres = np.zeros(len(LEVEL_NAMES))
        centres[-1] = heights[-1] / 2
        for j in range(len(LEVEL_NAMES) - 2, -1, -1):
            centres[j] = centres[j + 1] + heights[j + 1] / 2 + discs[j] + heights[j] / 2
        self._s_centres = centres
        self._heights, self._discs = heights, discs
        self._build_curve(angles)
        self._table = self._build_table()
        self._apply_deformations()
        self.segments = tuple(self._build_segments())

    # ------------------------------------------------------------------ construction
    def _build_curve(self, jitter_deg: NDArray[np.float64]) -> None:
        spec, s_c, h, d = self.spec, self._s_centres, self._heights, self._discs
        top = s_c[0] + h[0] / 2
        s = np.arange(-_MARGIN_MM, top + _MARGIN_MM + _DS_MM, _DS_MM)
        cervicothoracic = s_c[5] - h[5] / 2 - d[5] / 2  # mid C7/T1
        thoracolumbar = s_c[17] - h[17] / 2 - d[17] / 2  # mid T12/L1
        regions = (
            (s_c[23], thoracolumbar, spec.lumbar_lordosis_deg + jitter_deg[0]),
            (thoracolumbar, cervicothoracic, -(spec.thoracic_kyphosis_deg + jitter_deg[1])),
            (cervicothoracic, s_c[0], spec.cervical_lordosis_deg + jitter_deg[2]),
        )
        sagittal = np.zeros_like(s)
        for lo, hi, angle in regions:
            sagittal[(s >= lo) & (s < hi)] = np.radians(angle) / (hi - lo)
        coronal = np.zeros_like(s)
        span = (s >= s_c[22]) & (s < cervicothoracic)
        coronal[span] = -np.radians(spec.scoliosis_deg + 0.5 * jitter_deg[3]) / (
            cervicothoracic - s_c[22]
        )
        theta = _cumulative(sagittal, _DS_MM)
        psi = _cumulative(coronal, _DS_MM)
        tangent = np.stack([np.tan(psi), np.tan(theta), np.ones_like(s)], axis=1)
        tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
        line = np.stack([_cumulative(tangent[:, c], _DS_MM) for c in range(3)], axis=1)
        s_first, s_last = s_c[self._first], s_c[self._last]
        if self._first == self._last:
            chord = _interp_rows(s_first, s, tangent)
        else:
            chord = _interp_rows(s_first, s, line) - _interp_rows(s_last, s, line)
        rotation = _rotation_onto(chord / np.linalg.norm(chord), np.array([0.0, 0.0, 1.0]))
        mid = _interp_rows(0.5 * (s_first + s_last), s, line)
        self._s = s
        self._line = (line - mid) @ rotation.T + np.asarray(spec.origin_lps_mm)
        w = tangent @ rotation.T
        u = np.array([1.0, 0.0, 0.0]) - w[:, :1] * w
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        self._frames = np.stack([u, np.cross(w, u), w], axis=2)  # (n, 3 lps, 3 axes)

    def _build_table(self) -> NDArray[np.float32]:
        spec = self.spec
        rows: dict[str, list[float]] = {name: [] for name in _PARAMS}
        for j, dims in enumerate(self._dims):
            lining = CANAL_LINING[region_of(j)]
            canal_b = dims.canal_ap_mm / 2
            values = {
                "canal_a": dims.canal_width_mm / 2, "canal_b": canal_b,
                "body_a": dims.body_width_mm / 2, "body_b": dims.body_depth_mm / 2,
                "body_v": -(canal_b + dims.body_depth_mm / 2),
                "cord_a": dims.cord_width_mm / 2, "cord_b": dims.cord_ap_mm / 2,
                "ventral": lining.ventral_mm, "dorsal": lining.dorsal_mm,
                "lateral": lining.lateral_mm, "pll": lining.pll_mm, "flavum": lining.flavum_mm,
                "lean_a": dims.lean_half_width_mm * spec.body_size_scale,
                "lean_b": dims.lean_half_depth_mm * spec.body_size_scale,
                "back": dims.back_depth_mm, "muscle_a": dims.muscle_half_width_mm,
                "cord_du": 0.0, "cord_dv": 0.0, "cord_quu": 0.0, "cord_quv": 0.0, "cord_qvv": 0.0,
                "expand": 0.0,
            }  # fmt: skip
            for name in _PARAMS:
                rows[name].append(values[name])
        # np.interp needs increasing abscissae: s decreases from C2 to S1.
        xp = self._s_centres[::-1]
        table = np.stack([np.interp(self._s, xp, np.asarray(rows[n])[::-1]) for n in _PARAMS])
        return table.astype(np.float32)

    def _apply_deformations(self) -> None:
        t = self._table
        for deformation in self.deformations:
            g = deformation.weight(self._s).astype(np.float32)
            t[_ROW["cord_du"]] += g * deformation.cord_shift_mm[0]
            t[_ROW["cord_dv"]] += g * deformation.cord_shift_mm[1]
            # The squeezed cord is {x : (I + Q)(x - centre) in the cord ellipse}, with
            # Q = (1/k - 1) p p^T + (1/m - 1) n n^T compressing by k along p and m across
            # it; the weight scales Q (no squeeze where it is 0).
            q = squeeze_matrix(deformation.squeeze_direction, deformation.cord_squeeze)
            t[_ROW["cord_quu"]] += g * q[0, 0]
            t[_ROW["cord_quv"]] += g * q[0, 1]
            t[_ROW["cord_qvv"]] += g * q[1, 1]
            t[_ROW["expand"]] = np.maximum(t[_ROW["expand"]], g * deformation.sac_expansion)

    def _build_segments(self) -> Iterator[Segment]:
        s_c, h, d = self._s_centres, self._heights, self._discs
        for j in range(self._first, self._last + 1):
            s_j = float(s_c[j])
            s_low = s_j - h[j] / 2 - d[j] / 2 if j < self._last else -np.inf
            s_high = s_j + h[j] / 2 + d[j - 1] / 2 if j > self._first else np.inf
            planes = []
            for s_b, is_lower in ((s_low, True), (s_high, False)):
                if np.isfinite(s_b):
                    point = _interp_rows(s_b, self._s, self._line)
                    normal = self._frame_at_s(s_b)[:, 2]
                    planes.append((point, normal, is_lower))
            yield Segment(
                index=j,
                name=LEVEL_NAMES[j],
                s_mm=s_j,
                origin=_interp_rows(s_j, self._s, self._line),
                axes=self._frame_at_s(s_j),
                dims=self._dims[j],
                disc_above_mm=float(d[j - 1]) if j > 0 else 0.0,
                disc_below_mm=float(d[j]),
                s_low_mm=float(s_low),
                s_high_mm=float(s_high),
                planes=tuple(planes),
            )

    def with_deformations(self, deformations: Sequence[CanalDeformation]) -> SpineModel:
        """The same spine with the given canal deformations (added to the existing ones)."""
        return SpineModel(self.spec, (*self.deformations, *deformations))

    # ------------------------------------------------------------------ tables and frames
    def _frame_at_s(self, s_mm: float) -> NDArray[np.float64]:
        k = int(np.clip(round((s_mm - self._s[0]) / _DS_MM), 0, len(self._s) - 1))
        return self._frames[k].copy()

    def params_at(
        self, s_mm: NDArray[np.floating[Any]] | float, names: Sequence[str] | None = None
    ) -> NDArray[np.float32]:
        """Tabulated canal/body parameters at arc lengths ``s_mm``.

        Returns an array of shape ``(len(names), *shape(s_mm))``; all of ``_PARAMS`` when
        ``names`` is omitted.
        """
        # Python floats keep float32 arc lengths in float32 (a numpy float64 would promote).
        k = np.rint((np.asarray(s_mm) - float(self._s[0])) * (1.0 / _DS_MM))
        k = np.clip(k, 0, len(self._s) - 1).astype(np.intp)
        rows = self._table if names is None else self._table[[_ROW[n] for n in names]]
        return rows[:, k]

    def segment_at(self, s_mm: float) -> Segment:
        """The drawn segment whose slab contains arc length ``s_mm``."""
        for segment in self.segments:
            if segment.s_low_mm <= s_mm < segment.s_high_mm:
                return segment
        return self.segments[0] if s_mm >= self.segments[0].s_mm else self.segments[-1]

    def point_lps_mm(
        self, s_mm: float, u_mm: float = 0.0, v_mm: float = 0.0
    ) -> NDArray[np.float64]:
        """LPS position of canal coordinates ``(u, v)`` at arc length ``s_mm``."""
        seg = self.segment_at(s_mm)
        return seg.origin + seg.axes @ np.array([u_mm, v_mm, s_mm - seg.s_mm])

    # ------------------------------------------------------------------ landmarks
    @property
    def levels(self) -> tuple[str, ...]:
        """The vertebrae drawn, cranial first."""
        return LEVEL_NAMES[self._first : self._last + 1]

    def resolve_level(self, level: str | LevelRef, *, parameter: str = "level") -> LevelRef:
        """Parse ``level`` and check that this spine draws it (vertebrae, discs, spans)."""
        ref = level if isinstance(level, LevelRef) else parse_level(level, parameter=parameter)
        lo, hi = self._first, self._last
        if ref.kind == "disc":
            ok = lo - 1 <= ref.first and ref.last <= hi + 1 and ref.first >= 0
            ok = ok and ref.last <= len(LEVEL_NAMES) - 1
        else:
            ok = lo <= ref.first and ref.last <= hi
        if not ok:
            above = f"{LEVEL_NAMES[lo - 1]}/" if lo > 0 else ""
            below = f"/{LEVEL_NAMES[hi + 1]}" if hi < len(LEVEL_NAMES) - 1 else ""
            raise PhantomParameterError(
                f"level {ref.name} is outside this phantom, which draws vertebrae "
                f"{LEVEL_NAMES[lo]}..{LEVEL_NAMES[hi]} and the discs "
                f"{above}{LEVEL_NAMES[lo]} to {LEVEL_NAMES[hi]}{below}",
                path=parameter,
                fix="choose a level in that range or widen SpineSpec.first_level/last_level",
            )
        return ref

    def level_s_mm(self, level: str | LevelRef) -> float:
        """Arc length of a level's centre: vertebral body, disc, or middle of a span."""
        ref = self.resolve_level(level)
        s_c, h, d = self._s_centres, self._heights, self._discs
        if ref.kind == "vertebra":
            return float(s_c[ref.first])
        if ref.kind == "disc":
            return float(s_c[ref.first] - h[ref.first] / 2 - d[ref.first] / 2)
        return float(0.5 * (s_c[ref.first] + s_c[ref.last]))

    def vertebra_s_mm(self, name: str) -> float:
        """Arc length of any vertebra's body centre (drawn or not), e.g. for the thorax."""
        return float(self._s_centres[level_index(name)])

    def height_at_s(self, s_mm: float) -> float:
        """LPS height ``z`` (mm) of the canal line at arc length ``s_mm``."""
        return float(np.interp(s_mm, self._s, self._line[:, 2]))

    def level_extent_s_mm(self, level: str | LevelRef) -> tuple[float, float]:
        """Arc-length interval ``(low, high)`` of a body, a disc (between endplates) or a span."""
        ref = self.resolve_level(level)
        s_c, h, d = self._s_centres, self._heights, self._discs
        top = s_c[ref.first] + h[ref.first] / 2
        bottom = s_c[ref.last] - h[ref.last] / 2
        if ref.kind == "disc":
            top = s_c[ref.first] - h[ref.first] / 2
            bottom = top - d[ref.first]
        return float(bottom), float(top)

    def level_centre_lps_mm(self, level: str | LevelRef) -> NDArray[np.float64]:
        """Centre of a vertebral body, of a disc, or of a span's bodies, in LPS mm."""
        s = self.level_s_mm(level)
        return self.point_lps_mm(s, 0.0, float(self.params_at(s)[_ROW["body_v"]]))

    def canal_centre_lps_mm(self, where: str | float) -> NDArray[np.float64]:
        """Canal centre at a level (``"T8"``, ``"T8/9"``, ``"T5-7"``) or at height ``z`` (mm)."""
        return self.point_lps_mm(self._s_of(where))

    def frame_at(self, where: str | float) -> NDArray[np.float64]:
        """Columns ``u`` (left), ``v`` (posterior), ``w`` (cranial) of the frame at a level or z."""
        return self.segment_at(self._s_of(where)).axes.copy()

    def _s_of(self, where: str | float) -> float:
        if isinstance(where, str):
            return self.level_s_mm(where)
        return float(np.interp(float(where), self._line[:, 2], self._s))

    def canal_section(self, where: str | float) -> CanalSection:
        """The canal's layers at a level or height ``z`` in mm (deformations included)."""
        return self.section_at_s(self._s_of(where))

    def section_at_s(self, s: float) -> CanalSection:
        """The canal's layers at arc length ``s`` in mm (deformations included)."""
        p = self.params_at(s).astype(np.float64)
        seg = self.segment_at(s)
        sac, expanded = _sac(p, 0.0), _sac(p, 1.0)
        t = self.spec.dura_thickness_mm
        return CanalSection(
            s_mm=s,
            segment=seg.name,
            centre_lps_mm=self.point_lps_mm(s),
            axes=seg.axes.copy(),
            canal_semi_axes_mm=(float(p[_ROW["canal_a"]]), float(p[_ROW["canal_b"]])),
            sac_centre_mm=(0.0, sac[0]),
            sac_semi_axes_mm=(sac[1], sac[2]),
            expanded_sac_centre_mm=(0.0, expanded[0]),
            expanded_sac_semi_axes_mm=(expanded[1], expanded[2]),
            dura_thickness_mm=t,
            cord_centre_mm=(float(p[_ROW["cord_du"]]), sac[0] + float(p[_ROW["cord_dv"]])),
            cord_semi_axes_mm=(float(p[_ROW["cord_a"]]), float(p[_ROW["cord_b"]])),
            cord_q=(
                float(p[_ROW["cord_quu"]]),
                float(p[_ROW["cord_quv"]]),
                float(p[_ROW["cord_qvv"]]),
            ),
            pll_thickness_mm=float(p[_ROW["pll"]]),
            flavum_thickness_mm=float(p[_ROW["flavum"]]),
            body_centre_v_mm=float(p[_ROW["body_v"]]),
            body_semi_axes_mm=(float(p[_ROW["body_a"]]), float(p[_ROW["body_b"]])),
        )

    def canal_coordinates(
        self, xyz: Sequence[NDArray[np.float64]], s_low_mm: float, s_high_mm: float
    ) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float64], NDArray[np.bool_]]:
        """Canal coordinates ``(u, v, s)`` of LPS points in the segments covering an s range.

        Returns ``u``, ``v`` (mm, segment frame), ``s`` (arc length, mm) and ``valid``, which
        is false for points outside those segments' slabs.
        """
        shape = np.broadcast_shapes(*(np.shape(c) for c in xyz))
        u = np.zeros(shape, np.float32)
        v = np.zeros(shape, np.float32)
        s = np.zeros(shape, np.float64)
        valid = np.zeros(shape, bool)
        for seg in self.segments:
            if seg.s_high_mm < s_low_mm or seg.s_low_mm > s_high_mm:
                continue
            slab = np.broadcast_to(seg.in_slab(xyz), shape)
            lu, lv, lw = seg.local(xyz)
            np.copyto(u, lu, where=slab)
            np.copyto(v, lv, where=slab)
            np.copyto(s, lw + seg.s_mm, where=slab)
            valid |= slab
        return u, v, s, valid

    def canal_depths(
        self, u: NDArray[np.float32], v: NDArray[np.float32], s: NDArray[np.floating[Any]]
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Depth (mm, positive inside) into the bony canal and into the dural sac's outer wall.

        ``u``, ``v`` are segment-frame coordinates and ``s`` arc lengths (from
        :meth:`canal_coordinates`); the sac includes this model's deformations. A point is
        inside the dura's inner wall where the sac depth is at least ``dura_thickness_mm``.
        """
        names = ("canal_a", "canal_b", "ventral", "dorsal", "lateral", "pll", "flavum", "expand")
        ca, cb, *rest = self.params_at(s, names)
        ventral, dorsal, lateral = sac_margins(*rest)
        d_canal = superellipse_depth(u, v, ca, cb)
        d_sac = superellipse_depth(
            u, v - 0.5 * (ventral - dorsal), ca - lateral, cb - 0.5 * (ventral + dorsal)
        )
        return d_canal, d_sac

    def outline_at(self, where: str | float) -> dict[str, float]:
        """Body outline at a level or height: lean semi-axes, back depth, fat thickness (mm)."""
        p = self.params_at(self._s_of(where))
        return {
            "lean_half_width_mm": float(p[_ROW["lean_a"]]),
            "lean_half_depth_mm": float(p[_ROW["lean_b"]]),
            "back_depth_mm": float(p[_ROW["back"]]),
            "subcutaneous_fat_mm": self.spec.subcutaneous_fat_mm,
        }

    def bounds_lps_mm(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """LPS box around the skin over the drawn span (including the end discs)."""
        lo_s = self.segments[-1].s_mm - 30.0
        hi_s = self.segments[0].s_mm + 30.0
        keep = (self._s >= lo_s) & (self._s <= hi_s)
        line = self._line[keep]
        p = self._table[:, keep].astype(np.float64)
        fat = self.spec.subcutaneous_fat_mm
        half_w = p[_ROW["lean_a"]] + fat
        centre_y = line[:, 1] + p[_ROW["back"]] - p[_ROW["lean_b"]]
        lo = np.array(
            [
                (line[:, 0] - half_w).min(),
                (centre_y - p[_ROW["lean_b"]] - fat).min(),
                line[:, 2].min(),
            ]
        )
        hi = np.array(
            [
                (line[:, 0] + half_w).max(),
                (line[:, 1] + p[_ROW["back"]] + fat).max(),
                line[:, 2].max(),
            ]
        )
        return lo, hi

    # ------------------------------------------------------------------ labels
    def labels_on(self, geometry: Geometry) -> NDArray[np.uint8]:
        """Tissue labels (:class:`~synthct.imaging.labels.Tissue`) at the voxel centres of a grid.

        Implements the renderers' ``TissueModel`` protocol; any grid (slab, supersampled,
        oblique) is accepted and every structure is evaluated only inside its own box.
        """
        out = np.full(geometry.shape, Tissue.AIR, dtype=np.uint8)
        sampler = GridSampler(geometry)
        spine_drawing.draw_background(self, sampler, out)
        if self.spec.thorax:
            thorax_drawing.draw_thorax(self, sampler, out)
        for segment in self.segments:
            spine_drawing.draw_discs(self, segment, sampler, out)
        for segment in self.segments:
            spine_drawing.draw_bones(self, segment, sampler, out)
        for segment in self.segments:
            spine_drawing.draw_canal(self, segment, sampler, out)
        if self.spec.trabecular_texture:
            found = np.argwhere(out == Tissue.CANCELLOUS_BONE)
            if found.size:
                lo, hi = found.min(axis=0), found.max(axis=0) + 1
                region = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
                thorax_drawing.texture_marrow(self, sampler, region, out)
        return out

    # The background needs the canal line as a function of height.
    def line_at_height(
        self, z: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Canal line ``x``, ``y`` and arc length ``s`` at heights ``z`` (mm)."""
        zs = self._line[:, 2]
        return (
            np.interp(z, zs, self._line[:, 0]),
            np.interp(z, zs, self._line[:, 1]),
            np.interp(z, zs, self._s),
        )


def _sac(p: NDArray[np.float64], expansion: float) -> tuple[float, float, float]:
    """Dural sac centre ``v`` and semi-axes ``(a, b)`` from tabulated params at one s."""
    ventral, dorsal, lateral = sac_margins(
        p[_ROW["ventral"]],
        p[_ROW["dorsal"]],
        p[_ROW["lateral"]],
        p[_ROW["pll"]],
        p[_ROW["flavum"]],
        expansion,
    )
    centre_v = 0.5 * (ventral - dorsal)
    return (
        float(centre_v),
        float(p[_ROW["canal_a"]] - lateral),
        float(p[_ROW["canal_b"]] - 0.5 * (ventral + dorsal)),
    )


def _jittered_dimensions(rng: np.random.Generator, sd: float) -> list[LevelDimensions]:
    """Per-level dimensions with seeded relative jitter (bone, canal and cord separately)."""
    n = len(LEVEL_NAMES)
    # Always draw the same numbers so a level's jitter does not depend on the span drawn.
    factors = 1.0 + sd * np.clip(rng.standard_normal((3, n)), -2.5, 2.5)
    canal_fields = {"canal_ap_mm", "canal_width_mm"}
    cord_fields = {"cord_ap_mm", "cord_width_mm"}
    fixed = {
        "spinous_angle_deg",
        "transverse_angle_deg",
        "lean_half_width_mm",
        "lean_half_depth_mm",
        "back_depth_mm",
        "muscle_half_width_mm",
    }
    out = []
    for j, name in enumerate(LEVEL_NAMES):
        base = asdict(LEVEL_TABLE[name])
        for key, value in base.items():
            if key in fixed:
                continue
            row = 1 if key in canal_fields else 2 if key in cord_fields else 0
            base[key] = value * factors[row, j]
        out.append(LevelDimensions(**base))
    return out


def _cumulative(values: NDArray[np.float64], step: float) -> NDArray[np.float64]:
    """Cumulative trapezoidal integral starting at 0."""
    out = np.zeros_like(values)
    out[1:] = np.cumsum(0.5 * (values[1:] + values[:-1])) * step
    return out


def _interp_rows(
    x: float, xp: NDArray[np.float64], rows: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Linear interpolation of each column of ``rows`` at ``x``."""
    return np.array([np.interp(x, xp, rows[:, c]) for c in range(rows.shape[1])])


def _rotation_onto(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """The smallest rotation taking unit vector ``a`` onto unit vector ``b``."""
    v = np.cross(a, b)
    c = float(a @ b)
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + k + k @ k / (1.0 + c)
