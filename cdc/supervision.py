"""Watching one source's parts while the bridge runs, and healing what can be healed.

A lane stopped by a bug, or an events worker that reported a fatal error, stops the bridge: that is
not bad data and not an outage, and retrying would only repeat it. A dead events worker or a failed
Debezium is restarted with backoff; both resume from the last durable position. Debezium losing its
replication connection (PostgreSQL restarting) reconnects by itself; this only says so. Every such
incident is logged, printed, and listed by `cdc status` for ten minutes.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from cdc.consume.backoff import Backoff
from cdc.consume.lane import Lane
from cdc.errors import CdcError, StackError
from cdc.wiring import CaptureRunner, EventsHandle

log = logging.getLogger(__name__)
Say = Callable[[str], None]
INCIDENTS_SHOWN_FOR_S = 600.0


def failure_of(runner: CaptureRunner | None) -> str | None:
    """Why Debezium stopped, if it did."""
    if runner is None:
        return None
    try:
        runner.raise_if_failed()
    except CdcError as e:
        return str(e)
    return None


def step(say: Say, what: str, action: Callable[[], object]) -> None:
    """One step of a stop or restart: a failure is logged and said, and the next steps still run."""
    try:
        action()
    except (Exception, KeyboardInterrupt) as e:
        log.error("%s failed: %s", what, e, exc_info=True)
        say(f"warning: {what} failed: {e}")


class Supervisor:
    """The incidents and restart backoffs of one source."""

    def __init__(self, name: Callable[[], str], say: Say, log_dir: Path) -> None:
        self._name = name
        self._say = say
        self._log_dir = log_dir
        self.incidents: deque[tuple[float, str]] = deque(maxlen=20)
        self._backoff = {"events": Backoff(2.0, 60.0), "debezium": Backoff(2.0, 60.0)}
        self._retry_at = {"events": 0.0, "debezium": 0.0}
        self.connected: bool | None = None  # Debezium streaming from the slot, as last seen
        self._next_link_check = 0.0

    def check(
        self,
        lane: Lane | None,
        events: EventsHandle | None,
        runner: CaptureRunner | None,
        restart_events: Callable[[], None],
        restart_debezium: Callable[[], None],
    ) -> None:
        """Raise (StackError) for what must stop the bridge; restart what may be restarted."""
        if lane is not None and lane.failure is not None:
            raise StackError(
                f"the {lane.name} consumer stopped: {type(lane.failure).__name__}: {lane.failure}; "
                f"nothing after its last commit was committed (see {self._log_dir / 'cdc.log'})"
            )
        now = time.monotonic()
        if events is not None and not events.alive():
            fatal = events.last_report().fatal
            if fatal:
                raise StackError(
                    f"the domain-event consumer of {self._name()} stopped: {fatal}; nothing after its "
                    f"last commit was committed (see {self._log_dir / 'events.log'})"
                )
            if now >= self._retry_at["events"]:
                self._restart("events", "the domain-event worker exited", restart_events)
        failure = failure_of(runner)
        if runner is not None and failure is not None and now >= self._retry_at["debezium"]:
            self._restart("debezium", f"Debezium stopped ({failure})", restart_debezium)
        elif runner is not None and failure is None and now >= self._next_link_check:
            self._watch_link(runner)

    def _watch_link(self, runner: CaptureRunner) -> None:
        """Say when Debezium loses its replication connection, and when it has it back."""
        self._next_link_check = time.monotonic() + 1.0
        connected = runner.connected()
        if connected is False and self.connected:
            self.note("Debezium lost its connection to PostgreSQL; it reconnects by itself every 10 s")
        elif connected and self.connected is False:
            self.note("Debezium is connected to PostgreSQL again")
        if connected is not None:
            self.connected = connected

    def _restart(self, part: str, why: str, start: Callable[[], None]) -> None:
        delay = self._backoff[part].next_delay()
        self._retry_at[part] = time.monotonic() + delay
        self.note(f"{why}; restarting it (it re-reads from the last durable position)")
        try:
            start()
        except CdcError as e:
            self.note(f"restarting {part} failed: {e}; next attempt in {delay:.0f} s")
            return
        self._backoff[part].reset()

    def note(self, text: str) -> None:
        """An incident worth a person's attention: logged, said, and shown by `cdc status` for a while."""
        log.warning("source %s: %s", self._name(), text)
        self._say(f"warning: source {self._name()}: {text}")
        self.incidents.append((time.time(), text))

    def errors(self, runner: CaptureRunner | None) -> list[str]:
        """Debezium's failure or lost connection, and the incidents of the last ten minutes."""
        errors = []
        failure = failure_of(runner)
        if failure:
            errors.append(f"debezium {self._name()}: {failure}")
        elif self.connected is False:
            errors.append(f"debezium {self._name()}: not connected to PostgreSQL (reconnecting)")
        recent = time.time() - INCIDENTS_SHOWN_FOR_S
        return errors + [
            f"{time.strftime('%H:%M:%S', time.localtime(t))} {text}" for t, text in self.incidents if t >= recent
        ]
