"""`synthct view`: look at CT, sCT, MRI, uncertainty and audit flags in the browser; annotate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synthct.cli import app, console, err_console, reports_errors

_PATHS_HELP = (
    "A validation, audit, synthesis, demo, phantom or dataset output folder, or image files. "
    "Only files under it (their common folder) are served."
)


_Host = Annotated[str, typer.Option(help="Address to listen on (loopback unless --allow-remote).")]
_AllowRemote = Annotated[
    bool,
    typer.Option(
        "--allow-remote",
        help="Allow a --host other than loopback: anyone who can reach it and has the "
        "address (with its token) sees the images.",
    ),
]
_Edit = Annotated[
    bool,
    typer.Option(
        "--edit",
        help="Allow annotation: save drawn lesions (label map on the CT grid + lesion "
        "points) under ANNOTATIONS/ of the folder and re-run the case's validation.",
    ),
]
_Browser = Annotated[
    bool, typer.Option("--browser/--no-browser", help="Open the page in the browser.")
]
_Export = Annotated[
    Path | None,
    typer.Option(
        help="Instead of serving: write one self-contained HTML file per case into this "
        "folder (volumes cropped around the lesions and inlined; opens from file://). "
        "RUN/view links them from RUN's validation or demo report.",
        show_default=False,
    ),
]
_MarginMm = Annotated[
    float, typer.Option(help="With --export: margin kept around the lesions (mm).", min=1)
]


@app.command()
@reports_errors
def view(
    paths: Annotated[list[Path], typer.Argument(help=_PATHS_HELP, show_default=False)],
    *,
    port: Annotated[int, typer.Option(help="Port (0: any free port).", min=0, max=65535)] = 8765,
    host: _Host = "127.0.0.1",
    allow_remote: _AllowRemote = False,
    edit: _Edit = False,
    browser: _Browser = True,
    export: _Export = None,
    margin_mm: _MarginMm = 40.0,
) -> None:
    """Review station in the browser: CT, sCT, each MR echo, sCT - CT, uncertainty and audit
    flags in axial, sagittal and coronal views with one crosshair; the lesion table of
    `synthct validate` and the audit flags (click a row to centre every view on it).

    The server listens on loopback, needs the random token in the printed address, serves only
    files under the folder it was started on and is read-only unless --edit. Ctrl-C stops it.
    """
    from synthct.errors import SynthctError
    from synthct.view.catalogue import discover
    from synthct.view.server import is_loopback, start_server

    catalogue = discover(paths)
    if export is not None:
        from synthct.view.export import export_catalogue, relink_reports

        for written in export_catalogue(catalogue, export, margin_mm=margin_mm):
            console.print(f"wrote {written}", highlight=False)
        if export.resolve().name == "view":
            for report in relink_reports(export.resolve().parent):
                console.print(f"linked from {report}", highlight=False)
        return
    if not is_loopback(host):
        if not allow_remote:
            raise SynthctError(
                f"--host {host} would expose the images beyond this computer",
                path="--host",
                fix="leave --host out (loopback), or add --allow-remote if you mean it",
            )
        err_console.print(
            f"[bold yellow]warning:[/] listening on {host}: anyone who can reach it and has the "
            "address with its token sees these images; use on a trusted network only",
            highlight=False,
        )
    server = start_server(catalogue, host=host, port=port, edit=edit)
    server.prefetch(0)
    n = len(catalogue.cases)
    console.print(
        f"synthct view: {n} case(s) from {catalogue.root} "
        f"({'edit' if edit else 'read-only'})\n  open {server.url}\n  Ctrl-C stops the server",
        highlight=False,
        soft_wrap=True,
    )
    if browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.print("stopped", highlight=False)
    finally:
        server.server_close()
