"""The shop's reports on the embedded stack equal the same figures computed from PostgreSQL.

The shop runs through `cdc run --translators cdc.demo.events`; each projection is built from the
event store (full, then incremental) and compared with an independent SQL query on the source.
The workload cancels only orders that never reached the kitchen and purges nothing, so the
source's current rows still tell the whole history the funnel needs.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from cdc.adapters.clickhouse import connect_warehouse
from cdc.adapters.postgres import PostgresSession, PostgresSource
from cdc.demo import shop
from cdc.demo.projections import projections
from pipelines.builder import ProjectionBuilder
from tests.e2e.conftest import BridgeProcess, sql, start_bridge
from tests.polling import wait_until

PG_REVENUE = """
SELECT (o.delivered_at AT TIME ZONE 'UTC')::date, i.product_id, sum(i.quantity), sum(i.quantity * i.unit_price),
       count(DISTINCT o.id)
FROM orders o JOIN order_items i ON i.order_id = o.id WHERE o.status = 'delivered' GROUP BY 1, 2 ORDER BY 1, 2"""
PG_FUNNEL = """
SELECT (placed_at AT TIME ZONE 'UTC')::date, count(*),
       count(*) FILTER (WHERE status IN ('baking', 'out_for_delivery', 'delivered')),
       count(*) FILTER (WHERE status IN ('out_for_delivery', 'delivered')),
       count(*) FILTER (WHERE status = 'delivered'), count(*) FILTER (WHERE status = 'cancelled'),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM delivered_at - placed_at))
           FILTER (WHERE status = 'delivered'),
       percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM delivered_at - placed_at))
           FILTER (WHERE status = 'delivered')
FROM orders GROUP BY 1 ORDER BY 1"""
PG_CLV = """
SELECT customer_id, count(*) FILTER (WHERE status = 'delivered'),
       coalesce(sum(total) FILTER (WHERE status = 'delivered'), 0), min(placed_at), max(placed_at)
FROM orders GROUP BY 1 ORDER BY 1"""
PG_IN_FLIGHT = """
SELECT id, customer_id, status::text, delivery_address, placed_at FROM orders
WHERE status IN ('placed', 'baking', 'out_for_delivery') ORDER BY id"""
CH = {
    "revenue_daily_product": "SELECT day, product_id, quantity, revenue, orders FROM reports.revenue_daily_product"
    " ORDER BY day, product_id",
    "order_funnel": "SELECT day, placed, reached_baking, reached_out_for_delivery, delivered, cancelled,"
    " p50_delivery_s, p90_delivery_s FROM reports.order_funnel ORDER BY day",
    "customer_lifetime_value": "SELECT customer_id, delivered_orders, revenue, first_order_at, last_order_at"
    " FROM reports.customer_lifetime_value ORDER BY customer_id",
    "orders_in_flight": "SELECT order_id, customer_id, status, delivery_address, placed_at"
    " FROM reports.orders_in_flight ORDER BY order_id",
}
PG = {
    "revenue_daily_product": PG_REVENUE,
    "order_funnel": PG_FUNNEL,
    "customer_lifetime_value": PG_CLV,
    "orders_in_flight": PG_IN_FLIGHT,
}


def _norm(value: Any) -> Any:
    """One comparable form for both drivers: UTC-naive times, exact decimals, rounded floats."""
    if isinstance(value, dt.datetime):
        return (value.astimezone(dt.UTC) if value.tzinfo else value).replace(tzinfo=None)
    if isinstance(value, Decimal):
        return value.normalize()
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value).normalize()
    return value


def _rows(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [tuple(_norm(v) for v in r) for r in rows]


def _open_shop(dsn: str) -> None:
    source = PostgresSource(dsn)
    shop.install_schema(source)
    with PostgresSession(source) as session:
        shop.seed(session, customers=8)


def _shop_day(dsn: str) -> None:
    """A day of the shop: orders placed, moved along, delivered; a few cancelled before baking."""
    rng = random.Random(5)
    with PostgresSession(PostgresSource(dsn)) as session:
        for _ in range(30):
            shop.place_order(session, rng)
    ids = [int(r[0]) for r in sql(dsn, "SELECT id FROM orders ORDER BY id")]
    steps = (("baking", ids[:24]), ("out_for_delivery", ids[:18]), ("delivered", ids[:12]))
    for status, chosen in steps:
        for order_id in chosen:
            delivered = ", delivered_at = now()" if status == "delivered" else ""
            sql(dsn, f"UPDATE orders SET status = %s{delivered} WHERE id = %s", (status, order_id))
    for order_id in ids[30:34]:
        sql(dsn, "UPDATE orders SET status = 'cancelled' WHERE id = %s", (order_id,))


def test_each_report_equals_the_figure_computed_from_postgres(
    database: str, state_dir: Path, bridges: list[BridgeProcess]
) -> None:
    db = database.rsplit("/", 1)[1]
    _open_shop(database)  # seed rows reach ClickHouse through the snapshot, the rest through the stream
    bridge = start_bridge(bridges, state_dir, "--source", database, "--translators", "cdc.demo.events")
    ch = bridge.clickhouse()
    url = bridge.wait_for_line(r"ClickHouse endpoint: (http://\S+)").group(1)
    _shop_day(database)
    warehouse = connect_warehouse(url, state_dir)
    builder = ProjectionBuilder(warehouse)
    # overdue_orders is left out: its figures depend on a two-minute deadline on commit time, which
    # this test's timing cannot fix; tests/integration/test_projections.py checks it on synthetic
    # events and tests/e2e/test_deadlines_outbox.py the deadline itself on the real stack
    reports = {p.name: p for p in projections(source=db) if p.name != "overdue_orders"}
    assert sorted(reports) == sorted(CH) and len(projections(source=db)) == len(CH) + 1
    wait_until(lambda: ch.query(f"SELECT count() FROM {db}.products").result_rows == [(10,)], 120, "products mirror")

    def equal(name: str, build: Callable[[Any], object]) -> bool:
        build(reports[name])
        return _rows(ch.query(CH[name]).result_rows) == _rows(sql(database, PG[name]))

    for name in reports:  # events arrive eventually: rebuild until the report matches the source
        wait_until(lambda name=name: equal(name, builder.full), 180, f"{name} equal to PostgreSQL")
    assert len(ch.query(CH["revenue_daily_product"]).result_rows) > 0
    assert len(ch.query(CH["orders_in_flight"]).result_rows) == 30 + 8 - 12 - 4  # placed, not delivered/cancelled

    # more life, then incremental builds reach the same figures as the source (and a full build)
    open_orders = [int(r[0]) for r in sql(database, "SELECT id FROM orders WHERE status = 'out_for_delivery'")]
    for order_id in open_orders:
        sql(database, "UPDATE orders SET status = 'delivered', delivered_at = now() WHERE id = %s", (order_id,))
    with PostgresSession(PostgresSource(database)) as session:
        shop.place_order(session, random.Random(9))
    for name in reports:
        wait_until(lambda name=name: equal(name, builder.incremental), 180, f"{name} incremental")
        incremental = _rows(ch.query(CH[name]).result_rows)
        builder.full(reports[name])
        assert _rows(ch.query(CH[name]).result_rows) == incremental
    warehouse.close()
    assert bridge.stop() == 0
