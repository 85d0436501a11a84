"""What an unseen real MR/CT pair brings, built from a real CT: each works or is a clear error.

One T2-like MR (fluid and fat bright, bone dark) is made from a crop of a real chest CT and
moved by a known rigid transform (5 degrees about S, a shift), then stored the ways scanners
and converters store it: as it is, acquired sagittally and written in RAS with flipped
direction cosines, on 0.75 x 0.75 x 4.5 mm voxels, as a DICOM series beside a NIfTI CT, as
int16 with ``scl_slope``, as 4D NIfTI with a singleton 4th axis, with a negative background.
A CT with -3024 HU padding outside its reconstruction circle and a single-slice MR complete
the set. The same anatomy in every variant means the same registration: the known transform.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from synthct.case import Case
from synthct.dataset.check import check_dataset
from synthct.dataset.pairs import read_transform
from synthct.dataset.qa import NOTES
from synthct.geometry import Geometry
from synthct.io import read_volume, write_volume
from synthct.io.dicom_write import write_dicom_series
from synthct.manifest import TRANSFORM_COLUMN, read_manifest
from synthct.phantom.derived_pairs import crop_ct, rigid_about
from synthct.resample import resample_to
from synthct.synthesis.config import NormalisationConfig, PatchConfig
from synthct.synthesis.manifest import Case as TrainingCase
from synthct.synthesis.normalisation import hu_to_target
from synthct.synthesis.patches import prepare_case
from synthct.volume import CTVolume, MultiEchoMR

#: NIfTI stores RAS; synthct's affines are LPS.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
ROTATION_DEG = 5.0
SHIFT_MM = (4.0, -3.0, 5.0)


def _t2_like(hu: np.ndarray, seed: int = 0) -> np.ndarray:
    """Fat and fluid bright, muscle mid, bone dark, air 0 (a T2-weighted spin echo's order)."""
    signal = np.interp(hu, [-1000, -500, -100, 0, 60, 300, 1500], [0, 20, 900, 700, 300, 150, 30])
    noisy = signal + np.random.default_rng(seed).normal(0.0, 10.0, hu.shape)
    return np.clip(noisy, 0.0, None).astype(np.float32)


def _save_ras(array: np.ndarray, affine_lps: np.ndarray, path: Path, **header: Any) -> None:
    image = nib.Nifti1Image(array, LPS_TO_RAS @ affine_lps)
    if "slope" in header:
        image.header.set_slope_inter(header["slope"], 0.0)
    nib.save(image, str(path))


def _sagittal(mr: MultiEchoMR) -> tuple[np.ndarray, np.ndarray]:
    """The same image stored with array axes (k, j, i), the first reversed: new index
    (a, b, c) is old index (c, b, n_k - 1 - a)."""
    n_k = mr.spatial_shape[2]
    array = np.ascontiguousarray(np.transpose(mr.array[0], (2, 1, 0))[::-1])
    to_old = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [-1, 0, 0, n_k - 1], [0, 0, 0, 1.0]])
    return array, mr.affine @ to_old


def _anisotropic(mr: MultiEchoMR) -> MultiEchoMR:
    """Resampled onto 0.75 x 0.75 x 4.5 mm voxels over the same field of view."""
    g = mr.geometry
    spacing = np.array([0.75, 0.75, 4.5])
    shape = (np.asarray(g.shape) * np.asarray(g.spacing_mm) / spacing).astype(int)
    affine = np.eye(4)
    affine[:3, :3] = g.direction * spacing
    affine[:3, 3] = mr.affine[:3, 3]
    return resample_to(mr, Geometry((int(shape[0]), int(shape[1]), int(shape[2])), affine))


#: Variants whose MR header is moved further (LPS affine): an MR from another scanner's frame,
#: 250 mm along the table and 36 mm across from where the headers of the CT put it (no overlap).
HEADER_MOVES = {"far_header": np.array([[1, 0, 0, 30.0], [0, 1, 0, -20.0], [0, 0, 1, 250.0],
                                        [0, 0, 0, 1]])}  # fmt: skip


