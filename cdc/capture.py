"""One source inside the bridge: its tables, mirror lane, domain-event worker and Debezium.

The bridge shares the warehouse, the broker and the dead letters between sources; everything
named after a source lives here: slot and publication ``cdc_<name>``, topics ``<name>.*``,
consumer groups ``cdc-mirror-<name>`` / ``cdc-events-<name>``, ClickHouse database ``<name>``.
Column rules (exclude, mask) are applied inside Debezium, before a record leaves the JVM, and
the mirror's tables are laid out without the excluded columns.

It builds no adapter: the composition root (:mod:`cdc.bootstrap`) hands it the source database
and a :class:`CaptureWiring` that makes the parts needing a running broker or warehouse.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cdc.consume.backoff import Backoff
from cdc.consume.dead_letters import DeadLetters
from cdc.consume.loop import ConsumerService, Stats
from cdc.debezium.config import HEARTBEAT_QUERY, ConnectorSettings, default_slot_name
from cdc.domain.changes import TableSchema
from cdc.domain.events import EventDefinitionError, EventRegistry, load_modules
from cdc.errors import ConfigError
from cdc.events.reports import WorkerConfig, WorkerReport
from cdc.mirror.rules import ColumnRules
from cdc.ports import Catalog, ChangeStream, SlotInfo, SourceDatabase, Warehouse
from cdc.settings import SourceSpec
from cdc.translate import generic_names

log = logging.getLogger(__name__)
Say = Callable[[str], None]


class CaptureRunner(Protocol):
    """Debezium for one source: the embedded engine, or a connector in Kafka Connect."""

    @property
    def records_produced(self) -> int: ...

    def start(self, timeout: float = 120) -> None: ...

    def stop(self, timeout: float = 30) -> None: ...

    def raise_if_failed(self) -> None: ...

    def snapshot_completed(self) -> bool: ...


class MirrorSink(Protocol):
    """The mirror's side of a lane: lays out ClickHouse tables and writes change messages."""

    def prepare(self, schemas: Sequence[TableSchema]) -> None: ...

    def schema_notices(self) -> Sequence[object]: ...


class EventsHandle(Protocol):
    """The bridge's handle on the domain-event worker process."""

    report: WorkerReport

    def start(self) -> None: ...

    def stop(self, timeout: float = 30.0) -> None: ...

    def check(self) -> None: ...

    def alive(self) -> bool: ...

    def silent_for(self) -> float: ...


@dataclass(frozen=True)
class CaptureWiring:
    """Factories for the parts of a source that need a running broker or warehouse (built by bootstrap)."""

    mirror_sink: Callable[[Warehouse, Catalog], MirrorSink]
    change_stream: Callable[[str, str, Sequence[str]], ChangeStream]  # (bootstrap, group, topics)
    runner: Callable[[ConnectorSettings, str], CaptureRunner]  # (connector settings, bootstrap)
    events_worker: Callable[[WorkerConfig], EventsHandle]


class Lane:
    """One consumer group on the change topics, run on its own thread with backoff on outages."""

    def __init__(self, name: str, stream: ChangeStream, service: ConsumerService, stopping: threading.Event) -> None:
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


@dataclass(frozen=True)
class CaptureOptions:
    """What the bridge-wide settings say for this source."""

    state_dir: Path
    translators: tuple[str, ...]
    events: bool
    heartbeat_interval_ms: int
    worker_dsn: str  # the source DSN, handed to the events worker process (it reads the catalog)


