"""The shop's projections on real ClickHouse (chDB): full builds equal figures computed independently
in Python from the same synthetic events; an incremental build after more events equals both those
figures and a fresh full build of a copy; deletions never show through the views.

The scenario runs once per module (builds are the slow part); each test checks one fact of it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest

from cdc.adapters.clickhouse import ClickHouseWarehouse
from cdc.demo.projections import PROJECTIONS
from cdc.domain.changes import Column, TableRef, TableSchema
from cdc.domain.events import DomainEvent, correlation_id, event_id, load_modules
from cdc.events.store import ClickHouseEventStore
from cdc.mirror.sink import ClickHouseMirrorSink
from cdc.ports import Message
from pipelines.builder import BuildResult, ProjectionBuilder
from pipelines.projection import Projection
from tests.envelopes import envelope
from tests.fakes import StaticCatalog

SOURCE = "shop"
PRODUCTS = {10: "Margherita", 11: "Diavola"}  # product 12 is not in the mirror: its name is ''
NAMES = [p.name for p in PROJECTIONS]
IN_FLIGHT = ("placed", "baking", "out_for_delivery")


class Log:
    """Synthetic events in source order, shaped as the shop's translators and generic events make them."""

    def __init__(self, first_lsn: int) -> None:
        self.lsn = first_lsn
        self.events: list[DomainEvent] = []

    def add(self, event_type: str, aggregate_id: str, payload: dict[str, Any], at: str, version: int = 1) -> None:
        self.lsn += 16
        aggregate = "order_item" if event_type.startswith("OrderItem") else "order"
        table = "public.order_items" if aggregate == "order_item" else "public.orders"
        moment = dt.datetime.fromisoformat(at.replace("Z", "+00:00"))
        self.events.append(
            DomainEvent(
                event_id(SOURCE, table, self.lsn, "u", aggregate_id, 0, event_type),
                event_type,
                version,
                aggregate,
                aggregate_id,
                int(moment.timestamp() * 1000),
                SOURCE,
                table,
                "u",
                self.lsn,
                self.lsn,
                0,
                correlation_id(SOURCE, self.lsn, self.lsn),
                payload,
            )
        )

    def placed(self, order: int, customer: int, at: str, *, v1: bool = False) -> None:
        if v1:
            self.add(
                "OrderPlaced",
                str(order),
                {"order_id": order, "customer_id": customer, "address": f"{order} Elm St", "placed_at": at},
                at,
                version=1,
            )
        else:
            self.add(
                "OrderPlaced",
                str(order),
                {
                    "order_id": order,
                    "customer_id": customer,
                    "delivery_address": f"{order} Oak Ave",
                    "total": "0.00",
                    "channel": "web",
                    "placed_at": at,
                },
                at,
                version=2,
            )

    def status(self, order: int, old: str, new: str, at: str) -> None:
        self.add(
            "OrderStatusChanged",
            str(order),
            {"order_id": order, "from_status": old, "to_status": new, "changed_at": at.replace("Z", "+00:00")},
            at,
        )

    def delivered(self, order: int, total: str, at: str) -> None:
        self.add("OrderDelivered", str(order), {"order_id": order, "total": total, "delivered_at": at}, at)

    def cancelled(self, order: int, old: str, at: str) -> None:
        self.add("OrderCancelled", str(order), {"order_id": order, "from_status": old, "cancelled_at": at}, at)

    def purged(self, order: int, at: str) -> None:
        self.add("OrderPurged", str(order), {"order_id": order}, at)

    def overdue(self, order: int, customer: int, placed: str, due: str) -> None:
        """The delivery deadline's alert: it occurred at the due time."""
        payload = {"order_id": order, "customer_id": customer, "placed_at": placed, "due_at": due}
        self.add("OrderDeliveryOverdue", str(order), payload, due)

    def reason(self, order: int, reason: str, at: str) -> None:
        self.add(
            "CancellationReasonGiven", str(order), {"order_id": order, "reason": reason, "cancelled_by": "shop"}, at
        )

    def item(self, order: int, line: int, product: int, quantity: int, price: str, at: str) -> None:
        self.add(
            "OrderItemCreated",
            f"{order}:{line}",
            {"order_id": order, "line_no": line, "product_id": product, "quantity": quantity, "unit_price": price},
            at,
        )

    def item_changed(self, order: int, line: int, at: str, **changed: Any) -> None:
        self.add("OrderItemUpdated", f"{order}:{line}", {"order_id": order, "line_no": line, "changed": changed}, at)

    def item_deleted(self, order: int, line: int, at: str) -> None:
        self.add("OrderItemDeleted", f"{order}:{line}", {"order_id": order, "line_no": line}, at)


