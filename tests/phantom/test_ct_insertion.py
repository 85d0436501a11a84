"""Lesions inserted into a real CT and its simulated MRI: HU, size, placement and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from synthct.cli import app
from synthct.errors import GeometryMismatchError, VolumeKindError
from synthct.geometry import Geometry
from synthct.imaging.labels import Tissue
from synthct.imaging.tissues import TISSUES
from synthct.io import read_volume
from synthct.phantom.cohort_files import PhantomCase
from synthct.phantom.ct_derived import CTDerivedModel, tissue_map_from_ct
from synthct.phantom.ct_insertion import (
    EllipsoidLesion,
    LesionOverlayModel,
    default_lesion_centre,
    insert_lesions_into_ct,
    random_calcified_meningioma,
)
from synthct.phantom.model import PhantomParameterError, supersampled
from synthct.volume import CTVolume, LabelMap


@pytest.fixture(scope="module")
def real(totalseg: Path) -> tuple[CTVolume, LabelMap]:
    ct = read_volume(totalseg / "example_ct_sm.nii.gz")
    seg = read_volume(totalseg / "example_seg.nii.gz")
    assert isinstance(ct, CTVolume) and isinstance(seg, LabelMap)
    return ct, seg


def test_fraction_follows_target_hu() -> None:
    lesion = EllipsoidLesion("meningioma", (0.0, 0.0, 0.0), mean_hu=600.0)
    base = TISSUES[Tissue.MENINGIOMA].ct_hu
    dense = TISSUES[Tissue.CALCIFICATION].ct_hu
    assert lesion.fraction == pytest.approx((600.0 - base) / (dense - base))
    assert lesion.noise_free_mean_hu == pytest.approx(600.0)


def test_inserted_lesion_has_its_hu_volume_and_place(real: tuple[CTVolume, LabelMap]) -> None:
    ct, seg = real
    base = CTDerivedModel.from_ct(ct, seg)
    centre = default_lesion_centre(base.tissue_map.array, ct.geometry)
    lesion = EllipsoidLesion("meningioma", tuple(centre), 12.0, 8.0, 18.0, mean_hu=600.0, seed=3)
    model = LesionOverlayModel(base, [lesion])
    with_lesion = insert_lesions_into_ct(ct, model, noise_sd_hu=0.0)
    # Integral of the HU change = lesion volume x (lesion HU - replaced HU), within 2%.
    volume_mm3 = 4 / 3 * np.pi * 6.0 * 4.0 * 9.0
    fine = supersampled(ct.geometry, 5)
    inside = model.lesion_labels_on(fine) == 1
    assert inside.sum() * fine.voxel_volume_mm3 == pytest.approx(volume_mm3, rel=0.02)
    replaced_hu = np.repeat(np.repeat(np.repeat(ct.array, 5, 0), 5, 1), 5, 2)[inside].mean()
    change = (with_lesion.array - ct.array.astype(np.float32)).sum() * ct.geometry.voxel_volume_mm3
    assert change == pytest.approx(volume_mm3 * (600.0 - replaced_hu), rel=0.02)
    # Noise-free mean HU of the fully covered lesion sub-voxels is the specification (2%).
    labels = model.labels_on(fine)[inside]
    hu = np.where(
        labels == Tissue.CALCIFICATION,
        TISSUES[Tissue.CALCIFICATION].ct_hu,
        TISSUES[Tissue.MENINGIOMA].ct_hu,
    )
    assert hu.mean() == pytest.approx(600.0, rel=0.02)
    # Only voxels that reach into the lesion change: their centres lie within the ellipsoid
    # grown by half a voxel diagonal (2.6 mm for 3 mm voxels).
    touched = np.argwhere(with_lesion.array != ct.array)
    assert len(touched) > 0
    offsets = (ct.geometry.index_to_lps(touched) - centre) / (lesion.semi_axes_mm + 2.6)
    assert np.all(np.sum(offsets**2, axis=1) <= 1.0)
    # The lesion sits by the labelled cord, in the canal.
    cord = seg.geometry.index_to_lps(np.argwhere(seg.mask(79)))
    assert np.min(np.linalg.norm(cord - centre, axis=1)) < 6.0


def test_mri_sees_the_same_lesion(real: tuple[CTVolume, LabelMap]) -> None:
    from synthct.phantom.mri import render_mri
    from synthct.phantom.protocols import PAPER_3T

    ct, seg = real
    base = CTDerivedModel.from_ct(ct, seg)
    centre = default_lesion_centre(base.tissue_map.array, ct.geometry)
    lesion = EllipsoidLesion("meningioma", tuple(centre), 12.0, 9.0, 18.0, mean_hu=800.0)
    model = LesionOverlayModel(base, [lesion])
    mr = render_mri(model, ct.geometry, PAPER_3T, noise_sd=0.0, bias_field_strength=0.0)
    plain = render_mri(base, ct.geometry, PAPER_3T, noise_sd=0.0, bias_field_strength=0.0)
    core = model.lesion_labels_on(ct.geometry) == 1
    # Dense calcification is dark on both echoes where the lesion replaced canal contents.
    for echo in range(2):
        assert mr.array[echo][core].mean() < 0.7 * plain.array[echo][core].mean()


def test_errors_name_the_problem(real: tuple[CTVolume, LabelMap], totalseg: Path) -> None:
    ct, _ = real
    with pytest.raises(PhantomParameterError, match="unknown lesion type"):
        EllipsoidLesion("glioma", (0.0, 0.0, 0.0))
    with pytest.raises(PhantomParameterError, match="out of reach"):
        EllipsoidLesion("meningioma", (0.0, 0.0, 0.0), mean_hu=3000.0)
    with pytest.raises(PhantomParameterError, match="axial_diameter_mm"):
        EllipsoidLesion("meningioma", (0.0, 0.0, 0.0), axial_diameter_mm=-3.0)
    far = EllipsoidLesion("meningioma", (5000.0, 0.0, 0.0), mean_hu=500.0)
    model = LesionOverlayModel(CTDerivedModel.from_ct(ct), [far])
    with pytest.raises(PhantomParameterError, match="outside the CT's field of view"):
        insert_lesions_into_ct(ct, model)
    with pytest.raises(PhantomParameterError, match="no spinal cord"):
        default_lesion_centre(tissue_map_from_ct(ct).array, ct.geometry)
    # example_seg belongs to example_ct_sm, whose header keeps the full CT's origin although it
    # holds the full CT's last 30 slices: the labels do not sit on the full CT.
    full = read_volume(totalseg / "example_ct.nii.gz")
    seg = read_volume(totalseg / "example_seg.nii.gz")
    assert isinstance(full, CTVolume) and isinstance(seg, LabelMap)
    np.testing.assert_array_equal(full.array[:, :, -30:], ct.array)
    with pytest.raises(GeometryMismatchError, match=r"covers only 2\d%"):
        tissue_map_from_ct(full, seg)
    # On the right grid but shifted 75 mm to the side: the vertebrae fall on soft tissue.
    shifted = LabelMap(np.roll(seg.array, 25, axis=0), seg.affine, source=seg.source)
    with pytest.raises(VolumeKindError, match="does not fit this CT"):
        tissue_map_from_ct(ct, shifted)


def test_cli_writes_a_ct_derived_case(totalseg: Path, tmp_path: Path) -> None:
    out = tmp_path / "ctd"
    result = CliRunner().invoke(
        app,
        [
            "phantom-from-ct",
            str(totalseg / "example_ct_sm.nii.gz"),
            "--labels",
            str(totalseg / "example_seg.nii.gz"),
            "--out",
            str(out),
            "--lesion",
            "meningioma",
            "--lesion-hu",
            "700",
        ],
    )
    assert result.exit_code == 0, result.output
    case = PhantomCase(out / "case-000")
    ct, mr = case.ct(), case.mr()
    assert mr.n_echoes == 2 and mr.same_geometry(ct)
    (lesion,) = case.lesions()
    assert lesion["mean_hu"] == pytest.approx(700.0)
    mask = case.lesion_labels().mask(1)
    assert ct.array[mask].mean() > 300  # the calcified lesion shows on the CT


def test_random_meningioma_lies_dorsal_of_the_cord_within_the_paper_ranges() -> None:
    # a cord column along S at L = 0, P = 0 (1 mm grid, origin at the centre voxel)
    tissue = np.zeros((21, 21, 21), np.uint8)
    tissue[10, 10, :] = Tissue.SPINAL_CORD
    geometry = Geometry.from_parameters((21, 21, 21), (1.0, 1.0, 1.0), (-10.0, -10.0, -10.0))
    drawn = [
        random_calcified_meningioma(tissue, geometry, np.random.default_rng(k), seed=k)
        for k in range(40)
    ]
    for lesion in drawn:
        centre = np.asarray(lesion.centre_lps_mm)
        assert abs(centre[0]) < 1e-9 and 0.0 <= centre[1] <= 3.0  # +P is dorsal
        assert abs(centre[2]) < 1e-9  # the cord's middle
        assert 6.0 <= lesion.axial_diameter_mm <= 12.0 and 4.0 <= lesion.thickness_mm <= 7.0
        assert 8.0 <= lesion.sagittal_diameter_mm <= 16.0 and 150.0 <= lesion.mean_hu <= 1000.0
    assert {lesion.pattern for lesion in drawn} == {"dense", "partial", "rim"}
    again = random_calcified_meningioma(tissue, geometry, np.random.default_rng(3), seed=3)
    assert again == drawn[3]  # a seeded cohort is reproducible
    with pytest.raises(PhantomParameterError, match="spinal cord"):
        random_calcified_meningioma(
            np.zeros_like(tissue), geometry, np.random.default_rng(0), seed=0
        )
