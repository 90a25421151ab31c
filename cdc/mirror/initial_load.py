"""The initial load through the copy path (:mod:`cdc.mirror.copy_sql`): chunked, parallel, resumable.

At a source's first start the plan is written to ``cdc.initial_loads`` *before* Debezium starts: each
copyable table split into chunks of its integer key (one chunk for other keys). Debezium's snapshot
then skips those tables; once the replication slot exists, workers copy the chunks not yet done,
several at once, and mark each one done. After a crash (kill -9 included) the next start finds the
plan and copies only what is not marked done; a chunk copied twice changes nothing (same rows at
LSN 0). Why any chunk may be read at any time after the slot exists: see :mod:`cdc.mirror.copy_sql`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from cdc.domain.changes import TableSchema
from cdc.errors import CdcError, SourceError
from cdc.mirror.copy_sql import copy_columns, copy_query, copyable
from cdc.mirror.table import MirrorTable
from cdc.ports import SourceDatabase, Warehouse

log = logging.getLogger(__name__)

BLOCK_BYTES = 16 << 20  # per insert: a few tens of thousands of rows of a typical table
CHUNK_ROWS = 250_000  # rows per chunk (estimated from the key range)
LOADS_DDL = (
    "CREATE TABLE IF NOT EXISTS cdc.initial_loads (source String, table String, chunk UInt32,"
    " lower Nullable(Int64), upper Nullable(Int64), estimate UInt64, done UInt8, rows UInt64,"
    " updated_at DateTime64(6, 'UTC') DEFAULT now64(6)) ENGINE = ReplacingMergeTree(updated_at)"
    " ORDER BY (source, table, chunk)"
)
_INTEGERS = {"int2", "int4", "int8"}
_SETTINGS = {"optimize_on_insert": 0}  # each key once per chunk; the views read FINAL anyway (a third faster)


def copy_rows(
    source: SourceDatabase,
    warehouse: Warehouse,
    table: MirrorTable,
    where: str = "",
    guard: Callable[[], AbstractContextManager[object]] = nullcontext,
    into: str = "_copy_",
) -> int:
    """Copy the rows of ``table`` (those matching ``where``, a SQL condition) into its mirror; the count.
    ``guard()``: held around each insert (the sink takes it exclusively while it recreates the views);
    ``into``: the prefix of the Null table taking the rows (``cdc.mirror.resync`` has its own)."""
    live = source.table_schema(table.schema.ref)
    if live is None:
        raise SourceError(f"{table.schema.ref.display} is gone from the source")
    columns = copy_columns(table)
    rows = 0
    for block in source.copy_out(copy_query(table, live, where), BLOCK_BYTES):
        with guard():
            warehouse.insert_raw(table.database, into + table.name, columns, block, "TabSeparated", _SETTINGS)
        rows += block.count(b"\n")
    return rows


@dataclass
class Chunk:
    table: str  # schema.table
    index: int
    lower: int | None
    upper: int | None
    estimate: int  # rows the table was estimated to hold when planned
    done: bool = False
    rows: int = 0
    claimed: bool = False  # a worker is copying it


@dataclass
class Progress:
    """One table's load: rows copied of about ``estimate``, and the pace."""

    table: str
    copied: int
    estimate: int
    chunks_done: int
    chunks: int
    rate: float  # rows/s since this run's copy began

    @property
    def eta_s(self) -> float | None:
        if self.chunks_done == self.chunks:
            return 0.0
        left = max(self.estimate - self.copied, 0)
        return left / self.rate if self.rate > 0 else None


