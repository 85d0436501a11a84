"""One base for every settings class, and one reader of the YAML files that hold settings.

:class:`SettingsBase` is a frozen pydantic model that refuses unknown keys; every settings class
derives from it, so each can be read from YAML (:meth:`SettingsBase.from_yaml`, what the
commands' ``--config FILE`` does), written back (``model_dump``) and compared field by field.
:func:`read_yaml_mapping` is the one YAML reader: a missing file, bad YAML or a file that is not
a mapping each give a :class:`~synthct.errors.SynthctError` naming the file and the fix.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from synthct.errors import ReadError, SynthctError

__all__ = [
    "SettingsBase",
    "raised_error",
    "read_yaml_mapping",
    "settings_error",
    "validation_problems",
]


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


def raised_error(exc: ValidationError) -> SynthctError | None:
    """The first :class:`SynthctError` a validator raised inside ``exc``, if any.

    pydantic wraps a ``ValueError`` raised by a validator (every synthct error that is a
    ``ValueError``) into its own :class:`ValidationError`; the check's own error says more.
    """
    for err in exc.errors():
        raised = (err.get("ctx") or {}).get("error")
        if isinstance(raised, SynthctError):
            return raised
    return None


class SettingsBase(BaseModel):
    """Frozen settings that refuse unknown keys; readable from a YAML file or a mapping.

    A subclass that sets :attr:`invalid_error` raises that error (problem, key and fix)
    instead of pydantic's :class:`~pydantic.ValidationError` for an unknown key or a bad value,
    from the constructor and from :meth:`from_mapping`; an error its own checks raise (a
    :class:`~synthct.errors.SynthctError`) comes out as it is.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Error type raised for invalid settings (``None``: pydantic's ValidationError).
    invalid_error: ClassVar[type[SynthctError] | None] = None
    #: What the settings are called in error messages (``"reference settings"``).
    settings_label: ClassVar[str] = "settings"

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            if type(self).invalid_error is None:
                raise
            raise type(self).invalid_settings(exc, where=type(self).__name__) from None

    @classmethod
    def invalid_settings(cls, exc: ValidationError, *, where: str) -> SynthctError:
        """The error for ``exc``: the check's own error, unknown keys, or each bad value."""
        raised = raised_error(exc)
        if raised is not None:
            return raised
        error = cls.invalid_error or SynthctError
        unknown = sorted(
            ".".join(str(p) for p in err["loc"])
            for err in exc.errors()
            if err["type"] == "extra_forbidden"
        )
        if unknown:
            return error(
                f"unknown {cls.settings_label} {unknown}",
                path=where,
                fix=f"use only {sorted(cls.model_fields)}"
                if all("." not in key for key in unknown)
                else f"see the docstring of {cls.__name__} for every key",
            )
        return error(
            f"invalid {cls.settings_label}: {validation_problems(exc)}",
            path=where,
            fix=f"correct these keys (the docstring of {cls.__name__} lists every key)",
        )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, where: str | None = None) -> Self:
        """Settings from a mapping of keys to values (a recorded file's section, a config).

        Raises
        ------
        SynthctError
            :attr:`invalid_error` (or :class:`SynthctError`) naming ``where`` and the key.
        """
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise cls.invalid_settings(exc, where=where or cls.__name__) from None

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
