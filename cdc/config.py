"""`cdc.toml`: one or more sources with their table and column rules, read once, no IO beyond the file.

Secrets never live in the file: each source names the environment variable holding its DSN
(``dsn_env``), and the hash salt comes from ``[masking] salt_env``. Dataclasses keep DSNs and the
salt out of their ``repr``, so neither reaches a log line or a traceback.

```toml
[[source]]
name = "shop"                       # topic prefix and ClickHouse database (default: the database name)
dsn_env = "SHOP_DSN"                # environment variable holding the DSN (required)
tables = ["public.orders"]          # include list (default: every table with a key)
exclude_tables = ["public.audit"]
exclude_columns = ["public.customers.notes"]
translators = ["cdc.demo.events"]   # domain-event modules (default: none, generic events)
events = true                       # run the domain-event consumer for this source
mask = { "public.customers.email" = "hash", "public.customers.phone" = "redact" }

[masking]
salt_env = "CDC_MASK_SALT"          # unset: a random salt kept in <state dir>/mask_salt

[guardrails]
max_retained_wal_mb = 1024          # `cdc status` warns above this
heartbeat_interval_ms = 1000        # Debezium heartbeats: idle databases still let the slot advance

[projections]
source = "shop"                     # the source the Dagster projections read
sensor_interval_seconds = 15
```
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdc.errors import ConfigError

MASK_METHODS = ("hash", "redact")
_COLUMN = re.compile(r"[^.\s]+\.[^.\s]+\.[^.\s]+")
_TABLE = re.compile(r"[^.\s]+\.[^.\s]+")
_NAME = re.compile(r"[A-Za-z0-9_\-]+")
_ENV = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SOURCE_KEYS = {"name", "dsn_env", "tables", "exclude_tables", "exclude_columns", "translators", "events", "mask"}
_TOP_KEYS = {"source", "masking", "guardrails", "projections"}


@dataclass(frozen=True)
class MaskRule:
    """``column`` is ``schema.table.column``; ``method`` is ``hash`` (salted SHA-256) or ``redact``."""

    column: str
    method: str

    @property
    def table(self) -> str:
        return self.column.rsplit(".", 1)[0]

    @property
    def name(self) -> str:
        return self.column.rsplit(".", 1)[1]


@dataclass(frozen=True)
class SourceSpec:
    """One source database to capture, with its table and column rules."""

    dsn: str = field(repr=False)  # may hold a password
    name: str | None = None
    tables: tuple[str, ...] = ()
    exclude_tables: tuple[str, ...] = ()
    exclude_columns: tuple[str, ...] = ()
    mask: tuple[MaskRule, ...] = ()
    translators: tuple[str, ...] | None = None  # None: the bridge-wide setting
    events: bool | None = None  # None: the bridge-wide setting

    def excluded_column(self, schema: str, table: str, column: str) -> bool:
        return f"{schema}.{table}.{column}" in self.exclude_columns


@dataclass(frozen=True)
class Guardrails:
    max_retained_wal_bytes: int = 1024 * 1024 * 1024
    heartbeat_interval_ms: int = 1_000


@dataclass(frozen=True)
class ProjectionSettings:
    source: str | None = None
    sensor_interval_seconds: int = 15


@dataclass(frozen=True)
class BridgeConfig:
    sources: tuple[SourceSpec, ...]
    salt_env: str = "CDC_MASK_SALT"
    guardrails: Guardrails = Guardrails()
    projections: ProjectionSettings = ProjectionSettings()
    path: Path | None = None


def load_config(path: Path, env: dict[str, str] | None = None) -> BridgeConfig:
    """Read and check ``path``; every problem raises ConfigError naming the file and the key."""
    env = dict(os.environ) if env is None else env
    try:
        doc = tomllib.loads(path.read_text())
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    where = str(path)
    _unknown(doc, _TOP_KEYS, where)
    raw_sources = doc.get("source", [])
    if not isinstance(raw_sources, list) or not raw_sources:
        raise ConfigError(f'{where}: no [[source]] section; add one with dsn_env = "VARIABLE_WITH_THE_DSN"')
    sources = tuple(_source(s, i, where, env) for i, s in enumerate(raw_sources))
    names = [s.name for s in sources if s.name]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{where}: source name(s) used twice: {', '.join(dup)}")
    masking = _table(doc, "masking", where)
    _unknown(masking, {"salt_env"}, f"{where} [masking]")
    guard = _table(doc, "guardrails", where)
    _unknown(guard, {"max_retained_wal_mb", "heartbeat_interval_ms"}, f"{where} [guardrails]")
    proj = _table(doc, "projections", where)
    _unknown(proj, {"source", "sensor_interval_seconds"}, f"{where} [projections]")
    return BridgeConfig(
        sources=sources,
        salt_env=_env_name(masking.get("salt_env", "CDC_MASK_SALT"), f"{where} [masking] salt_env"),
        guardrails=Guardrails(
            max_retained_wal_bytes=_positive(guard.get("max_retained_wal_mb", 1024), "max_retained_wal_mb", where)
            * 1024
            * 1024,
            heartbeat_interval_ms=_positive(guard.get("heartbeat_interval_ms", 1_000), "heartbeat_interval_ms", where),
        ),
        projections=ProjectionSettings(
            source=_opt_str(proj.get("source"), "projections.source", where),
            sensor_interval_seconds=_positive(
                proj.get("sensor_interval_seconds", 15), "sensor_interval_seconds", where
            ),
        ),
        path=path,
    )


def projection_settings(env: dict[str, str] | None = None) -> ProjectionSettings:
    """The ``[projections]`` section of the config ``CDC_CONFIG`` names (defaults without one).

    Read alone, so Dagster processes need none of the sources' DSN variables.
    """
    env = dict(os.environ) if env is None else env
    path = env.get("CDC_CONFIG")
    if not path:
        return ProjectionSettings()
    try:
        proj = _table(tomllib.loads(Path(path).read_text()), "projections", path)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot read config {path}: {e}") from None
    _unknown(proj, {"source", "sensor_interval_seconds"}, f"{path} [projections]")
    return ProjectionSettings(
        source=_opt_str(proj.get("source"), "projections.source", path),
        sensor_interval_seconds=_positive(proj.get("sensor_interval_seconds", 15), "sensor_interval_seconds", path),
    )


def _source(raw: Any, index: int, where: str, env: dict[str, str]) -> SourceSpec:
    at = f"{where} [[source]] #{index + 1}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{at}: must be a table")
    _unknown(raw, _SOURCE_KEYS, at)
    name = _opt_str(raw.get("name"), "name", at)
    if name is not None and not _NAME.fullmatch(name):
        raise ConfigError(f"{at}: name {name!r} may use only letters, digits, '_' and '-'")
    at = f"{where} source {name!r}" if name else at
    dsn_env = raw.get("dsn_env")
    if not isinstance(dsn_env, str) or not dsn_env:
        raise ConfigError(
            f"{at}: dsn_env is required: the name of the environment variable holding the DSN "
            "(DSNs carry passwords, so they are never written in the file)"
        )
    dsn = env.get(_env_name(dsn_env, f"{at} dsn_env"), "")
    if not dsn:
        raise ConfigError(f"{at}: environment variable {dsn_env} is not set; export it with the source's DSN")
    mask = raw.get("mask", {})
    if not isinstance(mask, dict):
        raise ConfigError(f'{at}: mask must be a table of "schema.table.column" = "hash" | "redact"')
    rules = []
    for column, method in mask.items():
        if not _COLUMN.fullmatch(column):
            raise ConfigError(f"{at}: mask key {column!r} must be schema.table.column")
        if method not in MASK_METHODS:
            raise ConfigError(f'{at}: mask method for {column} is {method!r}; use "hash" or "redact"')
        rules.append(MaskRule(column, method))
    events = raw.get("events", None)
    if events is not None and not isinstance(events, bool):
        raise ConfigError(f"{at}: events must be true or false")
    exclude_columns = _names(raw.get("exclude_columns"), "exclude_columns", at, _COLUMN, "schema.table.column")
    both = sorted({r.column for r in rules} & set(exclude_columns))
    if both:
        raise ConfigError(f"{at}: {', '.join(both)} both masked and excluded; keep one")
    translators = raw.get("translators")
    return SourceSpec(
        dsn=dsn,
        name=name,
        tables=_names(raw.get("tables"), "tables", at, _TABLE, "schema.table"),
        exclude_tables=_names(raw.get("exclude_tables"), "exclude_tables", at, _TABLE, "schema.table"),
        exclude_columns=exclude_columns,
        mask=tuple(rules),
        translators=None if translators is None else _names(translators, "translators", at, None, ""),
        events=events,
    )


def _names(value: Any, key: str, at: str, pattern: re.Pattern[str] | None, shape: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{at}: {key} must be a list of strings")
    for v in value:
        if pattern is not None and not pattern.fullmatch(v):
            raise ConfigError(f"{at}: {key} entry {v!r} must be written {shape}")
    return tuple(value)


def _table(doc: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{key}] must be a table")
    return value


def _unknown(section: dict[str, Any], allowed: set[str], at: str) -> None:
    extra = sorted(set(section) - allowed)
    if extra:
        raise ConfigError(f"{at}: unknown key(s) {', '.join(extra)}; known: {', '.join(sorted(allowed))}")


def _positive(value: Any, key: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{where}: {key} must be a positive integer")
    return value


def _opt_str(value: Any, key: str, at: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{at}: {key} must be a non-empty string")
    return value


def _env_name(value: Any, at: str) -> str:
    if not isinstance(value, str) or not _ENV.fullmatch(value):
        raise ConfigError(f"{at}: {value!r} is not an environment variable name")
    return value
