"""Domain-randomised training: the data source, the config hook, a tiny real run, 1-channel use."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from synthct.cli import app
from synthct.imaging.labels import Tissue
from synthct.io import read_volume
from synthct.phantom.domain_randomisation import BACKGROUND_LABEL
from synthct.synthesis.checkpoint import config_differences
from synthct.synthesis.config import DataConfig, SynthesisConfig, config_to_yaml
from synthct.synthesis.domain import CONTRAST_AGNOSTIC
from synthct.synthesis.errors import (
    DomainMismatchError,
    OutOfDomainWarning,
    SynthesisInputError,
    TrainingConfigError,
)
from synthct.synthesis.model_folder import load_model_folder
from synthct.synthesis.normalisation import body_mask_from_mri
from synthct.synthesis.randomised_source import (
    LabelledCase,
    RandomisedPatchSampler,
    load_labelled_case,
    randomised_training_data,
    read_label_manifest,
    warped_context,
    write_labelled_cohort,
)
from synthct.synthesis.synthesizer import SynthesisModel, load_synthesizer
from synthct.synthesis.training import TrainingResult, train_model
from synthct.volume import CTVolume, LabelMap, MultiEchoMR

#: A tiny network and a few steps: the real loop, seconds on 2 cores.
TINY_DR: dict[str, dict[str, object]] = {
    "network": {"base_channels": 4, "levels": 2, "dropout": 0.1},
    "normalisation": {"channels": ("any_contrast",)},
    "patches": {"size": (16, 16, 16), "flip_axes": (0,)},
    "training": {
        "iterations": 4,
        "batch_size": 2,
        "validation_interval": 2,
        "checkpoint_interval": 2,
        "validation_patches": 2,
        "device": "cpu",
        "curve_png": False,
    },
    "inference": {"patch_size": (32, 32, 16), "batch_size": 2, "mc_passes": 2},
    "data": {"mr_source": "randomised", "context_size": (24, 24, 24)},
    "card": {"name": "dr-tiny"},
}


def _dr_config(**data: object) -> SynthesisConfig:
    sections = {k: dict(v) for k, v in TINY_DR.items()}
    sections["data"].update(data)
    return SynthesisConfig().with_updates(sections)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def dr_cohort(totalseg: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real abdominal CT with its TotalSegmentator labels, and its lower half as a second
    case held out for validation."""
    ct = read_volume(totalseg / "example_ct_sm.nii.gz")
    seg = read_volume(totalseg / "example_seg_fast.nii.gz")
    assert isinstance(ct, CTVolume) and isinstance(seg, LabelMap)
    half = CTVolume(ct.array[:, :, :16], ct.affine)
    seg_half = LabelMap(seg.array[:, :, :16], seg.affine)
    return write_labelled_cohort(
        [("abdomen", ct, seg, "train"), ("abdomen_low", half, seg_half, "validation")],
        tmp_path_factory.mktemp("dr_cohort"),
    )


