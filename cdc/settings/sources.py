"""The sources to capture, as the rest of the bridge sees them: resolved, validated, secret-safe."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import SecretStr

from cdc.errors import ConfigError
from cdc.settings.model import SourceConfig


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

    dsn: SecretStr
    name: str | None = None
    tables: tuple[str, ...] = ()
    exclude_tables: tuple[str, ...] = ()
    exclude_columns: tuple[str, ...] = ()
    mask: tuple[MaskRule, ...] = ()
    translators: tuple[str, ...] | None = None  # None: the bridge-wide setting
    events: bool | None = None  # None: the bridge-wide setting
    initial_load: str = "copy"  # existing rows: "copy" (cdc.mirror.initial_load) or "debezium" (its snapshot)
    snapshot_events: bool = True  # domain events of existing rows (op r), whichever way they are loaded
    dsn_env: str = ""  # the variable the DSN came from ("": a flag or CDC_SOURCE_DSN); recorded, never the DSN
    outbox_tables: tuple[str, ...] = ()  # ``schema.table`` whose inserted rows are authored events
    outbox_prefix: str = ""  # logical messages with this prefix are authored events ("" = none)

    def excluded_column(self, schema: str, table: str, column: str) -> bool:
        return f"{schema}.{table}.{column}" in self.exclude_columns


def resolve(
    config: SourceConfig,
    env: Mapping[str, str],
    where: str,
    initial_load: str = "copy",
    snapshot_events: bool = True,
    outbox: tuple[tuple[str, ...], str] = ((), ""),
) -> SourceSpec:
    """A ``[[source]]`` with its DSN read from the variable it names."""
    dsn = env.get(config.dsn_env, "")
    if not dsn:
        raise ConfigError(f"{where}: environment variable {config.dsn_env} is not set; export it with the source's DSN")
    return SourceSpec(
        dsn=SecretStr(dsn),
        name=config.name,
        tables=config.tables,
        exclude_tables=config.exclude_tables,
        exclude_columns=config.exclude_columns,
        mask=tuple(MaskRule(column, method) for column, method in config.mask.items()),
        translators=config.translators,
        events=config.events,
        initial_load=config.initial_load or initial_load,
        snapshot_events=config.snapshot_events if config.snapshot_events is not None else snapshot_events,
        dsn_env=config.dsn_env,
        outbox_tables=qualified(config.outbox_tables if config.outbox_tables is not None else outbox[0]),
        outbox_prefix=config.outbox_prefix if config.outbox_prefix is not None else outbox[1],
    )


def qualified(tables: tuple[str, ...]) -> tuple[str, ...]:
    """``schema.table`` (``public`` when none is given), as the events lane compares them."""
    return tuple(t if "." in t else f"public.{t}" for t in tables)
