"""Builds projections in ClickHouse through the ``Warehouse`` port (Dagster assets call this).

Guarantees:

* **Incremental == full.** An incremental build recomputes every scope touched by events
  stored since the watermark, each entirely from the whole event store, and writes the scope's
  rows and its tombstones in one INSERT under a new version.
* **No half-built reports.** A full build fills a shadow table and swaps it in with
  ``EXCHANGE TABLES`` (atomic in ClickHouse's default Atomic database engine; chDB 26 has it).
* **Nothing missed, nothing twice.** The watermark is the newest ``stored_at`` seen when the build
  *started*; the next build re-reads a small overlap before it (``overlap``) for inserts that became
  visible late. Rebuilding a scope twice gives the same rows, so the overlap costs time, not truth.

Builds of one projection must not run concurrently (in Dagster: one run per asset at a time).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from cdc.errors import CdcError
from cdc.events.store import DDL as EVENT_STORE_DDL
from cdc.ports import Warehouse
from pipelines import storage
from pipelines.projection import DATABASE, Projection, ProjectionError, Sql, bind, from_micros, micros

OVERLAP = dt.timedelta(seconds=5)
_ATOMIC_ENGINES = {"Atomic", "Replicated", "Shared"}


@dataclass(frozen=True, slots=True)
class BuildResult:
    """What one build did. ``version`` is None when there was nothing to do."""

    projection: str
    mode: str  # "full", "incremental" or "scopes"
    scopes: int
    rows: int  # rows written (current rows of the rebuilt scopes)
    tombstones: int  # keys of rebuilt scopes that no longer exist
    watermark: dt.datetime | None  # the stored watermark after the build
    version: int | None = None

    @property
    def skipped(self) -> bool:
        return self.version is None


class ProjectionBuilder:
    """Creates, fully builds and incrementally maintains projections in one warehouse."""

    def __init__(self, warehouse: Warehouse, overlap: dt.timedelta = OVERLAP) -> None:
        self._warehouse = warehouse
        self._overlap = overlap

    def ensure(self, p: Projection) -> None:
        """Create the event store (if new), the report's table, view and watermark table; idempotent."""
        for statement in (*EVENT_STORE_DDL, *storage.ddl(p)):
            self._warehouse.command(statement)
        if not self._exists(p.view):
            self._warehouse.command(storage.view_ddl(p))
        engine = self._warehouse.query(storage.DATABASE_ENGINE_SQL)[0][0]
        if engine not in _ATOMIC_ENGINES:
            raise ProjectionError(
                f"database {DATABASE} uses the {engine} engine; full builds need EXCHANGE TABLES, "
                "which only Atomic databases support: recreate it with ENGINE = Atomic"
            )

    def watermark(self, p: Projection) -> dt.datetime | None:
        """The newest ``stored_at`` the last full or incremental build had seen; None before the first."""
        self.ensure(p)
        return self._watermark(p)

    def full(self, p: Projection) -> BuildResult:
        """Rebuild the whole report in a shadow table and swap it in; readers see old or new, never half."""
        self._prepare(p)
        hi = self._high_water()
        version = self._next_version(p)
        self._warehouse.command(f"DROP TABLE IF EXISTS {p.shadow}")
        self._warehouse.command(storage.table_ddl(p, p.shadow))
        try:
            self._run(p, bind(storage.fill_sql(p, p.shadow, version), {"scopes": [], "full": True}))
            scopes, rows = self._warehouse.query(f"SELECT uniqExact({p.scope}), count() FROM {p.shadow}")[0]
            self._warehouse.command(f"EXCHANGE TABLES {p.storage} AND {p.shadow}")
        finally:
            self._warehouse.command(f"DROP TABLE IF EXISTS {p.shadow}")
        self._warehouse.command(storage.view_ddl(p))  # the definition may have changed with the table
        self._store_watermark(p, hi, "full")
        return BuildResult(p.name, "full", int(scopes), int(rows), 0, from_micros(hi), version)

    def incremental(self, p: Projection) -> BuildResult:
        """Recompute the scopes touched by events stored after the watermark (minus the overlap).

        Without a watermark every stored event counts as new. When nothing was stored since the
        watermark, nothing is done and the watermark stays where it is.
        """
        self._prepare(p)
        self._check_columns(p)
        hi = self._high_water()
        mark = self._watermark(p)
        if mark is not None and micros(mark) >= hi:
            return BuildResult(p.name, "incremental", 0, 0, 0, mark)
        lo = 0 if mark is None else max(0, micros(mark - self._overlap))
        window = bind(p.scopes_sql, {"lo": from_micros(lo), "hi": from_micros(hi)})
        count = int(self._warehouse.query(f"SELECT count() FROM ({window})")[0][0])
        if count == 0:
            self._store_watermark(p, hi, "incremental")
            return BuildResult(p.name, "incremental", 0, 0, 0, from_micros(hi))
        result = self._rewrite(p, storage.touched_scopes(p, window), count, "incremental")
        self._store_watermark(p, hi, "incremental")
        return dataclasses.replace(result, watermark=from_micros(hi))

    def rebuild(self, p: Projection, scopes: Sequence[object]) -> BuildResult:
        """Recompute the given scopes (a backfill); the watermark does not move."""
        self._prepare(p)
        self._check_columns(p)
        if not scopes:
            return BuildResult(p.name, "scopes", 0, 0, 0, self._watermark(p))
        result = self._rewrite(p, list(scopes), len(set(scopes)), "scopes")
        return dataclasses.replace(result, watermark=self._watermark(p))

    def partition(self, p: Projection, day: dt.date) -> BuildResult:
        """Recompute one day of a day-scoped projection (a Dagster daily partition)."""
        if p.scope_type != "Date":
            raise ProjectionError(f"projection {p.name} is scoped by {p.scope} ({p.scope_type}), not by a Date")
        return self.rebuild(p, [day])

    # -- steps ----------------------------------------------------------------------------------
    def _prepare(self, p: Projection) -> None:
        self.ensure(p)
        for table in p.tables:
            if not self._exists(table):
                raise ProjectionError(
                    f"projection {p.name} reads {table}, which does not exist yet: "
                    "start capturing that table (its mirror is created with it)"
                )

    def _rewrite(self, p: Projection, scopes: Sql | list[object], count: int, mode: str) -> BuildResult:
        version = self._next_version(p)
        self._run(p, bind(storage.refresh_sql(p, version), {"scopes": scopes, "full": False}))
        rows, tombstones = self._warehouse.query(storage.written_sql(p, version))[0]
        return BuildResult(p.name, mode, count, int(rows), int(tombstones), None, version)

    def _exists(self, table: str) -> bool:
        database, _, name = table.partition(".")
        found = self._warehouse.query(bind(storage.TABLE_EXISTS_SQL, {"database": database, "table": name}))
        return bool(int(found[0][0]))

    def _run(self, p: Projection, insert: str) -> None:
        try:
            self._warehouse.command(insert)
        except CdcError as e:
            if storage.DUPLICATE_KEY not in str(e):
                raise
            raise ProjectionError(
                f"projection {p.name}: {storage.DUPLICATE_KEY} ({', '.join(p.key)}); "
                "nothing was written, the report is as it was"
            ) from None

    def _check_columns(self, p: Projection) -> None:
        """An incremental write into a table of another definition would fail or mislead."""
        found = self._warehouse.query(bind(storage.COLUMNS_SQL, {"table": p.storage.partition(".")[2]}))
        wanted = [*p.columns, ("_version", "UInt64"), ("_is_deleted", "UInt8")]
        if [(n, t.replace(" ", "")) for n, t in found] != [(n, t.replace(" ", "")) for n, t in wanted]:
            raise ProjectionError(
                f"{p.storage} does not match the definition of projection {p.name} "
                "(it changed since the last full build): run a full build"
            )

    def _watermark(self, p: Projection) -> dt.datetime | None:
        found, value = self._warehouse.query(bind(storage.WATERMARK_SQL, {"projection": p.name}))[0]
        return from_micros(int(value)) if int(found) else None

    def _high_water(self) -> int:
        return int(self._warehouse.query(storage.HIGH_WATER_SQL)[0][0])

    def _next_version(self, p: Projection) -> int:
        return int(self._warehouse.query(storage.next_version_sql(p))[0][0])

    def _store_watermark(self, p: Projection, hi: int, mode: str) -> None:
        values = {"projection": p.name, "watermark": from_micros(hi), "mode": mode}
        self._warehouse.command(bind(storage.STORE_WATERMARK_SQL, values))
