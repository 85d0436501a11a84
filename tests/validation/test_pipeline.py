"""The per-case pipeline on phantom cases with known answers, written as real NIfTI files.

The phantom (:func:`write_case`) is an axial slab of a spine-like cylinder: air, a soft-tissue
body (40 HU), a bone ring (700 HU) around a CSF canal (10 HU) holding calcified lesion spheres
of known HU, with seeded Gaussian noise (SD 10 HU). The sCT is the CT itself (every lesion
visible, zero differences), or the CT with the lesions replaced by CSF (the paper's finding:
0 x 0 mm on sCT). A two-echo MRI shows the lesions dark in bright CSF.

Other test modules import :func:`write_case` from here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from synthct.errors import GeometryMismatchError
from synthct.geometry import Geometry
from synthct.io import read_volume, write_volume
from synthct.validation.case import (
    CaseFailure,
    CaseResult,
    ValidationSettings,
    compute_case,
    validate_case,
)
from synthct.validation.manifest import CaseSpec
from synthct.volume import (
    CTVolume,
    LabelMap,
    MRProtocol,
    MultiEchoMR,
    ScalarVolume,
    SyntheticCT,
    Volume,
)

AIR_HU, FAT_HU, BODY_HU, BONE_HU, CSF_HU = -1000.0, -100.0, 40.0, 700.0, 10.0
NOISE_SD_HU = 10.0
SHAPE = (48, 48, 40)
SCTMode = Literal["identical", "csf", "shifted_grid"]


def phantom_geometry(shape: tuple[int, int, int] = SHAPE, spacing_mm: float = 1.0) -> Geometry:
    """An LPS grid centred near the origin."""
    origin = -(np.asarray(shape) - 1) / 2 * spacing_mm + np.array([0.3, -0.2, 5.0])
    return Geometry.from_parameters(shape, (spacing_mm,) * 3, origin)


def lesion_centres(geometry: Geometry, n_lesions: int) -> list[np.ndarray]:
    """Lesion centres in LPS: on the canal axis, spread along S."""
    centre = geometry.index_to_lps((np.asarray(geometry.shape) - 1) / 2)
    extent = geometry.extent_mm[2]
    offsets = np.linspace(-extent / 4, extent / 4, n_lesions) if n_lesions > 1 else [0.0]
    return [centre + np.array([0.0, 0.0, dz]) for dz in offsets]


def phantom_arrays(
    geometry: Geometry,
    *,
    lesion_hu: list[float],
    radius_mm: list[float],
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CT (HU, float32), the same CT with lesions as CSF, and the lesion label map."""
    index = np.indices(geometry.shape).reshape(3, -1).T
    lps = geometry.index_to_lps(index).reshape((*geometry.shape, 3))
    centre = geometry.index_to_lps((np.asarray(geometry.shape) - 1) / 2)
    r_axial = np.hypot(lps[..., 0] - centre[0], lps[..., 1] - centre[1])
    body = ((lps[..., 0] - centre[0]) / 22.0) ** 2 + ((lps[..., 1] - centre[1]) / 20.0) ** 2 <= 1
    clean = np.full(geometry.shape, AIR_HU)
    clean[body] = BODY_HU
    clean[(r_axial <= 15.0) & body] = BONE_HU
    clean[r_axial <= 12.0] = CSF_HU
    # an asymmetric landmark for registration: a bony process toward posterior-left
    process = (np.abs(lps[..., 0] - centre[0] - 6) < 3) & (lps[..., 1] - centre[1] > 14)
    clean[process & body] = BONE_HU
    # and a fat pad in the right-anterior body, outside the bone ring
    fat = (lps[..., 0] - centre[0] < -8) & (lps[..., 1] - centre[1] < -6) & (r_axial > 16)
    clean[fat & body] = FAT_HU
    labels = np.zeros(geometry.shape, dtype=np.uint8)
    without = clean.copy()
    for n, (c, hu, r) in enumerate(
        zip(lesion_centres(geometry, len(lesion_hu)), lesion_hu, radius_mm, strict=True), start=1
    ):
        inside = np.linalg.norm(lps - c, axis=-1) <= r
        clean[inside] = hu
        labels[inside] = n
    noise = np.random.default_rng(seed).normal(0.0, NOISE_SD_HU, geometry.shape)
    return (clean + noise).astype(np.float32), (without + noise).astype(np.float32), labels


