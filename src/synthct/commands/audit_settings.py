"""The signal settings sections shared by `synthct audit` and `synthct audit-train`.

A helper module, not a command module: it does not import :mod:`synthct.cli`, so both command
modules can import it while ``python -m synthct.cli`` (torchrun) registers the commands.
"""

from __future__ import annotations

from typing import Any

import typer

from synthct.commands.config_file import build_settings, file_settings

#: Sections of the --config file of `audit` and `audit-train`, each a settings class.
SIGNAL_SECTIONS = ("consistency_settings", "reference_settings", "learned_consistency_settings")
SIGNAL_SECTIONS_HELP = (
    ", and the signals' settings: consistency_settings (synthct.audit.mri_consistency."
    "ConsistencySettings), reference_settings (synthct.audit.reference.ReferenceSettings), "
    "for audit-train also learned_consistency_settings (LearnedConsistencySettings); settings "
    "given here replace those the audit model was calibrated with"
)


def signal_settings(ctx: typer.Context) -> dict[str, Any]:
    """The consistency and reference settings of the --config file (absent: the defaults)."""
    from synthct.audit.mri_consistency import ConsistencySettings
    from synthct.audit.reference import ReferenceSettings

    found: dict[str, Any] = {}
    if "consistency_settings" in file_settings(ctx):
        found["settings"] = build_settings(ctx, ConsistencySettings, section="consistency_settings")
    if "reference_settings" in file_settings(ctx):
        found["reference_settings"] = build_settings(
            ctx, ReferenceSettings, section="reference_settings"
        )
    return found
