"""Translation of the demo shop's real Debezium envelopes into domain events.

The envelopes and the tables' catalog shape were captured from the running stack by
tests/integration/test_shop_envelopes.py (tests/fixtures/debezium/shop_*.json, shop_schemas.json).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Callable, Iterable
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from cdc.debezium.envelope import parse_change
from cdc.domain.changes import Column, RowChange, TableRef, TableSchema
from cdc.domain.events import DomainEvent, EventDefinitionError, EventRegistry, collecting, load_modules, translator
from cdc.translate import UNAVAILABLE, Change, TranslationError, decode_row, decode_value, to_change, translate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "debezium"
SHOP = sorted(p.stem for p in FIXTURES.glob("shop_*__*.json"))


@pytest.fixture(scope="module")
def registry() -> EventRegistry:
    return load_modules(["cdc.demo.events"])


@cache
def schemas() -> dict[str, TableSchema]:
    """The shop's TableSchemas, rebuilt from the captured catalog."""
    doc = json.loads((FIXTURES / "shop_schemas.json").read_text())
    return {
        name: TableSchema(
            TableRef(s["source"], s["schema"], s["table"]),
            tuple(Column(**c) for c in s["columns"]),
            tuple(s["key"]),
            s["replica_identity"],
            s["has_primary_key"],
        )
        for name, s in doc.items()
    }


def envelope(name: str) -> dict[str, Any]:
    value = json.loads((FIXTURES / f"{name}.json").read_text())["value"]
    assert isinstance(value, dict)
    return value


def change_of(name: str, edit: Callable[[dict[str, Any]], None] | None = None) -> RowChange:
    """The fixture's change, parsed from its raw bytes (or from an edited copy of its envelope)."""
    if edit is None:
        raw = json.loads((FIXTURES / f"{name}.json").read_text())["value_raw"]
    else:
        doc = copy.deepcopy(envelope(name))
        edit(doc)
        raw = json.dumps(doc)
    change = parse_change(raw.encode())
    assert change is not None
    return change


def events_of(
    name: str, registry: EventRegistry, edit: Callable[[dict[str, Any]], None] | None = None
) -> list[DomainEvent]:
    change = change_of(name, edit)
    return translate(change, schemas()[change.table.qualified], registry)


def commit_time(name: str) -> str:
    ms = envelope(name)["source"]["ts_ms"]
    return (dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)).isoformat()


def test_the_captured_fixtures_are_there() -> None:
    assert len(SHOP) >= 14
    assert set(schemas()) == {
        "public.customers",
        "public.products",
        "public.orders",
        "public.order_items",
        "public.outbox",
    }
    assert schemas()["public.order_items"].key == ("order_id", "line_no")


# ---------------------------------------------------------------- the shop's translators


def test_customer_insert_is_one_customer_registered(registry: EventRegistry) -> None:
    after = envelope("shop_customers__insert")["after"]
    (e,) = events_of("shop_customers__insert", registry)
    assert (e.event_type, e.version, e.aggregate_type, e.aggregate_id) == (
        "CustomerRegistered",
        1,
        "customer",
        str(after["id"]),
    )
    assert dict(e.payload) == {
        "customer_id": after["id"],
        "name": after["name"],
        "email": after["email"],
        "registered_at": after["created_at"],
    }
    source = envelope("shop_customers__insert")["source"]
    assert (e.op, e.lsn, e.txid, e.occurred_at_ms) == ("c", source["lsn"], source["txId"], source["ts_ms"])
    assert (e.table, e.source, e.topic, e.sequence) == ("public.customers", "shop", "events.customer", 0)


def test_customer_snapshot_read_is_also_a_registration(registry: EventRegistry) -> None:
    (e,) = events_of("shop_customers__snapshot_read", registry)
    assert (e.event_type, e.op) == ("CustomerRegistered", "r")


def test_order_insert_is_order_placed_v2(registry: EventRegistry) -> None:
    after = envelope("shop_orders__insert")["after"]
    (e,) = events_of("shop_orders__insert", registry)
    assert (e.event_type, e.version, e.aggregate_type, e.aggregate_id) == ("OrderPlaced", 2, "order", str(after["id"]))
    assert dict(e.payload) == {
        "order_id": after["id"],
        "customer_id": after["customer_id"],
        "delivery_address": after["delivery_address"],
        "total": after["total"],  # numeric(12,2) as Debezium's exact string, not a float
        "channel": json.loads(after["notes"])["channel"],
        "placed_at": after["placed_at"],
    }
    assert isinstance(e.payload["total"], str) and Decimal(e.payload["total"]) > 0


