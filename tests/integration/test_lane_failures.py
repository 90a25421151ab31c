"""Only bad data is dead-lettered: a bad message goes to the dead letters with the frames where it
failed and the stream goes on; a bug or a broken dependency stops the lane with nothing committed
(issue 11, part 6). Real ClickHouse (chDB) holds the dead letters; the broker is the contract-tested fake."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cdc.adapters.clickhouse import ClickHouseWarehouse
from cdc.consume.dead_letters import DeadLetters
from cdc.consume.lane import Lane
from cdc.consume.loop import ConsumerService
from cdc.errors import DataRejected
from cdc.events.reports import WorkerConfig
from cdc.events.worker import EventsWorker, EventsWorkers
from cdc.ports import Message, Rejected
from tests.fakes import FakeBroker, FakeStream
from tests.polling import wait_until


def _price_of(value: bytes) -> float:
    return float(value.decode())  # "free" raises ValueError here: this frame must show in the dead letter


def _priced(value: bytes) -> float:
    try:
        return _price_of(value)
    except ValueError as e:
        raise DataRejected(f"no price in {value!r}") from e  # as the adapters do: the cause kept


class PricingSink:
    """Rejects what it cannot price (the message's own fault) and fails on ``b"bug"`` (ours)."""

    def __init__(self) -> None:
        self.stored: list[bytes] = []

    def write(self, topic: str, messages: Sequence[Message]) -> Sequence[Rejected]:
        rejected = []
        for m in messages:
            assert m.value is not None
            if m.value == b"bug":
                raise ValueError("a bug in the sink, not in the data")
            try:
                _priced(m.value)
            except DataRejected as e:
                rejected.append(Rejected(m, e))
                continue
            self.stored.append(m.value)
        return rejected


def _lane(warehouse: ClickHouseWarehouse, values: list[bytes]) -> tuple[Lane, PricingSink, FakeStream, str]:
    topic = f"s{uuid.uuid4().hex[:8]}.public.prices"
    broker = FakeBroker()
    for v in values:
        broker.produce(topic, b"k", v)
    stream = FakeStream(broker, "g", [topic])
    sink = PricingSink()
    return Lane("mirror test", stream, ConsumerService(stream, sink, DeadLetters(warehouse))), sink, stream, topic


def test_a_bad_message_is_dead_lettered_with_where_it_failed(chdb_warehouse: ClickHouseWarehouse) -> None:
    lane, sink, stream, topic = _lane(chdb_warehouse, [b"1.5", b"free", b"2.5"])
    lane.start()
    wait_until(lambda: stream.commits and stream.commits[-1].get((topic, 0)) == 3, 30, "the batch committed")
    lane.stop()
    assert sink.stored == [b"1.5", b"2.5"] and lane.failure is None
    error, stack = chdb_warehouse.query(
        "SELECT error, stack FROM cdc.dead_letters WHERE topic = {t:String}", {"t": topic}
    )[0]
    assert "DataRejected" in error and "free" in error
    assert "_price_of" in stack  # the cause chain kept: the frame where the value failed


def test_a_bug_stops_the_lane_and_commits_nothing(chdb_warehouse: ClickHouseWarehouse) -> None:
    lane, sink, stream, topic = _lane(chdb_warehouse, [b"1.5", b"bug", b"2.5"])
    lane.start()
    wait_until(lambda: lane.failure is not None, 30, "the lane to stop")
    lane.thread.join(5)
    assert not lane.thread.is_alive()
    assert isinstance(lane.failure, ValueError)
    assert stream.commits == []  # nothing of the batch: it is read again once the bug is fixed
    dead = chdb_warehouse.query("SELECT count() FROM cdc.dead_letters WHERE topic = {t:String}", {"t": topic})
    assert dead == [(0,)]
    lane.stop()


class _BrokenService:
    stats: Any = None

    def run_once_or_back_off(self, *args: Any) -> str | None:
        raise RuntimeError("the translator registry is broken")

    def stop_on(self, stopping: Any) -> None:
        pass


class _BrokenLane:
    service = _BrokenService()

    def report(self, error: str | None) -> Any:
        from cdc.events.reports import WorkerReport

        return WorkerReport(error=error)

    def upcast_stored(self, progress: Any) -> None:
        return None  # nothing behind: the worker goes on to consume

    def close(self) -> None:
        pass


def open_broken_lane(config: WorkerConfig) -> _BrokenLane:
    return _BrokenLane()  # module level: the worker process imports it by name


def test_a_bug_in_the_events_worker_is_fatal_not_retried(tmp_path: Path) -> None:
    config = WorkerConfig(
        source="s", source_dsn="", bootstrap="", clickhouse_url="", state_dir=str(tmp_path), topics=(), translators=()
    )
    worker = EventsWorker(config, open_broken_lane)  # type: ignore[arg-type]
    worker.start()
    deadline = time.monotonic() + 60
    while worker.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not worker.alive()
    report = worker.last_report()
    assert report.fatal is not None and "translator registry is broken" in report.fatal
    assert "RuntimeError" in (tmp_path / "logs" / "events.log").read_text()


class _IdleService:
    stats: Any = None

    def run_once_or_back_off(self, backoff: Any, stopping: Any, label: str) -> str | None:
        stopping.wait(0.05)  # a healthy lane with nothing to read
        return None

    def stop_on(self, stopping: Any) -> None:
        pass

    def rewind(self) -> None:
        pass


class _IdleLane(_BrokenLane):
    service = _IdleService()  # type: ignore[assignment]


def open_idle_lane(config: WorkerConfig) -> _IdleLane:
    return _IdleLane()


def test_one_dead_worker_of_a_group_makes_the_group_dead_and_stop_ends_the_others(tmp_path: Path) -> None:
    """The supervisor restarts a group whole: it sees one member die at once, reads the dead one's last
    report without waiting on the living, and stopping the group ends the living one too."""
    config = WorkerConfig(
        source="s", source_dsn="", bootstrap="", clickhouse_url="", state_dir=str(tmp_path), topics=(), translators=()
    )
    group = EventsWorkers(config, open_idle_lane, 2)  # type: ignore[arg-type]
    group.start()
    try:
        wait_until(lambda: group.alive() and group.silent_for() < 1, 60, "both workers reporting")
        os.kill(group.workers[1]._process.pid, signal.SIGKILL)  # type: ignore[arg-type]
        wait_until(lambda: not group.alive(), 30, "the group seen dead")
        assert group.workers[0].alive()
        started = time.monotonic()
        assert group.last_report().fatal is None  # killed, not a bug: the supervisor restarts it
        assert time.monotonic() - started < 5
    finally:
        group.stop(timeout=10)
    assert not any(w.alive() for w in group.workers)
