"""The domain-events consumer on the real path: change topics in Tansu -> ConsumerService (stage "events")
-> ``events.order`` in Kafka + ``events.domain_events`` in chDB; poison messages -> ``cdc.dead_letters`` in
both; ``cdc.consume.dlq`` lists and replays them through the same path.

Each test gets a fresh broker (Tansu keeps topics in memory) and empty event/dead-letter tables, so
offsets and counts are exact. Debezium is not involved: envelopes are built like the connector's.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from cdc.adapters.clickhouse import ClickHouseWarehouse
from cdc.adapters.kafka import KafkaChangeStream, KafkaPublisher, ensure_topics
from cdc.consume.dead_letters import DEAD_LETTER_TOPIC, DeadLetters
from cdc.consume.dlq import list_dead_letters, replay
from cdc.consume.loop import ConsumerService
from cdc.demo import events as shop_events
from cdc.domain.changes import Column, TableRef, TableSchema
from cdc.domain.events import (
    DomainEvent,
    EventRegistry,
    Payload,
    Upcaster,
    collecting,
    event,
    load_modules,
    translator,
    upcaster,
)
from cdc.domain.ids import uuid5
from cdc.embedded.broker import TansuBroker
from cdc.embedded.net import free_port
from cdc.events.sink import DomainEventSink, event_record
from cdc.events.store import ClickHouseEventStore
from cdc.ports import Message, OutRecord
from cdc.translate import Change
from tests.envelopes import envelope
from tests.fakes import StaticCatalog
from tests.polling import wait_until

SOURCE = "shop"
ORDERS = "shop.public.orders"
EVENTS = "events.order"
ORDER_SCHEMA = TableSchema(
    TableRef(SOURCE, "public", "orders"),
    (
        Column("id", "int8", nullable=False),
        Column("customer_id", "int8", nullable=False),
        Column("status", "order_status", nullable=False, is_enum=True),
        Column("total", "numeric", nullable=False, numeric_precision=12, numeric_scale=2),
        Column("delivery_address", "text", nullable=False),
        Column("notes", "jsonb"),
        Column("placed_at", "timestamptz", nullable=False),
        Column("updated_at", "timestamp", nullable=False),
        Column("delivered_at", "timestamptz"),
    ),
    ("id",),
    replica_identity="f",
)
PLACED_AT = "2025-11-24T16:00:00.000000Z"
DELIVERED_AT = "2025-11-24T16:40:00.000000Z"
T0 = 1_764_000_000_000  # commit time of the first change (ms)
LIFE = [("OrderPlaced", 2), ("OrderStatusChanged", 1), ("OrderStatusChanged", 1), ("OrderDelivered", 1)]


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[TansuBroker]:
    tansu = TansuBroker(free_port(), tmp_path / "tansu.log")
    tansu.start()
    ensure_topics(tansu.bootstrap_servers, [ORDERS, EVENTS, DEAD_LETTER_TOPIC])  # as the bridge does: 1 partition
    yield tansu
    tansu.stop()


@pytest.fixture
def wh(chdb_warehouse: ClickHouseWarehouse) -> ClickHouseWarehouse:
    """The module's chDB store with no events and no dead letters from earlier tests."""
    ClickHouseEventStore(chdb_warehouse)
    DeadLetters(chdb_warehouse)  # creates cdc.dead_letters and cdc.dead_letter_replays
    for table in ("events.domain_events", "cdc.dead_letters", "cdc.dead_letter_replays"):
        chdb_warehouse.command(f"TRUNCATE TABLE {table}")
    return chdb_warehouse


@pytest.fixture
def publisher(broker: TansuBroker) -> Iterator[KafkaPublisher]:
    pub = KafkaPublisher(broker.bootstrap_servers, "test-events")
    yield pub
    pub.close()


class Lanes:
    """Builds events consumers like the bridge's composition root does, and closes their streams."""

    def __init__(self, broker: TansuBroker, wh: ClickHouseWarehouse, publisher: KafkaPublisher) -> None:
        self.broker, self.wh, self.publisher = broker, wh, publisher
        self.streams: list[KafkaChangeStream] = []

    def start(self, registry: EventRegistry, group: str) -> tuple[ConsumerService, DomainEventSink]:
        stream = KafkaChangeStream(self.broker.bootstrap_servers, group, [ORDERS])
        self.streams.append(stream)
        sink = DomainEventSink(registry, StaticCatalog([ORDER_SCHEMA]), self.publisher, ClickHouseEventStore(self.wh))
        return ConsumerService(stream, sink, DeadLetters(self.wh, self.publisher), stage="events"), sink

    def close(self) -> None:
        """Stop every consumer (they leave their groups, so a successor joins without a rebalance wait)."""
        while self.streams:
            self.streams.pop().close()