@pytest.mark.parametrize(
    ("name", "old", "new"),
    [
        ("shop_orders__status_baking", "placed", "baking"),
        ("shop_orders__status_out_for_delivery", "baking", "out_for_delivery"),
    ],
)
def test_status_update_is_order_status_changed(registry: EventRegistry, name: str, old: str, new: str) -> None:
    (e,) = events_of(name, registry)
    assert e.event_type == "OrderStatusChanged"
    assert dict(e.payload) == {
        "order_id": envelope(name)["after"]["id"],
        "from_status": old,
        "to_status": new,
        "changed_at": commit_time(name),
    }


def test_delivery_is_order_delivered(registry: EventRegistry) -> None:
    after = envelope("shop_orders__delivered")["after"]
    (e,) = events_of("shop_orders__delivered", registry)
    assert e.event_type == "OrderDelivered"
    assert dict(e.payload) == {"order_id": after["id"], "total": after["total"], "delivered_at": after["delivered_at"]}


def test_cancellation_is_order_cancelled_with_the_status_it_left(registry: EventRegistry) -> None:
    (e,) = events_of("shop_orders__cancelled", registry)
    assert e.event_type == "OrderCancelled"
    assert dict(e.payload) == {
        "order_id": envelope("shop_orders__cancelled")["after"]["id"],
        "from_status": "placed",
        "cancelled_at": commit_time("shop_orders__cancelled"),
    }


def test_purge_is_order_purged(registry: EventRegistry) -> None:
    (e,) = events_of("shop_orders__delete", registry)
    order_id = envelope("shop_orders__delete")["before"]["id"]
    assert (e.event_type, e.op, e.aggregate_id, dict(e.payload)) == (
        "OrderPurged",
        "d",
        str(order_id),
        {"order_id": order_id},
    )


def test_price_update_has_old_and_new_price(registry: EventRegistry) -> None:
    doc = envelope("shop_products__price_update")
    (e,) = events_of("shop_products__price_update", registry)
    assert (e.event_type, e.aggregate_type) == ("ProductPriceChanged", "product")
    assert e.aggregate_id == str(doc["after"]["id"])
    assert dict(e.payload) == {
        "product_id": doc["after"]["id"],
        "sku": doc["after"]["sku"],
        "old_price": doc["before"]["price"],
        "new_price": doc["after"]["price"],
        "changed_at": doc["after"]["updated_at"],
    }
    assert e.payload["old_price"] != e.payload["new_price"]


def test_price_update_without_old_row_has_no_old_price(registry: EventRegistry) -> None:
    (e,) = events_of("shop_products__price_update", registry, lambda d: d.update(before=None))
    assert (
        e.payload["old_price"] is None
        and e.payload["new_price"] == envelope("shop_products__price_update")["after"]["price"]
    )


def test_an_order_captured_mid_life_by_the_snapshot_says_where_it_is(registry: EventRegistry) -> None:
    after = envelope("shop_orders__snapshot_read")["after"]
    assert after["status"] != "placed"
    placed, status = events_of("shop_orders__snapshot_read", registry)
    assert (placed.event_type, placed.version, placed.sequence) == ("OrderPlaced", 2, 0)
    assert (status.event_type, status.sequence) == ("OrderStatusChanged", 1)
    assert dict(status.payload) == {
        "order_id": after["id"],
        "from_status": None,
        "to_status": after["status"],
        "changed_at": commit_time("shop_orders__snapshot_read"),
    }
    assert placed.event_id != status.event_id and placed.correlation_id == status.correlation_id


def test_untranslated_order_update_yields_nothing(registry: EventRegistry) -> None:
    def notes_only(doc: dict[str, Any]) -> None:
        doc["after"] = {**doc["before"], "notes": '{"channel": "web"}'}

    assert events_of("shop_orders__status_baking", registry, notes_only) == []


# ---------------------------------------------------------------- generic events


def test_order_item_insert_is_a_generic_created_event(registry: EventRegistry) -> None:
    after = envelope("shop_order_items__insert")["after"]
    (e,) = events_of("shop_order_items__insert", registry)
    assert (e.event_type, e.version, e.aggregate_type) == ("OrderItemCreated", 1, "order_item")
    assert e.aggregate_id == f"{after['order_id']}:{after['line_no']}"
    assert e.topic == "events.order_item"
    assert dict(e.payload) == after and isinstance(e.payload["unit_price"], str)


