"""The ``synthct`` command line: thin typer commands over the library.

Heavy modules (numpy, SimpleITK, torch) are imported inside the commands so that
``synthct --help`` answers at once. Library errors (:class:`synthct.errors.SynthctError`) are
turned into a red message and exit code 2 here, and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

app = typer.Typer(
    name="synthct",
    help=(
        "MRI to synthetic CT, and proof lesion by lesion of where that sCT can be trusted.\n\n"
        "Run `synthct COMMAND --help` for the options of a command."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

EXIT_USER_ERROR = 2


def _print_version(value: bool) -> None:
    """Eager ``--version``: print and exit while parsing, before a command is required."""
    if value:
        from synthct.version import __version__

        console.print(f"synthct {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            is_eager=True,
            callback=_print_version,
        ),
    ] = False,
) -> None:
    del version  # handled while parsing, by _print_version


def reports_errors(func: F) -> F:
    """Turn library errors into a readable message and exit code 2."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from synthct.errors import SynthctError

        try:
            return func(*args, **kwargs)
        except SynthctError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_USER_ERROR) from None

    return wrapper  # type: ignore[return-value]


def progress_bar(*, transient: bool = False) -> Any:
    """The commands' rich progress bar: description, bar, done/total, elapsed time."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=transient,
    )


def parse_floats(
    text: str | None, option: str, *, count: int | None = None
) -> tuple[float, ...] | None:
    """Comma-separated numbers of a CLI option (``None`` when not given).

    Raises :class:`synthct.errors.SynthctError` naming ``option`` when a value is not a number
    or, with ``count``, when there are not exactly ``count`` values.
    """
    from synthct.errors import SynthctError

    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or (count is not None and len(values) != count):
        needed = f"{count} comma-separated numbers" if count else "comma-separated numbers"
        example = ",".join(["1"] * count) if count else "1.15,2.3"
        raise SynthctError(
            f"{option} needs {needed}, got {text!r}", path=option, fix=f"e.g. {option} {example}"
        )
    return values


def _register_commands() -> None:
    """Import every module of :mod:`synthct.commands`; each adds its commands to :data:`app`.

    Command modules import only typer and rich at the top; numpy, SimpleITK and torch load
    inside the command functions, so ``synthct --help`` stays fast. The package is found by
    name: the commands sit in the layer above this app (``.importlinter``) and import it.
    """
    import importlib
    import pkgutil

    commands = importlib.import_module("synthct.commands")
    for module in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"synthct.commands.{module.name}")


def main() -> None:
    """Entry point of the ``synthct`` console script."""
    app()


_register_commands()


if __name__ == "__main__":
    # `python -m synthct.cli` (e.g. under torchrun): the commands registered themselves on the
    # app of the imported module `synthct.cli`, not on this `__main__` copy.
    from synthct.cli import main as registered_main

    registered_main()
