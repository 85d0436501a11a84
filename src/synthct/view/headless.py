"""How the tests and benchmarks of `synthct view` start a headless browser.

Debian's ``chromium`` package (``/usr/bin/chromium``; ``SYNTHCT_CHROMIUM`` overrides it) driven
by Playwright, without Playwright's own browser download. NiiVue needs WebGL2; without a GPU,
ANGLE on SwiftShader renders it in software.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CHROMIUM_ARGS", "chromium_path"]

CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
)


def chromium_path() -> Path:
    """The chromium executable to drive."""
    return Path(os.environ.get("SYNTHCT_CHROMIUM", "/usr/bin/chromium"))
