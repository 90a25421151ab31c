"""Domain events end to end: the shop's tables through `cdc run --translators cdc.demo.events`.

A demo order's life in PostgreSQL must appear as the right events, in source order, in Kafka
(`events.order`) and in ClickHouse (`events.domain_events`); redelivered changes store nothing
twice; a poison message is dead-lettered (Kafka and ClickHouse) while the stream goes on.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from cdc.adapters.postgres import PostgresSession, PostgresSource
from cdc.demo import shop
from cdc.events.store import COLUMNS
from tests.e2e.conftest import BridgeProcess, sql, start_bridge
from tests.polling import wait_until

LIFE = ["OrderPlaced", "OrderStatusChanged", "OrderStatusChanged", "OrderDelivered"]


def _cdc(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdc.cli", *args, "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _place_order(dsn: str) -> int:
    """Like the shop's app: the order and its lines in one transaction."""
    with psycopg.connect(dsn) as conn:
        order_id = conn.execute(
            "INSERT INTO orders (customer_id, delivery_address, total, notes) SELECT id, address, 21.00,"
            ' \'{"channel": "web"}\' FROM customers ORDER BY id LIMIT 1 RETURNING id'
        ).fetchone()
        assert order_id is not None
        conn.execute("INSERT INTO order_items VALUES (%s, 1, 1, 2, 10.50)", (order_id[0],))
    return int(order_id[0])


def _deliver(dsn: str, order_id: int) -> None:
    for status in ("baking", "out_for_delivery", "delivered"):
        delivered = ", delivered_at = now()" if status == "delivered" else ""
        sql(
            dsn,
            f"UPDATE orders SET status = %s, updated_at = now() AT TIME ZONE 'utc'{delivered} WHERE id = %s",
            (status, order_id),
        )


def _stored(ch: Any, order_id: int) -> list[tuple[Any, ...]]:
    return [
        tuple(r)
        for r in ch.query(
            "SELECT event_type, version, toString(event_id), toString(correlation_id) FROM events.domain_events"
            " WHERE aggregate_type = 'order' AND aggregate_id = {id:String} ORDER BY lsn, sequence",
            parameters={"id": str(order_id)},
        ).result_rows
    ]


def _kafka_records(bootstrap: str, topic: str, key: bytes) -> list[tuple[dict[str, Any], dict[str, bytes]]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=3000)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    out = [(json.loads(r.value), dict(r.headers)) for r in consumer if r.key == key]
    consumer.close()
    return out


def _shop(dsn: str) -> None:
    source = PostgresSource(dsn)
    shop.install_schema(source)
    with PostgresSession(source) as session:
        shop.seed(session, customers=5)


