"""`synthct dataset check|split|export`: paired MR/CT datasets (SynthRAD, DICOM, manifests)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from synthct.cli import app, console, reports_errors
from synthct.commands.config_file import build_settings, config_option, given_options

if TYPE_CHECKING:
    from synthct.dataset.readers import SeriesChoice

dataset_app = typer.Typer(
    help="Paired MR/CT datasets: QA (check), patient-level splits (split), SynthRAD export.",
    no_args_is_help=True,
)
app.add_typer(dataset_app, name="dataset")

_SOURCE_HELP = (
    "Dataset: a SynthRAD2023/2025 folder (<region>/<case>/{mr,ct,mask}.nii.gz or .mha, region "
    "level optional), a folder of DICOM studies (one MR and one CT series per patient), or a "
    "synthct manifest (file, or a folder with manifest.csv)."
)

_MR_SERIES = typer.Option(
    "--mr-series",
    help="DICOM studies with several MR volume series (T1w, T2w, ...): read the one whose "
    "SeriesDescription contains this text (case-insensitive), or matches it as a pattern with "
    "* ? [ (e.g. 't2_tse*').",
)
_CT_SERIES = typer.Option(
    "--ct-series", help="The same for several CT volume series (e.g. 'venous')."
)


def _series(mr_series: str | None, ct_series: str | None) -> SeriesChoice:
    from synthct.dataset.readers import SeriesChoice

    return SeriesChoice(mr=mr_series, ct=ct_series)


@dataset_app.command("check")
@reports_errors
def check(
    ctx: typer.Context,
    source: Annotated[Path, typer.Argument(help=_SOURCE_HELP)],
    out: Annotated[Path, typer.Option("--out", "-o", help="QA folder to create.")],
    register: Annotated[
        bool,
        typer.Option(
            "--register/--no-register", help="Rigid MR-to-CT registration (mutual information)."
        ),
    ] = True,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing QA folder.")] = False,
    mr_series: Annotated[str | None, _MR_SERIES] = None,
    ct_series: Annotated[str | None, _CT_SERIES] = None,
    config: Annotated[
        Path | None,
        config_option(
            "synthct.dataset.qa:QASettings",
            what=", and the QA thresholds (synthct.dataset.qa.QASettings)",
        ),
    ] = None,
) -> None:
    """QA of every case: grids, MR/CT overlap, registration MI before/after, HU, mask, channels.

    Writes qa.csv, qa.html, manifest.csv (the cases as read), fingerprint.json (spacings and
    intensity statistics inside the body, for training) and summary.json into OUT.
    Exit code 0 also when cases are flagged (see the status and issues columns); 2 on bad
    input.
    """
    from rich.progress import Progress

    from synthct.dataset.check import check_dataset
    from synthct.dataset.qa import NOTES, QASettings

    settings = build_settings(ctx, QASettings, given_options(ctx, register=register))
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("checking cases", total=None)

        def progress(case_id: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=f"checked {case_id}")

        result = check_dataset(
            source, out, settings=settings, overwrite=overwrite,
            progress=progress, series=_series(mr_series, ct_series),
        )  # fmt: skip
    counts = {k: sum(r["status"] == k for r in result.rows) for k in ("ok", "flag", "error")}
    console.print(
        f"{len(result.rows)} case(s) ({result.layout} layout): {counts['ok']} ok, "
        f"{counts['flag']} flagged, {counts['error']} unreadable -> {out}/qa.html",
        highlight=False,
    )
    for row in result.rows:
        serious = [i for i in row["issues"] if not i.startswith(NOTES)]
        if row.get("error") or serious:
            text = row.get("error") or "; ".join(serious)
            console.print(f"  {row['case_id']}: {text}", highlight=False, soft_wrap=True)
        # a note worth seeing before training: the pair was found far from where its headers
        # put it (another frame), not merely nudged into place
        for issue in row["issues"]:
            if issue.startswith("header_offset") and not serious:
                console.print(f"  {row['case_id']}: {issue}", highlight=False, soft_wrap=True)


@dataset_app.command("split")
@reports_errors
def split(
    source: Annotated[Path, typer.Argument(help=_SOURCE_HELP)],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Folder for split.json and fold-k.csv.")
    ] = None,
    folds: Annotated[
        int, typer.Option(help="Cross-validation folds (1: one train/val split).")
    ] = 5,
    test_fraction: Annotated[
        float, typer.Option(help="Share of patients in the fixed test set.")
    ] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed: same patients and seed, same split.")] = 0,
    check_split: Annotated[
        Path | None,
        typer.Option("--check", help="Check this split file against the dataset instead."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing folder.")] = False,
    unit: Annotated[
        str,
        typer.Option(
            help="patient: whole patients per part; slab: each scan cut into train / "
            "validation / test slabs along its cranio-caudal axis (one pair, or a few); auto: "
            "slab when there are too few patients for --folds and --test-fraction."
        ),
    ] = "auto",
    slab_gap_mm: Annotated[
        float, typer.Option(help="Gap between neighbouring slabs, mm.", min=0.0)
    ] = 6.0,
    mr_series: Annotated[str | None, _MR_SERIES] = None,
    ct_series: Annotated[str | None, _CT_SERIES] = None,
    config: Annotated[Path | None, config_option()] = None,
) -> None:
    """Deterministic patient-level split (a fixed test set and k folds), or slabs of few scans.

    Writes OUT/manifest.csv (the dataset's cases), OUT/split.json ({"test": [...], "folds":
    [{"train": [...], "val": [...]}], "seed": ...}) and OUT/fold-K.csv (the manifest with a
    split column, for `synthct train`). Cases of one patient, and cases with identical CT
    voxels, always land in the same part.

    Given the manifest.csv of `synthct dataset check`, cases QA ruled out (no overlap, an MR
    of another patient, another channel count) are left out, and cases whose registration
    is applied are written as registered pairs (MR on the CT grid) into OUT/pairs/, which the
    manifests name: training and evaluation read those. With slabs, every slab is such a pair.
    """
    from synthct.dataset.readers import read_dataset
    from synthct.dataset.split import identical_ct_groups, read_split, write_split_folder
    from synthct.errors import SynthctError

    if out is None and check_split is None:
        raise SynthctError(
            "nowhere to write the split",
            path="--out",
            fix="pass --out FOLDER (or --check SPLIT.json to check an existing split)",
        )
    manifest, layout = read_dataset(source, series=_series(mr_series, ct_series))
    if check_split is not None:
        checked = read_split(check_split, manifest)
        console.print(
            f"{check_split}: {len(checked.test)} test case(s), {len(checked.folds)} fold(s); "
            + (
                "no slab in two parts, none touching"
                if checked.unit == "slab"
                else "no patient in two parts"
            ),
            highlight=False,
        )
        return
    assert out is not None
    result = write_split_folder(
        manifest, out, n_folds=folds, test_fraction=test_fraction, seed=seed,
        same_content=identical_ct_groups(manifest), overwrite=overwrite, unit=unit,
        slab_gap_mm=slab_gap_mm,
    )  # fmt: skip
    n_patients = len(set(result.patients.values()))
    by = "slabs" if result.unit == "slab" else "patients"
    console.print(
        f"{len(manifest)} case(s) of {n_patients} patient(s) ({layout} layout), split by {by}: "
        f"{len(result.test)} test case(s), {len(result.folds)} fold(s) -> {out}/split.json",
        highlight=False,
    )
    for case_id, reason in result.excluded.items():
        console.print(f"  left out {case_id}: {reason}", highlight=False)


@dataset_app.command("export")
@reports_errors
def export(
    source: Annotated[Path, typer.Argument(help=_SOURCE_HELP)],
    out: Annotated[Path, typer.Option("--out", "-o", help="SynthRAD-layout folder to create.")],
    region: Annotated[
        str | None, typer.Option(help="Region folder for cases without a region (e.g. SP).")
    ] = None,
    image_format: Annotated[
        str, typer.Option("--format", help="nii.gz (SynthRAD2023) or mha (SynthRAD2025).")
    ] = "nii.gz",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing folder.")] = False,
    mr_series: Annotated[str | None, _MR_SERIES] = None,
    ct_series: Annotated[str | None, _CT_SERIES] = None,
) -> None:
    """Write cases (e.g. a `synthct phantom` cohort) as <region>/<case>/{mr,ct,mask} files."""
    from synthct.dataset.export import export_synthrad
    from synthct.dataset.readers import read_dataset

    manifest, _ = read_dataset(source, series=_series(mr_series, ct_series))
    folder = export_synthrad(
        manifest, out, region=region, extension=image_format, overwrite=overwrite
    )
    console.print(f"{len(manifest)} case(s) -> {folder}", highlight=False)
