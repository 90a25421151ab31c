"""ProjectionBuilder's guarantees on real ClickHouse (chDB), with a small projection of its own:
open orders per day (an order leaves when cancelled). Each test uses its own source and projection
name, so tests share the module's store without seeing each other's events or reports.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from cdc.adapters.clickhouse import ClickHouseWarehouse
from cdc.domain.events import DomainEvent, correlation_id, event_id
from cdc.errors import WarehouseError
from cdc.events.store import COLUMNS, ClickHouseEventStore, event_row
from pipelines.builder import ProjectionBuilder
from pipelines.projection import Projection, ProjectionError, bind, in_scope, quote

D1, D2 = dt.date(2025, 11, 24), dt.date(2025, 11, 25)


def open_orders(
    source: str, name: str, *, key: tuple[str, ...] = ("day", "order_id"), tables: tuple[str, ...] = ()
) -> Projection:
    orders = (
        "SELECT toInt64(aggregate_id) AS order_id, toDate(min(occurred_at)) AS day, count() AS events,"
        " argMax(event_type, (lsn, sequence)) AS last_event"
        f" FROM events.domain_events FINAL WHERE source = {quote(source)} GROUP BY order_id"
    )
    touched = (
        f"SELECT toInt64(aggregate_id) FROM events.domain_events WHERE source = {quote(source)}"
        " AND stored_at > {lo:DateTime64(6)} AND stored_at <= {hi:DateTime64(6)}"
    )
    return Projection(
        name=name,
        description="Orders placed and not cancelled, per day of their first event.",
        columns=(("day", "Date"), ("order_id", "Int64"), ("events", "UInt64")),
        key=key,
        scope="day",
        scopes_sql=f"SELECT DISTINCT day FROM ({orders}) WHERE order_id IN ({touched})",
        rows_sql=(
            f"SELECT day, order_id, events FROM ({orders})"
            f" WHERE last_event != 'OrderCancelled' AND {in_scope('day', 'Date')}"
        ),
        event_types=("OrderPlaced", "OrderCancelled"),
        tables=tables,
    )


class Shop:
    """One test's source: appends order events and reads its report back."""

    def __init__(self, wh: ClickHouseWarehouse) -> None:
        self.wh, self.source, self.lsn = wh, f"toy{uuid.uuid4().hex[:8]}", 0
        self.store = ClickHouseEventStore(wh)
        self.p = open_orders(self.source, f"open_{self.source}")

    def event(self, order: int, kind: str, day: dt.date) -> DomainEvent:
        self.lsn += 1
        at = dt.datetime.combine(day, dt.time(12), dt.UTC)
        return DomainEvent(
            event_id(self.source, "public.orders", self.lsn, "u", str(order), 0, kind),
            kind,
            1,
            "order",
            str(order),
            int(at.timestamp() * 1000),
            self.source,
            "public.orders",
            "u",
            self.lsn,
            None,
            0,
            correlation_id(self.source, None, self.lsn),
            {"order_id": order},
        )

    def add(self, *events: tuple[int, str, dt.date]) -> None:
        self.store.append([self.event(*e) for e in events])

    def add_stored_at(self, stored_at: dt.datetime, order: int, kind: str, day: dt.date) -> None:
        """An event whose insert became visible only after ``stored_at`` had been stamped."""
        e = self.event(order, kind, day)
        row = [*event_row(e), stored_at]
        self.wh.insert("events", "domain_events", (*COLUMNS, "stored_at"), [row])

    def report(self, p: Projection | None = None) -> list[tuple[Any, ...]]:
        return self.wh.query(f"SELECT day, order_id, events FROM {(p or self.p).view} ORDER BY day, order_id")

    def newest_stored(self) -> dt.datetime:
        (micros,) = self.wh.query("SELECT toUnixTimestamp64Micro(max(stored_at)) FROM events.domain_events")[0]
        return dt.datetime.fromtimestamp(micros / 1e6, dt.UTC)


@pytest.fixture
def shop(chdb_warehouse: ClickHouseWarehouse) -> Iterator[Shop]:
    yield Shop(chdb_warehouse)


def _exists(wh: ClickHouseWarehouse, table: str) -> bool:
    database, name = table.split(".")
    return bool(wh.query(f"SELECT count() FROM system.tables WHERE database = '{database}' AND name = '{name}'")[0][0])


