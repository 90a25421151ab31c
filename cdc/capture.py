"""One source inside the bridge: its tables, mirror consumer, domain-event worker and Debezium.

The bridge shares the warehouse, the broker and the dead letters between sources; everything
named after a source lives here: slot and publication ``cdc_<name>``, topics ``<name>.*``,
consumer groups ``cdc-mirror-<name>`` / ``cdc-events-<name>``, ClickHouse database ``<name>``.
Column rules (exclude, mask) are applied inside Debezium, before a record leaves the JVM, and
the mirror's tables are laid out without the excluded columns.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from cdc.adapters.clickhouse import ClickHouseWarehouse
from cdc.adapters.kafka import KafkaChangeStream
from cdc.adapters.postgres import PostgresSource, redact_dsn
from cdc.config import SourceSpec
from cdc.consume.backoff import Backoff
from cdc.consume.dead_letters import DeadLetters
from cdc.consume.loop import ConsumerService
from cdc.debezium.config import HEARTBEAT_QUERY, ConnectorSettings, default_slot_name, embedded_properties
from cdc.debezium.engine import DebeziumRunner
from cdc.debezium.kafka_connect import KafkaConnectRunner
from cdc.domain.changes import TableRef, TableSchema
from cdc.domain.events import EventDefinitionError, EventRegistry, load_modules
from cdc.errors import ConfigError
from cdc.events.worker import EventsWorker, WorkerConfig, WorkerReport
from cdc.mirror.sink import ClickHouseMirrorSink
from cdc.settings import Settings
from cdc.translate import generic_names

log = logging.getLogger(__name__)
Say = Callable[[str], None]
MASKABLE_TYPES = frozenset({"text", "varchar", "bpchar", "citext", "name"})  # Debezium masks character columns


class CaptureRunner(Protocol):
    """Debezium for one source: the embedded engine, or a connector in Kafka Connect."""

    @property
    def records_produced(self) -> int: ...

    def start(self, timeout: float = 120) -> None: ...

    def stop(self, timeout: float = 30) -> None: ...

    def raise_if_failed(self) -> None: ...

    def snapshot_completed(self) -> bool: ...


class _Lane:
    """One consumer group on the change topics, run on its own thread with backoff on outages."""

    def __init__(
        self, name: str, stream: KafkaChangeStream, service: ConsumerService, stopping: threading.Event
    ) -> None:
        self.name = name
        self.stream = stream
        self.service = service
        self.error: str | None = None
        self._stopping = stopping
        self.thread = threading.Thread(target=self._consume, name=f"{name}-consumer", daemon=True)

    def _consume(self) -> None:
        backoff = Backoff()
        while not self._stopping.is_set():
            self.error = self.service.run_once_or_back_off(backoff, self._stopping, f"{self.name} consumer")


class ColumnRules:
    """The source's catalog as the bridge sees it: excluded columns are not there.

    The mirror sink reads table schemas through this, so a table created or altered later is
    laid out by the same rules.
    """

    def __init__(self, source: PostgresSource, spec: SourceSpec) -> None:
        self._source = source
        self._spec = spec

    def table_schema(self, ref: TableRef) -> TableSchema | None:
        schema = self._source.table_schema(ref)
        return None if schema is None else self.apply(schema)

    def apply(self, schema: TableSchema) -> TableSchema:
        ref = schema.ref
        dropped = {c.name for c in schema.columns if self._spec.excluded_column(ref.schema, ref.table, c.name)}
        if not dropped:
            return schema
        return replace(schema, columns=tuple(c for c in schema.columns if c.name not in dropped))

    def check(self, schemas: list[TableSchema]) -> None:
        """Every excluded or masked column must exist, be maskable, and not identify rows."""
        by_name = {s.ref.qualified: s for s in schemas}
        rules = [(c, "excluded") for c in self._spec.exclude_columns] + [(r.column, "masked") for r in self._spec.mask]
        for column, what in rules:
            table, name = column.rsplit(".", 1)
            schema = by_name.get(table)
            if schema is None:
                continue  # a rule for a table not captured (or left out): nothing to do
            col = schema.column_index.get(name)
            if col is None:
                raise ConfigError(f"{what} column {column} does not exist in {table}")
            if name in schema.key:
                raise ConfigError(
                    f"{what} column {column} identifies the rows of {table} (it is part of its key); "
                    "the mirror needs it as is. Mask or exclude other columns only"
                )
            if what == "masked" and (col.pg_type not in MASKABLE_TYPES or col.is_array):
                raise ConfigError(
                    f"masked column {column} is {col.pg_type}{'[]' if col.is_array else ''}; "
                    "Debezium masks character columns only: exclude it instead "
                    "(exclude_columns)"
                )


class SourceCapture:
    """Everything the bridge runs for one source database."""

    def __init__(self, settings: Settings, spec: SourceSpec, say: Say) -> None:
        self.settings = settings
        self.spec = spec
        self.say = say
        self.source = PostgresSource(spec.dsn)
        self.rules = ColumnRules(self.source, spec)
        self.translators = spec.translators if spec.translators is not None else settings.translators
        self.events_enabled = spec.events if spec.events is not None else settings.events
        self.name = ""
        self.schemas: list[TableSchema] = []
        self.registry: EventRegistry | None = None
        self.sink: ClickHouseMirrorSink | None = None
        self.lane: _Lane | None = None
        self.runner: CaptureRunner | None = None
        self.events: EventsWorker | None = None

    @property
    def slot(self) -> str:
        return default_slot_name(self.name)

    # -- start -----------------------------------------------------------------------------------
    def prepare(self, warehouse: ClickHouseWarehouse) -> None:
        """Check the source, choose its tables, load its translators, create its ClickHouse objects."""
        self.source.check_logical_replication()
        self.name = self.spec.name or self.source.connection_params()["dbname"]
        schemas, excluded = self.source.select_tables(self.spec.tables or None, self.name)
        for ex in excluded:
            self.say(f"warning: {ex.reason}")
        skip = set(self.spec.exclude_tables)
        schemas = [s for s in schemas if s.ref.qualified not in skip]
        if not schemas:
            raise ConfigError(f"nothing to capture in {redact_dsn(self.spec.dsn)}: no table with a usable key")
        self.rules.check(schemas)
        self.schemas = [self.rules.apply(s) for s in schemas]
        if self.events_enabled:
            try:
                self.registry = load_modules(self.translators)
            except EventDefinitionError as e:
                raise ConfigError(f"translators of source {self.name!r}: {e}") from None
        self.sink = ClickHouseMirrorSink(warehouse, self.rules)
        self.sink.prepare(self.schemas)

    @property
    def topics(self) -> list[str]:
        return [s.ref.topic for s in self.schemas]

    @property
    def event_topics(self) -> list[str]:
        """``events.<aggregate>`` of every declared event and generic table."""
        if self.registry is None:
            return []
        aggregates = {spec.aggregate for name in self.registry.names() for spec in self.registry.versions(name)}
        aggregates |= {
            generic_names(s.ref.schema, s.ref.table)[0]
            for s in self.schemas
            if s.ref.qualified not in self.registry.translators
        }
        return sorted(f"events.{a}" for a in aggregates)

    def start_consumers(
        self, bootstrap: str, clickhouse_url: str, dead_letters: DeadLetters, stopping: threading.Event
    ) -> None:
        assert self.sink is not None
        stream = KafkaChangeStream(bootstrap, f"cdc-mirror-{self.name}", self.topics)
        self.lane = _Lane(
            f"mirror {self.name}", stream, ConsumerService(stream, self.sink, dead_letters, "apply"), stopping
        )
        self.lane.thread.start()
        if self.registry is not None:
            self.events = EventsWorker(
                WorkerConfig(
                    source=self.name,
                    source_dsn=self.spec.dsn,
                    bootstrap=bootstrap,
                    clickhouse_url=clickhouse_url,
                    state_dir=str(self.settings.state_dir),
                    topics=tuple(self.topics),
                    translators=self.translators,
                )
            )
            self.events.start()

    def start_debezium(self, bootstrap: str, salt: str, heartbeat_ms: int) -> None:
        params = self.source.connection_params()
        offsets = self.settings.state_dir / "debezium" / f"{self.name}.offsets"
        offsets.parent.mkdir(parents=True, exist_ok=True)
        conn = ConnectorSettings(
            source=self.name,
            host=params["host"],
            port=int(params["port"]),
            user=params["user"],
            password=params["password"],
            dbname=params["dbname"],
            tables=tuple(s.ref.qualified for s in self.schemas),
            offset_file=offsets,
            heartbeat_interval_ms=heartbeat_ms,
            heartbeat_action_query=HEARTBEAT_QUERY,
            exclude_columns=self.spec.exclude_columns,
            mask_hash=tuple(r.column for r in self.spec.mask if r.method == "hash"),
            mask_redact=tuple(r.column for r in self.spec.mask if r.method == "redact"),
            mask_salt=salt,
        )
        if self.settings.kafka_connect_url:  # the same connector config, run by Kafka Connect
            self.runner = KafkaConnectRunner(self.settings.kafka_connect_url, conn, produced=self._produced)
        else:
            self.runner = DebeziumRunner(embedded_properties(conn), bootstrap, self.settings.log_dir / "debezium.log")
        self.runner.start()

    def _produced(self) -> int:
        """Records in this source's change topics, as the mirror consumer's last fetch saw them
        (Kafka Connect does not count what a connector produced)."""
        if self.lane is None:
            return 0
        return sum(dict(self.lane.service.stats.highwater).values())

    # -- observe ---------------------------------------------------------------------------------
    @property
    def service(self) -> ConsumerService:
        assert self.lane is not None
        return self.lane.service

    @property
    def events_report(self) -> WorkerReport | None:
        return self.events.report if self.events is not None else None

    def errors(self, silent_after_s: float, log_dir: Path) -> list[str]:
        errors = []
        if self.lane is not None and (self.lane.error or self.lane.service.stats.last_error):
            errors.append(f"{self.lane.name}: {self.lane.error or self.lane.service.stats.last_error}")
        report = self.events_report
        if report is not None and (report.error or report.stats.last_error):
            errors.append(f"events {self.name}: {report.error or report.stats.last_error}")
        if self.events is not None and self.events.alive() and self.events.silent_for() > silent_after_s:
            errors.append(
                f"events {self.name}: the consumer has not reported for {self.events.silent_for():.0f} s "
                f"(see {log_dir / 'events.log'})"
            )
        return errors

    def check(self) -> None:
        """Raise if a part failed for good (Debezium stopped with an error, the events worker died)."""
        if self.runner is not None:
            self.runner.raise_if_failed()
        if self.events is not None:
            self.events.check()


__all__ = ["CaptureRunner", "ColumnRules", "SourceCapture"]