def _phase1() -> list[DomainEvent]:
    log = Log(1_000)
    log.placed(100, 1, "2025-11-24T10:00:00.000000Z", v1=True)
    log.item(100, 1, 10, 2, "8.00", "2025-11-24T10:00:00Z")
    log.item(100, 2, 11, 1, "4.00", "2025-11-24T10:00:00Z")
    log.status(100, "placed", "baking", "2025-11-24T10:05:00Z")
    log.status(100, "baking", "out_for_delivery", "2025-11-24T10:20:00Z")
    log.delivered(100, "20.00", "2025-11-24T10:40:00.000000Z")
    log.placed(101, 1, "2025-11-24T23:00:00.000000Z")  # delivered after midnight: placed D1, delivered D2
    log.item(101, 1, 10, 1, "9.50", "2025-11-24T23:00:00Z")
    log.item(101, 2, 12, 3, "2.50", "2025-11-24T23:00:00Z")
    log.item_deleted(101, 2, "2025-11-24T23:01:00Z")
    log.item(101, 3, 11, 1, "4.00", "2025-11-24T23:02:00Z")
    log.item_changed(101, 3, "2025-11-24T23:03:00Z", quantity=2)
    log.status(101, "placed", "baking", "2025-11-24T23:10:00Z")
    log.status(101, "baking", "out_for_delivery", "2025-11-24T23:50:00Z")
    log.overdue(101, 1, "2025-11-24T23:00:00.000000Z", "2025-11-24T23:30:00.000000Z")
    log.delivered(101, "17.50", "2025-11-25T00:20:00.000000Z")
    log.placed(102, 2, "2025-11-24T12:00:00.000000Z")
    log.cancelled(102, "placed", "2025-11-24T12:05:00Z")
    log.purged(102, "2025-11-24T12:30:00Z")
    log.placed(103, 2, "2025-11-25T09:00:00.000000Z", v1=True)
    log.item(103, 1, 12, 1, "3.00", "2025-11-25T09:00:00Z")
    log.status(103, "placed", "baking", "2025-11-25T09:10:00Z")
    log.overdue(103, 2, "2025-11-25T09:00:00.000000Z", "2025-11-25T09:30:00.000000Z")  # still open after phase 1
    log.placed(104, 3, "2025-11-25T10:00:00.000000Z")
    log.placed(105, 3, "2025-11-25T10:30:00.000000Z")
    log.item(105, 1, 11, 4, "4.00", "2025-11-25T10:30:00Z")
    log.status(105, "placed", "baking", "2025-11-25T10:35:00Z")
    log.status(105, "baking", "out_for_delivery", "2025-11-25T10:50:00Z")
    log.delivered(105, "16.00", "2025-11-25T11:15:00.000000Z")
    return log.events


