"""DICOM SEG and TID 1500 SR of lesion results, read back with pydicom and highdicom.

Series: CTs written by synthct's own DICOM writer (LPS and RAS-stored grids) with two
measured lesions, and a copy of the real TotalSegmentator CT series (whose anonymised headers
lack study and series UIDs, which the copy restores) with a sphere mask. Known answers: one
segment per lesion, each CT slice's frame equal to the mask on that slice, the CT series
referenced, and the measurements and flags of each lesion equal to its result row.
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import Comprehensive3DSRStorage, SegmentationStorage, generate_uid

from known_geometry import ras_affine
from synthct.errors import GeometryMismatchError, ReadError, WriteError
from synthct.geometry import Geometry
from synthct.io import read_volume, write_volume
from synthct.resample import resample_to
from synthct.validation.dicom_seg_sr import (
    PRIVATE_SCHEME,
    lesion_measurements_from_sr,
    lesion_tracking_uid,
    masks_from_results,
    read_ct_datasets,
    write_lesion_seg,
    write_lesion_sr,
)
from synthct.validation.lesion_metrics import LesionResult, measure_lesions
from synthct.volume import CTVolume, LabelMap, SyntheticCT

PATIENT = "Phantom^Lesion"


def _balls(
    geometry: Geometry, centres_mm: dict[int, tuple[float, float, float]], radius: float
) -> np.ndarray:
    index = np.indices(geometry.shape).reshape(3, -1).T
    points = geometry.index_to_lps(index)
    labels = np.zeros(geometry.shape, dtype=np.uint8)
    for label, centre in centres_mm.items():
        inside = np.linalg.norm(points - np.asarray(centre), axis=1) <= radius
        labels[inside.reshape(geometry.shape)] = label
    return labels


def _ct_series(folder: Path, affine: np.ndarray) -> tuple[CTVolume, LabelMap]:
    """A CT with lesions 2 (600 HU) and 5 (150 HU) in fat-bordered CSF, written as DICOM."""
    geometry = Geometry((30, 28, 16), affine)
    centre = geometry.index_to_lps((np.asarray(geometry.shape) - 1) / 2)
    labels = _balls(
        geometry,
        {2: tuple(centre - np.array([6.0, 0, 0])), 5: tuple(centre + np.array([7.0, 3.0, 0]))},
        3.2,
    )
    rng = np.random.default_rng(0)
    values = np.full(geometry.shape, 10.0) + rng.normal(0, 8, geometry.shape)
    values[:, :2, :] = -100.0  # a little fat, so that the series reads back as HU
    values[labels == 2] = 600.0
    values[labels == 5] = 150.0
    write_volume(CTVolume(np.rint(values).astype(np.int16), affine), folder, patient_name=PATIENT)
    return read_volume(folder), LabelMap(labels, affine, label_names={2: "meningioma"})


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CTVolume, list[LesionResult]]:
    folder = tmp_path_factory.mktemp("dicom") / "ct"
    ct, labels = _ct_series(folder, np.diag([0.8, 0.8, 1.5, 1.0]))
    sct = SyntheticCT(np.full(ct.spatial_shape, 10, dtype=np.int16), ct.affine)
    return folder, ct, measure_lesions(ct, sct, labels)


def _expected_frames(datasets: list, ct: CTVolume, mask: np.ndarray) -> list[np.ndarray]:
    """The mask on each slice file: synthct's reader puts i along columns, j along rows."""
    frames = []
    for ds in datasets:
        k = ct.geometry.lps_to_index(np.asarray(ds.ImagePositionPatient, dtype=float))
        frames.append(mask[:, :, round(k[2])].T)
    return frames


