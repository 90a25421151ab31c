"""The pizza shop's reports, declared over its domain events (``cdc.demo.events``): an example of a
user's projection module (``[projections] modules = ["cdc.demo.projections"]``).

Every query reads ``payload_latest``, each event in the latest shape of its type (the event store
keeps it; see ``cdc.events.store``), so no query repeats an upcaster: OrderPlaced v1's ``address``
is read as v2's ``delivery_address`` like any other. Timestamps
are the ISO strings the events carry; one that cannot be parsed falls back to the event's commit
time, so a bad value shifts one order instead of failing every build. Only the events of the one
source database (``source``, default ``shop``) are read; its mirror views live in that database.

History is kept: a purged order was still placed (and cancelled), so only ``orders_in_flight``,
which is about the present, drops purged orders. Order items have no translator and arrive as
generic ``OrderItemCreated/Updated/Deleted`` events; their current state is folded here.
"""

from __future__ import annotations

from pipelines.projection import Projection, ProjectionError, in_scope, quote
from pipelines.storage import EVENTS

SOURCE = "shop"
_ORDER_ID = "toInt64(aggregate_id)"
_ORDER_EVENTS = ("OrderPlaced", "OrderStatusChanged", "OrderDelivered", "OrderCancelled", "OrderPurged")
_WINDOW = " AND stored_at > {lo:DateTime64(6)} AND stored_at <= {hi:DateTime64(6)}"  # the build window
_ORDERS_AND_ITEMS = "'order', 'order_item'"
_ITEM_EVENTS = ("OrderItemCreated", "OrderItemUpdated", "OrderItemDeleted")


def _ts(text: str) -> str:
    return f"coalesce(parseDateTime64BestEffortOrNull({text}, 6, 'UTC'), toDateTime64(occurred_at, 6, 'UTC'))"


def _at(field: str) -> str:
    """A payload timestamp field as DateTime64(6, 'UTC')."""
    return _ts(f"JSONExtractString(payload_latest, '{field}')")


def _events(source: str, aggregate: str) -> str:
    return f"{EVENTS} FINAL WHERE source = {quote(source)} AND aggregate_type = '{aggregate}'"


def _placed(source: str) -> str:
    """One row per placed order, from its first OrderPlaced."""
    return (
        f"SELECT {_ORDER_ID} AS order_id,"
        " argMin(JSONExtract(payload_latest, 'customer_id', 'Int64'), (lsn, sequence)) AS customer_id,"
        " argMin(JSONExtractString(payload_latest, 'delivery_address'), (lsn, sequence)) AS delivery_address,"
        f" argMin({_at('placed_at')}, (lsn, sequence)) AS placed_at"
        f" FROM {_events(source, 'order')} AND event_type = 'OrderPlaced' GROUP BY order_id"
    )


def _delivered(source: str) -> str:
    return (
        f"SELECT {_ORDER_ID} AS order_id,"
        f" argMax({_at('delivered_at')}, (lsn, sequence)) AS delivered_at,"
        " argMax(JSONExtract(payload_latest, 'total', 'Decimal(18, 2)'), (lsn, sequence)) AS total"
        f" FROM {_events(source, 'order')} AND event_type = 'OrderDelivered' GROUP BY order_id"
    )


def _item_field(name: str, kind: str) -> str:
    """A field of an item event: the whole row on create, only what changed on update."""
    changed = f"JSONExtract(payload_latest, 'changed', '{name}', 'Nullable({kind})')"
    return (
        f"argMaxIf(if(event_type = 'OrderItemUpdated', {changed},"
        f" JSONExtract(payload_latest, '{name}', 'Nullable({kind})')), (lsn, sequence),"
        f" event_type = 'OrderItemCreated' OR JSONHas(payload_latest, 'changed', '{name}'))"
    )


def _items(source: str, orders: str) -> str:
    """Current lines of the orders ``orders`` selects: latest value per field, deleted lines dropped."""
    return (
        f"SELECT argMax(JSONExtract(payload_latest, 'order_id', 'Int64'), (lsn, sequence)) AS order_id,"
        f" assumeNotNull({_item_field('product_id', 'Int64')}) AS product_id,"
        f" assumeNotNull({_item_field('quantity', 'Int64')}) AS quantity,"
        f" assumeNotNull({_item_field('unit_price', 'Decimal(18, 2)')}) AS unit_price"
        f" FROM {_events(source, 'order_item')} AND JSONExtract(payload_latest, 'order_id', 'Int64') IN ({orders})"
        " GROUP BY aggregate_id HAVING argMax(event_type, (lsn, sequence)) != 'OrderItemDeleted'"
    )