@pytest.fixture
def lanes(broker: TansuBroker, wh: ClickHouseWarehouse, publisher: KafkaPublisher) -> Iterator[Lanes]:
    made = Lanes(broker, wh, publisher)
    yield made
    made.close()


# -- helpers -------------------------------------------------------------------------------------


def _order(order_id: int, status: str = "placed", **changes: Any) -> dict[str, Any]:
    """An orders row as Debezium's JSON converter writes it (numeric as text, jsonb as text)."""
    row = {
        "id": order_id,
        "customer_id": 7,
        "status": status,
        "total": "21.00",
        "delivery_address": "1 Via Roma",
        "notes": '{"channel": "web"}',
        "placed_at": PLACED_AT,
        "updated_at": 1_764_000_000_000_000,
        "delivered_at": None,
    }
    return {**row, **changes}


def _change(op: str, before: dict[str, Any] | None, after: dict[str, Any] | None, lsn: int, step: int = 0) -> bytes:
    return envelope(op, before, after, lsn=lsn, table="orders", source=SOURCE, txid=900 + lsn, ts_ms=T0 + step)


def _life(order_id: int, lsn: int) -> list[bytes]:
    """Insert, then baking, out_for_delivery and delivered: four transactions."""
    placed = _order(order_id)
    baking = _order(order_id, "baking")
    out = _order(order_id, "out_for_delivery")
    delivered = _order(order_id, "delivered", delivered_at=DELIVERED_AT)
    return [
        _change("c", None, placed, lsn, 0),
        _change("u", placed, baking, lsn + 10, 1000),
        _change("u", baking, out, lsn + 20, 2000),
        _change("u", out, delivered, lsn + 30, 3000),
    ]


def _key(order_id: int) -> bytes:
    return json.dumps({"id": order_id}).encode()


def _produce(publisher: KafkaPublisher, messages: Sequence[tuple[bytes | None, bytes]]) -> None:
    publisher.publish([OutRecord(ORDERS, key, value) for key, value in messages])


def _consume(service: ConsumerService, total: int) -> None:
    """run_once until the service has handled ``total`` change messages since it started."""

    def handled() -> bool:
        service.run_once()
        return service.stats.messages >= total

    wait_until(handled, timeout=60, what=f"{total} change messages consumed", interval=0)
    assert service.stats.messages == total


def _records(broker: TansuBroker, topic: str) -> list[ConsumerRecord]:
    """Every record of ``topic``, in offset order (read up to the high watermark)."""
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert tps, f"no partitions for {topic}"
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[ConsumerRecord] = []

        def caught_up() -> bool:
            for batch in consumer.poll(timeout_ms=200).values():
                out.extend(batch)
            marks = [consumer.highwater(tp) for tp in tps]
            return all(m is not None and consumer.position(tp) >= m for tp, m in zip(tps, marks, strict=True))

        wait_until(caught_up, timeout=30, what=f"reading {topic} to its end", interval=0)
        return sorted(out, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close(autocommit=False)


def _headers(record: ConsumerRecord) -> dict[str, bytes]:
    return dict(record.headers)


def _committed(broker: TansuBroker, group: str) -> int | None:
    """The group's committed offset on the change topic, as the broker holds it."""
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id=group, enable_auto_commit=False)
    try:
        offset: int | None = consumer.committed(TopicPartition(ORDERS, 0))
        return offset
    finally:
        consumer.close(autocommit=False)


def _rows(wh: ClickHouseWarehouse) -> tuple[int, int]:
    """(rows, distinct event ids) in events.domain_events, without FINAL: what is physically stored."""
    ((rows, ids),) = wh.query("SELECT count(), uniqExact(event_id) FROM events.domain_events")
    return int(rows), int(ids)


def _shop() -> EventRegistry:
    return load_modules(["cdc.demo.events"])


def _fixed_shop() -> EventRegistry:
    """The shop's translators after a fix is deployed: an order captured without customer_id gets customer 0."""
    registry = _shop()
    del registry.translators["public.orders"]
    with collecting(registry):

        @translator("public.orders")
        def orders(change: Change) -> Iterator[object]:
            after = None if change.after is None else {"customer_id": 0, **change.after}
            yield from shop_events.orders(dataclasses.replace(change, after=after))

    return registry


