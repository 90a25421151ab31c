"""One contract for the ChangeStream port, run against the in-memory fake and against Kafka (Tansu)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kafka import KafkaProducer

from cdc.adapters.kafka import KafkaChangeStream, ensure_topics, truncate_topics
from cdc.embedded.broker import TansuBroker
from cdc.embedded.net import free_port
from cdc.ports import ChangeStream, Message
from tests.fakes import FakeBroker, FakeStream
from tests.polling import wait_until


@dataclass
class Harness:
    produce: Callable[[str, bytes, bytes], None]
    open: Callable[[str, list[str]], ChangeStream]
    create: Callable[[list[str]], None]
    truncate: Callable[[list[str]], None]


@pytest.fixture(scope="module")
def tansu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    broker = TansuBroker(free_port(), Path(tmp_path_factory.mktemp("tansu")) / "tansu.log")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(params=["fake", "kafka"])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    if request.param == "fake":
        fake = FakeBroker()
        yield Harness(fake.produce, lambda g, t: FakeStream(fake, g, t), lambda topics: None, fake.truncate)
        return
    broker: TansuBroker = request.getfixturevalue("tansu")
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, linger_ms=0)

    def produce(topic: str, key: bytes, value: bytes) -> None:
        producer.send(topic, key=key, value=value)
        producer.flush()

    def open_stream(group: str, topics: list[str]) -> ChangeStream:
        return KafkaChangeStream(broker.bootstrap_servers, group, topics)

    yield Harness(
        produce,
        open_stream,
        lambda topics: ensure_topics(broker.bootstrap_servers, topics),
        lambda topics: truncate_topics(broker.bootstrap_servers, topics),
    )
    producer.close()


def _drain(stream: ChangeStream, want: int, timeout: float = 30.0) -> list[Message]:
    got: list[Message] = []

    def enough() -> bool:
        got.extend(stream.poll(0.2, 1000))
        return len(got) >= want

    wait_until(enough, timeout, f"{want} messages", interval=0.0)
    return got


def _names() -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return f"t.public.c{suffix}", f"g{suffix}"


def test_poll_returns_messages_in_order_with_keys(harness: Harness) -> None:
    topic, group = _names()
    harness.create([topic])
    for i in range(5):
        harness.produce(topic, f"k{i}".encode(), f"v{i}".encode())
    stream = harness.open(group, [topic])
    got = _drain(stream, 5)
    assert [(m.key, m.value, m.offset) for m in got] == [(f"k{i}".encode(), f"v{i}".encode(), i) for i in range(5)]
    assert {m.topic for m in got} == {topic}
    stream.close()


def test_positions_say_what_was_read_and_reach_the_highwater_at_the_log_end(harness: Harness) -> None:
    topic, group = _names()
    harness.create([topic])
    for i in range(4):
        harness.produce(topic, b"k", f"v{i}".encode())
    stream = harness.open(group, [topic])
    got = _drain(stream, 4)
    tp = (topic, got[0].partition)
    assert stream.positions()[tp] == 4
    assert stream.highwater()[tp] == 4  # read to the end: the events lane counts the partition as caught up
    harness.produce(topic, b"k", b"v4")
    _drain(stream, 1)
    assert stream.positions()[tp] == 5
    stream.close()


def test_committed_offsets_survive_a_new_member_and_uncommitted_ones_are_redelivered(harness: Harness) -> None:
    topic, group = _names()
    harness.create([topic])
    for i in range(6):
        harness.produce(topic, b"k", f"v{i}".encode())
    first = harness.open(group, [topic])
    got = _drain(first, 6)
    first.commit({(topic, got[0].partition): 4})  # v0..v3 applied; v4, v5 read but not applied
    first.close()
    second = harness.open(group, [topic])
    again = _drain(second, 2)
    assert [m.value for m in again] == [b"v4", b"v5"]
    assert second.lag() == {(topic, got[0].partition): 2}
    second.close()


def test_after_a_truncation_a_rewound_member_reads_the_new_records_from_offset_zero(harness: Harness) -> None:
    topic, group = _names()
    harness.create([topic])
    for i in range(3):
        harness.produce(topic, b"k", f"old{i}".encode())
    stream = harness.open(group, [topic])
    got = _drain(stream, 3)
    stream.commit({(topic, got[0].partition): 3})
    harness.truncate([topic])  # nothing produces meanwhile, as the bridge guarantees
    stream.rewind()
    for i in range(2):
        harness.produce(topic, b"k", f"new{i}".encode())
    again = _drain(stream, 2)
    assert [(m.value, m.offset) for m in again] == [(b"new0", 0), (b"new1", 1)]
    stream.close()
