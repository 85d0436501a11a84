"""Lesions annotated on the page: saved as a label map on the CT grid and as lesion points.

The page sends its drawing (NIfTI bytes on the CT layer's grid, label ``n`` = the ``n``-th named
ROI) and any points with radii (LPS mm). :func:`save_annotation` writes, into
``<start folder>/annotations/<case_id>/``:

===================  ===========================================================================
``lesions.nii.gz``   label map on the CT grid (ROIs as drawn, points as filled spheres), names in
                     its JSON sidecar
``lesion_points.txt`` every lesion as ``L,P,S,r`` in LPS mm (ROI: centroid and the radius of the
                     sphere of equal volume), the form ``synthct validate --lesion-points`` reads
``manifest.csv``     a one-case manifest for ``synthct validate`` with the label map
===================  ===========================================================================

:func:`validate_annotation` runs ``synthct validate`` on that manifest (in this process, no
cluster) into ``annotations/<case_id>/validation/`` and returns the new lesion rows.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from synthct.errors import SynthctError
from synthct.view.catalogue import ViewCase

__all__ = ["AnnotationPoint", "SavedAnnotation", "save_annotation", "validate_annotation"]

ANNOTATION_DIR = "annotations"


@dataclass(frozen=True)
class AnnotationPoint:
    """A lesion placed as a centre (LPS mm) with a radius (mm)."""

    center_lps_mm: tuple[float, float, float]
    radius_mm: float
    name: str


@dataclass(frozen=True)
class SavedAnnotation:
    """What :func:`save_annotation` wrote."""

    folder: Path
    label_map: Path
    points_file: Path
    manifest: Path
    points: tuple[AnnotationPoint, ...]

    def to_json(self, root: Path) -> dict[str, Any]:
        """JSON for the page (paths relative to the start folder)."""
        return {
            "label_map": self.label_map.relative_to(root).as_posix(),
            "lesion_points_file": self.points_file.relative_to(root).as_posix(),
            "manifest": self.manifest.relative_to(root).as_posix(),
            "lesion_points": "; ".join(_point_text(p) for p in self.points),
            "points": [
                {"center_lps_mm": list(p.center_lps_mm), "radius_mm": p.radius_mm, "name": p.name}
                for p in self.points
            ],
        }


def _point_text(point: AnnotationPoint) -> str:
    return ",".join(f"{v:.2f}" for v in (*point.center_lps_mm, point.radius_mm))


def annotation_folder(root: Path, case_id: str) -> Path:
    """Where a case's annotation goes."""
    return root / ANNOTATION_DIR / case_id


def save_annotation(
    root: Path,
    case: ViewCase,
    *,
    drawing: bytes | None,
    names: Mapping[int, str],
    points: Sequence[AnnotationPoint],
) -> SavedAnnotation:
    """Write the label map, the lesion points and a one-case manifest (see the module doc).

    Raises
    ------
    SynthctError
        When the case has no CT, or the annotation holds no lesion.
    """
    from synthct.io import read_volume, write_volume
    from synthct.resample import resample_to
    from synthct.view.volumes import read_nifti_bytes
    from synthct.volume import LabelMap

    if "ct" not in case.layers or case.layers["ct"].path is None:
        raise SynthctError(
            "annotations are saved on the CT grid, and this case has no CT layer",
            path=case.case_id,
            fix="start `synthct view` on a folder whose case has a CT (e.g. a validation run)",
        )
    ct = read_volume(case.layers["ct"].path, kind="ct", check_hu=False)
    labels = np.zeros(ct.geometry.shape, dtype=np.int16)
    label_names: dict[int, str] = {}
    if drawing is not None:
        array, affine = read_nifti_bytes(drawing)
        drawn = LabelMap(np.rint(np.asarray(array, np.float64)).astype(np.int16), affine)
        if not drawn.geometry.is_close(ct.geometry):
            drawn = resample_to(drawn, ct.geometry)
        labels = np.asarray(drawn.array, dtype=np.int16).reshape(ct.geometry.shape)
        for value in np.unique(labels[labels > 0]):
            label_names[int(value)] = names.get(int(value)) or f"roi-{int(value)}"
    next_label = int(labels.max()) + 1
    for point in points:
        _burn_sphere(labels, ct.geometry, point, next_label)
        label_names[next_label] = point.name or f"point-{next_label}"
        next_label += 1
    if not label_names:
        raise SynthctError(
            "the annotation holds no lesion",
            path=case.case_id,
            fix="draw a lesion ROI or place a point before saving",
        )
    labels, label_names = _renumber(labels, label_names)
    folder = annotation_folder(root, case.case_id)
    folder.mkdir(parents=True, exist_ok=True)
    label_map = LabelMap(labels, ct.affine, label_names=label_names)
    label_path = write_volume(label_map, folder / "lesions.nii.gz")
    all_points = tuple(_label_point(labels, ct.geometry, v, n) for v, n in label_names.items())
    points_file = folder / "lesion_points.txt"
    points_file.write_text("; ".join(_point_text(p) for p in all_points) + "\n", encoding="utf-8")
    manifest = _write_manifest(folder, case, label_path)
    return SavedAnnotation(folder, label_path, points_file, manifest, all_points)


