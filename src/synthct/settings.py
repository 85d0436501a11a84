"""One base for every settings class, and one reader of the YAML files that hold settings.

:class:`SettingsBase` is a frozen pydantic model that refuses unknown keys; every settings class
derives from it, so each can be read from YAML (:meth:`SettingsBase.from_yaml`, what the
commands' ``--config FILE`` does), written back (``model_dump``) and compared field by field.
:func:`read_yaml_mapping` is the one YAML reader: a missing file, bad YAML or a file that is not
a mapping each give a :class:`~synthct.errors.SynthctError` naming the file and the fix.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from synthct.errors import ReadError, SynthctError

__all__ = ["SettingsBase", "read_yaml_mapping", "settings_error", "validation_problems"]


def read_yaml_mapping(
    path: str | os.PathLike[str],
    *,
    what: str = "settings file",
    error: type[SynthctError] = ReadError,
) -> dict[str, Any]:
    """The mapping a YAML file holds (an empty file is an empty mapping).

    Raises
    ------
    SynthctError
        ``error``, naming ``what`` and the file: unreadable, not YAML, or not a mapping.
    """
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(
            f"cannot read the {what} ({exc.strerror or exc})", path=p, fix="check the path"
        ) from exc
    except yaml.YAMLError as exc:
        raise error(f"not valid YAML ({exc})", path=p, fix="repair the YAML syntax") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error(f"the {what} must be a YAML mapping of options", path=p)
    return data


def validation_problems(exc: ValidationError) -> str:
    """Each invalid key of ``exc`` (dotted path) with pydantic's reason, ``; ``-separated."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
        for err in exc.errors()
    )


def settings_error(exc: ValidationError, where: str, what: str) -> SynthctError:
    """A :class:`SynthctError` listing each invalid key of ``exc`` with pydantic's reason."""
    return SynthctError(
        f"invalid {what}: {validation_problems(exc)}",
        path=where,
        fix="correct these keys (the settings class's docstring lists every key and default)",
    )


class SettingsBase(BaseModel):
    """Frozen settings that refuse unknown keys; readable from a YAML file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str], **overrides: Any) -> Self:
        """Settings from a YAML mapping; ``overrides`` replace top-level keys of the file.

        Raises
        ------
        SynthctError
            The file cannot be read, or a key is unknown or has an invalid value.
        """
        data = {**read_yaml_mapping(path), **overrides}
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise settings_error(exc, str(path), f"{cls.__name__} in the file") from None
