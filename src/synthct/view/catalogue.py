"""What `synthct view` can show: the cases of a folder, their layers, lesions and audit flags.

:func:`discover` reads a validation, audit, synthesis, demo or dataset output folder (or a list
of image files) into a :class:`Catalogue`. Sources, all optional and merged by case id:

* validation runs: ``cases/<case_id>/result.json`` (the CT, sCT, MRI and lesion label map the
  run read, and its lesion rows and audit flags);
* audit outputs: ``audit.json`` with ``flag_regions.nii.gz`` (the flag map) and its regions;
* any other image file, grouped by folder into a case; its role (CT, sCT, MR echoes, lesion
  labels, aleatoric/epistemic/total SD, flags) comes from its name.

The server only ever serves a layer by case and name from this catalogue, never a path taken
from a request.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthct.errors import SynthctError
from synthct.io.image_files import image_suffix

__all__ = ["Catalogue", "Layer", "ViewCase", "discover", "layer_role"]

#: Folders never searched (virtual environments, caches, node packages).
_SKIP_DIRS = {".git", ".venv", "node_modules", "__pycache__", ".mypy_cache", "signals", "view"}
#: At most this many image files are looked at (a guard against starting on a disk root).
MAX_FILES = 5000
#: Layer names in display order; echoes (``mr_echo1``...) come after ``sct``.
#: Label layers come right after the CT: NiiVue refreshes its second layer even when hidden.
LAYER_ORDER = (
    "ct",
    "lesions",
    "flags",
    "sct",
    "mr",
    "difference",
    "aleatoric_sd",
    "epistemic_sd",
    "total_sd",
)


@dataclass(frozen=True)
class Layer:
    """One image of a case: a file (or DICOM folder) read with ``read_kind``.

    ``echo`` picks one echo of a multi-echo file; ``derived="difference"`` is sCT - CT, with the
    sCT layer named by ``of``.
    """

    name: str
    path: Path | None
    read_kind: str | None = None
    echo: int | None = None
    derived: str | None = None
    of: str | None = None

    def to_json(self, root: Path) -> dict[str, Any]:
        """The page's view of the layer (its path relative to the start folder, if under it)."""
        return {"name": self.name, "kind": layer_kind(self.name), "path": _shown(self.path, root)}


