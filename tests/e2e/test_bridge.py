"""End to end on the real stack: PostgreSQL -> Debezium -> Tansu -> consumers -> chDB, via `cdc run`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cdc.embedded.net import port_in_use
from tests.e2e.conftest import BridgeProcess, SourceLoad, sql, start_bridge
from tests.polling import wait_until

pytestmark = pytest.mark.e2e

SCHEMA = """
CREATE TYPE mood AS ENUM ('happy', 'sad');
CREATE TABLE items (
    id bigint PRIMARY KEY, name text NOT NULL, price numeric(10,2), qty integer, born date,
    seen timestamptz, at timestamp, tags text[], data jsonb, blob bytea, flag boolean, uid uuid, feeling mood
);
CREATE TABLE lines (order_id bigint, line_no int, note text, PRIMARY KEY (order_id, line_no));
CREATE TABLE nokey (a int);
"""

ITEM = (
    "INSERT INTO items VALUES (%s, %s, %s, %s, date '2001-02-03' + %s, timestamptz '2024-05-06 07:08:09.123456+02'"
    " + make_interval(secs => %s), timestamp '2020-01-01 00:00:00.5', ARRAY['a', NULL, %s], %s::jsonb,"
    " decode('00ff10', 'hex'), %s, gen_random_uuid(), 'happy')"
)


def _insert_item(dsn: str, i: int) -> None:
    sql(
        dsn,
        ITEM,
        (i, f"item {i} ünïcode", f"{i}.25", i * 10, i, i, f"t{i}", json.dumps({"k": i, "n": [1, 2]}), i % 2 == 0),
    )


PG_ITEMS = (
    "SELECT id, name, price::text, qty, born::text, (extract(epoch from seen) * 1000000)::bigint, at::text,"
    " tags, data::text, encode(blob, 'hex'), flag, uid::text, feeling::text FROM items ORDER BY id"
)
CH_ITEMS = (
    "SELECT id, name, toString(price), qty, toString(born), toUnixTimestamp64Micro(seen), toString(at), tags,"
    " data, lower(hex(blob)), flag, toString(uid), feeling FROM {db}.items"
    " ORDER BY id"
)


def _normalize(row: tuple[Any, ...]) -> tuple[Any, ...]:
    out = list(row)
    out[2] = None if out[2] is None else str(float(out[2]))
    out[6] = None if out[6] is None else str(out[6]).rstrip("0").rstrip(".")
    out[8] = None if out[8] is None else json.loads(out[8])
    return tuple(out)


def _pg_items(dsn: str) -> list[tuple[Any, ...]]:
    return [_normalize(r) for r in sql(dsn, PG_ITEMS)]


def _ch_items(client: Any, db: str) -> list[tuple[Any, ...]]:
    return [_normalize(r) for r in client.query(CH_ITEMS.format(db=db)).result_rows]


def test_snapshot_then_inserts_updates_deletes_and_key_changes(
    database: str, state_dir: Path, bridges: list[BridgeProcess]
) -> None:
    sql(database, SCHEMA)
    for i in range(1, 21):
        _insert_item(database, i)
    sql(database, "INSERT INTO lines SELECT g, 1, 'x' FROM generate_series(1, 5) g")
    db = database.rsplit("/", 1)[1]
    bridge = start_bridge(bridges, state_dir, "--source", database)
    ch = bridge.clickhouse()
    assert "nokey has no primary key" in bridge.output()
    sql(database, "INSERT INTO nokey VALUES (1)")
    sql(database, "UPDATE nokey SET a = 2")  # the application can still update and delete it
    sql(database, "DELETE FROM nokey")
    publication = sql(database, "SELECT tablename FROM pg_publication_tables ORDER BY 1")
    assert [r[0] for r in publication] == ["items", "lines"]
    wait_until(lambda: _ch_items(ch, db) == _pg_items(database), 120, "snapshot in ClickHouse")
    # the copy path loads existing rows into the current state only: the change log starts with the stream
    assert ch.query(f"SELECT count() FROM {db}.items_changes").result_rows == [(0,)]

    for i in range(21, 31):
        _insert_item(database, i)
    sql(database, "UPDATE items SET name = 'renamed', price = 99.99, tags = '{}' WHERE id % 3 = 0")
    sql(database, "UPDATE items SET data = NULL, seen = NULL, born = NULL WHERE id = 5")
    sql(database, "DELETE FROM items WHERE id IN (1, 2, 25)")
    sql(database, "UPDATE items SET id = 1000 WHERE id = 7")  # primary-key change
    sql(database, "UPDATE lines SET line_no = 2 WHERE order_id = 3")
    sql(database, "DELETE FROM lines WHERE order_id = 4")
    wait_until(lambda: _ch_items(ch, db) == _pg_items(database), 120, "stream changes in ClickHouse")
    pg_lines = sql(database, "SELECT order_id, line_no, note FROM lines ORDER BY 1, 2")
    wait_until(
        lambda: [tuple(r) for r in ch.query(f"SELECT * FROM {db}.lines ORDER BY 1, 2").result_rows] == pg_lines,
        60,
        "composite-key table",
    )
    ops = dict(ch.query(f"SELECT _op, count() FROM {db}.items_changes GROUP BY _op").result_rows)
    # 10 inserts + the re-keyed row, 10 renames + 1 nulling, 3 deletes + the old key (copied rows: none)
    assert ops == {"c": 11, "u": 11, "d": 4}
    assert bridge.stop() == 0
    assert "Traceback" not in bridge.output()


class Writer(SourceLoad):
    """The source application: inserts and updates until stopped; counts what it did."""

    def __init__(self, dsn: str) -> None:
        super().__init__(dsn)
        self.inserted = 0
        self.updated = 0

    def step(self, conn: Any) -> None:
        conn.execute("INSERT INTO events (n, note) SELECT g, 'n' FROM generate_series(1, 10) g")
        cur = conn.execute("UPDATE events SET n = n + 1 WHERE id = (SELECT max(id) - 5 FROM events)")
        self.inserted += 10
        self.updated += cur.rowcount


def test_stop_mid_stream_and_restart_loses_and_duplicates_nothing(
    database: str, state_dir: Path, bridges: list[BridgeProcess]
) -> None:
    sql(database, "CREATE TABLE events (id bigserial PRIMARY KEY, n int NOT NULL, note text)")
    sql(database, "INSERT INTO events (n, note) SELECT g, 'seed' FROM generate_series(1, 100) g")
    db = database.rsplit("/", 1)[1]
    writer = Writer(database)
    first = start_bridge(bridges, state_dir, "--source", database)
    ch_first = first.clickhouse()
    # stop mid-stream, not mid-snapshot (an interrupted snapshot is redone on restart, by design)
    wait_until(lambda: ch_first.query(f"SELECT count() FROM {db}.events").result_rows == [(100,)], 120, "snapshot")
    writer.start()
    wait_until(lambda: writer.inserted > 300, 60, "writes before the stop")
    assert first.stop() == 0  # SIGTERM while changes stream in
    at_stop = writer.inserted
    wait_until(lambda: writer.inserted > at_stop + 300, 60, "writes while the bridge is down")
    restarted_ms = int(time.time() * 1000)
    second = start_bridge(bridges, state_dir, "--source", database)
    ch = second.clickhouse()
    time.sleep(2)
    writer.stop()

    def same() -> bool:
        pg_rows = sql(database, "SELECT id, n FROM events ORDER BY id")
        return [tuple(r) for r in ch.query(f"SELECT id, n FROM {db}.events ORDER BY id").result_rows] == pg_rows

    wait_until(same, 180, "ClickHouse equal to PostgreSQL after the restart")
    changes = dict(ch.query(f"SELECT _op, count() FROM {db}.events_changes GROUP BY _op").result_rows)
    assert changes == {"c": writer.inserted, "u": writer.updated}  # nothing twice
    # no second copy: the copied rows are still those written before the restart (a copy again would
    # replace them, at the same version, with rows written after it)
    copied = f"SELECT count() FROM {db}._state_events FINAL WHERE _lsn = 0 AND toUnixTimestamp64Milli(_ingested_at) < "
    assert ch.query(copied + str(restarted_ms)).result_rows == [(100,)]
    assert second.stop() == 0


def _cdc(state_dir: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdc.cli", *args, "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_until_caught_up_then_sql_without_a_running_bridge(database: str, state_dir: Path) -> None:
    sql(database, "CREATE TABLE t (id int PRIMARY KEY, v text)")
    sql(database, "INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 500) g")
    done = _cdc(state_dir, "run", "--source", database, "--until-caught-up")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "caught up" in done.stdout
    db = database.rsplit("/", 1)[1]
    out = _cdc(state_dir, "sql", f"SELECT count(), sum(id) FROM {db}.t", "--format", "csv")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "500,125250"
    sql(database, "UPDATE t SET v = 'changed' WHERE id <= 10")
    again = _cdc(state_dir, "run", "--source", database, "--until-caught-up")
    assert again.returncode == 0, again.stdout + again.stderr
    out = _cdc(state_dir, "sql", f"SELECT count() FROM {db}.t WHERE v = 'changed'", "--format", "json")
    assert json.loads(out.stdout.splitlines()[-1]) == {"count()": 10}


def test_endpoint_serves_curl_and_cdc_sql_while_running(
    database: str, state_dir: Path, bridges: list[BridgeProcess]
) -> None:
    sql(database, "CREATE TABLE t (id int PRIMARY KEY, v text)")
    sql(database, "INSERT INTO t VALUES (1, 'one'), (2, 'two')")
    db = database.rsplit("/", 1)[1]
    bridge = start_bridge(bridges, state_dir, "--source", database)
    url = bridge.wait_for_line(r"ClickHouse endpoint: (http://\S+)").group(1)
    ping = subprocess.run(["curl", "-s", f"{url}/ping"], capture_output=True, text=True, timeout=30)
    assert ping.stdout == "Ok.\n"

    def curl_count() -> str:
        r = subprocess.run(
            ["curl", "-s", "--data-binary", f"SELECT count() FROM {db}.t", url],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return r.stdout.strip()

    wait_until(lambda: curl_count() == "2", 120, "rows visible over HTTP")
    out = _cdc(state_dir, "sql", f"SELECT v FROM {db}.t ORDER BY id", "--format", "csv")
    assert out.returncode == 0 and out.stdout.splitlines() == ['"v"', '"one"', '"two"']
    bad = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--data-binary", "SELECT nope FROM nowhere", url],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.stdout in ("400", "404", "500")
    second = _cdc(state_dir, "run", "--source", database)  # same state dir: refused, first one undisturbed
    assert second.returncode == 2 and "a bridge already runs on state dir" in second.stderr
    sql(database, "INSERT INTO t VALUES (3, 'three')")
    wait_until(lambda: curl_count() == "3", 120, "the first bridge still streaming")
    kafka_port = int(bridge.wait_for_line(r"Kafka bootstrap:\s+\S+:(\d+)").group(1))
    assert bridge.stop() == 0
    # nothing left behind: the broker and the endpoint are gone with the bridge
    assert not port_in_use(kafka_port)
    assert not port_in_use(int(url.rsplit(":", 1)[1]))
    assert not (state_dir / "clickhouse" / "endpoint.json").exists()


def test_poison_message_on_the_real_stack_is_routed_and_counted(
    database: str, state_dir: Path, bridges: list[BridgeProcess]
) -> None:
    from kafka import KafkaProducer

    sql(database, "CREATE TABLE t (id int PRIMARY KEY, v text)")
    db = database.rsplit("/", 1)[1]
    bridge = start_bridge(bridges, state_dir, "--source", database)
    ch = bridge.clickhouse()
    bootstrap = bridge.wait_for_line(r"Kafka bootstrap:\s+(\S+)").group(1)
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    producer.send(f"{db}.public.t", key=b'{"id":1}', value=b"\x00garbage, not an envelope")
    producer.flush()
    producer.close()
    sql(database, "INSERT INTO t VALUES (1, 'after the poison')")
    wait_until(lambda: ch.query(f"SELECT v FROM {db}.t").result_rows == [("after the poison",)], 120, "good row")
    raw = b"\x00garbage, not an envelope".hex().upper()
    dead = ch.query("SELECT topic, stage, error, hex(value) FROM cdc.dead_letters WHERE stage = 'parse'").result_rows
    assert dead == [(f"{db}.public.t", "parse", "not a JSON document", raw)]  # the mirror's ClickHouse parse
    wait_until(
        lambda: ch.query("SELECT count() FROM cdc.dead_letters WHERE stage = 'events'").result_rows == [(1,)],
        60,
        "the events consumer's dead letter",
    )
    bridge.wait_for_line(r"dead letters 1\b", 60)
    assert bridge.stop() == 0
