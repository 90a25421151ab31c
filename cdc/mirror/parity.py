"""Content parity of one mirror with its source (``cdc verify``, ``POST /parity``): every column, compared
over key ranges, within a budget of rows per run. Pure core: talks to the source and the warehouse through
their ports.

**How a range is compared.** The source rows of the range are copied by the initial load's copy path
(:mod:`cdc.mirror.copy_sql`) into a scratch table, ``<source>._parity_<table>``, the state table's twin,
through its own Null table and view (``_parity_copy_``, ``_mv_parity_``): the same conversions a streamed
change gets, so there is one type mapping, not two. Masked columns are read as their masked values, made in
PostgreSQL as Debezium makes them (:meth:`cdc.mirror.rules.ColumnRules.masks`); excluded columns are in
neither. ClickHouse then compares, key by key, ``cityHash64`` of every column of the current-state view
(``<source>.<table>``: current rows, deletes hidden) with the same of the scratch rows: a key only in the
source is *missing*, only in the mirror *extra*, in both with other values *differing*. The scratch objects
are dropped at the end.

**Changes in flight are not drift.** The stream keeps writing meanwhile. A key found different is read
again on both sides, up to ``attempts`` times ``wait_s`` apart; before each re-read of the mirror the
check waits (at most ``settle_s``) until the stream has stored every change committed before the source
was read (``caught_up(lsn)``). A key is drift only when it still differs and neither its source row nor its
mirror row changed between two reads, the second one made after the stream caught up (a change committed
just after the source was read may reach the mirror before it is read: the mirror's side moved); one that
kept changing, or whose stream did not catch up within ``settle_s``, is *unsettled*, not drift.

**Bounded cost.** A run compares at most about ``budget_rows`` source rows of a table, range by range
(:mod:`cdc.mirror.parity_ranges`), and keeps where it stopped in ``cdc.parity_progress``; the next run goes
on from there, so successive runs cover the whole table (``complete_cycle`` says a run reached its end).
A table of at most ``budget_rows`` (the planner's estimate) is compared whole in every run.

**The report** (:meth:`ParityReport.to_json`, stable for callers such as a Dagster asset check)::

    {"source": "shop", "table": "public.orders",
     "result": "ok" | "drift" | "unsupported" | "failed",
     "supported": true, "failed": false,
     "reason": null,                             # why not supported, or why it failed
     "rows_compared": 1200, "rows_estimate": 5000,
     "ranges_checked": 3, "complete_cycle": false,
     "missing": 0, "extra": 0, "differing": 0,   # confirmed drift, in the ranges checked
     "unsettled": 0,                             # keys still changing at the source at every re-read
     "rechecked": 2,                             # keys found different at first, then read again
     "first_range": {"lower": 1, "upper": 401} | null,   # the first range with drift; null: open end
     "sample_keys": [[17], [230]],               # up to 10 drifting keys, each the list of key values
     "next_cursor": 1201 | null,                 # where the next run starts (null: the table's start)
     "seconds": 0.8}
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from cdc.errors import CdcError
from cdc.mirror import parity_ranges as pr
from cdc.mirror.chunks import estimate_rows
from cdc.mirror.copy_sql import copyable
from cdc.mirror.copying import copy_rows
from cdc.mirror.parity_ranges import KeyRange
from cdc.mirror.row_checks import quote
from cdc.mirror.scratch import ScratchState
from cdc.mirror.table import MirrorTable
from cdc.ports import SourceDatabase, Warehouse

log = logging.getLogger(__name__)

SCRATCH, COPY, VIEW = "_parity_", "_parity_copy_", "_mv_parity_"
_SCRATCH = ScratchState(SCRATCH, COPY, VIEW)
BUDGET_ROWS = 200_000
RANGE_ROWS = 50_000
SAMPLE_KEYS = 10
RECHECK_KEYS = 1_000  # more differing keys than this: the range is read again whole
Key = tuple[Any, ...]
Hashes = tuple[int | None, int | None]  # (source, mirror); None: no such row there


@dataclass
class ParityReport:
    """One table's content parity, as ``cdc verify`` prints it and ``POST /parity`` returns it."""

    source: str
    table: str
    supported: bool = True
    reason: str | None = None
    failed: bool = False
    rows_compared: int = 0
    rows_estimate: int = 0
    ranges_checked: int = 0
    complete_cycle: bool = False
    missing: int = 0
    extra: int = 0
    differing: int = 0
    unsettled: int = 0
    rechecked: int = 0
    first_range: dict[str, Any] | None = None
    sample_keys: list[list[Any]] = field(default_factory=list)
    next_cursor: Any = None
    seconds: float = 0.0

    @property
    def drift(self) -> bool:
        return self.missing + self.extra + self.differing > 0

    @property
    def result(self) -> str:
        if self.failed:
            return "failed"
        if not self.supported:
            return "unsupported"
        return "drift" if self.drift else "ok"

    def to_json(self) -> dict[str, Any]:
        out = {"source": self.source, "table": self.table, "result": self.result}
        return out | asdict(self)