def test_cascaded_order_item_delete_carries_only_the_key(registry: EventRegistry) -> None:
    before = envelope("shop_order_items__delete")["before"]
    (e,) = events_of("shop_order_items__delete", registry)
    assert (e.event_type, e.aggregate_id) == ("OrderItemDeleted", f"{before['order_id']}:{before['line_no']}")
    assert dict(e.payload) == {"order_id": before["order_id"], "line_no": before["line_no"]}


def test_order_item_update_lists_the_changed_columns(registry: EventRegistry) -> None:
    def more(doc: dict[str, Any]) -> None:
        doc["op"], doc["before"] = "u", dict(doc["after"])
        doc["after"]["quantity"] += 1

    (e,) = events_of("shop_order_items__insert", registry, more)
    after = envelope("shop_order_items__insert")["after"]
    assert e.event_type == "OrderItemUpdated"
    assert dict(e.payload) == {
        "order_id": after["order_id"],
        "line_no": after["line_no"],
        "changed": {"quantity": after["quantity"] + 1},
    }


# ---------------------------------------------------------------- ids and correlation


@pytest.mark.parametrize("name", SHOP)
def test_translating_an_envelope_again_gives_the_same_events(registry: EventRegistry, name: str) -> None:
    first, second = events_of(name, registry), events_of(name, registry)
    assert first == second
    assert [e.event_id for e in first] == [e.event_id for e in second]


def test_event_ids_of_all_captured_envelopes_are_distinct(registry: EventRegistry) -> None:
    ids = [e.event_id for name in SHOP for e in events_of(name, registry)]
    assert len(ids) == len(set(ids)) >= len(SHOP) - 1


def test_events_of_one_transaction_share_a_correlation_id(registry: EventRegistry) -> None:
    def corr(name: str) -> set[str]:
        return {e.correlation_id for e in events_of(name, registry)}

    placed, line = corr("shop_orders__insert"), corr("shop_order_items__insert")
    purged, cascade = corr("shop_orders__delete"), corr("shop_order_items__delete")
    assert placed == line and len(placed) == 1  # the order and its lines: one transaction
    assert purged == cascade and len(purged) == 1  # the purge and its cascaded deletes
    assert placed != purged != corr("shop_orders__status_baking")


# ---------------------------------------------------------------- decoding


def test_real_row_images_decode_by_column_type() -> None:
    customer = envelope("shop_customers__insert")["after"]
    row = decode_row(schemas()["public.customers"], customer)
    assert row is not None
    expected_birthday = dt.date(1970, 1, 1) + dt.timedelta(days=customer["birthday"])
    assert row["birthday"] == expected_birthday.isoformat()
    assert row["created_at"] == customer["created_at"] and row["created_at"].endswith("Z")  # timestamptz: as is
    order = decode_row(schemas()["public.orders"], envelope("shop_orders__delivered")["after"])
    assert order is not None
    assert isinstance(order["notes"], dict) and order["notes"]["channel"] in {"app", "web", "phone"}
    assert order["total"] == envelope("shop_orders__delivered")["after"]["total"]
    micros = envelope("shop_orders__delivered")["after"]["updated_at"]
    assert order["updated_at"] == (dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=micros)).isoformat()
    price_update = envelope("shop_products__price_update")["after"]
    product = decode_row(schemas()["public.products"], price_update)
    assert product is not None and product["tags"] == price_update["tags"] and product["tags"][1] == "classic"
    assert decode_row(schemas()["public.orders"], None) is None


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        (Column("d", "date"), 19_849, "2024-05-06"),
        (Column("d", "date"), -1, "1969-12-31"),
        (Column("ts", "timestamp"), 1_714_979_289_123_456, "2024-05-06T07:08:09.123456"),
        (Column("ts", "timestamp"), 0, "1970-01-01T00:00:00"),
        (Column("tz", "timestamptz"), "2024-05-06T05:08:09.123456Z", "2024-05-06T05:08:09.123456Z"),
        (Column("t", "time"), 86_399_999_999, "23:59:59.999999"),
        (Column("t", "time"), 0, "00:00:00"),
        (Column("n", "numeric", numeric_precision=12, numeric_scale=2), "1234567890.12", "1234567890.12"),
        (Column("n", "numeric"), "NaN", "NaN"),
        (Column("j", "jsonb"), '{"a": [1, 2], "b": {"c": null}}', {"a": [1, 2], "b": {"c": None}}),
        (Column("j", "json"), "[]", []),
        (Column("j", "jsonb"), "not json {", "not json {"),
        (Column("j", "jsonb"), UNAVAILABLE, UNAVAILABLE),
        (Column("a", "text", is_array=True), ["x", "y z"], ["x", "y z"]),
        (Column("a", "date", is_array=True), [0, None, 1], ["1970-01-01", None, "1970-01-02"]),
        (Column("a", "jsonb", is_array=True), ['{"k": 1}', "2"], [{"k": 1}, 2]),
        (Column("a", "date", is_array=True), UNAVAILABLE, UNAVAILABLE),
        (Column("e", "order_status", is_enum=True), "baking", "baking"),
        (Column("d", "date"), None, None),
        (None, 19_849, 19_849),
    ],
)
def test_decode_value(column: Column | None, value: Any, expected: Any) -> None:
    assert decode_value(column, value) == expected