class InitialLoad:
    """The copy-path load of one source's tables."""

    def __init__(
        self,
        source_name: str,
        source: SourceDatabase,
        warehouse: Warehouse,
        table_of: Callable[[TableSchema], MirrorTable],
        guard: Callable[[], AbstractContextManager[object]],
        workers: int = 2,
    ) -> None:
        self.name = source_name
        self._source, self._warehouse, self._table_of, self._guard = source, warehouse, table_of, guard
        self.workers = workers
        self.chunks: list[Chunk] = []
        self.schemas: dict[str, TableSchema] = {}
        self.error: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._began: dict[str, tuple[float, int]] = {}
        warehouse.command(LOADS_DDL)

    # -- the plan -----------------------------------------------------------------------------
    def prepare(self, schemas: Sequence[TableSchema], first_start: bool) -> list[TableSchema]:
        """The tables the copy path loads (Debezium's snapshot skips them). At a first start: the copyable
        ones, planned now; later: those of the stored plan (resumed where it stopped)."""
        by_name = {s.ref.qualified: s for s in schemas}
        self.chunks = [c for c in self._stored() if c.table in by_name]
        if not self.chunks and first_start:
            for schema in schemas:
                why = copyable(schema)
                if why:
                    log.warning("%s: loaded by Debezium's snapshot: %s", schema.ref.display, why)
                    continue
                self.chunks += self._plan(schema)
            self._record(self.chunks)
        self.schemas = {c.table: by_name[c.table] for c in self.chunks}
        return list(self.schemas.values())

    def add(self, schemas: Sequence[TableSchema]) -> None:
        """Plan and record the load of tables added while the bridge runs (copied at the next ``start``)."""
        chunks = [c for schema in schemas for c in self._plan(schema)]
        self._record(chunks)
        with self._lock:
            self.chunks += chunks
            self.schemas.update({schema.ref.qualified: schema for schema in schemas})

    def _plan(self, schema: TableSchema) -> list[Chunk]:
        estimate = estimate_rows(self._source, schema)
        table = schema.ref.qualified
        return [
            Chunk(table, i, lo, hi, estimate) for i, (lo, hi) in enumerate(key_ranges(self._source, schema, estimate))
        ]

    def _stored(self) -> list[Chunk]:
        rows = self._warehouse.query(
            "SELECT table, chunk, lower, upper, estimate, done, rows FROM cdc.initial_loads FINAL"
            " WHERE source = {s:String} ORDER BY table, chunk",
            {"s": self.name},
        )
        return [Chunk(str(t), int(i), lo, hi, int(e), bool(d), int(n)) for t, i, lo, hi, e, d, n in rows]

    def _record(self, chunks: Sequence[Chunk]) -> None:
        if chunks:
            self._warehouse.insert(
                "cdc",
                "initial_loads",
                ("source", "table", "chunk", "lower", "upper", "estimate", "done", "rows"),
                [(self.name, c.table, c.index, c.lower, c.upper, c.estimate, int(c.done), c.rows) for c in chunks],
            )

    # -- copying ------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        with self._lock:
            return all(c.done for c in self.chunks)

    def loading(self, table: str) -> bool:
        """Whether ``table`` (``schema.table``, qualified) still has chunks to copy."""
        with self._lock:
            return any(not c.done for c in self.chunks if c.table == table)

    def start(self, slot_ready: Callable[[], bool]) -> None:
        """Copy the chunks not yet done, ``workers`` at once, once ``slot_ready()`` (the slot exists)."""
        if self.done or any(t.is_alive() for t in self._threads):
            return
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._work, args=(slot_ready,), name=f"load-{self.name}-{i}", daemon=True)
            for i in range(self.workers)
        ]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)

    def _work(self, slot_ready: Callable[[], bool]) -> None:
        while not slot_ready():  # copying before the slot exists could miss changes made in between
            if self._stop.wait(0.5):
                return
        while not self._stop.is_set():
            chunk = self._claim()
            if chunk is None:
                return
            try:
                where = where_sql(self.schemas[chunk.table], chunk.lower, chunk.upper)
                began = time.monotonic()
                rows = copy_rows(self._source, self._warehouse, self._table_of(self.schemas[chunk.table]), where,
                                 self._guard)  # fmt: skip
                chunk.rows, chunk.done = rows, True
                self._record([chunk])
                self.error = None
                log.info("copied %s chunk %d: %d rows in %.1f s", chunk.table, chunk.index, rows,
                         time.monotonic() - began)  # fmt: skip
            except CdcError as e:  # the source or the warehouse away: the chunk is copied again later
                self.error = f"initial load of {chunk.table}: {e} (retrying)"
                log.warning("%s", self.error)
                self._stop.wait(5.0)
            except Exception as e:  # a bug: said in cdc status, and this worker stops (the load does not end)
                self.error = f"initial load of {chunk.table} stopped: {type(e).__name__}: {e}"
                log.exception("initial load of %s stopped", chunk.table)
                return
            finally:
                with self._lock:
                    chunk.claimed = False

    def _claim(self) -> Chunk | None:
        with self._lock:
            for c in self.chunks:
                if not c.done and not c.claimed:
                    c.claimed = True
                    self._began.setdefault(c.table, (time.monotonic(), _copied(self.chunks, c.table)))
                    return c
        return None

    def progress(self) -> list[Progress]:
        out = []
        now = time.monotonic()
        with self._lock:
            for table in dict.fromkeys(c.table for c in self.chunks):
                mine = [c for c in self.chunks if c.table == table]
                copied = _copied(self.chunks, table)
                began, at_start = self._began.get(table, (now, copied))
                rate = (copied - at_start) / (now - began) if now > began else 0.0
                out.append(Progress(table, copied, max(mine[0].estimate, copied), sum(c.done for c in mine),
                                    len(mine), rate))  # fmt: skip
        return out


def _copied(chunks: Sequence[Chunk], table: str) -> int:
    return sum(c.rows for c in chunks if c.table == table and c.done)


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
    return int(source.query(f"SELECT count(*) FROM {_sql(schema)}")[0][0])  # never analyzed


def key_ranges(source: SourceDatabase, schema: TableSchema, estimate: int) -> list[tuple[int | None, int | None]]:
    """Ranges ``[lower, upper)`` of an integer key of about ``CHUNK_ROWS`` each (open at both ends), or one
    range for the whole table when it is small or has no single integer key."""
    column = schema.column_index.get(schema.key[0]) if len(schema.key) == 1 else None
    if column is None or column.pg_type not in _INTEGERS or column.is_array or estimate <= CHUNK_ROWS:
        return [(None, None)]
    key = _ident(column.name)
    low, high = source.query(f"SELECT min({key}), max({key}) FROM {_sql(schema)}")[0]
    if low is None:
        return [(None, None)]
    n = min(math.ceil(estimate / CHUNK_ROWS), 10_000)
    step = max((int(high) - int(low) + 1) // n, 1)
    bounds = [int(low) + i * step for i in range(1, n)]
    return list(zip([None, *bounds], [*bounds, None], strict=True))


def where_sql(schema: TableSchema, lower: int | None, upper: int | None) -> str:
    """The condition selecting key range ``[lower, upper)`` ('' for the whole table)."""
    if lower is None and upper is None:
        return ""
    key = _ident(schema.key[0])
    parts = ([f"{key} >= {int(lower)}"] if lower is not None else []) + (
        [f"{key} < {int(upper)}"] if upper is not None else []
    )
    return " AND ".join(parts)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql(schema: TableSchema) -> str:
    return f"{_ident(schema.ref.schema)}.{_ident(schema.ref.table)}"
