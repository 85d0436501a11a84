"""Real-anatomy tissue classes of CT-derived phantoms: known answers on a built CT, real CTs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from synthct.errors import GeometryMismatchError
from synthct.imaging.labels import MARROW_TISSUES, Tissue
from synthct.imaging.marrow import DEFAULT_MARROW
from synthct.io import read_volume
from synthct.phantom.bone_shell import surface_layer
from synthct.phantom.ct_derived import derive_tissue_map
from synthct.phantom.totalseg_groups import STRUCTURES, TOTALSEGMENTATOR_V2
from synthct.volume import CTVolume, LabelMap

SPACING_MM = 2.0
L2, L1, CORD, LUNG, AORTA, COLON = 30, 31, 79, 10, 52, 20
# Boxes (x, y, z index ranges, stop exclusive) of the built phantom; z is cranial.
L2_BOX = np.s_[12:28, 8:20, 4:14]
L1_BOX = np.s_[12:28, 8:20, 18:28]
DISC_GAP = np.s_[12:28, 8:20, 14:18]
CANAL_BOX = np.s_[15:25, 21:31, :]
CORD_BOX = np.s_[18:22, 24:28, :]
LUNG_BOX = np.s_[3:11, 3:13, 2:22]
LUNG_VESSEL = np.s_[6:8, 6:8, 8:12]
AORTA_BOX = np.s_[30:35, 10:15, :]
COLON_BOX = np.s_[27:36, 23:32, 18:31]
GAS_BOX = np.s_[30:33, 26:29, 23:27]
MARROW_FF = 0.3  # interior of both vertebral bodies


def built_case() -> tuple[CTVolume, LabelMap]:
    """A 40^3 CT of 2 mm voxels: fat body in air, two vertebrae with a disc, cord in a canal,
    a lung with a vessel, a contrast-filled aorta and a colon with gas."""
    shape = (40, 40, 34)
    hu = np.full(shape, -1000.0, dtype=np.float32)
    hu[2:38, 2:38, :] = -100.0  # fat body; outside air on four sides
    labels = np.zeros(shape, dtype=np.uint8)
    for box, number in ((L2_BOX, L2), (L1_BOX, L1)):
        labels[box] = number
        inner = np.zeros(shape, bool)
        inner[box] = True
        shell = inner & ~ndimage.binary_erosion(inner)
        hu[inner] = float(DEFAULT_MARROW.hu_of_fat_fraction(MARROW_FF))
        hu[shell] = 700.0
    hu[DISC_GAP] = 80.0
    hu[CANAL_BOX] = 10.0
    hu[CORD_BOX] = 30.0
    labels[CORD_BOX] = CORD
    hu[LUNG_BOX] = -850.0
    labels[LUNG_BOX] = LUNG
    hu[LUNG_VESSEL] = 40.0
    hu[AORTA_BOX] = 300.0  # iodinated contrast: bone-like HU, but a vessel
    labels[AORTA_BOX] = AORTA
    hu[COLON_BOX] = 30.0
    labels[COLON_BOX] = COLON
    hu[GAS_BOX] = -1000.0
    affine = np.diag([SPACING_MM, SPACING_MM, SPACING_MM, 1.0])
    return CTVolume(hu, affine, source="built.nii.gz"), LabelMap(
        labels, affine, source="built_seg.nii.gz"
    )


def _region(box: tuple[slice, ...], shape: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[box] = True
    return mask


def test_built_case_known_classes() -> None:
    ct, seg = built_case()
    result = derive_tissue_map(ct, seg)
    tissue = result.tissue_map.array
    shape = tissue.shape
    bodies = _region(L2_BOX, shape) | _region(L1_BOX, shape)
    shell = surface_layer(seg.array) & bodies
    # Cortex is exactly the dense one-voxel shell; the inside is marrow of the known bin.
    assert np.array_equal(tissue == Tissue.CORTICAL_BONE, shell)
    assert np.all(tissue[bodies & ~shell] == Tissue.MARROW_FF30)
    # The disc fills the gap between the two bodies, and nothing else is disc.
    assert np.array_equal(tissue == Tissue.DISC, _region(DISC_GAP, shape))
    # Lung air is lung, the vessel inside the lobe blood; the contrast aorta is blood.
    lung = _region(LUNG_BOX, shape) & ~_region(LUNG_VESSEL, shape)
    assert np.all(tissue[lung] == Tissue.LUNG)
    assert np.all(tissue[LUNG_VESSEL] == Tissue.BLOOD)
    assert np.all(tissue[AORTA_BOX] == Tissue.BLOOD)
    # Gas in the colon is bowel gas, its wall soft tissue; outside air stays air.
    assert np.all(tissue[GAS_BOX] == Tissue.BOWEL_GAS)
    wall = _region(COLON_BOX, shape) & ~_region(GAS_BOX, shape)
    assert np.all(tissue[wall] == Tissue.SOFT_TISSUE)
    assert np.all(tissue[:2] == Tissue.AIR) and np.all(tissue[:, -2:] == Tissue.AIR)
    # The cord, with CSF within 3 mm (the next 2 mm voxel, edges and corners) around it.
    assert np.array_equal(tissue == Tissue.SPINAL_CORD, seg.array == CORD)
    sleeve = _region(np.s_[17:23, 23:29, :], shape) & ~_region(CORD_BOX, shape)
    assert np.array_equal(tissue == Tissue.CSF, sleeve)
    # Labels gave bone, discs, cord, lung, bowel gas and vessels; the rest came from HU.
    assert set(result.hu_only) == set(STRUCTURES) - {
        "bone (cortex vs marrow)",
        "intervertebral discs",
        "spinal cord",
        "lung",
        "bowel gas",
        "vessels",
    }


def test_without_labels_hu_and_morphology_and_a_report(caplog: pytest.LogCaptureFixture) -> None:
    ct, _ = built_case()
    with caplog.at_level(logging.WARNING, logger="synthct.phantom.ct_derived"):
        result = derive_tissue_map(ct)
    tissue = result.tissue_map.array
    assert result.hu_only == STRUCTURES
    assert "from HU alone" in caplog.text and "intervertebral discs" in caplog.text
    # Lung (dense air, 12 mL) and the enclosed colon gas are told apart from outside air.
    lung = _region(LUNG_BOX, tissue.shape) & ~_region(LUNG_VESSEL, tissue.shape)
    assert np.all(tissue[lung] == Tissue.LUNG)
    assert np.all(tissue[GAS_BOX] == Tissue.BOWEL_GAS)
    assert np.all(tissue[:2] == Tissue.AIR)
    # Bone by HU threshold alone: the 700 HU shell cortical, no marrow bins, the aorta "bone".
    assert not np.isin(tissue, [int(t) for t in MARROW_TISSUES]).any()
    assert np.all(tissue[AORTA_BOX] == Tissue.CANCELLOUS_BONE)
    assert not (tissue == Tissue.DISC).any()


def test_labels_on_another_grid_are_resampled_or_refused() -> None:
    ct, seg = built_case()
    # The same labels stored on a 1 mm grid over the same space: resampled, and said so.
    fine = np.repeat(np.repeat(np.repeat(seg.array, 2, 0), 2, 1), 2, 2)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = -0.5
    resampled = derive_tissue_map(ct, LabelMap(fine, affine, source="fine_seg.nii.gz"))
    assert any("resampled" in n and "fine_seg.nii.gz" in n for n in resampled.notes)
    np.testing.assert_array_equal(
        resampled.tissue_map.array, derive_tissue_map(ct, seg).tissue_map.array
    )
    # Labels of another place: refused with the file and the fix.
    far = seg.affine.copy()
    far[:3, 3] = (500.0, 0.0, 0.0)
    with pytest.raises(GeometryMismatchError, match="covers only 0%") as err:
        derive_tissue_map(ct, LabelMap(seg.array, far, source="other_seg.nii.gz"))
    assert err.value.path == "other_seg.nii.gz" and "labels made for built.nii.gz" in str(
        err.value.fix
    )


def test_label_groups_match_the_totalsegmentator_table(totalseg: Path) -> None:
    names = {
        int(k): v
        for k, v in json.loads(
            (totalseg / "totalsegmentator_total_v2_labels.json").read_text()
        ).items()
    }
    expected = {
        "vertebrae": lambda n: n.startswith("vertebrae_"),
        "spinal_cord": lambda n: n == "spinal_cord",
        "lung": lambda n: n.startswith("lung_"),
        "liver": lambda n: n == "liver",
        "spleen": lambda n: n == "spleen",
    }
    for group, matches in expected.items():
        assert {names[n] for n in TOTALSEGMENTATOR_V2[group]} == {
            v for v in names.values() if matches(v)
        }
    order = [names[n] for n in TOTALSEGMENTATOR_V2["vertebrae"]]
    assert order[:3] == ["vertebrae_S1", "vertebrae_L5", "vertebrae_L4"]
    assert order[-1] == "vertebrae_C1"
    ribs = {names[n] for n in TOTALSEGMENTATOR_V2["bone"] if names[n].startswith("rib_")}
    assert len(ribs) == 24
    assert {names[n] for n in TOTALSEGMENTATOR_V2["vessels"]} >= {
        "aorta",
        "inferior_vena_cava",
        "superior_vena_cava",
        "portal_vein_and_splenic_vein",
    }


def test_real_abdominal_ct_fractions(totalseg: Path) -> None:
    ct = read_volume(totalseg / "example_ct_sm.nii.gz", kind="ct")
    seg = read_volume(totalseg / "example_seg.nii.gz", kind="label")
    assert isinstance(ct, CTVolume) and isinstance(seg, LabelMap)
    result = derive_tissue_map(ct, seg)
    tissue = result.tissue_map.array
    fractions = result.fractions()
    assert result.hu_only == ("heart",)  # the only structure example_seg does not label
    # Lung bases, bowel gas, organs and blood are present in plausible amounts.
    for name, lo, hi in [
        ("lung", 0.005, 0.1),
        ("bowel_gas", 0.002, 0.1),
        ("liver", 0.03, 0.2),
        ("blood", 0.002, 0.05),
        ("disc", 0.0003, 0.01),
    ]:
        assert lo < fractions[name] < hi, (name, fractions[name])
    # Cortex is a thin shell: within the vertebrae, cortex sits at the surface, marrow inside.
    vertebrae = np.isin(seg.array, (30, 31, 32, 33))
    depth = ndimage.distance_transform_edt(vertebrae, sampling=ct.geometry.spacing_mm)
    cortex = vertebrae & (tissue == Tissue.CORTICAL_BONE)
    marrow = vertebrae & np.isin(tissue, [int(t) for t in MARROW_TISSUES])
    assert cortex.any() and marrow.any()
    assert np.median(depth[cortex]) <= max(ct.geometry.spacing_mm)
    assert np.median(depth[marrow]) > np.median(depth[cortex])
    # Discs lie between labelled vertebrae: each disc plane between two vertebra centroids.
    z_disc = np.argwhere(tissue == Tissue.DISC)[:, 2]
    z_centres = sorted(np.argwhere(seg.array == v)[:, 2].mean() for v in (30, 31, 32, 33))
    assert z_disc.min() > z_centres[0] and z_disc.max() < z_centres[-1]
    assert np.array_equal(tissue == Tissue.SPINAL_CORD, seg.array == 79)


def test_real_chest_ct_without_labels_has_lung(totalseg: Path) -> None:
    ct = read_volume(totalseg / "chest_ct.nii.gz", kind="ct")
    assert isinstance(ct, CTVolume)
    result = derive_tissue_map(ct)
    fractions = result.fractions()
    assert result.hu_only == STRUCTURES
    assert 0.2 < fractions["lung"] < 0.6
    assert fractions.get("bowel_gas", 0.0) < 0.01
    # Lung voxels are air-dense but not free air: their median is near -850 HU.
    assert -950 < np.median(ct.array[result.tissue_map.array == Tissue.LUNG]) < -600


def test_level_centre_and_lesions_too_large_for_the_ct(totalseg: Path, tmp_path: Path) -> None:
    from synthct.phantom.ct_insertion import EllipsoidLesion, write_ct_derived_case
    from synthct.phantom.ct_levels import check_lesion_fits, labelled_levels, level_centre_lps_mm
    from synthct.phantom.model import PhantomParameterError

    ct = read_volume(totalseg / "example_ct_sm.nii.gz", kind="ct")
    seg = read_volume(totalseg / "example_seg.nii.gz", kind="label")
    assert isinstance(ct, CTVolume) and isinstance(seg, LabelMap)
    assert labelled_levels(seg) == ["T11", "T12", "L1", "L2"]
    centre = level_centre_lps_mm(seg, "L1")
    # The centre is the labelled cord's centre within L1's planes.
    cord_points = ct.geometry.index_to_lps(np.argwhere(seg.array == 79))
    assert np.linalg.norm(centre[:2] - cord_points[:, :2].mean(axis=0)) < 10.0
    check_lesion_fits(ct.geometry, centre, np.array([6.0, 4.0, 9.0]), where="L1")
    with pytest.raises(PhantomParameterError, match=r"do not hold L4 .*T11-L2"):
        level_centre_lps_mm(seg, "L4")
    with pytest.raises(PhantomParameterError, match="not a vertebra"):
        level_centre_lps_mm(seg, "X9")
    # The CT is 90 mm tall: a 100 mm lesion does not fit anywhere, a 40 mm one not at T11,
    # its topmost level.
    with pytest.raises(PhantomParameterError, match="too small for this lesion at L1"):
        check_lesion_fits(ct.geometry, centre, np.array([6.0, 4.0, 50.0]), where="L1")
    top = level_centre_lps_mm(seg, "T11")
    big = EllipsoidLesion("meningioma", tuple(top), 12.0, 8.0, 40.0)
    with pytest.raises(PhantomParameterError, match="beyond the CT's field of view"):
        write_ct_derived_case(ct, tmp_path / "case", labels=seg, lesions=[big])
    assert not (tmp_path / "case").exists()


def test_cli_lesion_at_a_level_and_a_new_subject(totalseg: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from synthct.cli import app
    from synthct.phantom.cohort_files import PhantomCase

    ct = str(totalseg / "example_ct_sm.nii.gz")
    seg = str(totalseg / "example_seg.nii.gz")
    base = [ct, "--labels", seg, "--lesion", "meningioma", "--lesion-hu", "600"]
    runner = CliRunner()
    missing = runner.invoke(app, ["phantom-from-ct", *base, "--lesion-level", "L4", "--out", "a"])
    assert missing.exit_code != 0 and "do not hold L4" in missing.output
    too_big = runner.invoke(
        app,
        [
            "phantom-from-ct",
            *base,
            "--lesion-level",
            "T11",
            "--lesion-size",
            "12,8,40",
            "--out",
            str(tmp_path / "b"),
        ],
    )
    assert too_big.exit_code != 0 and "too small for this lesion at T11" in too_big.output
    assert not (tmp_path / "b").exists()
    out = tmp_path / "c"
    ok = runner.invoke(
        app,
        [
            "phantom-from-ct",
            *base,
            "--lesion-level",
            "L1",
            "--new-subject",
            "--seed",
            "2",
            "--out",
            str(out),
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert "from HU alone (no labels for them): heart" in ok.output
    case = PhantomCase(out / "case-000")
    assert case.meta["derived_from_hu_alone"] == ["heart"]
    assert case.meta["subject"]["seed"] == 2 and case.meta["subject"]["marrow_fat_shift"] > 0.1
    (lesion,) = case.lesions()
    l1 = read_volume(totalseg / "example_seg.nii.gz", kind="label")
    assert isinstance(l1, LabelMap)
    from synthct.phantom.ct_levels import level_centre_lps_mm

    np.testing.assert_allclose(lesion["centre_lps_mm"], level_centre_lps_mm(l1, "L1"), atol=1e-6)
    assert case.ct().array[case.lesion_labels().mask(1)].mean() > 300


def test_surface_layer_ignores_the_grid_edge() -> None:
    labels = np.zeros((6, 6, 6), np.uint8)
    labels[:, 1:5, 1:5] = 7  # runs through the grid along axis 0
    labels[2:4, 2:4, 2:4] = 8  # a second bone inside: both get a face between them
    surface = surface_layer(labels)
    assert not surface[[0, 5], 2:4, 2:4].any()  # the cut ends at the grid edge: no cortex
    assert surface[[1, 4], 2:4, 2:4].all()  # faces against the inner bone
    assert surface[:, 1, 1:5].all() and surface[2:4, 2:4, 2:4].all()
    assert not surface[labels == 0].any()


def test_canal_and_discs_from_the_foramen_without_a_cord_label() -> None:
    """Two ring-shaped vertebrae (body + arch around a foramen), no cord label."""
    shape = (30, 34, 30)
    hu = np.full(shape, -100.0, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.uint8)
    y, x = np.meshgrid(np.arange(shape[1]), np.arange(shape[0]))
    ring = ((x - 15) ** 2 + (y - 20) ** 2 <= 8**2) & ((x - 15) ** 2 + (y - 20) ** 2 > 4**2)
    body = (np.abs(x - 15) <= 7) & (y >= 3) & (y <= 13)
    foramen = (x - 15) ** 2 + (y - 20) ** 2 <= 4**2
    for z0, number in ((3, L2), (17, L1)):
        for z in range(z0, z0 + 10):
            labels[:, :, z][ring | body] = number
            hu[:, :, z][ring | body] = 200.0
    hu[:, :, 13:17][body] = 80.0  # disc between the bodies (8 mm at 2 mm voxels)
    hu[:, :, :][np.broadcast_to(foramen[:, :, None], shape)] = 10.0  # CSF-dense canal
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    ct = CTVolume(hu, affine, source="rings.nii.gz")
    result = derive_tissue_map(ct, LabelMap(labels, affine, source="rings_seg.nii.gz"))
    tissue = result.tissue_map.array
    assert "spinal canal" not in result.hu_only and "intervertebral discs" not in result.hu_only
    in_foramen = np.broadcast_to(foramen[:, :, None], shape)
    # The canal inside each ring, and between the rings, is CSF; nothing outside it is.
    assert np.all(tissue[:, :, 3:27][in_foramen[:, :, 3:27]] == Tissue.CSF)
    assert np.array_equal(tissue == Tissue.CSF, in_foramen & _region(np.s_[:, :, 3:27], shape))
    # The disc fills the gap between the bodies only (not the arch's gap behind the canal).
    disc = tissue == Tissue.DISC
    assert np.array_equal(
        disc, np.broadcast_to(body[:, :, None], shape) & _region(np.s_[:, :, 13:17], shape)
    )


def test_the_couch_is_air_in_the_tissue_map_and_a_note_says_so() -> None:
    ct, seg = built_case()
    hu = ct.array.copy()
    hu[2:38, 39, :] = 300.0  # a 10 mL carbon-fibre couch, an air gap below the body
    hu[5:7, 0, 0:2] = 700.0  # a 0.06 mL dense fragment: too small to be an object
    with_couch = CTVolume(hu, ct.affine, source="couch.nii.gz")
    result = derive_tissue_map(with_couch, seg)
    tissue = result.tissue_map.array
    assert np.all(tissue[2:38, 39, :] == Tissue.AIR)
    assert np.all(tissue[5:7, 0, 0:2] == Tissue.CORTICAL_BONE)
    assert any("10 mL of dense objects" in note for note in result.notes)
    # Everything else is as without the couch.
    plain = derive_tissue_map(ct, seg).tissue_map.array
    same = np.ones(tissue.shape, bool)
    same[2:38, 39, :] = False
    same[5:7, 0, 0:2] = False
    np.testing.assert_array_equal(tissue[same], plain[same])


def test_realistic_mri_of_a_real_ct_darkens_flowing_blood(totalseg: Path, tmp_path: Path) -> None:
    """Realism reaches the CT-derived path: the labelled aorta/vessels become flow voids."""
    from synthct.phantom.cohort_files import PhantomCase
    from synthct.phantom.ct_insertion import write_ct_derived_case

    ct = read_volume(totalseg / "example_ct_sm.nii.gz", kind="ct")
    seg = read_volume(totalseg / "example_seg_fast.nii.gz", kind="label")
    assert isinstance(ct, CTVolume) and isinstance(seg, LabelMap)
    ratio = {}
    for realism in ("classic", "realistic"):
        folder = write_ct_derived_case(
            ct, tmp_path / realism, labels=seg, mr_realism=realism, supersample=1
        )
        case = PhantomCase(folder / "case-000")
        assert case.meta["mr_realism"] == realism
        mr = np.asarray(case.mr().array)
        tissue = np.asarray(read_volume(folder / "case-000" / "tissue_labels.nii.gz").array)
        blood, muscle = tissue == Tissue.BLOOD, tissue == Tissue.MUSCLE
        assert blood.sum() > 500 and muscle.sum() > 500
        ratio[realism] = float(mr[1][blood].mean() / mr[1][muscle].mean())
    # Classic blood is a bright static fluid; at ~1 m/s it dephases at the in-phase echo.
    assert ratio["realistic"] < 0.7 * ratio["classic"], ratio
