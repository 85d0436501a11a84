"""Alignment of the sCT (and MRI) onto the CT grid: overlap rule, resampling, rigid registration.

Known answer for registration: the sCT is the CT's own voxel array given the affine ``M @ A``,
i.e. the CT moved rigidly by ``M`` (5 degrees about an oblique axis through the field-of-view
centre and 5 mm), with no interpolation; the registration must return ``M`` (CT point to sCT
point) within 1 mm at every body voxel and 1 degree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from synthct.errors import GeometryMismatchError
from synthct.geometry import Geometry
from synthct.imaging.alignment import (
    align_case,
    frame_overlap_fraction,
    transform_from_dict,
    write_transform,
)
from synthct.imaging.body_mask import body_mask_from_ct
from synthct.io import read_volume
from synthct.validation.case import ValidationSettings, validate_case
from synthct.volume import CTVolume, LabelMap, SyntheticCT
from validation.test_pipeline import (
    phantom_arrays,
    phantom_geometry,
    phantom_mri,
    spec,
    write_case,
)


def rigid_motion(geometry: Geometry, angle_deg: float = 5.0, shift_mm: float = 5.0) -> np.ndarray:
    """4x4 LPS motion: rotation about an oblique axis through the grid centre, then a shift."""
    centre = geometry.index_to_lps((np.asarray(geometry.shape) - 1) / 2)
    rotation = Rotation.from_rotvec(np.radians(angle_deg) * np.array([1.0, 1.0, 1.0]) / 3**0.5)
    r = rotation.as_matrix()
    motion = np.eye(4)
    motion[:3, :3] = r
    motion[:3, 3] = centre + np.array([0.6, -0.8, 0.0]) * shift_mm - r @ centre
    return motion


def motion_errors(found: np.ndarray, truth: np.ndarray, points: np.ndarray) -> tuple[float, float]:
    """Largest displacement difference at ``points`` (mm) and rotation difference (degrees)."""
    moved_found = points @ found[:3, :3].T + found[:3, 3]
    moved_truth = points @ truth[:3, :3].T + truth[:3, 3]
    delta = found[:3, :3].T @ truth[:3, :3]
    angle = np.degrees(np.arccos(np.clip((np.trace(delta) - 1) / 2, -1, 1)))
    return float(np.linalg.norm(moved_found - moved_truth, axis=1).max()), float(angle)


def moved_case(geometry: Geometry) -> tuple[CTVolume, SyntheticCT, np.ndarray, np.ndarray]:
    ct_hu, _, labels = phantom_arrays(geometry, lesion_hu=[600.0, 300.0], radius_mm=[4.0, 3.0])
    motion = rigid_motion(geometry)
    ct = CTVolume(ct_hu, geometry.affine)
    return ct, SyntheticCT(ct_hu, motion @ geometry.affine), motion, labels


# -- overlap and resampling ---------------------------------------------------------------------
def test_frame_overlap_fraction_known_answers() -> None:
    a = Geometry.from_parameters((10, 10, 10), (1.0, 1.0, 1.0))
    assert frame_overlap_fraction(a, a) == pytest.approx(1.0)
    half = Geometry.from_parameters((10, 10, 10), (1.0, 1.0, 1.0), (5.0, 0.0, 0.0))
    assert frame_overlap_fraction(a, half) == pytest.approx(0.5)
    inside = Geometry.from_parameters((4, 4, 4), (0.5, 0.5, 0.5), (2.0, 2.0, 2.0))
    assert frame_overlap_fraction(a, inside) == pytest.approx(1.0)
    far = Geometry.from_parameters((10, 10, 10), (1.0, 1.0, 1.0), (300.0, 0.0, 0.0))
    assert frame_overlap_fraction(a, far) == 0.0


def test_same_grid_is_used_as_it_is() -> None:
    geometry = phantom_geometry()
    ct_hu, _, _ = phantom_arrays(geometry, lesion_hu=[600.0], radius_mm=[4.0])
    ct = CTVolume(ct_hu, geometry.affine)
    sct = SyntheticCT(ct_hu.copy(), geometry.affine)
    aligned = align_case(ct, sct)
    assert aligned.sct is sct and aligned.sct_fov is None and not aligned.resampled
    assert aligned.describe() == {
        "sct_resampled": False,
        "sct_registered": False,
        "fov_overlap_fraction": 1.0,
    }


def test_partial_fov_sct_is_masked_and_labels_stay_labels() -> None:
    geometry = phantom_geometry()
    ct_hu, _, _ = phantom_arrays(geometry, lesion_hu=[600.0], radius_mm=[4.0])
    ct = CTVolume(ct_hu, geometry.affine)
    # the sCT covers slices 10..29 of the CT only; the body mask is on a 2 mm grid
    shifted = SyntheticCT(ct_hu[:, :, 10:30].copy(), geometry.affine @ _translation(0, 0, 10))
    mask = LabelMap(
        (ct_hu > -500).astype(np.uint8)[::2, ::2, ::2], geometry.affine @ np.diag([2, 2, 2, 1])
    )
    aligned = align_case(ct, shifted, body_mask=mask)
    assert aligned.resampled and aligned.sct_fov is not None
    assert aligned.sct_fov[:, :, 10:30].all() and not aligned.sct_fov[:, :, :10].any()
    np.testing.assert_allclose(aligned.sct.array[:, :, 10:30], ct_hu[:, :, 10:30], atol=1e-3)
    assert aligned.body_mask is not None and aligned.body_mask.dtype == np.uint8
    assert set(np.unique(aligned.body_mask.array)) == {0, 1}


def _translation(i: float, j: float, k: float) -> np.ndarray:
    t = np.eye(4)
    t[:3, 3] = (i, j, k)
    return t


def test_other_frame_without_registration_names_both_geometries() -> None:
    geometry = phantom_geometry()
    ct_hu, _, _ = phantom_arrays(geometry, lesion_hu=[600.0], radius_mm=[4.0])
    far = geometry.affine.copy()
    far[:3, 3] += (0.0, 0.0, 500.0)
    with pytest.raises(GeometryMismatchError) as info:
        align_case(
            CTVolume(ct_hu, geometry.affine), SyntheticCT(ct_hu, far, source="/data/p1/sct.nii")
        )
    text = str(info.value)
    assert "/data/p1/sct.nii" in text and "overlap by 0%" in text
    assert "CT: shape (48, 48, 40)" in text and "sCT: shape (48, 48, 40)" in text
    assert "--register" in text


# -- registration -------------------------------------------------------------------------------
def test_rigid_registration_recovers_5mm_5deg() -> None:
    geometry = phantom_geometry((48, 48, 44))
    ct, sct, motion, labels = moved_case(geometry)
    body = body_mask_from_ct(ct.array)
    mri = phantom_mri(geometry, ct.array, labels, seed=0)
    mri = mri.on_grid(mri.array, motion @ geometry.affine)  # the MRI lives in the sCT's frame
    aligned = align_case(ct, sct, mri=mri, body=body, register=True)
    report = aligned.registration
    assert report is not None
    points = geometry.index_to_lps(np.argwhere(body))
    displacement_mm, angle_deg = motion_errors(report.matrix, motion, points)
    assert displacement_mm < 1.0 and angle_deg < 1.0
    assert report.rotation_angle_deg == pytest.approx(5.0, abs=1.0)
    assert report.mae_after_hu < 0.2 * report.mae_before_hu
    assert report.ncc_after > 0.95 > report.ncc_before
    # the MRI followed the sCT: its lesions are dark where the CT's lesions are
    assert aligned.mri is not None and aligned.mri.geometry.is_close(ct.geometry)
    inside = labels > 0
    assert aligned.mri.array[0][inside].mean() < 0.5 * aligned.mri.array[0][ct.array < 40].mean()
    row = aligned.describe()
    assert row["sct_registered"] and row["registration_mae_after_hu"] == report.mae_after_hu


def test_transform_file_round_trip(tmp_path: Path) -> None:
    geometry = phantom_geometry((48, 48, 44))
    ct, sct, _, _ = moved_case(geometry)
    report = align_case(ct, sct, register=True).registration
    assert report is not None
    path = write_transform(report.transform, tmp_path / "sct_to_ct.tfm")
    back = sitk.ReadTransform(str(path))
    np.testing.assert_allclose(back.GetParameters(), report.transform.GetParameters())
    again = transform_from_dict(report.transform_dict())
    point = (3.0, -2.0, 7.0)
    np.testing.assert_allclose(again.TransformPoint(point), report.transform.TransformPoint(point))


def test_pipeline_with_register_recovers_the_lesions(tmp_path: Path) -> None:
    row = write_case(tmp_path, "moved", lesion_hu=[600.0, 300.0])
    sct = read_volume(tmp_path / row["sct"])
    motion = rigid_motion(sct.geometry)
    from synthct.io import write_volume

    write_volume(SyntheticCT(sct.array, motion @ sct.affine), tmp_path / row["sct"])
    # without registration the alignment check stops the case (it used to pass silently with
    # misaligned ROIs); measured anyway with --align warn, no lesion is called missed
    stopped = validate_case(spec(tmp_path, row))
    assert not stopped.ok and stopped.error_stage == "alignment_check"
    assert "--register" in (stopped.error or "")
    unregistered = validate_case(spec(tmp_path, row), ValidationSettings(alignment="warn"))
    assert unregistered.ok and unregistered.case_row["n_visible_sct"] < 2  # misaligned ROIs
    assert unregistered.case_row["n_missed_sct"] is None
    assert all(lesion["sct_missed"] is None for lesion in unregistered.lesion_rows)
    result = validate_case(spec(tmp_path, row), ValidationSettings(rigid_registration=True))
    assert result.ok, result.error
    assert result.case_row["sct_registered"] and result.case_row["n_visible_sct"] == 2
    assert result.registration_transform is not None
    found = np.asarray(result.registration_transform["matrix_lps"])
    points = sct.geometry.index_to_lps(np.argwhere(read_volume(tmp_path / row["lesions"]).array))
    displacement_mm, angle_deg = motion_errors(found, motion, points)
    assert displacement_mm < 1.0 and angle_deg < 1.0
    for lesion in result.lesion_rows:
        assert lesion["sct_visible"]
        assert lesion["sct_mean_hu"] == pytest.approx(lesion["ct_mean_hu"], rel=0.15)
    from synthct.validation.runner import run_validation

    summary = run_validation(
        [spec(tmp_path, row)],
        tmp_path / "out",
        ValidationSettings(rigid_registration=True),
        figures=False,
        report_writer=None,
    )
    written = sitk.ReadTransform(str(tmp_path / "out" / "cases" / "moved" / "sct_to_ct.tfm"))
    np.testing.assert_allclose(
        written.GetParameters(), summary.results[0].registration_transform["parameters"]
    )


def test_real_ct_registration(totalseg: Path) -> None:
    ct = read_volume(totalseg / "example_ct_sm.nii.gz", kind="ct")
    assert isinstance(ct, CTVolume)
    motion = rigid_motion(ct.geometry)
    sct = SyntheticCT(ct.array, motion @ ct.affine)
    body = body_mask_from_ct(ct.array)
    report = align_case(ct, sct, body=body, register=True).registration
    assert report is not None
    points = ct.geometry.index_to_lps(np.argwhere(body)[::7])
    displacement_mm, angle_deg = motion_errors(report.matrix, motion, points)
    assert displacement_mm < 1.0 and angle_deg < 1.0


# -- issue 17: anisotropic real CT, large rotations, poor results said --------------------------
def _body_crop(ct: CTVolume) -> CTVolume:
    """The CT cropped to its body's bounding box (same frame), to keep registration quick."""
    found = np.argwhere(body_mask_from_ct(ct.array))
    lo, hi = found.min(axis=0), found.max(axis=0) + 1
    offset = np.eye(4)
    offset[:3, 3] = lo
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    return CTVolume(np.ascontiguousarray(ct.array[box]), ct.affine @ offset)


