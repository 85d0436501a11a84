"""synthct: MRI to synthetic CT, and proof lesion by lesion of where that sCT can be trusted.

The main types are importable from here (``from synthct import CTVolume``); they load lazily so
that the command line starts fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Geometry": "synthct.geometry",
    "CTVolume": "synthct.volume",
    "LabelMap": "synthct.volume",
    "MRProtocol": "synthct.volume",
    "MultiEchoMR": "synthct.volume",
    "ScalarVolume": "synthct.volume",
    "SyntheticCT": "synthct.volume",
    "Volume": "synthct.volume",
    "read_volume": "synthct.io",
    "write_volume": "synthct.io",
    "resample_to": "synthct.resample",
}

__all__ = [*sorted(_LAZY), "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'synthct' has no attribute {name!r}")
