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
import queue
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from cdc.domain.changes import TableSchema
from cdc.errors import CdcError
from cdc.mirror.chunks import estimate_rows, key_ranges, where_sql
from cdc.mirror.copy_sql import copyable
from cdc.mirror.copying import insert_rows, read_rows, remove_stale_scratch, scratch_dir
from cdc.mirror.table import MirrorTable
from cdc.ports import SnapshotHandle, SourceDatabase, Warehouse

log = logging.getLogger(__name__)
Stash = Callable[["Chunk", TableSchema, str, str], None]  # (chunk, schema, where, snapshot): see snapshot_events

LOADS_DDL = (
    "CREATE TABLE IF NOT EXISTS cdc.initial_loads (source String, table String, chunk UInt32,"
    " lower Nullable(Int64), upper Nullable(Int64), estimate UInt64, done UInt8, rows UInt64,"
    " updated_at DateTime64(6, 'UTC') DEFAULT now64(6)) ENGINE = ReplacingMergeTree(updated_at)"
    " ORDER BY (source, table, chunk)",
    # exact: copied under the slot's exported snapshot; events: its snapshot events are stored (or skipped)
    "ALTER TABLE cdc.initial_loads ADD COLUMN IF NOT EXISTS exact UInt8 DEFAULT 0",
    "ALTER TABLE cdc.initial_loads ADD COLUMN IF NOT EXISTS events UInt8 DEFAULT 0",
)


@dataclass
class Chunk:
    table: str  # schema.table
    index: int
    lower: int | None
    upper: int | None
    estimate: int  # rows the table was estimated to hold when planned
    done: bool = False
    rows: int = 0
    exact: bool = False  # copied under the slot's exported snapshot: its rows are the table as of the slot
    events: bool = False  # its snapshot events are stored (or were skipped: see cdc.mirror.snapshot_events)
    claimed: bool = False  # a worker is copying it
    copying: int = 0  # rows read so far by the copy under way (shown in the progress, not stored)

    def reading(self, rows: int) -> None:
        self.copying = rows


@dataclass
class _Finish:
    """The end of a chunk's files: ``ok`` when every row was read (the chunk is done once they are inserted)."""

    chunk: Chunk
    scratch: Path  # the chunk's files' directory
    began: float
    rows: int = 0
    exact: bool = False
    ok: bool = False
    error: CdcError | None = None  # inserting one of its files failed


@dataclass
class _File:
    """A file of a chunk's rows, to insert."""

    table: MirrorTable
    path: Path
    finish: _Finish