def test_ensure_is_idempotent_and_lays_out_table_view_and_watermarks(shop: Shop) -> None:
    builder = ProjectionBuilder(shop.wh)
    builder.ensure(shop.p)
    builder.ensure(shop.p)
    engines = dict(shop.wh.query("SELECT name, engine FROM system.tables WHERE database = 'reports'"))
    assert engines[f"_{shop.p.name}"] == "ReplacingMergeTree" and engines[shop.p.name] == "View"
    assert engines["_watermarks"] == "ReplacingMergeTree"
    assert shop.wh.query("SELECT engine FROM system.databases WHERE name = 'reports'") == [("Atomic",)]
    assert shop.report() == [] and builder.watermark(shop.p) is None


def test_full_build_swaps_in_a_whole_new_table(shop: Shop) -> None:
    builder = ProjectionBuilder(shop.wh)
    builder.ensure(shop.p)
    stale = [[D1, 999, 1, 2**63, 0]]  # newer version than any build: only a table swap removes it
    shop.wh.insert("reports", f"_{shop.p.name}", ("day", "order_id", "events", "_version", "_is_deleted"), stale)
    shop.add((1, "OrderPlaced", D1), (2, "OrderPlaced", D2))
    result = builder.full(shop.p)
    assert shop.report() == [(D1, 1, 1), (D2, 2, 1)]
    assert (result.mode, result.scopes, result.rows, result.watermark) == ("full", 2, 2, shop.newest_stored())
    assert not _exists(shop.wh, shop.p.shadow)