@dataclass
class ViewCase:
    """A case: named layers, lesion rows (from `synthct validate`) and audit flags."""

    case_id: str
    layers: dict[str, Layer] = field(default_factory=dict)
    lesions: list[dict[str, Any]] = field(default_factory=list)
    flags: list[dict[str, Any]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def add_layer(self, layer: Layer) -> None:
        """Add a layer; a second one of the same name and another path gets a suffix."""
        name = layer.name
        existing = self.layers.get(name)
        if existing is not None and existing.path == layer.path and existing.echo == layer.echo:
            return
        n = 2
        while name in self.layers:
            name = f"{layer.name}_{n}"
            n += 1
        self.layers[name] = Layer(
            name, layer.path, layer.read_kind, layer.echo, layer.derived, layer.of
        )

    def ordered_layers(self) -> list[Layer]:
        """Layers in display order (CT first: it is the grid drawings are saved on)."""

        def rank(layer: Layer) -> tuple[int, str]:
            name = layer.name
            for order, base in enumerate(LAYER_ORDER):
                if name == base or name.startswith(f"{base}_") or name.startswith(f"{base}_echo"):
                    return order, name
            return len(LAYER_ORDER), name

        return sorted(self.layers.values(), key=rank)

    def to_json(self, root: Path, index: int) -> dict[str, Any]:
        """JSON for the page."""
        return {
            "index": index,
            "case_id": self.case_id,
            "layers": [layer.to_json(root) for layer in self.ordered_layers()],
            "lesions": self.lesions,
            "flags": self.flags,
            "sources": self.sources,
        }


@dataclass
class Catalogue:
    """Every case found under ``root``, in a stable order."""

    root: Path
    cases: list[ViewCase]

    def case(self, index: int) -> ViewCase:
        """The case at ``index`` (raises ``IndexError``)."""
        if index < 0:
            raise IndexError(index)
        return self.cases[index]

    def to_json(self) -> dict[str, Any]:
        """JSON for the page."""
        return {
            "root": str(self.root),
            "cases": [case.to_json(self.root, n) for n, case in enumerate(self.cases)],
        }


def layer_kind(name: str) -> str:
    """How the page shows a layer: ``hu``, ``mr``, ``difference``, ``sd``, ``label``, ``other``."""
    if name.startswith(("ct", "sct")):
        return "hu"
    if name.startswith("mr"):
        return "mr"
    if name.startswith("difference"):
        return "difference"
    if name.endswith("_sd") or "_sd_" in name:
        return "sd"
    if name.startswith(("flags", "lesions", "annotation")):
        return "label"
    return "other"


def layer_role(path: Path) -> tuple[str, str | None]:
    """``(layer name, read kind)`` of an image file from its name."""
    stem = path.name[: -len(image_suffix(path) or "")].lower() if image_suffix(path) else path.name
    stem = stem.lower()
    for sd in ("aleatoric_sd", "epistemic_sd", "total_sd"):
        if stem.endswith(sd):
            return sd, "scalar"
    if "flag_regions" in stem:
        return "flags", "label"
    if "lesion" in stem and ("label" in stem or "mask" in stem or "roi" in stem):
        return "lesions", "label"
    if "label" in stem or "mask" in stem or "seg" in stem:
        return stem, "label"
    if stem.startswith(("mr", "mri", "echo", "t1", "gre")):
        return "mr", "mr"
    if "sct" in stem or "synthetic" in stem:
        return "sct", "sct"
    if stem == "ct" or stem.startswith(("ct_", "ct-", "ct.")):
        return "ct", "ct"
    return stem, None


def discover(paths: Sequence[str | os.PathLike[str]]) -> Catalogue:
    """The catalogue of one folder, or of image files (their common folder is the root).

    Raises
    ------
    SynthctError
        When a path does not exist, or nothing viewable is found.
    """
    given = [Path(p).resolve() for p in paths]
    if not given:
        raise SynthctError("nothing to view", fix="synthct view FOLDER (or image files)")
    for p in given:
        if not p.exists():
            raise SynthctError("no such file or folder", path=p, fix="check the path")
    if len(given) == 1 and given[0].is_dir():
        root = given[0]
        cases = _discover_folder(root)
    else:
        root = Path(os.path.commonpath([p if p.is_dir() else p.parent for p in given]))
        case = ViewCase(case_id=given[0].parent.name or "files", sources=["files"])
        for p in given:
            _add_image(case, p)
        _add_difference(case)
        cases = [case]
    cases = [c for c in cases if c.layers]
    if not cases:
        raise SynthctError(
            "found no image, validation run or audit output to view",
            path=root,
            fix="start `synthct view` on an output folder of synthct (validate, audit, "
            "synthesize, demo, phantom) or on image files (.nii, .nii.gz, .nrrd, .mha)",
        )
    return Catalogue(root=root, cases=cases)


def _discover_folder(root: Path) -> list[ViewCase]:
    cases: dict[str, ViewCase] = {}
    images: list[Path] = []
    results: list[Path] = []
    audits: list[Path] = []
    for path in _walk(root):
        if path.name == "result.json" and path.parent.parent.name == "cases":
            results.append(path)
        elif path.name == "audit.json":
            audits.append(path)
        elif image_suffix(path) is not None:
            images.append(path)
    claimed: set[Path] = set()
    runs = Counter(path.parent.name for path in results)
    for path in sorted(results):
        _read_result(path, root, cases, claimed, several_runs=runs[path.parent.name] > 1)
    for path in sorted(audits):
        _read_audit(path, root, cases, claimed)
    unclaimed = [p for p in images if p not in claimed and not _is_derived_output(p)]
    _attach_sd_maps(unclaimed, cases, claimed)
    groups: dict[tuple[Path, str], list[Path]] = {}
    for path in unclaimed:
        if path not in claimed:
            base = _synthesis_stem(path, images)
            case_id = base if base is not None else _case_id_of(path.parent, root)
            groups.setdefault((path.parent, case_id), []).append(path)
    for folder, case_id in sorted(groups):
        case = cases.setdefault(case_id, ViewCase(case_id=case_id))
        case.sources.append(_shown(folder, root) or ".")
        for path in sorted(groups[folder, case_id]):
            if layer_role(path)[1] is None and _synthesis_stem(path, images) is not None:
                case.add_layer(Layer("sct", path, "sct"))
            else:
                _add_image(case, path)
    for case in cases.values():
        _add_difference(case)
    return [cases[k] for k in sorted(cases)]


def _walk(root: Path) -> Iterable[Path]:
    count = 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(files):
            count += 1
            if count > MAX_FILES:
                return
            yield Path(folder) / name


def _is_derived_output(path: Path) -> bool:
    """Images an output folder holds beside its main ones (the audit's signal maps)."""
    return path.name.startswith(("flag_score", "sct_on_mri_grid", "reference_sct"))


def _case_id_of(folder: Path, root: Path) -> str:
    """A folder's case id: its name (``case-000``); the root's own name for the root."""
    return folder.name if folder != root else (root.name or "case")


def _add_image(case: ViewCase, path: Path) -> None:
    name, kind = layer_role(path)
    if kind == "mr":
        echoes = _n_echoes(path)
        stem_echo = _echo_number(path)
        if echoes > 1:
            for e in range(echoes):
                case.add_layer(Layer(f"mr_echo{e + 1}", path, "mr", echo=e))
            return
        name = f"mr_echo{stem_echo}" if stem_echo else "mr_echo1"
        case.add_layer(Layer(name, path, "mr", echo=0))
        return
    case.add_layer(Layer(name, path, kind))


def _echo_number(path: Path) -> int | None:
    digits = "".join(ch for ch in path.name.split(".")[0] if ch.isdigit())
    return int(digits) if digits else None


def _n_echoes(path: Path) -> int:
    """Echoes in an MR image file (4D NIfTI: its 4th axis), 1 otherwise; headers only."""
    if path.is_dir():
        return 1
    try:
        import nibabel as nib

        shape = tuple(nib.load(str(path)).header.get_data_shape())  # type: ignore[attr-defined]
    except Exception:
        return 1
    return int(shape[3]) if len(shape) > 3 else 1


_SD_NAMES = ("aleatoric_sd", "epistemic_sd", "total_sd")


def _sd_base(path: Path) -> tuple[Path, str] | None:
    """``(the sCT file beside it, SD name)`` of an SD map named ``<sCT stem>_<sd><suffix>``."""
    suffix = image_suffix(path)
    if suffix is None:
        return None
    stem = path.name[: -len(suffix)]
    for sd in _SD_NAMES:
        if stem.endswith(f"_{sd}"):
            return path.with_name(stem[: -len(sd) - 1] + suffix), sd
    return None


def _synthesis_stem(path: Path, images: Sequence[Path]) -> str | None:
    """The case id of a `synthct synthesize` output (sCT or SD map): the sCT's file stem."""
    based = _sd_base(path)
    sct = based[0] if based is not None else path
    suffix = image_suffix(sct) or ""
    stem = sct.name[: -len(suffix)] if suffix else sct.name
    if based is not None or any(_sd_base(p) == (path, sd) for p in images for sd in _SD_NAMES):
        return stem
    return None


def _attach_sd_maps(paths: Sequence[Path], cases: dict[str, ViewCase], claimed: set[Path]) -> None:
    """SD maps beside an sCT that a case already shows join that case (``total_sd_<run>``...)."""
    owners = {
        layer.path: (case, layer.name)
        for case in cases.values()
        for layer in case.layers.values()
        if layer.path is not None and layer.name.startswith("sct")
    }
    for path in paths:
        based = _sd_base(path)
        if based is not None and based[0] in owners:
            case, sct_name = owners[based[0]]
            case.add_layer(Layer(based[1] + sct_name[len("sct") :], path, "scalar"))
            claimed.add(path)


def _add_difference(case: ViewCase) -> None:
    if "ct" not in case.layers:
        return
    for name in [n for n in case.layers if n == "sct" or n.startswith("sct_")]:
        difference = "difference" + name[len("sct") :]
        if difference not in case.layers:
            case.layers[difference] = Layer(
                difference, None, "scalar", derived="difference", of=name
            )


def _read_result(
    path: Path,
    root: Path,
    cases: dict[str, ViewCase],
    claimed: set[Path],
    *,
    several_runs: bool,
) -> None:
    """A validation run's case; with ``several_runs``, its sCT is ``sct_<run folder name>``."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        spec = payload["fingerprint"]["case"]
        result = payload["result"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    case_id = str(spec.get("case_id") or path.parent.name)
    run = _shown(path.parent.parent.parent, root) or "."
    case = cases.setdefault(case_id, ViewCase(case_id=case_id))
    case.sources.append(f"validation {run}")
    sct_name = f"sct_{path.parent.parent.parent.name}" if several_runs else "sct"
    for key, name, kind in (
        ("ct", "ct", "ct"),
        ("sct", sct_name, "sct"),
        ("lesions", "lesions", "label"),
    ):
        value = spec.get(key)
        if value:
            p = _recorded_path(value, path.parents[2])
            case.add_layer(Layer(name, p, kind))
            claimed.add(p)
    mri = [_recorded_path(p, path.parents[2]) for p in spec.get("mri") or []]
    for n, p in enumerate(mri):
        claimed.add(p)
        if len(mri) > 1:
            case.add_layer(Layer(f"mr_echo{n + 1}", p, "mr", echo=0))
        else:
            _add_image(case, p)
    for row in result.get("lesion_rows") or []:
        case.lesions.append(lesion_row(row, run))
    for flag in result.get("audit_flags") or []:
        case.flags.append(_flag_row(flag, run))


def _recorded_path(value: str, run_dir: Path) -> Path:
    """An input path as ``result.json`` records it: relative to the run's output folder."""
    p = Path(value)
    return p if p.is_absolute() else Path(os.path.normpath(run_dir / p))


def _read_audit(path: Path, root: Path, cases: dict[str, ViewCase], claimed: set[Path]) -> None:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    folder = path.parent
    case_id = _case_id_of(folder, root)
    case = cases.setdefault(case_id, ViewCase(case_id=case_id))
    case.sources.append(f"audit {_shown(folder, root) or '.'}")
    flag_map = folder / "flag_regions.nii.gz"
    if flag_map.is_file():
        case.add_layer(Layer("flags", flag_map, "label"))
        claimed.add(flag_map)
    for region in payload.get("regions") or []:
        centre = region.get("centre_lps_mm") or [math.nan] * 3
        case.flags.append(
            {
                "source": _shown(folder, root) or ".",
                "flag_id": region.get("id"),
                "centre_lps_mm": [_num(v) for v in centre],
                "volume_mm3": _num(region.get("volume_mm3")),
                "peak_score": _num(region.get("peak_score")),
                "signals": ", ".join(region.get("signals_fired") or []),
                "true_discrepancy": None,
            }
        )


#: Lesion table columns the page shows (from `synthct validate`'s lesion rows).
LESION_FIELDS = (
    "lesion_id",
    "lesion_name",
    "ct_mean_hu",
    "sct_mean_hu",
    "ct_diameter_axial_mm",
    "sct_diameter_axial_mm",
    "ct_diameter_sagittal_mm",
    "sct_diameter_sagittal_mm",
    "ct_visible",
    "sct_visible",
    "calcification_grade",
    "audit_flagged",
)


def lesion_row(row: dict[str, Any], run: str) -> dict[str, Any]:
    out: dict[str, Any] = {"source": run}
    for key in LESION_FIELDS:
        value = row.get(key)
        out[key] = _num(value) if isinstance(value, float) else value
    out["centre_lps_mm"] = [_num(row.get(f"roi_center_{axis}_mm")) for axis in ("l", "p", "s")]
    return out


def _flag_row(flag: dict[str, Any], run: str) -> dict[str, Any]:
    return {
        "source": run,
        "flag_id": flag.get("flag_id"),
        "centre_lps_mm": [_num(flag.get(f"centre_{a}_mm")) for a in ("l", "p", "s")],
        "volume_mm3": _num(flag.get("volume_mm3")),
        "peak_score": _num(flag.get("peak_score")),
        "signals": flag.get("signals"),
        "true_discrepancy": flag.get("true_discrepancy"),
    }


def _num(value: Any) -> float | None:
    """A finite float, or None (JSON has no NaN)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _shown(path: Path | None, root: Path) -> str | None:
    """A path as the page shows it: relative to the root when under it, else absolute."""
    if path is None:
        return None
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return str(path)
