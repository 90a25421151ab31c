"""The demo shop's real Debezium envelopes, captured from PostgreSQL 15 + Debezium + Tansu.

One order's life (placed -> baking -> out_for_delivery -> delivered), a cancelled order that is
then purged (the delete cascades to its lines), a new customer and a price change are made with the
shop's own SQL; the envelopes Debezium produced are checked and saved to
`tests/fixtures/debezium/shop_*.json`, with the tables' catalog shape in `shop_schemas.json`, so the
translator unit tests run on real envelopes without services (written when missing, or always with
CDC_REFRESH_FIXTURES=1).
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cdc.adapters.postgres import PostgresSession, PostgresSource
from cdc.debezium.config import ConnectorSettings, embedded_properties
from cdc.debezium.engine import DebeziumRunner
from cdc.debezium.envelope import parse_change
from cdc.demo import shop
from cdc.domain.changes import TableRef, TableSchema
from cdc.domain.events import load_modules
from cdc.translate import translate
from tests.integration.test_debezium_engine import (
    FIXTURES,
    PASSWORD,
    Message,
    PgCluster,
    save_fixture,
    start_postgres,
    start_tansu,
    stop_postgres,
    wait_for_messages,
    wait_until,
)

SOURCE = "shop"
SCHEMAS_FILE = FIXTURES / "shop_schemas.json"


@dataclass(frozen=True)
class Capture:
    messages: list[Message]
    schemas: dict[str, TableSchema]
    snapshot_order: int  # a seeded order moved to 'baking' before the snapshot
    delivered_order: int
    cancelled_order: int
    delivered_lines: int
    cancelled_lines: int


def _advance(session: PostgresSession, order_id: int, new: str) -> None:
    """shop.advance_order's statement, for a chosen order."""
    delivered = ", delivered_at = now()" if new == "delivered" else ""
    session.execute(
        f"UPDATE orders SET status = %s, updated_at = now() AT TIME ZONE 'utc'{delivered} WHERE id = %s",
        (new, order_id),
    )


def _last_order(session: PostgresSession) -> int:
    return int(session.execute("SELECT max(id) FROM orders")[0][0])


def _row_count(session: PostgresSession) -> int:
    tables = [t.split(".", 1)[1] for t in shop.DEMO_TABLES]
    return sum(int(session.execute(f"SELECT count(*) FROM {t}")[0][0]) for t in tables)


def _shop_life(session: PostgresSession, rng: random.Random) -> tuple[int, int, int, int, int]:
    """The streamed part; returns (delivered order, cancelled order, their line counts, changes made)."""
    shop.new_customer(session, rng)
    shop.place_order(session, rng)
    delivered = _last_order(session)
    for status in ("baking", "out_for_delivery", "delivered"):
        _advance(session, delivered, status)
    shop.place_order(session, rng)
    cancelled = _last_order(session)
    session.execute(
        "UPDATE orders SET status = 'cancelled', updated_at = now() AT TIME ZONE 'utc' WHERE id = %s", (cancelled,)
    )
    shop.change_price(session, rng)
    lines_of = "SELECT count(*) FROM order_items WHERE order_id = %s"
    lines_d, lines_c = (int(session.execute(lines_of, (o,))[0][0]) for o in (delivered, cancelled))
    shop.purge_cancelled(session, rng)
    assert not session.execute("SELECT 1 FROM orders WHERE id = %s", (cancelled,))
    changes = 1 + (1 + lines_d) + 3 + (1 + lines_c) + 1 + 1 + (1 + lines_c)
    return delivered, cancelled, lines_d, lines_c, changes


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Capture]:
    root = tmp_path_factory.mktemp("shop-envelopes")
    cluster = start_postgres()
    tansu = start_tansu(root / "tansu")
    runner: DebeziumRunner | None = None
    try:
        source = PostgresSource(cluster.dsn())
        shop.install_schema(source)
        rng = random.Random(11)
        with PostgresSession(source) as session, pytest.MonkeyPatch.context() as mp:
            shop.seed(session, customers=3)
            snapshot_order = int(session.execute("SELECT min(id) FROM orders")[0][0])
            _advance(session, snapshot_order, "baking")  # captured mid-life by the snapshot
            snapshot_rows = _row_count(session)
            mp.chdir(root)  # a stray `logs/` dir from the bundled log4j config would land here
            runner = DebeziumRunner(
                embedded_properties(_settings(cluster, root)), tansu.bootstrap, root / "debezium.log"
            )
            runner.start()
            wait_until(runner.snapshot_completed, 60, "the snapshot")
            delivered, cancelled, lines_d, lines_c, changes = _shop_life(session, rng)
            messages = wait_for_messages(tansu.bootstrap, f"{SOURCE}.public.", snapshot_rows + changes)
        schemas = {t: _schema(source, t) for t in shop.DEMO_TABLES}
        yield Capture(messages, schemas, snapshot_order, delivered, cancelled, lines_d, lines_c)
    finally:
        if runner is not None:
            runner.stop()
        tansu.stop()
        stop_postgres(cluster)