@pytest.fixture(scope="module")
def unseen(totalseg: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The variants as one SynthRAD-layout dataset, checked once: QA rows and manifest."""
    full = read_volume(totalseg / "chest_ct.nii.gz", kind="ct")
    assert isinstance(full, CTVolume)
    ct = crop_ct(full, (0.5, 0.5, 0.5), 24)
    centre = ct.geometry.index_to_lps((np.asarray(ct.spatial_shape) - 1) / 2)
    move = rigid_about(ROTATION_DEG, SHIFT_MM, centre)
    hu = np.asarray(ct.array, dtype=np.float32)
    mr = MultiEchoMR(_t2_like(hu)[None], move @ ct.affine)
    root = tmp_path_factory.mktemp("unseen") / "source"

    def case(name: str, with_ct: CTVolume = ct) -> Path:
        folder = root / name
        folder.mkdir(parents=True)
        write_volume(with_ct, folder / "ct.nii.gz")
        return folder

    write_volume(mr, case("reference") / "mr.nii.gz")
    _save_ras(*_sagittal(mr), case("sagittal") / "mr.nii.gz")
    write_volume(_anisotropic(mr), case("anisotropic") / "mr.nii.gz")
    write_dicom_series(mr, case("dicom_mr") / "mr")
    stored = np.round(mr.array[0] / 0.25).astype(np.int16)
    _save_ras(stored, mr.affine, case("int16_slope") / "mr.nii.gz", slope=0.25)
    _save_ras(mr.array[0][..., None], mr.affine, case("singleton_4d") / "mr.nii.gz")
    negative = mr.array[0].copy()
    background = negative < 5.0
    negative[background] = -50.0 + np.random.default_rng(1).normal(0, 3, background.sum())
    _save_ras(negative, mr.affine, case("negative_background") / "mr.nii.gz")
    i, j = np.ogrid[: hu.shape[0], : hu.shape[1]]
    outside = np.hypot(i - hu.shape[0] / 2, j - hu.shape[1] / 2) > 0.45 * hu.shape[0]
    padded = CTVolume(np.where(outside[..., None], -3024.0, hu), ct.affine)
    write_volume(mr, case("ct_padding", padded) / "mr.nii.gz")
    _save_ras(mr.array[0][:, :, 20:21], mr.affine, case("single_slice") / "mr.nii.gz")
    far = MultiEchoMR(mr.array, HEADER_MOVES["far_header"] @ mr.affine)
    write_volume(far, case("far_header") / "mr.nii.gz")

    result = check_dataset(root, root.parent / "qa")
    rows = {r["case_id"]: r for r in result.rows}
    return {"rows": rows, "manifest": read_manifest(root.parent / "qa" / "manifest.csv"),
            "ct": ct, "move": move}  # fmt: skip


VARIANTS = [
    "reference", "sagittal", "anisotropic", "dicom_mr", "int16_slope", "singleton_4d",
    "negative_background", "ct_padding", "far_header",
]  # fmt: skip


@pytest.mark.parametrize("name", VARIANTS)
def test_every_storage_of_the_pair_registers_to_the_known_transform(
    unseen: dict[str, Any], name: str
) -> None:
    row = unseen["rows"][name]
    # one scan stored several ways: QA rightly names the duplicates, and nothing else
    serious = [i for i in row["issues"] if not i.startswith((*NOTES, "duplicate_"))]
    assert not row.get("error") and serious == [], row
    assert row["registration"] == "applied" and row["mr_channels"] == 1
    assert row["mi_after"] > 2.0 * row["mi_before"]
    if name in HEADER_MOVES:  # headers apart: found by the global search, and said so
        assert row["fov_overlap"] == 0.0 and any(
            i.startswith("header_offset") for i in row["issues"]
        )
    found = read_transform(unseen["manifest"][name].extra[TRANSFORM_COLUMN])
    ct: CTVolume = unseen["ct"]
    ends = [(0, n - 1) for n in ct.spatial_shape]
    corners = ct.geometry.index_to_lps(np.array(np.meshgrid(*ends, indexing="ij")).reshape(3, -1).T)
    move = HEADER_MOVES.get(name, np.eye(4)) @ unseen["move"]
    expected = corners @ move[:3, :3].T + move[:3, 3]
    mapped = np.array([found.TransformPoint(p.tolist()) for p in corners])
    assert np.linalg.norm(mapped - expected, axis=1).max() < 1.5  # mm, at the field's corners


def test_the_stored_values_read_back_as_the_same_image(unseen: dict[str, Any]) -> None:
    rows = unseen["rows"]
    reference = float(rows["reference"]["mr_p99_5"])
    for name in ("sagittal", "dicom_mr", "int16_slope", "singleton_4d"):
        assert float(rows[name]["mr_p99_5"]) == pytest.approx(reference, abs=0.5), name
    assert rows["sagittal"]["mr_orientation"] != rows["reference"]["mr_orientation"]
    assert rows["anisotropic"]["mr_spacing_mm"] == "0.75x0.75x4.5"
    assert float(rows["negative_background"]["mr_p0_5"]) < -40.0


def test_ct_padding_is_a_note_and_never_a_training_target(unseen: dict[str, Any]) -> None:
    row = unseen["rows"]["ct_padding"]
    assert any(i.startswith("ct_padding") for i in row["issues"])
    assert not any(i.startswith("duplicate_ct") for i in row["issues"])  # its own CT
    assert row["ct_min_hu"] == -3024.0
    ct: CTVolume = unseen["ct"]
    hu = np.asarray(ct.array, dtype=np.float32).copy()
    hu[:4] = -3024.0  # four padded slabs of the CT grid
    mr = MultiEchoMR(_t2_like(np.asarray(ct.array, dtype=np.float32))[None], ct.affine)
    norm = NormalisationConfig(method="zscore", channels=["T2w"])
    prepared = prepare_case(
        TrainingCase("pad", mr, CTVolume(hu, ct.affine)), norm, PatchConfig(size=(16, 16, 16))
    )
    assert prepared.target.min() == pytest.approx(float(hu_to_target(np.float32(-1024.0), norm)))
    weights = np.diff(prepared.cumulative_weights, prepend=0.0).reshape(hu.shape)
    assert weights[:4].max() == 0.0 and weights[4:].max() > 0.0


def test_a_single_slice_mr_is_a_clear_error_row(unseen: dict[str, Any]) -> None:
    row = unseen["rows"]["single_slice"]
    assert row["status"] == "error"
    assert "too thin to register" in row["error"] and "mr.nii.gz" in row["error"]


def test_a_case_reads_its_mr_from_a_dicom_folder(unseen: dict[str, Any]) -> None:
    case: Case = unseen["manifest"]["dicom_mr"]
    mr = case.mr()
    assert isinstance(mr, MultiEchoMR) and mr.spatial_shape == (48, 48, 48)


def test_a_pair_found_by_the_search_is_written_aligned_like_the_reference(
    unseen: dict[str, Any], tmp_path: Path
) -> None:
    # The far-header MR is the reference's voxels under another frame: once registered and
    # written onto the CT grid, it must be the reference's registered MR.
    from synthct.dataset.pairs import write_pair

    pairs = {
        name: write_pair(unseen["manifest"][name], tmp_path / name).mr()
        for name in ("reference", "far_header")
    }
    reference, far = (np.asarray(pairs[n].array, dtype=np.float64) for n in pairs)
    assert reference.shape == far.shape
    scale = float(np.percentile(reference, 99.5))
    assert np.mean(np.abs(far - reference)) < 0.02 * scale
    np.testing.assert_allclose(pairs["far_header"].affine, pairs["reference"].affine, atol=1e-6)


def test_the_ct_couch_does_not_pull_the_registration(totalseg: Path) -> None:
    """A clinical CT keeps the scanner couch; the MR of the same patient shows none. The DICOM
    thorax (couch: two carbon-fibre shells under the patient) and a T2-like MR of it without the
    couch, moved by a known rigid transform: every body point registers within 1 mm (with the
    couch left in the registration's CT: 2.2 mm off throughout the body)."""
    from synthct.dataset.registration import register_mr_to_ct
    from synthct.imaging.body_mask import body_mask_from_ct, external_objects

    ct = read_volume(totalseg / "example_ct_dicom", kind="ct")
    assert isinstance(ct, CTVolume)
    hu = np.asarray(ct.array, dtype=np.float32)
    couch = external_objects(hu, air_below_hu=-300.0, voxel_volume_mm3=ct.geometry.voxel_volume_mm3)
    assert np.count_nonzero(couch & (hu >= 150.0)) > 50_000
    centre = ct.geometry.index_to_lps((np.asarray(ct.spatial_shape) - 1) / 2)
    move = rigid_about(ROTATION_DEG, SHIFT_MM, centre)
    mr = MultiEchoMR(_t2_like(np.where(couch, -1000.0, hu))[None], move @ ct.affine)
    result = register_mr_to_ct(mr, mr.array[0], ct)
    body = np.argwhere(body_mask_from_ct(hu))[::500].astype(np.float64)
    points = ct.geometry.index_to_lps(body)
    on_mr = points @ move[:3, :3].T + move[:3, 3]  # the same anatomy in the MR's frame
    found = on_mr @ result.matrix[:3, :3].T + result.matrix[:3, 3]  # MR frame -> CT frame
    assert np.linalg.norm(found - points, axis=1).max() < 1.0  # mm


def _cropped_mr_far_along_the_table(
    ct: CTVolume,
    dz_mm: float,
    rotation_deg: float,
    folder: Path,
    *,
    spacing_mm: tuple[float, float, float] = (3.0, 3.0, 3.0),
    fraction: float = 0.6,
    seen: CTVolume | None = None,
) -> tuple[Case, np.ndarray]:
    """A T2-like MR of the central ``fraction`` of the CT's field of view with a coil's
    intensity falloff (x 0.5-1.5) and noise, its anatomy moved by a known rigid transform and its
    header a further ``dz_mm`` along the table; ``seen`` is what the MR shows (default: the CT).
    Returns the case (files in ``folder``) and the true MR-to-CT transform (LPS, 4 x 4)."""
    centre = ct.geometry.index_to_lps((np.asarray(ct.spatial_shape) - 1) / 2)
    move = rigid_about(rotation_deg, (2.0, 2.0, -3.0), centre)  # CT anatomy -> MR frame
    g = ct.geometry
    step = np.asarray(spacing_mm)
    shape = (fraction * np.asarray(g.shape) * np.asarray(g.spacing_mm) / step).astype(int)
    grid = np.eye(4)
    grid[:3, :3] = g.direction * step
    grid[:3, 3] = centre - grid[:3, :3] @ ((shape - 1) / 2.0)
    # the MR voxel at LPS q (MR frame) shows the CT's anatomy at move^-1 q
    anatomy = Geometry((int(shape[0]), int(shape[1]), int(shape[2])), np.linalg.inv(move) @ grid)
    shown = seen if seen is not None else ct
    hu = np.asarray(resample_to(shown, anatomy, fill_value=-1000.0).array, dtype=np.float32)
    signal = np.interp(hu, [-1000, -500, -100, -50, 0, 30, 80, 200, 500, 1500],
                       [0, 20, 850, 800, 1000, 900, 450, 350, 120, 60])  # fmt: skip
    x, y, z = np.meshgrid(*[np.linspace(-1.0, 1.0, n) for n in hu.shape], indexing="ij")
    signal *= 1.0 + 0.3 * x + 0.2 * y * z  # receive-coil falloff, 0.5-1.5
    signal += np.random.default_rng(0).normal(0.0, 15.0, hu.shape)
    table = np.eye(4)
    table[2, 3] = dz_mm
    mr = MultiEchoMR(np.clip(signal, 0.0, None).astype(np.float32)[None], table @ grid)
    folder.mkdir(parents=True)
    write_volume(ct, folder / "ct.nii.gz")
    write_volume(mr, folder / "mr.nii.gz")
    case = Case(folder.name, {"ct": folder / "ct.nii.gz", "mr": [folder / "mr.nii.gz"]})
    return case, np.linalg.inv(move) @ np.linalg.inv(table)


@pytest.mark.slow
@pytest.mark.parametrize("dz_mm", [120.0, -200.0])
def test_a_cropped_mr_far_along_the_table_is_found(
    totalseg: Path, tmp_path: Path, dz_mm: float
) -> None:
    """60 % of the field of view, a coil's ramp, 120-200 mm apart along the table: the body
    centroids disagree (the crop) but the headers agree across the table, and the search along
    that line finds the pair (36-60 degree wrong optima before). Once registered the MR lies in
    the CT: no partial_overlap. A rotation above max_rotation_deg is flagged and leaves the
    case out of a split."""
    from synthct.dataset.qa import QASettings, qa_case
    from synthct.dataset.split import EXCLUDING_ISSUES

    ct = read_volume(totalseg / "example_ct.nii.gz", kind="ct")
    assert isinstance(ct, CTVolume)
    case, truth = _cropped_mr_far_along_the_table(ct, dz_mm, 3.0, tmp_path / "pair")
    row = qa_case(case)
    assert row["registration"] == "applied" and row["registration_rotation_deg"] < 5.0, row
    mr = case.mr()
    points = mr.geometry.index_to_lps(np.argwhere(np.ones(mr.spatial_shape, bool))[::997])
    found = points @ row["registration_matrix"][:3, :3].T + row["registration_matrix"][:3, 3]
    expected = points @ truth[:3, :3].T + truth[:3, 3]
    assert np.linalg.norm(found - expected, axis=1).max() < 2.0  # mm, over the whole MR
    assert row["fov_overlap_registered"] > 0.99
    if dz_mm == -200.0:  # a third of the MR in the CT by the headers, all of it once registered
        assert row["fov_overlap"] < 0.5
        assert not any(i.startswith("partial_overlap") for i in row["issues"]), row["issues"]
    strict = qa_case(case, QASettings(max_rotation_deg=1.0))  # the true 3 degrees, flagged
    assert any(i.startswith("registration_rotation") for i in strict["issues"])
    assert "registration_rotation" in EXCLUDING_ISSUES


@pytest.mark.slow
def test_a_thin_slab_registers_on_a_finer_grid(totalseg: Path, tmp_path: Path) -> None:
    """The DICOM thorax is a 40 mm slab; its MR (no couch) has nine 4 mm slices. On the 3 mm
    grid the tilt was loose (11.5 mm off in the body); the 1 mm grid made for the slab
    registers every body point within 1.5 mm (1.24 mm measured)."""
    from synthct.dataset.registration import register_mr_to_ct, working_spacing_mm
    from synthct.imaging.body_mask import body_mask_from_ct, external_objects

    ct = read_volume(totalseg / "example_ct_dicom", kind="ct")
    assert isinstance(ct, CTVolume)
    hu = np.asarray(ct.array, dtype=np.float32)
    couch = external_objects(hu, air_below_hu=-300.0, voxel_volume_mm3=ct.geometry.voxel_volume_mm3)
    seen = CTVolume(np.where(couch, -1000.0, hu), ct.affine)
    case, truth = _cropped_mr_far_along_the_table(
        ct, 0.0, 3.0, tmp_path / "thin", spacing_mm=(1.0, 1.0, 4.0), fraction=0.9, seen=seen
    )
    mr = case.mr()
    assert mr.spatial_shape[2] == 9 and working_spacing_mm(mr, ct, 3.0) == pytest.approx(1.0)
    result = register_mr_to_ct(mr, mr.array[0], ct)
    body = ct.geometry.index_to_lps(np.argwhere(body_mask_from_ct(hu))[::2000].astype(np.float64))
    on_mr = (body - truth[:3, 3]) @ np.linalg.inv(truth[:3, :3]).T  # CT points in the MR frame
    found = on_mr @ result.matrix[:3, :3].T + result.matrix[:3, 3]
    assert np.linalg.norm(found - body, axis=1).max() < 1.5  # mm


def test_only_a_slab_gets_a_finer_registration_grid() -> None:
    """A 70 mm cube keeps the requested 3 mm; a 40 mm slab across 500 mm gets 40/36 mm; a slab
    thinner still stops at the 1 mm floor."""
    from synthct.dataset.registration import working_spacing_mm

    def box(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> CTVolume:
        return CTVolume(np.zeros(shape, np.float32), np.diag([*spacing, 1.0]))

    cube = box((36, 36, 24), (1.95, 1.95, 3.0))
    assert working_spacing_mm(cube, box((60, 60, 60), (1.5, 1.5, 1.5)), 3.0) == 3.0
    slab = box((512, 512, 20), (0.98, 0.98, 2.0))
    assert working_spacing_mm(cube, slab, 3.0) == pytest.approx(40.0 / 36.0)
    assert working_spacing_mm(box((100, 100, 5), (4.0, 4.0, 4.0)), slab, 3.0) == 1.0
    assert working_spacing_mm(cube, slab, 0.8) == 0.8  # never coarser than asked


def _sagittal_spine_pair(
    ct: CTVolume, folder: Path, dz_mm: float, ct_slab_mm: float | None = None
) -> tuple[Case, np.ndarray]:
    """The classic spine T2 spin echo of ``ct``'s anatomy: 14 sagittal 4 mm slices (56 mm
    across the spine, 1 mm in plane, rows running inferior, 85 % of the CT's length), coil
    falloff and noise, 3 degrees and (2, 2, -3) mm off and its header ``dz_mm`` along the table;
    the CT cut to ``ct_slab_mm`` around the spine's centre when given. Returns the case (files in
    ``folder``) and the true MR-to-CT transform."""
    g, hu = ct.geometry, np.asarray(ct.array, np.float32)
    bone = g.index_to_lps(np.argwhere(hu > 250).astype(np.float64))
    body_centre = g.index_to_lps(np.argwhere(hu > -300).mean(axis=0))
    midline = bone[np.abs(bone[:, 0] - body_centre[0]) < 15.0]
    centre = np.median(midline[midline[:, 1] > np.percentile(midline[:, 1], 40)], axis=0)
    step = np.array([1.0, 1.0, 4.0])
    shape = (np.array([160.0, 0.85 * g.shape[2] * g.spacing_mm[2], 56.0]) / step).astype(int)
    grid = np.eye(4)
    grid[:3, :3] = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]) * step
    grid[:3, 3] = centre - grid[:3, :3] @ ((shape - 1) / 2.0)
    move = rigid_about(3.0, (2.0, 2.0, -3.0), centre)  # CT anatomy -> MR frame
    anatomy = Geometry((int(shape[0]), int(shape[1]), int(shape[2])), np.linalg.inv(move) @ grid)
    seen = np.asarray(resample_to(ct, anatomy, fill_value=-1000.0).array, dtype=np.float32)
    signal = np.interp(seen, [-1000, -500, -100, -50, 0, 30, 80, 200, 500, 1500],
                       [0, 20, 850, 800, 1000, 900, 450, 350, 120, 60])  # fmt: skip
    x, y, z = np.meshgrid(*[np.linspace(-1.0, 1.0, n) for n in seen.shape], indexing="ij")
    signal *= 1.0 + 0.3 * x + 0.2 * y * z
    signal += np.random.default_rng(0).normal(0.0, 15.0, seen.shape)
    table = np.eye(4)
    table[2, 3] = dz_mm
    mr = MultiEchoMR(np.clip(signal, 0.0, None).astype(np.float32)[None], table @ grid)
    assert mr.geometry.orientation_code == "PIL"
    if ct_slab_mm is not None:
        k = int(np.rint(g.lps_to_index(centre[None])[0][2]))
        half = int(ct_slab_mm / g.spacing_mm[2] / 2)
        affine = ct.affine.copy()
        affine[:3, 3] = g.index_to_lps(np.array([[0.0, 0.0, k - half]]))[0]
        ct = CTVolume(hu[:, :, k - half : k + half], affine)
    folder.mkdir(parents=True)
    write_volume(ct, folder / "ct.nii.gz")
    write_volume(mr, folder / "mr.nii.gz")
    case = Case(folder.name, {"ct": folder / "ct.nii.gz", "mr": [folder / "mr.nii.gz"]})
    return case, np.linalg.inv(move) @ np.linalg.inv(table)


def _registration_error_mm(case: Case, row: dict[str, Any], truth: np.ndarray) -> float:
    """Largest error of the QA's registration on the MR's tissue points inside the CT, mm."""
    mr, ct = case.mr(), case.ct()
    found = row["registration_matrix"]
    tissue = mr.geometry.index_to_lps(np.argwhere(mr.array[0] > 300)[::97].astype(np.float64))
    tissue = tissue[ct.geometry.contains_lps(tissue @ truth[:3, :3].T + truth[:3, 3])]
    assert len(tissue) > 100
    error = (tissue @ found[:3, :3].T + found[:3, 3]) - (tissue @ truth[:3, :3].T + truth[:3, 3])
    return float(np.linalg.norm(error, axis=1).max())


@pytest.mark.slow
def test_a_sagittal_spine_slab_registers(totalseg: Path, tmp_path: Path) -> None:
    """A sagittal T2-like spine MR, its header 120 mm along the table: QA registers it onto the
    axial real CT within 0.5 mm on every tissue point of the MR (0.30 mm measured)."""
    from synthct.dataset.qa import qa_case

    ct = read_volume(totalseg / "chest_ct.nii.gz", kind="ct")
    assert isinstance(ct, CTVolume)
    case, truth = _sagittal_spine_pair(ct, tmp_path / "sag", -120.0)
    row = qa_case(case)
    assert row["registration"] == "applied"
    assert _registration_error_mm(case, row, truth) < 0.5
    assert not [i for i in row["issues"] if not i.startswith(("no_mask", "header_offset"))]


@pytest.mark.slow
@pytest.mark.parametrize("dz_mm", [60.0, 150.0])
def test_a_short_ct_slab_under_a_long_mr_is_found(
    totalseg: Path, tmp_path: Path, dz_mm: float
) -> None:
    """A 60 mm CT of a few vertebrae under a 209 mm sagittal MR of the spine, the MR's header
    60 or 150 mm along the table: the search slides the CT under the whole MR (it searched only
    positions with the MR's centre inside the CT and at least 30 % of the MR's box inside the
    CT's, none here: 71 mm off and unregistered before). Registered within 1 mm; a quarter of
    the MR in the CT is a partial overlap, also when the headers put them apart."""
    from synthct.dataset.qa import qa_case

    ct = read_volume(totalseg / "chest_abdomen_cta.nii.gz", kind="ct")
    assert isinstance(ct, CTVolume)
    case, truth = _sagittal_spine_pair(ct, tmp_path / "short", dz_mm, ct_slab_mm=60.0)
    row = qa_case(case)
    assert row["registration"] == "applied" and row["search_peak_ratio"] > 3.0
    assert _registration_error_mm(case, row, truth) < 1.0  # mm (0.55 measured)
    assert [i.split(":")[0] for i in row["issues"] if not i.startswith("header_offset")] == [
        "no_mask", "partial_overlap"
    ]  # fmt: skip
