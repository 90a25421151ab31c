"""What the bridge tells the events worker process, and what the worker reports back (picklable)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from cdc.consume.loop import Stats
from cdc.ports import TopicPartition


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
    worker: int = 0  # which of the source's events workers (one consumer group; 0 upcasts the store at start)
    message_topic: str = ""  # the source's logical messages (heartbeat ticks, authored events); "" = not read
    outbox_tables: tuple[str, ...] = ()  # ``schema.table`` whose inserted rows are authored events
    outbox_prefix: str = ""  # logical messages with this prefix are authored events


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
    authored: int = 0  # events applications wrote themselves (outbox rows, logical messages)
    alerts: int = 0  # events deadline rules emitted
    deadlines_open: int = 0  # deadlines started and not yet ended or passed


def merged(reports: list[WorkerReport]) -> WorkerReport:
    """One report for several workers of one consumer group, as the bridge reads one worker's.

    Counts add up. Per partition the highest committed offset and high watermark win: they are the
    group's (a partition that moved to another worker keeps its old owner's last commit, which the
    new owner only raises). The oldest report's time, the lowest epoch and the earliest fetch count:
    the group is as far as its slowest member.
    """
    if len(reports) == 1:
        return reports[0]
    committed: dict[TopicPartition, int] = {}
    highwater: dict[TopicPartition, int] = {}
    for r in reports:
        for tp, offset in r.stats.committed.items():
            committed[tp] = max(offset, committed.get(tp, 0))
        for tp, offset in r.stats.highwater.items():
            highwater[tp] = max(offset, highwater.get(tp, 0))
    stats = [r.stats for r in reports]
    return WorkerReport(
        stats=Stats(
            messages=sum(s.messages for s in stats),
            rows=sum(s.rows for s in stats),
            tombstones=sum(s.tombstones for s in stats),
            dead_letters=sum(s.dead_letters for s in stats),
            batches=sum(s.batches for s in stats),
            retries=sum(s.retries for s in stats),
            last_captured_ms=max(s.last_captured_ms for s in stats),
            committed=committed,
            highwater=highwater,
            highwater_at=min(s.highwater_at for s in stats),
            last_error=next((s.last_error for s in stats if s.last_error), None),
        ),
        translated=sum(r.translated for r in reports),
        stored=sum(r.stored for r in reports),
        error=next((r.error for r in reports if r.error), None),
        epoch=min(r.epoch for r in reports),
        fatal=next((r.fatal for r in reports if r.fatal), None),
        authored=sum(r.authored for r in reports),
        alerts=sum(r.alerts for r in reports),
        deadlines_open=sum(r.deadlines_open for r in reports),
        at=min(r.at for r in reports),
    )
