"""Outputs never destroy inputs: output paths checked before any work, folders marked and locked.

- :func:`check_output_path` runs before a command computes anything: the suffix must be one
  the command writes, the parent folder must exist, an existing output is replaced only with
  ``overwrite``, and a CT (its sidecar says ``"kind": "ct"``, or a DICOM folder of
  non-synthetic CT slices) is never replaced, not even with ``overwrite``.
- :func:`claim_output_folder` lets a command write only into a folder it created: a new or
  empty folder gets a marker file (:data:`MARKER_FILE`, naming the command); a non-empty folder
  without the marker (a user's own folder) is refused, as is a folder another command made.
- :class:`OutputLock` holds an exclusive ``fcntl`` lock on :data:`LOCK_FILE` in the output
  folder while a run writes there: a second run on the same folder stops with a clear error
  instead of mixing its files with the first's. The operating system releases the lock when
  its process dies (even by SIGKILL); the next run takes the leftover file over and removes it
  when it finishes.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from synthct.errors import WriteError

__all__ = [
    "LOCK_FILE",
    "MARKER_FILE",
    "OutputLock",
    "check_output_path",
    "claim_output_folder",
    "is_ct_on_disk",
]

MARKER_FILE = ".synthct-output.json"
LOCK_FILE = ".synthct.lock"


def _sidecar_kind(path: Path) -> str | None:
    from synthct.io.image_files import image_suffix, sidecar_path

    if image_suffix(path) is None:
        return None
    side = sidecar_path(path)
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return str(meta.get("kind")) if isinstance(meta, dict) and "kind" in meta else None


def _dicom_folder_is_ct(folder: Path) -> bool:
    import pydicom
    from pydicom.errors import InvalidDicomError

    from synthct.io.dicom_read import SYNTHETIC_IMAGE_TYPE

    for path in sorted(folder.iterdir())[:20]:
        if not path.is_file():
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError):
            continue
        image_type = [str(v) for v in ds.get("ImageType", [])]
        return str(ds.get("Modality", "")) == "CT" and SYNTHETIC_IMAGE_TYPE not in image_type
    return False


def is_ct_on_disk(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` holds a (non-synthetic) CT: by its sidecar, or its DICOM slices."""
    p = Path(path)
    if p.is_dir():
        return _dicom_folder_is_ct(p)
    return p.is_file() and _sidecar_kind(p) == "ct"


def check_output_path(
    path: str | os.PathLike[str],
    *,
    option: str,
    overwrite: bool,
    suffixes: Sequence[str],
    folder_allowed: bool = False,
) -> Path:
    """Check an output path before any work; return it.

    Parameters
    ----------
    path : path
        Where the command will write.
    option : str
        The option that named it (for messages), e.g. ``"--output"``.
    overwrite : bool
        Whether an existing output may be replaced (never a CT).
    suffixes : sequence of str
        The file suffixes the command writes (e.g. ``(".nii.gz", ".nrrd", ".mha")``).
    folder_allowed : bool
        A path without a suffix is a folder (a DICOM series).

    Raises
    ------
    WriteError
        Unsupported suffix, missing parent folder, an existing output without ``overwrite``,
        or an existing CT.
    """
    p = Path(path)
    name = p.name.lower()
    has_suffix = any(name.endswith(s) for s in suffixes)
    if not has_suffix and not (folder_allowed and "." not in name.lstrip(".")):
        allowed = ", ".join(suffixes) + (
            ", or a folder name without a suffix (DICOM)" if folder_allowed else ""
        )
        raise WriteError(
            f"{option} {p.name!r} has a suffix this command does not write",
            path=p,
            fix=f"use one of {allowed}",
        )
    if not p.parent.is_dir():
        raise WriteError(
            f"the folder of {option} does not exist",
            path=p.parent,
            fix="create it first or choose another output path",
        )
    if p.exists() or p.is_symlink():
        if is_ct_on_disk(p):
            raise WriteError(
                f"{option} points at a CT; synthct never replaces a CT, even with --overwrite",
                path=p,
                fix="choose another output path",
            )
        if not overwrite:
            raise WriteError(
                f"{option} already exists and would be overwritten",
                path=p,
                fix="choose another path, delete it, or pass --overwrite",
            )
    return p


def _read_marker(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_marker(folder: Path, command: str) -> None:
    from synthct.io.atomic import write_json_atomic
    from synthct.version import __version__

    write_json_atomic(
        folder / MARKER_FILE,
        {
            "made_by": "synthct",
            "command": command,
            "synthct_version": __version__,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
    )


def claim_output_folder(
    folder: str | os.PathLike[str], *, command: str, legacy: Sequence[str] = ()
) -> Path:
    """Create ``folder`` (or take an empty one) for ``command``; refuse a folder it did not make.

    Parameters
    ----------
    folder : path
        The output folder.
    command : str
        The command writing there (``"validate"``); recorded in the marker and checked.
    legacy : sequence of str
        Names that together identify a folder this command wrote before markers existed (e.g.
        ``("settings.json", "cases")``); such a folder is marked and accepted.

    Raises
    ------
    WriteError
        The path is a file, a non-empty folder synthct did not make, a folder another command
        made, or cannot be created.
    """
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise WriteError(
            "the output folder is a file", path=out, fix="choose a folder path for --out"
        )
    if out.is_dir():
        marker = _read_marker(out)
        if marker is not None:
            if marker.get("command") != command:
                raise WriteError(
                    f"this folder holds the output of `synthct {marker.get('command')}`, not of "
                    f"`synthct {command}`",
                    path=out,
                    fix="choose another output folder",
                )
            return out
        entries = [e for e in out.iterdir() if e.name != LOCK_FILE]
        if entries and not (legacy and all((out / n).exists() for n in legacy)):
            shown = ", ".join(sorted(e.name for e in entries)[:5])
            raise WriteError(
                f"the output folder is not empty ({shown}{', ...' if len(entries) > 5 else ''}) "
                "and was not made by synthct; its files could be overwritten",
                path=out,
                fix="choose a new or empty output folder (synthct creates it)",
            )
    else:
        try:
            out.mkdir(parents=True)
        except OSError as exc:
            raise WriteError(
                f"cannot create the output folder ({exc})",
                path=out,
                fix="check the path and your permissions",
            ) from exc
    _write_marker(out, command)
    return out


class OutputLock:
    """An exclusive lock on an output folder for the duration of a ``with`` block.

    Parameters
    ----------
    folder : path
        The (existing) output folder.

    Raises
    ------
    WriteError
        On entry, when another process holds the lock.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = Path(folder) / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode("utf-8", "replace").strip()
                os.close(fd)
                raise WriteError(
                    "another synthct run is writing into this output folder"
                    + (f" ({holder})" if holder else ""),
                    path=self.path.parent,
                    fix="wait for it to finish, or choose another output folder",
                ) from None
            # the holder before us may have removed the file as we opened it: retry on the new one
            try:
                same = os.fstat(fd).st_ino == self.path.stat().st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None
