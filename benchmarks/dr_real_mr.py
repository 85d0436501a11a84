"""The domain-randomised model on the real MR (no CT) and on a held-out CT-derived case.

Part A, real MR: ``example_mr_sm`` (abdominal MR of a subject the model never saw, 3 mm, one
channel, no CT) is synthesised with the contrast-agnostic model; with no CT to compare, the
sCT's bone (>= 200 HU inside the MRI body mask) is measured against a vertebra region
delineated once on the MR by documented voxel boxes (see ``VERTEBRAL_BODY`` and
``POSTERIOR_ELEMENTS``: on every axial slice the vertebral body is the round structure with a
dark cortical rim in front of the canal, columns 50-65 and rows 55-68; the canal and the
posterior elements behind it, rows 69-80). Reported: the fraction of sCT bone voxels inside
the vertebra region (how much of the predicted bone sits on the spine), the fraction of the
vertebral-body box predicted as bone, and the median sCT HU in the box. The comparison in the
same run is the real CT ``example_ct_sm`` with its TotalSegmentator vertebrae (another
subject, same region and voxel size): the same fractions measured with the true labels, i.e.
what a perfect sCT would show.

Part B, held-out CT-derived case: ``chest_ct`` (a subject whose CT was not used in training)
gets its 2-echo MRI from the existing renderer (:func:`synthct.phantom.mri.render_mri`,
paper_3t contrast, on the CT grid); the model sees one echo at a time (both are run, as two
contrasts), the bulk-HU baseline both echoes. Body MAE (HU, CT body mask) and bone Dice at
150 and 250 HU against the real CT, and the MAE per CT HU class inside the body: fat (-200 to
-30 HU), soft tissue (-30 to 150 HU) and >= 250 HU. ``chest_ct`` is the crop of a CT pulmonary
angiogram around the heart (iodine in the heart chambers and great vessels, 300-600 HU): most
of its >= 250 HU voxels are contrast-enhanced blood, which synthct's renderer (no labels: HU
alone) and any MRI show as dark as bone, and which no sCT can know. The soft-tissue and fat
columns are the fair part of this case.

Part C (``--training-patches MANIFEST``, the model's own training cohort): does the network
render bone on the distribution it was trained on? ``PROBE_PATCHES`` randomised training patches
(the model's spatial augmentation and contrast settings, a fixed seed), once with the mixture
alone (``p_physics`` 0) and once with physics-driven contrasts alone (``p_physics`` 1): the
median predicted HU where the target is bone (>= 150 HU), the target's median there, and the
bone Dice at 150 HU over the patches.

Part D: the real MR stored in other array layouts (RAS, and PSL as a sagittal acquisition
stores it), each sCT brought back to the stored layout: the mean |difference| from the sCT of
the file as stored over the MRI body. 0 for a model that declares its training orientation
(``plan.orientation``), which inference then brings every MRI into.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dr_real_mr.py
          [--model src/synthct/models/dr_contrast_agnostic] [--out out/dr_bench]
          [--figure docs/images/dr_example_mr_sm.png] [--skip-held-out] [--record-in-card]
          [--training-patches out/dr_training/cohort/manifest.csv]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from synthct.imaging.body_mask import body_mask_from_ct
from synthct.imaging.image_metrics import bone_dice, mae_hu
from synthct.io import read_volume
from synthct.phantom.ct_derived import CTDerivedModel
from synthct.phantom.mri import render_mri
from synthct.phantom.protocols import get_preset
from synthct.synthesis.baseline import BaselineSynthesizer
from synthct.synthesis.normalisation import body_mask_from_mri
from synthct.synthesis.synthesizer import SynthesisModel, load_synthesizer
from synthct.volume import CTVolume, LabelMap, MRProtocol, MultiEchoMR

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "totalsegmentator"
MODEL = Path(__file__).resolve().parents[1] / "src" / "synthct" / "models" / "dr_contrast_agnostic"
#: Bone threshold of the real-MR measurement (HU); cancellous bone of adult vertebrae lies at
#: ~150-300 HU on CT (Schreiber et al., J Bone Joint Surg Am 93:1057, 2011), cortex above.
BONE_HU = 200.0
#: Voxel boxes of example_mr_sm (array axes i = R->L, j = A->P, k = I->S; all 20 slices).
VERTEBRAL_BODY = (slice(50, 66), slice(55, 69), slice(0, 20))
POSTERIOR_ELEMENTS = (slice(46, 70), slice(69, 81), slice(0, 20))
#: TotalSegmentator v2 vertebra labels (26-50: S1..C1; Wasserthal et al. 2023).
VERTEBRA_LABELS = tuple(range(26, 51))


def spine_region(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the vertebral-body box and of the whole vertebra region (body + posterior)."""
    body = np.zeros(shape, bool)
    body[VERTEBRAL_BODY] = True
    region = body.copy()
    region[POSTERIOR_ELEMENTS] = True
    return body, region