@pytest.mark.parametrize(
    ("column", "value"),
    [
        (Column("d", "date"), 2**31 - 1),
        (Column("ts", "timestamp"), 9_223_372_036_854_775_807),  # timestamp '294276-12-31 23:59:59'
        (Column("ts", "timestamp"), -(2**63)),
    ],
)
def test_values_outside_pythons_calendar_keep_debeziums_number(column: Column, value: int) -> None:
    assert decode_value(column, value) == value


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        (Column("d", "date"), -622_191_234, "infinity"),  # what Debezium 3.6 sends for date 'infinity'
        (Column("d", "date"), -625_821_272, "-infinity"),
        (Column("d", "date"), -2_147_472_692, "infinity"),  # on some streamed rows
        (Column("d", "date"), -2_147_472_691, "-infinity"),
        (Column("ts", "timestamp"), 9_223_372_036_825_200_000, "infinity"),
        (Column("ts", "timestamp"), -9_223_372_036_832_400_000, "-infinity"),
        (Column("n", "numeric"), "NAN", "NaN"),
        (Column("n", "numeric"), "POSITIVE_INFINITY", "Infinity"),
        (Column("n", "numeric"), "NEGATIVE_INFINITY", "-Infinity"),
        (Column("n", "numeric"), "1.50", "1.50"),
    ],
)
def test_infinities_and_nan_read_as_postgresql_writes_them(column: Column, value: object, expected: str) -> None:
    assert decode_value(column, value) == expected


def test_time_24_00_is_not_midnight() -> None:
    assert decode_value(Column("t", "time"), 86_400_000_000) in ("24:00:00", 86_400_000_000)


# ---------------------------------------------------------------- translator failures


def _registry_with(table: str, fn: Callable[[Change], Iterable[object] | None]) -> EventRegistry:
    """A registry whose only translator is ``fn``, declared with @translator like a user module does."""
    with collecting(EventRegistry()) as registry:
        translator(table)(fn)
    return registry


def test_a_failing_translator_is_a_translation_error_with_its_cause() -> None:
    boom = KeyError("no_such_column")

    def failing(change: Change) -> Iterable[object]:
        raise boom

    change = change_of("shop_orders__insert")
    with pytest.raises(TranslationError, match=f"public.orders failed at lsn {change.position.lsn}: KeyError") as info:
        translate(change, schemas()["public.orders"], _registry_with("public.orders", failing))
    assert info.value.__cause__ is boom


def test_a_translator_returning_a_non_event_is_a_translation_error() -> None:
    change = change_of("shop_orders__insert")
    registry = _registry_with("orders", lambda c: [{"order_id": 1}])
    with pytest.raises(TranslationError, match="dict is not a declared event") as info:
        translate(change, schemas()["public.orders"], registry)
    assert isinstance(info.value.__cause__, EventDefinitionError)


def test_a_translator_yielding_nothing_gives_no_events() -> None:
    change = change_of("shop_orders__insert")
    assert translate(change, schemas()["public.orders"], _registry_with("public.orders", lambda c: None)) == []


# ---------------------------------------------------------------- the Change view


def test_update_without_old_row_changes_every_column(registry: EventRegistry) -> None:
    """REPLICA IDENTITY DEFAULT: PostgreSQL logs no old row, so every column counts as changed."""
    change = change_of("shop_orders__status_baking", lambda d: d.update(before=None))
    view = to_change(change, schemas()["public.orders"])
    assert view.before is None and view.op == "update"
    assert view.changed == frozenset(envelope("shop_orders__status_baking")["after"])
    (e,) = events_of("shop_orders__status_baking", registry, lambda d: d.update(before=None))
    assert (e.payload["from_status"], e.payload["to_status"]) == (None, "baking")


