"""The embedded Debezium runner against a real PostgreSQL 15 cluster and a Tansu broker.

PostgreSQL is started by a local helper (it needs password authentication for the wrong-password
case); the broker is the project's Tansu adapter. Besides
checking the runner, the snapshot/stream test saves the real envelopes it saw to
`tests/fixtures/debezium/` for the pure parser tests (written when missing, or always with
CDC_REFRESH_FIXTURES=1).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kafka import KafkaConsumer, TopicPartition

from cdc.debezium.config import ConnectorSettings, embedded_properties
from cdc.debezium.engine import DebeziumRunner
from cdc.embedded.broker import TansuBroker
from cdc.errors import CaptureError

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PASSWORD = "s3cret-pw"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "debezium"
SCHEMA = """
create type mood as enum ('happy', 'sad', 'meh');
create table order_lines (
    order_id int not null, line_no int not null, sku text not null, qty int not null,
    primary key (order_id, line_no));
create table typed_things (
    id int primary key, amount numeric(12,2), happened_at timestamptz, doc jsonb,
    tags text[], payload bytea, feeling mood, note text);
alter table typed_things replica identity full;
insert into order_lines values (1, 1, 'SKU-A', 2), (1, 2, 'SKU-B', 1), (2, 1, 'SKU-C', 5);
insert into typed_things values
    (1, 1234567890.12, '2024-05-06 07:08:09.123456+02', '{"a": [1, 2], "b": {"c": null}}',
     '{x,"y z"}', '\\xdeadbeef', 'happy', 'first'),
    (2, -0.01, '1999-12-31 23:59:59+00', '[]', '{}', '\\x', 'meh', null);
"""


# ---------------------------------------------------------------- service helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgCluster:
    data: Path
    port: int

    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres password={PASSWORD} dbname=postgres"

    def execute(self, sql: str) -> None:
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql)


def start_postgres(wal_level: str = "logical") -> PgCluster:
    # pytest's tmp dirs are private to root; the postgres OS user needs a directory it can reach.
    root = Path(tempfile.mkdtemp(prefix="dbz-test-pg-"))
    root.chmod(0o755)
    data, pwfile, logfile = root / "pg", root / "pwfile", root / "pg.log"
    data.mkdir()
    pwfile.write_text(PASSWORD)
    logfile.touch()
    for path in (data, pwfile, logfile):
        shutil.chown(path, "postgres", "postgres")
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [
            *as_pg,
            str(PG_BIN / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            f"--pwfile={pwfile}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(
            f"wal_level={wal_level}\nport={port}\nlisten_addresses='127.0.0.1'\nunix_socket_directories=''\nfsync=off\n"
        )
    subprocess.run(
        [*as_pg, str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(logfile), "-w", "start"],
        check=True,
        capture_output=True,
    )
    return PgCluster(data, port)


def stop_postgres(cluster: PgCluster) -> None:
    subprocess.run(
        [
            "runuser",
            "-u",
            "postgres",
            "--",
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(cluster.data),
            "-m",
            "fast",
            "-w",
            "stop",
        ],
        check=False,
        capture_output=True,
    )
    shutil.rmtree(cluster.data.parent, ignore_errors=True)


class Tansu(TansuBroker):
    """The project's broker adapter, with the short name the tests use."""

    @property
    def bootstrap(self) -> str:
        return self.bootstrap_servers


def start_tansu(root: Path) -> Tansu:
    root.mkdir(parents=True, exist_ok=True)
    broker = Tansu(free_port(), root / "tansu.log")
    broker.start()
    return broker


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


# ---------------------------------------------------------------- Kafka reading


@dataclass(frozen=True)
class Message:
    topic: str
    key_raw: str | None
    value_raw: str | None

    @property
    def key(self) -> Any:
        return None if self.key_raw is None else json.loads(self.key_raw)

    @property
    def value(self) -> Any:
        return None if self.value_raw is None else json.loads(self.value_raw)

    @property
    def op(self) -> str | None:
        return None if self.value is None else self.value.get("op")


