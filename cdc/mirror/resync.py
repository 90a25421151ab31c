"""``cdc resync TABLE``: reload one mirror from its source into a shadow table and swap it in atomically.

Readers never see a half-loaded table, and the stream keeps writing the mirror meanwhile:

1. note the warehouse's clock ``t0``; create ``_resync_state_<t>`` (the state table's twin), a Null
   ``_resync_copy_<t>`` and a view turning its rows into state rows, with the copy path's conversions;
2. copy the table from the source in key-range chunks, several at once (:mod:`cdc.mirror.initial_load`);
3. with the mirror's :class:`~cdc.mirror.ddl_gate.DdlGate` held exclusively (no write of the stream in
   flight): copy into the shadow every state row written since ``t0``, then ``EXCHANGE TABLES`` it with
   the state table; the current-state view reads the new one from then on. The change log is kept.

**Why the swapped-in table is exact.** Every row of it is versioned by source LSN (copied rows 0). A
change the stream wrote before ``t0`` was committed before the copy read the table, so the copy holds
its result or a newer one; a change written after ``t0`` is in the state table with its LSN and is
copied over in step 3, where it wins over the copy; the gate keeps any write from landing between that
copy and the swap. A change committed but not yet streamed when the swap happens reaches the new table
by the stream, with its LSN. Rows that exist in the mirror but not in the source are simply not copied:
that is what a resync repairs. If the mirror's schema changes during the copy the shadow would not match
it, so the resync stops and says so (run it again).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from cdc.domain.changes import TableRef, TableSchema
from cdc.errors import CdcError
from cdc.mirror.chunks import estimate_rows, key_ranges, where_sql
from cdc.mirror.copy_sql import copyable
from cdc.mirror.copying import copy_rows
from cdc.mirror.ddl_gate import DdlGate
from cdc.mirror.scratch import ScratchState
from cdc.mirror.table import MirrorTable
from cdc.ports import SourceDatabase, Warehouse

log = logging.getLogger(__name__)

SHADOW, COPY, VIEW = "_resync_state_", "_resync_copy_", "_mv_resync_"
_SCRATCH = ScratchState(SHADOW, COPY, VIEW)


class ResyncError(CdcError):
    """A resync that cannot run or could not finish (the mirror is as it was)."""


class Mirror(Protocol):
    gate: DdlGate

    def follow_source(self, ref: TableRef) -> MirrorTable: ...

    def table(self, ref: TableRef) -> MirrorTable: ...


@dataclass
class ResyncJob:
    """One resync as ``cdc resync`` and ``GET /resync`` show it."""

    source: str
    table: str
    state: str = "starting"  # copying, swapping, done, failed
    rows: int = 0
    estimate: int = 0
    chunks_done: int = 0
    chunks: int = 0
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    error: str | None = None

    @property
    def running(self) -> bool:
        return self.state not in ("done", "failed")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Resync:
    """Reloads the mirror of ``ref`` (see the module's docstring)."""

    def __init__(
        self,
        source: SourceDatabase,
        warehouse: Warehouse,
        mirror: Mirror,
        ref: TableRef,
        workers: int = 2,
        refusal: Callable[[TableSchema], str | None] = copyable,
    ) -> None:
        self._source, self._warehouse, self._mirror, self._ref = source, warehouse, mirror, ref
        self._refusal = refusal  # why the table must not be copied (a type, a masked column)
        self.workers = workers

    def run(self, job: ResyncJob) -> None:
        """Run to the end; the outcome is in ``job`` (never raises)."""
        table: MirrorTable | None = None
        try:
            table = self._mirror.follow_source(self._ref)
            self._run(table, job)
            job.state = "done"
            log.info("resync of %s: %d rows, swapped in", self._ref.display, job.rows)
        except CdcError as e:
            job.state, job.error = "failed", str(e)
            log.warning("resync of %s failed: %s", self._ref.display, e)
        except Exception as e:  # a bug: said in the job, the mirror stays as it was
            job.state, job.error = "failed", f"{type(e).__name__}: {e}"
            log.exception("resync of %s failed", self._ref.display)
        finally:
            job.finished_at = time.time()
            if table is not None:
                self._drop(table)

    def _run(self, table: MirrorTable, job: ResyncJob) -> None:
        why = self._refusal(table.schema)
        if why:
            raise ResyncError(f"{self._ref.display} cannot be copied yet: {why}")
        t0 = int(self._warehouse.query("SELECT toUnixTimestamp64Milli(now64(3))")[0][0])
        self._drop(table)
        for statement in _SCRATCH.create_ddl(table):
            self._warehouse.command(statement)
        job.estimate = estimate_rows(self._source, table.schema)
        ranges = key_ranges(self._source, table.schema, job.estimate, self.workers)
        job.chunks, job.state = len(ranges), "copying"
        self._copy(table, ranges, job)
        job.state = "swapping"
        with self._mirror.gate.ddl():  # no write of the stream in flight from here to the swap
            if self._mirror.table(self._ref).known != table.known:
                raise ResyncError(
                    f"the schema of {self._ref.display} changed during the resync: its mirror is as it was;"
                    " run `cdc resync` again"
                )
            self._warehouse.command(
                f"INSERT INTO {table.qualified(SHADOW)} SELECT * FROM {table.qualified('_state_')}"
                f" WHERE toUnixTimestamp64Milli(_ingested_at) >= {t0}"
            )
            self._warehouse.command(f"EXCHANGE TABLES {table.qualified('_state_')} AND {table.qualified(SHADOW)}")

    def _copy(self, table: MirrorTable, ranges: list[tuple[int | None, int | None]], job: ResyncJob) -> None:
        def one(lower: int | None, upper: int | None) -> Callable[[], int]:
            where = where_sql(table.schema, lower, upper)
            return lambda: copy_rows(self._source, self._warehouse, table, where, into=COPY)

        with ThreadPoolExecutor(self.workers, thread_name_prefix="resync") as pool:
            for done in as_completed([pool.submit(one(lo, hi)) for lo, hi in ranges]):
                job.rows += done.result()
                job.chunks_done += 1

    def _drop(self, table: MirrorTable) -> None:
        _SCRATCH.drop(self._warehouse, table, "resync")
