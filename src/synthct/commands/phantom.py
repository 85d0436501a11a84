"""`synthct phantom` and `synthct montage`: generate phantom cohorts and look at them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from synthct.cli import app, console, reports_errors


def _floats(text: str | None, name: str, n: int = 3) -> tuple[float, ...] | None:
    from synthct.errors import SynthctError

    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != n:
        raise SynthctError(
            f"{name} needs {n} comma-separated numbers, got {text!r}",
            path=f"--{name}",
            fix=f"e.g. --{name} " + ",".join(["1"] * n),
        )
    return values


@app.command()
@reports_errors
def phantom(
    out: Annotated[Path, typer.Option("--out", "-o", help="Cohort folder to create.")],
    cases: Annotated[int, typer.Option(help="Number of random cases.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed: same seed and version, same voxels.")] = 0,
    paper: Annotated[
        bool, typer.Option("--paper", help="The paper's 5 meningioma patients (ignores --cases).")
    ] = False,
    config: Annotated[
        Path | None, typer.Option(help="YAML cohort specification (options below override).")
    ] = None,
    protocol: Annotated[
        str | None, typer.Option(help="MRI protocol preset: paper_3t, paper_1p5t, fast_3t.")
    ] = None,
    levels: Annotated[str | None, typer.Option(help="Range of centre levels, e.g. C4:L2.")] = None,
    lesion_types: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated lesion types (meningioma, schwannoma, "
            "disc_herniation, opll, olf, synovial_cyst, capnon)."
        ),
    ] = None,
    lesion_fraction: Annotated[
        float | None, typer.Option(help="Fraction of cases with a lesion (0..1).")
    ] = None,
    no_lesions: Annotated[bool, typer.Option("--no-lesions", help="Lesion-free cohort.")] = False,
    lesion_hu: Annotated[
        str | None, typer.Option(help="Range of lesion mean HU, e.g. 40,1000.")
    ] = None,
    voxel_size: Annotated[str | None, typer.Option(help="MR voxel size in mm, e.g. 1,1,1.")] = None,
    ct_voxel_size: Annotated[
        str | None, typer.Option(help="CT voxel size in mm (CT on its own grid).")
    ] = None,
    ct_rotation: Annotated[
        str | None, typer.Option(help="Known rigid offset of the CT grid: degrees about x,y,z.")
    ] = None,
    ct_translation: Annotated[
        str | None, typer.Option(help="Known rigid offset of the CT grid: mm along x,y,z.")
    ] = None,
    supersample: Annotated[
        int | None, typer.Option(help="Sub-voxels per edge for partial volume (1-4).")
    ] = None,
    montage: Annotated[
        bool, typer.Option("--montage", help="Write montage.png for every case.")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing cohort folder.")] = False,
    resume: Annotated[
        bool, typer.Option(help="Finish a cohort folder made with the same options.")
    ] = False,
) -> None:
    """Generate a phantom cohort: CT, multi-echo MRI and ground truth per case, plus manifest."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from synthct.phantom.cohort import generate_cohort, load_cohort_spec, paper_cohort

    values: dict[str, Any] = {}
    if config is not None:
        values.update(_read_yaml(config))
    values.setdefault("n_cases", cases)
    values.setdefault("seed", seed)
    overrides: dict[str, Any] = {
        "protocol": protocol,
        "supersample": supersample,
        "voxel_size_mm": _floats(voxel_size, "voxel-size"),
        "ct_voxel_size_mm": _floats(ct_voxel_size, "ct-voxel-size"),
        "ct_rotation_deg": _floats(ct_rotation, "ct-rotation"),
        "ct_translation_mm": _floats(ct_translation, "ct-translation"),
    }
    if levels is not None:
        overrides["levels"] = tuple(levels.split(":", 1)) if ":" in levels else (levels, levels)
    lesions = dict(values.get("lesions") or {})
    if lesion_types is not None:
        lesions["types"] = tuple(t.strip() for t in lesion_types.split(",") if t.strip())
    if lesion_fraction is not None:
        lesions["probability"] = lesion_fraction
    if lesion_hu is not None:
        lesions["mean_hu"] = _floats(lesion_hu, "lesion-hu", 2)
    if lesions:
        overrides["lesions"] = lesions
    if no_lesions:
        overrides["lesions"] = None
    if montage:
        overrides["montage"] = True
    values.update({k: v for k, v in overrides.items() if v is not None or k == "lesions"})
    if paper:
        values.pop("n_cases", None)
        values.setdefault("seed", 2025)
        spec = paper_cohort(**values)
    else:
        spec = load_cohort_spec(**values)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task("phantom cases", total=spec.case_count)

        def advance(case_id: str, done: int, total: int) -> None:
            bar.update(task, completed=done, description=f"phantom cases ({case_id})")

        folder = generate_cohort(spec, out, overwrite=overwrite, resume=resume, progress=advance)
    console.print(f"wrote {spec.case_count} cases to [bold]{folder}[/] (manifest.csv)")


@app.command()
@reports_errors
def montage(
    case: Annotated[Path, typer.Argument(help="A phantom case folder (case-NNN).")],
    out: Annotated[
        Path | None, typer.Option(help="PNG to write (default CASE/montage.png).")
    ] = None,
    zoom_mm: Annotated[
        float | None, typer.Option(help="Half-width of the view around the lesion, mm.")
    ] = None,
) -> None:
    """Draw axial and sagittal CT and MR echoes of a phantom case with lesions outlined."""
    import numpy as np

    from synthct.phantom.cohort_files import MONTAGE_FILE, PhantomCase
    from synthct.report.montage import save_montage

    phantom_case = PhantomCase(case)
    lesions = phantom_case.lesions()
    point = (
        lesions[0]["centre_lps_mm"]
        if lesions
        else np.asarray(phantom_case.meta["ct_to_mr"]["about_lps_mm"])
    )
    path = save_montage(
        out or case / MONTAGE_FILE,
        ct=phantom_case.ct(),
        mr=phantom_case.mr(),
        point_lps_mm=point,
        lesions=phantom_case.lesion_labels(grid="ct") if lesions else None,
        title=phantom_case.case_id,
        half_width_mm=zoom_mm,
    )
    console.print(f"wrote {path}")


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    from synthct.errors import ReadError

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ReadError(f"cannot read the cohort YAML ({exc})", path=path) from exc
    if not isinstance(data, dict):
        raise ReadError("the cohort YAML must be a mapping of options", path=path)
    return data
