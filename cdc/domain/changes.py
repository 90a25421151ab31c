"""The change model: one captured row change and the shape of the table it belongs to.

Pure data; no IO and no driver imports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cdc.domain.names import display_table, topic_name

Row = Mapping[str, Any]


class Op(StrEnum):
    """Debezium's operation codes."""

    SNAPSHOT = "r"
    CREATE = "c"
    UPDATE = "u"
    DELETE = "d"
    TRUNCATE = "t"
    MESSAGE = "m"


@dataclass(frozen=True, slots=True)
class SourcePosition:
    """Where a change sits in the source's history.

    ``lsn`` orders changes of one row: PostgreSQL takes row locks, so two
    transactions touching the same row commit in LSN order.
    """

    lsn: int
    txid: int | None
    commit_ts_ms: int
    snapshot: bool = False


@dataclass(frozen=True, slots=True)
class TableRef:
    """A captured table: ``source`` is the logical source name (Debezium's topic prefix)."""

    source: str
    schema: str
    table: str

    @property
    def qualified(self) -> str:
        """``schema.table`` as written in config, logs and the event store (names are not quoted)."""
        return f"{self.schema}.{self.table}"

    @property
    def display(self) -> str:
        """``schema.table`` with parts quoted when they hold a dot or a quote (config and flags accept it)."""
        return display_table(self.schema, self.table)

    @property
    def topic(self) -> str:
        """The topic Debezium writes this table's changes to (see :mod:`cdc.domain.names`)."""
        return topic_name(self.source, self.schema, self.table)


@dataclass(frozen=True, slots=True)
class RowChange:
    """One row change as captured: ``before``/``after`` are column -> value maps."""

    table: TableRef
    op: Op
    before: Row | None
    after: Row | None
    position: SourcePosition

    @property
    def row(self) -> Row:
        """The row image that identifies the row after this change (``before`` for deletes)."""
        image = self.before if self.op is Op.DELETE else self.after
        return image if image is not None else {}

    def changed_columns(self) -> frozenset[str]:
        """Columns whose value differs between ``before`` and ``after``."""
        if self.before is None or self.after is None:
            return frozenset((self.after or self.before or {}).keys())
        return frozenset(k for k, v in self.after.items() if self.before.get(k) != v)


@dataclass(frozen=True, slots=True)
class SourceMessage:
    """A logical-decoding message (``pg_logical_emit_message``) as captured: the bridge's own heartbeat
    ticks, or events an application wrote itself. ``source`` is the logical source name."""

    source: str
    prefix: str
    content: bytes
    position: SourcePosition
    transactional: bool = True


@dataclass(frozen=True, slots=True)
class Column:
    """A PostgreSQL column as the catalog describes it."""

    name: str
    pg_type: str
    nullable: bool = True
    is_array: bool = False
    is_enum: bool = False
    numeric_precision: int | None = None
    numeric_scale: int | None = None
    length: int | None = None  # bit(n): n


@dataclass(frozen=True, slots=True)
class TableSchema:
    """Columns and identity of a captured table.

    ``key`` are the columns that identify a row in the mirror: the primary key,
    else the replica-identity index, else (REPLICA IDENTITY FULL) every column.
    """

    ref: TableRef
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    replica_identity: str = "d"
    has_primary_key: bool = True
    generated: tuple[str, ...] = ()  # generated columns: PostgreSQL does not replicate them, not in ``columns``
    partitioned: bool = False  # a partitioned table: captured through its root (publish_via_partition_root)
    column_index: Mapping[str, Column] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "column_index", {c.name: c for c in self.columns})

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)
