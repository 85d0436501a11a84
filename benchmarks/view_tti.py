"""`synthct view`: time to interactive of a 338 x 338 x 100 case with six layers, in chromium.

Target (issue 16): the page is interactive within 3 s for a 338 x 338 x 100 case with six
layers on this machine. Measured, not asserted.

The case is a phantom at the paper's voxel size (0.74 x 0.74 x 0.9 mm, 250 x 250 x 90 mm field of
view: 338 x 338 x 100 voxels) with a calcified meningioma and the paper's failure sCT. Its
folder holds CT, sCT, two MR echoes and the lesion labels; the viewer adds sCT - CT: six layers.
Printed for a cold server (every layer read and converted on first request) and a warm one (the
server's cache filled), as the time from navigation start to the page's ``ready`` state (all
layers loaded, views drawn, tables built), and the wall time of ``page.goto`` to ``ready``.
The export of the same case (crop and inlining) is timed too.

Run: ``.venv/bin/python benchmarks/view_tti.py [--work DIR] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

from typer.testing import CliRunner

from synthct.cli import app
from synthct.view import discover, export_case, start_server
from synthct.view.headless import CHROMIUM_ARGS, chromium_path


def make_case(work: Path) -> Path:
    """The six-layer case folder (generated once into ``work``)."""
    folder = work / "case"
    if (folder / "ct.nii.gz").is_file():
        return folder
    cohort = work / "cohort"
    if cohort.exists():
        shutil.rmtree(cohort)
    result = CliRunner().invoke(
        app,
        [
            "phantom", "--out", str(cohort), "--cases", "1", "--seed", "5", "--failure-sct",
            "--lesion-fraction", "1", "--lesion-types", "meningioma", "--lesion-hu", "400,700",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    source = cohort / "case-000"
    folder.mkdir(parents=True, exist_ok=True)
    for name, target in (
        ("ct", "ct"),
        ("sct_lesions_as_csf", "sct"),
        ("mr_echo-1", "mr_echo-1"),
        ("mr_echo-2", "mr_echo-2"),
        ("lesion_labels", "lesion_labels"),
    ):
        for suffix in (".nii.gz", ".json"):
            shutil.copy(source / f"{name}{suffix}", folder / f"{target}{suffix}")
    return folder


def measure(folder: Path, repeats: int) -> None:
    from playwright.sync_api import sync_playwright

    catalogue = discover([folder])
    case = catalogue.cases[0]
    shape = None
    print(f"case: {folder} layers: {', '.join(layer.name for layer in case.ordered_layers())}")
    server = start_server(catalogue, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    rows = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium_path()), args=list(CHROMIUM_ARGS)
        )
        for run in range(repeats + 1):
            context = browser.new_context(viewport={"width": 1280, "height": 960})
            page = context.new_page()
            start = time.perf_counter()
            page.goto(server.url)
            page.wait_for_function(
                "window.synthctView && window.synthctView.state.ready", timeout=120_000
            )
            wall_ms = (time.perf_counter() - start) * 1000
            tti_ms = page.evaluate("window.synthctView.state.ttiMs")
            page.wait_for_function("window.synthctView.state.allLoaded", timeout=120_000)
            all_ms = page.evaluate("window.synthctView.state.allLoadedAt")
            shape = page.evaluate("Array.from(window.synthctView.nv.volumes[0].dims.slice(1, 4))")
            n_layers = page.evaluate("window.synthctView.nv.volumes.length")
            rows.append(("cold" if run == 0 else "warm", tti_ms, wall_ms, all_ms, n_layers))
            context.close()
        browser.close()
    server.shutdown()
    server.server_close()
    print(f"grid: {' x '.join(str(n) for n in shape or [])} voxels")
    print(
        "| server | interactive (navigation start -> ready) | goto -> ready | all layers loaded |"
    )
    print("| --- | --- | --- | --- |")
    for label, tti, wall, all_ms, n in rows[:1]:
        print(
            f"| {label} | {tti / 1000:.2f} s | {wall / 1000:.2f} s | {all_ms / 1000:.2f} s ({n}) |"
        )
    warm = rows[1:]
    if warm:
        tti, wall, all_ms = (statistics.median(r[k] for r in warm) for k in (1, 2, 3))
        print(
            f"| warm (median of {len(warm)}) | {tti / 1000:.2f} s | {wall / 1000:.2f} s "
            f"| {all_ms / 1000:.2f} s ({warm[0][4]}) |"
        )
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        page_file = export_case(catalogue, 0, Path(tmp) / "case.html")
        seconds = time.perf_counter() - start
        print(
            f"export: {seconds:.1f} s, {page_file.stat().st_size / 1e6:.1f} MB "
            "(cropped 40 mm around the lesion)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("out/bench_view"))
    parser.add_argument("--repeats", type=int, default=3, help="warm loads after the cold one")
    args = parser.parse_args()
    measure(make_case(args.work), args.repeats)


if __name__ == "__main__":
    main()
