"""Ports: what the consume loop needs from the broker, the warehouse and the source catalog.

Adapters in ``cdc/adapters`` implement these against real technology; unit tests
use in-memory fakes that pass the same contract suites.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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

    def close(self) -> None: ...


class Warehouse(Protocol):
    """ClickHouse: statements, inserts and queries. ``insert`` returns once the rows are stored."""

    def command(self, sql: str) -> None: ...

    def insert(self, database: str, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
               settings: Mapping[str, Any] | None = None) -> None: ...

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]: ...


class Catalog(Protocol):
    """The source's table definitions."""

    def table_schema(self, ref: TableRef) -> TableSchema | None: ...
