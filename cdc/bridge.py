"""The running bridge: starts, supervises and stops the parts the composition root hands it.

Start order: warehouse (chDB + HTTP endpoint, or an external server) -> broker (Tansu or
external Kafka) -> source checks and table selection -> ClickHouse objects and topics ->
lanes (mirror consumer, events worker) -> Debezium -> status server.

No committed change is lost, whatever stops: Debezium's stored position (and the replication
slot's) moves only past changes every lane has made durable in ClickHouse (see
:mod:`cdc.debezium.gate`), so the embedded broker's memory is only a buffer. A clean stop
*drains*: Debezium sends nothing new, the lanes store what was sent, Debezium stores that
position; what a drain timeout leaves behind stays in the slot and is re-read at the next start.

While it runs, :meth:`Bridge.supervise` heals what it can: a broker that died is restarted and
every source re-streams from its durable position; a dead events worker or a failed Debezium is
restarted with backoff. A lane stopped by a bug stops the bridge, loudly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from cdc.capture import SourceCapture
from cdc.capture_view import CaptureView
from cdc.consume.dead_letters import DEAD_LETTER_TOPIC, DeadLetters
from cdc.consume.loop import Stats
from cdc.erasures import Erasures
from cdc.errors import CdcError, ConfigError
from cdc.parities import Parities
from cdc.ports import Publisher
from cdc.resyncs import Resyncs
from cdc.status import Thresholds
from cdc.status.observer import PENDING_DEAD_LETTERS, Observer, SourceView
from cdc.supervision import step
from cdc.table_additions import TableAdditions
from cdc.truncation import Truncator
from cdc.wiring import BridgeWiring, ClosableWarehouse, Service, StatusServer
from pipelines.freshness import ReportLag, report_lags

log = logging.getLogger(__name__)
Say = Callable[[str], None]

SILENT_AFTER_S = 30.0  # the events worker reports several times a second; this long silent means stuck


class Bridge:
    """One running bridge: the warehouse, the broker, and per source its Debezium and lanes."""

    def __init__(self, wiring: BridgeWiring, captures: Sequence[SourceCapture], say: Say = print) -> None:
        if not captures:
            raise ConfigError("no source to capture")
        self.wiring = wiring
        self.captures = list(captures)
        self.views = [CaptureView(c) for c in self.captures]
        self.say = say
        self.clickhouse_url = ""
        self.bootstrap = ""
        self._warehouse: ClosableWarehouse | None = None
        self._publisher: Publisher | None = None
        self._status: StatusServer | None = None
        self._started: list[Service] = []
        self.truncator: Truncator | None = None
        self.generation = 0  # embedded brokers replaced so far
        self.observer = Observer(self)
        self.resyncs = Resyncs(self.captures, lambda: self._warehouse)  # cdc resync TABLE
        self.parities = Parities(self.captures, lambda: self._warehouse, lambda: self._salt)  # cdc verify
        self.additions = TableAdditions(self.captures, self._restart_capture, wiring.state_dir)  # cdc add-table
        self.erasures = Erasures(  # cdc erase, and deletes that erase
            self.captures, lambda: self._warehouse, lambda: self.truncator, wiring.rebuild_reports
        )
        self._dead_letters: DeadLetters | None = None
        self._salt = ""

    # -- the first (often only) source, for the single-source callers --------------------------------
    @property
    def primary(self) -> SourceCapture:
        return self.captures[0]

    @property
    def name(self) -> str:
        return self.primary.name

    @property
    def topics(self) -> list[str]:
        return [t for c in self.captures for t in c.topics]

    # -- start -----------------------------------------------------------------------------------
    def start(self) -> None:
        """Start every part; on failure stop what started and re-raise."""
        try:
            self._start_service(self.wiring.warehouse)
            self.clickhouse_url = self.wiring.warehouse_url()
            self._warehouse = self.wiring.warehouse_client()
            self._start_service(self.wiring.broker)
            self.bootstrap = self.wiring.bootstrap()
            self._prepare_sources()
            self._start_pipelines()
            self._start_truncation()
            self._start_status()
        except BaseException:
            self.stop(drain=False)
            raise

    def _start_service(self, service: Service) -> None:
        service.start()
        self._started.append(service)

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
        self.wiring.remember_translators(translators)
        if any(c.registry is not None for c in self.captures):
            self.wiring.prepare_event_store(self.warehouse)  # readers find the store even before the first event

    @property
    def event_topics(self) -> list[str]:
        """``events.<aggregate>`` of every source's declared events and generic tables, the dead letters,
        and the sources' message topics (heartbeat ticks and authored events: one partition, like these)."""
        messages = [c.message_topic for c in self.captures if c.registry is not None]
        return sorted({t for c in self.captures for t in c.event_topics}) + [DEAD_LETTER_TOPIC, *messages]

    def _start_pipelines(self) -> None:
        """Topics, then every source's lanes, then its Debezium (which waits for the lanes' commits)."""
        self._ensure_topics(self.topics, self.event_topics)
        self._publisher = self.wiring.publisher(self.bootstrap, "cdc-bridge")  # events and dead letters
        dead_letters = self._dead_letters = DeadLetters(self.warehouse, self._publisher)
        for capture in self.captures:
            capture.start_consumers(self.bootstrap, self.clickhouse_url, dead_letters, self.generation, self._publisher)
        hashed = any(r.method == "hash" for c in self.captures for r in c.spec.mask)
        salt = self._salt = self.wiring.mask_salt() if hashed else ""
        for capture in self.captures:
            capture.start_debezium(self.bootstrap, salt)

    def _restart_capture(self, capture: SourceCapture, while_stopped: Callable[[], None]) -> None:
        """Restart one source's Debezium and lanes, running ``while_stopped`` in between (its table list
        changes there); the other sources go on."""
        assert self._dead_letters is not None and self._publisher is not None
        capture.stop_debezium(self.say, drain_timeout=10.0)
        capture.stop_consumers(self.say)
        while_stopped()
        messages = [capture.message_topic] if capture.registry is not None else []
        self._ensure_topics(capture.topics, [*capture.event_topics, *messages])
        capture.start_consumers(
            self.bootstrap, self.clickhouse_url, self._dead_letters, self.generation, self._publisher
        )
        capture.start_debezium(self.bootstrap, self._salt)

    def _ensure_topics(self, change_topics: Sequence[str], others: Sequence[str]) -> None:
        """Change topics get a partition per events worker (Debezium spreads them by key); the rest one."""
        self.wiring.ensure_topics(self.bootstrap, change_topics, self.wiring.change_partitions)
        self.wiring.ensure_topics(self.bootstrap, others, 1)

    def _truncate(self, topics: Sequence[str]) -> None:
        truncate = self.wiring.truncate_topics
        assert truncate is not None
        changes = set(self.topics)
        for part, partitions in (
            ([t for t in topics if t in changes], self.wiring.change_partitions),
            ([t for t in topics if t not in changes], 1),
        ):
            if part:
                truncate(self.bootstrap, part, partitions)

    def _start_truncation(self) -> None:
        truncate = self.wiring.truncate_topics
        if truncate is None:
            return
        self.truncator = Truncator(
            self.captures,
            lambda: self.topics + [c.heartbeat_topic for c in self.captures] + self.event_topics,
            self._truncate,
            every_records=self.wiring.broker_buffer_records,
        )
        self.truncator.start()

    def _start_status(self) -> None:
        """Serve /status and /metrics on loopback; `cdc status` finds the URL in the state dir."""
        thresholds = Thresholds(max_retained_wal_bytes=self.wiring.max_retained_wal_bytes)
        actions = {
            "/resync": self.resyncs.action,
            "/tables": self.additions.action,
            "/parity": self.parities.action,
            "/erase": self.erasures.action,
        }
        self._status = self.wiring.status_server(self.observer.snapshot, thresholds, actions)
        self._status.start()

    @property
    def status_url(self) -> str:
        return self._status.url if self._status is not None else ""

    # -- supervise -------------------------------------------------------------------------------
    def supervise(self) -> None:
        """Heal what can be healed; raise (CdcError) for what cannot. Call it several times a second."""
        if not self.wiring.broker.is_running():
            self._recycle_broker()
            return
        self.additions.apply_pending()
        self.erasures.apply_requested()
        for capture in self.captures:
            capture.supervise()

    def _recycle_broker(self) -> None:
        """The embedded broker died with every record it held: start a new one, and every source's
        lanes and Debezium anew; Debezium re-streams from the last durable position."""
        for capture in self.captures:
            capture.note("the Kafka broker stopped; restarting it and re-streaming from the last durable position")
            capture.stop_debezium(self.say, timeout=5.0)  # what it sent is lost with the broker anyway
            capture.stop_consumers(self.say, timeout=5.0)
        self.generation += 1
        step(self.say, "closing the Kafka producer", self._publisher.close if self._publisher else lambda: None)
        self.wiring.broker.stop()
        self.wiring.broker.start()
        self.bootstrap = self.wiring.bootstrap()
        self._start_pipelines()

    # -- observe (the status observer's BridgeView) ----------------------------------------------
    @property
    def state_dir(self) -> str:
        return str(self.wiring.state_dir)

    @property
    def clickhouse_where(self) -> str:
        return self.wiring.redact(self.clickhouse_url)

    @property
    def sources(self) -> Sequence[SourceView]:
        return self.views

    @property
    def truncates(self) -> bool:
        return self.truncator is not None

    def pending_dead_letters(self) -> dict[str, int]:
        return {str(t): int(n) for t, n in self.warehouse.query(PENDING_DEAD_LETTERS)}

    def report_lags(self) -> list[ReportLag]:
        return report_lags(self.warehouse)

    @property
    def services(self) -> list[Stats]:
        """The mirror lanes' counters."""
        return [s for v in self.views if (s := v.mirror_stats()) is not None]

    @property
    def consumer_error(self) -> str | None:
        errors = [e for v in self.views for e in v.errors(SILENT_AFTER_S)]
        return "; ".join(errors) or None

    @property
    def records_produced(self) -> int:
        return sum(v.captured() for v in self.views)

    @property
    def warehouse(self) -> ClosableWarehouse:
        assert self._warehouse is not None
        return self._warehouse

    def dead_letter_count(self) -> int | None:
        """Messages in ``cdc.dead_letters`` (routed by a consumer or by ClickHouse's parse views)."""
        try:
            return int(self.warehouse.query("SELECT uniqExact(topic, partition, offset) FROM cdc.dead_letters")[0][0])
        except CdcError as e:
            log.warning("cannot count dead letters: %s", e)
            return None

    def wait_caught_up(
        self, target_lsn: int | dict[str, int], timeout: float, tick: Callable[[], None] | None = None
    ) -> bool:
        """Wait until every change committed at or before the target LSN is queryable in ClickHouse.

        ``target_lsn`` is one LSN (the first source) or one per source name. The slot confirms only
        positions every lane made durable, so the slot passing the target is the proof: it needs
        no change in the captured tables (heartbeats move it on an idle source).
        """
        targets = target_lsn if isinstance(target_lsn, dict) else {self.name: target_lsn}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.supervise()
            if all(c.caught_up_to(targets.get(c.name, 0)) for c in self.captures):
                return True
            if tick:
                tick()
            time.sleep(0.2)
        return False

    # -- stop ------------------------------------------------------------------------------------
    def stop(self, drain: bool = True, drain_timeout: float = 120.0) -> None:
        """Stop in reverse order; with ``drain`` first let the lanes store what Debezium sent.

        Every step runs even if an earlier one fails (or a second Ctrl-C arrives): a failed
        step is logged, and nothing is left running.
        """
        if self._status is not None:
            step(self.say, "stopping the status server", self._status.stop)
            self._status = None
        if self.truncator is not None:
            step(self.say, "stopping the broker's truncation", self.truncator.stop)
            self.truncator = None
        outages = [o for c in self.captures if (o := c.outage())]
        if drain and outages:  # nothing can become durable now: what is in flight stays in the slot
            self.say(f"warning: stopping during an outage ({outages[0][:120]}); not waiting for it to end")
            drain_timeout = min(drain_timeout, 5.0)
        deadline = time.monotonic() + drain_timeout
        left = 0
        for c in self.captures:
            left += c.stop_debezium(self.say, max(0.0, deadline - time.monotonic()) if drain else None)
        if drain and left:
            self.say(
                f"warning: {left:,} captured change(s) were not yet in ClickHouse when the drain timed out "
                f"after {drain_timeout:.0f} s; they stay in the replication slot and the next start reads them again"
            )
        for c in self.captures:
            c.stop_consumers(self.say)
        step(self.say, "closing the Kafka producer", self._publisher.close if self._publisher else lambda: None)
        self._publisher = None
        for service in reversed(self._started):
            step(self.say, f"stopping {type(service).__name__}", service.stop)
        self._started.clear()
        step(self.say, "closing the warehouse client", self._warehouse.close if self._warehouse else lambda: None)
