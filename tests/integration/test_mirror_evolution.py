"""Schema evolution and unchanged TOAST values in the mirror, against real ClickHouse (chDB).

The broker is the contract-tested fake and the catalog a mutable stand-in for PostgreSQL's,
so each step of a schema change can be placed exactly; tests/e2e/test_mirror_evolution.py
runs the same on the real stack.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import pytest

from cdc.adapters.clickhouse import ClickHouseWarehouse
from cdc.consume.dead_letters import DeadLetters
from cdc.consume.loop import ConsumerService
from cdc.domain.changes import Column, TableRef, TableSchema
from cdc.mirror.sink import ClickHouseMirrorSink
from tests.envelopes import envelope
from tests.fakes import FakeBroker, FakeStream

PH = "__debezium_unavailable_value"
BASE = (
    Column("id", "int8", nullable=False),
    Column("qty", "int4"),
    Column("body", "text"),
    Column("tags", "text", is_array=True),
    Column("blob", "bytea"),
)


class Catalog:
    """The source catalog as a test changes it."""

    def __init__(self, schema: TableSchema) -> None:
        self.schema = schema

    def table_schema(self, ref: TableRef) -> TableSchema | None:
        return self.schema if ref == self.schema.ref else None

    def alter(self, *columns: Column) -> None:
        self.schema = replace(self.schema, columns=columns)


class Mirror:
    def __init__(self, warehouse: ClickHouseWarehouse, source: str) -> None:
        self.warehouse, self.source = warehouse, source
        self.ref = TableRef(source, "public", "items")
        self.catalog = Catalog(TableSchema(self.ref, BASE, ("id",)))
        self.broker = FakeBroker()
        self.lsn = 100
        self.start()

    def start(self) -> None:
        self.sink = ClickHouseMirrorSink(self.warehouse, self.catalog)
        self.sink.prepare([self.catalog.schema])
        stream = FakeStream(self.broker, "g", [self.ref.topic])
        self.service = ConsumerService(stream, self.sink, DeadLetters(self.warehouse), sleep=lambda s: None)

    def change(self, op: str, row: dict[str, Any]) -> None:
        self.lsn += 10
        before, after = (row, None) if op == "d" else (None, row)
        self.broker.produce(self.ref.topic, b"k", envelope(op, before, after, lsn=self.lsn, source=self.source))

    def run(self) -> None:
        while self.service.run_once():
            pass

    def rows(self, columns: str) -> list[tuple[Any, ...]]:
        return self.warehouse.query(f"SELECT id, {columns} FROM {self.source}.items ORDER BY id")

    def notices(self) -> set[tuple[str, str]]:
        return {(n.kind, n.column) for n in self.sink.schema_notices() if n.table == self.ref.topic}

    def dead(self) -> int:
        return int(
            self.warehouse.query(
                "SELECT count() FROM cdc.dead_letters WHERE topic = {t:String}", {"t": self.ref.topic}
            )[0][0]
        )


@pytest.fixture
def mirror(chdb_warehouse: ClickHouseWarehouse) -> Mirror:
    return Mirror(chdb_warehouse, f"s{uuid.uuid4().hex[:8]}")


def _row(i: int, **extra: Any) -> dict[str, Any]:
    return {"id": i, "qty": i, "body": f"b{i}", "tags": ["x"], "blob": "AAE=", **extra}


def test_added_column_appears_with_no_lost_row(mirror: Mirror) -> None:
    mirror.change("c", _row(1))
    mirror.run()
    mirror.catalog.alter(*BASE, Column("note", "text"))
    # one batch straddles the ALTER: older images lack the column, newer ones carry it
    mirror.change("c", _row(2))
    mirror.change("c", _row(3, note="n3"))
    mirror.change("u", _row(1, note="n1"))
    mirror.change("c", _row(4))  # a late change from before the ALTER (same transaction order is not needed)
    mirror.run()
    assert mirror.rows("qty, note") == [(1, 1, "n1"), (2, 2, None), (3, 3, "n3"), (4, 4, None)]
    changes = mirror.warehouse.query(f"SELECT id, note FROM {mirror.source}.items_changes ORDER BY _lsn")
    assert changes == [(1, None), (2, None), (3, "n3"), (1, "n1"), (4, None)]
    assert ("added", "note") in mirror.notices()
    assert mirror.dead() == 0


def test_added_while_stopped_appears_after_restart(mirror: Mirror) -> None:
    mirror.change("c", _row(1))
    mirror.run()
    mirror.catalog.alter(*BASE, Column("extra", "int8"))
    mirror.change("c", _row(2, extra=7))
    mirror.start()  # a new sink: the model comes from ClickHouse, the new column from the catalog
    mirror.run()
    assert mirror.rows("extra") == [(1, None), (2, 7)]
    assert ("added", "extra") in mirror.notices()


def test_dropped_and_renamed_columns_are_kept_and_reported(mirror: Mirror) -> None:
    mirror.change("c", _row(1))
    mirror.run()
    no_qty = tuple(c for c in BASE if c.name != "qty")
    mirror.catalog.alter(*no_qty)
    mirror.change("c", {k: v for k, v in _row(2).items() if k != "qty"})
    mirror.run()
    assert mirror.rows("qty, body") == [(1, 1, "b1"), (2, None, "b2")]
    assert ("dropped", "qty") in mirror.notices()
    renamed = tuple(replace(c, name="content") if c.name == "body" else c for c in no_qty)
    mirror.catalog.alter(*renamed)
    mirror.change("c", {"id": 3, "content": "c3", "tags": [], "blob": None})
    mirror.run()
    assert mirror.rows("body, content") == [(1, "b1", None), (2, "b2", None), (3, None, "c3")]
    assert ("renamed", "content") in mirror.notices()
    assert mirror.dead() == 0


def test_type_changes_never_write_wrong_values(mirror: Mirror) -> None:
    mirror.change("c", _row(1))
    mirror.run()
    # int4 -> int8: widened in place, a big value is not wrapped
    mirror.catalog.alter(*(replace(c, pg_type="int8") if c.name == "qty" else c for c in BASE))
    mirror.change("c", _row(2, qty=2**40))
    mirror.run()
    assert mirror.rows("qty") == [(1, 1), (2, 2**40)]
    # int8 -> text: the column becomes text; values are not turned into 0 or NULL
    mirror.catalog.alter(*(replace(c, pg_type="text") if c.name == "qty" else c for c in BASE))
    mirror.change("c", _row(3, qty="three"))
    mirror.run()
    assert mirror.rows("qty") == [(1, "1"), (2, str(2**40)), (3, "three")]
    assert {("type_widened", "qty"), ("type_changed", "qty")} <= mirror.notices()
    assert mirror.dead() == 0


def test_unchanged_toast_value_keeps_the_stored_value(mirror: Mirror) -> None:
    big = "v" * 10_000
    mirror.change("c", _row(1, body=big, tags=["t1", "t2"], blob="AAE="))
    mirror.change("c", _row(2, body="small"))
    mirror.run()
    # updates that leave the large values alone: placeholders in text, array and (base64) bytea columns
    mirror.change("u", _row(1, qty=5, body=PH, tags=[PH], blob="X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ=="))
    mirror.run()
    assert mirror.rows("qty, body = repeat('v', 10000), tags, hex(blob)") == [
        (1, 5, 1, ["t1", "t2"], "0001"),
        (2, 2, 0, ["x"], "0001"),
    ]
    # in one batch: a real new value, then a placeholder standing for it
    mirror.change("u", _row(1, qty=6, body="new body"))
    mirror.change("u", _row(1, qty=7, body=PH))
    mirror.change("u", _row(2, qty=8, body=PH))
    mirror.run()
    assert mirror.rows("qty, body") == [(1, 7, "new body"), (2, 8, "small")]
    mirror.run()  # nothing new; a redelivery of the same batch changes nothing either
    log = mirror.warehouse.query(f"SELECT countIf(body = '{PH}') FROM {mirror.source}.items_changes")
    assert log == [(3,)]  # the change log keeps what Debezium sent