class ContentParity:
    """Compares one mirrored table with its source (see the module's docstring)."""

    def __init__(
        self,
        source: SourceDatabase,
        warehouse: Warehouse,
        table: MirrorTable,
        source_name: str,
        masks: Mapping[str, str] | None = None,
        caught_up: Callable[[int], bool] | None = None,
        budget_rows: int = BUDGET_ROWS,
        range_rows: int = RANGE_ROWS,
        attempts: int = 3,
        wait_s: float = 2.0,
        settle_s: float = 15.0,
    ) -> None:
        self._source, self._warehouse, self._table = source, warehouse, table
        self._masks = dict(masks or {})
        self._caught_up = caught_up
        self.budget_rows, self.range_rows = max(1, budget_rows), max(1, range_rows)
        self.attempts, self.wait_s, self.settle_s = max(1, attempts), wait_s, settle_s  # drift needs two reads
        self._report = ParityReport(source_name, table.schema.ref.display)

    def run(self) -> ParityReport:
        """Compare up to the budget and return the report (never raises for a data or service problem)."""
        started = time.monotonic()
        report = self._report
        try:
            why = self._refusal()
            if why:
                report.supported, report.reason = False, why
            else:
                self._prepare()
                self._walk()
        except CdcError as e:
            report.failed, report.reason = True, str(e)
            log.warning("content parity of %s failed: %s", report.table, e)
        finally:
            self._drop()
            report.seconds = round(time.monotonic() - started, 3)
        return report

    def _refusal(self) -> str | None:
        schema = self._table.schema
        why = copyable(schema)
        if why:
            return f"the copy path cannot read this table ({why}), so its content cannot be compared"
        if not self._table.known.key:
            return "the table has no key: its rows cannot be matched one by one"
        if self._source.table_schema(schema.ref) is None:
            return "the table is gone from the source"
        return None

    # -- the walk over key ranges -----------------------------------------------------------------
    def _walk(self) -> None:
        schema, report = self._table.schema, self._report
        kind = pr.walk_kind(schema)
        report.rows_estimate = estimate_rows(self._source, schema)
        whole = report.rows_estimate <= self.budget_rows
        if kind is None and not whole:
            report.supported = False
            report.reason = (
                f"its key ({', '.join(schema.key)}) is not one integer or text column, so it is compared whole,"
                f" and it has ~{report.rows_estimate:,} rows, more than the budget of {self.budget_rows:,}:"
                " raise budget_rows to check it"
            )
            return
        rows = self._warehouse.query(pr.cursor_sql(report.source, report.table))
        cursor, cycles = (rows[0][0], int(rows[0][1])) if rows else ("", 0)
        lower = None if whole else pr.decode_cursor(cursor, kind)
        planner = self._planner(kind)
        while True:
            rng = planner(lower)
            self._check_range(kind, rng)
            lower = rng.upper
            if lower is None or (not whole and report.rows_compared >= self.budget_rows):
                break
        report.complete_cycle = lower is None
        report.next_cursor = lower
        self._warehouse.command(
            pr.save_cursor_sql(
                report.source, report.table, pr.encode_cursor(lower), cycles + int(report.complete_cycle)
            )
        )

    def _planner(self, kind: str | None) -> Callable[[pr.Bound], KeyRange]:
        if kind is None:
            return lambda lower: KeyRange(None, None)

        def next_range(lower: pr.Bound) -> KeyRange:
            bound = self._source.query(pr.bound_sql(self._table.schema, kind, lower, self.range_rows))
            return KeyRange(lower, bound[0][0] if bound else None)

        return next_range

    def _check_range(self, kind: str | None, rng: KeyRange) -> None:
        schema, report = self._table.schema, self._report
        rows, first, _ = self._compare(pr.pg_where(schema, kind, rng), pr.ch_where(schema, kind, rng))
        drift, unsettled = self._recheck(kind, rng, first)
        report.rechecked += len(first)
        report.rows_compared += rows
        report.ranges_checked += 1
        report.unsettled += unsettled
        for key, (in_source, in_mirror) in sorted(drift.items()):
            if in_source is None:
                report.extra += 1
            elif in_mirror is None:
                report.missing += 1
            else:
                report.differing += 1
            if len(report.sample_keys) < SAMPLE_KEYS:
                report.sample_keys.append([_plain(v) for v in key])
        if drift and report.first_range is None:
            report.first_range = rng.to_json()

    def _recheck(self, kind: str | None, rng: KeyRange, pending: dict[Key, Hashes]) -> tuple[dict[Key, Hashes], int]:
        """Keys of ``pending`` that still differ, their rows unchanged on both sides between two reads (drift),
        and how many kept changing (unsettled)."""
        schema, drift = self._table.schema, {}
        for _ in range(self.attempts):
            if not pending:
                break
            time.sleep(self.wait_s)
            keys = list(pending) if len(pending) <= RECHECK_KEYS else []
            by_pg, by_ch = pr.keys_where(schema, keys, "pg"), pr.keys_where(schema, keys, "ch")
            if by_pg is None or by_ch is None:
                by_pg, by_ch = pr.pg_where(schema, kind, rng), pr.ch_where(schema, kind, rng)
            _, again, settled = self._compare(by_pg, by_ch, settle=True)
            still = {}
            for key, before in pending.items():
                now = again.get(key)
                if now is None:
                    continue  # equal now: it was in flight
                if now == before and settled:  # neither side moved, the stream caught up: not in flight
                    drift[key] = now
                else:
                    still[key] = now
            pending = still
        return drift, len(pending)

    # -- one comparison in ClickHouse -------------------------------------------------------------
    def _compare(self, pg_where: str, ch_where: str, settle: bool = False) -> tuple[int, dict[Key, Hashes], bool]:
        """Copy the source rows matching ``pg_where`` to the scratch table and compare them with the
        mirror's rows matching ``ch_where``: the copied rows' count, the keys that differ, and whether the
        stream had caught up with the copy (``settle``: waiting for it first) when the mirror was read."""
        table = self._table
        self._warehouse.command(f"TRUNCATE TABLE {table.qualified(SCRATCH)}")
        rows = copy_rows(self._source, self._warehouse, table, pg_where, into=COPY, masks=self._masks)
        settled = self._settle() if settle else False
        n = len(table.known.key)
        found = self._warehouse.query(diff_sql(table, ch_where))
        diffs = {tuple(r[:n]): (r[n + 2] if r[n] else None, r[n + 3] if r[n + 1] else None) for r in found}
        return rows, diffs, settled

    def _settle(self) -> bool:
        """Wait until the stream has stored every change committed before now; False if it has not within
        ``settle_s`` (true at once without a ``caught_up`` to ask: then only ``wait_s`` lets it catch up)."""
        if self._caught_up is None:
            return True
        lsn = self._source.current_wal_lsn()
        deadline = time.monotonic() + self.settle_s
        while not self._caught_up(lsn):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)
        return True

    def _prepare(self) -> None:
        self._drop()
        for statement in [pr.PROGRESS_DDL, *_SCRATCH.create_ddl(self._table)]:
            self._warehouse.command(statement)

    def _drop(self) -> None:
        _SCRATCH.drop(self._warehouse, self._table, "content parity")


