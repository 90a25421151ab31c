"""How one captured table is laid out in ClickHouse, and how changes become rows there.

Pure. For source ``S`` and table ``t`` (schema ``public``; other schemas give ``<schema>__t``):

* ``S._state_t`` — ReplacingMergeTree(_version, _is_deleted) keyed by the row identity;
  every change inserts one row version, ``_version`` is the source LSN, so a replay
  or a redelivered batch changes nothing and the latest position wins.
* ``S._log_t`` — ReplacingMergeTree keyed by (``_lsn``, identity, ``_op``): every change once.
* ``S.t`` and ``S.t_changes`` — views over those two with FINAL, so plain SELECTs see
  exactly the current rows (deletes hidden) and each change exactly once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cdc.domain.changes import Op, RowChange, TableRef, TableSchema
from cdc.mirror.typemap import ColumnPlan, default_for, plan_column

STATE_META = (
    ("_version", "UInt64"),
    ("_is_deleted", "UInt8"),
    ("_lsn", "UInt64"),
    ("_txid", "Nullable(Int64)"),
    ("_commit_ts", "DateTime64(3, 'UTC')"),
    ("_op", "LowCardinality(String)"),
)
LOG_META = (
    ("_op", "LowCardinality(String)"),
    ("_lsn", "UInt64"),
    ("_txid", "Nullable(Int64)"),
    ("_commit_ts", "DateTime64(3, 'UTC')"),
    ("_snapshot", "UInt8"),
)
INGESTED = "`_ingested_at` DateTime64(3, 'UTC') DEFAULT now64(3)"
RESERVED = {name for name, _ in STATE_META + LOG_META} | {"_ingested_at"}


def quote(identifier: str) -> str:
    return "`" + identifier.replace("\\", "\\\\").replace("`", "\\`") + "`"


def mirror_name(ref: TableRef) -> str:
    return ref.table if ref.schema == "public" else f"{ref.schema}__{ref.table}"


@dataclass
class MirrorTable:
    """The ClickHouse side of one captured table: DDL and row building."""

    schema: TableSchema
    database: str
    adjusted: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        clash = RESERVED & set(self.schema.column_names)
        if clash:
            raise ValueError(
                f"{self.schema.ref.qualified}: column names reserved by the mirror: {sorted(clash)}"
            )
        key = set(self.schema.key)
        self.state_plans = [plan_column(c, self.adjusted) for c in self.schema.columns]
        # the change log keeps deletes' partial images, so every non-key column may be NULL there
        self.log_plans = [
            plan_column(c, self.adjusted, force_nullable=c.name not in key) for c in self.schema.columns
        ]
        self.name = mirror_name(self.schema.ref)

    @property
    def state_table(self) -> str:
        return f"{quote(self.database)}.{quote('_state_' + self.name)}"

    @property
    def log_table(self) -> str:
        return f"{quote(self.database)}.{quote('_log_' + self.name)}"

    @property
    def view(self) -> str:
        return f"{quote(self.database)}.{quote(self.name)}"

    @property
    def changes_view(self) -> str:
        return f"{quote(self.database)}.{quote(self.name + '_changes')}"

    @property
    def state_columns(self) -> list[str]:
        return [p.name for p in self.state_plans] + [n for n, _ in STATE_META]

    @property
    def log_columns(self) -> list[str]:
        return [p.name for p in self.log_plans] + [n for n, _ in LOG_META]

    def ddl(self) -> list[str]:
        """Statements that create (idempotently) everything this table needs."""
        key = ", ".join(quote(k) for k in self.schema.key) or "tuple()"
        cols = ", ".join(quote(p.name) for p in self.state_plans)
        return [
            f"CREATE DATABASE IF NOT EXISTS {quote(self.database)}",
            _create(
                self.state_table,
                self.state_plans,
                STATE_META,
                "ReplacingMergeTree(_version, _is_deleted)",
                key,
            ),
            _create(self.log_table, self.log_plans, LOG_META, "ReplacingMergeTree", f"_lsn, {key}, _op"),
            f"CREATE OR REPLACE VIEW {self.view} AS SELECT {cols} FROM {self.state_table} FINAL"
            " WHERE _is_deleted = 0",
            f"CREATE OR REPLACE VIEW {self.changes_view} AS SELECT {cols}, _op, _lsn, _txid, _commit_ts,"
            f" _snapshot, _ingested_at FROM {self.log_table} FINAL",
        ]

    def rows(self, changes: Iterable[RowChange]) -> tuple[list[list[Any]], list[list[Any]]]:
        """State rows and change-log rows for ``changes``, in the column order of the properties above."""
        state: list[list[Any]] = []
        log: list[list[Any]] = []
        for ch in changes:
            pos = ch.position
            deleted = ch.op is Op.DELETE
            image = ch.row
            state.append(
                _values(self.state_plans, image, fill=True)
                + [pos.lsn, int(deleted), pos.lsn, pos.txid, pos.commit_ts_ms, ch.op.value]
            )
            log.append(
                _values(self.log_plans, image, fill=False)
                + [ch.op.value, pos.lsn, pos.txid, pos.commit_ts_ms, int(pos.snapshot)]
            )
        return state, log


def _create(
    table: str, plans: Sequence[ColumnPlan], meta: Sequence[tuple[str, str]], engine: str, order_by: str
) -> str:
    cols = [f"{quote(p.name)} {p.ch_type}" for p in plans] + [f"{quote(n)} {t}" for n, t in meta] + [INGESTED]
    return (
        f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(cols)}) ENGINE = {engine} "
        f"ORDER BY ({order_by}) SETTINGS allow_nullable_key = 1"
    )


def _values(plans: Sequence[ColumnPlan], image: Any, fill: bool) -> list[Any]:
    out: list[Any] = []
    for p in plans:
        v = image.get(p.name)
        if p.convert is not None:
            v = p.convert(v)
        if v is None and fill and not p.nullable:
            v = default_for(p.base_type)
        out.append(v)
    return out