@dataclass
class Progress:
    """One table's load: rows copied of about ``estimate``, and the pace."""

    table: str
    copied: int
    estimate: int
    chunks_done: int
    chunks: int
    rate: float  # rows/s since this run's copy began
    events_done: int | None = None  # chunks whose snapshot events are stored or skipped (None: none wanted)
    events_skipped: int = 0  # rows copied without the exported snapshot: no snapshot events

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
        refusal: Callable[[TableSchema], str | None] = copyable,
    ) -> None:
        self._refusal = refusal  # why a table must not be copied (default: a type the copy cannot encode)
        self.name = source_name
        self._source, self._warehouse, self._table_of, self._guard = source, warehouse, table_of, guard
        self.workers = workers
        self.chunks: list[Chunk] = []
        self.schemas: dict[str, TableSchema] = {}
        self.error: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._inserter = threading.Thread()  # inserts the files the workers read (see _work)
        self._began: dict[str, tuple[float, int]] = {}
        for statement in LOADS_DDL:
            warehouse.command(statement)
        self._inserts: queue.Queue[_File | _Finish] = queue.Queue(maxsize=workers)
        self.snapshot: SnapshotHandle | None = None  # the slot's exported snapshot, while it is valid
        self.stash: Stash | None = None  # keeps each chunk's change messages for its snapshot events

    # -- the plan -----------------------------------------------------------------------------
    def prepare(self, schemas: Sequence[TableSchema], first_start: bool, together: bool = False) -> list[TableSchema]:
        """The tables the copy path loads (Debezium's snapshot skips them). At a first start: the copyable
        ones, planned now; later: those of the stored plan (resumed where it stopped). ``together``: all
        or none (the events of existing rows need one snapshot for every table: cdc.mirror.snapshot_events)."""
        by_name = {s.ref.qualified: s for s in schemas}
        self.chunks = [c for c in self._stored() if c.table in by_name]
        if not self.chunks and first_start:
            why_not = {s.ref.display: why for s in schemas if (why := self._refusal(s))}
            for table, why in why_not.items():
                log.warning("%s: loaded by Debezium's snapshot: %s", table, why)
            if why_not and together:
                tables = ", ".join(why_not)
                log.warning("every table is loaded by Debezium's snapshot: the events of existing rows need one"
                            " snapshot of all tables, and the copy path cannot load %s", tables)  # fmt: skip
                return []
            for schema in schemas:
                if schema.ref.display not in why_not:
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
            Chunk(table, i, lo, hi, estimate)
            for i, (lo, hi) in enumerate(key_ranges(self._source, schema, estimate, self.workers))
        ]

    def _stored(self) -> list[Chunk]:
        rows = self._warehouse.query(
            "SELECT table, chunk, lower, upper, estimate, done, rows, exact, events FROM cdc.initial_loads FINAL"
            " WHERE source = {s:String} ORDER BY table, chunk",
            {"s": self.name},
        )
        return [
            Chunk(str(t), int(i), lo, hi, int(e), bool(d), int(n), bool(x), bool(v))
            for t, i, lo, hi, e, d, n, x, v in rows
        ]

    def record(self, chunk: Chunk) -> None:
        """Store what is known of ``chunk`` now (done, events)."""
        self._record([chunk])

    def _record(self, chunks: Sequence[Chunk]) -> None:
        if chunks:
            self._warehouse.insert(
                "cdc",
                "initial_loads",
                ("source", "table", "chunk", "lower", "upper", "estimate", "done", "rows", "exact", "events"),
                [
                    (
                        self.name,
                        c.table,
                        c.index,
                        c.lower,
                        c.upper,
                        c.estimate,
                        int(c.done),
                        c.rows,
                        int(c.exact),
                        int(c.events),
                    )
                    for c in chunks
                ],  # fmt: skip
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
        remove_stale_scratch()
        self._inserter = threading.Thread(target=self._insert_loop, name=f"load-{self.name}-insert", daemon=True)
        self._threads = [self._inserter] + [
            threading.Thread(target=self._work, args=(slot_ready,), name=f"load-{self.name}-{i}", daemon=True)
            for i in range(self.workers)
        ]
        for t in self._threads:  # the inserter first: a worker stops when it is gone
            t.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
        while True:  # what the inserter left: the files go, the chunks are copied again at the next start
            try:
                self._drop(self._inserts.get_nowait())
            except queue.Empty:
                break
        self._close_snapshot()  # a restart reads the rest as of its copy (cdc.mirror.copy_sql)

    def _release_snapshot_when_copied(self) -> None:
        with self._lock:
            copied = all(c.done for c in self.chunks)
        if copied:
            self._close_snapshot()

    def _close_snapshot(self) -> None:
        with self._lock:
            snapshot, self.snapshot = self.snapshot, None
        if snapshot is not None:
            snapshot.close()

    # Workers read chunks into files and queue them; one thread inserts them in turn (the embedded
    # ClickHouse runs one query at a time anyway) and marks each chunk done after its last file, so
    # reading goes on while ClickHouse inserts. The queue's bound holds the files on disk to a few.
    def _work(self, slot_ready: Callable[[], bool]) -> None:
        while not slot_ready():  # copying before the slot exists could miss changes made in between
            if self._stop.wait(0.5):
                return
        while not self._stop.is_set() and self._inserter.is_alive():
            chunk = self._claim()
            if chunk is None:
                if self.done:
                    return
                self._stop.wait(0.5)  # chunks in flight: one may fail and come back
                continue
            finish = _Finish(chunk, scratch_dir(), time.monotonic())
            try:
                where = where_sql(self.schemas[chunk.table], chunk.lower, chunk.upper)
                snapshot = self.snapshot.name if self.snapshot is not None else None
                table = self._table_of(self.schemas[chunk.table])
                for path, rows in read_rows(self._source, table, where, finish.scratch, snapshot, chunk.reading):
                    if not self._put(_File(table, path, finish)):
                        break
                    finish.rows += rows
                else:
                    if self.stash is not None and snapshot is not None:  # the messages of the same rows, same snapshot
                        self.stash(chunk, table.schema, where, snapshot)
                    finish.exact, finish.ok = snapshot is not None, True
            except CdcError as e:  # the source away: the chunk is copied again later
                self._failed(chunk, e)
            except Exception as e:  # a bug: said in cdc status, and this worker stops (the load does not end)
                self.error = f"initial load of {chunk.table} stopped: {type(e).__name__}: {e}"
                log.exception("initial load of %s stopped", chunk.table)
                return
            finally:  # after the chunk's files: the inserter marks it done, or frees it to be copied again
                self._put(finish, stopping=True)

    def _put(self, item: _File | _Finish, stopping: bool = False) -> bool:
        """Queue ``item`` for the inserter (waiting while the queue is full); False, with the item dropped,
        once the inserter is gone or the load stops (``stopping``: queued all the same, for the inserter to
        release the chunk)."""
        while self._inserter.is_alive() and (stopping or not self._stop.is_set()):
            try:
                self._inserts.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        self._drop(item)
        return False

    def _insert_loop(self) -> None:
        try:
            while True:
                try:
                    item = self._inserts.get(timeout=0.5)
                except queue.Empty:
                    if self._stop.is_set() or self.done:
                        return
                    continue
                if isinstance(item, _Finish):
                    self._finish(item)
                    continue
                if item.finish.error is None and not self._stop.is_set():
                    try:
                        insert_rows(self._warehouse, item.table, item.path, guard=self._guard)
                    except CdcError as e:  # the warehouse away: the chunk is copied again later
                        item.finish.error = e
                self._drop(item)
        except Exception as e:  # a bug: said in cdc status; the workers stop too (the load does not end)
            self.error = f"initial load stopped: {type(e).__name__}: {e}"
            log.exception("the initial load's inserts stopped")

    def _finish(self, f: _Finish) -> None:
        chunk = f.chunk
        try:
            if f.error is not None:
                self._failed(chunk, f.error)
            elif f.ok and not self._stop.is_set():
                chunk.rows, chunk.done, chunk.exact = f.rows, True, f.exact
                chunk.events = self.stash is None  # no snapshot events wanted: none pending
                self._record([chunk])
                self._release_snapshot_when_copied()
                self.error = None
                log.info("copied %s chunk %d: %d rows in %.1f s", chunk.table, chunk.index, f.rows,
                         time.monotonic() - f.began)  # fmt: skip
        except CdcError as e:  # the warehouse away while marking it done: copied again later
            chunk.done = False
            self._failed(chunk, e)
        finally:
            self._drop(f)

    def _drop(self, item: _File | _Finish) -> None:
        """Remove ``item``'s files; a chunk's end also frees the chunk (done or to be copied again)."""
        if isinstance(item, _File):
            item.path.unlink(missing_ok=True)
            return
        shutil.rmtree(item.scratch, ignore_errors=True)
        with self._lock:
            item.chunk.claimed, item.chunk.copying = False, 0

    def _failed(self, chunk: Chunk, e: CdcError) -> None:
        if self.snapshot is not None and "snapshot" in str(e).lower():  # no longer importable
            log.warning("the exported snapshot is gone (%s): chunks copied from now on are read as of"
                        " their copy; the stream makes the mirror exact all the same", e)  # fmt: skip
            self._close_snapshot()
        self.error = f"initial load of {chunk.table}: {e} (retrying)"
        log.warning("%s", self.error)
        self._stop.wait(5.0)

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
                events = sum(c.events for c in mine) if self.stash is not None else None
                skipped = sum(c.rows for c in mine if c.done and not c.exact) if self.stash is not None else 0
                out.append(Progress(table, copied, max(mine[0].estimate, copied), sum(c.done for c in mine),
                                    len(mine), rate, events, skipped))  # fmt: skip
        return out


def _copied(chunks: Sequence[Chunk], table: str) -> int:
    return sum(c.rows if c.done else c.copying for c in chunks if c.table == table)
