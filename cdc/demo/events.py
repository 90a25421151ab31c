"""The pizza shop's domain events and the translators that derive them from its tables.

A translator module like this one is what a user writes for their own database: dataclasses
declared with ``@event`` (one per version), ``@upcaster`` steps between versions, one
``@translator`` per table, ``deadline`` rules, events the shop's app writes itself
(``authored=True``, through its outbox table) and, optionally, a ``@reducer`` per aggregate for
``cdc events replay``. Run with ``--translators cdc.demo.events`` (``cdc demo`` does).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from cdc.domain.deadlines import deadline
from cdc.domain.erasure import erasure
from cdc.domain.events import DomainEvent, Payload, event, reducer, translator, upcaster
from cdc.translate import Change

# -- customers ------------------------------------------------------------------------------------


@event("CustomerRegistered", aggregate="customer", key="customer_id", tables=["public.customers"])
@dataclass(frozen=True)
class CustomerRegistered:
    """A new customer signed up."""

    customer_id: int
    name: str
    email: str
    registered_at: str


@translator("public.customers")
def customers(change: Change) -> Iterator[object]:
    if change.op in ("snapshot", "create") and change.after is not None:
        row = change.after
        yield CustomerRegistered(row["id"], row["name"], row["email"], row["created_at"])


# -- orders ---------------------------------------------------------------------------------------


@event("OrderPlaced", version=1, aggregate="order", key="order_id", tables=["public.orders"])
@dataclass(frozen=True)
class OrderPlacedV1:
    """A customer placed an order (first shape: no total, the address under ``address``)."""

    order_id: int
    customer_id: int
    address: str
    placed_at: str


@event("OrderPlaced", version=2, aggregate="order", key="order_id", tables=["public.orders"])
@dataclass(frozen=True)
class OrderPlaced:
    """A customer placed an order, with its total and the channel it came through."""

    order_id: int
    customer_id: int
    delivery_address: str
    total: Decimal | None
    channel: str | None
    placed_at: str


@upcaster("OrderPlaced", from_version=1)
def order_placed_v1_to_v2(payload: Payload) -> Payload:
    """v1 had ``address`` and no total: rename, and leave total and channel unknown."""
    address = payload.pop("address")
    return {**payload, "delivery_address": address, "total": None, "channel": None}


@event("OrderStatusChanged", aggregate="order", key="order_id", tables=["public.orders"])
@dataclass(frozen=True)
class OrderStatusChanged:
    """The kitchen or the courier moved an order on (placed -> baking -> out_for_delivery)."""

    order_id: int
    from_status: str | None
    to_status: str
    changed_at: str


@event("OrderDelivered", aggregate="order", key="order_id", tables=["public.orders"])
@dataclass(frozen=True)
class OrderDelivered:
    """The courier handed the order over."""

    order_id: int
    total: Decimal
    delivered_at: str


@event("OrderCancelled", aggregate="order", key="order_id", tables=["public.orders"])
@dataclass(frozen=True)
class OrderCancelled:
    """The order was cancelled before it left the shop."""

    order_id: int
    from_status: str | None
    cancelled_at: str


@event("OrderPurged", aggregate="order", key="order_id", tables=["public.orders"])
@dataclass(frozen=True)
class OrderPurged:
    """A cancelled order was deleted from the operational database."""

    order_id: int


def _channel(notes: Any) -> str | None:
    return notes.get("channel") if isinstance(notes, dict) else None


def _status_event(order_id: int, old: str | None, row: Mapping[str, Any], at: str) -> object:
    status = row["status"]
    if status == "delivered":
        return OrderDelivered(order_id, Decimal(row["total"]), row["delivered_at"] or at)
    if status == "cancelled":
        return OrderCancelled(order_id, old, at)
    return OrderStatusChanged(order_id, old, status, at)


@translator("public.orders")
def orders(change: Change) -> Iterator[object]:
    row = change.row
    order_id = row["id"]
    if change.op in ("snapshot", "create"):
        yield OrderPlaced(
            order_id,
            row["customer_id"],
            row["delivery_address"],
            Decimal(row["total"]),
            _channel(row["notes"]),
            row["placed_at"],
        )
        if change.snapshot and row["status"] != "placed":  # captured mid-life: say where it is now
            yield _status_event(order_id, None, row, change.committed_at.isoformat())
    elif change.op == "update" and "status" in change.changed:
        old = change.before["status"] if change.before is not None else None
        yield _status_event(order_id, old, row, change.committed_at.isoformat())
    elif change.op == "delete":
        yield OrderPurged(order_id)


# -- what no row diff can tell: the app's own event, and a deadline ------------------------------


@event("CancellationReasonGiven", aggregate="order", key="order_id", authored=True)
@dataclass(frozen=True)
class CancellationReasonGiven:
    """Why an order was cancelled, written by the shop's app in the same transaction (outbox table)."""

    order_id: int
    reason: str
    cancelled_by: str


