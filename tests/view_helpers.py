"""Helpers of the `synthct view` tests (tests/view): a server in a thread, a page, its canvas."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: The docs screenshots are rewritten when this is set (see docs/view.md).
WRITE_DOCS = os.environ.get("SYNTHCT_WRITE_DOCS") == "1"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "images"


@dataclass(frozen=True)
class SphereCase:
    """A CT/sCT pair in ``folder``: a sphere of ``diameter_mm`` at ``centre_lps_mm`` on the CT."""

    folder: Path
    centre_lps_mm: tuple[float, float, float]
    diameter_mm: float
    spacing_mm: float


@contextmanager
def serving(path: Path, *, edit: bool = False) -> Iterator[Any]:
    """A `synthct view` server on ``path`` (any free loopback port), stopped afterwards."""
    from synthct.view import discover, start_server

    server = start_server(discover([path]), port=0, edit=edit)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@dataclass
class OpenPage:
    """A page with the console messages and page errors it produced."""

    page: Any
    errors: list[str]

    def ready(self, timeout_ms: float = 60_000) -> None:
        """Wait until the first case is drawn and all its layers are loaded."""
        self.page.wait_for_function(
            "window.synthctView && window.synthctView.state.allLoaded", timeout=timeout_ms
        )

    def js(self, expression: str, arg: Any = None) -> Any:
        """Evaluate JavaScript in the page."""
        return self.page.evaluate(expression, arg)


def canvas_pixels(page: Any) -> np.ndarray:
    """The canvas as an RGB array (a screenshot of the element)."""
    import io

    from PIL import Image

    png = page.locator("#gl").screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)
