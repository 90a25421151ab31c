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
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from cdc.capture_tables import choose_tables
from cdc.consume.dead_letters import DeadLetters
from cdc.consume.lane import Lane
from cdc.consume.loop import ConsumerService, Stats
from cdc.debezium.config import HEARTBEAT_PREFIX, HEARTBEAT_QUERY, ConnectorSettings, default_slot_name
from cdc.debezium.gate import DurabilityGate
from cdc.domain.changes import TableSchema
from cdc.domain.events import EventDefinitionError, EventRegistry, load_modules
from cdc.domain.names import events_topic, message_topic
from cdc.errors import CdcError, ConfigError, SourceError
from cdc.events.reports import WorkerConfig
from cdc.mirror import captured
from cdc.mirror.initial_load import InitialLoad
from cdc.mirror.rules import ColumnRules
from cdc.mirror.snapshot_events import SnapshotEvents, export_snapshot
from cdc.ports import Message, Publisher, SourceDatabase, TopicPartition, Warehouse
from cdc.settings import SourceSpec
from cdc.supervision import Supervisor, failure_of, step
from cdc.table_additions import with_remembered
from cdc.translate import generic_names
from cdc.wiring import CaptureOptions, CaptureRunner, CaptureWiring, EventsHandle, EventSink, MirrorSink