def diff_sql(table: MirrorTable, where: str) -> str:
    """Per key that differs between the scratch rows and the mirror's current rows (both matching ``where``):
    the key's columns, whether it is in the source and in the mirror, and each side's hash of every column."""
    keys = ", ".join(quote(k) for k in table.known.key)
    row_hash = f"cityHash64(tuple({', '.join(table.view_columns())}))"
    scratch = f"SELECT * FROM {table.qualified(SCRATCH)} FINAL WHERE _is_deleted = 0"
    return (
        f"SELECT {keys}, countIf(side = 0) > 0 AS in_source, countIf(side = 1) > 0 AS in_mirror,"
        " anyIf(h, side = 0) AS source_hash, anyIf(h, side = 1) AS mirror_hash FROM ("
        f"SELECT {keys}, {row_hash} AS h, 0 AS side FROM ({scratch}) WHERE {where} UNION ALL"
        f" SELECT {keys}, {row_hash} AS h, 1 AS side FROM {table.view} WHERE {where})"
        f" GROUP BY {keys} HAVING in_source != in_mirror OR source_hash != mirror_hash ORDER BY {keys}"
    )


def _plain(value: Any) -> Any:
    """A key value as JSON holds it."""
    return value if isinstance(value, int | float | str | bool) or value is None else str(value)
