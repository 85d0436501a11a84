"""SHA-256 checksums of files and of folders of files (model folders, phantom cases).

:func:`write_checksums` records the SHA-256 of every file of a folder in :data:`CHECKSUM_FILE`;
:func:`verify_checksums` recomputes them and raises a :class:`~synthct.errors.ReadError` naming
each file that is missing or changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from synthct.errors import ReadError

__all__ = ["CHECKSUM_FILE", "sha256_of", "verify_checksums", "write_checksums"]

CHECKSUM_FILE = "checksums.json"


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(folder: str | os.PathLike[str]) -> dict[str, str]:
    """Write :data:`CHECKSUM_FILE` with the SHA-256 of every other file in ``folder``."""
    from synthct.io.atomic import write_json_atomic

    root = Path(folder)
    sums = {
        p.relative_to(root).as_posix(): sha256_of(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != CHECKSUM_FILE and not p.name.startswith(".")
    }
    write_json_atomic(root / CHECKSUM_FILE, {"algorithm": "sha256", "files": sums})
    return sums


def verify_checksums(folder: str | os.PathLike[str], *, what: str = "model folder") -> bool:
    """Check ``folder`` against its :data:`CHECKSUM_FILE`; ``False`` when it has none.

    Raises
    ------
    ReadError
        The checksum file is unreadable, or a listed file is missing or changed.
    """
    root = Path(folder)
    path = root / CHECKSUM_FILE
    if not path.is_file():
        return False
    try:
        sums = json.loads(path.read_text(encoding="utf-8"))["files"]
        items = [(str(k), str(v)) for k, v in dict(sums).items()]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ReadError(
            f"the {what}'s {CHECKSUM_FILE} is unreadable ({exc})",
            path=path,
            fix=f"restore the {what} from its source (or retrain it)",
        ) from exc
    bad = [
        name
        for name, digest in items
        if not (root / name).is_file() or sha256_of(root / name) != digest
    ]
    if bad:
        raise ReadError(
            f"the {what} is damaged: {', '.join(bad)} missing or not matching "
            f"{CHECKSUM_FILE} (truncated, corrupt or edited)",
            path=root,
            fix=f"restore the {what} from its source (or retrain it)",
        )
    return True
