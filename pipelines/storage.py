"""How a projection is stored in ClickHouse, as SQL text (pure).

Per projection ``p``:

* ``reports._<p>`` — ReplacingMergeTree(_version, _is_deleted) ordered by the key. Every build
  writes whole scopes under a new, higher ``_version``; a key a scope no longer produces gets a
  tombstone (``_is_deleted = 1``) in the same INSERT, so no reader sees a scope half-updated.
* ``reports.<p>`` — the view readers query: ``FINAL`` and deletions hidden, so a plain SELECT
  is correct (as for the mirrors).
* ``reports._<p>__shadow`` — exists only during a full build, then swapped in atomically.
* ``reports._watermarks`` — per projection, the newest ``stored_at`` its last build had seen.
"""

from __future__ import annotations

from cdc.events.store import DATABASE as EVENTS_DATABASE
from cdc.events.store import TABLE as EVENTS_TABLE
from pipelines.projection import DATABASE, Projection, Sql, in_scope

EVENTS = f"{EVENTS_DATABASE}.{EVENTS_TABLE}"
WATERMARKS = f"{DATABASE}._watermarks"
WATERMARKS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {WATERMARKS} (`projection` String, watermark DateTime64(6, 'UTC'),"
    " built_at DateTime64(6, 'UTC'), mode LowCardinality(String))"
    " ENGINE = ReplacingMergeTree(built_at) ORDER BY `projection`"
)


DUPLICATE_KEY = "rows_sql gave more than one row for one key"


def ddl(p: Projection) -> tuple[str, ...]:
    """Idempotent: the database, the watermarks and the storage table, where missing.

    The view is created separately, only when missing (ClickHouse checks a view's query even with
    IF NOT EXISTS): a changed definition takes a full build, which swaps in the new table first
    and then redefines the view.
    """
    return f"CREATE DATABASE IF NOT EXISTS {DATABASE}", WATERMARKS_DDL, table_ddl(p, p.storage)


def table_ddl(p: Projection, table: str) -> str:
    columns = ", ".join(f"`{name}` {kind}" for name, kind in p.columns)
    return (
        f"CREATE TABLE IF NOT EXISTS {table} ({columns}, `_version` UInt64, `_is_deleted` UInt8)"
        f" ENGINE = ReplacingMergeTree(_version, _is_deleted) ORDER BY ({', '.join(p.key)})"
    )


def view_ddl(p: Projection) -> str:
    return (
        f"CREATE OR REPLACE VIEW {p.view} AS SELECT {', '.join(p.column_names)}"
        f" FROM {p.storage} FINAL WHERE _is_deleted = 0"
    )


def _typed(p: Projection, names: tuple[str, ...]) -> list[str]:
    """``rows_sql``'s columns cast to the declared types, so every build stores the same types."""
    return [f"CAST(_rows.{n} AS {p.column_type(n)}) AS {n}" for n in names]


def fill_sql(p: Projection, table: str, version: int) -> str:
    """Every row of every scope into ``table`` (a full build); bind with ``full=True``.

    Fails on two rows with one key: the table would silently keep one of them.
    """
    columns = ", ".join(p.column_names)
    partition = ", ".join(f"_rows.{k}" for k in p.key)
    check = f"throwIf(count() OVER (PARTITION BY {partition}) > 1, '{DUPLICATE_KEY}')"
    return (
        f"INSERT INTO {table} ({columns}, _version, _is_deleted)"
        f" SELECT {', '.join(_typed(p, p.column_names))}, {version} + {check}, 0 FROM ({p.rows_sql}) AS _rows"
    )


def refresh_sql(p: Projection, version: int) -> str:
    """One INSERT rewriting the bound scopes: fresh rows, plus tombstones for the keys of those
    scopes that are stored now but no longer produced. Grouping fresh and stored rows by key
    (fresh ones win) reads ``rows_sql`` once, so both halves see the same events."""
    keys, values = ", ".join(p.key), p.value_columns
    fresh = ", ".join(_typed(p, p.key))
    stored = keys
    picked = ""
    if values:
        fresh += f", tuple({', '.join(f'CAST(_rows.{v} AS {p.column_type(v)})' for v in values)}) AS _values"
        stored += f", tuple({', '.join(values)}) AS _values"
        picked = "".join(f", tupleElement(argMin(_values, _old), {i}) AS {v}" for i, v in enumerate(values, 1))
    insert_columns = ", ".join((*p.key, *values))
    return (
        f"INSERT INTO {p.storage} ({insert_columns}, _version, _is_deleted)"
        f" SELECT {keys}{picked}, {version} + throwIf(countIf(_old = 0) > 1, '{DUPLICATE_KEY}') AS _version,"
        " min(_old) AS _is_deleted FROM ("
        f" SELECT {fresh}, toUInt8(0) AS _old FROM ({p.rows_sql}) AS _rows"
        f" WHERE {in_scope(f'_rows.{p.scope}', p.scope_type)}"
        f" UNION ALL SELECT {stored}, toUInt8(1) AS _old FROM {p.storage} FINAL"
        f" WHERE _is_deleted = 0 AND {in_scope(p.scope, p.scope_type)}"
        f") GROUP BY {keys}"
    )


def touched_scopes(p: Projection, bound_scopes_sql: str) -> Sql:
    """The scopes of a window as one array, computed inside the INSERT that rewrites them, so an
    incremental build needs no round trip (and no query-size limit) however many scopes it has."""
    return Sql(f"SELECT groupUniqArray({p.scope}) FROM ({bound_scopes_sql})")


def written_sql(p: Projection, version: int) -> str:
    """Rows and tombstones one build wrote (its version is newer than anything else stored)."""
    return f"SELECT countIf(_is_deleted = 0), countIf(_is_deleted = 1) FROM {p.storage} WHERE _version = {version}"


def next_version_sql(p: Projection) -> str:
    """Server clock in µs, but never below what is stored: versions only grow, even if the clock steps back."""
    return f"SELECT greatest(toUInt64(toUnixTimestamp64Micro(now64(6))), (SELECT max(_version) + 1 FROM {p.storage}))"


HIGH_WATER_SQL = f"SELECT toInt64(toUnixTimestamp64Micro(max(stored_at))) FROM {EVENTS}"
WATERMARK_SQL = (
    f"SELECT count(), toInt64(toUnixTimestamp64Micro(argMax(watermark, built_at)))"
    f" FROM {WATERMARKS} WHERE `projection` = {{projection:String}}"
)
STORE_WATERMARK_SQL = (
    f"INSERT INTO {WATERMARKS} (`projection`, watermark, built_at, mode)"
    " SELECT {projection:String}, {watermark:DateTime64(6, 'UTC')}, now64(6), {mode:String}"
)
DATABASE_ENGINE_SQL = f"SELECT engine FROM system.databases WHERE name = '{DATABASE}'"
COLUMNS_SQL = (
    f"SELECT name, type FROM system.columns WHERE database = '{DATABASE}' AND table = {{table:String}}"
    " ORDER BY position"
)
TABLE_EXISTS_SQL = "SELECT count() FROM system.tables WHERE database = {database:String} AND name = {table:String}"