log = logging.getLogger(__name__)
Say = Callable[[str], None]


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
        self._worker_config: WorkerConfig | None = None
        self._debezium: tuple[str, str] | None = None  # (bootstrap, salt) of the running capture
        self.supervisor = Supervisor(lambda: self.name, say, options.state_dir / "logs")
        self._flushed_at: float | None = None
        self.epoch = 0  # truncations of the embedded broker's topics so far
        self.generation = 0  # brokers started before the current one (a dead embedded broker is replaced)
        self.load: InitialLoad | None = None  # the copy path's initial load (cdc.mirror.initial_load)
        self.hold = threading.Event()  # set during a truncation: Debezium sends nothing (cdc.truncation)
        self.snapshot_events: SnapshotEvents | None = None  # events of the rows the copy path loads
        self._event_sink: EventSink | None = None
        self._dead_letters: DeadLetters | None = None
        self._warehouse: Warehouse | None = None

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
        self._warehouse = warehouse
        self.source.check_logical_replication()
        self.name = self.spec.name or str(self.source.connection_params()["dbname"])
        self.spec = with_remembered(self.spec, self.options.state_dir, self.name)  # tables added at run time
        self.schemas = choose_tables(self.spec, self.source, self.rules, self.name, self.say)
        self.source.ensure_publication(self.slot, [(s.ref.schema, s.ref.table) for s in self.schemas])
        if self.events_enabled:
            try:
                self.registry = load_modules(self.translators)
            except EventDefinitionError as e:
                raise ConfigError(f"translators of source {self.name!r}: {e}") from e
            if self.registry.deadlines and self.options.events_workers > 1:
                rules = ", ".join(sorted(self.registry.deadlines))
                raise ConfigError(
                    f"translators of source {self.name!r} declare deadlines ({rules}),"
                    f" which need one events worker to see every start and ending event in order;"
                    f" events_workers is {self.options.events_workers}: set it to 1"
                )
        self.sink = self.wiring.mirror_sink(warehouse, self.rules)
        self.sink.prepare(self.schemas)
        self.record_tables(self.schemas)
        self.load = self._initial_load(warehouse)

    def record_tables(self, schemas: Sequence[TableSchema]) -> None:
        """Write what this source captures to ``cdc.captured_tables`` (Dagster's definitions read it)."""
        assert self._warehouse is not None
        translators = tuple(self.translators) if self.events_enabled else ()
        rows = [
            captured.CapturedTable(
                self.name,
                s.ref.schema,
                s.ref.table,
                s.key,
                self.slot,
                self.spec.dsn_env,
                self.events_enabled,
                translators,
            )
            for s in schemas
        ]
        captured.record(self._warehouse, self.name, rows)

    def _initial_load(self, warehouse: Warehouse) -> InitialLoad:
        """The copy path's load (``initial_load = "copy"`` at a first start, or a load still unfinished)."""
        sink = self.sink
        assert sink is not None
        load = InitialLoad(
            self.name,
            self.source,
            warehouse,
            lambda s: sink.follow_source(s.ref),
            sink.gate.insert,
            refusal=self.rules.copy_refusal,
        )
        first = self.spec.initial_load == "copy" and not self._offsets_file.exists()
        together = self.registry is not None and self.spec.snapshot_events
        copied = load.prepare(self.schemas, first_start=first, together=together)
        if copied and not load.done:
            self.say(
                f"initial load: {len(copied)} table(s) by the copy path ({', '.join(s.ref.display for s in copied)})"
            )
        if self.registry is not None and self.spec.snapshot_events:  # tables added later are loaded by it too
            self.snapshot_events = SnapshotEvents(load, self.source, warehouse, self._emit_snapshot_events)
            load.stash = self.snapshot_events.stash
        return load

    def _emit_snapshot_events(self, messages: Sequence[Message]) -> None:
        """Translate, publish and store the events of copied rows (cdc.mirror.snapshot_events)."""
        sink, dead_letters = self._event_sink, self._dead_letters
        if sink is None or dead_letters is None:
            raise SourceError("the bridge's lanes are restarting")  # retried
        for rejected in sink.write(messages[0].topic, messages):
            dead_letters.put(rejected.message, rejected.error, "events")

    @property
    def _offsets_file(self) -> Path:
        return self.options.state_dir / "debezium" / f"{self.name}.offsets"

    @property
    def topics(self) -> list[str]:
        return list(dict.fromkeys(s.ref.topic for s in self.schemas))  # tables may share one

    @property
    def message_topic(self) -> str:
        """The source's logical messages: heartbeat ticks and authored events, read by the events lane."""
        return message_topic(self.name)

    @property
    def events_topics(self) -> list[str]:
        """What the events lane reads: the change topics and, beside them, the source's messages."""
        return [*self.topics, self.message_topic] if self.registry is not None else []

    @property
    def heartbeat_topic(self) -> str:
        """Where Debezium's heartbeat records go (no lane reads them)."""
        return f"__debezium-heartbeat.{self.name}"

    @property
    def event_topics(self) -> list[str]:
        """``events.<aggregate>`` of every declared event and generic table."""
        if self.registry is None:
            return []
        aggregates = {spec.aggregate for name in self.registry.names() for spec in self.registry.versions(name)}
        aggregates |= {generic_names(s.ref.schema, s.ref.table)[0] for s in self.schemas}  # TRUNCATE: every table
        return sorted({events_topic(a) for a in aggregates})

    def group(self, lane: str) -> str:
        """The lane's consumer group: ``cdc-mirror-<name>``; a new broker (``generation``) gets new
        groups, so a consumer of the previous broker still shutting down cannot commit into them."""
        return f"cdc-{lane}-{self.name}" + (f"-r{self.generation}" if self.generation else "")

    def start_consumers(
        self, bootstrap: str, clickhouse_url: str, dead_letters: DeadLetters, generation: int, publisher: Publisher
    ) -> None:
        """The mirror lane (a thread here) and the domain-event worker (its own process)."""
        assert self.sink is not None
        self.generation = generation
        self._dead_letters = dead_letters
        if self.snapshot_events is not None and self.registry is not None:  # events of copied rows, made here
            assert self._warehouse is not None
            self._event_sink = self.wiring.event_sink(self.registry, self.source, publisher, self._warehouse)
        stream = self.wiring.change_stream(bootstrap, self.group("mirror"), self.topics)
        linger_s = self.options.mirror_batch_wait_ms / 1000
        service = ConsumerService(stream, self.sink, dead_letters, "apply", linger_s=linger_s)  # type: ignore[arg-type]
        self.lane = Lane(f"mirror {self.name}", stream, service)
        self.lane.epoch = self.lane.wanted_epoch = self.epoch  # a new consumer starts past the truncations
        self.lane.start()
        if self.registry is not None:
            self._worker_config = WorkerConfig(
                source=self.name,
                source_dsn=self.options.worker_dsn,
                bootstrap=bootstrap,
                clickhouse_url=clickhouse_url,
                state_dir=str(self.options.state_dir),
                topics=tuple(self.topics),
                translators=self.translators,
                group=self.group("events"),
                snapshot_events=self.spec.snapshot_events,
                message_topic=self.message_topic,
                outbox_tables=self.spec.outbox_tables,
                outbox_prefix=self.spec.outbox_prefix,
            )
            self._start_events()

    def _start_events(self) -> None:
        assert self._worker_config is not None
        if self.events is not None:  # a restart: of several workers, the living ones stop too (one group again)
            self.events.stop()
        config = replace(self._worker_config, epoch=self.epoch)  # a restarted worker starts past the truncations
        self.events = self.wiring.events_worker(config)
        self.events.start()

    # -- the embedded broker's truncation (cdc.truncation) ----------------------------------------
    def rewind(self, epoch: int) -> None:
        """The broker's topics were truncated: every lane reads them from offset 0 again."""
        self.epoch = epoch
        if self.lane is not None:
            self.lane.wanted_epoch = epoch
        if self.events is not None:
            self.events.rewind(epoch)

    def paused(self) -> bool:
        """Debezium sends nothing: it holds (``hold`` is set) with nothing it sent still in flight, or
        it is not running at all (a restart starts paused while ``hold`` is set)."""
        if self.runner is None or not getattr(self.runner, "running", True):
            return self.runner is None or failure_of(self.runner) is not None
        gate = getattr(self.runner, "gate", None)
        return gate is not None and gate.paused.is_set()

    def rewound(self) -> bool:
        """Every lane has rewound for the latest truncation (only then may Debezium send again)."""
        lane_done = self.lane is None or self.lane.epoch == self.epoch
        events_done = self.events is None or self.events.epoch == self.epoch
        return lane_done and events_done

    def stop_consumers(self, say: Say, timeout: float = 30.0) -> None:
        """Stop the mirror lane (its current batch finishes) and the events worker."""
        lane, events, self.lane, self.events = self.lane, self.events, None, None
        if lane is not None:
            step(say, f"stopping the {lane.name} consumer", lambda: lane.stop(timeout))
        if events is not None:
            step(say, f"stopping the domain-event consumer ({self.name})", lambda: events.stop(timeout))

    def start_debezium(self, bootstrap: str, salt: str) -> None:
        params = self.source.connection_params()
        offsets = self._offsets_file
        offsets.parent.mkdir(parents=True, exist_ok=True)
        copied = set(self.load.schemas) if self.load is not None else set()
        conn = ConnectorSettings(
            source=self.name,
            host=str(params["host"]),
            port=int(params["port"]),
            user=str(params["user"]),
            password=str(params["password"]),
            dbname=str(params["dbname"]),
            tables=tuple(s.ref.display for s in self.schemas),
            offset_file=offsets,
            heartbeat_interval_ms=self.options.heartbeat_interval_ms,
            heartbeat_action_query=HEARTBEAT_QUERY,
            message_prefixes=self._message_prefixes(),
            exclude_columns=self.spec.exclude_columns,
            publication_autocreate="disabled",  # made in prepare()
            snapshot_tables=tuple(s.ref.display for s in self.schemas if s.ref.qualified not in copied)
            if copied
            else None,
            generated_columns=tuple((s.ref.schema, s.ref.table, c) for s in self.schemas for c in s.generated),
            mask_hash=tuple(r.column for r in self.spec.mask if r.method == "hash"),
            mask_redact=tuple(r.column for r in self.spec.mask if r.method == "redact"),
            mask_salt=salt,
        )
        generation = self.generation
        gate = DurabilityGate(
            lambda: self.durable_offsets(generation),
            lambda: set(self.topics) | set(self.events_topics),
            self.options.max_in_flight,
            pause=self.hold,
        )
        self._debezium = (bootstrap, salt)
        if self.load is not None:  # at a first start, the slot with the snapshot the copy reads
            every = {s.ref.qualified for s in self.schemas}
            export_snapshot(self.load, self.source, self.slot, every, self._offsets_file.exists())
        self.runner = self.wiring.runner(conn, bootstrap, gate)
        self.runner.start()
        if self.load is not None:
            self.load.start(self._slot_ready)
        if self.snapshot_events is not None:
            self.snapshot_events.start()

    def _slot_ready(self) -> bool:
        try:
            return self.source.slot_flushed_lsn(self.slot) is not None
        except CdcError:
            return False

    def stop_debezium(self, say: Say, drain_timeout: float | None = None, timeout: float = 30.0) -> int:
        """Stop capturing; with ``drain_timeout`` first wait that long for what was sent to become
        durable. Returns the records that were not (they stay in the slot: re-read at the next start)."""
        if self.load is not None:
            self.load.stop()
        if self.snapshot_events is not None:
            self.snapshot_events.stop()
        runner, self.runner = self.runner, None
        if runner is None:
            return 0
        left = runner.drain(drain_timeout) if drain_timeout is not None else 0
        step(say, f"stopping Debezium ({self.name})", lambda: runner.stop(timeout))
        return left

    def durable_offsets(self, generation: int) -> dict[TopicPartition, int]:
        """Per partition, the next offset every lane of this source has committed: below it, every
        change is in ClickHouse (mirror and event store). Read by Debezium's polling thread. Empty for
        a Debezium of an earlier broker: the offsets of the lanes now running are not its offsets."""
        if generation != self.generation:
            return {}
        lanes: list[tuple[set[str], Mapping[TopicPartition, int]]] = []
        if self.lane is not None:  # a copy: the lane thread updates it
            lanes.append((set(self.topics), dict(self.lane.service.stats.committed)))
        if self.events is not None:  # a report is replaced whole, never changed
            lanes.append((set(self.events_topics), self.events.report.stats.committed))
        if not lanes:
            return {}
        partitions = {tp for _, committed in lanes for tp in committed}
        return {tp: min(c.get(tp, 0) for topics, c in lanes if tp[0] in topics) for tp in partitions}

    def _message_prefixes(self) -> tuple[str, ...]:
        """The logical messages Debezium forwards: heartbeat ticks (the events lane's clock on an idle
        source) and authored events, when an events lane reads them; none otherwise."""
        if self.registry is None:
            return ()
        return (HEARTBEAT_PREFIX, self.spec.outbox_prefix) if self.spec.outbox_prefix else (HEARTBEAT_PREFIX,)

    def outage(self) -> str | None:
        """The outage a lane is retrying right now (the warehouse or the broker down), if any."""
        lane_error = (self.lane.error or self.lane.service.stats.last_error) if self.lane is not None else None
        events_error = self.events.report.stats.last_error if self.events is not None else None
        return lane_error or events_error

    def caught_up_to(self, target: int) -> bool:
        """Every change committed at or before ``target`` (an LSN) is queryable in ClickHouse."""
        if self.runner is None:
            return False
        try:
            flushed = self.source.slot_flushed_lsn(self.slot) or 0
        except CdcError:
            return False  # the source is unreachable for now: not known to be caught up
        if not (self.runner.snapshot_completed() and flushed >= target):
            return False
        if self.load is not None and not self.load.done:
            return False  # the copy path is still loading existing rows
        if self.snapshot_events is not None and self.snapshot_events.pending:
            return False  # ... or translating them
        if self.runner.holds_back:
            return True  # the slot confirms only what every lane made durable
        # Kafka Connect moves the slot once Kafka has a record: the lanes must also reach the log ends
        since = self._flushed_at = self._flushed_at or time.monotonic()
        mirror = self.lane.service.stats if self.lane is not None else None
        reports = [mirror] + ([self.events.report.stats] if self.events is not None else [])
        return all(st is not None and _fetched_all(st, self.topics, since) for st in reports)

    # -- supervise --------------------------------------------------------------------------------
    def supervise(self) -> None:
        """Raise when a lane stopped for good (a bug); restart a dead events worker or a failed Debezium."""
        self.supervisor.check(self.lane, self.events, self.runner, self._start_events, self._restart_debezium)

    def _restart_debezium(self) -> None:
        assert self._debezium is not None
        self.stop_debezium(lambda text: log.warning("%s", text))
        self.start_debezium(*self._debezium)

    def note(self, text: str) -> None:
        self.supervisor.note(text)


def _fetched_all(stats: Stats, topics: list[str], since: float) -> bool:
    """A fetch started after ``since`` saw every change topic, and the lane committed up to its log ends
    (from fetch responses: Tansu's ListOffsets answer is not the log end)."""
    if stats.highwater_at <= since or not set(topics) <= {t for t, _ in stats.highwater}:
        return False
    return all(stats.committed.get(tp, 0) >= end for tp, end in stats.highwater.items() if end > 0)


__all__ = ["SourceCapture"]