def _phase2() -> list[DomainEvent]:
    log = Log(5_000)
    log.item(103, 2, 11, 2, "4.00", "2025-11-25T09:20:00Z")
    log.status(103, "baking", "out_for_delivery", "2025-11-25T09:40:00Z")
    log.delivered(103, "11.00", "2025-11-25T10:05:00.000000Z")
    log.overdue(104, 3, "2025-11-25T10:00:00.000000Z", "2025-11-25T10:30:00.000000Z")
    log.cancelled(104, "placed", "2025-11-25T10:45:00Z")
    log.reason(104, "out of dough", "2025-11-25T10:45:00Z")
    log.item(100, 3, 12, 1, "3.00", "2025-11-25T12:00:00Z")  # a late correction to a D1 delivery
    log.item_deleted(101, 1, "2025-11-25T12:01:00Z")  # (D2, product 10) then has no sales: a tombstone
    log.placed(106, 1, "2025-11-25T14:00:00.000000Z")
    return log.events


# -- the same figures, computed in Python --------------------------------------------------------


def _when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _fold(events: Sequence[DomainEvent]) -> tuple[dict[int, dict[str, Any]], dict[str, dict[str, Any]]]:
    orders: dict[int, dict[str, Any]] = {}
    items: dict[str, dict[str, Any]] = {}
    for e in sorted(events, key=lambda e: (e.lsn, e.sequence)):
        p = e.payload
        if e.event_type.startswith("OrderItem"):
            if e.event_type == "OrderItemDeleted":
                items.pop(e.aggregate_id, None)
            else:
                items[e.aggregate_id] = {**items.get(e.aggregate_id, {}), **dict(p.get("changed", p))}
            continue
        o = orders.setdefault(p["order_id"], {"rank": 0, "cancelled": False, "purged": False})
        if e.event_type == "OrderPlaced":
            o.update(
                customer=p["customer_id"],
                placed_at=_when(p["placed_at"]),
                status="placed",
                address=p.get("delivery_address", p.get("address")),
                changed_at=_when(p["placed_at"]),
            )
        elif e.event_type == "OrderStatusChanged":
            o.update(
                status=p["to_status"],
                changed_at=_when(p["changed_at"]),
                rank=max(o["rank"], {"baking": 1, "out_for_delivery": 2}.get(p["to_status"], 0)),
            )
        elif e.event_type == "OrderDelivered":
            o.update(status="delivered", rank=3, delivered_at=_when(p["delivered_at"]), total=Decimal(p["total"]))
        elif e.event_type == "OrderCancelled":
            o.update(status="cancelled", cancelled=True)
        elif e.event_type == "OrderPurged":
            o["purged"] = True
    return orders, items


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered, position = sorted(values), (len(values) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (position - low), 6)


def expected(name: str, events: Sequence[DomainEvent]) -> list[tuple[Any, ...]]:
    orders, items = _fold(events)
    if name == "revenue_daily_product":
        sales: dict[tuple[dt.date, int], list[Any]] = defaultdict(lambda: [0, Decimal(0), set()])
        for item in items.values():
            o = orders[item["order_id"]]
            if "delivered_at" in o:
                s = sales[(o["delivered_at"].date(), item["product_id"])]
                s[0] += item["quantity"]
                s[1] += item["quantity"] * Decimal(item["unit_price"])
                s[2].add(item["order_id"])
        return [(d, pid, PRODUCTS.get(pid, ""), q, r, len(ids)) for (d, pid), (q, r, ids) in sorted(sales.items())]
    if name == "order_funnel":
        days: dict[dt.date, list[dict[str, Any]]] = defaultdict(list)
        for o in orders.values():
            days[o["placed_at"].date()].append(o)
        rows = []
        for day, group in sorted(days.items()):
            waits = [(o["delivered_at"] - o["placed_at"]).total_seconds() for o in group if o["rank"] == 3]
            rows.append(
                (
                    day,
                    len(group),
                    sum(o["rank"] >= 1 for o in group),
                    sum(o["rank"] >= 2 for o in group),
                    len(waits),
                    sum(o["cancelled"] for o in group),
                    _percentile(waits, 0.5),
                    _percentile(waits, 0.9),
                )
            )
        return rows
    if name == "customer_lifetime_value":
        customers: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for o in orders.values():
            customers[o["customer"]].append(o)
        return [
            (
                c,
                sum("total" in o for o in group),
                sum((o.get("total", Decimal(0)) for o in group), Decimal(0)),
                min(o["placed_at"] for o in group),
                max(o["placed_at"] for o in group),
            )
            for c, group in sorted(customers.items())
        ]
    if name == "overdue_orders":
        return _overdue(events)
    return [
        (oid, o["customer"], o["status"], o["address"], o["placed_at"], o["changed_at"])
        for oid, o in sorted(orders.items())
        if o["status"] in IN_FLIGHT and not o["purged"]
    ]