@event("OrderDeliveryOverdue", aggregate="order", key="order_id")
@dataclass(frozen=True)
class OrderDeliveryOverdue:
    """An order was neither delivered nor cancelled within the delivery promise (source commit time)."""

    order_id: int
    customer_id: int
    placed_at: str
    due_at: str


DELIVERY_PROMISE = dt.timedelta(minutes=2)  # the demo kitchen's pace: a few minutes, not 45

deadline(
    "order-delivery",
    start="OrderPlaced",
    end=("OrderDelivered", "OrderCancelled"),
    within=DELIVERY_PROMISE,
    emits=OrderDeliveryOverdue,
)


# -- erasure: `cdc erase customer 42`, and a deleted customer row erases by itself -----------------

erasure("customer", tables={"public.customers": "id", "public.orders": "customer_id"}, on_delete="public.customers")


# -- products -------------------------------------------------------------------------------------


@event("ProductPriceChanged", aggregate="product", key="product_id", tables=["public.products"])
@dataclass(frozen=True)
class ProductPriceChanged:
    """The shop changed a product's price (``old_price`` is unknown without the old row image)."""

    product_id: int
    sku: str
    old_price: Decimal | None
    new_price: Decimal
    changed_at: str


@translator("public.products")
def products(change: Change) -> Iterator[object]:
    if change.op == "update" and "price" in change.changed and change.after is not None:
        old = Decimal(change.before["price"]) if change.before is not None else None
        after = change.after
        yield ProductPriceChanged(after["id"], after["sku"], old, Decimal(after["price"]), after["updated_at"])


# -- replay ---------------------------------------------------------------------------------------


@reducer("order")
def fold_order(state: Payload, e: DomainEvent) -> Payload:
    """An order's state from its history (payloads already upcast to their latest version)."""
    p = e.payload
    if e.event_type == "OrderPlaced":
        return {
            **state,
            "order_id": p["order_id"],
            "customer_id": p["customer_id"],
            "status": "placed",
            "delivery_address": p["delivery_address"],
            "total": p["total"],
            "channel": p["channel"],
            "placed_at": p["placed_at"],
        }
    if e.event_type == "OrderStatusChanged":
        return {**state, "status": p["to_status"]}
    if e.event_type == "OrderDelivered":
        return {**state, "status": "delivered", "total": p["total"], "delivered_at": p["delivered_at"]}
    if e.event_type == "OrderCancelled":
        return {**state, "status": "cancelled", "cancelled_at": p["cancelled_at"]}
    if e.event_type == "OrderPurged":
        return {**state, "purged": True}
    if e.event_type == "CancellationReasonGiven":
        return {**state, "cancellation_reason": p["reason"]}
    if e.event_type == "OrderDeliveryOverdue":
        return {**state, "overdue_since": p["due_at"]}
    return state