@pytest.mark.slow
def test_anisotropic_real_ct_rotated_180_degrees_is_recovered(totalseg: Path) -> None:
    # a real thoracic CT at 0.98 x 0.98 x 2 mm: registration used to crash ("Sigma must be
    # greater than zero"), and a copy turned by ~180 degrees converged to a wrong pose
    read = read_volume(totalseg / "example_ct_dicom", kind="ct")
    assert isinstance(read, CTVolume)
    ct = _body_crop(read)
    assert ct.spacing_mm[2] == pytest.approx(2.0) and ct.spacing_mm[0] < 1.0
    geometry = ct.geometry
    centre = geometry.index_to_lps((np.asarray(geometry.shape) - 1) / 2)
    r = Rotation.from_rotvec(np.radians([2.0, -1.5, 178.0])).as_matrix()
    motion = np.eye(4)
    motion[:3, :3] = r
    motion[:3, 3] = centre + np.array([12.0, -8.0, 3.0]) - r @ centre
    body = body_mask_from_ct(ct.array)
    report = align_case(ct, SyntheticCT(ct.array, motion @ ct.affine), body=body, register=True)
    registration = report.registration
    assert registration is not None
    points = geometry.index_to_lps(np.argwhere(body)[::11])
    displacement_mm, angle_deg = motion_errors(registration.matrix, motion, points)
    assert displacement_mm < 2.0 and angle_deg < 2.0  # about one voxel, two degrees
    assert registration.ncc_after > 0.95 > registration.ncc_before
    assert registration.rotation_angle_deg == pytest.approx(178.0, abs=2.0)


def test_mirrored_sct_is_an_error_after_registration(tmp_path: Path) -> None:
    # a flip cannot be undone by a rigid transform: the check after registration says so
    row = write_case(tmp_path, "mirror", lesion_hu=[450.0])
    sct = read_volume(tmp_path / row["sct"])
    from synthct.io import write_volume

    write_volume(SyntheticCT(np.flip(sct.array, 0).copy(), sct.affine), tmp_path / row["sct"])
    result = validate_case(spec(tmp_path, row), ValidationSettings(rigid_registration=True))
    assert not result.ok and result.error_stage == "alignment_check"
    assert "after rigid registration (rotation" in (result.error or "")
    assert "the sCT is still misaligned" in (result.error or "")
    assert "mirrored" in (result.error or "")