def _legacy_shop(upcast: Upcaster = shop_events.order_placed_v1_to_v2) -> EventRegistry:
    """OrderPlaced v1 and v2, with a translator that still emits v1 (one not yet updated for v2)."""
    registry = EventRegistry()
    with collecting(registry):
        event("OrderPlaced", version=1, aggregate="order", key="order_id")(shop_events.OrderPlacedV1)
        event("OrderPlaced", version=2, aggregate="order", key="order_id")(shop_events.OrderPlaced)
        upcaster("OrderPlaced", from_version=1)(upcast)

        @translator("public.orders")
        def orders(change: Change) -> Iterator[object]:
            row = change.row
            yield shop_events.OrderPlacedV1(row["id"], row["customer_id"], row["delivery_address"], row["placed_at"])

    return registry


def _stored_shapes(wh: ClickHouseWarehouse) -> list[tuple[Any, ...]]:
    return wh.query(
        "SELECT aggregate_id, version, JSONExtractKeys(payload), latest_version, payload_latest"
        " FROM events.domain_events FINAL ORDER BY aggregate_id"
    )


# -- tests ---------------------------------------------------------------------------------------


def test_an_order_life_becomes_versioned_events_in_kafka_and_the_store(
    lanes: Lanes, publisher: KafkaPublisher, broker: TansuBroker, wh: ClickHouseWarehouse
) -> None:
    _produce(publisher, [(_key(101), value) for value in _life(101, lsn=1000)])
    service, sink = lanes.start(_shop(), "events-life")
    _consume(service, 4)

    records = _records(broker, EVENTS)
    assert [r.key for r in records] == [b"101"] * 4  # keyed by aggregate id: one partition, source order
    heads = [_headers(r) for r in records]
    assert [(h["event_type"].decode(), int(h["event_version"])) for h in heads] == LIFE
    docs = [json.loads(r.value) for r in records]
    assert [h["event_id"].decode() for h in heads] == [d["event_id"] for d in docs]
    assert [h["correlation_id"].decode() for h in heads] == [d["correlation_id"] for d in docs]
    assert len({d["event_id"] for d in docs}) == 4
    assert len({d["correlation_id"] for d in docs}) == 4  # one transaction per change
    assert docs[0]["payload"] == {
        "order_id": 101,
        "customer_id": 7,
        "delivery_address": "1 Via Roma",
        "total": "21.00",
        "channel": "web",
        "placed_at": PLACED_AT,
    }
    assert [(d["payload"]["from_status"], d["payload"]["to_status"]) for d in docs[1:3]] == [
        ("placed", "baking"),
        ("baking", "out_for_delivery"),
    ]
    assert docs[3]["payload"] == {"order_id": 101, "total": "21.00", "delivered_at": DELIVERED_AT}
    assert [(d["source"]["lsn"], d["source"]["op"]) for d in docs] == [
        (1000, "c"),
        (1010, "u"),
        (1020, "u"),
        (1030, "u"),
    ]

    history = ClickHouseEventStore(wh).history("order", "101")
    assert [(e.event_type, e.version) for e in history] == LIFE
    assert [e.event_id for e in history] == [d["event_id"] for d in docs]
    assert [e.correlation_id for e in history] == [d["correlation_id"] for d in docs]
    assert [dict(e.payload) for e in history] == [d["payload"] for d in docs]
    assert [e.occurred_at_ms for e in history] == [T0, T0 + 1000, T0 + 2000, T0 + 3000]
    assert _rows(wh) == (4, 4)
    assert (sink.counts.translated, sink.counts.stored, service.stats.dead_letters) == (4, 4, 0)
    assert _committed(broker, "events-life") == 4


