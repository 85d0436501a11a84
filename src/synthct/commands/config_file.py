"""``--config FILE`` for every command: one YAML (or JSON) file of option values and settings.

The file is a mapping, read by the one settings reader
(:func:`synthct.settings.read_yaml_mapping`; JSON is YAML). Each key is one of:

- a key of the command's settings (:class:`~synthct.settings.SettingsBase` classes: the
  fields of one class, e.g. ``ValidationSettings`` for ``validate``, or named sections of
  several, e.g. ``consistency_settings:`` for ``audit``), kept for :func:`build_settings`;
- otherwise one of the command's options by its name (``mc_passes`` or ``mc-passes``), which
  becomes that option's default (click's default map), so the same option given on the command
  line still wins.

Any other key is refused before the command runs (exit code 2), naming the file and the key.
An option given on the command line (:func:`given_options`) replaces the file's settings key.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from synthct.errors import SynthctError

if TYPE_CHECKING:
    from synthct.settings import SettingsBase

S = TypeVar("S", bound="SettingsBase")

#: ``ctx.meta`` keys: the file's settings keys and the file itself.
_SETTINGS = "synthct.config.settings"
_PATH = "synthct.config.path"

#: The command's settings, named (not imported: ``--help`` stays fast): ``"module:Class"``, a
#: class whose fields are keys of the file, or a section name, a key of the file holding the
#: mapping of one class's settings; or a tuple of these.
SettingsSpec = str | tuple[str, ...] | None


def _settings_keys(settings: SettingsSpec) -> set[str]:
    import importlib

    keys: set[str] = set()
    for item in (settings,) if isinstance(settings, str) else settings or ():
        if ":" not in item:
            keys.add(item)
            continue
        module, name = item.split(":")
        settings_type: type[SettingsBase] = getattr(importlib.import_module(module), name)
        keys.update(settings_type.model_fields)
    return keys


def config_option(settings: SettingsSpec = None, *, what: str = "") -> Any:
    """The ``--config FILE`` option of a command (``typer.Option``, eager).

    Parameters
    ----------
    settings : str or tuple of str, optional
        The command's settings (:data:`SettingsSpec`): classes ``"module:Class"`` whose fields
        are keys of the file, and names of sections of the file; :func:`build_settings`
        reads them.
    what : str
        What the settings keys are, for ``--help``.
    """
    keys = what  # ", and the keys of ..." follows "the options given on the command line replace"

    def read(ctx: typer.Context, value: Path | None) -> Path | None:
        if value is None:
            return None
        from synthct.settings import read_yaml_mapping

        try:
            data = read_yaml_mapping(value, what="config file")
        except SynthctError as exc:
            raise typer.BadParameter(str(exc), ctx=ctx, param_hint="--config") from None
        options = {p.name: p for p in ctx.command.params if p.name and p.name != "config"}
        own = _settings_keys(settings)
        kept: dict[str, Any] = {}
        defaults: dict[str, Any] = {}
        for key, item in data.items():
            name = str(key).replace("-", "_")
            if name in own:
                kept[name] = item
            elif name in options:
                defaults[name] = item
            else:
                known = sorted({*own, *options})
                raise typer.BadParameter(
                    f"unknown key {key!r} in {value}; use one of {', '.join(known)} (the "
                    "command's options by name, and its settings)",
                    ctx=ctx,
                    param_hint="--config",
                )
        ctx.default_map = {**(ctx.default_map or {}), **defaults}
        ctx.meta[_SETTINGS] = kept
        ctx.meta[_PATH] = value
        return value

    return typer.Option(
        "--config",
        "-c",
        callback=read,
        is_eager=True,
        show_default=False,
        help="YAML or JSON file of this command's options by name (mc_passes: 4), as defaults "
        f"the options given on the command line replace{keys}.",
    )


def given_options(
    ctx: typer.Context, *, rename: Mapping[str, str] | None = None, **values: Any
) -> dict[str, Any]:
    """``values`` (by parameter name) whose option was given, on the command line or in the file.

    An option left at its default is left out, so it does not replace a settings key of the
    file. ``rename`` maps an option's name to its settings key where they differ.
    """
    names = rename or {}
    return {
        names.get(name, name): value
        for name, value in values.items()
        # typer vendors click: its ParameterSource is compared by name
        if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"
    }


def file_settings(ctx: typer.Context, section: str | None = None) -> dict[str, Any]:
    """The settings keys of the ``--config`` file (of one ``section``); empty without one."""
    kept: dict[str, Any] = ctx.meta.get(_SETTINGS, {})
    if section is None:
        return dict(kept)
    value = kept.get(section) or {}
    if not isinstance(value, Mapping):
        raise SynthctError(
            f"{section} in the config file must be a mapping of settings",
            path=str(ctx.meta.get(_PATH)),
            fix=f"write {section}: followed by indented key: value lines",
        )
    return dict(value)


def build_settings(
    ctx: typer.Context,
    settings_type: type[S],
    overrides: Mapping[str, Any] | None = None,
    *,
    section: str | None = None,
) -> S:
    """``settings_type`` from the ``--config`` file's keys, ``overrides`` replacing them.

    Raises
    ------
    SynthctError
        An unknown key or bad value, naming the file (or the command line) and the key.
    """
    values = {**file_settings(ctx, section), **(overrides or {})}
    path = ctx.meta.get(_PATH)
    where = "command line" if path is None else f"{path}{f' ({section})' if section else ''}"
    return settings_type.from_mapping(values, where=where)