def read_topics(bootstrap: str, prefix: str) -> list[Message]:
    """Every message of the topics starting with `prefix`, in offset order per partition."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        topics = [t for t in consumer.topics() if t.startswith(prefix)]
        parts = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        if not parts:
            return []
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        out: list[Message] = []
        while any(consumer.position(tp) < end[tp] for tp in parts):
            for batch in consumer.poll(timeout_ms=500).values():
                out.extend(Message(m.topic, _text(m.key), _text(m.value)) for m in batch)
        return out
    finally:
        consumer.close()


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode()


def wait_for_messages(bootstrap: str, prefix: str, count: int, timeout: float = 60) -> list[Message]:
    found: list[Message] = []

    def enough() -> bool:
        found[:] = read_topics(bootstrap, prefix)
        return len(found) >= count

    wait_until(enough, timeout, f"{count} messages on {prefix}*")
    return found


def save_fixture(name: str, message: Message) -> None:
    path = FIXTURES / f"{name}.json"
    if path.exists() and not os.environ.get("CDC_REFRESH_FIXTURES"):
        return
    FIXTURES.mkdir(parents=True, exist_ok=True)
    doc = {
        "topic": message.topic,
        "key": message.key,
        "value": message.value,
        "key_raw": message.key_raw,
        "value_raw": message.value_raw,
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PgCluster, Tansu]]:
    root = tmp_path_factory.mktemp("dbz")
    cluster = start_postgres()
    tansu = start_tansu(root / "tansu")
    try:
        cluster.execute(SCHEMA)
        yield cluster, tansu
    finally:
        tansu.stop()
        stop_postgres(cluster)


def settings_for(cluster: PgCluster, root: Path, source: str, **extra: Any) -> ConnectorSettings:
    return ConnectorSettings(
        source=source,
        host="127.0.0.1",
        port=cluster.port,
        user="postgres",
        password=PASSWORD,
        dbname="postgres",
        tables=("public.order_lines", "public.typed_things"),
        offset_file=root / f"{source}-offsets.dat",
        **extra,
    )


def run_until_snapshot(settings: ConnectorSettings, bootstrap: str, log: Path, **kwargs: Any) -> DebeziumRunner:
    runner = DebeziumRunner(embedded_properties(settings), bootstrap, log, **kwargs)
    runner.start()
    wait_until(runner.snapshot_completed, 60, "the snapshot")
    return runner


# ---------------------------------------------------------------- tests


def _by(messages: list[Message], table: str, op: str | None = None) -> list[Message]:
    return [m for m in messages if m.topic == f"shop.public.{table}" and (op is None or m.op == op)]


def test_snapshot_then_stream_then_restart_without_new_snapshot(
    services: tuple[PgCluster, Tansu], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster, tansu = services
    monkeypatch.chdir(tmp_path)  # a stray `logs/` dir from the bundled log4j config would land here
    settings = settings_for(cluster, tmp_path, "shop")
    log = tmp_path / "debezium.log"
    runner = run_until_snapshot(settings, tansu.bootstrap, log)
    try:
        snap = wait_for_messages(tansu.bootstrap, "shop.public.", 5)
        assert {m.op for m in snap} == {"r"}
        assert sorted(m.key_raw or "" for m in _by(snap, "order_lines")) == [
            '{"order_id":1,"line_no":1}',
            '{"order_id":1,"line_no":2}',
            '{"order_id":2,"line_no":1}',
        ]
        first = next(m for m in _by(snap, "typed_things") if m.key == {"id": 1})
        assert first.value["after"] == {
            "id": 1,
            "amount": "1234567890.12",
            "happened_at": "2024-05-06T05:08:09.123456Z",
            "doc": '{"a": [1, 2], "b": {"c": null}}',
            "tags": ["x", "y z"],
            "payload": "3q2+7w==",
            "feeling": "happy",
            "note": "first",
        }
        assert set(first.value) >= {"before", "after", "source", "op", "ts_ms"}
        save_fixture("typed_things__snapshot_read", first)
        save_fixture("order_lines__snapshot_read", _by(snap, "order_lines")[0])

        cluster.execute("""
            insert into typed_things values (3, 10.50, now(), '{"k": 1}', '{a}', '\\x00ff', 'sad', 'new');
            update typed_things set amount = 99.99, note = 'changed' where id = 1;
            delete from order_lines where order_id = 2 and line_no = 1;
            update order_lines set line_no = 5 where order_id = 1 and line_no = 2;
            insert into order_lines values (3, 1, 'SKU-D', 7);
            update order_lines set qty = 8 where order_id = 3 and line_no = 1;
            delete from typed_things where id = 2;
        """)
        before_stop = wait_for_messages(tansu.bootstrap, "shop.public.", 5 + 8)
        assert len(before_stop) == 13 and [m.op for m in before_stop].count("r") == 5
        _check_stream(before_stop)
    finally:
        runner.stop()
    assert not runner.running
    assert log.stat().st_size > 0 and not (tmp_path / "logs").exists()

    cluster.execute("""
        insert into order_lines values (4, 1, 'SKU-E', 1);
        update typed_things set note = 'while stopped' where id = 3;
    """)
    restarted = DebeziumRunner(embedded_properties(settings), tansu.bootstrap, log)
    restarted.start()
    try:
        wait_until(restarted.snapshot_completed, 60, "streaming after restart")
        wait_for_messages(tansu.bootstrap, "shop.public.", 13 + 2)
        time.sleep(1)  # a new snapshot would show up as more 'r' records
        after = [m for m in read_topics(tansu.bootstrap, "shop.public.") if m not in before_stop]
        assert sorted(m.op or "" for m in after) == ["c", "u"]
        assert {m.key_raw for m in after} == {'{"order_id":4,"line_no":1}', '{"id":3}'}
        assert restarted.records_produced >= 2
    finally:
        restarted.stop()


def _check_stream(messages: list[Message]) -> None:
    """c/u/d of both tables in the stream; a primary-key change is a delete then a create."""
    lines, things = _by(messages, "order_lines"), _by(messages, "typed_things")
    insert = next(m for m in things if m.op == "c")
    assert insert.value["after"]["payload"] == "AP8=" and insert.value["source"]["snapshot"] == "false"
    update = next(m for m in things if m.op == "u")
    assert update.value["before"]["amount"] == "1234567890.12"  # replica identity full
    assert update.value["after"]["amount"] == "99.99"
    delete_full = next(m for m in things if m.op == "d")
    assert delete_full.value["before"]["feeling"] == "meh" and delete_full.value["after"] is None
    delete = next(m for m in lines if m.op == "d" and m.key == {"order_id": 2, "line_no": 1})
    # replica identity default: only key columns are real; NOT NULL columns get '' / 0 fillers
    assert delete.value["before"] == {"order_id": 2, "line_no": 1, "sku": "", "qty": 0}
    pk_delete = next(m for m in lines if m.op == "d" and m.key == {"order_id": 1, "line_no": 2})
    pk_create = next(m for m in lines if m.op == "c" and m.key == {"order_id": 1, "line_no": 5})
    assert pk_create.value["after"]["sku"] == "SKU-B"
    assert pk_delete.value["source"]["lsn"] <= pk_create.value["source"]["lsn"]
    assert not [m for m in messages if m.value_raw is None]  # tombstones are off by default
    for name, message in {
        "typed_things__insert": insert,
        "typed_things__update_replica_identity_full": update,
        "typed_things__delete_replica_identity_full": delete_full,
        "order_lines__delete": delete,
        "order_lines__pk_change_delete": pk_delete,
        "order_lines__pk_change_create": pk_create,
        "order_lines__insert": next(m for m in lines if m.op == "c" and m.key["order_id"] == 3),
        "order_lines__update": next(m for m in lines if m.op == "u"),
    }.items():
        save_fixture(name, message)


def test_tombstone_follows_delete_when_enabled(services: tuple[PgCluster, Tansu], tmp_path: Path) -> None:
    cluster, tansu = services
    settings = settings_for(cluster, tmp_path, "tomb", tombstones_on_delete=True, snapshot_mode="no_data")
    runner = run_until_snapshot(settings, tansu.bootstrap, tmp_path / "debezium.log")
    try:
        cluster.execute("insert into order_lines values (9, 9, 'SKU-T', 1); delete from order_lines where order_id = 9")
        messages = wait_for_messages(tansu.bootstrap, "tomb.public.", 3)
    finally:
        runner.stop()
    assert [m.op for m in messages] == ["c", "d", None]
    tombstone = messages[2]
    assert tombstone.key == {"order_id": 9, "line_no": 9} and tombstone.value_raw is None
    save_fixture("order_lines__delete_before_tombstone", messages[1])
    save_fixture("order_lines__tombstone", tombstone)


def test_wrong_password_is_a_capture_error(services: tuple[PgCluster, Tansu], tmp_path: Path) -> None:
    cluster, tansu = services
    settings = settings_for(cluster, tmp_path, "badpw")
    props = {**embedded_properties(settings), "database.password": "not-the-password"}
    runner = DebeziumRunner(props, tansu.bootstrap, tmp_path / "debezium.log")
    with pytest.raises(CaptureError, match="password authentication failed") as caught:
        runner.start()
    assert "\n" not in str(caught.value) and "not-the-password" not in str(caught.value)
    assert not runner.running


def test_wal_level_replica_is_a_capture_error(services: tuple[PgCluster, Tansu], tmp_path: Path) -> None:
    _, tansu = services
    replica = start_postgres(wal_level="replica")
    try:
        replica.execute(SCHEMA)
        settings = settings_for(replica, tmp_path, "replica")
        runner = DebeziumRunner(embedded_properties(settings), tansu.bootstrap, tmp_path / "d.log")
        with pytest.raises(CaptureError, match="wal_level") as caught:
            runner.start()
        assert "\n" not in str(caught.value)
    finally:
        stop_postgres(replica)


def test_broker_loss_is_surfaced_not_swallowed(services: tuple[PgCluster, Tansu], tmp_path: Path) -> None:
    cluster, _ = services
    broker = start_tansu(tmp_path / "own-tansu")
    fast_fail = {"delivery.timeout.ms": "4000", "request.timeout.ms": "2000", "max.block.ms": "3000"}
    settings = settings_for(cluster, tmp_path, "lossy", snapshot_mode="no_data")
    runner = run_until_snapshot(settings, broker.bootstrap, tmp_path / "d.log", producer_overrides=fast_fail)
    try:
        broker.stop()
        cluster.execute("insert into order_lines values (7, 7, 'SKU-L', 1)")
        wait_until(lambda: runner.error is not None, 60, "the producer error")
        assert not runner.running
        with pytest.raises(CaptureError, match="Kafka"):
            runner.raise_if_failed()
    finally:
        runner.stop()


def test_missing_tables_are_a_capture_error(services: tuple[PgCluster, Tansu], tmp_path: Path) -> None:
    cluster, tansu = services
    settings = ConnectorSettings(
        source="ghost",
        host="127.0.0.1",
        port=cluster.port,
        user="postgres",
        password=PASSWORD,
        dbname="postgres",
        tables=("public.no_such_table",),
        offset_file=tmp_path / "o.dat",
    )
    runner = DebeziumRunner(embedded_properties(settings), tansu.bootstrap, tmp_path / "d.log")
    with pytest.raises(CaptureError, match="no_such_table|none of the captured tables"):
        runner.start()


def test_java_collections_do_not_run_full_python_collections(tmp_path: Path) -> None:
    """JPype's GC coupling (a full Python collection per Java GC, `System.gc()` from Python's) is off."""
    import gc

    import jpype

    from cdc.debezium.jvm import ensure_jvm

    ensure_jvm(tmp_path / "debezium.log")
    assert not [
        c
        for c in gc.callbacks
        if getattr(c, "__module__", None) == "_jpype" or getattr(c, "__name__", "") == "_collect"
    ], gc.callbacks
    system = jpype.JClass("java.lang.System")

    def full_python_collections_after_java_gc() -> int:
        before = gc.get_stats()[2]["collections"]
        system.gc()
        time.sleep(1.0)  # JPype's reference-queue thread polls every 0.25 s
        return gc.get_stats()[2]["collections"] - before

    full_python_collections_after_java_gc()  # JPype's trigger may still fire once, then it stays off
    assert full_python_collections_after_java_gc() == 0
    assert full_python_collections_after_java_gc() == 0