def _overdue(events: Sequence[DomainEvent]) -> list[tuple[Any, ...]]:
    """Per order with a delivery alert: what ended it (the last delivery or cancellation) and why."""
    rows: dict[int, list[Any]] = {}
    ordered = sorted((e for e in events if e.aggregate_type == "order"), key=lambda e: (e.lsn, e.sequence))
    for e in ordered:
        p, order = e.payload, int(e.aggregate_id)
        if e.event_type == "OrderDeliveryOverdue" and order not in rows:
            rows[order] = [order, p["customer_id"], _when(p["placed_at"]), _when(p["due_at"]), "still open", None, None]
    for e in ordered:
        row = rows.get(int(e.aggregate_id))
        if row is None:
            continue
        if e.event_type in ("OrderDelivered", "OrderCancelled"):
            row[4] = "delivered late" if e.event_type == "OrderDelivered" else "cancelled late"
            row[5] = e.occurred_at
        elif e.event_type == "CancellationReasonGiven":
            row[6] = e.payload["reason"]
    return [tuple(r) for _, r in sorted(rows.items())]


# -- the scenario on chDB -------------------------------------------------------------------------


def _normal(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)  # clickhouse-connect gives UTC wall time for UTC columns
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    return value


def view_rows(wh: ClickHouseWarehouse, p: Projection) -> list[tuple[Any, ...]]:
    rows = wh.query(f"SELECT * FROM {p.view} ORDER BY {', '.join(p.key)}")
    return [tuple(_normal(v) for v in row) for row in rows]


def _mirror_products(wh: ClickHouseWarehouse) -> None:
    """``shop.products`` through the real mirror path (the view the bridge keeps)."""
    columns = (Column("id", "int4", nullable=False), Column("sku", "text"), Column("name", "text"))
    schema = TableSchema(TableRef(SOURCE, "public", "products"), columns, ("id",))
    sink = ClickHouseMirrorSink(wh, StaticCatalog([schema]))
    sink.prepare([schema])
    topic = schema.ref.topic
    sink.write(
        topic,
        [
            Message(
                topic,
                0,
                i,
                b"k",
                envelope(
                    "r", None, {"id": pid, "sku": f"P{pid}", "name": name}, lsn=100, table="products", source=SOURCE
                ),
            )
            for i, (pid, name) in enumerate(PRODUCTS.items())
        ],
    )


@dataclasses.dataclass
class Outcome:
    full: BuildResult
    full_rows: list[tuple[Any, ...]]
    incremental: BuildResult
    incremental_rows: list[tuple[Any, ...]]
    copy_rows: list[tuple[Any, ...]]
    again: BuildResult
    tombstoned_keys: list[tuple[Any, ...]]
    high_water: dt.datetime


@pytest.fixture(scope="module")
def scenario(chdb_warehouse: ClickHouseWarehouse) -> dict[str, Outcome]:
    wh = chdb_warehouse
    _mirror_products(wh)
    store = ClickHouseEventStore(wh, load_modules(["cdc.demo.events"]))  # stores v1 events' latest shape too
    store.append(_phase1())
    builder = ProjectionBuilder(wh, overlap=dt.timedelta(0))  # no overlap: touched scopes are exact here
    firsts = {p.name: (builder.full(p), view_rows(wh, p)) for p in PROJECTIONS}
    store.append(_phase2())
    (high,) = wh.query("SELECT toUnixTimestamp64Micro(max(stored_at)) FROM events.domain_events")[0]
    outcomes = {}
    for p in PROJECTIONS:
        incremental = builder.incremental(p)
        rows = view_rows(wh, p)
        copy = dataclasses.replace(p, name=f"{p.name}_copy")
        builder.full(copy)
        keys = ", ".join(p.key)
        dead = wh.query(f"SELECT {keys} FROM {p.storage} WHERE _is_deleted = 1 ORDER BY {keys}")
        outcomes[p.name] = Outcome(
            *firsts[p.name],
            incremental,
            rows,
            view_rows(wh, copy),
            builder.incremental(p),
            [tuple(_normal(v) for v in k) for k in dead],
            dt.datetime.fromtimestamp(high / 1e6, dt.UTC),
        )
    return outcomes


