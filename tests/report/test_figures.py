"""Lesion figure (Fig. 1 style) and cohort plots: real PNGs, panels that show the lesion.

Known answers: the Feret endpoints are as far apart as the measured axial diameter, the
cranio-caudal segment is as long as the measured sagittal diameter, and on the display slices
the CT shows the lesion's HU at its centre while the "missed" sCT shows CSF.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest

from known_geometry import AFFINES
from report.lesion_cases import CSF_HU, Case, make_case
from synthct.figures.plots import bland_altman_figure, paired_values_figure, visibility_figure
from synthct.imaging.lesion_size import axial_diameter_mm, craniocaudal_extent_mm
from synthct.validation.lesion_figure import (
    CALCIFICATION_WINDOW_HU,
    axial_feret_line,
    craniocaudal_line,
    lesion_figure,
    lesion_panels,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG from its IHDR chunk (after checking the signature)."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def _center_value(image: np.ndarray, extent: tuple[float, float, float, float]) -> float:
    """The pixel value at display position (0, 0), the lesion centre."""
    left, right, bottom, top = extent
    rows, cols = image.shape
    col = int((0.0 - left) / (right - left) * cols)
    row = int((0.0 - top) / (bottom - top) * rows)
    return float(image[row, col])


# -- measured lines ----------------------------------------------------------------------------
def test_feret_endpoints_are_the_measured_axial_diameter(missed_case: Case) -> None:
    result = missed_case.result
    masks = result.masks
    assert masks is not None
    line = axial_feret_line(masks.ct_segmentation, affine=masks.affine)
    assert line is not None
    distance = math.dist(line.start_lps_mm, line.end_lps_mm)
    assert distance == pytest.approx(result.ct.diameter_axial_mm, abs=1e-9)
    assert line.length_mm == pytest.approx(distance, abs=1e-9)
    # both ends in one axial slice, near the lesion
    assert line.start_lps_mm[2] == line.end_lps_mm[2]
    assert abs(line.start_lps_mm[2] - result.roi_center_lps_mm[2]) < 5.0


def test_craniocaudal_segment_is_the_measured_sagittal_diameter(missed_case: Case) -> None:
    result = missed_case.result
    masks = result.masks
    assert masks is not None
    line = craniocaudal_line(masks.ct_segmentation, affine=masks.affine)
    assert line is not None
    assert math.dist(line.start_lps_mm, line.end_lps_mm) == pytest.approx(
        result.ct.diameter_sagittal_mm, abs=1e-9
    )
    assert line.start_lps_mm[:2] == line.end_lps_mm[:2]


@pytest.mark.parametrize("name", sorted(AFFINES))
def test_lines_match_the_measurement_on_any_grid(name: str) -> None:
    """A 6 x 3 voxel bar and a random blob, on LPS, RAS-stored and oblique grids."""
    affine = AFFINES[name]
    bar = np.zeros((10, 10, 6), dtype=bool)
    bar[2:8, 4:7, 1:4] = True
    rng = np.random.default_rng(7)
    blob = rng.random((9, 8, 7)) > 0.6
    for mask in (bar, blob):
        axial = axial_feret_line(mask, affine=affine)
        sagittal = craniocaudal_line(mask, affine=affine)
        assert axial is not None and sagittal is not None
        assert math.dist(axial.start_lps_mm, axial.end_lps_mm) == pytest.approx(
            axial_diameter_mm(mask, affine=affine), abs=1e-9
        )
        assert sagittal.length_mm == pytest.approx(
            craniocaudal_extent_mm(mask, affine=affine), abs=1e-9
        )


def test_empty_mask_has_no_line() -> None:
    empty = np.zeros((4, 4, 4), dtype=bool)
    assert axial_feret_line(empty, affine=np.eye(4)) is None
    assert craniocaudal_line(empty, affine=np.eye(4)) is None


# -- panels ------------------------------------------------------------------------------------
def test_panels_show_the_lesion_on_ct_and_csf_on_the_missed_sct(missed_case: Case) -> None:
    rows = lesion_panels(
        ct=missed_case.ct, sct=missed_case.sct, mri=missed_case.mri, lesion=missed_case.result
    )
    assert [len(r) for r in rows] == [3, 3]
    for plane_row in rows:
        ct_panel, sct_panel, mri_panel = plane_row
        assert _center_value(ct_panel.image, ct_panel.extent) > 500.0  # lesion is 600 HU
        assert abs(_center_value(sct_panel.image, sct_panel.extent) - CSF_HU) < 40.0
        assert _center_value(mri_panel.image, mri_panel.extent) < 100.0  # dark on echo 2
        assert ct_panel.window == (
            CALCIFICATION_WINDOW_HU[0] - CALCIFICATION_WINDOW_HU[1] / 2,
            CALCIFICATION_WINDOW_HU[0] + CALCIFICATION_WINDOW_HU[1] / 2,
        )
        # the ROI is outlined on every panel, the segmentation only where the lesion is seen
        for panel in plane_row:
            assert panel.roi is not None and panel.roi.any()
        assert ct_panel.segmentation is not None and ct_panel.segmentation.any()
        assert sct_panel.segmentation is None
        assert len(ct_panel.lines) == 1 and sct_panel.lines == []
    axial_ct, axial_sct, axial_mri = rows[0]
    d = missed_case.result.to_dict()
    assert f"mean {d['ct_mean_hu']:.1f} HU" in axial_ct.text
    assert f"visible (CNR {d['ct_cnr']:.1f})" in axial_ct.text
    assert "not visible" in axial_sct.text and "0.0 x 0.0 mm" in axial_sct.text
    assert "echo 2" in axial_mri.title and "TE 4.6 ms" in axial_mri.title
    # the drawn axial line is as long as the measured diameter (display mm, in-plane)
    (x0, x1), (y0, y1), label = axial_ct.lines[0]
    assert math.hypot(x1 - x0, y1 - y0) == pytest.approx(d["ct_diameter_axial_mm"], abs=1e-6)
    assert f"{d['ct_diameter_axial_mm']:.1f} mm" in label
    (x0, x1), (y0, y1), _ = rows[1][0].lines[0]
    assert math.hypot(x1 - x0, y1 - y0) == pytest.approx(d["ct_diameter_sagittal_mm"], abs=1e-6)


def test_panels_from_a_row_and_masks_pick_the_best_echo(missed_case: Case) -> None:
    """A CSV row (no mri_cnr_echo) plus masks: the echo is measured, the same as the result's."""
    row = missed_case.result.to_dict()
    row["mri_cnr_echo"] = float("nan")
    rows = lesion_panels(
        ct=missed_case.ct,
        sct=missed_case.sct,
        mri=missed_case.mri,
        lesion=row,
        masks=missed_case.result.masks,
    )
    assert f"echo {missed_case.result.mri_cnr_echo + 1}" in rows[0][2].title