def phantom_mri(
    geometry: Geometry, ct_hu: np.ndarray, labels: np.ndarray, seed: int
) -> MultiEchoMR:
    """Two echoes: CSF bright, body medium, bone and lesions dark (noise SD 10)."""
    signal = np.where(ct_hu < -500, 0.0, 400.0)
    signal[np.abs(ct_hu - CSF_HU) < 40] = 900.0
    signal[ct_hu > 400] = 120.0
    signal[labels > 0] = 150.0
    rng = np.random.default_rng(seed + 100)
    echoes = np.stack([signal, 0.8 * signal]) + rng.normal(0, 10.0, (2, *geometry.shape))
    protocol = MRProtocol(echo_times_ms=(2.3, 4.6), repetition_time_ms=7.0)
    return MultiEchoMR(np.abs(echoes).astype(np.float32), geometry.affine, protocol=protocol)


def write_case(
    folder: Path,
    case_id: str,
    *,
    lesion_hu: list[float] | None = None,
    radius_mm: list[float] | None = None,
    sct: SCTMode = "identical",
    with_mri: bool = False,
    seed: int = 0,
    shape: tuple[int, int, int] = SHAPE,
) -> dict[str, str]:
    """Write a phantom case into ``folder/case_id`` and return its manifest row (relative paths).

    ``sct="shifted_grid"`` writes the (identical) sCT on another grid of the same frame.
    """
    lesion_hu = [600.0] if lesion_hu is None else lesion_hu
    radius_mm = [4.0] * len(lesion_hu) if radius_mm is None else radius_mm
    geometry = phantom_geometry(shape)
    ct, without, labels = phantom_arrays(
        geometry, lesion_hu=lesion_hu, radius_mm=radius_mm, seed=seed
    )
    case_dir = folder / case_id
    case_dir.mkdir(parents=True, exist_ok=True)
    write_volume(CTVolume(ct, geometry.affine), case_dir / "ct.nii.gz")
    write_volume(LabelMap(labels, geometry.affine), case_dir / "lesions.nii.gz")
    if sct == "identical":
        write_volume(SyntheticCT(ct, geometry.affine), case_dir / "sct.nii.gz")
    elif sct == "csf":
        write_volume(SyntheticCT(without, geometry.affine), case_dir / "sct.nii.gz")
    else:
        write_volume(_on_other_grid(SyntheticCT(ct, geometry.affine)), case_dir / "sct.nii.gz")
    row = {
        "case_id": case_id,
        "ct": f"{case_id}/ct.nii.gz",
        "sct": f"{case_id}/sct.nii.gz",
        "lesions": f"{case_id}/lesions.nii.gz",
    }
    if with_mri:
        write_volume(phantom_mri(geometry, ct, labels, seed), case_dir / "mri.nii.gz")
        row["mri"] = f"{case_id}/mri.nii.gz"
    return row


