"""Reading the settings: flags over the environment over ``cdc.toml``; errors as one line each."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_settings import TomlConfigSettingsSource

from cdc.errors import ConfigError
from cdc.settings.model import Guardrails, Masking, Projections, Settings, SourceConfig
from cdc.settings.sources import SourceSpec, qualified, resolve

_SECTIONS: dict[str, type[BaseModel]] = {
    "source": SourceConfig,
    "masking": Masking,
    "guardrails": Guardrails,
    "projections": Projections,
}


def load(state_dir: str | None = None, *, config_path: Path | None = None, **flags: Any) -> Settings:
    """Settings from ``flags`` (None, "" and () mean "not given"), the environment and, when
    ``config_path`` is given, that ``cdc.toml``. Only ``cdc run`` passes a file: other commands
    work without the sources' DSN variables."""
    given = {k: v for k, v in flags.items() if v is not None and v != () and v != ""}
    if state_dir:
        given["state_dir"] = state_dir
    doc: dict[str, Any] = {}
    if config_path is not None:
        doc = _without_env_keys(load_file(config_path), os.environ)
        given["config"] = config_path
    try:
        settings = Settings(**doc, **given)
    except ValidationError as e:
        raise ConfigError(one_line(e, str(config_path or "settings"), doc)) from e
    if settings.source:
        source_specs(settings)  # a missing DSN variable is a start-up error, not a later surprise
    return settings


def _without_env_keys(doc: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """The file's keys that no ``CDC_<KEY>`` / ``CDC_<SECTION>__<KEY>`` variable sets: values passed to
    the model win over the environment, and the environment must win over the file."""
    names = {k.upper() for k, v in env.items() if v != ""}
    out: dict[str, Any] = {}
    for name, value in doc.items():
        if isinstance(value, dict):
            out[name] = {k: v for k, v in value.items() if f"CDC_{name}__{k}".upper() not in names}
        elif f"CDC_{name}".upper() not in names:
            out[name] = value
    return out


def load_file(path: Path, header: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The TOML document (or the table at ``header``) through pydantic-settings' TOML source."""
    if not path.is_file():
        raise ConfigError(f"cannot read config {path}: no such file")
    try:
        doc = TomlConfigSettingsSource(Settings, toml_file=path, toml_table_header=header)()
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror or e}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from e
    if header is None and not doc.get("source"):
        raise ConfigError(f'{path}: no [[source]] section; add one with dsn_env = "VARIABLE_WITH_THE_DSN"')
    return dict(doc)


def source_specs(
    settings: Settings, default_dsn: str = "", env: Mapping[str, str] | None = None
) -> tuple[SourceSpec, ...]:
    """The sources to capture: the file's (DSNs read from their variables), else one from the
    flags and environment with ``default_dsn`` when no DSN was given."""
    env = os.environ if env is None else env
    where = str(settings.config or "cdc.toml")
    if settings.source:
        return tuple(
            resolve(
                s,
                env,
                f"{where} source {s.name!r}" if s.name else f"{where} [[source]] #{i + 1}",
                settings.initial_load,
                settings.snapshot_events,
                (settings.outbox_tables, settings.outbox_prefix),
            )
            for i, s in enumerate(settings.source)
        )
    dsn = settings.source_dsn or SecretStr(default_dsn)
    return (
        SourceSpec(
            dsn,
            settings.source_name,
            settings.tables,
            initial_load=settings.initial_load,
            snapshot_events=settings.snapshot_events,
            outbox_tables=qualified(settings.outbox_tables),
            outbox_prefix=settings.outbox_prefix,
        ),
    )


def projection_settings(env: Mapping[str, str] | None = None) -> Projections:
    """The ``[projections]`` table of the file ``CDC_CONFIG`` names (defaults without one), read
    alone so Dagster's processes need none of the sources' DSN variables."""
    env = os.environ if env is None else env
    path = env.get("CDC_CONFIG")
    doc = dict(load_file(Path(path), ("projections",))) if path else {}
    for name in Projections.model_fields:  # CDC_PROJECTIONS__MODULES and the like win over the file
        value = env.get(f"CDC_PROJECTIONS__{name.upper()}", "")
        if value:
            doc[name] = value
    try:
        return Projections(**doc)
    except ValidationError as e:
        raise ConfigError(one_line(e, f"{path or 'CDC_PROJECTIONS__*'} [projections]", {})) from e


def one_line(error: ValidationError, where: str, doc: Mapping[str, Any]) -> str:
    """The first problem pydantic found, said the way a person fixes it: file, section, key, what to do."""
    first = error.errors()[0]
    loc = [str(part) for part in first["loc"]]
    at = _section(where, loc, doc)
    key = loc[-1] if loc else ""
    if first["type"] == "extra_forbidden":
        return f"{at}: unknown key(s) {key}; known: {', '.join(_known(loc))}"
    if first["type"] == "missing" and key == "dsn_env":
        return (
            f"{at}: dsn_env is required: the name of the environment variable holding the DSN "
            "(DSNs carry passwords, so they are never written in the file)"
        )
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] in ("bool_type", "bool_parsing"):
        message = "must be true or false"
    elif first["type"] in ("string_type", "missing"):
        message = "must be a string" if first["type"] == "string_type" else "is required"
    named = key and key.isidentifier() and not message.startswith(key)
    return f"{at}: {key} {message}" if named and not _is_whole(message) else f"{at}: {message}"


def _is_whole(message: str) -> bool:
    """Messages from validators that already name what they are about."""
    return message.startswith(("mask ", "name ", "source name")) or "both masked" in message


def _section(where: str, loc: list[str], doc: Mapping[str, Any]) -> str:
    if loc[:1] == ["source"] and len(loc) > 1 and loc[1].isdigit():
        index = int(loc[1])
        sources = doc.get("source") or []
        name = sources[index].get("name") if index < len(sources) and isinstance(sources[index], dict) else None
        return f"{where} source {name!r}" if isinstance(name, str) else f"{where} [[source]] #{index + 1}"
    if loc and loc[0] in _SECTIONS and len(loc) > 1:
        return f"{where} [{loc[0]}]"
    return where


def _known(loc: list[str]) -> list[str]:
    if len(loc) == 1:
        return sorted(_SECTIONS)
    return sorted(_SECTIONS[loc[0]].model_fields) if loc[0] in _SECTIONS else sorted(Settings.model_fields)
