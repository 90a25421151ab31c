"""Domain events for the rows the copy path loads (``op`` r), like those of Debezium's snapshot.

When the bridge itself creates the replication slot at a first start, it exports the snapshot the slot
starts from (:meth:`SourceDatabase.create_slot_exporting`) and every chunk is copied under it, so the
copy holds exactly the rows as they were when streaming begins: each existing row once, and no row the
stream also brings (a row inserted later is streamed, not copied). While a chunk is copied, PostgreSQL
also writes each of its rows as the change message Debezium's snapshot would send (under the same
snapshot) into ``cdc.snapshot_envelopes``; the mirror is done with the chunk then. A thread of its own
hands those messages to the translators (the same code the events lane runs: same ids, payloads, topics
and store) and drops them once stored, so the events lane may trail the mirror, visibly (``cdc status``
shows the chunks whose events are stored). Event ids are functions of the row, so a chunk whose events
are stored twice after a crash stores them once.

A chunk copied without the snapshot (the bridge was restarted during the copy, and the snapshot died
with it) is read as of its copy: the mirror is exact all the same, but its rows would not be *the*
rows of when streaming began, so their snapshot events are **skipped**, counted, and said in the log.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING

from cdc.domain.changes import TableSchema
from cdc.errors import CdcError
from cdc.mirror.copy_sql import envelope_query, pg_literal
from cdc.mirror.row_checks import literal
from cdc.ports import Message, SourceDatabase, Warehouse

if TYPE_CHECKING:
    from cdc.mirror.initial_load import Chunk, InitialLoad

log = logging.getLogger(__name__)

ENVELOPES_DDL = (
    "CREATE TABLE IF NOT EXISTS cdc.snapshot_envelopes (source String, table String, chunk UInt32, seq UInt64,"
    " value String) ENGINE = MergeTree ORDER BY (source, table, chunk, seq)"
)
BATCH = 5_000  # messages translated per step
Emit = Callable[[Sequence[Message]], None]  # translate, publish and store (raises CdcError to retry)


def export_snapshot(
    load: InitialLoad, source: SourceDatabase, slot: str, every_table: Collection[str], streamed_before: bool
) -> None:
    """At a first start where ``load`` copies every captured table: create the replication slot here,
    exporting the snapshot it starts from, for the copy to read (Debezium then streams from that slot).
    Otherwise (Debezium snapshots some tables and needs its own slot, or a load already began) nothing."""
    if load.snapshot is not None or not load.chunks or any(c.done for c in load.chunks) or streamed_before:
        return
    if set(load.schemas) != set(every_table) or any(s.slot_name == slot for s in source.slots()):
        return
    load.snapshot = source.create_slot_exporting(slot)
    log.info("created replication slot %s; the copy reads the snapshot it starts from", slot)


class SnapshotEvents:
    """Stashes each copied chunk's change messages, and turns them into domain events on its own thread."""

    def __init__(self, load: InitialLoad, source: SourceDatabase, warehouse: Warehouse, emit: Emit) -> None:
        self._load, self._source, self._warehouse, self._emit = load, source, warehouse, emit
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.skipped_rows = 0
        self.error: str | None = None
        warehouse.command(ENVELOPES_DDL)

    def stash(self, chunk: Chunk, schema: TableSchema, where: str, snapshot: str) -> None:
        """Keep the chunk's rows as change messages, read under ``snapshot`` (a copy worker calls it)."""
        self._warehouse.command(
            f"ALTER TABLE cdc.snapshot_envelopes DELETE WHERE {_chunk_sql(self._load.name, chunk)}"
            " SETTINGS mutations_sync = 1"
        )  # a chunk copied again after a crash: its messages once
        query = (
            f"SELECT {pg_literal(self._load.name)}, {pg_literal(chunk.table)}, {int(chunk.index)}, n, m"
            f" FROM ({envelope_query(schema, where)}) AS e(n, m)"
        )
        for block in self._source.copy_out(query, 16 << 20, snapshot):
            self._warehouse.insert_raw(
                "cdc", "snapshot_envelopes", ("source", "table", "chunk", "seq", "value"), block, "TabSeparated"
            )

    @property
    def pending(self) -> bool:
        """Whether some chunk's snapshot events are not stored (nor skipped) yet."""
        return any(not c.events for c in self._load.chunks)

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"snapshot-events-{self._load.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            chunk = self._next()
            if chunk is None:
                if self._load.done and not any(c for c in self._load.chunks if not c.events):
                    return
                self._stop.wait(1.0)
                continue
            try:
                self._events_of(chunk)
                self.error = None
            except CdcError as e:  # the warehouse or the broker away: again in a while
                self.error = f"snapshot events of {chunk.table}: {e} (retrying)"
                log.warning("%s", self.error)
                self._stop.wait(5.0)
            except Exception as e:  # a bug: said in cdc status; the mirror goes on
                self.error = f"snapshot events of {chunk.table} stopped: {type(e).__name__}: {e}"
                log.exception("snapshot events of %s stopped", chunk.table)
                return

    def _next(self) -> Chunk | None:
        for c in self._load.chunks:
            if c.done and not c.events:
                return c
        return None

    def _events_of(self, chunk: Chunk) -> None:
        if not chunk.exact:
            self.skipped_rows += chunk.rows
            log.warning(
                "%s chunk %d: %d rows copied without the slot's snapshot (the bridge restarted during the copy):"
                " the mirror is exact, their snapshot events are skipped",
                chunk.table,
                chunk.index,
                chunk.rows,
            )
        else:
            seq = 0
            where = _chunk_sql(self._load.name, chunk)
            topic = self._load.schemas[chunk.table].ref.topic
            while not self._stop.is_set():
                rows = self._warehouse.query(
                    f"SELECT seq, value FROM cdc.snapshot_envelopes WHERE {where} AND seq > {seq} ORDER BY seq"
                    f" LIMIT {BATCH}"
                )
                if not rows:
                    break
                self._emit([Message(topic, 0, int(n), None, str(v).encode()) for n, v in rows])
                seq = int(rows[-1][0])
            if self._stop.is_set():
                return
            self._warehouse.command(f"ALTER TABLE cdc.snapshot_envelopes DELETE WHERE {where}")
        chunk.events = True
        self._load.record(chunk)


def _chunk_sql(source: str, chunk: Chunk) -> str:
    return f"source = {literal(source)} AND table = {literal(chunk.table)} AND chunk = {int(chunk.index)}"
