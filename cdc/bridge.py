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
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cdc.adapters.clickhouse import ClickHouseWarehouse, connect_warehouse, open_embedded, warm_up
from cdc.adapters.kafka import KafkaPublisher, ensure_topics
from cdc.capture import CaptureRunner, SourceCapture
from cdc.config import SourceSpec
from cdc.consume.dead_letters import DEAD_LETTER_TOPIC, DeadLetters
from cdc.consume.loop import ConsumerService, Stats
from cdc.domain.changes import TableSchema
from cdc.embedded.broker import TansuBroker
from cdc.embedded.chdb_server import ChdbHttpServer
from cdc.embedded.endpoint import clear_endpoint, find_endpoint, store_lock_holder, warehouse_data_dir, write_endpoint
from cdc.errors import CdcError, ConfigError, StackError
from cdc.events.store import ClickHouseEventStore
from cdc.events.worker import WorkerReport
from cdc.settings import PortBook, Settings
from cdc.statefiles import mask_salt, remember_translators
from cdc.status import Thresholds
from cdc.status.observer import Observer
from cdc.status.server import MetricsServer, clear_status_url, write_status_url

log = logging.getLogger(__name__)
Say = Callable[[str], None]


SILENT_AFTER_S = 30.0  # the events worker reports several times a second; this long silent means stuck


def refuse_second_bridge(state_dir: Path) -> None:
    """One bridge per state dir: raise if another one serves this state dir's warehouse."""
    running = find_endpoint(state_dir)
    if running:
        raise StackError(
            f"a bridge already runs on state dir {state_dir} (ClickHouse endpoint {running}); "
            "stop it first, or pass another --state-dir"
        )