def test_an_order_life_becomes_ordered_events_in_kafka_and_clickhouse(
    database: str, state_dir: Path, bridges: list[BridgeProcess]
) -> None:
    _shop(database)
    bridge = start_bridge(bridges, state_dir, "--source", database, "--translators", "cdc.demo.events")
    ch = bridge.clickhouse()
    bootstrap = bridge.wait_for_line(r"Kafka bootstrap:\s+(\S+)").group(1)
    order_id = _place_order(database)
    _deliver(database, order_id)
    wait_until(lambda: [r[0] for r in _stored(ch, order_id)] == LIFE, 120, "the order's four events stored")
    stored = _stored(ch, order_id)
    assert [r[1] for r in stored] == [2, 1, 1, 1]
    assert len({r[3] for r in stored}) == 4  # one transaction each: four correlation ids

    in_kafka = _kafka_records(bootstrap, "events.order", str(order_id).encode())
    assert [doc["event_type"] for doc, _ in in_kafka] == LIFE
    assert [h["event_id"].decode() for _, h in in_kafka] == [r[2] for r in stored]
    assert [h["event_type"].decode() for _, h in in_kafka] == LIFE
    assert [h["event_version"] for _, h in in_kafka] == [b"2", b"1", b"1", b"1"]

    replay = _cdc(state_dir, "events", "replay", "order", str(order_id), "--format", "json")
    assert replay.returncode == 0, replay.stderr
    doc = json.loads(replay.stdout)
    assert [e["event_type"] for e in doc["history"]] == LIFE
    assert doc["state"]["status"] == "delivered" and doc["state"]["total"] == "21.00"
    assert doc["state"]["channel"] == "web"
    second_at = doc["history"][1]["occurred_at"]  # --as-of: the state as it was after the second event
    as_of = json.loads(
        _cdc(state_dir, "events", "replay", "order", str(order_id), "--as-of", second_at, "--format", "json").stdout
    )
    assert [e["event_type"] for e in as_of["history"]] == LIFE[:2] and as_of["state"]["status"] == "baking"

    # redelivery: the order's changes produced again to the change topic store nothing twice
    db = database.rsplit("/", 1)[1]
    changes = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=3000)
    tp = TopicPartition(f"{db}.public.orders", 0)
    changes.assign([tp])
    changes.seek_to_beginning(tp)
    again = [
        r
        for r in changes
        if r.value and json.loads(r.value)["after"] and json.loads(r.value)["after"]["id"] == order_id
    ]
    changes.close()
    assert len(again) == 4
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for r in again:
        producer.send(tp.topic, key=r.key, value=r.value)
    producer.flush()
    sentinel = _place_order(database)  # later in the same topic: once it is stored, the repeats were handled
    wait_until(lambda: len(_stored(ch, sentinel)) == 1, 120, "the sentinel order's event")
    assert _stored(ch, order_id) == stored
    raw = ch.query(
        "SELECT count() FROM events.domain_events WHERE aggregate_id = {id:String} AND aggregate_type = 'order'",
        parameters={"id": str(order_id)},
    ).result_rows
    assert raw == [(4,)]  # not just deduplicated by FINAL: stored once

    # a poison message between good ones: dead-lettered to Kafka and ClickHouse, the stream goes on
    producer.send(tp.topic, key=b'{"id":999}', value=b"\xffnot json at all")
    producer.flush()
    producer.close()
    after_poison = _place_order(database)
    wait_until(lambda: len(_stored(ch, after_poison)) == 1, 120, "events after the poison message")
    wait_until(
        lambda: ch.query("SELECT count() FROM cdc.dead_letters WHERE stage = 'events'").result_rows == [(1,)],
        60,
        "the events consumer's dead letter",
    )
    error, stack, value = ch.query(
        "SELECT error, stack, value FROM cdc.dead_letters WHERE stage = 'events'", column_formats={"value": "bytes"}
    ).result_rows[0]
    assert error.startswith("EnvelopeError: not JSON") and "envelope.py" in stack
    assert value == b"\xffnot json at all"
    letters = _kafka_records(bootstrap, "cdc.dead_letters", b'{"id":999}')
    assert len(letters) == 1 and letters[0][1]["cdc_stage"] == b"events"
    assert base64.b64decode(letters[0][0]["value_b64"]) == b"\xffnot json at all"
    assert letters[0][0]["topic"] == tp.topic and letters[0][0]["error"] == error

    listed = _cdc(state_dir, "dlq", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    pending = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(p["topic"], sorted(p["stages"])) for p in pending] == [(tp.topic, ["events", "parse"])]
    replayed = _cdc(state_dir, "dlq", "replay")
    assert replayed.returncode == 0 and "1 dead letter(s)" in replayed.stdout, replayed.stdout + replayed.stderr
    # still poison: it fails again at its new offset and is listed again; the old one is marked replayed
    wait_until(
        lambda: len(_cdc(state_dir, "dlq", "list", "--all", "--format", "json").stdout.splitlines()) == 2,
        120,
        "the replayed poison message dead-lettered again",
    )
    now_pending = _cdc(state_dir, "dlq", "list", "--format", "json").stdout.splitlines()
    again_pending = [json.loads(line) for line in now_pending]
    assert len(again_pending) == 1 and again_pending[0]["offset"] != pending[0]["offset"]
    assert bridge.stop() == 0


def test_replay_upcasts_a_stored_version_1_event(database: str, state_dir: Path, bridges: list[BridgeProcess]) -> None:
    """Events written by an older translator keep their stored shape; readers see the latest version."""
    _shop(database)
    bridge = start_bridge(bridges, state_dir, "--source", database, "--translators", "cdc.demo.events")
    ch = bridge.clickhouse()
    wait_until(
        lambda: (
            ch.query("SELECT count() FROM events.domain_events WHERE event_type = 'OrderPlaced'").result_rows == [(5,)]
        ),
        120,
        "the seeded orders' events",
    )
    legacy = {"order_id": 900001, "customer_id": 1, "address": "1 Old Road", "placed_at": "2020-01-01T12:00:00Z"}
    placed = dt.datetime(2020, 1, 1, 12, tzinfo=dt.UTC)
    ch.insert(
        "domain_events",
        [
            [
                uuid.uuid4(),
                "OrderPlaced",
                1,
                "order",
                "900001",
                placed,
                "legacy",
                "public.orders",
                "c",
                1,
                None,
                0,
                uuid.uuid4(),
                json.dumps(legacy),
            ]
        ],
        database="events",
        column_names=list(COLUMNS),
    )
    text = _cdc(state_dir, "events", "replay", "order", "900001")
    assert text.returncode == 0, text.stderr
    assert "OrderPlaced v2 (stored v1)" in text.stdout and "1 upcast on read" in text.stdout
    doc = json.loads(_cdc(state_dir, "events", "replay", "order", "900001", "--format", "json").stdout)
    assert doc["state"]["delivery_address"] == "1 Old Road" and doc["state"]["total"] is None
    stored = ch.query("SELECT version, payload FROM events.domain_events WHERE aggregate_id = '900001'").result_rows
    assert stored == [(1, json.dumps(legacy))]  # the stored payload is never rewritten
    assert bridge.stop() == 0