def test_redelivered_changes_store_nothing_twice_and_keep_their_event_ids(
    lanes: Lanes, publisher: KafkaPublisher, broker: TansuBroker, wh: ClickHouseWarehouse
) -> None:
    life = [(_key(201), value) for value in _life(201, lsn=2000)]
    _produce(publisher, life)
    registry = _shop()  # one per process: see test_a_registry_loaded_later_leaves_the_first_one_working
    first, first_sink = lanes.start(registry, "events-a")
    _consume(first, 4)
    ids = [e.event_id for e in ClickHouseEventStore(wh).history("order", "201")]
    assert len(ids) == 4 and _rows(wh) == (4, 4)

    # a second consumer group reads the very same messages: a full redelivery
    second, second_sink = lanes.start(registry, "events-b")
    _consume(second, 4)
    assert (second_sink.counts.translated, second_sink.counts.stored) == (4, 0)
    # the same changes produced again (e.g. Debezium resending after a crash), read by the first group
    _produce(publisher, life)
    _consume(first, 8)
    assert (first_sink.counts.translated, first_sink.counts.stored) == (8, 4)

    assert _rows(wh) == (4, 4)  # no duplicate rows even before any merge
    assert ClickHouseEventStore(wh).count() == 4
    assert [e.event_id for e in ClickHouseEventStore(wh).history("order", "201")] == ids
    # Kafka carries each delivery (at-least-once); the event_id header lets consumers drop repeats
    published = [_headers(r)["event_id"].decode() for r in _records(broker, EVENTS)]
    assert published == ids * 3
    assert (_committed(broker, "events-a"), _committed(broker, "events-b")) == (8, 4)


def test_poison_messages_are_dead_lettered_in_both_places_and_the_stream_goes_on(
    lanes: Lanes, publisher: KafkaPublisher, broker: TansuBroker, wh: ClickHouseWarehouse
) -> None:
    placed = _order(301)
    not_json = (b"\x00\xfe", b"\xff\xfe not json {")  # not UTF-8 either: the raw bytes must survive
    no_customer = {k: v for k, v in _order(302).items() if k != "customer_id"}
    untranslatable = (_key(302), _change("c", None, no_customer, lsn=3020))
    _produce(
        publisher,
        [
            (_key(301), _change("c", None, placed, lsn=3010)),
            not_json,
            untranslatable,
            (_key(301), _change("u", placed, _order(301, "baking"), lsn=3030, step=1000)),
        ],
    )
    service, sink = lanes.start(_shop(), "events-poison")
    _consume(service, 4)

    store = ClickHouseEventStore(wh)
    assert [e.event_type for e in store.history("order", "301")] == ["OrderPlaced", "OrderStatusChanged"]
    assert store.history("order", "302") == []
    assert service.stats.dead_letters == 2
    assert _committed(broker, "events-poison") == 4  # past the poison: the stream is not stuck

    dead = wh.query(
        "SELECT offset, stage, error, stack, hex(key), hex(value) FROM cdc.dead_letters"
        " WHERE topic = {t:String} ORDER BY offset",
        {"t": ORDERS},
    )
    assert [(d[0], d[1]) for d in dead] == [(1, "events"), (2, "events")]
    assert dead[0][2].startswith("EnvelopeError: not JSON")
    assert dead[1][2] == ("TranslationError: translator for public.orders failed at lsn 3020: KeyError: 'customer_id'")
    assert dead[0][3] != ""
    assert "orders (events.py:" in dead[1][3]  # the innermost frame: the shop's translator
    assert [(d[4], d[5]) for d in dead] == [(k.hex().upper(), v.hex().upper()) for k, v in (not_json, untranslatable)]

    letters = _records(broker, DEAD_LETTER_TOPIC)
    assert len(letters) == 2
    docs = [json.loads(r.value) for r in letters]
    for record, doc, (key, value), row in zip(letters, docs, (not_json, untranslatable), dead, strict=True):
        assert record.key == key
        assert base64.b64decode(doc["key_b64"]) == key
        assert base64.b64decode(doc["value_b64"]) == value
        assert (doc["topic"], doc["partition"], doc["offset"], doc["stage"]) == (ORDERS, 0, row[0], "events")
        assert (doc["error"], doc["stack"]) == (row[2], row[3])
        headers = _headers(record)
        assert headers["cdc_stage"] == b"events"
        assert headers["cdc_origin"] == f"{ORDERS}[0]@{row[0]}".encode()
        assert headers["cdc_error"] == row[2].encode()
    assert (sink.counts.translated, sink.counts.stored) == (2, 2)