def real_mr(model: SynthesisModel) -> tuple[dict[str, Any], MultiEchoMR, np.ndarray]:
    mr = read_volume(DATA / "example_mr_sm.nii.gz", kind="mr")
    assert isinstance(mr, MultiEchoMR)
    t0 = time.perf_counter()
    sct = model.synthesize(mr).sct.array
    seconds = time.perf_counter() - t0
    body_mask, _ = body_mask_from_mri(mr.array)
    vertebral_body, region = spine_region(mr.spatial_shape)
    bone = (sct >= BONE_HU) & body_mask
    return (
        {
            "image": "example_mr_sm (real MR, no CT)",
            "bone_voxels": int(bone.sum()),
            "bone_in_vertebra_region": float((bone & region).sum() / max(bone.sum(), 1)),
            "vertebral_body_as_bone": float(bone[vertebral_body].mean()),
            "median_hu_vertebral_body": float(np.median(sct[vertebral_body])),
            "median_hu_outside_spine_in_body": float(np.median(sct[body_mask & ~region])),
            "seconds": seconds,
        },
        mr,
        sct,
    )


#: Layouts the real MR is stored in for part D: a NIfTI convention and a sagittal slab.
OTHER_LAYOUTS = ("RAS", "PSL")


def orientations(model: SynthesisModel, mr: MultiEchoMR, sct: np.ndarray) -> list[dict[str, Any]]:
    """Part D: the same MR stored in other array layouts; the sCT brought back to the stored one.

    A model that declares its training orientation sees one layout whatever the file's, so the
    difference is 0; one that does not sees the anatomy transposed or mirrored.
    """
    body_mask, _ = body_mask_from_mri(mr.array)
    vertebral_body, _ = spine_region(mr.spatial_shape)
    rows = []
    for code in OTHER_LAYOUTS:
        moved = model.synthesize(mr.reoriented(code)).sct.reoriented(mr.orientation_code)
        back = np.asarray(moved.array)
        rows.append(
            {
                "stored_as": code,
                "model_orientation": str(model.domain.orientation),
                "mean_abs_difference_hu_in_body": float(np.abs(back - sct)[body_mask].mean()),
                "vertebral_body_as_bone": float((back[vertebral_body] >= BONE_HU).mean()),
            }
        )
    return rows


PROBE_PATCHES = 48
PROBE_SEED = 1
PROBE_BONE_HU = 150.0


def training_patches(model: SynthesisModel, manifest: Path) -> list[dict[str, Any]]:
    """Part C: bone on randomised patches of the training cohort, per contrast family."""
    import torch

    from synthct.synthesis.normalisation import target_to_hu
    from synthct.synthesis.randomised_source import (
        randomised_training_data,
        read_label_manifest,
    )

    records = read_label_manifest(manifest)
    ids = [r.case_id for r in records]
    network = model.networks[0].eval()
    rows = []
    for name, p_physics in (("mixture", 0.0), ("physics", 1.0)):
        # One training seed for every model: the probe patches must not depend on the run.
        config = model.config.with_updates(
            {"data": {"p_physics": p_physics}, "training": {"seed": PROBE_SEED}}
        )
        _, _, _, sampler = randomised_training_data(records, ids, ids, config)
        x, y = sampler.sample(np.random.default_rng(PROBE_SEED), PROBE_PATCHES)
        with torch.no_grad():
            prediction = network(torch.from_numpy(x))[:, 0:1].numpy()
        target = target_to_hu(y, config.normalisation)
        sct = target_to_hu(prediction, config.normalisation)
        bone, predicted = target >= PROBE_BONE_HU, sct >= PROBE_BONE_HU
        rows.append(
            {
                "contrasts": name,
                "bone_voxels": int(bone.sum()),
                "median_target_hu_in_bone": float(np.median(target[bone])),
                "median_predicted_hu_in_bone": float(np.median(sct[bone])),
                "bone_dice_150hu": float(
                    2 * (bone & predicted).sum() / max(bone.sum() + predicted.sum(), 1)
                ),
            }
        )
    return rows


