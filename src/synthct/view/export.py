"""A self-contained review page per case: one HTML file that opens from ``file://``.

Pages opened from ``file://`` cannot fetch files, so everything is inlined: the page's script
and style, NiiVue's bundle, the case's lesion and flag tables, and every layer cropped to a box
around the lesions and flags (``margin_mm`` on each side; the whole grid when there are none),
resampled onto the CT's grid (the first layer's when there is no CT) and stored as gzipped
NIfTI in base64. :func:`export_catalogue` writes ``<out>/<case_id>.html`` for every case.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from synthct.io.atomic import write_text_atomic
from synthct.view.catalogue import Catalogue, ViewCase
from synthct.view.server import assets_dir, niivue_bundle, page_settings
from synthct.view.volumes import crop_geometry, display_array, layer_volume, nifti_bytes

__all__ = ["export_case", "export_catalogue", "export_file_name", "relink_reports"]


def export_file_name(case_id: str) -> str:
    """The export's file name for a case (reports link to ``view/<this>``)."""
    return f"{case_id}.html"


def _inline_script(text: str) -> str:
    # "</script" inside a script would end it; "<\/script" means the same to JavaScript.
    return text.replace("</script", "<\\/script").replace("<!--", "<\\!--")


def _case_volumes(case: ViewCase, margin_mm: float) -> dict[str, bytes]:
    from synthct.geometry import Geometry
    from synthct.resample import resample_to

    layers = case.ordered_layers()
    reference = layer_volume(case, case.layers.get("ct", layers[0]))
    centres = [
        r["centre_lps_mm"] for r in case.lesions + case.flags if None not in r["centre_lps_mm"]
    ] or _label_centres(case)
    inside = [c for c in centres if bool(reference.geometry.contains_lps(np.asarray([c]))[0])]
    box = crop_geometry(reference.geometry, inside, margin_mm)
    start = np.eye(4)
    start[:3, 3] = [s.start for s in box]
    cropped = Geometry(tuple(s.stop - s.start for s in box), reference.affine @ start)
    out: dict[str, bytes] = {}
    for layer in layers:
        volume = layer_volume(case, layer)
        if volume.geometry.is_close(reference.geometry):
            array = np.asarray(volume.array)[box]
        else:
            array = np.asarray(resample_to(volume, cropped).array)
        out[layer.name] = nifti_bytes(
            display_array(layer.name, array), cropped.affine, compress=True
        )
    return out


def _label_centres(case: ViewCase) -> list[list[float]]:
    """Centres (LPS mm) of each label of the lesion and flag maps, when no table lists them."""
    from scipy import ndimage

    centres: list[list[float]] = []
    for name in ("lesions", "flags"):
        if name in case.layers:
            labels = layer_volume(case, case.layers[name])
            array = np.asarray(labels.array)
            values = [int(v) for v in np.unique(array) if v > 0]
            for index in ndimage.center_of_mass(array > 0, array, values) if values else []:
                centres.append([float(v) for v in labels.geometry.index_to_lps(index)])
    return centres


def export_case(
    catalogue: Catalogue, index: int, path: str | os.PathLike[str], *, margin_mm: float = 40.0
) -> Path:
    """Write the self-contained page of case ``index`` to ``path`` (atomically)."""
    case = catalogue.case(index)
    volumes = _case_volumes(case, margin_mm)
    case_json = case.to_json(catalogue.root, 0)
    case_json["layers"] = [layer for layer in case_json["layers"] if layer["name"] in volumes]
    embed: dict[str, Any] = {
        "catalogue": {"root": case_json["case_id"], "cases": [case_json], **page_settings()},
        "volumes": {name: base64.b64encode(data).decode("ascii") for name, data in volumes.items()},
    }
    web = assets_dir()
    page = (web / "index.html").read_text(encoding="utf-8")
    css = (web / "viewer.css").read_text(encoding="utf-8")
    page = page.replace(
        '<link rel="stylesheet" href="static/viewer.css?token=__TOKEN__" id="viewer-css">',
        f"<style>\n{css}</style>",
    )
    page = page.replace(
        "<!--SYNTHCT_EMBED-->",
        "<script>window.SYNTHCT_EMBED = "
        + _inline_script(json.dumps(embed, separators=(",", ":")))
        + ";</script>",
    )
    for name in ("niivue.umd.js", "viewer.js"):
        source = niivue_bundle() if name == "niivue.umd.js" else web / name
        tag = f'<script src="static/{name}?token=__TOKEN__" id="{name.split(".")[0]}-js"></script>'
        script = _inline_script(source.read_text(encoding="utf-8"))
        page = page.replace(tag, f"<script>{script}</script>")
    page = page.replace(
        "<title>synthct view</title>", f"<title>{case.case_id} · synthct view</title>"
    )
    return write_text_atomic(Path(path), page)


def export_catalogue(
    catalogue: Catalogue, out_dir: str | os.PathLike[str], *, margin_mm: float = 40.0
) -> Iterable[Path]:
    """Export every case into ``out_dir`` (created); yields each file as it is written."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for index, case in enumerate(catalogue.cases):
        yield export_case(
            catalogue, index, folder / export_file_name(case.case_id), margin_mm=margin_mm
        )


def relink_reports(folder: str | os.PathLike[str]) -> list[Path]:
    """Re-render the reports of ``folder`` so they link to the pages in ``folder/view/``.

    A validation run (``report.html`` beside ``lesions.csv``) and a demo folder
    (``demo_summary.json``) are re-rendered; anything else is left alone. Returns the reports
    written.
    """
    root = Path(folder)
    written = []
    if (root / "report.html").is_file() and (root / "lesions.csv").is_file():
        from synthct.report.validation_report import write_validation_report

        written.append(write_validation_report(root))
    summary_file = root / "demo_summary.json"
    if summary_file.is_file():
        from synthct.demo.report import write_demo_report

        summary = json.loads(summary_file.read_text(encoding="utf-8"))
        written.append(write_demo_report(root, summary, summary.get("timings_s") or {}))
    return written
