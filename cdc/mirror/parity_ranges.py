"""Key ranges for content parity (:mod:`cdc.mirror.parity`): how a table is walked, the conditions selecting
one range (or a few keys) on both sides, and the cursor kept between runs. Pure: builds SQL only.

A range must select the same rows in PostgreSQL and in ClickHouse, so only keys whose order both agree on
are walked in ranges:

* a single integer key (``int2``/``int4``/``int8``): ranges of key values, ``[lower, upper)``
  (:func:`cdc.mirror.chunks.where_sql` on both sides);
* a single ``text``/``varchar`` key: ranges in PostgreSQL's ``COLLATE "C"`` order, which is byte order,
  as ClickHouse compares strings;
* any other key (several columns, uuid, dates...): the whole table at once, or not at all when it is
  larger than the budget (the report says so).

Each range's upper bound is the key ``range_rows`` rows further on when it is planned (:func:`bound_sql`),
so a range holds about ``range_rows`` rows however unevenly the keys are spread. The first range starts
and the last ends open (``None``), so keys below the smallest or above the largest seen are covered too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cdc.domain.changes import TableSchema
from cdc.domain.names import sql_table
from cdc.mirror.chunks import where_sql
from cdc.mirror.copy_sql import pg_ident, pg_literal
from cdc.mirror.row_checks import literal, quote

INTEGER_KEYS = frozenset({"int2", "int4", "int8"})
TEXT_KEYS = frozenset({"text", "varchar"})
PROGRESS = "cdc.parity_progress"
PROGRESS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {PROGRESS} (source String, table String, cursor String, cycles UInt64,"
    " checked_at DateTime64(3, 'UTC')) ENGINE = ReplacingMergeTree(checked_at) ORDER BY (source, table)"
)
Bound = int | str | None


@dataclass(frozen=True)
class KeyRange:
    """Keys from ``lower`` (inclusive) to ``upper`` (exclusive); ``None``: open at that end."""

    lower: Bound = None
    upper: Bound = None

    def to_json(self) -> dict[str, Bound]:
        return {"lower": self.lower, "upper": self.upper}


def walk_kind(schema: TableSchema) -> str | None:
    """``integer`` or ``text`` when the table can be walked in key ranges (see the module), else None."""
    if len(schema.key) != 1:
        return None
    column = schema.column_index.get(schema.key[0])
    if column is None or column.is_array:
        return None
    if column.pg_type in INTEGER_KEYS:
        return "integer"
    return "text" if column.pg_type in TEXT_KEYS else None


def bound_sql(schema: TableSchema, kind: str, lower: Bound, range_rows: int) -> str:
    """The key ``range_rows`` rows above ``lower`` in the walk's order (no row: the range from ``lower`` is the
    last). An integer key reads that many entries of its index; a text key is ordered ``COLLATE "C"``, which
    its index (in the database's collation) does not give: PostgreSQL scans the keys above ``lower`` for it."""
    key = pg_ident(schema.key[0]) + (' COLLATE "C"' if kind == "text" else "")
    where = pg_where(schema, kind, KeyRange(lower, None))
    table = sql_table(schema.ref.schema, schema.ref.table)
    return (
        f"SELECT {pg_ident(schema.key[0])} FROM {table}{' WHERE ' + where if where else ''}"
        f" ORDER BY {key} OFFSET {int(range_rows)} LIMIT 1"
    )


def pg_where(schema: TableSchema, kind: str | None, rng: KeyRange) -> str:
    """PostgreSQL's condition for ``rng`` ('' for the whole table)."""
    if kind == "text":
        return _text_where(f'{pg_ident(schema.key[0])} COLLATE "C"', rng, pg_literal)
    return where_sql(schema, _int(rng.lower), _int(rng.upper)) if kind == "integer" else ""


def ch_where(schema: TableSchema, kind: str | None, rng: KeyRange) -> str:
    """ClickHouse's condition for ``rng`` over the mirror's columns ('1' for the whole table)."""
    if kind == "text":
        return _text_where(quote(schema.key[0]), rng, literal) or "1"
    if kind == "integer":
        return where_sql(schema, _int(rng.lower), _int(rng.upper), quote) or "1"
    return "1"


def _text_where(key: str, rng: KeyRange, lit: Callable[[str], str]) -> str:
    parts = ([f"{key} >= {lit(str(rng.lower))}"] if rng.lower is not None else []) + (
        [f"{key} < {lit(str(rng.upper))}"] if rng.upper is not None else []
    )
    return " AND ".join(parts)


def _int(bound: Bound) -> int | None:
    return None if bound is None else int(bound)


def keys_where(schema: TableSchema, keys: Sequence[tuple[Any, ...]], side: str) -> str | None:
    """The condition selecting exactly ``keys`` (``side`` ``pg`` or ``ch``), or None when a key column's
    values cannot be written as literals here (then the caller reads the whole range again)."""
    columns = [schema.column_index.get(k) for k in schema.key]
    if not keys or any(c is None or c.is_array or c.pg_type not in INTEGER_KEYS | TEXT_KEYS for c in columns):
        return None
    ident, lit = (pg_ident, pg_literal) if side == "pg" else (quote, literal)

    def value(v: Any) -> str:
        return str(int(v)) if isinstance(v, int) else lit(str(v))

    names = ", ".join(ident(k) for k in schema.key)
    tuples = ", ".join("(" + ", ".join(value(v) for v in key) + ")" for key in keys)
    return f"({names}) IN ({tuples})"


def encode_cursor(bound: Bound) -> str:
    """The cursor as stored: '' at the table's start, else the next range's lower bound as JSON."""
    return "" if bound is None else json.dumps(bound)


def decode_cursor(text: str, kind: str | None) -> Bound:
    """:func:`encode_cursor`'s inverse; a cursor of another kind of key (the key changed) restarts."""
    if not text:
        return None
    try:
        bound = json.loads(text)
    except ValueError:
        return None
    if kind == "integer" and isinstance(bound, int) and not isinstance(bound, bool):
        return bound
    return bound if kind == "text" and isinstance(bound, str) else None


def cursor_sql(source: str, table: str) -> str:
    return f"SELECT cursor, cycles FROM {PROGRESS} FINAL WHERE source = {literal(source)} AND table = {literal(table)}"


def save_cursor_sql(source: str, table: str, cursor: str, cycles: int) -> str:
    return (
        f"INSERT INTO {PROGRESS} (source, table, cursor, cycles, checked_at) VALUES ({literal(source)},"
        f" {literal(table)}, {literal(cursor)}, {int(cycles)}, now64(3, 'UTC'))"
    )
