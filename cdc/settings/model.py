"""The settings model: flags, ``CDC_*`` environment variables and a ``cdc.toml``, validated once.

Precedence: command-line flags, then the environment, then the file, then the defaults below.
Unknown keys are refused (a typo must not silently mean "default"). DSNs, URLs that may carry
credentials and the masking salt are ``SecretStr``: their ``repr``/``str`` print asterisks, so
they cannot reach a log line, a traceback or ``cdc status`` by accident; only the composition
root unwraps them to build an adapter.

Secrets never live in the file: each source names the environment variable holding its DSN.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_STATE_DIR = ".cdc"
MASK_METHODS = ("hash", "redact")
_COLUMN = re.compile(r"[^.\s]+\.[^.\s]+\.[^.\s]+")
_TABLE = re.compile(r"[^.\s]+\.[^.\s]+")
_NAME = re.compile(r"[A-Za-z0-9_\-]+")
_ENV = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OFF = ("0", "off", "false", "no")


def split_list(value: Any) -> tuple[str, ...]:
    """``"a, b"`` (flags, environment) or a list (the file) -> ``("a", "b")``."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list | tuple) and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise ValueError("must be a list of strings")


def _positive(value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():  # from the environment
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _shaped(pattern: re.Pattern[str], shape: str) -> BeforeValidator:
    def check(value: Any) -> tuple[str, ...]:
        names = split_list(value)
        for name in names:
            if not pattern.fullmatch(name):
                raise ValueError(f"entry {name!r} must be written {shape}")
        return names

    return BeforeValidator(check)


def _env_name(value: Any) -> str:
    if not isinstance(value, str) or not _ENV.fullmatch(value):
        raise ValueError(f"{value!r} is not an environment variable name")
    return value


def _not_negative(value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():  # from the environment
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("must be 0 or a positive integer")
    return value


Positive = Annotated[int, BeforeValidator(_positive)]
NotNegative = Annotated[int, BeforeValidator(_not_negative)]
_PREFIX = re.compile(r"[A-Za-z0-9_.:-]*")


def _prefix(value: str | None) -> str | None:
    """A logical-message prefix Debezium can match exactly (no commas, no regex characters)."""
    if value is not None and not _PREFIX.fullmatch(value):
        raise ValueError(f"outbox_prefix {value!r} may use only letters, digits and _ . : -")
    if value == "cdc_heartbeat":
        raise ValueError("outbox_prefix 'cdc_heartbeat' is the bridge's own heartbeat; choose another")
    return value


Prefix = Annotated[str, AfterValidator(_prefix)]
Names = Annotated[tuple[str, ...], NoDecode, BeforeValidator(split_list)]
Tables = Annotated[tuple[str, ...], _shaped(_TABLE, "schema.table")]
Columns = Annotated[tuple[str, ...], _shaped(_COLUMN, "schema.table.column")]
EnvName = Annotated[str, BeforeValidator(_env_name)]


InitialLoadMode = Literal["copy", "debezium"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Section):
    """One ``[[source]]`` of the file: the database to capture and its table and column rules."""

    name: str | None = None
    dsn_env: EnvName = Field(
        description="environment variable holding the DSN (DSNs carry passwords, so never in the file)"
    )
    tables: Tables = ()
    exclude_tables: Tables = ()
    exclude_columns: Columns = ()
    translators: Names | None = None
    events: bool | None = Field(default=None, strict=True)
    initial_load: InitialLoadMode | None = None  # None: the bridge-wide setting
    snapshot_events: bool | None = Field(default=None, strict=True)  # events of existing rows; None: bridge-wide
    mask: dict[str, str] = {}
    outbox_tables: Tables | None = None  # tables the application writes its own events to; None: bridge-wide
    outbox_prefix: Prefix | None = None  # pg_logical_emit_message prefix of authored events; None: bridge-wide

    @field_validator("name")
    @classmethod
    def _name(cls, name: str | None) -> str | None:
        if name is not None and not _NAME.fullmatch(name):
            raise ValueError(f"name {name!r} may use only letters, digits, '_' and '-'")
        return name

    @field_validator("mask")
    @classmethod
    def _mask(cls, mask: dict[str, str]) -> dict[str, str]:
        for column, method in mask.items():
            if not _COLUMN.fullmatch(column):
                raise ValueError(f"mask key {column!r} must be schema.table.column")
            if method not in MASK_METHODS:
                raise ValueError(f'mask method for {column} is {method!r}; use "hash" or "redact"')
        return mask

    @model_validator(mode="after")
    def _not_both(self) -> SourceConfig:
        both = sorted(set(self.mask) & set(self.exclude_columns))
        if both:
            raise ValueError(f"{', '.join(both)} both masked and excluded; keep one")
        return self


class Masking(_Section):
    salt_env: EnvName = "CDC_MASK_SALT"  # unset variable: a random salt kept in <state dir>/mask_salt


class Guardrails(_Section):
    max_retained_wal_mb: Positive = 1024  # `cdc status` warns above this
    heartbeat_interval_ms: Positive = 1_000  # Debezium heartbeats: an idle database still lets the slot advance
    # records Debezium may have produced that are not yet durable in every lane; past it, capture waits
    max_in_flight_records: Positive = 200_000
    # the embedded broker (memory only) is emptied after this many records, once every lane stored them
    broker_buffer_records: Positive = 150_000
    # how long the mirror consumer gathers changes into one ClickHouse insert: less is fresher rows for
    # more inserts (each costs ClickHouse ~30 ms of CPU whatever its size; 0 = insert what each poll got)
    mirror_batch_wait_ms: NotNegative = 100


class Projections(_Section):
    source: str | None = None  # the source the Dagster projections read (default: the only one captured)
    modules: Names = ()  # modules declaring projections: `def projections(source) -> list[Projection]`
    sensor_interval_seconds: Positive = 15
    checks_interval_minutes: Positive = 10  # the checks schedule (on by default); 0 is refused, stop it in the UI


class Settings(BaseSettings):
    """Everything the bridge reads once at start; see :func:`cdc.settings.load` for how."""

    # CDC_GUARDRAILS__HEARTBEAT_INTERVAL_MS and the like set a key of a file section from the environment
    model_config = SettingsConfigDict(env_prefix="CDC_", extra="forbid", frozen=True, env_nested_delimiter="__")

    state_dir: Path = Path(DEFAULT_STATE_DIR)
    source_dsn: SecretStr | None = None
    kafka_bootstrap_servers: str | None = None
    kafka_connect_url: SecretStr | None = None  # Debezium in Kafka Connect instead of embedded
    clickhouse_url: SecretStr | None = None
    source_name: str | None = None
    tables: Names = ()
    initial_load: InitialLoadMode = "copy"  # existing rows: the parallel copy path, or Debezium's snapshot
    translators: Names = ()  # modules declaring events and translators
    events: Annotated[bool, BeforeValidator(lambda v: v.lower() not in _OFF if isinstance(v, str) else v)] = True
    # domain events of the rows that existed before the bridge started (op r); off: only changes make events
    snapshot_events: Annotated[bool, BeforeValidator(lambda v: v.lower() not in _OFF if isinstance(v, str) else v)] = (
        True
    )
    # domain-event worker processes per source, one consumer group: each change topic gets this many
    # partitions (keyed by primary key, so a row's changes stay in order) and each worker a share of them
    events_workers: Positive = 1
    # authored events: outbox tables (Debezium's layout) and a logical-message prefix ("" = none)
    outbox_tables: Names = ()
    outbox_prefix: Prefix = ""
    config: Path | None = None  # the cdc.toml this came from (--config, CDC_CONFIG)
    # sections of the file
    source: tuple[SourceConfig, ...] = ()
    masking: Masking = Masking()
    guardrails: Guardrails = Guardrails()
    projections: Projections = Projections()

    @field_validator("state_dir")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        return path.absolute()

    @field_validator("source_dsn", "kafka_connect_url", "clickhouse_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="after")
    def _distinct_names(self) -> Settings:
        names = [s.name for s in self.source if s.name]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"source name(s) used twice: {', '.join(twice)}")
        return self

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def max_retained_wal_bytes(self) -> int:
        return self.guardrails.max_retained_wal_mb * 1024 * 1024

    @property
    def heartbeat_interval_ms(self) -> int:
        return self.guardrails.heartbeat_interval_ms

    @property
    def salt_env(self) -> str:
        return self.masking.salt_env

    def secret(self, name: str) -> str:
        """The plain value of a secret setting (``source_dsn``, ``clickhouse_url``, …), "" when unset."""
        value = getattr(self, name)
        return value.get_secret_value() if isinstance(value, SecretStr) else ""