@pytest.mark.parametrize("name", NAMES)
def test_full_build_equals_figures_computed_in_python(scenario: dict[str, Outcome], name: str) -> None:
    assert scenario[name].full_rows == expected(name, _phase1())
    assert scenario[name].full.rows == len(scenario[name].full_rows) > 0


@pytest.mark.parametrize("name", NAMES)
def test_incremental_build_equals_figures_computed_in_python(scenario: dict[str, Outcome], name: str) -> None:
    assert scenario[name].incremental_rows == expected(name, _phase1() + _phase2())


@pytest.mark.parametrize("name", NAMES)
def test_incremental_build_equals_a_fresh_full_build(scenario: dict[str, Outcome], name: str) -> None:
    assert scenario[name].incremental_rows == scenario[name].copy_rows
    assert scenario[name].incremental_rows != scenario[name].full_rows  # the new events did change the report


@pytest.mark.parametrize(
    ("name", "scopes", "rows", "tombstones"),
    [
        ("revenue_daily_product", 2, 5, 1),  # D1 (late item of order 100) and D2; (D2, product 10) is gone
        ("order_funnel", 1, 1, 0),  # orders 103, 104, 106 were placed on D2; item events do not touch the funnel
        ("customer_lifetime_value", 3, 3, 0),  # customers of orders 103, 104, 106
        ("orders_in_flight", 3, 1, 2),  # of orders 103, 104, 106 only 106 is in flight now (of 7 orders)
    ],
)
def test_incremental_build_rewrites_only_touched_scopes(
    scenario: dict[str, Outcome], name: str, scopes: int, rows: int, tombstones: int
) -> None:
    result = scenario[name].incremental
    assert (result.mode, result.scopes, result.rows, result.tombstones) == ("incremental", scopes, rows, tombstones)


@pytest.mark.parametrize("name", NAMES)
def test_views_never_show_tombstoned_keys(scenario: dict[str, Outcome], name: str) -> None:
    p = next(p for p in PROJECTIONS if p.name == name)
    shown = {row[: len(p.key)] for row in scenario[name].incremental_rows}
    assert len(scenario[name].tombstoned_keys) == scenario[name].incremental.tombstones
    assert not shown & set(scenario[name].tombstoned_keys)


def test_tombstones_are_the_keys_that_disappeared(scenario: dict[str, Outcome]) -> None:
    assert scenario["orders_in_flight"].tombstoned_keys == [(103,), (104,)]
    assert scenario["revenue_daily_product"].tombstoned_keys == [(dt.date(2025, 11, 25), 10)]


@pytest.mark.parametrize("name", NAMES)
def test_watermark_moves_to_the_newest_stored_event(scenario: dict[str, Outcome], name: str) -> None:
    outcome = scenario[name]
    assert outcome.full.watermark is not None and outcome.incremental.watermark is not None
    assert outcome.full.watermark < outcome.incremental.watermark == outcome.high_water


@pytest.mark.parametrize("name", NAMES)
def test_incremental_build_without_new_events_does_nothing(scenario: dict[str, Outcome], name: str) -> None:
    again = scenario[name].again
    assert again.skipped and (again.scopes, again.rows, again.tombstones) == (0, 0, 0)
    assert again.watermark == scenario[name].high_water