def test_dead_letters_are_listed_replayed_once_fixed_and_replaying_again_adds_nothing(
    lanes: Lanes, publisher: KafkaPublisher, broker: TansuBroker, wh: ClickHouseWarehouse
) -> None:
    not_json = (b"order-0", b"not json {")
    no_customer = {k: v for k, v in _order(402).items() if k != "customer_id"}
    untranslatable = (_key(402), _change("c", None, no_customer, lsn=4020))
    _produce(publisher, [not_json, untranslatable, (_key(401), _change("c", None, _order(401), lsn=4010))])
    service, _ = lanes.start(_shop(), "events-dlq")
    _consume(service, 3)

    pending = list_dead_letters(wh)
    assert [(d.origin, d.stages, d.key, d.value, d.replayed_at) for d in pending] == [
        (f"{ORDERS}[0]@0", ("events",), *not_json, None),
        (f"{ORDERS}[0]@1", ("events",), *untranslatable, None),
    ]
    assert "KeyError: 'customer_id'" in pending[1].error

    assert replay(wh, publisher, pending) == 2
    republished = _records(broker, ORDERS)[3:]
    assert [(r.offset, r.key, r.value) for r in republished] == [(3, *not_json), (4, *untranslatable)]
    assert [_headers(r)["cdc_replay_of"] for r in republished] == [f"{ORDERS}[0]@0".encode(), f"{ORDERS}[0]@1".encode()]
    assert wh.query("SELECT offset, stage, outcome FROM cdc.dead_letter_replays FINAL ORDER BY offset") == [
        (0, "events", "republished"),
        (1, "events", "republished"),
    ]
    assert list_dead_letters(wh) == []
    replayed = list_dead_letters(wh, include_replayed=True)
    assert [d.origin for d in replayed] == [d.origin for d in pending]
    assert all(d.replayed_at is not None for d in replayed)

    # the fix is deployed: the consumer restarts and its group goes on with translators that no longer raise
    lanes.close()
    fixed, fixed_sink = lanes.start(_fixed_shop(), "events-dlq")
    _consume(fixed, 2)
    history = ClickHouseEventStore(wh).history("order", "402")
    assert [(e.event_type, e.version, e.lsn, e.payload["customer_id"]) for e in history] == [
        ("OrderPlaced", 2, 4020, 0)
    ]
    again = list_dead_letters(wh)  # still not JSON: a new dead letter at its new offset
    assert [(d.origin, d.value) for d in again] == [(f"{ORDERS}[0]@3", not_json[1])]

    fixed_one = [d for d in list_dead_letters(wh, include_replayed=True) if d.offset == 1]
    assert replay(wh, publisher, fixed_one) == 1
    _consume(fixed, 3)
    assert [e.event_id for e in ClickHouseEventStore(wh).history("order", "402")] == [history[0].event_id]
    assert (fixed_sink.counts.translated, fixed_sink.counts.stored) == (2, 1)
    assert _rows(wh) == (2, 2)  # 401's OrderPlaced and 402's, once each
    assert _committed(broker, "events-dlq") == 6


def test_a_dead_letter_that_is_not_utf8_is_replayed_byte_for_byte(
    lanes: Lanes, publisher: KafkaPublisher, broker: TansuBroker, wh: ClickHouseWarehouse
) -> None:
    raw = (b"\x00\xfe", b"\xff\xfe not json {")
    _produce(publisher, [raw])
    service, _ = lanes.start(_shop(), "events-binary")
    _consume(service, 1)
    letters = list_dead_letters(wh)
    assert len(letters) == 1
    replay(wh, publisher, letters)
    copy = _records(broker, ORDERS)[1]
    assert (copy.key, copy.value) == raw


def test_a_registry_loaded_later_leaves_the_first_one_working(
    wh: ClickHouseWarehouse, publisher: KafkaPublisher
) -> None:
    """load_modules promises registries side by side: two event lanes in one process must both translate."""
    first = DomainEventSink(_shop(), StaticCatalog([ORDER_SCHEMA]), publisher, ClickHouseEventStore(wh))
    second = DomainEventSink(_shop(), StaticCatalog([ORDER_SCHEMA]), publisher, ClickHouseEventStore(wh))
    message = Message(ORDERS, 0, 0, _key(501), _change("c", None, _order(501), lsn=5010))
    produced = [sink.translate_all([message]) for sink in (first, second)]
    assert [([e.event_type for e in events], rejected) for events, _, rejected, _ in produced] == [
        (["OrderPlaced"], []),
        (["OrderPlaced"], []),
    ]


