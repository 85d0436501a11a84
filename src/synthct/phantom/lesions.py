"""The lesion library: spinal canal lesions placed in a :class:`SpineModel`, with ground truth.

Each :class:`LesionSpec` is placed at a level of the spine, respecting anatomy:

* **intradural** lesions (meningioma, schwannoma) lie inside the dura's inner wall, touching
  it at their position angle; the dural sac widens to the bony canal around them (epidural
  fat squeezed out) and the cord moves away, compressed when there is not room enough;
* **extradural** lesions (calcified disc herniation, synovial cyst, CAPNON) lie inside the
  bony canal against its wall and indent the dural sac, which is draped around them;
* **ossified ligaments**: OPLL is a lens-shaped plate along the ventral canal wall (posterior
  longitudinal ligament, behind the bodies and discs), OLF the same along the dorsal wall
  (ligamentum flavum, under the laminae).

A calcified lesion is a mixture of its base tissue and dense sub-voxels (``CALCIFICATION`` or
``OSSIFICATION``) arranged by a smooth seeded field (:mod:`synthct.phantom.calcification`);
the calcified fraction ``f`` follows from the target mean HU through the tissue table:
``f = (mean_hu - HU_base) / (HU_dense - HU_base)``.

Positions are angles in the canal's axial plane measured from dorsal (0 deg) toward the
patient's left (90 deg): 180 is ventral, 270 right. Diameters are in the canal's frame: the
axial diameter is the largest in-plane extent (tangential to the canal wall), the sagittal
diameter the cranio-caudal extent, the thickness the in-plane extent along the position
direction.

:class:`PhantomModel` combines a spine and its lesions into one ``TissueModel``, and gives the
lesion masks (:meth:`PhantomModel.lesion_labels_on`) and metadata for the validation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from synthct.geometry import Geometry
from synthct.imaging.labels import Tissue
from synthct.phantom.anatomy import CanalDeformation, CanalSection, SpineModel, SpineSpec
from synthct.phantom.calcification import (
    calibration_offsets,
    pattern_field,
    threshold_for_fraction,
)
from synthct.phantom.implicit import GridSampler, paint
from synthct.phantom.lesion_spec import (
    LESION_TYPES,
    POSITIONS,
    LesionInstance,
    LesionSpec,
    LesionType,
)
from synthct.phantom.model import PhantomParameterError

__all__ = [
    "LESION_TYPES",
    "POSITIONS",
    "LesionInstance",
    "LesionSpec",
    "LesionType",
    "PhantomModel",
]

_GAP_MM = 0.2  # clearance kept between the displaced cord and a lesion or the dura
_MIN_SQUEEZE = 0.15  # a cord flattened below 15% of its thickness means the lesion is too big


class _PlacedLesion:
    """A lesion's shape in canal coordinates ``(u, v, s)`` and its calcification threshold."""

    def __init__(self, spec: LesionSpec, spine: SpineModel, lesion_id: int) -> None:
        self.spec = spec
        self.info = spec.info
        self.id = lesion_id
        ref = spine.resolve_level(spec.level, parameter="LesionSpec.level")
        self.level = ref.name
        self.s0 = spine.level_s_mm(ref) + float(spec.offset_mm)
        self.half_s = spec.sagittal_diameter_mm / 2
        self.position_deg = spec.resolved_position_deg()
        alpha = math.radians(self.position_deg)
        self.direction = np.array([math.sin(alpha), math.cos(alpha)])  # (u, v) toward the lesion
        self.tangent = np.array([math.cos(alpha), -math.sin(alpha)])
        self.half_axial = spec.axial_diameter_mm / 2
        self.thickness = spec.resolved_thickness_mm()
        self.fraction, self.pattern = spec.resolved_fraction()
        self.t_dura = spine.spec.dura_thickness_mm
        section = spine.section_at_s(self.s0)
        self.centre_uv = self._place(section)
        self.threshold = -np.inf

    # -- shape ---------------------------------------------------------------------------
    def _place(self, section: CanalSection) -> NDArray[np.float64]:
        """Centre ``(u, v)`` for an ellipsoid touching its container at the position angle."""
        if self.info.shape != "ellipsoid":
            return np.zeros(2)
        if self.info.compartment == "intradural":
            centre = np.array(section.expanded_sac_centre_mm)
            semi = np.array(section.expanded_sac_semi_axes_mm) - self.t_dura
            where = "inside the dura (dural sac widened to the bony canal)"
        else:
            centre, semi = np.zeros(2), np.array(section.canal_semi_axes_mm)
            where = "inside the bony canal"
        theta = np.linspace(0, 2 * np.pi, 181)[:-1]
        outline = (
            np.cos(theta)[:, None] * self.half_axial * self.tangent
            + np.sin(theta)[:, None] * self.thickness / 2 * self.direction
        )

        def fits(r: float) -> bool:
            p = centre + r * self.direction + outline
            return bool(np.all(np.sum(((p - centre) / semi) ** 2, axis=1) <= 1 - 1e-3))

        if not fits(0.0):
            raise PhantomParameterError(
                f"a {self.spec.type} of axial_diameter_mm {self.spec.axial_diameter_mm:g} and "
                f"thickness_mm {self.thickness:g} does not fit {where} at {self.level}: the "
                f"space there is {2 * semi[1]:.1f} mm AP x {2 * semi[0]:.1f} mm transverse "
                f"(bony canal {2 * section.canal_semi_axes_mm[1]:.1f} x "
                f"{2 * section.canal_semi_axes_mm[0]:.1f} mm)",
                path="LesionSpec.axial_diameter_mm",
                fix="give a smaller lesion, or place it at a level with a wider canal",
            )
        lo, hi = 0.0, float(semi.max())
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        return np.asarray(centre + lo * self.direction)

    def shape_masks(
        self, spine: SpineModel, u: Any, v: Any, s: Any, valid: Any
    ) -> tuple[NDArray[np.bool_], NDArray[np.bool_], NDArray[np.float32]]:
        """Inside mask, dura drape mask (extradural) and normalised radius squared."""
        d_canal, d_sac = spine.canal_depths(u, v, s)
        ds = (s - self.s0).astype(np.float32)
        t = np.float32(self.t_dura)
        if self.info.shape == "ellipsoid":
            du = u - np.float32(self.centre_uv[0])
            dv = v - np.float32(self.centre_uv[1])
            xt = du * np.float32(self.tangent[0]) + dv * np.float32(self.tangent[1])
            xr = du * np.float32(self.direction[0]) + dv * np.float32(self.direction[1])
            semi = np.array([self.half_axial, self.thickness / 2, self.half_s], np.float32)
            r2 = (xt / semi[0]) ** 2 + (xr / semi[1]) ** 2 + (ds / semi[2]) ** 2
            grown = (
                (xt / (semi[0] + t)) ** 2 + (xr / (semi[1] + t)) ** 2 + (ds / (semi[2] + t)) ** 2
            )
            clip = (d_sac >= t) if self.info.compartment == "intradural" else (d_canal >= 0)
            inside = valid & (r2 <= 1) & clip
            drape = valid & (grown <= 1) & (d_canal >= 0) & ~inside
        else:
            # Thickness is measured along v from the canal wall (AP, as on axial CT).
            ca, cb = spine.params_at(s, ("canal_a", "canal_b"))
            wall = cb * np.sqrt(np.clip(1 - (u / ca) ** 2, 0, None))
            depth = (v + wall) if self.info.shape == "ventral_plate" else (wall - v)
            across = (u / np.float32(self.half_axial)) ** 2
            along = (ds / np.float32(self.half_s)) ** 2
            profile = np.float32(self.thickness) * np.sqrt(
                np.clip(1 - across, 0, None) * np.clip(1 - along, 0, None)
            )
            grown_across = (u / np.float32(self.half_axial + t)) ** 2
            grown_along = (ds / np.float32(self.half_s + t)) ** 2
            grown = (self.thickness + t) * np.sqrt(
                np.clip(1 - grown_across, 0, None) * np.clip(1 - grown_along, 0, None)
            )
            base = valid & (d_canal >= 0) & (depth >= 0)
            inside = base & (depth < profile)
            drape = base & (depth < grown) & ~inside
            r2 = across + along
        if self.info.compartment == "intradural":
            drape = np.zeros_like(inside)
        return inside, drape, np.asarray(r2, dtype=np.float32)

    def uv_bounds(self, spine: SpineModel) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Box ``(u, v)`` around the lesion and its drape in canal coordinates."""
        pad = self.t_dura + 0.5
        if self.info.shape == "ellipsoid":
            ext = np.sqrt(
                (self.half_axial * self.tangent) ** 2 + (self.thickness / 2 * self.direction) ** 2
            )
            return self.centre_uv - ext - pad, self.centre_uv + ext + pad
        s = np.linspace(self.s0 - self.half_s, self.s0 + self.half_s, 16)
        cb = float(spine.params_at(s, ("canal_b",)).max()) + pad
        lo = np.array([-self.half_axial - pad, -cb if self.info.shape == "ventral_plate" else -pad])
        hi = np.array([self.half_axial + pad, pad if self.info.shape == "ventral_plate" else cb])
        return lo, hi

    def lps_bounds(self, spine: SpineModel) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """LPS box around the lesion and its drape."""
        lo, hi = self.uv_bounds(spine)
        pad = self.t_dura + 0.5
        s_values = np.linspace(
            self.s0 - self.half_s - pad, self.s0 + self.half_s + pad, int(np.ceil(self.half_s)) + 3
        )
        points = [
            spine.point_lps_mm(float(s), float(u), float(v))
            for s in s_values
            for u in (lo[0], hi[0])
            for v in (lo[1], hi[1])
        ]
        arr = np.array(points)
        return arr.min(axis=0) - 0.5, arr.max(axis=0) + 0.5

    def masks_on(
        self, spine: SpineModel, sampler: GridSampler
    ) -> tuple[Any, NDArray[np.bool_], NDArray[np.bool_], NDArray[np.bool_]] | None:
        """Index box, inside, calcified and drape masks of the lesion on a grid."""
        box = sampler.box(*self.lps_bounds(spine))
        if box is None:
            return None
        xyz = sampler.points(box)
        pad = self.t_dura + 1.0
        u, v, s, valid = spine.canal_coordinates(
            xyz, self.s0 - self.half_s - pad, self.s0 + self.half_s + pad
        )
        inside, drape, r2 = self.shape_masks(spine, u, v, s, valid)
        calcified = np.zeros_like(inside)
        if self.fraction > 0 and np.any(inside):
            field = pattern_field(self.pattern, self._field_seed, _points(xyz, inside), r2[inside])
            calcified[inside] = field < self.threshold
        return box, inside, calcified, drape

    @property
    def _field_seed(self) -> int:
        return int(self.spec.seed) * 1000 + self.id

    def calibrate(self, spine: SpineModel, points_target: int = 400_000) -> None:
        """Choose the field threshold giving the calcified fraction on a fine LPS grid."""
        if self.fraction <= 0:
            self.threshold = -np.inf
            return
        lo, hi = self.lps_bounds(spine)
        # Only ~half the box is lesion: a grid of ~points_target samples the field finely.
        spacing = float(np.clip((np.prod(hi - lo) / points_target) ** (1 / 3), 0.04, 0.3))
        offset = calibration_offsets([spacing] * 3)
        shape = tuple(int(n) for n in np.ceil((hi - lo) / spacing))
        geometry = Geometry.from_parameters(shape, (spacing,) * 3, tuple(lo + offset))
        sampler = GridSampler(geometry)
        box = sampler.full_box()
        xyz = sampler.points(box)
        pad = self.t_dura + 1.0
        u, v, s, valid = spine.canal_coordinates(
            xyz, self.s0 - self.half_s - pad, self.s0 + self.half_s + pad
        )
        inside, _, r2 = self.shape_masks(spine, u, v, s, valid)
        if not np.any(inside):
            raise PhantomParameterError(
                f"the {self.spec.type} at {self.level} has no volume left inside the canal",
                path="LesionSpec.axial_diameter_mm",
            )
        values = pattern_field(self.pattern, self._field_seed, _points(xyz, inside), r2[inside])
        self.threshold = threshold_for_fraction(values, self.fraction)

    # -- cord ----------------------------------------------------------------------------
    def deformation(self, base: SpineModel) -> tuple[CanalDeformation, float, float]:
        """Cord displacement (and sac widening) that clears the lesion.

        The cord is pushed away from the lesion and, when that is not enough, flattened (by
        ``k`` along the push, ``m`` across it): the least area loss ``1 - k m``, then the
        smallest shift, for which the cord keeps a clearance from the lesion (plus the draped
        dura for extradural lesions) and stays inside the dura.

        Returns
        -------
        CanalDeformation, float, float
            The deformation, the cord shift in mm and the cord's area loss ``1 - k m``.
        """
        taper = max(6.0, self.half_s)
        expansion = 1.0 if self.info.compartment == "intradural" else 0.0
        keep = CanalDeformation(self.s0, self.half_s + 1.0, taper, sac_expansion=expansion)
        widened = base.with_deformations([keep])
        section = base.section_at_s(self.s0)
        semi = np.array(section.cord_semi_axes_mm)
        cord_centre = np.array(section.cord_centre_mm)
        if semi.min() < 0.1:  # below the conus: nothing to displace
            return keep, 0.0, 0.0
        push = (
            -self.direction
            if self.info.shape == "ellipsoid"
            else (
                np.array([0.0, 1.0])
                if self.info.shape == "ventral_plate"
                else np.array([0.0, -1.0])
            )
        )
        outline = self._cross_section_outline(widened)
        clearance = _GAP_MM + (self.t_dura if self.info.compartment == "extradural" else 0.0)
        shifts = np.arange(0.0, 2 * float(np.max(section.canal_semi_axes_mm)), 0.05)
        centres = cord_centre + shifts[:, None] * push  # (n_shift, 2)
        centre_in_lesion, _, _ = self.shape_masks(
            widened,
            centres[:, 0].astype(np.float32),
            centres[:, 1].astype(np.float32),
            np.full(len(shifts), self.s0),
            np.ones(len(shifts), bool),
        )
        rel = outline[None, :, :] - centres[:, None, :]  # lesion edge relative to the cord
        across = np.array([-push[1], push[0]])
        best: tuple[float, float, int] | None = None  # (k, m, shift index)
        for m in (1.0, 0.9, 0.8, 0.7, 0.6):  # flattening across the push, if it helps
            if best is not None and m <= best[0] * best[1]:
                break

            def fit(k: float, m: float = m) -> int | None:
                return self._fit_cord(
                    widened, centres, rel, centre_in_lesion, semi, push, across, (k, m), clearance
                )

            # Fitting gets easier as k falls (a flatter cord): bisect for the largest k.
            index = fit(1.0)
            k_best = 1.0
            if index is None:
                index = fit(_MIN_SQUEEZE)
                if index is None:
                    continue
                k_best, k_fail = _MIN_SQUEEZE, 1.0
                while k_fail - k_best > 0.01:
                    k_mid = 0.5 * (k_best + k_fail)
                    found = fit(k_mid)
                    if found is None:
                        k_fail = k_mid
                    else:
                        k_best, index = k_mid, found
            if best is None or k_best * m > best[0] * best[1]:
                best = (k_best, m, index)
        if best is not None:
            k, m, index = best
            shift = float(shifts[index])
            deformation = CanalDeformation(
                self.s0,
                self.half_s + 1.0,
                taper,
                cord_shift_mm=(float(shift * push[0]), float(shift * push[1])),
                cord_squeeze=(k, m),
                squeeze_direction=(float(push[0]), float(push[1])),
                sac_expansion=expansion,
            )
            return deformation, shift, float(1 - k * m)
        raise PhantomParameterError(
            f"a {self.spec.type} of axial_diameter_mm {self.spec.axial_diameter_mm:g} and "
            f"thickness_mm {self.thickness:g} leaves no room for the spinal cord at "
            f"{self.level} (dural sac {2 * section.sac_semi_axes_mm[1]:.1f} mm AP x "
            f"{2 * section.sac_semi_axes_mm[0]:.1f} mm transverse, bony canal "
            f"{2 * section.canal_semi_axes_mm[1]:.1f} x "
            f"{2 * section.canal_semi_axes_mm[0]:.1f} mm)",
            path="LesionSpec.axial_diameter_mm",
            fix="give a smaller lesion or a thinner one (thickness_mm)",
        )

    def _fit_cord(
        self,
        widened: SpineModel,
        centres: NDArray[np.float64],
        rel: NDArray[np.float64],
        centre_in_lesion: NDArray[np.bool_],
        semi: NDArray[np.float64],
        push: NDArray[np.float64],
        across: NDArray[np.float64],
        factors: tuple[float, float],
        clearance: float,
    ) -> int | None:
        """Index of the first cord centre that clears the lesion and stays in the dura."""
        k, m = factors
        squeeze = (
            np.eye(2) - (1.0 - k) * np.outer(push, push) - (1.0 - m) * np.outer(across, across)
        )
        # The squeezed cord ellipse has principal semi-axes sqrt(eig(M D^2 M)); grown by a
        # clearance along them it approximates the offset curve well for a 0.2 mm gap.
        eigenvalues, axes = np.linalg.eigh(squeeze @ np.diag(semi**2) @ squeeze)
        principal = np.sqrt(np.maximum(eigenvalues, 1e-12))
        local = rel @ axes
        # No lesion edge inside the cord and the cord centre outside the lesion: for a convex
        # cord and a connected lesion, that means no overlap.
        clear = np.all(np.sum((local / (principal + clearance)) ** 2, axis=2) > 1, axis=1)
        clear &= ~centre_in_lesion
        if not np.any(clear):
            return None
        theta = np.linspace(0, 2 * np.pi, 73)[:-1]
        ring = np.stack([np.cos(theta), np.sin(theta)], axis=1) * (principal + _GAP_MM)
        boundary = centres[:, None, :] + (ring @ axes.T)[None]
        _, d_sac = widened.canal_depths(
            boundary[..., 0].astype(np.float32),
            boundary[..., 1].astype(np.float32),
            np.full(boundary.shape[:2], self.s0),
        )
        ok = np.flatnonzero(clear & np.all(d_sac >= self.t_dura, axis=1))
        return int(ok[0]) if ok.size else None

    def _cross_section_outline(self, spine: SpineModel) -> NDArray[np.float64]:
        """Boundary points ``(u, v)`` of the lesion's cross-section at its centre."""
        lo, hi = self.uv_bounds(spine)
        step = 0.1
        gu = np.arange(lo[0], hi[0] + step, step, dtype=np.float32)[:, None]
        gv = np.arange(lo[1], hi[1] + step, step, dtype=np.float32)[None, :]
        s = np.full((gu.size, gv.size), self.s0)
        inside, _, _ = self.shape_masks(spine, gu, gv, s, np.ones(s.shape, bool))
        edge = inside & ~ndimage.binary_erosion(inside)
        iu, iv = np.nonzero(edge)
        return np.stack([gu[iu, 0], gv[0, iv]], axis=1).astype(np.float64)

    def instance(self, spine: SpineModel, shift: float, compression: float) -> LesionInstance:
        """The lesion's ground-truth metadata."""
        from synthct.imaging.tissues import TISSUES

        info = self.info
        if info.shape == "ellipsoid":
            centre_uv = self.centre_uv
        else:
            cb = float(spine.params_at(self.s0, ("canal_b",))[0])
            sign = -1.0 if info.shape == "ventral_plate" else 1.0
            centre_uv = np.array([0.0, sign * (cb - self.thickness / 2)])
        centre = spine.point_lps_mm(self.s0, float(centre_uv[0]), float(centre_uv[1]))
        base_hu = TISSUES[info.base_tissue].ct_hu
        dense_hu = base_hu if info.dense_tissue is None else TISSUES[info.dense_tissue].ct_hu
        w_axis = spine.segment_at(self.s0).axes[:, 2]
        return LesionInstance(
            id=self.id,
            type=self.spec.type,
            level=self.level,
            compartment=info.compartment,
            position_deg=self.position_deg,
            centre_lps_mm=(float(centre[0]), float(centre[1]), float(centre[2])),
            s_mm=self.s0,
            diameter_axial_mm=float(self.spec.axial_diameter_mm),
            diameter_sagittal_mm=float(self.spec.sagittal_diameter_mm),
            thickness_mm=self.thickness,
            mean_hu=float(base_hu + self.fraction * (dense_hu - base_hu)),
            calcified_fraction=self.fraction,
            pattern=self.pattern,
            base_tissue=info.base_tissue,
            dense_tissue=info.dense_tissue if self.fraction > 0 else None,
            label=self.id,
            cord_shift_mm=shift,
            cord_compression=compression,
            canal_tilt_deg=float(np.degrees(np.arccos(np.clip(abs(w_axis[2]), 0, 1)))),
        )