class Bridge:
    """One running bridge: the warehouse, the broker, and per source its Debezium and consumers."""

    def __init__(self, settings: Settings, specs: SourceSpec | Sequence[SourceSpec], say: Say = print) -> None:
        self.settings = settings
        self.say = say
        specs = [specs] if isinstance(specs, SourceSpec) else list(specs)
        if not specs:
            raise ConfigError("no source to capture")
        self.captures = [SourceCapture(settings, spec, say) for spec in specs]
        self.ports = PortBook(settings.state_dir)
        self.clickhouse_url = ""
        self.bootstrap = ""
        self._server: ChdbHttpServer | None = None
        self._broker: TansuBroker | None = None
        self._warehouse: ClickHouseWarehouse | None = None
        self._publisher: KafkaPublisher | None = None
        self._status: MetricsServer | None = None
        self.observer = Observer(self)
        self._stopping = threading.Event()

    # -- the first (often only) source, for the single-source callers --------------------------------
    @property
    def primary(self) -> SourceCapture:
        return self.captures[0]

    @property
    def name(self) -> str:
        return self.primary.name

    @property
    def schemas(self) -> list[TableSchema]:
        return self.primary.schemas

    @property
    def topics(self) -> list[str]:
        return [t for c in self.captures for t in c.topics]

    # -- start -----------------------------------------------------------------------------------
    def start(self) -> None:
        """Start every part; on failure stop what started and re-raise."""
        try:
            self._start_warehouse()
            self._start_broker()
            self._prepare_sources()
            self._start_consumers()
            self._start_debezium()
            self._start_status()
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
            raise StackError(
                f"the ClickHouse store in {data_dir} is in use by another process ({holder}); "
                "stop it first, or pass another --state-dir"
            )
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

    def _prepare_sources(self) -> None:
        for capture in self.captures:
            capture.prepare(self.warehouse)
        names = [c.name for c in self.captures]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(
                f"two sources are named {', '.join(twice)}: give each a distinct name "
                "(it names topics, slots and the ClickHouse database)"
            )
        translators = tuple(dict.fromkeys(t for c in self.captures if c.registry is not None for t in c.translators))
        remember_translators(self.settings.state_dir, translators)
        ensure_topics(self.bootstrap, self.topics + self.event_topics)

    @property
    def event_topics(self) -> list[str]:
        """``events.<aggregate>`` of every source's declared events and generic tables, and the dead letters."""
        return sorted({t for c in self.captures for t in c.event_topics}) + [DEAD_LETTER_TOPIC]

    def _start_consumers(self) -> None:
        self._publisher = KafkaPublisher(self.bootstrap, "cdc-bridge")  # events and dead letters
        dead_letters = DeadLetters(self.warehouse, self._publisher)
        if any(c.registry is not None for c in self.captures):
            ClickHouseEventStore(self.warehouse)  # readers find the store even before the first event
        for capture in self.captures:
            capture.start_consumers(self.bootstrap, self.clickhouse_url, dead_letters, self._stopping)

    def _start_debezium(self) -> None:
        salt = mask_salt(self.settings) if any(r.method == "hash" for c in self.captures for r in c.spec.mask) else ""
        for capture in self.captures:
            capture.start_debezium(self.bootstrap, salt, self.settings.heartbeat_interval_ms)

    def _start_status(self) -> None:
        """Serve /status and /metrics on loopback; `cdc status` finds the URL in the state dir."""
        thresholds = Thresholds(max_retained_wal_bytes=self.settings.max_retained_wal_bytes)
        self._status = MetricsServer(self.ports.port("status"), self.observer.snapshot, thresholds)
        self._status.start()
        write_status_url(self.settings.state_dir, self._status.url)

    @property
    def status_url(self) -> str:
        return self._status.url if self._status is not None else ""

    # -- observe ---------------------------------------------------------------------------------
    @property
    def service(self) -> ConsumerService:
        """The first source's mirror consumer."""
        return self.primary.service

    @property
    def services(self) -> list[ConsumerService]:
        return [c.lane.service for c in self.captures if c.lane is not None]

    @property
    def events(self) -> WorkerReport | None:
        """The first source's domain-event consumer report (None when it does not run)."""
        return self.primary.events_report

    @property
    def consumer_error(self) -> str | None:
        errors = [e for c in self.captures for e in c.errors(SILENT_AFTER_S, self.settings.log_dir)]
        return "; ".join(errors) or None

    @property
    def runner(self) -> CaptureRunner:
        assert self.primary.runner is not None
        return self.primary.runner

    @property
    def records_produced(self) -> int:
        return sum(c.runner.records_produced for c in self.captures if c.runner is not None)

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
        """Raise if a part failed for good (a Debezium connector stopped with an error)."""
        for capture in self.captures:
            capture.check()

    def _all_stats(self) -> list[tuple[Stats, list[str]]]:
        out: list[tuple[Stats, list[str]]] = []
        for c in self.captures:
            if c.lane is not None:
                out.append((c.lane.service.stats, c.topics))
            if c.events is not None:
                out.append((c.events.stats, c.topics))
        return out

    def applied_all_fetched_since(self, since: float) -> bool:
        """True when, for every consumer, a fetch started after ``since`` saw log ends all committed.

        Log ends come from fetch responses (high watermarks): Tansu's ListOffsets answer is not
        the log end, so it is not used.
        """
        stats = self._all_stats()
        return bool(stats) and all(_caught_up(st, topics, since) for st, topics in stats)

    def wait_caught_up(
        self, target_lsn: int | dict[str, int], timeout: float, tick: Callable[[], None] | None = None
    ) -> bool:
        """Wait until every change committed at or before the target LSN is queryable in ClickHouse.

        ``target_lsn`` is one LSN (the first source) or one per source name. Debezium's slot
        position passing it means every earlier change was produced (offsets are stored only for
        records Kafka acknowledged); then the consumers must have committed up to the log ends
        seen by a fetch made after that moment.
        """
        targets = target_lsn if isinstance(target_lsn, dict) else {self.name: target_lsn}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            if all(self._captured_up_to(c, targets.get(c.name, 0)) for c in self.captures):
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

    @staticmethod
    def _captured_up_to(capture: SourceCapture, target: int) -> bool:
        assert capture.runner is not None
        flushed = capture.source.slot_flushed_lsn(capture.slot) or 0
        return capture.runner.snapshot_completed() and flushed >= target

    # -- stop ------------------------------------------------------------------------------------
    def stop(self, drain: bool = True, drain_timeout: float = 120.0) -> None:
        """Stop in reverse order; with ``drain`` apply everything already in Kafka first.

        Every step runs even if an earlier one fails (or a second Ctrl-C arrives): a failed
        step is logged, and nothing is left running.
        """
        if self._status is not None:
            self._step("stopping the status server", self._stop_status)
        for c in self.captures:
            self._step(f"stopping Debezium ({c.name or 'source'})", c.runner.stop if c.runner else None)
        lanes = [c.lane for c in self.captures if c.lane is not None]
        if drain and any(lane.thread.is_alive() for lane in lanes):
            self._step("draining Kafka into ClickHouse", lambda: self._drain(drain_timeout))
        self._stopping.set()
        for lane in lanes:
            if lane.thread.is_alive():
                self._step(f"stopping the {lane.name} consumer", functools.partial(lane.thread.join, 30))
            self._step(f"closing the {lane.name} Kafka consumer", lane.stream.close)
        for c in self.captures:
            self._step(f"stopping the domain-event consumer ({c.name})", c.events.stop if c.events else None)
            c.runner = c.events = c.lane = None
        self._step("closing the Kafka producer", self._publisher.close if self._publisher else None)
        self._step("stopping the broker", self._broker.stop if self._broker else None)
        if self._server is not None:
            self._step("stopping the ClickHouse endpoint", self._stop_server)
        self._step("closing the warehouse client", self._warehouse.close if self._warehouse else None)
        self._broker = self._server = self._publisher = None

    def _stop_status(self) -> None:
        assert self._status is not None
        clear_status_url(self.settings.state_dir, self._status.url)
        self._status.stop()
        self._status = None

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
            self.say(
                "warning: stopped before every change in Kafka reached ClickHouse (drain timed out after "
                f"{timeout:.0f} s); with the in-memory embedded broker those changes are not in the mirror"
            )


def _caught_up(stats: Stats, topics: list[str], since: float) -> bool:
    if stats.highwater_at <= since or not set(topics) <= {t for t, _ in stats.highwater}:
        return False  # not every change topic assigned and fetched yet
    return all(stats.committed.get(tp, 0) >= end for tp, end in stats.highwater.items() if end > 0)
