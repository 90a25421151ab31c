"""Ports: what the consume loop needs from the broker, the warehouse and the source catalog.

Adapters in ``cdc/adapters`` implement these against real technology; unit tests
use in-memory fakes that pass the same contract suites.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cdc.domain.changes import TableRef, TableSchema


@dataclass(frozen=True, slots=True)
class Message:
    """One record read from a change topic, exactly as the broker holds it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int = 0


TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class SlotInfo:
    """One replication slot as ``pg_replication_slots`` shows it.

    ``retained_wal_bytes`` is the WAL the server keeps for the slot (from its ``restart_lsn`` to
    the current WAL position); None when the slot holds no position yet. ``plugin`` and
    ``database`` are None for physical slots. ``wal_status`` is PostgreSQL's own verdict
    (``reserved``, ``extended``, ``unreserved`` or ``lost``).
    """

    slot_name: str
    plugin: str | None
    database: str | None
    active: bool
    retained_wal_bytes: int | None
    slot_type: str
    wal_status: str | None = None


@dataclass(frozen=True, slots=True)
class OutRecord:
    """One record to publish: ``headers`` are (name, bytes) pairs, as Kafka carries them."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message a sink could not take, and why; the consume loop sends it to the dead letters."""

    message: Message
    error: BaseException


class ChangeStream(Protocol):
    """A consumer-group subscription to change topics.

    ``commit`` records the *next* offset to read per partition; the service calls it
    only after the warehouse accepted everything before that offset.
    """

    def poll(self, timeout_s: float, max_records: int) -> list[Message]: ...

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None: ...

    def lag(self) -> dict[TopicPartition, int]: ...

    def highwater(self) -> dict[TopicPartition, int]:
        """Log-end offset per assigned partition as of the latest fetch (no broker round trip)."""
        ...

    def positions(self) -> dict[TopicPartition, int]:
        """The next offset the lane will read, per assigned partition (what it has read so far)."""
        ...

    def rewind(self) -> None:
        """Read every assigned partition from offset 0 again (after the broker truncated the topics)."""
        ...

    def close(self) -> None: ...


class Publisher(Protocol):
    """Producer side of the broker.

    ``publish`` returns only after the broker acknowledged every record (or raises
    :class:`cdc.errors.BrokerError`), so the caller may then commit what it consumed.
    Records of one topic and key keep the order they are given in.
    """

    def publish(self, records: Sequence[OutRecord]) -> None: ...

    def close(self) -> None: ...


class Sink(Protocol):
    """Where the consume loop hands each topic's messages.

    ``write`` returns once everything it accepted is durable. A message it cannot take
    (bad data) comes back as :class:`Rejected`; an outage raises :class:`cdc.errors.CdcError`
    (retried, nothing committed); a data error raised for the whole batch makes the loop
    retry message by message to isolate the bad ones.
    """

    def write(self, topic: str, messages: Sequence[Message]) -> Sequence[Rejected]: ...


class Warehouse(Protocol):
    """ClickHouse: statements, inserts and queries. ``insert`` returns once the rows are stored."""

    def command(self, sql: str) -> None: ...

    def insert(
        self,
        database: str,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        settings: Mapping[str, Any] | None = None,
    ) -> None: ...

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]: ...

    def insert_raw(
        self,
        database: str,
        table: str,
        columns: Sequence[str],
        data: bytes,
        fmt: str,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        """Insert ``data``, already in ClickHouse input format ``fmt``, as it is (no per-row work here)."""
        ...

    def insert_file(
        self,
        database: str,
        table: str,
        columns: Sequence[str],
        path: Path,
        fmt: str,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        """Insert the file at ``path`` (ClickHouse input format ``fmt``) as one insert, read as it goes."""
        ...


class SnapshotHandle(Protocol):
    """An exported snapshot: ``name`` is importable (SET TRANSACTION SNAPSHOT) until ``close()``."""

    name: str

    def close(self) -> None: ...


class Catalog(Protocol):
    """The source's table definitions."""

    def table_schema(self, ref: TableRef) -> TableSchema | None: ...


class SourceDatabase(Catalog, Protocol):
    """The source PostgreSQL database as the bridge uses it while it runs (one adapter: psycopg)."""

    @property
    def where(self) -> str:
        """Its DSN without the password: safe to print."""
        ...

    def check_logical_replication(self) -> None: ...

    def connection_params(self) -> dict[str, Any]: ...

    def select_tables(self, include: Sequence[str] | None, source: str) -> tuple[list[TableSchema], list[Any]]: ...

    def current_wal_lsn(self) -> int: ...

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]: ...

    def copy_out(self, query: str, block_bytes: int, snapshot: str | None = None) -> Iterator[bytes]:
        """``COPY (query) TO STDOUT`` in text format, as blocks of about ``block_bytes`` whole lines; with
        ``snapshot``, read under that exported snapshot."""
        ...

    def create_slot_exporting(self, slot: str) -> SnapshotHandle:
        """Create the logical replication slot ``slot`` and export the snapshot it starts from."""
        ...

    def ensure_publication(self, publication: str, tables: Sequence[tuple[str, str]]) -> None:
        """Create ``publication`` for exactly ``tables`` (schema, table), or set an existing one to them."""
        ...

    def slot_flushed_lsn(self, slot: str) -> int | None: ...

    def slots(self) -> list[SlotInfo]: ...
