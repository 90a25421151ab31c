"""Composition root of the bridge process: wires adapters to the consume loop and Debezium.

Start order: warehouse (chDB + HTTP endpoint, or an external server) -> broker (Tansu or
external Kafka) -> source checks and table selection -> ClickHouse objects and topics ->
mirror consumers -> Debezium. Stop runs the other way and *drains*: Debezium stops
first (its offsets cover only what Kafka acknowledged), then the consumers apply
everything left in Kafka before the broker goes away — the embedded broker keeps data
in memory only, so draining is what makes a stop/start lose nothing.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cdc.adapters.chdb_server import ChdbHttpServer
from cdc.adapters.clickhouse import ClickHouseWarehouse, connect_warehouse, open_embedded, warm_up
from cdc.adapters.endpoint import (
    clear_endpoint,
    find_endpoint,
    store_lock_holder,
    warehouse_data_dir,
    write_endpoint,
)
from cdc.adapters.kafka import KafkaChangeStream, KafkaPublisher, ensure_topics
from cdc.adapters.postgres import PostgresSource, redact_dsn
from cdc.adapters.tansu import TansuBroker
from cdc.debezium.config import ConnectorSettings, default_slot_name, embedded_properties
from cdc.debezium.engine import DebeziumRunner
from cdc.domain.changes import TableSchema
from cdc.domain.events import EventDefinitionError, EventRegistry, load_modules
from cdc.errors import CdcError, ConfigError, StackError
from cdc.events.store import ClickHouseEventStore
from cdc.events.worker import EventsWorker, WorkerConfig, WorkerReport
from cdc.mirror.sink import ClickHouseMirrorSink
from cdc.ports import Sink
from cdc.service import DEAD_LETTER_TOPIC, ConsumerService, DeadLetters, Stats
from cdc.settings import PortBook, Settings
from cdc.translate import generic_names

log = logging.getLogger(__name__)
Say = Callable[[str], None]


TRANSLATORS_FILE = "translators.json"
SILENT_AFTER_S = 30.0  # the events worker reports several times a second; this long silent means stuck


def remember_translators(state_dir: Path, modules: tuple[str, ...]) -> None:
    """Record the bridge's translator modules so `cdc events`/`cdc dlq` default to the same ones."""
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / TRANSLATORS_FILE).write_text(json.dumps({"translators": list(modules)}) + "\n")


def remembered_translators(state_dir: Path) -> tuple[str, ...]:
    try:
        return tuple(json.loads((state_dir / TRANSLATORS_FILE).read_text())["translators"])
    except (OSError, ValueError, KeyError, TypeError):
        return ()


class _Lane:
    """One consumer group on the change topics, run on its own thread with backoff on outages."""

    def __init__(self, name: str, stream: KafkaChangeStream, service: ConsumerService,
                 stopping: threading.Event) -> None:
        self.name = name
        self.stream = stream
        self.service = service
        self.error: str | None = None
        self._stopping = stopping
        self.thread = threading.Thread(target=self._consume, name=f"{name}-consumer", daemon=True)

    def _consume(self) -> None:
        delay = 0.5
        while not self._stopping.is_set():
            try:
                self.service.run_once()
                delay = 0.5
                self.error = None
            except CdcError as e:
                self.error = str(e)
                log.warning("%s consumer: %s (retrying in %.1fs)", self.name, e, delay)
                self._stopping.wait(delay)
                delay = min(delay * 2, 30.0)


@dataclass(frozen=True)
class SourceSpec:
    """One source database to capture."""

    dsn: str
    name: str | None = None
    tables: tuple[str, ...] = ()


def refuse_second_bridge(state_dir: Path) -> None:
    """One bridge per state dir: raise if another one serves this state dir's warehouse."""
    running = find_endpoint(state_dir)
    if running:
        raise StackError(f"a bridge already runs on state dir {state_dir} (ClickHouse endpoint {running}); "
                         "stop it first, or pass another --state-dir")


