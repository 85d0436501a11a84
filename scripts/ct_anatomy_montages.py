"""Montages of the real-anatomy generator on every real CT, for docs/phantoms.md.

For each real CT in ``../shared/data/real/totalsegmentator`` (with its TotalSegmentator labels
where there are some): the real CT, the derived tissue map and the simulated 3 T MRI (paper
protocol, both echoes), as an axial and a sagittal slice, and a third row with one drawn
subject (seed 1: deformed, rescaled, marrow shifted). Written to
``docs/images/anatomy-<case>.png``; ``anatomy-procedural-thorax.png`` shows the procedural
spine phantom with ``SpineSpec(thorax=True, trabecular_texture=True)`` the same way.

Run: OMP_NUM_THREADS=1 .venv/bin/python scripts/ct_anatomy_montages.py [--out docs/images]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from synthct.phantom.labels import Tissue
from synthct.report.plots import save_figure

from synthct.io import read_volume
from synthct.phantom.ct_derived import CTDerivedModel, derive_tissue_map
from synthct.phantom.mri import render_mri
from synthct.phantom.protocols import PAPER_3T
from synthct.phantom.subject_variation import make_subject
from synthct.volume import CTVolume, LabelMap

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "real" / "totalsegmentator"
CASES = {
    "example-ct-sm": ("example_ct_sm.nii.gz", "example_seg.nii.gz"),
    "example-ct-dicom": ("example_ct_dicom", "example_seg_dicom.nii.gz"),
    "chest-ct": ("chest_ct.nii.gz", None),
    "chest-abdomen-cta": ("chest_abdomen_cta.nii.gz", None),
}
COLOURS = {
    Tissue.AIR: "#000000",
    Tissue.SUBCUTANEOUS_FAT: "#f2d16b",
    Tissue.EPIDURAL_FAT: "#e8b84a",
    Tissue.MUSCLE: "#b5413b",
    Tissue.SOFT_TISSUE: "#8c6d62",
    Tissue.CORTICAL_BONE: "#ffffff",
    Tissue.CANCELLOUS_BONE: "#c9c9c9",
    Tissue.DISC: "#4fb0c6",
    Tissue.CSF: "#2f6fdf",
    Tissue.SPINAL_CORD: "#9ee29b",
    Tissue.LUNG: "#3b3f6b",
    Tissue.BOWEL_GAS: "#6b3b6b",
    Tissue.BLOOD: "#e0245e",
    Tissue.LIVER: "#7a3f1d",
    Tissue.SPLEEN: "#a0522d",
    Tissue.KIDNEY: "#d2691e",
    Tissue.HEART: "#c71585",
    Tissue.MARROW_FF10: "#d9a0a0",
    Tissue.MARROW_FF30: "#d9b3a0",
    Tissue.MARROW_FF50: "#d9c6a0",
    Tissue.MARROW_FF70: "#e0d69a",
    Tissue.MARROW_FF90: "#f0e68c",
}


def canonical(array: NDArray[Any], affine: NDArray[np.float64]) -> NDArray[Any]:
    """Array axes reordered to L, P, S with increasing coordinates (axis-aligned grids)."""
    direction = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    world = [int(np.argmax(np.abs(direction[:, a]))) for a in range(3)]
    out = np.transpose(array, np.argsort(world))
    for axis in range(3):
        source = world.index(axis)
        if direction[axis, source] < 0:
            out = np.flip(out, axis)
    return out


def spacing_lps(affine: NDArray[np.float64]) -> NDArray[np.float64]:
    """Voxel spacing along L, P, S of the canonical array."""
    norms = np.linalg.norm(affine[:3, :3], axis=0)
    world = [int(np.argmax(np.abs(affine[:3, a]))) for a in range(3)]
    return np.asarray(norms[np.argsort(world)])


def colour_table() -> NDArray[np.float64]:
    """RGB per label value (grey for any label without a colour)."""
    from matplotlib.colors import to_rgb

    table = np.full((256, 3), 0.5)
    for tissue, colour in COLOURS.items():
        table[int(tissue)] = to_rgb(colour)
    return table


def slices(
    volume: NDArray[Any], spacing: NDArray[np.float64], x: int, z: int
) -> list[tuple[NDArray[Any], list[float]]]:
    """Axial (at S index z) and sagittal (at L index x) views with their extents in mm."""
    axial = volume[:, :, z].swapaxes(0, 1)  # rows P (anterior on top), columns L
    sagittal = volume[x].swapaxes(0, 1)[::-1]  # rows S (cranial on top), columns P
    nx, ny, nz = volume.shape[:3]
    sx, sy, sz = spacing
    return [(axial, [0, nx * sx, ny * sy, 0]), (sagittal, [0, ny * sy, 0, nz * sz])]


def view_point(tissue: NDArray[np.uint8]) -> tuple[int, int]:
    """L index of the canal (cord, else bone) and the S index through the middle of the spine."""
    for wanted in ((Tissue.SPINAL_CORD,), (Tissue.CORTICAL_BONE, Tissue.CANCELLOUS_BONE)):
        found = np.argwhere(np.isin(tissue, [int(t) for t in wanted]))
        if found.size:
            return int(np.median(found[:, 0])), int(np.median(found[:, 2]))
    return tissue.shape[0] // 2, tissue.shape[2] // 2


def render(ct: CTVolume, tissue: LabelMap, hu_only: tuple[str, ...]) -> list[NDArray[Any]]:
    """Canonical CT, tissue map and both MRI echoes."""
    model = CTDerivedModel(tissue, hu_only=hu_only)
    mr = render_mri(model, ct.geometry, PAPER_3T, supersample=1, seed=0)
    return [
        canonical(ct.array, ct.affine),
        canonical(tissue.array, tissue.affine),
        *(canonical(echo, mr.affine) for echo in mr.array),
    ]


def montage(name: str, ct: CTVolume, labels: LabelMap | None, out: Path) -> Path:
    """One figure: rows axial, sagittal, subject axial; columns CT, tissue, echo 1, echo 2."""
    from synthct.report.plots import _pyplot

    plt = _pyplot()
    derived = derive_tissue_map(ct, labels)
    subject = make_subject(ct, labels, seed=1)
    real = render(ct, derived.tissue_map, derived.hu_only)
    drawn = render(subject.ct, subject.tissue_map, subject.hu_only)
    spacing = spacing_lps(ct.affine)
    x, z = view_point(real[1])
    colours = colour_table()
    mr_max = float(np.percentile(real[2], 99.5))
    fig, axes = plt.subplots(3, 4, figsize=(11, 8.4))
    rows = [(real, 0, "axial"), (real, 1, "sagittal"), (drawn, 0, "subject seed 1, axial")]
    titles = ["real CT", "tissue map", "MRI 3 T echo 1", "MRI 3 T echo 2"]
    for r, (volumes, view, row_title) in enumerate(rows):
        for c, volume in enumerate(volumes):
            image, extent = slices(volume, spacing, x, z)[view]
            ax = axes[r, c]
            if c == 0:
                ax.imshow(image, cmap="gray", vmin=-400, vmax=600, extent=extent)
                ax.set_ylabel(row_title)
            elif c == 1:
                ax.imshow(colours[image], extent=extent, interpolation="nearest")
            else:
                ax.imshow(image, cmap="gray", vmin=0, vmax=mr_max, extent=extent)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=10)
    present = [t for t in COLOURS if np.any(real[1] == t)]
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLOURS[t]) for t in present]
    fig.legend(handles, [t.name.lower() for t in present], loc="lower center", ncol=7, fontsize=7)
    hu_only = ", ".join(derived.hu_only) if derived.hu_only else "nothing"
    fig.suptitle(f"{name}: from HU alone: {hu_only}", fontsize=9)
    fig.subplots_adjust(left=0.04, right=0.99, top=0.93, bottom=0.1, wspace=0.03, hspace=0.05)
    return save_figure(fig, out / f"anatomy-{name}.png", dpi=64)


def procedural(out: Path) -> Path:
    """The procedural phantom with thorax and texture: CT, tissue map and MRI, two views."""
    from synthct.report.plots import _pyplot

    from synthct.geometry import Geometry
    from synthct.phantom.anatomy import SpineModel, SpineSpec
    from synthct.phantom.ct import render_ct

    plt = _pyplot()
    model = SpineModel(
        SpineSpec(first_level="T4", last_level="T10", thorax=True, trabecular_texture=True)
    )
    centre = model.level_centre_lps_mm("T7")
    size_mm = np.array([320.0, 260.0, 200.0])
    grid = Geometry.from_parameters((214, 174, 134), (1.5, 1.5, 1.5), tuple(centre - size_mm / 2))
    tissue = LabelMap(model.labels_on(grid), grid.affine)
    ct = render_ct(model, grid, supersample=1, seed=0)
    volumes = render(ct, tissue, ())
    spacing = spacing_lps(grid.affine)
    x = int(grid.lps_to_index(model.canal_centre_lps_mm("T7"))[0].round())
    colours = colour_table()
    mr_max = float(np.percentile(volumes[2], 99.5))
    fig, axes = plt.subplots(2, 4, figsize=(11, 5.6))
    for r in range(2):
        for c, volume in enumerate(volumes):
            image, extent = slices(volume, spacing, x, volume.shape[2] // 2)[r]
            ax = axes[r, c]
            if c == 0:
                ax.imshow(image, cmap="gray", vmin=-400, vmax=600, extent=extent)
            elif c == 1:
                ax.imshow(colours[image], extent=extent, interpolation="nearest")
            else:
                ax.imshow(image, cmap="gray", vmin=0, vmax=mr_max, extent=extent)
            ax.set_xticks([])
            ax.set_yticks([])
    for c, title in enumerate(["phantom CT", "tissue map", "MRI 3 T echo 1", "MRI 3 T echo 2"]):
        axes[0, c].set_title(title, fontsize=10)
    fig.suptitle("procedural spine phantom, thorax and trabecular texture (T4-T10)", fontsize=9)
    fig.subplots_adjust(left=0.02, right=0.99, top=0.9, bottom=0.02, wspace=0.03, hspace=0.05)
    return save_figure(fig, out / "anatomy-procedural-thorax.png", dpi=64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    logging.getLogger("synthct.phantom.ct_derived").setLevel(logging.ERROR)
    for name, (ct_name, seg_name) in CASES.items():
        ct = read_volume(DATA / ct_name, kind="ct")
        assert isinstance(ct, CTVolume)
        labels = None
        if seg_name is not None:
            read = read_volume(DATA / seg_name, kind="label")
            assert isinstance(read, LabelMap)
            labels = read
        path = montage(name, ct, labels, args.out)
        print(f"{path} ({path.stat().st_size / 1024:.0f} kB)")
    path = procedural(args.out)
    print(f"{path} ({path.stat().st_size / 1024:.0f} kB)")


if __name__ == "__main__":
    main()