def real_ct_reference() -> dict[str, Any]:
    """The same fractions on a real CT with true vertebra labels (what a perfect sCT shows)."""
    ct = read_volume(DATA / "example_ct_sm.nii.gz", kind="ct")
    seg = read_volume(DATA / "example_seg_fast.nii.gz", kind="label")
    assert isinstance(ct, CTVolume) and isinstance(seg, LabelMap)
    hu = np.asarray(ct.array, np.float32)
    body = body_mask_from_ct(hu)
    vertebra = seg.mask(VERTEBRA_LABELS)
    bone = (hu >= BONE_HU) & body
    return {
        "image": "example_ct_sm (real CT, TotalSegmentator vertebrae)",
        "bone_voxels": int(bone.sum()),
        "bone_in_vertebra_region": float((bone & vertebra).sum() / max(bone.sum(), 1)),
        "vertebral_body_as_bone": float(bone[vertebra].mean()),
        "median_hu_vertebral_body": float(np.median(hu[vertebra])),
        "median_hu_outside_spine_in_body": float(np.median(hu[body & ~vertebra])),
        "seconds": 0.0,
    }


#: CT HU classes of part B's per-class MAE (>= 250 HU: bone, and on chest_ct iodinated blood).
HU_CLASSES = {"fat": (-200.0, -30.0), "soft": (-30.0, 150.0), "over_250": (250.0, np.inf)}


def held_out(model: SynthesisModel) -> list[dict[str, Any]]:
    ct = read_volume(DATA / "chest_ct.nii.gz", kind="ct")
    assert isinstance(ct, CTVolume)
    t0 = time.perf_counter()
    mr = render_mri(CTDerivedModel.from_ct(ct), ct.geometry, get_preset("paper_3t"), supersample=2)
    render_s = time.perf_counter() - t0
    hu = np.asarray(ct.array, np.float32)
    body = body_mask_from_ct(hu)
    rows = []

    def row(method: str, sct: np.ndarray, seconds: float) -> dict[str, Any]:
        return {
            "method": method,
            "body_mae_hu": mae_hu(hu, sct, body),
            "bone_dice_150hu": bone_dice(hu, sct, body, threshold_hu=150.0),
            "bone_dice_250hu": bone_dice(hu, sct, body, threshold_hu=250.0),
            **{
                f"mae_{name}_hu": mae_hu(hu, sct, body & (hu >= low) & (hu < high))
                for name, (low, high) in HU_CLASSES.items()
            },
            "seconds": seconds,
        }

    t0 = time.perf_counter()
    baseline = BaselineSynthesizer().synthesize(mr).sct.array
    rows.append(row("bulk-HU baseline (2 echoes)", baseline, time.perf_counter() - t0))
    assert mr.protocol is not None
    for echo in range(mr.n_echoes):
        protocol = MRProtocol(
            (mr.protocol.echo_times_ms[echo],),
            mr.protocol.repetition_time_ms,
            mr.protocol.flip_angle_deg,
            mr.protocol.field_strength_t,
        )
        one = MultiEchoMR(mr.array[echo : echo + 1], mr.affine, protocol=protocol)
        t0 = time.perf_counter()
        sct = model.synthesize(one).sct.array
        te = protocol.echo_times_ms[0]
        rows.append(row(f"DR model, echo {echo + 1} (TE {te:g} ms)", sct, time.perf_counter() - t0))
    rows.append({"method": "(MRI rendering)", "seconds": render_s})
    return rows