class PhantomModel:
    """A spine with lesions: one ``TissueModel`` plus lesion masks and metadata.

    Parameters
    ----------
    spine : SpineSpec or SpineModel
        The anatomy (without lesion deformations).
    lesions : sequence of LesionSpec
        Lesions to insert; they get ids 1, 2, ... in this order (a later lesion overrides an
        earlier one where they overlap).
    """

    def __init__(self, spine: SpineSpec | SpineModel, lesions: Sequence[LesionSpec] = ()) -> None:
        base = spine if isinstance(spine, SpineModel) else SpineModel(spine)
        self.base_spine = base
        placed = [_PlacedLesion(spec, base, i + 1) for i, spec in enumerate(lesions)]
        results = [p.deformation(base) for p in placed]
        self.spine = base.with_deformations([r[0] for r in results])
        for p in placed:
            p.calibrate(self.spine)
        self._placed = placed
        self.lesions: tuple[LesionInstance, ...] = tuple(
            p.instance(self.spine, shift, compression)
            for p, (_, shift, compression) in zip(placed, results, strict=True)
        )

    def labels_on(self, geometry: Geometry) -> NDArray[np.uint8]:
        """Tissue labels: the deformed spine, then each lesion (base and dense tissue)."""
        out = self.spine.labels_on(geometry)
        sampler = GridSampler(geometry)
        for lesion in self._placed:
            found = lesion.masks_on(self.spine, sampler)
            if found is None:
                continue
            box, inside, calcified, drape = found
            sac = np.isin(out[box], (Tissue.CSF, Tissue.SPINAL_CORD))
            paint(out, box, drape & sac, Tissue.DURA)
            paint(out, box, inside, lesion.info.base_tissue)
            if lesion.info.dense_tissue is not None:
                paint(out, box, calcified, lesion.info.dense_tissue)
        return out

    def lesion_labels_on(self, geometry: Geometry) -> NDArray[np.uint16]:
        """Lesion instance ids (0 = no lesion) at the voxel centres of a grid."""
        out = np.zeros(geometry.shape, dtype=np.uint16)
        sampler = GridSampler(geometry)
        for lesion in self._placed:
            found = lesion.masks_on(self.spine, sampler)
            if found is not None:
                box, inside, _, _ = found
                view = out[box]
                np.copyto(view, np.uint16(lesion.id), where=inside)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description: spine parameters and lesion metadata."""
        return {
            "spine": self.base_spine.spec.to_dict(),
            "lesions": [lesion.to_dict() for lesion in self.lesions],
        }


def _points(xyz: Sequence[NDArray[np.float64]], mask: NDArray[np.bool_]) -> NDArray[np.float64]:
    """LPS coordinates ``(n, 3)`` of the voxels where ``mask`` is true."""
    return np.stack([np.broadcast_to(c, mask.shape)[mask] for c in xyz], axis=1)
