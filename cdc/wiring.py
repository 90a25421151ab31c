"""What the composition root hands the running bridge: its parts, and factories for the parts that
need a running broker or warehouse. Protocols only, so the bridge and each source depend on roles,
not on technologies; :mod:`cdc.bootstrap` fills them in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cdc.debezium.config import ConnectorSettings
from cdc.debezium.gate import DurabilityGate
from cdc.domain.changes import TableRef, TableSchema
from cdc.domain.events import EventRegistry
from cdc.events.reports import WorkerConfig, WorkerReport
from cdc.mirror.ddl_gate import DdlGate
from cdc.mirror.table import MirrorTable
from cdc.ports import Catalog, ChangeStream, Message, Publisher, Rejected, Warehouse
from cdc.status import StatusSnapshot, Thresholds

SnapshotProvider = Callable[[], StatusSnapshot]
# A control route of the status server: (method, JSON body or None) -> (HTTP code, JSON answer)
Action = Callable[[str, Mapping[str, Any] | None], tuple[int, Any]]


class CaptureRunner(Protocol):
    """Debezium for one source: the embedded engine, or a connector in Kafka Connect."""

    @property
    def records_produced(self) -> int: ...

    @property
    def holds_back(self) -> bool:
        """True when Debezium's position (and the slot's) waits until the lanes made changes durable."""
        ...

    def drain(self, timeout: float) -> int:
        """Send nothing new; wait until what was sent is durable. Returns the records still in flight."""
        ...

    def connected(self) -> bool | None:
        """Whether Debezium streams from the replication slot now (None: it cannot tell)."""
        ...

    def start(self, timeout: float = 120) -> None: ...

    def stop(self, timeout: float = 30) -> None: ...

    def raise_if_failed(self) -> None: ...

    def snapshot_completed(self) -> bool: ...


class MirrorSink(Protocol):
    """The mirror's side of a lane: lays out ClickHouse tables and writes change messages."""

    gate: DdlGate  # inserts into the Null tables shared, view recreation exclusive

    def prepare(self, schemas: Sequence[TableSchema]) -> None: ...

    def table(self, ref: TableRef) -> MirrorTable: ...

    def follow_source(self, ref: TableRef) -> MirrorTable: ...

    def schema_notices(self) -> Sequence[object]: ...


class EventSink(Protocol):
    """Translates change messages into domain events, publishes and stores them (the events lane's sink)."""

    def write(self, topic: str, messages: Sequence[Message]) -> Sequence[Rejected]: ...


class EventsHandle(Protocol):
    """The bridge's handle on the domain-event worker process (or on several, of one consumer group)."""

    @property
    def report(self) -> WorkerReport: ...

    def start(self) -> None: ...

    def stop(self, timeout: float = 30.0) -> None: ...

    def check(self) -> None: ...

    def alive(self) -> bool: ...

    def silent_for(self) -> float: ...

    def rewind(self, epoch: int) -> None: ...

    @property
    def epoch(self) -> int: ...

    def last_report(self, timeout: float = 2.0) -> WorkerReport: ...


@dataclass(frozen=True)
class CaptureWiring:
    """Factories for the parts of a source that need a running broker or warehouse (built by bootstrap)."""

    mirror_sink: Callable[[Warehouse, Catalog], MirrorSink]
    change_stream: Callable[[str, str, Sequence[str]], ChangeStream]  # (bootstrap, group, topics)
    runner: Callable[[ConnectorSettings, str, DurabilityGate], CaptureRunner]  # (settings, bootstrap, gate)
    events_worker: Callable[[WorkerConfig], EventsHandle]
    event_sink: Callable[[EventRegistry, Catalog, Publisher, Warehouse], EventSink]  # the copied rows' events


@dataclass(frozen=True)
class CaptureOptions:
    """What the bridge-wide settings say for this source."""

    state_dir: Path
    translators: tuple[str, ...]
    events: bool
    heartbeat_interval_ms: int
    max_in_flight: int  # records produced but not yet durable in every lane before Debezium waits
    worker_dsn: str  # the source DSN, handed to the events worker process (it reads the catalog)
    mirror_batch_wait_ms: int = 100  # the mirror consumer gathers changes this long per insert
    events_workers: int = 1  # events worker processes of this source (one consumer group)


class Service(Protocol):
    """A part the bridge starts and stops: an embedded process, or the handle on an external one."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def is_running(self) -> bool:
        """False once an embedded process died by itself (an external service: always True)."""
        ...


class ClosableWarehouse(Warehouse, Protocol):
    where: str

    def close(self) -> None: ...


class StatusServer(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...

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
    ensure_topics: Callable[[str, Sequence[str], int], None]  # (bootstrap, topics, partitions of new ones)
    publisher: Callable[[str, str], Publisher]  # (bootstrap, client id)
    prepare_event_store: Callable[[Warehouse], None]
    status_server: Callable[[SnapshotProvider, Thresholds, Mapping[str, Action]], StatusServer]
    remember_translators: Callable[[tuple[str, ...]], None]
    mask_salt: Callable[[], str]
    max_retained_wal_bytes: int
    redact: Callable[[str], str]
    # the embedded broker's topics emptied once durable (None: an external Kafka keeps its own retention)
    truncate_topics: Callable[[str, Sequence[str], int], None] | None = None
    broker_buffer_records: int = 150_000
    change_partitions: int = 1  # partitions of each change topic the bridge creates (one per events worker)
    # after an erasure: rebuild the reports of a source in full; the names of those rebuilt
    rebuild_reports: Callable[[Warehouse, str], list[str]] | None = None