def _on_other_grid(sct: SyntheticCT) -> SyntheticCT:
    """The same voxels on another grid of the same frame: padded with air, axes 0 and 1 flipped.

    Shape, origin and orientation (RAS-like) differ; every CT voxel centre is an sCT voxel
    centre, so resampling back is exact.
    """
    pads = ((3, 2), (0, 4), (1, 1))
    data = np.pad(sct.array, pads, constant_values=AIR_HU)
    shift = np.eye(4)
    shift[:3, 3] = [-p[0] for p in pads]
    n0, n1 = data.shape[0], data.shape[1]
    flip = np.array([[-1, 0, 0, n0 - 1], [0, -1, 0, n1 - 1], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    return SyntheticCT(data[::-1, ::-1].copy(), sct.affine @ shift @ flip)


def spec(folder: Path, row: dict[str, str], **extra: object) -> CaseSpec:
    """A :class:`CaseSpec` from a manifest row relative to ``folder``."""
    values: dict[str, object] = {
        k: (folder / v if k in ("ct", "sct", "lesions", "body_mask") else v) for k, v in row.items()
    }
    if "mri" in values:
        values["mri"] = (folder / row["mri"],)
    values.update(extra)
    return CaseSpec.model_validate(values)


def _ok(result: CaseResult) -> CaseResult:
    assert result.ok, result.error
    return result


# -- known answers ---------------------------------------------------------------------------
def test_identical_sct_is_perfect(tmp_path: Path) -> None:
    row = write_case(tmp_path, "p01", lesion_hu=[600.0, 300.0], with_mri=True)
    result = _ok(validate_case(spec(tmp_path, row)))
    case = result.case_row
    assert case["mae_hu"] == 0.0 and case["mean_error_hu"] == 0.0
    assert case["ms_ssim"] == pytest.approx(1.0, abs=1e-12)
    assert math.isinf(case["psnr_db"])
    assert case["n_lesions"] == 2 and case["n_visible_ct"] == 2 and case["n_visible_sct"] == 2
    assert case["n_visible_mri"] == 2
    assert not case["sct_resampled"] and not case["sct_registered"]
    assert [r["lesion_id"] for r in result.lesion_rows] == [1, 2]
    for lesion in result.lesion_rows:
        assert lesion["case_id"] == "p01"
        assert lesion["ct_visible"] and lesion["sct_visible"] and lesion["mri_visible"]
        assert lesion["mean_difference_hu"] == 0.0
        assert lesion["diameter_axial_difference_mm"] == 0.0
        assert lesion["diameter_sagittal_difference_mm"] == 0.0
        assert lesion["dice"] == 1.0
        assert lesion["ct_diameter_axial_mm"] == pytest.approx(8.0, abs=1.5)
    assert len(result.lesion_masks) == 2
    assert set(result.timings_s) >= {"read", "body_mask", "align", "image_metrics"}


def test_lesions_replaced_by_csf_are_missed(tmp_path: Path) -> None:
    row = write_case(tmp_path, "p02", lesion_hu=[450.0, 700.0], sct="csf")
    result = _ok(validate_case(spec(tmp_path, row)))
    assert result.case_row["n_visible_ct"] == 2 and result.case_row["n_visible_sct"] == 0
    for lesion in result.lesion_rows:
        assert lesion["ct_visible"] and not lesion["sct_visible"]
        assert lesion["sct_diameter_axial_mm"] == 0.0 and lesion["sct_diameter_sagittal_mm"] == 0.0
        assert lesion["sct_mean_hu"] == pytest.approx(CSF_HU, abs=5.0)
        assert lesion["calcification_grade"] == "dense"
        assert lesion["dice"] == 0.0


def test_mri_as_one_file_per_echo(tmp_path: Path) -> None:
    row = write_case(tmp_path, "echoes", lesion_hu=[600.0], sct="csf", with_mri=True)
    mri = read_volume(tmp_path / row["mri"], kind="mr")
    assert isinstance(mri, MultiEchoMR)
    for n in range(2):
        echo = MultiEchoMR(
            mri.array[n : n + 1],
            mri.affine,
            protocol=MRProtocol(echo_times_ms=(2.3 * (n + 1),), repetition_time_ms=7.0),
        )
        write_volume(echo, tmp_path / f"e{n + 1}.nii.gz")
    case = spec(tmp_path, row, mri=(tmp_path / "e1.nii.gz", tmp_path / "e2.nii.gz"))
    result = _ok(validate_case(case))
    assert result.inputs["mri_echo_times_ms"] == [2.3, 4.6]
    (lesion,) = result.lesion_rows
    assert lesion["mri_visible"] and lesion["ct_visible"] and not lesion["sct_visible"]
    assert lesion["mri_cnr"] < -3  # dark on the MRI source, as in the paper


def test_lesion_points_give_the_same_visibility(tmp_path: Path) -> None:
    row = write_case(tmp_path, "p03", lesion_hu=[600.0], sct="csf")
    geometry = phantom_geometry()
    (c,) = lesion_centres(geometry, 1)
    points = f"{c[0]},{c[1]},{c[2]},4.0"
    from synthct.validation.manifest import parse_lesion_points

    result = _ok(
        validate_case(
            spec(tmp_path, {k: v for k, v in row.items() if k != "lesions"}),
        )
    )
    assert result.lesion_rows == []  # no lesions given: image metrics only
    with_points = spec(
        tmp_path,
        {k: v for k, v in row.items() if k != "lesions"},
        lesion_points=tuple(parse_lesion_points(points)),
    )
    result = _ok(validate_case(with_points))
    (lesion,) = result.lesion_rows
    assert lesion["annotation_kind"] == "point"
    assert lesion["ct_visible"] and not lesion["sct_visible"]


def test_sct_on_another_grid_of_the_same_frame_is_resampled(tmp_path: Path) -> None:
    same = _ok(validate_case(spec(tmp_path, write_case(tmp_path, "a", lesion_hu=[600.0]))))
    row = write_case(tmp_path, "b", lesion_hu=[600.0], sct="shifted_grid")
    sct = read_volume(tmp_path / row["sct"])
    assert sct.orientation_code == "RAS" and sct.spatial_shape != SHAPE
    moved = _ok(validate_case(spec(tmp_path, row)))
    assert moved.case_row["sct_resampled"] and not moved.case_row["sct_registered"]
    for key in ("mae_hu", "ms_ssim", "n_visible_ct", "n_visible_sct", "body_voxels"):
        assert moved.case_row[key] == pytest.approx(same.case_row[key], abs=1e-3), key
    (a,), (b,) = same.lesion_rows, moved.lesion_rows
    assert b["roi_in_sct_fov_fraction"] == 1.0
    for key, value in a.items():
        if isinstance(value, float):
            assert b[key] == pytest.approx(value, abs=1e-3, nan_ok=True), key
        elif key != "case_id":
            assert b[key] == value, key


def test_given_body_mask_on_another_grid(tmp_path: Path) -> None:
    row = write_case(tmp_path, "mask", lesion_hu=[600.0])
    ct = read_volume(tmp_path / row["ct"])
    inner = (ct.array > -500)[::2, ::2, ::2].astype(np.uint8)
    write_volume(LabelMap(inner, ct.affine @ np.diag([2.0, 2.0, 2.0, 1.0])), tmp_path / "b.nrrd")
    result = _ok(validate_case(spec(tmp_path, row, body_mask=tmp_path / "b.nrrd")))
    assert result.case_row["body_mask_given"]
    assert "b.nrrd" in result.image_metrics_conventions["mask"]
    derived = _ok(validate_case(spec(tmp_path, row)))
    assert result.case_row["body_voxels"] == pytest.approx(derived.case_row["body_voxels"], rel=0.1)
    far_affine = ct.affine @ np.diag([2.0, 2.0, 2.0, 1.0])
    far_affine[:3, 3] += 900.0
    write_volume(LabelMap(inner, far_affine), tmp_path / "far.nrrd")
    failed = _failed(
        validate_case(spec(tmp_path, row, body_mask=tmp_path / "far.nrrd")), "far.nrrd", "frame"
    )
    assert failed.error_column == "body_mask"


# -- bad input -------------------------------------------------------------------------------
def _failed(result: CaseResult, *needles: str) -> CaseResult:
    assert result.status == "failed"
    assert result.case_row == {} and result.lesion_rows == []
    assert result.error is not None
    assert f"case {result.case_id!r}" in result.error
    for needle in needles:
        assert needle in result.error, result.error
    return result


def test_missing_file_fails_naming_case_and_file(tmp_path: Path) -> None:
    row = write_case(tmp_path, "m1")
    (tmp_path / row["sct"]).unlink()
    result = _failed(validate_case(spec(tmp_path, row)), "sct", "sct.nii.gz", "no such file")
    assert result.error_column == "sct" and result.error_stage == "read"


def test_raw_ct_and_mr_as_ct_fail(tmp_path: Path) -> None:
    row = write_case(tmp_path, "raw")
    ct = read_volume(tmp_path / row["ct"])
    write_volume(CTVolume(ct.array + 1024.0, ct.affine), tmp_path / row["ct"])
    result = _failed(validate_case(spec(tmp_path, row)), "ct.nii.gz", "Hounsfield")
    assert result.error_column == "ct"
    row = write_case(tmp_path, "mr", with_mri=True)
    as_ct = dict(row, ct=row["mri"])  # a 4D multi-echo MR
    _failed(validate_case(spec(tmp_path, as_ct)), "mri.nii.gz", "cannot be read as ct")
    echo = read_volume(tmp_path / row["mri"], kind="mr")
    write_volume(_first_echo(echo), tmp_path / "e1.nii.gz")
    result = _failed(validate_case(spec(tmp_path, dict(row, ct="e1.nii.gz"))), "e1.nii.gz", "MR")
    assert result.error_column == "ct" and "Hounsfield" in result.error


def _first_echo(mr: Volume) -> ScalarVolume:
    assert isinstance(mr, MultiEchoMR)
    return mr.echo(0)


def test_nan_voxels_fail(tmp_path: Path) -> None:
    row = write_case(tmp_path, "nan")
    sct = read_volume(tmp_path / row["sct"])
    data = sct.array.copy()
    data[3, 4, 5] = np.nan
    import nibabel as nib

    from synthct.geometry import lps_to_ras

    nib.save(nib.Nifti1Image(data, lps_to_ras(sct.affine)), str(tmp_path / row["sct"]))
    _failed(validate_case(spec(tmp_path, row)), "NaN", "sct.nii.gz")


def test_lesion_outside_fov_fails_and_empty_mask_warns(tmp_path: Path) -> None:
    row = write_case(tmp_path, "fov")
    from synthct.validation.manifest import parse_lesion_points

    no_map = {k: v for k, v in row.items() if k != "lesions"}
    outside = spec(tmp_path, no_map, lesion_points=tuple(parse_lesion_points("500,0,0,4")))
    result = _failed(validate_case(outside), "outside the CT field of view")
    assert result.error_column == "lesion_points"
    labels = read_volume(tmp_path / row["lesions"], kind="label")
    write_volume(LabelMap(np.zeros_like(labels.array), labels.affine), tmp_path / row["lesions"])
    # an empty lesion mask used to fail the whole case and lose its image metrics (issue 17)
    result = _ok(validate_case(spec(tmp_path, row)))
    assert result.lesion_rows == [] and result.case_row["n_lesions"] == 0
    assert result.case_row["mae_hu"] == 0.0
    assert any("lesions.nii.gz" in w and "empty" in w for w in result.warnings), result.warnings


def test_other_frame_without_register_prints_both_geometries(tmp_path: Path) -> None:
    row = write_case(tmp_path, "far")
    sct = read_volume(tmp_path / row["sct"])
    moved = sct.affine.copy()
    moved[:3, 3] += (400.0, 0.0, 0.0)
    write_volume(SyntheticCT(sct.array, moved), tmp_path / row["sct"])
    result = _failed(
        validate_case(spec(tmp_path, row)), "do not share a frame", "CT: shape", "sCT: shape"
    )
    assert "--register" in result.error
    with pytest.raises(CaseFailure) as info:
        compute_case(spec(tmp_path, row))
    assert isinstance(info.value.__cause__, GeometryMismatchError)


def test_result_json_round_trip(tmp_path: Path) -> None:
    row = write_case(tmp_path, "rt")
    result = _ok(validate_case(spec(tmp_path, row), ValidationSettings()))
    from synthct.validation.outputs import decode_json, encode_json

    text = json.dumps(encode_json(result.to_json()), allow_nan=False)
    back = CaseResult.from_json(decode_json(json.loads(text)))
    assert math.isinf(back.case_row["psnr_db"])
    assert back.lesion_rows == result.lesion_rows


def test_dicom_ct_gets_lesion_seg_and_sr(tmp_path: Path) -> None:
    """A CT given as a DICOM series gets a SEG of the lesions and a TID 1500 SR beside them."""
    from synthct.validation.dicom_seg_sr import lesion_measurements_from_sr

    row = write_case(tmp_path, "dicom", lesion_hu=[600.0], sct="csf")
    ct = read_volume(tmp_path / row["ct"])
    assert isinstance(ct, CTVolume)
    write_volume(ct, tmp_path / "dicom" / "ct_dicom", patient_id="PHANTOM")
    case = CaseSpec(
        case_id="dicom",
        ct=tmp_path / "dicom" / "ct_dicom",
        sct=tmp_path / row["sct"],
        lesions=tmp_path / row["lesions"],
    )
    result = compute_case(case, ValidationSettings(), figure_dir=tmp_path / "out")
    assert {"lesions.seg.dcm", "lesions.sr.dcm"} <= set(result.figures)
    import pydicom

    seg = pydicom.dcmread(tmp_path / "out" / "lesions.seg.dcm")
    assert seg.Modality == "SEG" and len(seg.SegmentSequence) == 1
    by_image = {
        r["image"]: r for r in lesion_measurements_from_sr(tmp_path / "out" / "lesions.sr.dcm")
    }
    lesion = result.lesion_rows[0]
    assert by_image["ct"]["mean_hu"] == pytest.approx(lesion["ct_mean_hu"], rel=1e-6)
    assert by_image["sct"]["mean_hu"] == pytest.approx(lesion["sct_mean_hu"], rel=1e-6)
    assert by_image["ct"]["visible"] and not by_image["sct"]["visible"]


def test_domain_warnings_of_the_sct_are_repeated_in_the_outputs(tmp_path: Path) -> None:
    # A synthesis model's out-of-domain warning travels in the sCT's sidecar to every report.
    row = write_case(tmp_path, "p01")
    sct_path = tmp_path / row["sct"]
    sct = read_volume(sct_path, kind="sct")
    warning = "field strength 1.5 T outside the training domain (3.0 T)"
    write_volume(
        SyntheticCT(sct.array, sct.affine, provenance={"model": "m", "out_of_domain": [warning]}),
        sct_path,
    )
    result = _ok(validate_case(spec(tmp_path, row)))
    assert any(warning in w for w in result.warnings)
    assert result.case_row["sct_out_of_domain"] == warning
    plain = _ok(validate_case(spec(tmp_path / "b", write_case(tmp_path / "b", "p02"))))
    assert plain.warnings == [] and plain.case_row["sct_out_of_domain"] == ""
    from synthct.validation.runner import run_validation

    run_validation([spec(tmp_path, row)], tmp_path / "out", n_workers=0)
    assert warning in (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
