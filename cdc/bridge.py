"""The running bridge: starts, watches and stops the parts the composition root hands it.

Start order: warehouse (chDB + HTTP endpoint, or an external server) -> broker (Tansu or
external Kafka) -> source checks and table selection -> ClickHouse objects and topics ->
mirror consumers -> Debezium. Stop runs the other way and *drains*: Debezium stops
first (its offsets cover only what Kafka acknowledged), then the consumers apply
everything left in Kafka before the broker goes away — the embedded broker keeps data
in memory only, so draining is what makes a stop/start lose nothing.

Nothing here builds an adapter: :mod:`cdc.bootstrap` does, and hands them in as a
:class:`BridgeWiring` and the :class:`~cdc.capture.SourceCapture` of every source.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cdc.capture import SourceCapture
from cdc.consume.dead_letters import DEAD_LETTER_TOPIC, DeadLetters
from cdc.consume.loop import Stats
from cdc.errors import CdcError, ConfigError
from cdc.ports import Publisher, Warehouse
from cdc.status import Thresholds
from cdc.status.observer import PENDING_DEAD_LETTERS, Observer, SourceView
from cdc.status.server import SnapshotProvider

log = logging.getLogger(__name__)
Say = Callable[[str], None]

SILENT_AFTER_S = 30.0  # the events worker reports several times a second; this long silent means stuck


class Service(Protocol):
    """A part the bridge starts and stops: an embedded process, or the handle on an external one."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class ClosableWarehouse(Warehouse, Protocol):
    where: str

    def close(self) -> None: ...


class StatusServer(Service, Protocol):
    @property
    def url(self) -> str: ...


@dataclass(frozen=True)
class BridgeWiring:
    """What the bridge starts and how it makes the parts that need them running (built by bootstrap)."""

    state_dir: Path
    warehouse: Service  # the embedded store's server, or nothing to start for an external one
    warehouse_url: Callable[[], str]  # where other processes reach the warehouse, once started
    warehouse_client: Callable[[], ClosableWarehouse]
    broker: Service
    bootstrap: Callable[[], str]  # the broker's address, once started
    ensure_topics: Callable[[str, Sequence[str]], None]
    publisher: Callable[[str, str], Publisher]  # (bootstrap, client id)
    prepare_event_store: Callable[[Warehouse], None]
    status_server: Callable[[SnapshotProvider, Thresholds], StatusServer]
    remember_translators: Callable[[tuple[str, ...]], None]
    mask_salt: Callable[[], str]
    max_retained_wal_bytes: int
    redact: Callable[[str], str]


class Bridge:
    """One running bridge: the warehouse, the broker, and per source its Debezium and consumers."""

    def __init__(self, wiring: BridgeWiring, captures: Sequence[SourceCapture], say: Say = print) -> None:
        if not captures:
            raise ConfigError("no source to capture")
        self.wiring = wiring
        self.captures = list(captures)
        self.say = say
        self.clickhouse_url = ""
        self.bootstrap = ""
        self._warehouse: ClosableWarehouse | None = None
        self._publisher: Publisher | None = None
        self._status: StatusServer | None = None
        self._started: list[Service] = []
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
            self._start_consumers()
            self._start_debezium()
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
        self.wiring.ensure_topics(self.bootstrap, self.topics + self.event_topics)

    @property
    def event_topics(self) -> list[str]:
        """``events.<aggregate>`` of every source's declared events and generic tables, and the dead letters."""
        return sorted({t for c in self.captures for t in c.event_topics}) + [DEAD_LETTER_TOPIC]

    def _start_consumers(self) -> None:
        self._publisher = self.wiring.publisher(self.bootstrap, "cdc-bridge")  # events and dead letters
        dead_letters = DeadLetters(self.warehouse, self._publisher)
        if any(c.registry is not None for c in self.captures):
            self.wiring.prepare_event_store(self.warehouse)  # readers find the store even before the first event
        for capture in self.captures:
            capture.start_consumers(self.bootstrap, self.clickhouse_url, dead_letters, self._stopping)

    def _start_debezium(self) -> None:
        hashed = any(r.method == "hash" for c in self.captures for r in c.spec.mask)
        salt = self.wiring.mask_salt() if hashed else ""
        for capture in self.captures:
            capture.start_debezium(self.bootstrap, salt)

    def _start_status(self) -> None:
        """Serve /status and /metrics on loopback; `cdc status` finds the URL in the state dir."""
        thresholds = Thresholds(max_retained_wal_bytes=self.wiring.max_retained_wal_bytes)
        self._status = self.wiring.status_server(self.observer.snapshot, thresholds)
        self._status.start()

    @property
    def status_url(self) -> str:
        return self._status.url if self._status is not None else ""

    # -- observe (the status observer's BridgeView) ----------------------------------------------
    @property
    def state_dir(self) -> str:
        return str(self.wiring.state_dir)

    @property
    def clickhouse_where(self) -> str:
        return self.wiring.redact(self.clickhouse_url)

    @property
    def sources(self) -> Sequence[SourceView]:
        return self.captures

    def pending_dead_letters(self) -> dict[str, int]:
        return {str(t): int(n) for t, n in self.warehouse.query(PENDING_DEAD_LETTERS)}

    @property
    def services(self) -> list[Stats]:
        """The mirror lanes' counters."""
        return [s for c in self.captures if (s := c.mirror_stats()) is not None]

    @property
    def consumer_error(self) -> str | None:
        errors = [e for c in self.captures for e in c.errors(SILENT_AFTER_S)]
        return "; ".join(errors) or None

    @property
    def records_produced(self) -> int:
        return sum(c.captured() for c in self.captures)

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
                out.append((c.events.report.stats, c.topics))
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
            self._step("stopping the status server", self._status.stop)
            self._status = None
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
        self._publisher = None
        for service in reversed(self._started):
            self._step(f"stopping {type(service).__name__}", service.stop)
        self._started.clear()
        self._step("closing the warehouse client", self._warehouse.close if self._warehouse else None)

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
