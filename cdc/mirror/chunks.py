"""Splitting a table into chunks of its integer key for the copy path (:mod:`cdc.mirror.initial_load`,
:mod:`cdc.mirror.resync`): the planner's estimate, key ranges, and the condition selecting one. Reads the
source's catalog and key bounds only."""

from __future__ import annotations

import math
from collections.abc import Callable

from cdc.domain.changes import TableSchema
from cdc.domain.names import sql_table
from cdc.mirror.copy_sql import pg_ident
from cdc.ports import SourceDatabase

CHUNK_ROWS = 1_000_000  # rows per chunk at most (estimated from the key range): each is one part to merge
MIN_CHUNK_ROWS = 100_000  # a table above this gets up to MIN_CHUNKS chunks of at least this, to keep workers busy
MIN_CHUNKS = 4
_INTEGERS = {"int2", "int4", "int8"}


def estimate_rows(source: SourceDatabase, schema: TableSchema) -> int:
    """The planner's row estimate of the table (its partitions included), else a count."""
    rows = source.query(
        "SELECT greatest(c.reltuples, 0)::bigint + coalesce((SELECT sum(greatest(p.reltuples, 0))::bigint"
        " FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhrelid WHERE i.inhparent = c.oid), 0)"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
        (schema.ref.schema, schema.ref.table),
    )
    if rows and int(rows[0][0]) > 0:
        return int(rows[0][0])
    return int(
        source.query(f"SELECT count(*) FROM {sql_table(schema.ref.schema, schema.ref.table)}")[0][0]
    )  # never analyzed


def chunk_count(estimate: int, workers: int = 2) -> int:
    """How many chunks a table of about ``estimate`` rows is copied in: at most ``CHUNK_ROWS`` each (few,
    large inserts: ClickHouse merges less), but up to ``MIN_CHUNKS`` of at least ``MIN_CHUNK_ROWS`` (so
    that the workers share a mid-sized table), and a multiple of ``workers`` so that none ends alone."""
    if estimate <= MIN_CHUNK_ROWS:
        return 1
    n = max(math.ceil(estimate / CHUNK_ROWS), min(MIN_CHUNKS, math.ceil(estimate / MIN_CHUNK_ROWS)))
    return min(math.ceil(n / workers) * workers, 10_000)


def key_ranges(
    source: SourceDatabase, schema: TableSchema, estimate: int, workers: int = 2
) -> list[tuple[int | None, int | None]]:
    """:func:`chunk_count` ranges ``[lower, upper)`` of an integer key (open at both ends), or one range
    for the whole table when it is small or has no single integer key."""
    column = schema.column_index.get(schema.key[0]) if len(schema.key) == 1 else None
    n = chunk_count(estimate, workers)
    if column is None or column.pg_type not in _INTEGERS or column.is_array or n == 1:
        return [(None, None)]
    key = pg_ident(column.name)
    low, high = source.query(f"SELECT min({key}), max({key}) FROM {sql_table(schema.ref.schema, schema.ref.table)}")[0]
    if low is None:
        return [(None, None)]
    step = max((int(high) - int(low) + 1) // n, 1)
    bounds = [int(low) + i * step for i in range(1, n)]
    return list(zip([None, *bounds], [*bounds, None], strict=True))


def where_sql(schema: TableSchema, lower: int | None, upper: int | None, ident: Callable[[str], str] = pg_ident) -> str:
    """The condition selecting key range ``[lower, upper)`` ('' for the whole table); ``ident`` quotes the
    key column (PostgreSQL's by default; ClickHouse's reads the same range of the mirror)."""
    if lower is None and upper is None:
        return ""
    key = ident(schema.key[0])
    parts = ([f"{key} >= {int(lower)}"] if lower is not None else []) + (
        [f"{key} < {int(upper)}"] if upper is not None else []
    )
    return " AND ".join(parts)