@pytest.fixture(scope="module")
def dr_trained(dr_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainingResult:
    torch.set_num_threads(1)
    return train_model(dr_cohort, _dr_config(), tmp_path_factory.mktemp("dr_run"))


def test_the_cohort_holds_ct_and_tissue_labels_and_reads_without_mr(dr_cohort: Path) -> None:
    records = read_label_manifest(dr_cohort)
    assert [(r.case_id, r.split, r.mr_echoes) for r in records] == [
        ("abdomen", "train", ()),
        ("abdomen_low", "validation", ()),
    ]
    case = load_labelled_case(records[0])
    ct = read_volume(records[0].ct)
    inside = case.tissue != BACKGROUND_LABEL
    np.testing.assert_array_equal(case.ct_hu[inside], np.asarray(ct.array, np.float32)[inside])
    assert np.all(case.ct_hu[~inside] == -1000.0)  # outside the body: air
    assert case.tissue[0, 0, 0] == BACKGROUND_LABEL
    assert np.count_nonzero(case.tissue == Tissue.SPINAL_CORD) > 0


def test_a_ras_stored_real_ct_is_trained_on_in_lps(dr_cohort: Path) -> None:
    """example_ct_sm is stored RAS: with plan.orientation LPS its tissue map and HU come out
    flipped along the first two axes, voxel for voxel."""
    record = read_label_manifest(dr_cohort)[0]
    native = load_labelled_case(record)
    canonical = load_labelled_case(record, orientation="LPS")
    assert native.geometry.orientation_code == "RAS"
    assert canonical.geometry.orientation_code == "LPS"
    np.testing.assert_array_equal(canonical.ct_hu, native.ct_hu[::-1, ::-1, :])
    np.testing.assert_array_equal(canonical.tissue, native.tissue[::-1, ::-1, :])


def test_the_scanner_couch_of_a_real_ct_is_not_a_bone_target(
    totalseg: Path, tmp_path: Path
) -> None:
    """The DICOM thorax keeps its couch (150-500 HU under the patient, outside the body): as a
    target it would teach dark background = bone. Loaded for training it is air; the body is
    untouched."""
    ct = read_volume(totalseg / "example_ct_dicom")
    seg = read_volume(totalseg / "example_seg_dicom.nii.gz")
    assert isinstance(ct, CTVolume) and isinstance(seg, LabelMap)
    manifest = write_labelled_cohort([("thorax", ct, seg, "train")], tmp_path)
    (record,) = read_label_manifest(manifest)
    case = load_labelled_case(record)
    raw = np.asarray(ct.array, np.float32)
    outside = case.tissue == BACKGROUND_LABEL
    assert np.count_nonzero(outside & (raw >= 150.0)) > 50_000  # the couch
    assert np.count_nonzero(outside & (case.ct_hu >= 150.0)) == 0
    np.testing.assert_array_equal(case.ct_hu[~outside], raw[~outside])
    assert np.count_nonzero(case.ct_hu >= 150.0) > 50_000  # the spine and ribs stay bone


def test_a_manifest_without_tissue_labels_is_refused(tmp_path: Path) -> None:
    ct = CTVolume(np.zeros((4, 4, 4), np.int16), np.eye(4))
    from synthct.io import write_volume

    write_volume(ct, tmp_path / "ct.nii.gz")
    (tmp_path / "manifest.csv").write_text("case_id,ct\na,ct.nii.gz\n")
    with pytest.raises(SynthesisInputError, match="needs its tissue_labels") as e:
        read_label_manifest(tmp_path / "manifest.csv")
    assert "tissue_labels" in (e.value.fix or "")


def test_a_context_without_augmentation_is_the_crop_itself() -> None:
    rng = np.random.default_rng(0)
    tissue = rng.integers(0, 12, size=(20, 18, 16)).astype(np.uint8)
    hu = rng.normal(0, 300, size=tissue.shape).astype(np.float32)
    from synthct.geometry import Geometry

    case = LabelledCase("x", tissue, hu, Geometry.from_parameters(tissue.shape, (2.0, 2.0, 3.0)))
    data = DataConfig(
        context_size=(8, 6, 4), rotation_deg=0.0, scaling_range=(1.0, 1.0), elastic_mm=0.0
    )
    labels, ct = warped_context(case, (10, 9, 8), data, rng)
    # Voxel n // 2 of the crop is the centre: the crop [6:14, 6:12, 6:10], exactly.
    np.testing.assert_array_equal(labels, tissue[6:14, 6:12, 6:10])
    np.testing.assert_allclose(ct, hu[6:14, 6:12, 6:10], atol=1e-3)
    outside, ct_out = warped_context(case, (0, 0, 0), data, rng)
    assert outside[0, 0, 0] == BACKGROUND_LABEL and ct_out[0, 0, 0] == -1000.0


def test_each_patch_gets_a_new_contrast_and_the_target_is_the_real_ct(dr_cohort: Path) -> None:
    records = read_label_manifest(dr_cohort)
    config = _dr_config(rotation_deg=0.0, scaling_range=(1.0, 1.0), elastic_mm=0.0)
    config = config.with_updates({"patches": {"flip_axes": ()}})
    cases, prepared, _, sampler = randomised_training_data(
        records, ["abdomen"], ["abdomen"], config
    )
    assert isinstance(sampler, RandomisedPatchSampler)
    assert cases["abdomen"].mr.n_echoes == 1 and prepared["abdomen"].n_echoes == 1
    x1, _ = sampler.sample_from([np.random.default_rng(4)])
    x2, _ = sampler.sample_from([np.random.default_rng(4)])
    np.testing.assert_array_equal(x1, x2)  # one seed, one patch
    assert x1.shape == (1, 1, 16, 16, 16)
    # Without spatial augmentation the target is the real CT's window, in HU / 1000, in the
    # training orientation (plan.orientation LPS; the file is stored RAS).
    ct = np.asarray(read_volume(records[0].ct).reoriented("LPS").array, np.float32)
    rng = np.random.default_rng(10)
    xa, ya = sampler.randomised_patch(0, (60, 50, 15), rng)
    np.testing.assert_allclose(ya[0] * 1000.0, ct[52:68, 42:58, 7:23], atol=0.05)
    # The same place again: the same anatomy and target, another contrast.
    xb, yb = sampler.randomised_patch(0, (60, 50, 15), rng)
    np.testing.assert_array_equal(ya, yb)
    assert np.abs(xa - xb).mean() > 0.05
    assert np.isfinite(xa).all() and xa.min() >= 0.0 and xa.max() <= config.normalisation.clip_max


def test_config_hook_checks_and_round_trips() -> None:
    assert "data" not in SynthesisConfig().model_dump(mode="json")  # old configs compare equal
    config = _dr_config()
    assert config.data.mr_source == "randomised"
    text = config_to_yaml(config)
    assert "mr_source: randomised" in text
    files = config.with_updates({"data": {"mr_source": "files"}})
    assert config_differences(config, files) == ["data.mr_source: 'randomised' -> 'files'"]
    with pytest.raises(TrainingConfigError, match="needs named channels"):
        _dr_config().with_updates({"normalisation": {"channels": ()}})
    with pytest.raises(TrainingConfigError, match="does not insert lesions"):
        _dr_config().with_updates({"lesion_insertion": {"enabled": True}})
    with pytest.raises(TrainingConfigError, match="at least the patch size"):
        _dr_config(context_size=(8, 8, 8))


def test_tiny_run_writes_a_model_folder_that_declares_the_domain(
    dr_trained: TrainingResult,
) -> None:
    folder = load_model_folder(dr_trained.model_dir)
    assert folder.domain.contrast == CONTRAST_AGNOSTIC
    assert folder.domain.n_echoes == 1 and folder.domain.channel_names == ("any_contrast",)
    assert folder.card["domain"]["contrast"] == "contrast-agnostic (domain randomised)"
    assert folder.config.data.mr_source == "randomised"
    assert folder.card["training"]["training_case_ids"] == ["abdomen"]
    assert folder.card["training"]["validation_case_ids"] == ["abdomen_low"]
    assert [row["iteration"] for row in dr_trained.log] == [2, 4]
    assert all(np.isfinite(row["validation_mae_hu"]) for row in dr_trained.log)
    assert dr_trained.validation["cases"][0]["case_id"] == "abdomen_low"


def test_a_real_one_channel_mr_is_synthesised_without_protocol_warnings(
    dr_trained: TrainingResult, totalseg: Path, tmp_path: Path
) -> None:
    mr = read_volume(totalseg / "example_mr_sm.nii.gz", kind="mr")
    assert isinstance(mr, MultiEchoMR) and mr.n_echoes == 1 and mr.protocol is None
    model = load_synthesizer(dr_trained.model_dir)
    assert isinstance(model, SynthesisModel)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfDomainWarning)  # no protocol: no mismatch
        result = model.synthesize(mr)
    assert result.sct.same_geometry(mr)
    assert np.isfinite(result.sct.array).all()
    two = MultiEchoMR(np.concatenate([mr.array, mr.array]), mr.affine)
    with pytest.raises(DomainMismatchError, match="2 echoes but the model was trained on 1"):
        model.synthesize(two)
    out = tmp_path / "sct.nii.gz"
    done = CliRunner().invoke(
        app,
        [
            "synthesize",
            str(totalseg / "example_mr_sm.nii.gz"),
            "-m",
            str(dr_trained.model_dir),
            "-o",
            str(out),
        ],
    )
    assert done.exit_code == 0, done.output
    assert "out of domain" not in done.output
    written = read_volume(out)
    assert written.spatial_shape == mr.spatial_shape