def _touched_orders(source: str, aggregates: str = "'order'") -> str:
    """Orders with an event (of the given aggregates) stored in the build window."""
    return (
        f"SELECT JSONExtract(payload_latest, 'order_id', 'Int64') FROM {EVENTS} WHERE source = {quote(source)}"
        f" AND aggregate_type IN ({aggregates}){_WINDOW}"
    )


def _orders_in_window(source: str) -> str:
    """Order ids with an event of aggregate ``order`` stored in the build window."""
    return (
        f"SELECT DISTINCT {_ORDER_ID} AS order_id FROM {EVENTS} WHERE source = {quote(source)}"
        f" AND aggregate_type = 'order'{_WINDOW}"
    )


def revenue_daily_product(source: str = SOURCE) -> Projection:
    delivered = (
        f"SELECT order_id, toDate(delivered_at) AS day FROM ({_delivered(source)}) WHERE {in_scope('day', 'Date')}"
    )
    rows = (
        f"WITH delivered AS ({delivered}), items AS ({_items(source, 'SELECT order_id FROM delivered')})"
        " SELECT d.day AS day, i.product_id AS product_id, any(ifNull(p.name, '')) AS product_name,"
        " sum(i.quantity) AS quantity, sum(i.quantity * i.unit_price) AS revenue, uniqExact(d.order_id) AS orders"
        " FROM delivered AS d INNER JOIN items AS i ON i.order_id = d.order_id"
        f" LEFT JOIN (SELECT id, name FROM {source}.products) AS p ON p.id = i.product_id"
        " GROUP BY day, product_id"
    )
    return Projection(
        name="revenue_daily_product",
        description="Revenue and quantity per UTC delivery day and product, from the items of delivered orders.",
        columns=(
            ("day", "Date"),
            ("product_id", "Int64"),
            ("product_name", "String"),
            ("quantity", "Int64"),
            ("revenue", "Decimal(18, 2)"),
            ("orders", "UInt64"),
        ),
        key=("day", "product_id"),
        scope="day",
        scopes_sql=(
            f"SELECT DISTINCT toDate(delivered_at) AS day FROM ({_delivered(source)})"
            f" WHERE order_id IN ({_touched_orders(source, _ORDERS_AND_ITEMS)})"
        ),
        rows_sql=rows,
        event_types=("OrderDelivered", *_ITEM_EVENTS),
        tables=(f"{source}.products",),
        daily_partitions=True,
    )


def order_funnel(source: str = SOURCE) -> Projection:
    placed = (
        f"SELECT order_id, placed_at, toDate(placed_at) AS day FROM ({_placed(source)}) WHERE {in_scope('day', 'Date')}"
    )
    to_status = "JSONExtractString(payload_latest, 'to_status')"
    progress = (
        f"SELECT {_ORDER_ID} AS order_id,"
        f" max(multiIf(event_type = 'OrderDelivered', 3, {to_status} = 'out_for_delivery', 2,"
        f" {to_status} = 'baking', 1, 0)) AS max_rank, max(event_type = 'OrderCancelled') AS was_cancelled,"
        f" argMaxIf({_at('delivered_at')}, (lsn, sequence),"
        " event_type = 'OrderDelivered') AS delivered_at"
        f" FROM {_events(source, 'order')} AND {_ORDER_ID} IN (SELECT order_id FROM placed_orders)"
        " GROUP BY order_id"
    )
    seconds = "(toUnixTimestamp64Micro(g.delivered_at) - toUnixTimestamp64Micro(o.placed_at)) / 1e6"
    rows = (
        f"WITH placed_orders AS ({placed}), progress AS ({progress})"
        " SELECT o.day AS day, count() AS placed, countIf(g.max_rank >= 1) AS reached_baking,"
        " countIf(g.max_rank >= 2) AS reached_out_for_delivery, countIf(g.max_rank >= 3) AS delivered,"
        " countIf(g.was_cancelled = 1) AS cancelled,"
        f" quantilesExactInclusiveIf(0.5, 0.9)({seconds}, g.max_rank >= 3) AS _q,"
        " if(delivered = 0, NULL, _q[1]) AS p50_delivery_s, if(delivered = 0, NULL, _q[2]) AS p90_delivery_s"
        " FROM placed_orders AS o LEFT JOIN progress AS g ON g.order_id = o.order_id GROUP BY day"
    )
    return Projection(
        name="order_funnel",
        description="Per placed day: orders placed, how far they got, and delivery-time percentiles (s).",
        columns=(
            ("day", "Date"),
            ("placed", "UInt64"),
            ("reached_baking", "UInt64"),
            ("reached_out_for_delivery", "UInt64"),
            ("delivered", "UInt64"),
            ("cancelled", "UInt64"),
            ("p50_delivery_s", "Nullable(Float64)"),
            ("p90_delivery_s", "Nullable(Float64)"),
        ),
        key=("day",),
        scope="day",
        scopes_sql=(
            f"SELECT DISTINCT toDate(placed_at) AS day FROM ({_placed(source)})"
            f" WHERE order_id IN ({_touched_orders(source)})"
        ),
        rows_sql=rows,
        event_types=("OrderPlaced", "OrderStatusChanged", "OrderDelivered", "OrderCancelled"),
    )