def test_an_event_translated_in_an_old_version_is_stored_also_in_its_latest_shape(
    lanes: Lanes, publisher: KafkaPublisher, wh: ClickHouseWarehouse
) -> None:
    _produce(publisher, [(_key(601), _change("c", None, _order(601), lsn=6010))])
    service, sink = lanes.start(_legacy_shop(), "events-legacy")
    _consume(service, 1)

    ((aggregate_id, version, keys, latest_version, latest),) = _stored_shapes(wh)
    assert (aggregate_id, version, sorted(keys), latest_version) == (
        "601",
        1,
        ["address", "customer_id", "order_id", "placed_at"],  # the payload as translated, v1
        2,
    )
    assert json.loads(latest) == {
        "order_id": 601,
        "customer_id": 7,
        "delivery_address": "1 Via Roma",
        "total": None,
        "channel": None,
        "placed_at": PLACED_AT,
    }
    assert (sink.counts.stored, service.stats.dead_letters) == (1, 0)


def test_an_upcaster_failing_on_an_event_sends_its_message_to_the_dead_letters(
    lanes: Lanes, publisher: KafkaPublisher, wh: ClickHouseWarehouse
) -> None:
    def picky(payload: Payload) -> Payload:
        if payload["order_id"] == 702:
            raise KeyError("no such street")
        return shop_events.order_placed_v1_to_v2(payload)

    orders = [(_key(o), _change("c", None, _order(o), lsn=o * 10)) for o in (701, 702, 703)]
    _produce(publisher, orders)
    service, sink = lanes.start(_legacy_shop(picky), "events-picky")
    _consume(service, 3)

    assert [(r[0], r[1], r[3]) for r in _stored_shapes(wh)] == [("701", 1, 2), ("703", 1, 2)]
    ((offset, error),) = wh.query("SELECT offset, error FROM cdc.dead_letters")
    assert offset == 1 and "upcasting OrderPlaced v1 at lsn 7020 failed: KeyError" in error
    assert (sink.counts.stored, service.stats.dead_letters) == (2, 1)


def test_odd_values_survive_the_stores_json_insert_and_the_kafka_record(
    publisher: KafkaPublisher, broker: TansuBroker, wh: ClickHouseWarehouse
) -> None:
    """The store writes JSONCompactEachRow and the record's JSON comes from orjson: text that needs
    escaping, non-ASCII, a lone surrogate, an integer beyond 64 bits, a null txid, the largest LSN and
    a commit time with milliseconds all come back as they went in."""
    odd = {
        "quote": 'say "hi"\\ \n\t\x00',
        "accents": "crème brûlée ☃ 𝄞",
        "surrogate": "\ud800",  # only the standard library's fallback can write it
        "big": 2**70,
        "nested": {"b": [1, None, True], "a": -0.5},
    }
    at_ms = 1_764_000_000_123
    event = DomainEvent(
        event_id=uuid5("odd values"),
        event_type="OddHappened",
        version=1,
        aggregate_type="odd",
        aggregate_id="ünïcode id 'quoted'",
        occurred_at_ms=at_ms,
        source=SOURCE,
        table="public.odd",
        op="c",
        lsn=2**64 - 1,
        txid=None,
        sequence=0,
        correlation_id=uuid5("odd tx"),
        payload=odd,
    )
    store = ClickHouseEventStore(wh)
    assert store.append([event]) == 1
    (stored,) = store.history(event.aggregate_type, event.aggregate_id)
    assert stored == dataclasses.replace(event, payload=json.loads(json.dumps(odd)))

    ensure_topics(broker.bootstrap_servers, [event.topic])
    publisher.publish([event_record(event)])
    (record,) = _records(broker, event.topic)
    doc = json.loads(record.value)
    assert doc["payload"] == json.loads(json.dumps(odd)) and doc["aggregate_id"] == event.aggregate_id
    assert doc["occurred_at"] == "2025-11-24T16:00:00.123000+00:00" and doc["source"]["txid"] is None


def test_a_topic_of_several_partitions_still_gets_records_by_key(
    publisher: KafkaPublisher, broker: TansuBroker
) -> None:
    """The publisher skips hashing only for one-partition topics; with three, keys spread by the partitioner."""
    topic = "events.spread"
    ensure_topics(broker.bootstrap_servers, [topic], partitions=3)
    publisher.publish([OutRecord(topic, f"key-{i}".encode(), b"{}") for i in range(30)])
    records = _records(broker, topic)
    assert len(records) == 30
    assert len({r.partition for r in records}) > 1
    first = {r.key: r.partition for r in records}
    publisher.publish([OutRecord(topic, f"key-{i}".encode(), b"{}") for i in range(30)])
    assert all(first[r.key] == r.partition for r in _records(broker, topic))  # the same key, the same partition