class SourceCapture:
    """Everything the bridge runs for one source database."""

    def __init__(
        self, spec: SourceSpec, source: SourceDatabase, wiring: CaptureWiring, options: CaptureOptions, say: Say
    ) -> None:
        self.spec = spec
        self.source = source
        self.wiring = wiring
        self.options = options
        self.say = say
        self.rules = ColumnRules(source, spec)
        self.translators = spec.translators if spec.translators is not None else options.translators
        self.events_enabled = spec.events if spec.events is not None else options.events
        self.name = ""
        self.schemas: list[TableSchema] = []
        self.registry: EventRegistry | None = None
        self.sink: MirrorSink | None = None
        self.lane: Lane | None = None
        self.runner: CaptureRunner | None = None
        self.events: EventsHandle | None = None

    @property
    def slot(self) -> str:
        return default_slot_name(self.name)

    @property
    def where(self) -> str:
        """The source's DSN without its password."""
        return self.source.where

    # -- start -----------------------------------------------------------------------------------
    def prepare(self, warehouse: Warehouse) -> None:
        """Check the source, choose its tables, load its translators, create its ClickHouse objects."""
        self.source.check_logical_replication()
        self.name = self.spec.name or str(self.source.connection_params()["dbname"])
        schemas, excluded = self.source.select_tables(self.spec.tables or None, self.name)
        for ex in excluded:
            self.say(f"warning: {ex.reason}")
        skip = set(self.spec.exclude_tables)
        schemas = [s for s in schemas if s.ref.qualified not in skip]
        if not schemas:
            raise ConfigError(f"nothing to capture in {self.where}: no table with a usable key")
        self.rules.check(schemas)
        self.schemas = [self.rules.apply(s) for s in schemas]
        if self.events_enabled:
            try:
                self.registry = load_modules(self.translators)
            except EventDefinitionError as e:
                raise ConfigError(f"translators of source {self.name!r}: {e}") from e
        self.sink = self.wiring.mirror_sink(warehouse, self.rules)
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
        stream = self.wiring.change_stream(bootstrap, f"cdc-mirror-{self.name}", self.topics)
        service = ConsumerService(stream, self.sink, dead_letters, "apply")  # type: ignore[arg-type]
        self.lane = Lane(f"mirror {self.name}", stream, service, stopping)
        self.lane.thread.start()
        if self.registry is not None:
            self.events = self.wiring.events_worker(
                WorkerConfig(
                    source=self.name,
                    source_dsn=self.options.worker_dsn,
                    bootstrap=bootstrap,
                    clickhouse_url=clickhouse_url,
                    state_dir=str(self.options.state_dir),
                    topics=tuple(self.topics),
                    translators=self.translators,
                )
            )
            self.events.start()

    def start_debezium(self, bootstrap: str, salt: str) -> None:
        params = self.source.connection_params()
        offsets = self.options.state_dir / "debezium" / f"{self.name}.offsets"
        offsets.parent.mkdir(parents=True, exist_ok=True)
        conn = ConnectorSettings(
            source=self.name,
            host=str(params["host"]),
            port=int(params["port"]),
            user=str(params["user"]),
            password=str(params["password"]),
            dbname=str(params["dbname"]),
            tables=tuple(s.ref.qualified for s in self.schemas),
            offset_file=offsets,
            heartbeat_interval_ms=self.options.heartbeat_interval_ms,
            heartbeat_action_query=HEARTBEAT_QUERY,
            exclude_columns=self.spec.exclude_columns,
            mask_hash=tuple(r.column for r in self.spec.mask if r.method == "hash"),
            mask_redact=tuple(r.column for r in self.spec.mask if r.method == "redact"),
            mask_salt=salt,
        )
        self.runner = self.wiring.runner(conn, bootstrap)
        self.runner.start()

    # -- observe (the status observer's SourceView) ----------------------------------------------
    def mirror_stats(self) -> Stats | None:
        return self.lane.service.stats if self.lane is not None else None

    @property
    def events_report(self) -> WorkerReport | None:
        return self.events.report if self.events is not None else None

    def captured(self) -> int:
        """Change records Debezium produced to Kafka (Kafka Connect: as the mirror's last fetch saw them)."""
        if self.runner is None:
            return 0
        produced = self.runner.records_produced
        if produced < 0 and self.lane is not None:  # Kafka Connect does not count what a connector produced
            return sum(dict(self.lane.service.stats.highwater).values())
        return max(0, produced)

    def slot_info(self) -> SlotInfo | None:
        """This source's replication slot as PostgreSQL shows it (None: not created yet)."""
        return next((s for s in self.source.slots() if s.slot_name == self.slot), None)

    def schema_notices(self) -> Sequence[object]:
        return self.sink.schema_notices() if self.sink is not None else ()

    def errors(self, silent_after_s: float) -> list[str]:
        errors = []
        if self.lane is not None and (self.lane.error or self.lane.service.stats.last_error):
            errors.append(f"{self.lane.name}: {self.lane.error or self.lane.service.stats.last_error}")
        report = self.events_report
        if report is not None and (report.error or report.stats.last_error):
            errors.append(f"events {self.name}: {report.error or report.stats.last_error}")
        if self.events is not None and self.events.alive() and self.events.silent_for() > silent_after_s:
            errors.append(
                f"events {self.name}: the consumer has not reported for {self.events.silent_for():.0f} s "
                f"(see {self.options.state_dir / 'logs' / 'events.log'})"
            )
        return errors

    def check(self) -> None:
        """Raise if a part failed for good (Debezium stopped with an error, the events worker died)."""
        if self.runner is not None:
            self.runner.raise_if_failed()
        if self.events is not None:
            self.events.check()


__all__ = ["CaptureOptions", "CaptureRunner", "CaptureWiring", "Lane", "SourceCapture"]
