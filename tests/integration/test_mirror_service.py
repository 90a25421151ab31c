"""The consume loop against real ClickHouse (chDB); the broker side is the contract-tested fake."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from cdc.adapters.clickhouse import ClickHouseWarehouse
from cdc.consume.backoff import Backoff
from cdc.consume.dead_letters import DeadLetters
from cdc.consume.loop import ConsumerService
from cdc.domain.changes import Column, TableRef, TableSchema
from cdc.errors import BrokerError, WarehouseError
from cdc.mirror.sink import ClickHouseMirrorSink
from cdc.ports import Message
from tests.envelopes import envelope
from tests.fakes import FakeBroker, FakeStream, StaticCatalog

COLUMNS = (
    Column("id", "int8", nullable=False),
    Column("name", "text"),
    Column("price", "numeric", numeric_precision=10, numeric_scale=2),
    Column("born", "date"),
    Column("seen", "timestamptz"),
    Column("tags", "text", is_array=True),
)


@pytest.fixture
def source() -> str:
    return f"s{uuid.uuid4().hex[:8]}"


def _service(warehouse: Any, broker: FakeBroker, source: str, group: str = "g") -> ConsumerService:
    schema = TableSchema(TableRef(source, "public", "items"), COLUMNS, ("id",))
    sink = ClickHouseMirrorSink(warehouse, StaticCatalog([schema]))
    sink.prepare([schema])
    stream = FakeStream(broker, group, [schema.ref.topic])
    return ConsumerService(stream, sink, DeadLetters(warehouse), sleep=lambda s: None)


def _row(i: int, name: str = "a", price: str = "1.50") -> dict[str, Any]:
    return {
        "id": i,
        "name": name,
        "price": price,
        "born": 19000,
        "seen": "2025-01-02T03:04:05.123456Z",
        "tags": ["x", None],
    }


def _produce(broker: FakeBroker, source: str, docs: Sequence[bytes]) -> None:
    for doc in docs:
        broker.produce(f"{source}.public.items", b"k", doc)


def _history(source: str) -> list[bytes]:
    return [
        envelope("r", None, _row(1), lsn=100, source=source, snapshot="true"),
        envelope("r", None, _row(2), lsn=100, source=source, snapshot="last"),
        envelope("c", None, _row(3), lsn=110, source=source),
        envelope("u", _row(1), _row(1, name="b", price="2.25"), lsn=120, source=source),
        envelope(
            "d",
            {"id": 2, "name": None, "price": None, "born": None, "seen": None, "tags": None},
            None,
            lsn=130,
            source=source,
        ),
        # primary-key change: Debezium emits a delete of the old key and a create of the new one
        envelope("d", {"id": 3}, None, lsn=140, source=source),
        envelope("c", None, _row(30), lsn=140, source=source),
    ]


def _current(warehouse: ClickHouseWarehouse, source: str) -> list[tuple[Any, ...]]:
    return warehouse.query(f"SELECT id, name, toString(price), born, tags FROM {source}.items ORDER BY id")


def test_history_lands_as_current_rows_and_change_log(chdb_warehouse: ClickHouseWarehouse, source: str) -> None:
    broker = FakeBroker()
    _produce(broker, source, _history(source))
    service = _service(chdb_warehouse, broker, source)
    assert service.run_once() == 7
    rows = _current(chdb_warehouse, source)
    assert [(r[0], r[1], r[2]) for r in rows] == [(1, "b", "2.25"), (30, "a", "1.5")]
    assert rows[0][4] == ["x", None]
    log = chdb_warehouse.query(f"SELECT _op, _lsn, id FROM {source}.items_changes ORDER BY _lsn, _op, id")
    assert log == [
        ("r", 100, 1),
        ("r", 100, 2),
        ("c", 110, 3),
        ("u", 120, 1),
        ("d", 130, 2),
        ("c", 140, 30),
        ("d", 140, 3),
    ]
    assert broker.committed["g"] == {(f"{source}.public.items", 0): 7}


def test_redelivered_batch_changes_nothing(chdb_warehouse: ClickHouseWarehouse, source: str) -> None:
    broker = FakeBroker()
    _produce(broker, source, _history(source))
    first = _service(chdb_warehouse, broker, source, group="a")
    first.run_once()
    before = (_current(chdb_warehouse, source), chdb_warehouse.query(f"SELECT count() FROM {source}.items_changes"))
    # a second consumer group reads the very same messages again: a full redelivery
    _service(chdb_warehouse, broker, source, group="b").run_once()
    after = (_current(chdb_warehouse, source), chdb_warehouse.query(f"SELECT count() FROM {source}.items_changes"))
    assert after == before
    assert before[1] == [(7,)]


def test_older_version_arriving_late_does_not_win(chdb_warehouse: ClickHouseWarehouse, source: str) -> None:
    broker = FakeBroker()
    _produce(
        broker,
        source,
        [
            envelope("u", None, _row(5, name="new"), lsn=500, source=source),
            envelope("u", None, _row(5, name="old"), lsn=400, source=source),
        ],
    )
    _service(chdb_warehouse, broker, source).run_once()
    assert [r[1] for r in _current(chdb_warehouse, source)] == ["new"]


def test_poison_messages_go_to_dead_letters_and_the_stream_goes_on(
    chdb_warehouse: ClickHouseWarehouse, source: str
) -> None:
    broker = FakeBroker()
    _produce(
        broker,
        source,
        [
            b"\xffnot json",
            envelope("c", None, _row(7), lsn=10, source=source),
            b'{"op": "c", "after": {"id": 8}, "source": {}}',
            envelope("x", None, _row(8), lsn=11, source=source),
            envelope("c", None, _row(9), lsn=12, source=source),
        ],
    )
    service = _service(chdb_warehouse, broker, source)
    service.run_once()
    assert [r[0] for r in _current(chdb_warehouse, source)] == [7, 9]
    dead = chdb_warehouse.query(
        "SELECT offset, stage, error, hex(value) FROM cdc.dead_letters WHERE topic = {t:String} ORDER BY offset",
        {"t": f"{source}.public.items"},
    )
    assert [(d[0], d[1]) for d in dead] == [(0, "parse"), (2, "parse"), (3, "parse")]
    assert [d[2] for d in dead] == ["not a JSON document", "source.lsn missing or not an integer", 'unknown op "x"']
    assert dead[0][3] == b"\xffnot json".hex().upper()  # the original bytes, kept
    assert broker.committed["g"] == {(f"{source}.public.items", 0): 5}


def test_values_clickhouse_cannot_hold_are_bounded_not_wrapped(
    chdb_warehouse: ClickHouseWarehouse, source: str
) -> None:
    broker = FakeBroker()
    odd = {"id": 1, "name": None, "price": "NaN", "born": 10**7, "seen": "infinity", "tags": []}
    low = {"id": 2, "name": "ünï", "price": "-Infinity", "born": -(10**7), "seen": "-infinity", "tags": None}
    empty = {"id": 3, "name": None, "price": None, "born": None, "seen": None, "tags": [None]}
    _produce(
        broker,
        source,
        [
            envelope("c", None, odd, lsn=1, source=source),
            envelope("c", None, low, lsn=2, source=source),
            envelope("c", None, empty, lsn=3, source=source),
        ],
    )
    _service(chdb_warehouse, broker, source).run_once()
    rows = chdb_warehouse.query(
        f"SELECT id, name, price, toString(born), toString(seen), tags, _special FROM {source}.items ORDER BY id"
    )
    # chDB 26 holds years 1-9999: beyond, the nearest bound, and `_special` says what the source held
    assert rows == [
        (1, None, None, "9999-12-31", "9999-12-31 23:59:59.999999", [], {"price": "NaN", "born": "10000000 days",
                                                                        "seen": "infinity"}),
        (2, "ünï", None, "0001-01-01", "0001-01-01 00:00:00.000000", [], {"price": "-Infinity",
                                                                         "born": "-10000000 days", "seen": "-infinity",
                                                                         "tags": "NULL"}),
        (3, None, None, None, None, [None], {}),
    ]  # fmt: skip


def test_message_for_an_unknown_table_is_dead_lettered_with_its_bytes(
    chdb_warehouse: ClickHouseWarehouse, source: str
) -> None:
    broker = FakeBroker()
    stray = f"{source}.public.not_in_catalog"
    broker.produce(stray, b"k", b"\xfe raw bytes")
    _produce(broker, source, [envelope("c", None, _row(4), lsn=5, source=source)])
    schema = TableSchema(TableRef(source, "public", "items"), COLUMNS, ("id",))
    sink = ClickHouseMirrorSink(chdb_warehouse, StaticCatalog([schema]))
    stream = FakeStream(broker, "g", [stray, schema.ref.topic])
    service = ConsumerService(stream, sink, DeadLetters(chdb_warehouse), sleep=lambda s: None)
    service.run_once()
    assert [r[0] for r in _current(chdb_warehouse, source)] == [4]
    dead = chdb_warehouse.query(
        "SELECT stage, error, hex(value) FROM cdc.dead_letters WHERE topic = {t:String}", {"t": stray}
    )
    assert len(dead) == 1 and dead[0][0] == "apply"
    assert "UnknownTableError" in dead[0][1] and "not_in_catalog" in dead[0][1]
    assert dead[0][2] == b"\xfe raw bytes".hex().upper()  # the original bytes, not a decoded copy
    assert broker.committed["g"][(stray, 0)] == 1  # routed, so the stream moves on


class FlakyWarehouse:
    """The real warehouse behind a switch that makes inserts fail like an outage."""

    def __init__(self, inner: ClickHouseWarehouse, failures: int) -> None:
        self.inner, self.failures = inner, failures

    def command(self, sql: str) -> None:
        self.inner.command(sql)

    def insert(
        self, database: str, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], settings: Any = None
    ) -> None:
        if self.failures > 0 and database != "cdc":
            self.failures -= 1
            raise WarehouseError("ClickHouse unreachable (injected)")
        self.inner.insert(database, table, columns, rows, settings)

    def query(self, sql: str, parameters: Any = None) -> list[tuple[Any, ...]]:
        return self.inner.query(sql, parameters)


def test_outage_is_retried_and_offsets_wait_for_the_sink(chdb_warehouse: ClickHouseWarehouse, source: str) -> None:
    broker = FakeBroker()
    _produce(broker, source, [envelope("c", None, _row(1), lsn=10, source=source)])
    flaky = FlakyWarehouse(chdb_warehouse, failures=3)
    service = _service(flaky, broker, source)
    stream = service._stream
    assert isinstance(stream, FakeStream)
    service.run_once()
    assert service.stats.retries == 3
    assert stream.commits == [{(f"{source}.public.items", 0): 1}]  # one commit, after the rows landed
    assert [r[0] for r in _current(chdb_warehouse, source)] == [1]


class UnreachableBroker(FakeStream):
    """The first ``failures`` polls fail as a lost broker does."""

    def __init__(self, broker: FakeBroker, group: str, topics: Sequence[str], failures: int) -> None:
        super().__init__(broker, group, topics)
        self.failures = failures

    def poll(self, timeout_s: float, max_records: int) -> list[Message]:
        if self.failures:
            self.failures -= 1
            raise BrokerError("Kafka unreachable (injected)")
        return super().poll(timeout_s, max_records)


class RecordedStop:
    """A stop event that is never set and remembers how long each wait was."""

    def __init__(self) -> None:
        self.waits: list[float | None] = []

    def is_set(self) -> bool:
        return False

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return False


def test_consumer_outages_back_off_exponentially_then_reset(chdb_warehouse: ClickHouseWarehouse, source: str) -> None:
    broker = FakeBroker()
    _produce(broker, source, [envelope("c", None, _row(1), lsn=10, source=source)])
    service = _service(chdb_warehouse, broker, source)
    schema_topic = f"{source}.public.items"
    service._stream = UnreachableBroker(broker, "g", [schema_topic], failures=8)
    backoff, stop = Backoff(), RecordedStop()
    errors = [service.run_once_or_back_off(backoff, stop, "test consumer") for _ in range(9)]
    assert errors[:8] == ["Kafka unreachable (injected)"] * 8
    assert errors[8] is None  # the broker is back: the batch is applied
    assert stop.waits == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert [r[0] for r in _current(chdb_warehouse, source)] == [1]
    assert backoff.next_delay() == 0.5  # a success starts the next outage from the first delay