def customer_lifetime_value(source: str = SOURCE) -> Projection:
    placed = f"SELECT * FROM ({_placed(source)}) WHERE {in_scope('customer_id', 'Int64')}"
    rows = (
        f"WITH placed_orders AS ({placed}),"
        f" delivered AS (SELECT order_id, total, toUInt8(1) AS is_delivered FROM ({_delivered(source)})"
        " WHERE order_id IN (SELECT order_id FROM placed_orders))"
        " SELECT o.customer_id AS customer_id, sum(d.is_delivered) AS delivered_orders, sum(d.total) AS revenue,"
        " min(o.placed_at) AS first_order_at, max(o.placed_at) AS last_order_at"
        " FROM placed_orders AS o LEFT JOIN delivered AS d ON d.order_id = o.order_id GROUP BY customer_id"
    )
    return Projection(
        name="customer_lifetime_value",
        description="Per customer with an order: delivered orders, their revenue, first and last order time.",
        columns=(
            ("customer_id", "Int64"),
            ("delivered_orders", "UInt64"),
            ("revenue", "Decimal(18, 2)"),
            ("first_order_at", "DateTime64(6, 'UTC')"),
            ("last_order_at", "DateTime64(6, 'UTC')"),
        ),
        key=("customer_id",),
        scope="customer_id",
        scopes_sql=(
            f"SELECT DISTINCT customer_id FROM ({_placed(source)}) WHERE order_id IN ({_touched_orders(source)})"
        ),
        rows_sql=rows,
        event_types=("OrderPlaced", "OrderDelivered"),
    )


def orders_in_flight(source: str = SOURCE) -> Projection:
    status = (
        "multiIf(event_type = 'OrderPlaced', 'placed', event_type = 'OrderStatusChanged',"
        " JSONExtractString(payload_latest, 'to_status'), event_type = 'OrderDelivered', 'delivered', 'cancelled')"
    )
    changed = _ts("JSONExtractString(payload_latest, if(event_type = 'OrderPlaced', 'placed_at', 'changed_at'))")
    moves = "event_type IN ('OrderPlaced', 'OrderStatusChanged', 'OrderDelivered', 'OrderCancelled')"
    latest = (  # only events that move the status count (an alert or the app's reason do not)
        f"SELECT {_ORDER_ID} AS order_id, argMaxIf({status}, (lsn, sequence), {moves}) AS st,"
        f" argMaxIf({changed}, (lsn, sequence), {moves}) AS changed_at,"
        " max(event_type = 'OrderPurged') AS purged"
        f" FROM {_events(source, 'order')} AND {in_scope(_ORDER_ID, 'Int64')} GROUP BY order_id"
    )
    rows = (
        f"WITH latest AS ({latest}),"
        f" placed_orders AS (SELECT * FROM ({_placed(source)}) WHERE {in_scope('order_id', 'Int64')})"
        " SELECT l.order_id AS order_id, o.customer_id AS customer_id, l.st AS status,"
        " o.delivery_address AS delivery_address, o.placed_at AS placed_at, l.changed_at AS last_change_at"
        " FROM latest AS l INNER JOIN placed_orders AS o ON o.order_id = l.order_id"
        " WHERE l.st IN ('placed', 'baking', 'out_for_delivery') AND l.purged = 0"
    )
    return Projection(
        name="orders_in_flight",
        description="Orders not yet delivered, cancelled or purged, with their latest status (by source position).",
        columns=(
            ("order_id", "Int64"),
            ("customer_id", "Int64"),
            ("status", "LowCardinality(String)"),
            ("delivery_address", "String"),
            ("placed_at", "DateTime64(6, 'UTC')"),
            ("last_change_at", "DateTime64(6, 'UTC')"),
        ),
        key=("order_id",),
        scope="order_id",
        scopes_sql=_orders_in_window(source),
        rows_sql=rows,
        event_types=_ORDER_EVENTS,
    )