def test_seg_has_one_segment_per_lesion_on_the_ct_slices(series, tmp_path: Path) -> None:
    folder, ct, results = series
    masks = masks_from_results(results, ct.spatial_shape)
    assert sorted(masks) == [2, 5]
    path = write_lesion_seg(
        folder,
        masks,
        tmp_path / "lesions.seg.dcm",
        affine=ct.affine,
        lesion_names={2: "meningioma"},
    )
    raw = pydicom.dcmread(path)
    assert raw.SOPClassUID == SegmentationStorage
    assert raw.SegmentationType == "BINARY"
    datasets = read_ct_datasets(folder)
    assert raw.ReferencedSeriesSequence[0].SeriesInstanceUID == datasets[0].SeriesInstanceUID
    assert raw.StudyInstanceUID == datasets[0].StudyInstanceUID
    assert raw.FrameOfReferenceUID == datasets[0].FrameOfReferenceUID
    assert raw.PatientName == PATIENT
    seg = hd.seg.segread(path)
    assert seg.number_of_segments == 2
    segments = {int(s.SegmentNumber): s for s in raw.SegmentSequence}
    assert [segments[n].TrackingID for n in (1, 2)] == ["lesion-2", "lesion-5"]
    assert [segments[n].SegmentLabel for n in (1, 2)] == ["meningioma", "lesion 5"]
    assert segments[1].TrackingUID == lesion_tracking_uid(datasets[0].SeriesInstanceUID, 2)
    assert segments[1].SegmentedPropertyTypeCodeSequence[0].CodeValue == "52988006"  # Lesion
    uids = [ds.SOPInstanceUID for ds in datasets]
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids, segment_numbers=[1, 2], assert_missing_frames_are_empty=True
    )
    for number, lesion_id in ((1, 2), (2, 5)):
        expected = _expected_frames(datasets, ct, masks[lesion_id])
        for k, frame in enumerate(expected):
            np.testing.assert_array_equal(pixels[k, :, :, number - 1], frame)
    # only slices that hold a lesion are stored
    slices_with_lesion = sum(
        int(np.any(_expected_frames([ds], ct, masks[2] | masks[5])[0])) for ds in datasets
    )
    assert slices_with_lesion < len(datasets)
    assert raw.NumberOfFrames == sum(
        int(np.any(f)) for m in masks.values() for f in _expected_frames(datasets, ct, m)
    )


def test_seg_from_a_label_map_in_another_voxel_order(tmp_path: Path) -> None:
    """A RAS-stored series; the label map on the same voxels, axes swapped and one reversed."""
    folder = tmp_path / "ct-ras"
    ct, labels = _ct_series(folder, ras_affine())
    a = labels.affine
    n_k = labels.spatial_shape[2]
    reordered = np.eye(4)
    reordered[:3, 0], reordered[:3, 1], reordered[:3, 2] = a[:3, 1], a[:3, 0], -a[:3, 2]
    reordered[:3, 3] = a[:3, 3] + (n_k - 1) * a[:3, 2]
    other = LabelMap(labels.array.transpose(1, 0, 2)[:, :, ::-1], reordered)
    assert other.orientation_code != ct.orientation_code
    path = write_lesion_seg(folder, other, tmp_path / "ras.seg.dcm")
    seg = hd.seg.segread(path)
    datasets = read_ct_datasets(folder)
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[ds.SOPInstanceUID for ds in datasets],
        segment_numbers=[1, 2],
        assert_missing_frames_are_empty=True,
    )
    on_ct = resample_to(other, ct).array
    np.testing.assert_array_equal(on_ct, labels.array)  # the same voxels
    for number, label in ((1, 2), (2, 5)):
        for k, frame in enumerate(_expected_frames(datasets, ct, on_ct == label)):
            np.testing.assert_array_equal(pixels[k, :, :, number - 1], frame)


def test_seg_refuses_masks_off_the_series(series, tmp_path: Path) -> None:
    folder, ct, _ = series
    mask = np.zeros(ct.spatial_shape, dtype=bool)
    mask[10:14, 10:14, 5:8] = True
    shifted = ct.affine.copy()
    shifted[:3, 3] += (0.4, 0.0, 0.0)  # half a voxel off
    with pytest.raises(GeometryMismatchError, match="does not lie on the grid"):
        write_lesion_seg(folder, {1: mask}, tmp_path / "x.dcm", affine=shifted)
    beyond = ct.affine.copy()
    beyond[:3, 3] += (0.0, 0.0, 1.5 * ct.spatial_shape[2])  # above the series
    with pytest.raises(GeometryMismatchError, match="no slice"):
        write_lesion_seg(folder, {1: mask}, tmp_path / "x.dcm", affine=beyond)
    with pytest.raises(WriteError, match="empty"):
        write_lesion_seg(folder, {1: np.zeros_like(mask)}, tmp_path / "x.dcm", affine=ct.affine)
    with pytest.raises(WriteError, match="affine"):
        write_lesion_seg(folder, {1: mask}, tmp_path / "x.dcm")
    assert list(tmp_path.iterdir()) == []


