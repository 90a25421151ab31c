"""The domain-event consumer in its own process, at a lower CPU priority than the mirror.

Translation is pure Python: in the bridge process it would share the interpreter lock with
the mirror consumer and slow the mirror down. In its own process (niceness 10 by default) it
uses what CPU the mirror leaves; under a burst the events lag, visibly, and catch up after.
It reads the change topics as consumer group ``cdc-events-<source>``, writes the event store
through the bridge's ClickHouse endpoint, and reports its counters to the bridge several
times a second. It dies with the bridge (``PR_SET_PDEATHSIG``) and ignores Ctrl-C: the
bridge tells it when to stop, after draining.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.synchronize
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from cdc.consume.backoff import Backoff
from cdc.consume.loop import ConsumerService, Stats
from cdc.embedded.children import die_with_parent
from cdc.errors import CdcError, StackError
from cdc.events.reports import WorkerConfig, WorkerReport, merged
from cdc.events.upcast import UpcastResult

log = logging.getLogger(__name__)
_REPORT_EVERY_S = 0.1


def _log_to(state_dir: str) -> None:
    log_dir = Path(state_dir) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_dir / "events.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for noisy in ("kafka", "urllib3", "clickhouse_connect"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # expected with the embedded broker's truncations (topics re-created) and on a busy machine
    for expected in ("kafka.cluster", "kafka.net.selector"):
        logging.getLogger(expected).setLevel(logging.ERROR)


class Lane(Protocol):
    """The events lane as the worker drives it (composed by :func:`cdc.bootstrap.open_events_lane`)."""

    @property
    def service(self) -> ConsumerService: ...

    def report(self, error: str | None) -> WorkerReport: ...

    def rewind(self) -> None: ...

    def upcast_stored(self, progress: Callable[[UpcastResult], None]) -> UpcastResult | None: ...

    def close(self) -> None: ...


OpenLane = Callable[[WorkerConfig], Lane]


def run_worker(
    config: WorkerConfig,
    parent: int,
    reports: Any,
    stop: multiprocessing.synchronize.Event,
    open_lane: OpenLane,
    epoch: Any,
) -> None:
    """The child process: consume, translate, publish, store, report, until ``stop``. When the bridge
    raises ``epoch`` (it truncated the broker's topics) the lane reads from offset 0 again."""
    die_with_parent(parent)()  # the same death signal the broker and Dagster children get
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(config.niceness)
    _log_to(config.state_dir)
    try:
        lane = open_lane(config)
    except CdcError as e:
        reports.put(WorkerReport(error=f"cannot start: {e}"))
        return
    lane.service.stop_on(stop)  # a warehouse retry ends as soon as the bridge says stop
    try:
        if config.worker == 0:  # one worker of the group lifts the stored events; the others need not wait
            _upcast_stored(lane, reports, config.epoch)
        _consume(lane, reports, stop, epoch, config.epoch)
    except Exception as e:  # not an outage: a bug or a broken dependency; nothing of the batch was committed
        log.exception("the domain-event consumer stopped")
        report = _report(lane, None, -1)
        report.fatal = f"{type(e).__name__}: {e}"
        reports.put(report)
        lane.close()
        sys.exit(3)
    lane.close()


def _upcast_stored(lane: Lane, reports: Any, epoch: int) -> None:
    """Before consuming: give the events stored before this registry's newest versions their latest
    shape (SQL projections read it). Usually one cheap query finds none behind. Events the lane
    writes meanwhile need nothing: it writes them in the latest shape itself."""
    try:
        result = lane.upcast_stored(lambda _: reports.put(_report(lane, None, epoch)))  # stay heard while it runs
    except CdcError as e:  # an outage: the lane's own retries wait for it; the next start upcasts
        log.warning("stored events behind the translators' latest versions were not upcast: %s", e)
        return
    if result is not None:
        for line in result.summary():
            (log.error if result.failed else log.info)("upcast stored events: %s", line)


def _consume(lane: Lane, reports: Any, stop: multiprocessing.synchronize.Event, epoch: Any, seen: int) -> None:
    backoff, last = Backoff(), 0.0
    error: str | None = None
    while not stop.is_set():
        if epoch.value != seen:
            seen = epoch.value
            lane.rewind()
            last = 0.0  # tell the bridge at once
        else:
            error = lane.service.run_once_or_back_off(backoff, stop, "events consumer")
        if time.monotonic() - last >= _REPORT_EVERY_S:
            reports.put(_report(lane, error, seen))
            last = time.monotonic()
    reports.put(_report(lane, error, seen))


def _report(lane: Lane, error: str | None, epoch: int) -> WorkerReport:
    report = lane.report(error)
    report.epoch = epoch
    return report


class EventsWorker:
    """The bridge's handle on the worker process: start, latest report, stop."""

    def __init__(self, config: WorkerConfig, open_lane: OpenLane) -> None:
        ctx = multiprocessing.get_context("spawn")  # no JVM, chDB or threads inherited
        self._reports: Any = ctx.Queue()
        self._stop = ctx.Event()
        self._epoch: Any = ctx.Value("q", config.epoch)
        args = (config, os.getpid(), self._reports, self._stop, open_lane, self._epoch)  # open_lane: pickled by name
        name = f"cdc-events-{config.source}" + (f"-{config.worker + 1}" if config.worker else "")
        self._process = ctx.Process(target=run_worker, name=name, daemon=True, args=args)
        self.report = WorkerReport(epoch=config.epoch)
        self._reader = threading.Thread(target=self._read, name="events-worker-reports", daemon=True)
        self._log = Path(config.state_dir) / "logs" / "events.log"

    def start(self) -> None:
        self._process.start()  # from the main thread: the death signal follows the forking thread
        self._reader.start()

    def _read(self) -> None:
        while self._process.is_alive() or not self._reports.empty():
            try:
                self.report = self._reports.get(timeout=0.5)
            except queue.Empty:
                continue
            except (EOFError, OSError):
                return

    @property
    def stats(self) -> Stats:
        return self.report.stats

    def silent_for(self) -> float:
        """Seconds since the worker last reported (it reports several times a second while healthy)."""
        return time.monotonic() - self.report.at

    def check(self) -> None:
        """Raise if the worker died while it should run."""
        if not self._stop.is_set() and self._process.exitcode is not None:
            cause = f": {self.report.error}" if self.report.error else ""
            raise StackError(
                f"the domain-event consumer stopped (exit code {self._process.exitcode}){cause}; see {self._log}"
            )

    def last_report(self, timeout: float = 2.0) -> WorkerReport:
        """After the process ended: its final report (read what it sent before it exited)."""
        self._reader.join(timeout)
        return self.report

    def rewind(self, epoch: int) -> None:
        """The broker truncated the topics (its ``epoch``-th truncation): read them from offset 0."""
        self._epoch.value = epoch

    @property
    def epoch(self) -> int:
        """The truncations the worker has rewound for (its latest report)."""
        return self.report.epoch

    def alive(self) -> bool:
        return self._process.is_alive()

    def request_stop(self) -> None:
        """Tell the worker to drain and exit, without waiting for it."""
        self._stop.set()

    def stop(self, timeout: float = 30.0) -> None:
        self.request_stop()
        self._process.join(timeout)
        if self._process.is_alive():
            log.warning("domain-event consumer did not stop within %.0f s; terminating it", timeout)
            self._process.terminate()
            self._process.join(5)
        self._reader.join(2)


class EventsWorkers:
    """Several workers of one source, one consumer group: Kafka gives each a share of the change
    topics' partitions (``events_workers`` = the partitions of each change topic). The bridge sees
    them as one worker (the same handle as :class:`EventsWorker`): reports merged, rewinds and stops
    sent to all, and the group is alive only while every member is."""

    def __init__(self, config: WorkerConfig, open_lane: OpenLane, count: int) -> None:
        self.workers = [EventsWorker(replace(config, worker=i), open_lane) for i in range(count)]

    @property
    def report(self) -> WorkerReport:
        return merged([w.report for w in self.workers])

    @property
    def stats(self) -> Stats:
        return self.report.stats

    def start(self) -> None:
        for w in self.workers:
            w.start()

    def silent_for(self) -> float:
        return max(w.silent_for() for w in self.workers)

    def check(self) -> None:
        for w in self.workers:
            w.check()

    def last_report(self, timeout: float = 2.0) -> WorkerReport:
        """The dead workers' final reports (the others' latest) merged."""
        return merged([w.report if w.alive() else w.last_report(timeout) for w in self.workers])

    def rewind(self, epoch: int) -> None:
        for w in self.workers:
            w.rewind(epoch)

    @property
    def epoch(self) -> int:
        return min(w.epoch for w in self.workers)

    def alive(self) -> bool:
        return all(w.alive() for w in self.workers)

    def stop(self, timeout: float = 30.0) -> None:
        for w in self.workers:
            w.request_stop()  # all drain at once, then each is waited for
        for w in self.workers:
            w.stop(timeout)
