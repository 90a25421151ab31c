"""Debezium's position held back to what every lane has made durable in ClickHouse.

Delivery guarantee: Debezium stores an offset (and the PostgreSQL connector confirms its LSN to
the replication slot) only for records it was told are processed. The forwarder tells it only
once every lane reading the record's topic has *committed* past the record's Kafka offset, and a
lane commits only after ClickHouse accepted the batch. So the slot never moves past a change that
is not yet in the mirror and the event store: after any crash (the embedded broker's memory
gone with it) Debezium re-streams from the last durable position, and LSN versioning makes the
repeat harmless. It is the pattern of Altinity's ClickHouse sink (the RecordCommitter handed to
the writer) and Debezium Server's RocketMQ sink (acked records marked in order).

Pure Python: the JVM side (:mod:`cdc.debezium.forwarder`) calls :meth:`DurabilityGate.admit`
after the broker acknowledged a batch and :meth:`DurabilityGate.releasable` before and after each
batch, on Debezium's one polling thread (its record committer is not thread-safe). Marking a
batch's last record is enough: offsets are last-write-wins per source partition, and the
PostgreSQL connector has one.

The gate is also the backpressure: while more than ``max_in_flight`` records are produced but not
yet durable, the polling thread waits (Debezium's queue then fills and its reader pauses; the WAL
stays in the slot, where it is durable). That bounds what the broker must hold.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass
from typing import Any

TopicPartition = tuple[str, int]
DurableOffsets = Callable[[], Mapping[TopicPartition, int]]  # next offset every lane has committed


@dataclass(frozen=True, slots=True)
class Batch:
    """A batch the broker acknowledged: its last record and the highest Kafka offset per partition."""

    last_record: Any
    offsets: Mapping[TopicPartition, int]
    records: int
    past_snapshot: bool


class DurabilityGate:
    """Batches acknowledged by the broker but not yet durable in every lane, oldest first."""

    def __init__(
        self,
        durable: DurableOffsets,
        consumed: Callable[[], Set[str]],
        max_in_flight: int = 200_000,
        sleep: Callable[[float], None] = time.sleep,
        pause: threading.Event | None = None,
    ) -> None:
        self._durable = durable
        self._consumed = consumed  # topics some lane reads; records of the others (heartbeats) need no lane
        self.max_in_flight = max_in_flight
        self._sleep = sleep
        self._pending: deque[Batch] = deque()
        self._lock = threading.Lock()  # guards the counters the bridge reads from other threads
        self.in_flight = 0
        self.released = 0
        self.snapshot_durable = False
        self.draining = threading.Event()
        self.waiting_since: float | None = None  # when backpressure last made the polling thread wait
        # a pause (the embedded broker's truncation): the polling thread sends nothing while it is set;
        # shared by every gate of one source, so a Debezium restarted meanwhile starts paused too
        self.pause_requested = pause or threading.Event()
        self.paused = threading.Event()  # set by the polling thread once nothing it sent is in flight

    @property
    def pending_batches(self) -> int:
        return len(self._pending)

    def admit(self, batch: Batch) -> None:
        with self._lock:
            self._pending.append(batch)
            self.in_flight += batch.records

    def not_durable(self) -> int:
        """Records sent but not yet durable in every lane, as of now (read from any thread).

        ``in_flight`` counts what Debezium has not been told is durable: the polling thread tells it
        on its next batch, so on an idle source the last heartbeat tick stays in ``in_flight`` until
        the next one, although the lanes committed it long ago. This is what status shows."""
        with self._lock:
            pending = list(self._pending)
        durable, consumed = self._durable(), self._consumed()
        return sum(b.records for b in pending if not _durable(b, durable, consumed))

    def releasable(self) -> Batch | None:
        """Pop every batch, oldest first, that all lanes have made durable; the newest of them (whose
        last record the caller marks processed), or None when the oldest is still in flight."""
        if not self._pending:
            return None
        durable, consumed = self._durable(), self._consumed()
        newest: Batch | None = None
        while self._pending and _durable(self._pending[0], durable, consumed):
            with self._lock:
                batch = self._pending.popleft()
                self.in_flight -= batch.records
                self.released += batch.records
                self.snapshot_durable = self.snapshot_durable or batch.past_snapshot
            newest = batch
        return newest

    def wait_for_room(self, release: Callable[[], None], stop: Callable[[], bool], poll_s: float = 0.05) -> None:
        """Backpressure: wait (releasing what becomes durable) while too much is in flight."""
        if self.in_flight < self.max_in_flight:
            return
        self.waiting_since = time.monotonic()
        try:
            while self.in_flight >= self.max_in_flight and not stop():
                self._sleep(poll_s)
                release()
        finally:
            self.waiting_since = None

    def hold_while_paused(self, release: Callable[[], None], stop: Callable[[], bool], poll_s: float = 0.02) -> None:
        """On a pause request: release until nothing is in flight, say so (``paused``), and wait until
        the request is withdrawn."""
        if not self.pause_requested.is_set():
            return
        release()
        while self._pending and self.pause_requested.is_set() and not stop():
            self._sleep(poll_s)
            release()
        if self._pending or not self.pause_requested.is_set():
            return  # stopping, or the pause was called off
        self.paused.set()
        try:
            while self.pause_requested.is_set() and not stop():
                self._sleep(poll_s)
        finally:
            self.paused.clear()

    def wait_drained(self, release: Callable[[], None], stop: Callable[[], bool], poll_s: float = 0.05) -> None:
        """While draining: release batches as the lanes catch up, until none is pending (or ``stop``)."""
        release()
        while self._pending and not stop():
            self._sleep(poll_s)
            release()


def _durable(batch: Batch, durable: Mapping[TopicPartition, int], consumed: Set[str]) -> bool:
    """Every record of ``batch`` is below the offset each lane committed (committed = next to read)."""
    return all(tp[0] not in consumed or durable.get(tp, 0) > offset for tp, offset in batch.offsets.items())