def _burn_sphere(labels: np.ndarray, geometry: Any, point: AnnotationPoint, value: int) -> None:
    """Set ``value`` in the voxels whose centre is within the point's radius (in its box only)."""
    centre = geometry.lps_to_index(np.asarray([point.center_lps_mm]))[0]
    reach = point.radius_mm / np.asarray(geometry.spacing_mm) + 1
    lo = np.clip(np.floor(centre - reach), 0, labels.shape).astype(int)
    hi = np.clip(np.ceil(centre + reach) + 1, 0, labels.shape).astype(int)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    idx = np.indices(labels[box].shape).reshape(3, -1).T + lo
    distance = np.linalg.norm(geometry.index_to_lps(idx) - np.asarray(point.center_lps_mm), axis=1)
    view = labels[box]  # a view: assigning into it writes the label map
    view[(distance <= point.radius_mm).reshape(view.shape)] = value


def _renumber(labels: np.ndarray, names: dict[int, str]) -> tuple[np.ndarray, dict[int, str]]:
    """Labels 1..n in order, dropping names whose label has no voxel left."""
    out = np.zeros_like(labels)
    new_names: dict[int, str] = {}
    n = 0
    for value in sorted(names):
        mask = labels == value
        if mask.any():
            n += 1
            out[mask] = n
            new_names[n] = names[value]
    return out, new_names


def _label_point(labels: np.ndarray, geometry: Any, value: int, name: str) -> AnnotationPoint:
    idx = np.argwhere(labels == value)
    centre = geometry.index_to_lps(idx.mean(axis=0))
    volume_mm3 = len(idx) * geometry.voxel_volume_mm3
    radius = float((3.0 * volume_mm3 / (4.0 * np.pi)) ** (1.0 / 3.0))
    return AnnotationPoint(tuple(float(v) for v in centre), radius, name)  # type: ignore[arg-type]


def _write_manifest(folder: Path, case: ViewCase, label_path: Path) -> Path:
    row = {
        "case_id": case.case_id,
        "ct": str(case.layers["ct"].path),
        "sct": str(case.layers["sct"].path) if "sct" in case.layers else "",
        "mri": ";".join(
            sorted(
                {str(layer.path) for name, layer in case.layers.items() if name.startswith("mr")}
            )
        ),
        "lesions": label_path.name,
    }
    path = folder / "manifest.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        writer.writeheader()
        writer.writerow(row)
    return path


def validate_annotation(root: Path, case: ViewCase) -> list[dict[str, Any]]:
    """Run ``synthct validate`` on the case's saved annotation; its lesion rows.

    Raises
    ------
    SynthctError
        When nothing is saved yet, the case has no sCT, or the case fails to validate.
    """
    from synthct.validation.case import ValidationSettings
    from synthct.validation.manifest import read_manifest
    from synthct.validation.runner import run_validation

    folder = annotation_folder(root, case.case_id)
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        raise SynthctError(
            "nothing saved to validate", path=manifest, fix="save the annotation first"
        )
    if "sct" not in case.layers:
        raise SynthctError(
            "validation needs an sCT, and this case has none",
            path=case.case_id,
            fix="start `synthct view` on a validation run or a folder holding CT and sCT",
        )
    summary = run_validation(
        read_manifest(manifest),
        folder / "validation",
        ValidationSettings(),
        n_workers=0,
        figures=False,
        report_writer=None,
    )
    result = summary.results[0]
    if result.status != "ok":
        raise SynthctError(
            f"validation of the annotation failed: {result.error}",
            path=manifest,
            fix="check the case's files, then save and validate again",
        )
    return list(result.lesion_rows)
