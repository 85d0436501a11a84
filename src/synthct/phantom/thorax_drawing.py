"""Lungs, aorta and ribs of the spine phantom, and the texture of its trabecular bone.

Drawn when ``SpineSpec.thorax`` is set, after the body outline and before discs, bones and
canal (which override them), in axial planes around the body centre of each height:

* **Lungs**: two ellipses either side of the mediastinum from the apex (T1) to the base (T10),
  widest in the middle (a sine profile), each ``0.38 x 0.72`` of the lean body's half-width and
  half-depth (modelling choice: lungs fill most of the thorax lateral to the mediastinum).
* **Aorta**: a round tube left-anterior to the vertebral bodies from T4 to L4, 25 mm wide in
  the chest tapering to 18 mm in the abdomen (descending thoracic aorta ~2.5 cm by CT, Wolak A
  et al. JACC Cardiovasc Imaging 2008;1:200-209; infrarenal aorta ~1.5-2 cm, assumption
  within the normal range).
* **Ribs**: for each of T1-T12 a band 6 mm thick (radially) and 10 mm tall, 12 mm inside the
  lean body's outline, from the costovertebral region to 30 mm from the anterior midline,
  descending 0.3 mm per mm forward (ribs slope down anteriorly by about a level); a cortical
  shell of ``SpineSpec.cortical_thickness_mm`` around a marrow core (modelling choice: adult
  rib mid-shafts are roughly 10-15 mm tall and 5-8 mm thick).

With ``SpineSpec.trabecular_texture`` the cancellous bone of vertebrae and ribs becomes the
marrow fat-fraction tissues (:mod:`synthct.imaging.marrow`) by a seeded smooth field of 3-8 mm
wavelength around fat fraction 0.5 (adult vertebral marrow, Griffith JF et al. Radiology
2005;236:945-951): marrow heterogeneity that both the CT (HU) and the MRI (fat) show. The field
is a sum of plane waves in LPS, so every grid sees the same texture.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from synthct.imaging.labels import Tissue
from synthct.imaging.marrow import marrow_labels
from synthct.phantom.implicit import Box, GridSampler, paint
from synthct.phantom.levels import LEVEL_NAMES

if TYPE_CHECKING:
    from synthct.phantom.anatomy import SpineModel

_LUNG_A, _LUNG_B = 0.38, 0.72  # lung semi-axes as fractions of the lean half-width/-depth
_LUNG_X = 0.5  # lung centres at +-0.5 lean half-width from the midline
_AORTA_RADIUS_MM = {"T4": 12.5, "L4": 9.0}
_RIB_INSET_MM, _RIB_THICK_MM, _RIB_HEIGHT_MM = 12.0, 6.0, 10.0
_RIB_SLOPE = 0.3  # mm of descent per mm anterior
_RIB_MIDLINE_GAP_MM = 30.0
_TEXTURE_WAVES = 8
_TEXTURE_WAVELENGTH_MM = (3.0, 8.0)
_TEXTURE_MEAN_FF, _TEXTURE_SPREAD_FF = 0.5, 0.25


def _level_s(model: SpineModel, name: str) -> float:
    return model.vertebra_s_mm(name)


def _profile(s: NDArray[np.float64], top: float, bottom: float) -> NDArray[np.float64]:
    """0 outside ``[bottom, top]``, rising as a sine to 1 in the middle."""
    t = np.clip((s - bottom) / (top - bottom), 0.0, 1.0)
    return np.asarray(np.sqrt(np.sin(np.pi * t)))


def draw_thorax(model: SpineModel, sampler: GridSampler, out: NDArray[np.uint8]) -> None:
    """Lungs, aorta and ribs (see the module docstring), chunk by chunk over the grid."""
    from synthct.phantom.spine_drawing import iter_chunks

    t1, t10 = _level_s(model, "T1"), _level_s(model, "T10")
    t4, l4 = _level_s(model, "T4"), _level_s(model, "L4")
    ribs = [(name, _level_s(model, name)) for name in LEVEL_NAMES if name.startswith("T")]
    for box in iter_chunks(sampler.full_box()):
        x, y, z = sampler.points(box)
        xs, ys, s = model.line_at_height(z)
        lean_a, lean_b, back, body_v, body_a, body_b = model.params_at(
            s, ("lean_a", "lean_b", "back", "body_v", "body_a", "body_b")
        )
        dx = x - xs
        by = ys + back - lean_b  # body centre (y) at this height
        dy = y - by
        _draw_lungs(out, box, dx, dy, lean_a, lean_b, _profile(s, t1, t10))
        _draw_aorta(out, box, dx, y - ys, s, body_v, body_a, body_b, (t4, l4))
        _draw_ribs(model, out, box, dx, dy, y - ys, z, lean_a, lean_b, ribs)


def _draw_lungs(
    out: NDArray[np.uint8],
    box: Box,
    dx: NDArray[np.float64],
    dy: NDArray[np.float64],
    lean_a: NDArray[np.float32],
    lean_b: NDArray[np.float32],
    size: NDArray[np.float64],
) -> None:
    a = _LUNG_A * lean_a * size
    b = _LUNG_B * lean_b * size
    with np.errstate(divide="ignore", invalid="ignore"):
        for side in (-1.0, 1.0):
            inside = ((dx - side * _LUNG_X * lean_a) / a) ** 2 + (dy / b) ** 2 <= 1.0
            paint(out, box, inside & (size > 0), Tissue.LUNG)


def _draw_aorta(
    out: NDArray[np.uint8],
    box: Box,
    dx: NDArray[np.float64],
    dy_canal: NDArray[np.float64],
    s: NDArray[np.float64],
    body_v: NDArray[np.float32],
    body_a: NDArray[np.float32],
    body_b: NDArray[np.float32],
    span: tuple[float, float],
) -> None:
    top, bottom = span
    t = np.clip((top - s) / (top - bottom), 0.0, 1.0)
    radius = _AORTA_RADIUS_MM["T4"] + t * (_AORTA_RADIUS_MM["L4"] - _AORTA_RADIUS_MM["T4"])
    # Left (+x) of the body's midline and in front of its centre, touching its outline.
    cx = 0.6 * body_a
    cy = body_v - 0.6 * body_b - 0.5 * radius
    inside = (dx - cx) ** 2 + (dy_canal - cy) ** 2 <= radius**2
    paint(out, box, inside & (s <= top) & (s >= bottom), Tissue.BLOOD)


def _draw_ribs(
    model: SpineModel,
    out: NDArray[np.uint8],
    box: Box,
    dx: NDArray[np.float64],
    dy: NDArray[np.float64],
    dy_canal: NDArray[np.float64],
    z: NDArray[np.float64],
    lean_a: NDArray[np.float32],
    lean_b: NDArray[np.float32],
    ribs: list[tuple[str, float]],
) -> None:
    ring_a = lean_a - _RIB_INSET_MM
    ring_b = lean_b - _RIB_INSET_MM
    # Radial distance (mm, approximately) from the ring that the ribs follow.
    radial = (np.sqrt((dx / ring_a) ** 2 + (dy / ring_b) ** 2) - 1.0) * np.minimum(ring_a, ring_b)
    half = _RIB_THICK_MM / 2
    near_ring = np.abs(radial) <= half
    if not near_ring.any():
        return
    lateral = np.abs(dx) >= _RIB_MIDLINE_GAP_MM
    posterior_of_canal = np.minimum(dy_canal, 0.0)  # mm in front of the canal (negative)
    cortex_mm = model.spec.cortical_thickness_mm
    for _, s_level in ribs:
        z_level = model.height_at_s(s_level)
        centre_z = z_level + _RIB_SLOPE * posterior_of_canal
        in_height = np.abs(z - centre_z) <= _RIB_HEIGHT_MM / 2
        rib = near_ring & lateral & in_height
        if not rib.any():
            continue
        depth = np.minimum(half - np.abs(radial), _RIB_HEIGHT_MM / 2 - np.abs(z - centre_z))
        paint(out, box, rib, Tissue.CORTICAL_BONE)
        paint(out, box, rib & (depth >= cortex_mm), Tissue.CANCELLOUS_BONE)


def trabecular_fat_fraction(
    seed: int, points: tuple[NDArray[np.float64], ...]
) -> NDArray[np.float64]:
    """Seeded smooth marrow fat fraction (0..1) at LPS points (see the module docstring)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 15]))
    x, y, z = points
    field = np.zeros(np.broadcast_shapes(x.shape, y.shape, z.shape))
    for _ in range(_TEXTURE_WAVES):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        k = 2 * np.pi / rng.uniform(*_TEXTURE_WAVELENGTH_MM)
        phase = rng.uniform(0, 2 * np.pi)
        field = field + np.sin(k * (direction[0] * x + direction[1] * y + direction[2] * z) + phase)
    field /= np.sqrt(_TEXTURE_WAVES / 2.0)  # unit variance
    return np.asarray(np.clip(_TEXTURE_MEAN_FF + _TEXTURE_SPREAD_FF * field, 0.0, 1.0))


def texture_marrow(
    model: SpineModel, sampler: GridSampler, region: Box, out: NDArray[np.uint8]
) -> None:
    """Replace ``CANCELLOUS_BONE`` in ``region`` by marrow tissues of the textured fat fraction."""
    view = out[region]
    cancellous = view == Tissue.CANCELLOUS_BONE
    if not cancellous.any():
        return
    points = sampler.points(region)
    ff = trabecular_fat_fraction(model.spec.seed, points)
    full = np.broadcast_to(ff, view.shape)
    view[cancellous] = marrow_labels(full[cancellous])