def test_the_packaged_dr_model_is_small_checksummed_and_runs_on_the_real_mr(
    totalseg: Path,
) -> None:
    folder_path = Path(__file__).resolve().parents[2] / "src/synthct/models/dr_contrast_agnostic"
    assert sum(f.stat().st_size for f in folder_path.iterdir()) < 2_000_000
    folder = load_model_folder(folder_path)  # verifies the weights' SHA-256 against the card
    assert folder.domain.contrast == CONTRAST_AGNOSTIC and folder.domain.n_echoes == 1
    assert folder.card["provenance"]["command"] == "scripts/train_dr_model.sh"
    assert "held_out_validation" in folder.card
    mr = read_volume(totalseg / "example_mr_sm.nii.gz", kind="mr")
    assert isinstance(mr, MultiEchoMR)
    model = SynthesisModel.load(folder_path)
    sct = model.synthesize(mr).sct.array
    assert sct.shape == mr.spatial_shape and np.isfinite(sct).all()
    # Outside the body is air; inside, values stay within CT's physical range.
    assert sct[0, 0, 0] == -1000.0
    assert -1100.0 < np.median(sct[50:66, 40:80, :]) < 1000.0
    # Bone where the vertebrae are (the boxes of benchmarks/dr_real_mr.py, delineated on the
    # MR): measured 92 % of the sCT's bone (>= 200 HU) on the spine and 24 % of the
    # vertebral-body box as bone (a real CT of the same region: 35 %; the model trained with
    # mixed array layouts: 15 % and 7.5 %).
    body, _ = body_mask_from_mri(mr.array)
    bone = (sct >= 200.0) & body
    vertebral_body = (slice(50, 66), slice(55, 69), slice(None))
    spine = np.zeros(bone.shape, bool)
    spine[vertebral_body] = True
    spine[46:70, 69:81, :] = True
    assert np.count_nonzero(bone & spine) >= 0.8 * np.count_nonzero(bone)
    assert bone[vertebral_body].mean() >= 0.15
    # trained in LPS: the MR stored as a sagittal slab gives the same sCT, voxel for voxel
    assert folder.domain.orientation == "LPS"
    sagittal = model.synthesize(mr.reoriented("PSL")).sct.reoriented("LPS")
    np.testing.assert_array_equal(sagittal.array, sct)
