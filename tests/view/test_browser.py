"""The page in Debian's chromium (Playwright), on a real server and files synthct made.

Each test reads the viewer's own state back (``window.synthctView``): the crosshair in LPS mm
is NiiVue's crosshair (RAS) converted by the page, so these tests also check the LPS <-> RAS
conversion end to end.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from synthct.io import read_volume
from synthct.view import discover, export_case
from view_helpers import DOCS, WRITE_DOCS, SphereCase, canvas_pixels, serving

pytestmark = pytest.mark.slow


def _lesion(phantom_run: Path) -> tuple[list[float], float]:
    """The validated lesion's ROI centre (LPS mm) and the CT's largest voxel size (mm)."""
    row = pd.read_csv(phantom_run / "validation" / "lesions.csv").iloc[0]
    centre = [float(row[f"roi_center_{a}_mm"]) for a in ("l", "p", "s")]
    ct = read_volume(phantom_run / "cohort" / "case-000" / "ct.nii.gz")
    return centre, max(ct.geometry.spacing_mm)


def _screenshot(page: Any, name: str, tmp_path: Path) -> Path:
    target = (DOCS / name) if WRITE_DOCS else (tmp_path / name)
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target))
    return target


def test_page_loads_without_errors_and_draws_the_volumes(
    phantom_run: Path, open_page: Any, tmp_path: Path
) -> None:
    with serving(phantom_run) as server:
        view = open_page(server.url)
        view.ready()
        tti_ms = view.js("window.synthctView.state.ttiMs")
        n_layers = view.js("window.synthctView.state.layers.length")
        print(f"time to interactive: {tti_ms:.0f} ms for {n_layers} layers (phantom, 2 mm)")
        assert view.errors == []
        assert view.js("document.getElementById('status').textContent").startswith("ready")
        paper = canvas_pixels(view.page)
        background = paper[2, 2]
        drawn = np.any(np.abs(paper - background) > 8, axis=-1)
        assert drawn.mean() > 0.2, f"only {drawn.mean():.1%} of the canvas differs from background"
        view.page.get_by_role("button", name="bone", exact=True).click()
        bone = canvas_pixels(view.page)
        changed = np.any(np.abs(bone - paper) > 8, axis=-1)
        assert changed.mean() > 0.05, "the bone window should change the image"
        view.page.get_by_role("button", name="soft tissue").click()
        soft = canvas_pixels(view.page)
        assert np.any(np.abs(soft - bone) > 8, axis=-1).mean() > 0.05
        view.page.get_by_role("button", name="paper (calcification)").click()
        png = _screenshot(view.page, "view-case.png", tmp_path)
        assert png.stat().st_size > 10_000
        assert view.errors == []


def test_clicking_a_lesion_row_centres_every_view(phantom_run: Path, open_page: Any) -> None:
    centre, voxel_mm = _lesion(phantom_run)
    with serving(phantom_run) as server:
        view = open_page(server.url)
        view.ready()
        box = view.page.locator("#gl").bounding_box()
        view.page.mouse.click(box["x"] + box["width"] * 0.1, box["y"] + box["height"] * 0.3)
        moved = view.js("window.synthctView.crosshairLPS()")
        assert np.max(np.abs(np.subtract(moved, centre))) > 2 * voxel_mm, "click should move it"
        view.page.locator("#lesions tbody tr").first.click()
        at = view.js("window.synthctView.crosshairLPS()")
        np.testing.assert_allclose(at, centre, atol=voxel_mm)
        # one crosshair for all three views: its fractional position maps back to the same point
        frac = view.js("Array.from(window.synthctView.nv.scene.crosshairPos)")
        again = view.js(
            "(f) => window.synthctView.rasToLps(Array.from(window.synthctView.nv.frac2mm(f)))",
            frac,
        )
        np.testing.assert_allclose(again, at, atol=1e-3)
        assert view.errors == []


def _draw_circle(view: Any, centre_lps: tuple[float, float, float], radius_mm: float) -> None:
    """Drag the mouse around a circle in the axial view (the pen fills the closed contour)."""
    points = view.js(
        """([centre, radius]) => {
          const v = window.synthctView, nv = v.nv, canvas = nv.canvas;
          const scale = canvas.getBoundingClientRect().width / canvas.width;
          const out = [];
          for (let n = 0; n <= 72; n++) {
            const a = 2 * Math.PI * n / 72;
            const c = centre, r = radius;
            const lps = [c[0] + r * Math.cos(a), c[1] + r * Math.sin(a), c[2]];
            const pos = nv.frac2canvasPos(nv.mm2frac(v.lpsToRas(lps)));
            out.push([pos[0] * scale, pos[1] * scale]);
          }
          return out;
        }""",
        [list(centre_lps), radius_mm],
    )
    box = view.page.locator("#gl").bounding_box()
    mouse = view.page.mouse
    mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
    mouse.down()
    for x, y in points[1:]:
        mouse.move(box["x"] + x, box["y"] + y, steps=2)
    mouse.up()


def _axial_feret_mm(mask: np.ndarray, spacing: tuple[float, float, float]) -> float:
    """Largest distance between voxel centres of a mask within one axial slice (mm)."""
    best = 0.0
    for k in np.unique(np.nonzero(mask)[2]):
        ij = np.argwhere(mask[:, :, k]) * np.asarray(spacing[:2])
        d = np.sqrt(((ij[:, None, :] - ij[None, :, :]) ** 2).sum(-1))
        best = max(best, float(d.max()))
    return best


def test_a_drawn_roi_is_saved_on_the_ct_grid_and_validated(
    sphere_case: SphereCase, open_page: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "sphere"
    shutil.copytree(sphere_case.folder, folder)
    radius = sphere_case.diameter_mm / 2
    with serving(folder, edit=True) as server:
        view = open_page(server.url)
        view.ready()
        view.js("(c) => window.synthctView.centreOn(c)", list(sphere_case.centre_lps_mm))
        view.js("window.synthctView.nv.setSliceType(window.synthctView.nv.sliceTypeAxial)")
        view.page.fill("#lesion-name", "drawn-sphere")
        view.page.get_by_role("button", name="Draw").click()
        _draw_circle(view, sphere_case.centre_lps_mm, radius)
        view.page.get_by_role("button", name="Save").click()
        view.page.wait_for_function(
            "document.getElementById('status').textContent === 'saved'", timeout=60_000
        )
        view.page.get_by_role("button", name="Validate").click()
        view.page.wait_for_function(
            "document.getElementById('status').textContent.startsWith('validated')",
            timeout=120_000,
        )
        rows = view.js("window.synthctView.state.validated")
        _screenshot(view.page, "view-annotate.png", tmp_path)
        table = view.page.locator("#lesions tbody tr").all_inner_texts()
        assert view.errors == []
    case_id = discover([folder]).cases[0].case_id
    saved = read_volume(folder / "annotations" / case_id / "lesions.nii.gz")
    ct = read_volume(folder / "ct.nii.gz")
    assert saved.kind == "label"
    assert saved.geometry.is_close(ct.geometry), "the label map must be on the CT grid"
    mask = np.asarray(saved.array) == 1
    drawn_mm = _axial_feret_mm(mask, saved.geometry.spacing_mm)
    assert abs(drawn_mm - sphere_case.diameter_mm) <= sphere_case.spacing_mm, drawn_mm
    centre = saved.geometry.index_to_lps(np.argwhere(mask).mean(axis=0))
    np.testing.assert_allclose(centre, sphere_case.centre_lps_mm, atol=sphere_case.spacing_mm)
    (row,) = rows
    assert row["lesion_name"] == "drawn-sphere"
    assert row["ct_visible"] is True and row["sct_visible"] is False
    measured = row["ct_diameter_axial_mm"]
    assert abs(measured - sphere_case.diameter_mm) <= sphere_case.spacing_mm, measured
    assert any("drawn-sphere" in text for text in table), table
    points = (folder / "annotations" / case_id / "lesion_points.txt").read_text(encoding="utf-8")
    *point, r = (float(v) for v in points.split(";")[0].split(","))
    np.testing.assert_allclose(point, sphere_case.centre_lps_mm, atol=sphere_case.spacing_mm)
    assert 0 < r < radius


def test_the_export_opens_from_file_and_shows_the_lesion(
    phantom_run: Path, open_page: Any, tmp_path: Path
) -> None:
    centre, voxel_mm = _lesion(phantom_run)
    page_file = export_case(discover([phantom_run]), 0, tmp_path / "case-000.html")
    view = open_page(page_file.as_uri())
    view.ready()
    assert view.errors == []
    assert view.js("document.getElementById('mode').textContent") == "(export)"
    np.testing.assert_allclose(view.js("window.synthctView.crosshairLPS()"), centre, atol=voxel_mm)
    view.js("window.synthctView.nv.setSliceType(window.synthctView.nv.sliceTypeAxial)")
    names = view.js("window.synthctView.state.layers.map((l) => l.name)")
    for n, name in enumerate(names):  # only the CT: no label overlay over the lesion
        view.js(f"window.synthctView.nv.setOpacity({n}, {1 if name == 'ct' else 0})")
    at = view.js(
        """() => { const nv = window.synthctView.nv, canvas = nv.canvas;
        const scale = canvas.getBoundingClientRect().width / canvas.width;
        const pos = nv.frac2canvasPos(nv.scene.crosshairPos);
        return [pos[0] * scale, pos[1] * scale]; }"""
    )
    on_ct = canvas_pixels(view.page)
    view.page.get_by_role("button", name="sct", exact=True).click()
    on_sct = canvas_pixels(view.page)
    x, y = (round(v) for v in at)
    lesion_ct = on_ct[y - 1 : y + 2, x - 1 : x + 2].mean()
    lesion_sct = on_sct[y - 1 : y + 2, x - 1 : x + 2].mean()
    # the calcified lesion is bright on CT (paper window -250..750 HU) and missing on the sCT
    assert lesion_ct > 150, lesion_ct
    assert lesion_sct < lesion_ct - 60, (lesion_ct, lesion_sct)
    _screenshot(view.page, "view-export.png", tmp_path)
    assert view.errors == []


def test_the_export_is_one_file_with_everything_inlined(phantom_run: Path, tmp_path: Path) -> None:
    page_file = export_case(discover([phantom_run]), 0, tmp_path / "case.html", margin_mm=20)
    text = page_file.read_text(encoding="utf-8")
    assert "static/" not in text and "__TOKEN__" not in text
    assert "window.SYNTHCT_EMBED" in text
    assert "<script src=" not in text and '<link rel="stylesheet"' not in text
    size_mb = page_file.stat().st_size / 1e6
    assert size_mb < 8, size_mb