def overdue_orders(source: str = SOURCE) -> Projection:
    """The orders the delivery deadline (``cdc.demo.events``, rule ``order-delivery``) flagged, with what
    became of them: delivered or cancelled late (and why, from the app's own event), or still open."""
    overdue = (
        f"SELECT {_ORDER_ID} AS order_id, any(JSONExtract(payload_latest, 'customer_id', 'Int64')) AS customer_id,"
        f" min({_at('placed_at')}) AS placed_at, min({_at('due_at')}) AS due_at"
        f" FROM {_events(source, 'order')} AND event_type = 'OrderDeliveryOverdue'"
        f" AND {in_scope(_ORDER_ID, 'Int64')} GROUP BY order_id"
    )
    ends = "event_type IN ('OrderDelivered', 'OrderCancelled')"
    outcome = (
        f"SELECT {_ORDER_ID} AS order_id, argMaxIf(event_type, (lsn, sequence), {ends}) AS ended_by,"
        f" argMaxIf(toDateTime64(occurred_at, 6, 'UTC'), (lsn, sequence), {ends}) AS ended_at,"
        " argMaxIf(JSONExtractString(payload_latest, 'reason'), (lsn, sequence),"
        " event_type = 'CancellationReasonGiven') AS reason"
        f" FROM {_events(source, 'order')} AND {_ORDER_ID} IN (SELECT order_id FROM overdue) GROUP BY order_id"
    )
    rows = (
        f"WITH overdue AS ({overdue}), outcome AS ({outcome})"
        " SELECT o.order_id AS order_id, o.customer_id AS customer_id, o.placed_at AS placed_at, o.due_at AS due_at,"
        " multiIf(g.ended_by = 'OrderDelivered', 'delivered late', g.ended_by = 'OrderCancelled', 'cancelled late',"
        " 'still open') AS state, if(g.ended_by = '', NULL, g.ended_at) AS ended_at,"
        " nullIf(g.reason, '') AS cancellation_reason"
        " FROM overdue AS o LEFT JOIN outcome AS g ON g.order_id = o.order_id"
    )
    return Projection(
        name="overdue_orders",
        description="Orders neither delivered nor cancelled within the delivery promise, and what became of them.",
        columns=(
            ("order_id", "Int64"),
            ("customer_id", "Int64"),
            ("placed_at", "DateTime64(6, 'UTC')"),
            ("due_at", "DateTime64(6, 'UTC')"),
            ("state", "LowCardinality(String)"),
            ("ended_at", "Nullable(DateTime64(6, 'UTC'))"),
            ("cancellation_reason", "Nullable(String)"),
        ),
        key=("order_id",),
        scope="order_id",
        scopes_sql=_orders_in_window(source),
        rows_sql=rows,
        event_types=("OrderDeliveryOverdue", "OrderDelivered", "OrderCancelled", "CancellationReasonGiven"),
    )


def projections(source: str = SOURCE) -> list[Projection]:
    """The shop's reports over the events and mirrors of source database ``source``."""
    return [
        revenue_daily_product(source),
        order_funnel(source),
        customer_lifetime_value(source),
        orders_in_flight(source),
        overdue_orders(source),
    ]


PROJECTIONS = projections()


def by_name(name: str, source: str = SOURCE) -> Projection:
    for p in projections(source):
        if p.name == name:
            return p
    raise ProjectionError(f"no shop projection {name!r}; there are {', '.join(p.name for p in PROJECTIONS)}")
