"""The embedded broker as a bounded buffer: its topics are emptied once every lane made them durable.

Tansu's memory engine keeps every record it was given (its DeleteRecords is not implemented and
retention is not applied); the only way to free records is to delete the topic. So, every
``every_records`` records (or ``every_s`` seconds with anything new), a round:

1. asks every source's Debezium to pause: its polling thread stops sending and waits until every
   record it sent is durable in every lane (mirror and event store), then says it is paused;
2. deletes and re-creates the topics (change topics, heartbeats, domain events, dead letters) —
   nothing can write to them meanwhile, since Debezium is paused and the lanes have nothing to do;
3. tells every lane to read from offset 0 again and waits until each has;
4. lets Debezium send again.

Nothing is lost: what was deleted is in ClickHouse, and Debezium's stored position already covers
it. A round that cannot pause everything within ``pause_timeout_s`` (a lane far behind, a source
down) is called off and tried later. Memory of the broker is then bounded by what one round
holds; so is the number of batch objects per partition, which Tansu lists on every fetch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cdc.capture import SourceCapture
from cdc.errors import CdcError

log = logging.getLogger(__name__)


@dataclass
class TruncationStats:
    rounds: int = 0
    called_off: int = 0
    last_pause_s: float = 0.0
    last_round_at: float = 0.0  # wall clock


class Truncator:
    """Runs the rounds on its own thread while the bridge runs (embedded broker only)."""

    def __init__(
        self,
        captures: Sequence[SourceCapture],
        topics: Callable[[], list[str]],
        truncate: Callable[[Sequence[str]], None],
        every_records: int = 150_000,
        every_s: float = 300.0,
        pause_timeout_s: float = 120.0,
    ) -> None:
        self._captures = captures
        self._topics = topics
        self._truncate = truncate
        self.every_records = every_records
        self.every_s = every_s
        self.pause_timeout_s = pause_timeout_s
        self._round_lock = threading.Lock()
        self.stats = TruncationStats()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="broker-truncation", daemon=True)
        self._produced_at_round = 0
        self._round_started = time.monotonic()

    def start(self) -> None:
        self._round_started = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.pause_timeout_s + 30)

    def _produced(self) -> int:
        return sum(c.runner.records_produced for c in self._captures if c.runner is not None)

    def due(self) -> bool:
        produced = self._produced() - self._produced_at_round
        if produced < 0:  # a restarted Debezium counts from 0 again
            self._produced_at_round, produced = 0, self._produced()
        waited = time.monotonic() - self._round_started
        return produced >= self.every_records or (produced > 0 and waited >= self.every_s)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            if not self.due():
                continue
            try:
                self.round()
            except CdcError as e:
                log.warning("truncating the broker's topics failed (%s); trying again later", e)
                self.stats.called_off += 1
                self._round_started = time.monotonic()  # not at once again

    def round(self, while_paused: Callable[[], None] | None = None) -> bool:
        """One pause-truncate-rewind-resume round; False when it was called off (nothing changed).
        ``while_paused`` runs once everything sent is durable and nothing flows, before the topics
        are emptied (an erasure: cdc.erasure); if it raises, the round still ends (topics emptied, lanes
        rewound, Debezium resumed) and then its error is raised."""
        with self._round_lock:  # the truncator's thread and an erasure's may both want one
            return self._round(while_paused)

    def _round(self, while_paused: Callable[[], None] | None) -> bool:
        captures = self._captures
        produced = self._produced()
        started = time.monotonic()
        failed: Exception | None = None
        for capture in captures:
            capture.hold.set()  # shared with every gate of the source, a restarted one included
        try:
            if not self._wait(lambda: all(c.paused() for c in captures)):
                self.stats.called_off += 1
                log.info("broker truncation called off: Debezium did not pause within %.0f s", self.pause_timeout_s)
                self._round_started = time.monotonic()
                return False
            if while_paused is not None:
                try:
                    while_paused()
                except Exception as e:  # the round must still end with the lanes rewound
                    failed = e
            self._truncate(self._topics())
            for capture in self._captures:
                capture.rewind(capture.epoch + 1)
            if not self._wait(lambda: all(c.rewound() for c in self._captures), forever=True):
                return False  # stopping
        finally:
            for capture in captures:
                capture.hold.clear()
        self.stats.rounds += 1
        self.stats.last_pause_s = round(time.monotonic() - started, 3)
        self.stats.last_round_at = time.time()
        self._produced_at_round, self._round_started = produced, time.monotonic()
        log.info("broker topics truncated (round %d, paused %.2f s)", self.stats.rounds, self.stats.last_pause_s)
        if failed is not None:
            raise failed
        return True

    def _wait(self, done: Callable[[], bool], forever: bool = False) -> bool:
        """Poll ``done``; False on timeout (unless ``forever``: the lanes must rewind) or on stop."""
        deadline = time.monotonic() + self.pause_timeout_s
        while not done():
            if self._stop.is_set() or (not forever and time.monotonic() > deadline):
                return False
            time.sleep(0.01)
        return True