def _settings(cluster: PgCluster, root: Path) -> ConnectorSettings:
    return ConnectorSettings(
        source=SOURCE,
        host="127.0.0.1",
        port=cluster.port,
        user="postgres",
        password=PASSWORD,
        dbname="postgres",
        tables=shop.DEMO_TABLES,
        offset_file=root / "offsets.dat",
    )


def _schema(source: PostgresSource, qualified: str) -> TableSchema:
    schema, table = qualified.split(".", 1)
    found = source.table_schema(TableRef(SOURCE, schema, table))
    assert found is not None, qualified
    return found


def _of(capture: Capture, table: str, op: str) -> list[Message]:
    return [m for m in capture.messages if m.topic == f"{SOURCE}.public.{table}" and m.op == op]


def _order(capture: Capture, op: str, order_id: int) -> list[Message]:
    return sorted(
        (m for m in _of(capture, "orders", op) if m.key == {"id": order_id}),
        key=lambda m: int(m.value["source"]["lsn"]),
    )


def _shop_envelopes(c: Capture) -> dict[str, Message]:
    """The envelopes kept as fixtures, by fixture name."""
    baking, out, delivered = _order(c, "u", c.delivered_order)
    (cancelled,) = _order(c, "u", c.cancelled_order)
    return {
        "shop_customers__snapshot_read": _of(c, "customers", "r")[0],
        "shop_products__snapshot_read": _of(c, "products", "r")[0],
        "shop_orders__snapshot_read": _order(c, "r", c.snapshot_order)[0],
        "shop_order_items__snapshot_read": _of(c, "order_items", "r")[0],
        "shop_customers__insert": _of(c, "customers", "c")[0],
        "shop_orders__insert": _order(c, "c", c.delivered_order)[0],
        "shop_order_items__insert": next(
            m for m in _of(c, "order_items", "c") if m.key == {"order_id": c.delivered_order, "line_no": 1}
        ),
        "shop_orders__status_baking": baking,
        "shop_orders__status_out_for_delivery": out,
        "shop_orders__delivered": delivered,
        "shop_orders__cancelled": cancelled,
        "shop_products__price_update": _of(c, "products", "u")[0],
        "shop_orders__delete": _order(c, "d", c.cancelled_order)[0],
        "shop_order_items__delete": _of(c, "order_items", "d")[0],
    }


# ---------------------------------------------------------------- tests


def test_every_change_arrives_with_its_op(capture: Capture) -> None:
    counts = Counter((m.topic.rsplit(".", 1)[1], m.op) for m in capture.messages)
    assert {k: v for k, v in counts.items() if k[1] != "r"} == {
        ("customers", "c"): 1,
        ("orders", "c"): 2,
        ("orders", "u"): 4,
        ("orders", "d"): 1,
        ("products", "u"): 1,
        ("order_items", "c"): capture.delivered_lines + capture.cancelled_lines,
        ("order_items", "d"): capture.cancelled_lines,
    }
    assert (counts[("customers", "r")], counts[("products", "r")], counts[("orders", "r")]) == (3, 10, 3)
    assert counts[("order_items", "r")] >= 3
    assert not [m for m in capture.messages if m.value_raw is None]


