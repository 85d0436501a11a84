"""Atomic writes: output appears under its final name only once it is complete.

Data goes to a hidden ``.partial-<random>-<name>`` next to the destination and is renamed into
place (``os.replace``, atomic on POSIX within one file system) when the writer finished. An
interrupted write leaves only a ``.partial-`` entry, never a file that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from synthct.errors import WriteError

PARTIAL_PREFIX = ".partial-"


def _partial_name(final: Path) -> Path:
    # The final name stays at the end so format detection by extension (.nii.gz) still works.
    return final.parent / f"{PARTIAL_PREFIX}{uuid.uuid4().hex[:8]}-{final.name}"


def _check_destination(final: Path, overwrite: bool) -> None:
    if not final.parent.is_dir():
        raise WriteError(
            "the folder to write into does not exist",
            path=final.parent,
            fix="create it first or choose another output path",
        )
    if final.exists() and not overwrite:
        raise WriteError(
            "already exists and would be overwritten",
            path=final,
            fix="choose another path, delete it, or pass overwrite=True / --overwrite",
        )


@contextmanager
def atomic_file(path: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to; move it into place on success.

    On an exception the temporary file is deleted and ``path`` is left as it was.
    """
    final = Path(path)
    _check_destination(final, overwrite)
    tmp = _partial_name(final)
    try:
        yield tmp
        if not tmp.exists():
            raise WriteError("the writer produced no file", path=final)
        tmp.replace(final)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_directory(path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder to fill; it replaces ``path`` only when the block succeeds."""
    final = Path(path)
    _check_destination(final, overwrite)
    tmp = _partial_name(final)
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():
            old = _partial_name(final)
            final.replace(old)
            tmp.replace(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.replace(final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    final = Path(path)
    with atomic_file(final) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return final


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically and return the path."""
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")
