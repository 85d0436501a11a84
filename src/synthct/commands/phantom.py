"""`synthct phantom` and `synthct montage`: generate phantom cohorts and look at them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from synthct.cli import app, console, parse_floats, progress_bar, reports_errors
from synthct.commands.config_file import config_option, file_settings, given_options

_Paper = Annotated[
    bool, typer.Option("--paper", help="The paper's 5 meningioma patients (ignores --cases).")
]
_Config = Annotated[
    Path | None,
    config_option(
        "synthct.phantom.cohort:CohortSpec",
        what=", and the keys of a cohort specification (synthct.phantom.cohort.CohortSpec)",
    ),
]
_Protocol = Annotated[
    str | None, typer.Option(help="MRI protocol preset: paper_3t, paper_1p5t, fast_3t.")
]
_LesionTypes = Annotated[
    str | None,
    typer.Option(
        help="Comma-separated lesion types (meningioma, schwannoma, "
        "disc_herniation, opll, olf, synovial_cyst, capnon)."
    ),
]
_LesionFraction = Annotated[
    float | None, typer.Option(help="Fraction of cases with a lesion (0..1).")
]
_LesionHu = Annotated[str | None, typer.Option(help="Range of lesion mean HU, e.g. 40,1000.")]
_CtVoxelSize = Annotated[str | None, typer.Option(help="CT voxel size in mm (CT on its own grid).")]
_CtRotation = Annotated[
    str | None, typer.Option(help="Known rigid offset of the CT grid: degrees about x,y,z.")
]
_CtTranslation = Annotated[
    str | None, typer.Option(help="Known rigid offset of the CT grid: mm along x,y,z.")
]
_Supersample = Annotated[
    int | None, typer.Option(help="Sub-voxels per edge for partial volume (1-4).")
]
_MrRealism = Annotated[
    str | None, typer.Option(help="MRI realism: classic or realistic (fields, k-space, flow).")
]
_Montage = Annotated[bool, typer.Option("--montage", help="Write montage.png for every case.")]
_FailureSct = Annotated[
    bool,
    typer.Option("--failure-sct", help="Also write the paper's failure: lesions as CSF."),
]
_Resume = Annotated[bool, typer.Option(help="Finish a cohort folder made with the same options.")]
_Out = Annotated[Path | None, typer.Option(help="PNG to write (default CASE/montage.png).")]
_ZoomMm = Annotated[
    float | None, typer.Option(help="Half-width of the view around the lesion, mm.")
]
_Labels = Annotated[Path | None, typer.Option(help="TotalSegmentator label map of the same CT.")]
_Lesion = Annotated[
    str | None, typer.Option(help="Insert a library lesion of this type, e.g. meningioma.")
]
_LesionSize = Annotated[
    str, typer.Option(help="Lesion diameters in mm along L,P,S (axial, thickness, sagittal).")
]
_LesionCentre = Annotated[
    str | None,
    typer.Option(help="Lesion centre x,y,z in LPS mm (default: by the labelled spinal cord)."),
]
_LesionLevel = Annotated[
    str | None,
    typer.Option(help="Place the lesion in the canal at this labelled vertebra, e.g. L1."),
]
_NewSubject = Annotated[
    bool,
    typer.Option(
        "--new-subject",
        help="Draw a new subject from the CT (elastic deformation, scaling, marrow by age; "
        "seeded by --seed).",
    ),
]
_MrGrid = Annotated[
    str, typer.Option(help="'ct' (MRI on the CT grid) or 'protocol' (the preset's grid).")
]
_PhantomFromCtMrRealism = Annotated[
    str, typer.Option(help="MRI realism: classic or realistic (fields, k-space, flow).")
]


@app.command()
@reports_errors
def phantom(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", "-o", help="Cohort folder to create.")],
    cases: Annotated[int, typer.Option(help="Number of random cases.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed: same seed and version, same voxels.")] = 0,
    paper: _Paper = False,
    config: _Config = None,
    protocol: _Protocol = None,
    levels: Annotated[str | None, typer.Option(help="Range of centre levels, e.g. C4:L2.")] = None,
    lesion_types: _LesionTypes = None,
    lesion_fraction: _LesionFraction = None,
    no_lesions: Annotated[bool, typer.Option("--no-lesions", help="Lesion-free cohort.")] = False,
    lesion_hu: _LesionHu = None,
    voxel_size: Annotated[str | None, typer.Option(help="MR voxel size in mm, e.g. 1,1,1.")] = None,
    ct_voxel_size: _CtVoxelSize = None,
    ct_rotation: _CtRotation = None,
    ct_translation: _CtTranslation = None,
    supersample: _Supersample = None,
    mr_realism: _MrRealism = None,
    montage: _Montage = False,
    failure_sct: _FailureSct = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing cohort folder.")] = False,
    resume: _Resume = False,
) -> None:
    """Generate a phantom cohort: CT, multi-echo MRI and ground truth per case, plus manifest."""
    from synthct.phantom.cohort import load_cohort_spec, paper_cohort

    values = file_settings(ctx)
    for key, value in given_options(ctx, cases=cases, seed=seed).items():
        values["n_cases" if key == "cases" else key] = value  # the command line wins
    values.setdefault("n_cases", cases)
    values.setdefault("seed", seed)
    overrides: dict[str, Any] = {
        "protocol": protocol,
        "supersample": supersample,
        "mr_realism": mr_realism,
        "voxel_size_mm": parse_floats(voxel_size, "--voxel-size", count=3),
        "ct_voxel_size_mm": parse_floats(ct_voxel_size, "--ct-voxel-size", count=3),
        "ct_rotation_deg": parse_floats(ct_rotation, "--ct-rotation", count=3),
        "ct_translation_mm": parse_floats(ct_translation, "--ct-translation", count=3),
    }
    if levels is not None:
        overrides["levels"] = tuple(levels.split(":", 1)) if ":" in levels else (levels, levels)
    lesions = dict(values.get("lesions") or {})
    if lesion_types is not None:
        lesions["types"] = tuple(t.strip() for t in lesion_types.split(",") if t.strip())
    if lesion_fraction is not None:
        lesions["probability"] = lesion_fraction
    if lesion_hu is not None:
        lesions["mean_hu"] = parse_floats(lesion_hu, "--lesion-hu", count=2)
    if lesions:
        overrides["lesions"] = lesions
    if no_lesions:
        overrides["lesions"] = None
    if montage:
        overrides["montage"] = True
    if failure_sct:
        overrides["failure_sct"] = True
    values.update({k: v for k, v in overrides.items() if v is not None or k == "lesions"})
    if paper:
        values.pop("n_cases", None)
        values.setdefault("seed", 2025)
        spec = paper_cohort(**values)
    else:
        spec = load_cohort_spec(**values)
    _generate(spec, out, overwrite=overwrite, resume=resume)


def _generate(spec: Any, out: Path, *, overwrite: bool, resume: bool) -> None:
    """Generate the cohort of ``spec`` into ``out`` with a progress bar."""
    from synthct.phantom.cohort import generate_cohort

    with progress_bar() as bar:
        task = bar.add_task("phantom cases", total=spec.case_count)

        def advance(case_id: str, done: int, total: int) -> None:
            bar.update(task, completed=done, description=f"phantom cases ({case_id})")

        repaired: list[str] = []

        def repair(case_id: str, problems: list[str]) -> None:
            repaired.append(case_id)
            bar.console.print(
                f"[yellow]{case_id} was damaged[/] ({'; '.join(problems)}): regenerating it",
                highlight=False,
            )

        folder = generate_cohort(
            spec, out, overwrite=overwrite, resume=resume, progress=advance, on_repair=repair
        )
    again = f"; {len(repaired)} damaged case(s) regenerated" if repaired else ""
    console.print(f"wrote {spec.case_count} cases to [bold]{folder}[/] (manifest.csv){again}")


@app.command()
@reports_errors
def montage(
    case: Annotated[Path, typer.Argument(help="A phantom case folder (case-NNN).")],
    out: _Out = None,
    zoom_mm: _ZoomMm = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing PNG.")] = False,
) -> None:
    """Draw axial and sagittal CT and MR echoes of a phantom case with lesions outlined."""
    import numpy as np

    from synthct.figures.montage import save_montage
    from synthct.io.output_safety import check_output_path
    from synthct.phantom.cohort_files import MONTAGE_FILE, PhantomCase

    check_output_path(
        out or case / MONTAGE_FILE, option="--out", overwrite=overwrite, suffixes=(".png",)
    )
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


def _lesion_centre(
    ct_volume: Any,
    label_volume: Any,
    lesion_centre: str | None,
    lesion_level: str | None,
    size: tuple[float, ...],
) -> tuple[float, ...]:
    """The lesion centre: ``--lesion-centre``, the labelled ``--lesion-level``, or by the cord."""
    from synthct.errors import SynthctError
    from synthct.phantom.ct_derived import CTDerivedModel
    from synthct.phantom.ct_insertion import default_lesion_centre
    from synthct.phantom.ct_levels import check_lesion_fits, level_centre_lps_mm
    from synthct.phantom.label_grid import labels_on_ct_grid

    centre = parse_floats(lesion_centre, "--lesion-centre", count=3)
    if centre is None and lesion_level is not None:
        if label_volume is None:
            raise SynthctError(
                "--lesion-level needs the CT's labels",
                path="--lesion-level",
                fix="give --labels (TotalSegmentator) or an explicit --lesion-centre",
            )
        import numpy as np

        at = level_centre_lps_mm(labels_on_ct_grid(label_volume, ct_volume)[0], lesion_level)
        check_lesion_fits(
            ct_volume.geometry, at, np.asarray(size) / 2.0, where=lesion_level.upper()
        )
        centre = (float(at[0]), float(at[1]), float(at[2]))
    if centre is None:
        tissue = CTDerivedModel.from_ct(ct_volume, label_volume).tissue_map
        centre = tuple(default_lesion_centre(tissue.array, ct_volume.geometry))
    return centre


@app.command("phantom-from-ct")
@reports_errors
def phantom_from_ct(
    ct: Annotated[Path, typer.Argument(help="Real CT in HU (file or DICOM folder).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Cohort folder to create.")],
    config: Annotated[Path | None, config_option()] = None,
    labels: _Labels = None,
    lesion: _Lesion = None,
    lesion_hu: Annotated[float | None, typer.Option(help="Lesion mean HU.")] = None,
    lesion_size: _LesionSize = "12,8,18",
    lesion_centre: _LesionCentre = None,
    lesion_level: _LesionLevel = None,
    new_subject: _NewSubject = False,
    protocol: Annotated[str, typer.Option(help="MRI protocol preset.")] = "paper_3t",
    mr_grid: _MrGrid = "ct",
    seed: Annotated[int, typer.Option(help="Seed for noise and calcification pattern.")] = 0,
    mr_realism: _PhantomFromCtMrRealism = "classic",
    montage: Annotated[bool, typer.Option("--montage", help="Write montage.png.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing folder.")] = False,
) -> None:
    """CT-derived phantom: simulate the multi-echo MRI of a real CT, optionally with a lesion."""
    from synthct.errors import SynthctError
    from synthct.io import read_volume
    from synthct.phantom.ct_insertion import EllipsoidLesion, write_ct_derived_case
    from synthct.phantom.subject_variation import SubjectVariation
    from synthct.volume import CTVolume, LabelMap

    if mr_grid not in ("ct", "protocol"):
        raise SynthctError(
            f"unknown --mr-grid {mr_grid!r}", path="--mr-grid", fix="use 'ct' or 'protocol'"
        )
    ct_volume = read_volume(ct, kind="ct")
    assert isinstance(ct_volume, CTVolume)
    label_volume: LabelMap | None = None
    if labels is not None:
        read = read_volume(labels, kind="label")
        assert isinstance(read, LabelMap)
        label_volume = read
    lesions = []
    if lesion is not None:
        size = parse_floats(lesion_size, "--lesion-size", count=3)
        assert size is not None
        centre = _lesion_centre(ct_volume, label_volume, lesion_centre, lesion_level, size)
        lesions.append(
            EllipsoidLesion(
                lesion,
                (centre[0], centre[1], centre[2]),
                axial_diameter_mm=size[0],
                thickness_mm=size[1],
                sagittal_diameter_mm=size[2],
                mean_hu=lesion_hu,
                seed=seed,
            )
        )
    folder = write_ct_derived_case(
        ct_volume,
        out,
        labels=label_volume,
        lesions=lesions,
        protocol=protocol,
        mr_grid=mr_grid,  # type: ignore[arg-type]
        seed=seed,
        overwrite=overwrite,
        montage=montage,
        variation=SubjectVariation() if new_subject else None,
        mr_realism=mr_realism,
    )
    console.print(f"wrote a CT-derived case to [bold]{folder}[/] (manifest.csv)")
    from synthct.phantom.cohort_files import PhantomCase, case_id

    hu_only = PhantomCase(folder / case_id(0)).meta.get("derived_from_hu_alone") or []
    if hu_only:
        console.print(f"from HU alone (no labels for them): {', '.join(hu_only)}")
