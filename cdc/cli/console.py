"""What `cdc demo` and `cdc run` print while they run: the banner and one live status line."""

from __future__ import annotations

import sys
import time

from cdc.bridge import Bridge
from cdc.mirror.table import mirror_name


def say(text: str) -> None:
    print(text, flush=True)


class StatusLine:
    """One live line on a terminal (a line every 10 s otherwise): captured, applied, rate, lag, freshness."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.tty = sys.stdout.isatty()
        self._last = (time.monotonic(), 0)
        self._printed = 0.0
        self._dead: tuple[float, int | None] = (0.0, 0)

    def tick(self, force: bool = False) -> None:
        self.bridge.observer.sample()
        now = time.monotonic()
        if not force and now - self._printed < (1.0 if self.tty else 10.0):
            return
        services = self.bridge.services
        applied = sum(s.messages for s in services)
        captured = self.bridge.records_produced
        then, before = self._last
        rate = (applied - before) / max(now - then, 1e-6)
        self._last, self._printed = (now, applied), now
        lag = sum(max(0, end - s.committed.get(tp, 0)) for s in services for tp, end in s.highwater.items())
        newest = max((s.last_captured_ms for s in services), default=0)
        fresh = "-" if not newest else f"{max(0.0, time.time() - newest / 1000):.1f}s"
        if now - self._dead[0] >= 5.0:
            self._dead = (now, self.bridge.dead_letter_count())
        dead = "?" if self._dead[1] is None else f"{self._dead[1]:,}"
        reports = [v.events_report for v in self.bridge.views if v.events_report is not None]
        events = f" | events {sum(r.stored for r in reports):,}" if reports else ""
        line = (
            f"{time.strftime('%H:%M:%S')} captured {captured:,} | applied {applied:,} ({rate:,.0f}/s)"
            f"{events} | lag {lag:,} | last change {fresh} ago | dead letters {dead}"
        )
        if self.bridge.consumer_error:
            line += f" | retrying: {self.bridge.consumer_error[:80]}"
        print(("\r" + line.ljust(120)) if self.tty else line, end="" if self.tty else "\n", flush=True)

    def end(self) -> None:
        if self.tty:
            print(flush=True)


def banner(bridge: Bridge, extra: list[str]) -> None:
    say(f"ClickHouse endpoint: {bridge.clickhouse_where}")
    say(f"Kafka bootstrap:     {bridge.bootstrap}")
    say(f"Status and metrics:  {bridge.status_url}/status, {bridge.status_url}/metrics (or: cdc status)")
    for line in extra:
        say(line)
    tables = [c.name + "." + mirror_name(s.ref) for c in bridge.captures for s in c.schemas]
    say(f"Mirrored tables:     {', '.join(tables)}")