def test_panels_without_masks_or_mri() -> None:
    case = make_case(lesion_hu=300.0, missed=False, seed=5)
    rows = lesion_panels(ct=case.ct, sct=case.sct, lesion=case.result.to_dict())
    assert [len(r) for r in rows] == [2, 2]
    assert all(p.roi is None and p.lines == [] for r in rows for p in r)
    assert _center_value(rows[0][1].image, rows[0][1].extent) > 200.0  # the sCT shows it


# -- PNG files ---------------------------------------------------------------------------------
def test_lesion_figure_is_a_png_of_the_expected_size(missed_case: Case, tmp_path: Path) -> None:
    path = lesion_figure(
        tmp_path / "lesion-1.png",
        ct=missed_case.ct,
        sct=missed_case.sct,
        mri=missed_case.mri,
        lesion=missed_case.result,
        title="case <1>",
        dpi=50,
    )
    assert path == tmp_path / "lesion-1.png"
    assert png_size(path) == (3 * 3 * 50, int(6.6 * 50))
    assert [p.name for p in tmp_path.iterdir()] == ["lesion-1.png"]  # nothing partial left
    two_columns = lesion_figure(
        tmp_path / "no-mri.png",
        ct=missed_case.ct,
        sct=missed_case.sct,
        lesion=missed_case.result,
        dpi=50,
    )
    assert png_size(two_columns) == (2 * 3 * 50, int(6.6 * 50))


def test_cohort_plots_are_pngs(tmp_path: Path) -> None:
    ct = [600.0, 150.0, 400.0]
    sct = [12.0, 9.0, 20.0]
    labels = ["a/1", "b/1", "c/2"]
    ba = bland_altman_figure(
        tmp_path / "ba.png",
        ct,
        sct,
        bias=-369.7,
        loa_lower=-800.0,
        loa_upper=60.0,
        unit="HU",
        label="Mean HU",
        point_labels=labels,
        dpi=50,
    )
    assert png_size(ba) == (250, 180)
    bars = paired_values_figure(
        tmp_path / "bars.png", ct, sct, point_labels=labels, unit="HU", label="Mean HU", dpi=50
    )
    assert png_size(bars)[1] == 170
    cnr = visibility_figure(
        tmp_path / "cnr.png",
        [59.3, math.inf, 12.0],
        [0.1, -0.5, 4.0],
        point_labels=labels,
        threshold=3.0,
        dpi=50,
    )
    assert png_size(cnr)[1] == 170
    with pytest.raises(ValueError, match="paired"):
        paired_values_figure(
            tmp_path / "x.png", ct, sct[:2], point_labels=labels, unit="HU", label="x"
        )
    assert not (tmp_path / "x.png").exists()
