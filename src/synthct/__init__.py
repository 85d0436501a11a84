"""synthct: MRI to synthetic CT, and proof lesion by lesion of where that sCT can be trusted.

The main types and the products' entry points are importable from here (``synthct.read_volume``,
``synthct.generate_cohort``, ``synthct.load_synthesizer``, ``synthct.validate_case``,
``synthct.run_audit``); they load lazily (PEP 562), so ``import synthct`` and the command line
start fast and a product's heavy dependencies (torch, Dask) load only when it is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from synthct.version import __version__

#: Public name -> module that defines it.
_LAZY = {
    # volumes and I/O
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
    # cases and manifests (what every command reads and writes)
    "Case": "synthct.case",
    "Manifest": "synthct.manifest",
    "read_manifest": "synthct.manifest",
    "write_manifest": "synthct.manifest",
    # phantom
    "CohortSpec": "synthct.phantom.cohort",
    "generate_cohort": "synthct.phantom.cohort",
    "paper_cohort": "synthct.phantom.cohort",
    # synthesis
    "load_synthesizer": "synthct.synthesis.synthesizer",
    # validation
    "ValidationSettings": "synthct.validation.case",
    "validate_case": "synthct.validation.case",
    "run_validation": "synthct.validation.runner",
    "spec_from_case": "synthct.validation.manifest",
    # audit
    "load_audit_model": "synthct.audit.model",
    "run_audit": "synthct.audit.pipeline",
}

__all__ = [
    "CTVolume",
    "Case",
    "CohortSpec",
    "Geometry",
    "LabelMap",
    "MRProtocol",
    "Manifest",
    "MultiEchoMR",
    "ScalarVolume",
    "SyntheticCT",
    "ValidationSettings",
    "Volume",
    "__version__",
    "generate_cohort",
    "load_audit_model",
    "load_synthesizer",
    "paper_cohort",
    "read_manifest",
    "read_volume",
    "resample_to",
    "run_audit",
    "run_validation",
    "spec_from_case",
    "validate_case",
    "write_manifest",
    "write_volume",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports on use
    from synthct.audit.model import load_audit_model
    from synthct.audit.pipeline import run_audit
    from synthct.case import Case
    from synthct.geometry import Geometry
    from synthct.io import read_volume, write_volume
    from synthct.manifest import Manifest, read_manifest, write_manifest
    from synthct.phantom.cohort import CohortSpec, generate_cohort, paper_cohort
    from synthct.resample import resample_to
    from synthct.synthesis.synthesizer import load_synthesizer
    from synthct.validation.case import ValidationSettings, validate_case
    from synthct.validation.manifest import spec_from_case
    from synthct.validation.runner import run_validation
    from synthct.volume import (
        CTVolume,
        LabelMap,
        MRProtocol,
        MultiEchoMR,
        ScalarVolume,
        SyntheticCT,
        Volume,
    )


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # the next access skips __getattr__
        return value
    raise AttributeError(f"module 'synthct' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
