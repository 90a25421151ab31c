"""The consume loop: change topics -> a sink (mirror or domain events) -> offset commit.

Delivery guarantee: at-least-once transport, exactly-once effect. Offsets are
committed only after the warehouse stored the whole batch; the sink's writes are
idempotent (keyed by source position), so a batch delivered twice changes nothing.
A message that cannot be parsed or applied goes to the dead letters with its error
and the stream goes on; a warehouse outage is retried with exponential backoff
without committing (backpressure: nothing new is read meanwhile).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from cdc.consume.backoff import Backoff, Stopping
from cdc.consume.dead_letters import DeadLetters
from cdc.debezium.envelope import is_tombstone
from cdc.errors import BadMessage, CdcError, UnknownTableError
from cdc.ports import ChangeStream, Message, Sink, TopicPartition

log = logging.getLogger(__name__)


@dataclass
class Stats:
    """Counters the CLI status line and `--until-caught-up` read (updated by the loop thread)."""

    messages: int = 0
    rows: int = 0
    tombstones: int = 0
    dead_letters: int = 0
    batches: int = 0
    retries: int = 0
    last_captured_ms: int = 0  # broker timestamp (capture time) of the newest applied change
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    highwater: dict[TopicPartition, int] = field(default_factory=dict)
    highwater_at: float = 0.0  # monotonic time of the fetch that reported ``highwater``
    last_error: str | None = None  # the outage being retried right now, if any


class ConsumerService:
    """One lane's loop: ``run_once`` polls a batch, applies it, commits; a lane thread or process repeats it."""

    def __init__(
        self,
        stream: ChangeStream,
        sink: Sink,
        dead_letters: DeadLetters,
        stage: str = "apply",
        max_records: int = 10000,
        poll_timeout_s: float = 0.05,
        linger_s: float = 0.1,
        sleep: Callable[[float], None] | None = None,
        stopping: Stopping | None = None,
    ) -> None:
        self._stream = stream
        self._sink = sink
        self._dead = dead_letters
        self._stage = stage
        self._max_records = max_records
        self._poll_timeout_s = poll_timeout_s
        self._linger_s = linger_s
        self._stop: Stopping = stopping or threading.Event()
        self._sleep = sleep or self._stop.wait  # a retry's wait ends as soon as the lane is told to stop
        self.stats = Stats()

    def rewind(self) -> None:
        """After the broker truncated the topics: read from offset 0, forget the old offsets. Only
        between batches (on the lane's own thread), when everything read was committed."""
        self._stream.rewind()
        self.stats.committed = {}
        self.stats.highwater = {}

    def stop_on(self, stopping: Stopping) -> None:
        """Honour ``stopping`` (the lane's event) in retries too."""
        self._stop = stopping
        self._sleep = stopping.wait

    def run_once(self) -> int:
        """Poll one batch, apply it, commit. Returns the number of messages handled."""
        fetched_at = time.monotonic()
        messages = self._collect()
        self.stats.highwater = self._stream.highwater()
        self.stats.highwater_at = fetched_at
        if messages:
            self._apply_with_retry(self._by_topic(messages))
        self._finish_batch()
        if not messages:
            return 0
        offsets = _next_offsets(messages)
        self._stream.commit(offsets)
        self.stats.committed.update(offsets)
        self.stats.messages += len(messages)
        self.stats.batches += 1
        return len(messages)

    def _collect(self) -> list[Message]:
        """One batch: poll, then keep polling up to ``linger_s`` so ClickHouse gets fewer, larger inserts."""
        messages = self._stream.poll(self._poll_timeout_s, self._max_records)
        if not messages:
            return messages
        until = time.monotonic() + self._linger_s
        while len(messages) < self._max_records and time.monotonic() < until:
            more = self._stream.poll(
                max(0.0, min(self._poll_timeout_s, until - time.monotonic())), self._max_records - len(messages)
            )
            messages.extend(more)
        return messages

    def _by_topic(self, messages: list[Message]) -> dict[str, list[Message]]:
        by_topic: dict[str, list[Message]] = defaultdict(list)
        for msg in messages:
            if is_tombstone(msg.value):
                self.stats.tombstones += 1
            else:
                by_topic[msg.topic].append(msg)
        return by_topic

    def run_once_or_back_off(self, backoff: Backoff, stopping: Stopping, label: str) -> str | None:
        """One ``run_once``; on an outage log it, wait the next backoff delay (less if ``stopping``
        is set meanwhile) and return the error. What a consumer thread or process loops on."""
        try:
            self.run_once()
        except CdcError as e:
            delay = backoff.next_delay()
            log.warning("%s: %s (retrying in %.1fs)", label, e, delay)
            stopping.wait(delay)
            return str(e)
        backoff.reset()
        return None

    def _apply_with_retry(self, by_topic: dict[str, list[Message]]) -> None:
        backoff = Backoff()
        pending = dict(by_topic)
        while pending:
            topic, items = next(iter(pending.items()))
            try:
                self._apply(topic, items)
                del pending[topic]
                backoff.reset()
                self.stats.last_error = None
            except _DATA_ERRORS as e:
                self._apply_one_by_one(topic, items, e)
                del pending[topic]
            except CdcError as e:
                self._wait_out(e, backoff)

    def _finish_batch(self) -> None:
        """A sink with work after a whole batch (deadlines: cdc.events.sink) does it before the commit."""
        finish: Callable[..., None] | None = getattr(self._sink, "finish_batch", None)
        if finish is None:
            return
        backoff = Backoff()
        while True:
            try:
                finish(self._stream.positions, self.stats.highwater)  # positions: read only if needed
                return
            except CdcError as e:
                self._wait_out(e, backoff)

    def _wait_out(self, error: CdcError, backoff: Backoff) -> None:
        """An outage during a batch: wait the next backoff delay; raise if the lane is stopping."""
        if self._stop.is_set():
            raise error
        self.stats.retries += 1
        self.stats.last_error = str(error)
        delay = backoff.next_delay()
        log.warning("warehouse write failed (%s); retrying in %.1fs, offsets not committed", error, delay)
        self._sleep(delay)
        if self._stop.is_set():
            raise error  # stopping during an outage: nothing of this batch is committed

    def _apply_one_by_one(self, topic: str, items: list[Message], error: Exception) -> None:
        """Isolate the messages that cannot be applied; the good ones of the batch still land."""
        if len(items) == 1 or isinstance(error, UnknownTableError):
            for msg in items:
                self._dead_letter(msg, error)
            return
        for msg in items:
            try:
                self._apply(topic, [msg])
            except _DATA_ERRORS as e:
                self._dead_letter(msg, e)

    def _apply(self, topic: str, items: list[Message]) -> None:
        rejected = self._sink.write(topic, items)
        for r in rejected:
            self._dead_letter(r.message, r.error)
        self.stats.rows += len(items) - len(rejected)
        newest = max(m.timestamp_ms for m in items)
        self.stats.last_captured_ms = max(self.stats.last_captured_ms, newest)

    def _dead_letter(self, msg: Message, error: BaseException) -> None:
        log.error("dead letter %s[%d]@%d (%s): %s", msg.topic, msg.partition, msg.offset, self._stage, error)
        self._dead.put(msg, error, self._stage)
        self.stats.dead_letters += 1


# Only the message itself: anything else (a ValueError in our code, a broken driver) stops the lane.
_DATA_ERRORS = (BadMessage,)


def _next_offsets(messages: list[Message]) -> dict[TopicPartition, int]:
    offsets: dict[TopicPartition, int] = {}
    for m in messages:
        tp = (m.topic, m.partition)
        offsets[tp] = max(offsets.get(tp, 0), m.offset + 1)
    return offsets