def test_order_life_envelopes(capture: Capture) -> None:
    e = _shop_envelopes(capture)
    statuses = [
        (m.value["before"]["status"], m.value["after"]["status"]) for m in _order(capture, "u", capture.delivered_order)
    ]
    assert statuses == [("placed", "baking"), ("baking", "out_for_delivery"), ("out_for_delivery", "delivered")]
    assert e["shop_orders__delivered"].value["after"]["delivered_at"] is not None
    assert e["shop_orders__status_baking"].value["after"]["delivered_at"] is None
    snap = e["shop_orders__snapshot_read"].value
    assert snap["after"]["status"] == "baking" and snap["source"]["snapshot"] != "false"
    insert, line = e["shop_orders__insert"].value, e["shop_order_items__insert"].value
    assert json.loads(insert["after"]["notes"])["channel"] in {"app", "web", "phone"}  # jsonb as JSON text
    assert insert["source"]["txId"] == line["source"]["txId"]  # order and its lines: one transaction


def test_cancel_purge_and_price_envelopes(capture: Capture) -> None:
    e = _shop_envelopes(capture)
    cancelled = e["shop_orders__cancelled"].value
    assert (cancelled["before"]["status"], cancelled["after"]["status"]) == ("placed", "cancelled")
    purge = e["shop_orders__delete"].value
    assert purge["before"]["status"] == "cancelled" and purge["after"] is None  # replica identity full
    cascade = e["shop_order_items__delete"].value
    assert cascade["before"]["order_id"] == capture.cancelled_order
    assert cascade["before"]["quantity"] == 0  # replica identity default: only the key is real
    price = e["shop_products__price_update"].value
    assert price["before"]["price"] != price["after"]["price"]
    assert price["before"]["sku"] == price["after"]["sku"]


def test_live_envelopes_translate_to_shop_events(capture: Capture) -> None:
    registry = load_modules(["cdc.demo.events"])
    types = {}
    for name, m in _shop_envelopes(capture).items():
        change = parse_change(m.value_raw or "")
        assert change is not None
        types[name] = [ev.event_type for ev in translate(change, capture.schemas[change.table.qualified], registry)]
    assert types["shop_orders__snapshot_read"] == ["OrderPlaced", "OrderStatusChanged"]
    assert types["shop_orders__delivered"] == ["OrderDelivered"]
    assert types["shop_orders__delete"] == ["OrderPurged"]
    assert types["shop_order_items__insert"] == ["OrderItemCreated"]


def test_envelopes_and_schemas_are_kept_as_fixtures(capture: Capture) -> None:
    envelopes = _shop_envelopes(capture)
    for name, message in envelopes.items():
        save_fixture(name, message)
    if not SCHEMAS_FILE.exists() or os.environ.get("CDC_REFRESH_FIXTURES"):
        doc = {name: schema_doc(s) for name, s in capture.schemas.items()}
        SCHEMAS_FILE.write_text(json.dumps(doc, indent=2) + "\n")
    for name in envelopes:
        kept = json.loads((FIXTURES / f"{name}.json").read_text())
        assert kept["topic"].startswith(f"{SOURCE}.public.") and kept["value"]["op"] in {"r", "c", "u", "d"}
    kept_schemas = json.loads(SCHEMAS_FILE.read_text())
    assert sorted(kept_schemas) == sorted(shop.DEMO_TABLES)
    assert kept_schemas["public.order_items"]["key"] == ["order_id", "line_no"]
    assert {c["name"]: c["pg_type"] for c in kept_schemas["public.orders"]["columns"]} == {
        c.name: c.pg_type for c in capture.schemas["public.orders"].columns
    }


def schema_doc(schema: TableSchema) -> dict[str, Any]:
    """A TableSchema as plain JSON (rebuilt by the unit tests without PostgreSQL)."""
    return {
        "source": schema.ref.source,
        "schema": schema.ref.schema,
        "table": schema.ref.table,
        "key": list(schema.key),
        "replica_identity": schema.replica_identity,
        "has_primary_key": schema.has_primary_key,
        "columns": [
            {
                "name": c.name,
                "pg_type": c.pg_type,
                "nullable": c.nullable,
                "is_array": c.is_array,
                "is_enum": c.is_enum,
                "numeric_precision": c.numeric_precision,
                "numeric_scale": c.numeric_scale,
            }
            for c in schema.columns
        ],
    }
