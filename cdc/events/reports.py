"""What the bridge tells the events worker process, and what the worker reports back (picklable)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from cdc.consume.loop import Stats


@dataclass(frozen=True)
class WorkerConfig:
    source: str
    source_dsn: str = field(repr=False)  # may hold a password
    bootstrap: str
    clickhouse_url: str = field(repr=False)
    state_dir: str
    topics: tuple[str, ...]
    translators: tuple[str, ...]
    group: str = ""  # the consumer group (cdc-events-<source>, a suffix after a broker restart)
    niceness: int = 10
    epoch: int = 0  # the broker truncations that happened before the worker started
    snapshot_events: bool = True  # translate existing rows (op r); off: they make no event


@dataclass
class WorkerReport:
    """What the worker tells the bridge: the loop's counters plus the event counts."""

    stats: Stats = field(default_factory=Stats)
    translated: int = 0
    stored: int = 0
    error: str | None = None
    epoch: int = 0  # the broker truncations the worker has rewound for
    fatal: str | None = None  # what stopped the worker for good (a bug, a broken dependency): not retried
    at: float = field(default_factory=time.monotonic)  # when it was sent (one clock for all processes)