class Bridge:
    """One running bridge: a source, the broker, the warehouse, Debezium and the mirror consumers."""

    def __init__(self, settings: Settings, spec: SourceSpec, say: Say = print) -> None:
        self.settings = settings
        self.spec = spec
        self.say = say
        self.source = PostgresSource(spec.dsn)
        self.ports = PortBook(settings.state_dir)
        self.clickhouse_url = ""
        self.bootstrap = ""
        self.name = ""
        self.schemas: list[TableSchema] = []
        self._server: ChdbHttpServer | None = None
        self._broker: TansuBroker | None = None
        self._warehouse: ClickHouseWarehouse | None = None
        self._lanes: list[_Lane] = []
        self._publisher: KafkaPublisher | None = None
        self._runner: DebeziumRunner | None = None
        self.registry: EventRegistry | None = None
        self._events: EventsWorker | None = None
        self._stopping = threading.Event()

    # -- start -----------------------------------------------------------------------------------
    def start(self) -> None:
        """Start every part; on failure stop what started and re-raise."""
        try:
            self._start_warehouse()
            self._start_broker()
            self._prepare_source()
            self._start_consumers()
            self._start_debezium()
        except BaseException:
            self.stop(drain=False)
            raise

    def _start_warehouse(self) -> None:
        warm_up()
        if self.settings.clickhouse_url:
            self._warehouse = connect_warehouse(self.settings.clickhouse_url, self.settings.state_dir)
            self.clickhouse_url = self._warehouse.where
            return
        state_dir = self.settings.state_dir
        data_dir = warehouse_data_dir(state_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        refuse_second_bridge(state_dir)
        holder = store_lock_holder(data_dir)
        if holder:
            raise StackError(f"the ClickHouse store in {data_dir} is in use by another process ({holder}); "
                             "stop it first, or pass another --state-dir")
        server = ChdbHttpServer(data_dir, port=self.ports.port("clickhouse"))
        server.start()
        self._server = server  # only now is the endpoint ours to clear on stop
        self._warehouse = open_embedded(state_dir)
        self.clickhouse_url = server.url
        write_endpoint(state_dir, self.clickhouse_url)

    def _start_broker(self) -> None:
        if self.settings.kafka_bootstrap:
            self.bootstrap = self.settings.kafka_bootstrap
            return
        self.settings.log_dir.mkdir(parents=True, exist_ok=True)
        self._broker = TansuBroker(self.ports.port("kafka"), self.settings.log_dir / "tansu.log")
        self._broker.start()
        self.bootstrap = self._broker.bootstrap_servers

    def _prepare_source(self) -> None:
        self.source.check_logical_replication()
        params = self.source.connection_params()
        self.name = self.spec.name or params["dbname"]
        schemas, excluded = self.source.select_tables(self.spec.tables or None, self.name)
        for ex in excluded:
            self.say(f"warning: {ex.reason}")
        if not schemas:
            raise ConfigError(f"nothing to capture in {redact_dsn(self.spec.dsn)}: no table with a usable key")
        self.schemas = schemas
        if self.settings.events:
            try:
                self.registry = load_modules(self.settings.translators)
            except EventDefinitionError as e:
                raise ConfigError(f"translators: {e}") from None
            remember_translators(self.settings.state_dir, self.settings.translators)
        assert self._warehouse is not None
        self._sink = ClickHouseMirrorSink(self._warehouse, self.source)
        self._sink.prepare(schemas)
        ensure_topics(self.bootstrap, self.topics + self.event_topics)

    @property
    def topics(self) -> list[str]:
        return [s.ref.topic for s in self.schemas]

    @property
    def event_topics(self) -> list[str]:
        """``events.<aggregate>`` of every declared event and generic table, and the dead letters."""
        if self.registry is None:
            return [DEAD_LETTER_TOPIC]
        aggregates = {spec.aggregate for name in self.registry.names() for spec in self.registry.versions(name)}
        aggregates |= {generic_names(s.ref.schema, s.ref.table)[0] for s in self.schemas
                       if s.ref.qualified not in self.registry.translators}
        return sorted(f"events.{a}" for a in aggregates) + [DEAD_LETTER_TOPIC]

    def _start_consumers(self) -> None:
        assert self._warehouse is not None
        self._publisher = KafkaPublisher(self.bootstrap, f"cdc-{self.name}")  # events and dead letters
        dead_letters = DeadLetters(self._warehouse, self._publisher)
        self._add_lane("mirror", self._sink, dead_letters, "apply")
        for lane in self._lanes:
            lane.thread.start()
        if self.registry is not None:
            ClickHouseEventStore(self._warehouse)  # readers find the store even before the first event
            self._events = EventsWorker(WorkerConfig(
                source=self.name, source_dsn=self.spec.dsn, bootstrap=self.bootstrap,
                clickhouse_url=self.clickhouse_url, state_dir=str(self.settings.state_dir), topics=tuple(self.topics),
                translators=self.settings.translators))
            self._events.start()

    def _add_lane(self, name: str, sink: Sink, dead: DeadLetters, stage: str) -> None:
        stream = KafkaChangeStream(self.bootstrap, f"cdc-{name}-{self.name}", self.topics)
        self._lanes.append(_Lane(name, stream, ConsumerService(stream, sink, dead, stage), self._stopping))

    def _start_debezium(self) -> None:
        params = self.source.connection_params()
        offsets = self.settings.state_dir / "debezium" / f"{self.name}.offsets"
        offsets.parent.mkdir(parents=True, exist_ok=True)
        conn = ConnectorSettings(
            source=self.name, host=params["host"], port=int(params["port"]), user=params["user"],
            password=params["password"], dbname=params["dbname"],
            tables=tuple(s.ref.qualified for s in self.schemas), offset_file=offsets,
            heartbeat_interval_ms=1000,
        )
        self._runner = DebeziumRunner(embedded_properties(conn), self.bootstrap,
                                      self.settings.log_dir / "debezium.log")
        self._runner.start()

    # -- observe ---------------------------------------------------------------------------------
    @property
    def service(self) -> ConsumerService:
        """The mirror consumer (its counters are the status line's)."""
        assert self._lanes
        return self._lanes[0].service

    @property
    def services(self) -> list[ConsumerService]:
        return [lane.service for lane in self._lanes]

    @property
    def events(self) -> WorkerReport | None:
        """The domain-event consumer's latest report (None when it does not run)."""
        return self._events.report if self._events is not None else None

    @property
    def consumer_error(self) -> str | None:
        errors = [f"{lane.name}: {lane.error or lane.service.stats.last_error}" for lane in self._lanes
                  if lane.error or lane.service.stats.last_error]
        if self.events is not None and (self.events.error or self.events.stats.last_error):
            errors.append(f"events: {self.events.error or self.events.stats.last_error}")
        if self._events is not None and self._events.alive() and self._events.silent_for() > SILENT_AFTER_S:
            errors.append(f"events: the consumer has not reported for {self._events.silent_for():.0f} s "
                          f"(see {self.settings.log_dir / 'events.log'})")
        return "; ".join(errors) or None

    @property
    def runner(self) -> DebeziumRunner:
        assert self._runner is not None
        return self._runner

    @property
    def warehouse(self) -> ClickHouseWarehouse:
        assert self._warehouse is not None
        return self._warehouse

    def dead_letter_count(self) -> int | None:
        """Messages in ``cdc.dead_letters`` (routed by a consumer or by ClickHouse's parse views)."""
        try:
            return int(self.warehouse.query("SELECT uniqExact(topic, partition, offset) FROM cdc.dead_letters")[0][0])
        except CdcError as e:
            log.warning("cannot count dead letters: %s", e)
            return None

    def check(self) -> None:
        """Raise if a part failed for good (Debezium stopped with an error)."""
        if self._runner is not None:
            self._runner.raise_if_failed()
        if self._events is not None:
            self._events.check()

    def applied_all_fetched_since(self, since: float) -> bool:
        """True when, for every consumer, a fetch started after ``since`` saw log ends all committed.

        Log ends come from fetch responses (high watermarks): Tansu's ListOffsets answer is not
        the log end, so it is not used.
        """
        stats = [lane.service.stats for lane in self._lanes]
        if self._events is not None:
            stats.append(self._events.stats)
        return bool(self._lanes) and all(_caught_up(st, self.topics, since) for st in stats)

    def wait_caught_up(self, target_lsn: int, timeout: float, tick: Callable[[], None] | None = None) -> bool:
        """Wait until every change committed at or before ``target_lsn`` is queryable in ClickHouse.

        Debezium's slot position passing ``target_lsn`` means every earlier change was produced
        (offsets are stored only for records Kafka acknowledged); then the consumers must have
        committed up to the log ends seen by a fetch made after that moment.
        """
        deadline = time.monotonic() + timeout
        slot = default_slot_name(self.name)
        while time.monotonic() < deadline:
            self.check()
            flushed = self.source.slot_flushed_lsn(slot) or 0
            if self.runner.snapshot_completed() and flushed >= target_lsn:
                since = time.monotonic()
                while time.monotonic() < deadline:
                    if self.applied_all_fetched_since(since):
                        return True
                    self.check()
                    if tick:
                        tick()
                    time.sleep(0.1)
                return False
            if tick:
                tick()
            time.sleep(0.2)
        return False

    # -- stop ------------------------------------------------------------------------------------
    def stop(self, drain: bool = True, drain_timeout: float = 120.0) -> None:
        """Stop in reverse order; with ``drain`` apply everything already in Kafka first.

        Every step runs even if an earlier one fails (or a second Ctrl-C arrives): a failed
        step is logged, and nothing is left running.
        """
        self._step("stopping Debezium", self._runner.stop if self._runner else None)
        if drain and any(lane.thread.is_alive() for lane in self._lanes):
            self._step("draining Kafka into ClickHouse", lambda: self._drain(drain_timeout))
        self._stopping.set()
        for lane in self._lanes:
            if lane.thread.is_alive():
                self._step(f"stopping the {lane.name} consumer", functools.partial(lane.thread.join, 30))
            self._step(f"closing the {lane.name} Kafka consumer", lane.stream.close)
        self._step("stopping the domain-event consumer", self._events.stop if self._events else None)
        self._step("closing the Kafka producer", self._publisher.close if self._publisher else None)
        self._step("stopping the broker", self._broker.stop if self._broker else None)
        if self._server is not None:
            self._step("stopping the ClickHouse endpoint", self._stop_server)
        self._step("closing the warehouse client", self._warehouse.close if self._warehouse else None)
        self._runner = self._broker = self._server = self._publisher = self._events = None
        self._lanes = []

    def _stop_server(self) -> None:
        clear_endpoint(self.settings.state_dir)
        if self._server is not None:
            self._server.stop()

    def _step(self, what: str, action: Callable[[], object] | None) -> None:
        if action is None:
            return
        try:
            action()
        except (Exception, KeyboardInterrupt) as e:  # keep stopping the rest
            log.error("%s failed: %s", what, e, exc_info=True)
            self.say(f"warning: {what} failed: {e}")

    def _drain(self, timeout: float) -> None:
        since = time.monotonic()  # Debezium is stopped: nothing new reaches Kafka after this
        deadline = since + timeout
        while time.monotonic() < deadline and not self.applied_all_fetched_since(since):
            time.sleep(0.1)
        if not self.applied_all_fetched_since(since):
            self.say("warning: stopped before every change in Kafka reached ClickHouse (drain timed out after "
                     f"{timeout:.0f} s); with the in-memory embedded broker those changes are not in the mirror")



def _caught_up(stats: Stats, topics: list[str], since: float) -> bool:
    if stats.highwater_at <= since or not set(topics) <= {t for t, _ in stats.highwater}:
        return False  # not every change topic assigned and fetched yet
    return all(stats.committed.get(tp, 0) >= end for tp, end in stats.highwater.items() if end > 0)