def figure(mr: MultiEchoMR, sct: np.ndarray, path: Path) -> Path:
    """Axial and sagittal: MR, sCT, MR with sCT bone (>= 200 HU) and the vertebra region."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from synthct.io.atomic import atomic_file

    image = mr.array[0]
    k, i = 10, 58  # mid slice; the sagittal plane through the vertebral body
    spacing = mr.spacing_mm
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.4), gridspec_kw={"height_ratios": [3, 1.4]})
    top = float(np.percentile(image, 99.5))
    panels = [
        (image[:, :, k].T, image[i, :, :].T, "gray", (0.0, top), "MR (example_mr_sm, real)"),
        (sct[:, :, k].T, sct[i, :, :].T, "gray", (-300.0, 1200.0), "sCT (HU, -300..1200)"),
    ]
    extent_ax = (0, image.shape[0] * spacing[0], image.shape[1] * spacing[1], 0)
    extent_sag = (0, image.shape[1] * spacing[1], 0, image.shape[2] * spacing[2])
    for col, (axial, sagittal, cmap, (lo, hi), title) in enumerate(panels):
        axes[0, col].imshow(axial, cmap=cmap, vmin=lo, vmax=hi, extent=extent_ax)
        axes[1, col].imshow(
            sagittal, cmap=cmap, vmin=lo, vmax=hi, extent=extent_sag, origin="lower"
        )
        axes[0, col].set_title(title)
    bone = np.ma.masked_where(sct < BONE_HU, np.ones_like(sct))
    axes[0, 2].imshow(image[:, :, k].T, cmap="gray", vmin=0, vmax=top, extent=extent_ax)
    axes[0, 2].imshow(bone[:, :, k].T, cmap="autumn", alpha=0.6, extent=extent_ax)
    axes[1, 2].imshow(image[i].T, cmap="gray", vmin=0, vmax=top, extent=extent_sag, origin="lower")
    axes[1, 2].imshow(bone[i].T, cmap="autumn", alpha=0.6, extent=extent_sag, origin="lower")
    axes[0, 2].set_title(f"MR + sCT bone (>= {BONE_HU:g} HU), vertebra boxes")
    for box, colour in ((VERTEBRAL_BODY, "cyan"), (POSTERIOR_ELEMENTS, "lime")):
        x0, y0 = box[0].start * spacing[0], box[1].start * spacing[1]
        w = (box[0].stop - box[0].start) * spacing[0]
        h = (box[1].stop - box[1].start) * spacing[1]
        axes[0, 2].add_patch(Rectangle((x0, y0), w, h, fill=False, ec=colour, lw=1))
        y_sag, h_sag = box[1].start * spacing[1], (box[1].stop - box[1].start) * spacing[1]
        z1 = image.shape[2] * spacing[2]
        axes[1, 2].add_patch(Rectangle((y_sag, 0), h_sag, z1, fill=False, ec=colour, lw=1))
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel(f"axial, slice {k}")
    axes[1, 0].set_ylabel(f"sagittal, column {i}")
    fig.suptitle(
        "Contrast-agnostic (domain-randomised) model on a real MR it never saw (no CT exists)"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = [" | ".join(columns), " | ".join("---" for _ in columns)]
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c, "")
            cells.append(f"{v:.3f}" if isinstance(v, float) else str(v))
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--figure", type=Path, default=Path("docs/images/dr_example_mr_sm.png"))
    parser.add_argument("--out", type=Path, default=Path("out/dr_bench"))
    parser.add_argument("--skip-held-out", action="store_true")
    parser.add_argument(
        "--training-patches",
        type=Path,
        default=None,
        help="the model's training manifest: part C, bone on its own randomised patches",
    )
    parser.add_argument(
        "--record-in-card",
        action="store_true",
        help="write the figures into the model's card (held_out_validation)",
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    model = load_synthesizer(args.model)
    assert isinstance(model, SynthesisModel)
    part_a, mr, sct = real_mr(model)
    reference = real_ct_reference()
    columns = [
        "image",
        "bone_voxels",
        "bone_in_vertebra_region",
        "vertebral_body_as_bone",
        "median_hu_vertebral_body",
        "median_hu_outside_spine_in_body",
        "seconds",
    ]
    print(f"A. real MR, sCT bone >= {BONE_HU:g} HU vs the vertebra region (reference: a real CT)")
    print(_table([part_a, reference], columns))
    print("figure:", figure(mr, sct, args.figure))
    results: dict[str, Any] = {"real_mr": part_a, "real_ct_reference": reference}
    part_d = orientations(model, mr, sct)
    print(f"\nD. the same MR stored as {', '.join(OTHER_LAYOUTS)} (sCT compared in its layout)")
    print(_table(part_d, list(part_d[0])))
    results["stored_layouts"] = part_d
    if not args.skip_held_out:
        part_b = held_out(model)
        print("\nB. held-out chest_ct, MRI from the existing renderer (paper_3t), vs its CT")
        print(
            _table(
                part_b,
                [
                    "method",
                    "body_mae_hu",
                    "bone_dice_150hu",
                    "bone_dice_250hu",
                    *(f"mae_{name}_hu" for name in HU_CLASSES),
                    "seconds",
                ],
            )
        )
        results["held_out_chest_ct"] = part_b
    if args.training_patches is not None:
        part_c = training_patches(model, args.training_patches)
        print(f"\nC. {PROBE_PATCHES} randomised training patches (seed {PROBE_SEED}) of the cohort")
        print(_table(part_c, list(part_c[0])))
        results["training_patches"] = part_c
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dr_real_mr.json").write_text(json.dumps(results, indent=2) + "\n")
    if args.record_in_card:
        from synthct.synthesis.model_folder import update_card

        results["command"] = "benchmarks/dr_real_mr.py --record-in-card"
        results["world"] = (
            "real_mr: the real example_mr_sm (no CT; bone against a documented vertebra "
            "region); held_out_chest_ct: real CT pulmonary angiogram of the chest (iodine in "
            "the heart and vessels: most of its >= 250 HU is enhanced blood), MRI rendered by "
            "synthct (paper_3t)"
        )
        card = json.loads((args.model / "model_card.json").read_text())
        # parts not run this time (--skip-held-out, no --training-patches) keep their figures
        earlier = card.get("held_out_validation") or {}
        kept = {k: v for k, v in earlier.items() if k not in results}
        update_card(args.model, held_out_validation={**kept, **results})


if __name__ == "__main__":
    main()