class Watching:
    """The warehouse, plus a reader of the report after every statement the builder sends."""

    def __init__(self, wh: ClickHouseWarehouse, read: Any) -> None:
        self.wh, self.read = wh, read
        self.seen: list[object] = []

    def command(self, sql: str) -> None:
        self.wh.command(sql)
        try:
            self.seen.append(self.read())
        except WarehouseError as e:
            self.seen.append(str(e))

    def insert(
        self,
        database: str,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        self.wh.insert(database, table, columns, rows, settings)

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return self.wh.query(sql, parameters)


def test_readers_see_the_old_or_the_new_report_never_a_half_built_one(shop: Shop) -> None:
    ProjectionBuilder(shop.wh).full(shop.p)
    shop.add((1, "OrderPlaced", D1), (2, "OrderPlaced", D1))
    ProjectionBuilder(shop.wh).full(shop.p)
    old = shop.report()
    shop.add((1, "OrderCancelled", D1), (3, "OrderPlaced", D2))
    watching = Watching(shop.wh, shop.report)
    ProjectionBuilder(watching).full(shop.p)
    new = shop.report()
    assert new == [(D1, 2, 1), (D2, 3, 1)] and new != old
    assert set(map(str, watching.seen)) == {str(old), str(new)}


def test_incremental_tombstones_what_left_and_the_view_hides_it(shop: Shop) -> None:
    builder = ProjectionBuilder(shop.wh, overlap=dt.timedelta(0))  # else the first events are in the window too
    shop.add((1, "OrderPlaced", D1), (2, "OrderPlaced", D1), (3, "OrderPlaced", D2))
    builder.full(shop.p)
    shop.add((2, "OrderCancelled", D1))
    result = builder.incremental(shop.p)
    assert (result.scopes, result.rows, result.tombstones) == (1, 1, 1)  # only D1 was touched
    assert shop.report() == [(D1, 1, 1), (D2, 3, 1)]
    assert shop.wh.query(f"SELECT order_id FROM {shop.p.storage} WHERE _is_deleted = 1") == [(2,)]


def test_incremental_without_a_watermark_builds_everything_like_a_full_build(shop: Shop) -> None:
    shop.add((1, "OrderPlaced", D1), (2, "OrderPlaced", D2), (2, "OrderCancelled", D2), (3, "OrderPlaced", D2))
    copy = dataclasses.replace(shop.p, name=f"{shop.p.name}_full")
    builder = ProjectionBuilder(shop.wh)
    result = builder.incremental(shop.p)
    builder.full(copy)
    assert shop.report() == shop.report(copy) == [(D1, 1, 1), (D2, 3, 1)]
    assert (result.scopes, result.rows, result.tombstones) == (2, 2, 0)
    assert builder.watermark(shop.p) == builder.watermark(copy) == shop.newest_stored()


def test_watermark_stays_when_nothing_new_was_stored(shop: Shop) -> None:
    builder = ProjectionBuilder(shop.wh)
    shop.add((1, "OrderPlaced", D1))
    first = builder.incremental(shop.p)
    again = builder.incremental(shop.p)
    assert not first.skipped and again.skipped
    assert again.watermark == first.watermark == builder.watermark(shop.p)


def test_overlap_picks_up_events_that_became_visible_after_the_watermark(shop: Shop) -> None:
    shop.add((1, "OrderPlaced", D1))
    plain = dataclasses.replace(shop.p, name=f"{shop.p.name}_a")
    careful = dataclasses.replace(shop.p, name=f"{shop.p.name}_b")
    ProjectionBuilder(shop.wh).incremental(plain)
    ProjectionBuilder(shop.wh).incremental(careful)
    mark = ProjectionBuilder(shop.wh).watermark(plain)
    assert mark is not None
    shop.add_stored_at(mark - dt.timedelta(seconds=2), 2, "OrderPlaced", D2)  # stamped before the watermark
    shop.add((3, "OrderPlaced", D1))
    ProjectionBuilder(shop.wh, overlap=dt.timedelta(0)).incremental(plain)
    ProjectionBuilder(shop.wh, overlap=dt.timedelta(seconds=5)).incremental(careful)
    assert shop.report(plain) == [(D1, 1, 1), (D1, 3, 1)]  # without the overlap, order 2 is missed
    assert shop.report(careful) == [(D1, 1, 1), (D1, 3, 1), (D2, 2, 1)]


def test_partition_rebuilds_one_day_and_leaves_the_watermark(shop: Shop) -> None:
    builder = ProjectionBuilder(shop.wh)
    shop.add((1, "OrderPlaced", D1), (2, "OrderPlaced", D2))
    mark = builder.full(shop.p).watermark
    shop.add((1, "OrderCancelled", D1), (2, "OrderCancelled", D2), (4, "OrderPlaced", D1))
    result = builder.partition(shop.p, D1)
    assert shop.report() == [(D1, 4, 1), (D2, 2, 1)]  # D2 is not rebuilt yet
    assert (result.mode, result.scopes, result.rows, result.tombstones) == ("scopes", 1, 1, 1)
    assert builder.watermark(shop.p) == result.watermark == mark
    builder.incremental(shop.p)
    assert shop.report() == [(D1, 4, 1)]


def test_rows_sql_with_duplicate_keys_is_refused_and_the_report_kept(shop: Shop) -> None:
    builder = ProjectionBuilder(shop.wh)
    shop.add((1, "OrderPlaced", D1), (2, "OrderPlaced", D1))
    builder.full(shop.p)
    broken = open_orders(shop.source, shop.p.name, key=("day",))  # two orders per day share a key
    with pytest.raises(ProjectionError, match=r"more than one row for one key \(day\)"):
        builder.full(broken)
    assert shop.report() == [(D1, 1, 1), (D1, 2, 1)]
    assert not _exists(shop.wh, shop.p.shadow)
    elsewhere = dataclasses.replace(broken, name=f"{shop.p.name}_dup")
    with pytest.raises(ProjectionError, match="more than one row for one key"):
        builder.incremental(elsewhere)
    assert shop.wh.query(f"SELECT count() FROM {elsewhere.storage}") == [(0,)]


def test_a_missing_mirror_table_is_named(shop: Shop) -> None:
    p = open_orders(shop.source, shop.p.name, tables=(f"{shop.source}.products",))
    with pytest.raises(ProjectionError, match=f"reads {shop.source}.products, which does not exist"):
        ProjectionBuilder(shop.wh).incremental(p)


def test_full_build_migrates_a_changed_definition(shop: Shop) -> None:
    builder = ProjectionBuilder(shop.wh)
    shop.add((1, "OrderPlaced", D1))
    builder.full(shop.p)
    wider = dataclasses.replace(
        shop.p,
        columns=(*shop.p.columns, ("source", "String")),
        rows_sql=shop.p.rows_sql.replace(
            "SELECT day, order_id, events FROM", f"SELECT day, order_id, events, {quote(shop.source)} AS source FROM", 1
        ),
    )
    with pytest.raises(ProjectionError, match="run a full build"):
        builder.incremental(wider)
    builder.full(wider)
    assert shop.wh.query(f"SELECT order_id, source FROM {wider.view}") == [(1, shop.source)]
    shop.add((2, "OrderPlaced", D2))
    builder.incremental(wider)
    assert shop.wh.query(f"SELECT order_id, source FROM {wider.view} ORDER BY order_id") == [
        (1, shop.source),
        (2, shop.source),
    ]


def test_bound_values_reach_clickhouse_unchanged(shop: Shop) -> None:
    text = "it's a \\ {x:String} test\n"
    moment = dt.datetime(2025, 11, 24, 17, 0, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    sql = bind(
        "SELECT {s:String}, toUnixTimestamp64Micro({t:DateTime64(6)}), {d:Array(Date)}, {i:Array(Int64)}",
        {"s": text, "t": moment, "d": [D1, D2], "i": []},
    )
    assert shop.wh.query(sql) == [(text, 1_764_000_000_000_005, [D1, D2], [])]
