"""The embedded Tansu broker as kafka-python sees it: produce, consumer groups, offsets, lifecycle."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from cdc.embedded.broker import TansuBroker, probe_kafka
from cdc.embedded.net import free_port, port_in_use
from cdc.errors import StackError

# Tansu's group coordinator makes the first join wait ~20 s with kafka-python's defaults.
GROUP_TIMEOUTS: dict[str, Any] = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    tansu = TansuBroker(free_port(), tmp_path_factory.mktemp("tansu") / "tansu.log")
    tansu.start()
    yield tansu
    tansu.stop()


def _topic() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def _consumer(broker: TansuBroker, group: str | None, **extra: Any) -> Any:
    return KafkaConsumer(
        bootstrap_servers=broker.bootstrap_servers,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **GROUP_TIMEOUTS,
        **extra,
    )


def _drain(consumer: Any, expected: int, timeout: float = 60.0) -> list[Any]:
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(records) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    return records


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0): count it as dead
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_dead(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


def test_broker_answers_kafka_requests(broker: TansuBroker) -> None:
    assert broker.bootstrap_servers == f"127.0.0.1:{broker.port}"
    assert broker.is_running()
    probe_kafka("127.0.0.1", broker.port)


def test_keyed_messages_round_trip_through_a_group_and_resume(broker: TansuBroker) -> None:
    topic, group = _topic(), f"g-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, linger_ms=5)
    for seq in range(10_000):
        producer.send(topic, key=f"k{seq % 100}".encode(), value=f"{seq}".encode())
    producer.flush()

    first = _consumer(broker, group)
    first.subscribe([topic])
    records = _drain(first, 10_000)
    assert len(records) == 10_000
    assert {r.partition for r in records} == {0, 1, 2, 3}
    last_seen: dict[bytes, int] = {}
    for record in records:
        seq = int(record.value)
        assert seq > last_seen.get(record.key, -1), f"out of order for key {record.key!r}"
        last_seen[record.key] = seq
    first.commit()
    first.close()

    for seq in range(10_000, 10_050):
        producer.send(topic, key=f"k{seq % 100}".encode(), value=f"{seq}".encode())
    producer.flush()
    producer.close()
    second = _consumer(broker, group)
    second.subscribe([topic])
    resumed = _drain(second, 50, timeout=30)
    time.sleep(1.0)
    resumed += _drain(second, 1, timeout=1)  # nothing beyond the 50 new ones
    second.close()
    assert sorted(int(r.value) for r in resumed) == list(range(10_000, 10_050))


def test_end_offsets_of_single_record_batches_are_exact(broker: TansuBroker) -> None:
    topic = _topic()
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    for i in range(5):
        producer.send(topic, key=b"k", value=f"{i}".encode(), partition=0).get(timeout=10)
    consumer = _consumer(broker, None)
    tp = TopicPartition(topic, 0)
    assert consumer.end_offsets([tp]) == {tp: 5}
    assert consumer.beginning_offsets([tp]) == {tp: 0}
    producer.close()
    consumer.close()


def test_end_offsets_after_a_batch_lag_behind_the_high_watermark(broker: TansuBroker) -> None:
    """Tansu 0.6 quirk: ListOffsets(latest) answers the *last batch's base offset* + 1.

    After a multi-record batch, end_offsets() is smaller than the real end; the high
    watermark carried by fetch responses (consumer.highwater) is right. Lag must use that.
    """
    topic = _topic()
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, linger_ms=50)
    for i in range(20):
        producer.send(topic, value=f"{i}".encode(), partition=0)
    producer.flush()
    producer.close()
    consumer = _consumer(broker, None)
    tp = TopicPartition(topic, 0)
    end = consumer.end_offsets([tp])[tp]
    consumer.assign([tp])
    assert len(_drain(consumer, 20)) == 20
    assert consumer.highwater(tp) == 20
    assert 1 <= end <= 20
    consumer.close()


def test_topics_are_auto_created_with_four_partitions(broker: TansuBroker) -> None:
    topic = _topic()
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    producer.send(topic, value=b"x").get(timeout=10)
    assert producer.partitions_for(topic) == {0, 1, 2, 3}
    producer.close()


def test_admin_creates_topics_with_the_asked_partitions(broker: TansuBroker) -> None:
    topic = _topic()
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    assert topic in admin.list_topics()
    admin.close()
    consumer = _consumer(broker, None)
    assert consumer.partitions_for_topic(topic) == {0, 1, 2}
    consumer.close()


def test_second_start_is_harmless(broker: TansuBroker) -> None:
    pid = broker.pid
    broker.start()
    assert broker.pid == pid


def test_port_in_use_is_refused(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(StackError, match=f"port {port} .*already in use"):
            TansuBroker(port, tmp_path / "tansu.log").start()


def test_a_binary_that_dies_at_startup_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALF_TANSU_BIN", "/bin/false")
    with pytest.raises(StackError, match="exited during startup"):
        TansuBroker(free_port(), tmp_path / "tansu.log").start()


def test_stop_leaves_no_process(tmp_path: Path) -> None:
    tansu = TansuBroker(free_port(), tmp_path / "tansu.log")
    tansu.start()
    pid = tansu.pid
    assert pid is not None
    tansu.stop()
    tansu.stop()  # idempotent
    assert not tansu.is_running()
    assert not _alive(pid)
    pgrep = subprocess.run(["pgrep", "-f", "tansu"], capture_output=True, text=True, check=False)
    assert str(pid) not in pgrep.stdout.split()
    assert not port_in_use(tansu.port)


_ORPHAN_SCRIPT = """
import sys, time
from pathlib import Path
from cdc.embedded.broker import TansuBroker
broker = TansuBroker(int(sys.argv[1]), Path(sys.argv[2]))
broker.start()
sys.stdout.write(f"{broker.pid}\\n")
sys.stdout.flush()
time.sleep(600)
"""


def test_broker_dies_with_a_killed_parent(tmp_path: Path) -> None:
    port = free_port()
    parent = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN_SCRIPT, str(port), str(tmp_path / "tansu.log")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    assert _alive(child_pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    assert _wait_dead(child_pid), "tansu outlived its killed parent"
    assert not port_in_use(port)