def test_sr_holds_each_lesions_measurements(series, tmp_path: Path) -> None:
    folder, ct, results = series
    seg_path = write_lesion_seg(
        folder,
        masks_from_results(results, ct.spatial_shape),
        tmp_path / "l.seg.dcm",
        affine=ct.affine,
    )
    path = write_lesion_sr(folder, results, tmp_path / "l.sr.dcm", seg=seg_path)
    raw = pydicom.dcmread(path)
    assert raw.SOPClassUID == Comprehensive3DSRStorage
    assert raw.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert raw.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == PRIVATE_SCHEME
    evidence = {
        series.SeriesInstanceUID
        for study in raw.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
    }
    seg = pydicom.dcmread(seg_path)
    assert evidence == {read_ct_datasets(folder)[0].SeriesInstanceUID, seg.SeriesInstanceUID}
    rows = lesion_measurements_from_sr(path)
    assert [(r["lesion"], r["image"]) for r in rows] == [
        ("lesion-2", "ct"),
        ("lesion-2", "sct"),
        ("lesion-5", "ct"),
        ("lesion-5", "sct"),
    ]
    seg_uids = {int(s.SegmentNumber): s.TrackingUID for s in seg.SegmentSequence}
    for result, group in zip([r for r in results for _ in range(2)], rows, strict=True):
        expected = result.to_dict()
        prefix = group["image"]
        number = 1 if result.lesion_id == 2 else 2
        assert group["segment_number"] == number
        assert group["tracking_uid"] == seg_uids[number]
        for key in ("mean_hu", "sd_hu", "diameter_axial_mm", "diameter_sagittal_mm", "cnr"):
            assert group[key] == pytest.approx(expected[f"{prefix}_{key}"], rel=1e-12, abs=1e-12)
        assert group["visible"] is expected[f"{prefix}_visible"]
    assert rows[0]["visible"] is True and rows[1]["visible"] is False  # the sCT misses it
    assert rows[0]["calcification_grade"] == "dense"
    assert rows[2]["calcification_grade"] == "partial"
    assert "calcification_grade" not in rows[1]
    assert rows[0]["mean_hu"] == pytest.approx(600.0, abs=1.0)


def test_sr_without_seg_points_at_the_roi_centre(series, tmp_path: Path) -> None:
    """Rows from a CSV (dicts) and no SEG; an infinite CNR is left out."""
    folder, _, results = series
    row = results[0].to_dict()
    row["ct_cnr"] = float("inf")
    path = write_lesion_sr(folder, [row], tmp_path / "points.sr.dcm")
    sr = hd.sr.srread(path)
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert len(groups) == 2
    surface = groups[0].roi
    assert surface is not None
    np.testing.assert_allclose(
        np.reshape(surface.graphic_data, (-1, 3))[0], results[0].roi_center_lps_mm, atol=1e-4
    )
    rows = lesion_measurements_from_sr(path)
    assert rows[0]["segment_number"] is None
    assert "cnr" not in rows[0] and "cnr" in rows[1]


# -- the real CT series ------------------------------------------------------------------------
def _repaired_copy(source: Path, target: Path) -> Path:
    """Copy the series, giving it the study/series UIDs its anonymised headers lack."""
    target.mkdir()
    study, series = generate_uid(), generate_uid()
    for path in sorted(source.iterdir()):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.save_as(target / path.name)
    return target


def test_real_series_round_trip(totalseg: Path, tmp_path: Path) -> None:
    source = totalseg / "example_ct_dicom"
    with pytest.raises(ReadError, match="StudyInstanceUID, SeriesInstanceUID"):
        read_ct_datasets(source)
    folder = _repaired_copy(source, tmp_path / "ct")
    ct = read_volume(folder)
    centre = ct.geometry.index_to_lps((np.asarray(ct.spatial_shape) - 1) / 2)
    mask = _balls(ct.geometry, {1: tuple(centre)}, 6.0) == 1
    seg_path = write_lesion_seg(folder, {7: mask}, tmp_path / "real.seg.dcm", affine=ct.affine)
    seg = hd.seg.segread(seg_path)
    datasets = read_ct_datasets(folder)
    assert seg.number_of_segments == 1
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == datasets[0].SeriesInstanceUID
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[ds.SOPInstanceUID for ds in datasets],
        segment_numbers=[1],
        assert_missing_frames_are_empty=True,
    )
    for k, frame in enumerate(_expected_frames(datasets, ct, mask)):
        np.testing.assert_array_equal(pixels[k, :, :, 0], frame)
    assert int(pixels.sum()) == int(mask.sum())
    values = ct.array[mask]
    row = {
        "lesion_id": 7,
        "ct_mean_hu": float(values.mean()),
        "sct_mean_hu": 21.5,
        "ct_visible": True,
        "sct_visible": False,
        "roi_center_l_mm": centre[0],
        "roi_center_p_mm": centre[1],
        "roi_center_s_mm": centre[2],
    }
    rows = lesion_measurements_from_sr(
        write_lesion_sr(folder, [row], tmp_path / "real.sr.dcm", seg=seg_path)
    )
    assert rows[0]["mean_hu"] == pytest.approx(values.mean(), rel=1e-12)
    assert rows[1]["mean_hu"] == 21.5 and rows[1]["visible"] is False
    assert rows[0]["segment_number"] == 1