def test_captured_update_under_replica_identity_default_changes_every_column() -> None:
    change = change_of("order_lines__update")  # order_lines has REPLICA IDENTITY DEFAULT
    view = to_change(change, None)
    assert change.before is None and view.changed == frozenset(envelope("order_lines__update")["after"])


def test_full_old_row_changes_only_what_differs() -> None:
    view = to_change(change_of("shop_orders__status_baking"), schemas()["public.orders"])
    assert view.changed == {"status", "updated_at"}
    assert view.snapshot is False and view.committed_at.isoformat() == commit_time("shop_orders__status_baking")


def _toast_notes(doc: dict[str, Any]) -> None:
    doc["after"]["notes"] = UNAVAILABLE


def test_toast_placeholder_keeps_the_old_value_and_is_not_changed() -> None:
    before_notes = json.loads(envelope("shop_orders__status_baking")["before"]["notes"])
    view = to_change(change_of("shop_orders__status_baking", _toast_notes), schemas()["public.orders"])
    assert view.after is not None and view.after["notes"] == before_notes
    assert "status" in view.changed
    assert "notes" not in view.changed


def test_toast_placeholder_keeps_the_old_value() -> None:
    before_notes = json.loads(envelope("shop_orders__status_baking")["before"]["notes"])
    view = to_change(change_of("shop_orders__status_baking", _toast_notes), schemas()["public.orders"])
    assert view.after is not None and view.after["notes"] == before_notes and "status" in view.changed


def test_toast_placeholder_without_old_row_is_not_changed() -> None:
    def toast_no_before(doc: dict[str, Any]) -> None:
        doc["before"] = None
        doc["after"]["notes"] = UNAVAILABLE

    view = to_change(change_of("shop_orders__status_baking", toast_no_before), schemas()["public.orders"])
    assert view.after is not None and view.after["notes"] == UNAVAILABLE
    assert "notes" not in view.changed and "status" in view.changed


# ---------------------------------------------------------------- upcasting and replay with the demo


def test_a_v1_order_placed_reads_in_the_v2_shape(registry: EventRegistry) -> None:
    (v2,) = events_of("shop_orders__insert", registry)
    stored_payload = {"order_id": 7, "customer_id": 3, "address": "1 Via Roma", "placed_at": "2024-01-01T00:00:00Z"}
    v1 = v2.with_payload(1, stored_payload)
    read = registry.upcast(v1)
    assert read.version == 2 and read.event_id == v1.event_id
    assert dict(read.payload) == {
        "order_id": 7,
        "customer_id": 3,
        "delivery_address": "1 Via Roma",
        "total": None,
        "channel": None,
        "placed_at": "2024-01-01T00:00:00Z",
    }
    assert v1.version == 1 and stored_payload["address"] == "1 Via Roma" and "delivery_address" not in stored_payload


def test_fold_order_over_an_order_life_ends_delivered(registry: EventRegistry) -> None:
    life = ["shop_orders__insert", "shop_orders__status_baking", "shop_orders__delivered"]
    history = [registry.upcast(e) for name in life for e in events_of(name, registry)]
    assert [e.event_type for e in history] == ["OrderPlaced", "OrderStatusChanged", "OrderDelivered"]
    fold = registry.reducers["order"]
    state: dict[str, Any] = {}
    seen = []
    for e in history:
        state = fold(state, e)
        seen.append(state["status"])
    delivered = envelope("shop_orders__delivered")["after"]
    assert seen == ["placed", "baking", "delivered"]
    assert (state["order_id"], state["total"], state["delivered_at"]) == (
        delivered["id"],
        delivered["total"],
        delivered["delivered_at"],
    )


def test_fold_order_over_an_upcast_v1_history(registry: EventRegistry) -> None:
    (placed,) = events_of("shop_orders__insert", registry)
    v1 = placed.with_payload(1, {"order_id": 7, "customer_id": 3, "address": "1 Via Roma", "placed_at": "x"})
    (cancelled,) = events_of("shop_orders__cancelled", registry)
    state: dict[str, Any] = {}
    for e in (registry.upcast(v1), cancelled):
        state = registry.reducers["order"](state, e)
    assert (state["status"], state["delivery_address"], state["total"]) == ("cancelled", "1 Via Roma", None)
