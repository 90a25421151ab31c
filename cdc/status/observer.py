"""The running bridge's status snapshot: what `/status`, `/metrics` and `cdc status` show.

Built on demand (the metrics server caches it for a second) from the consumers' counters, the
source's ``pg_replication_slots`` and ClickHouse's dead letters. A part that cannot be asked
(a source down, a query failing) shows as unknown, never as a made-up zero. The observer sees
the bridge only through the narrow :class:`BridgeView` and :class:`SourceView` protocols.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

from cdc.consume.loop import Stats
from cdc.errors import CdcError
from cdc.ports import SlotInfo
from cdc.status import (
    LoadProgress,
    RateWindow,
    ReportStatus,
    SchemaNotice,
    SourceStatus,
    StatusSnapshot,
    TableNames,
    TopicLag,
    utc_now_iso,
)

log = logging.getLogger(__name__)
NOTICES_SHOWN_FOR_S = 7 * 24 * 3600.0  # schema changes stay in cdc.schema_notices; status shows a week of them
SILENT_AFTER_S = 60.0  # an events worker silent this long is reported

# Dead letters not yet republished by `cdc dlq replay`, per change topic
PENDING_DEAD_LETTERS = """
SELECT d.topic, count() FROM (SELECT DISTINCT topic, partition, offset, stage FROM cdc.dead_letters FINAL) AS d
LEFT ANTI JOIN (SELECT topic, partition, offset, stage FROM cdc.dead_letter_replays FINAL
                WHERE outcome = 'republished') AS r
    ON r.topic = d.topic AND r.partition = d.partition AND r.offset = d.offset AND r.stage = d.stage
GROUP BY d.topic
"""


class EventsView(Protocol):
    @property
    def stored(self) -> int: ...


class SourceView(Protocol):
    """What the observer reads of one source."""

    @property
    def name(self) -> str: ...

    @property
    def where(self) -> str: ...

    @property
    def slot(self) -> str: ...

    @property
    def topics(self) -> list[str]: ...

    @property
    def events_report(self) -> Any: ...

    def mirror_stats(self) -> Stats | None: ...

    def captured(self) -> int: ...

    def slot_info(self) -> SlotInfo | None: ...

    def schema_notices(self) -> Sequence[Any]: ...

    def errors(self, silent_after_s: float) -> list[str]: ...

    def in_flight(self) -> int | None: ...

    def load_progress(self) -> list[Any]:
        """The copy path's initial load, per table (cdc.mirror.initial_load.Progress)."""
        ...

    def table_names(self) -> list[tuple[str, str, str]]:
        """(source table, topic, ClickHouse name) of every captured table."""
        ...

    @property
    def epoch(self) -> int: ...


class BridgeView(Protocol):
    """What the observer reads of the bridge as a whole."""

    @property
    def state_dir(self) -> str: ...

    @property
    def clickhouse_where(self) -> str:
        """The warehouse URL without credentials."""
        ...

    @property
    def bootstrap(self) -> str: ...

    @property
    def sources(self) -> Sequence[SourceView]: ...

    def pending_dead_letters(self) -> dict[str, int]:
        """Dead letters not yet replayed, per change topic; raises CdcError when it cannot tell."""
        ...

    def report_lags(self) -> Sequence[Any]:
        """Each built report's watermark, pending events and lag (pipelines.freshness.ReportLag);
        raises CdcError when it cannot tell."""
        ...

    @property
    def truncates(self) -> bool:
        """Whether the bridge empties its (embedded) broker's topics once durable."""
        ...


class Observer:
    """Keeps a one-minute rate window per source and builds snapshots of a :class:`BridgeView`."""

    def __init__(self, bridge: BridgeView) -> None:
        self.bridge = bridge
        self.started = time.monotonic()
        self._rates: dict[str, RateWindow] = {}

    def sample(self) -> None:
        """Record each source's applied count (called from the status loop and by each snapshot)."""
        now = time.monotonic()
        for c in self.bridge.sources:
            stats = c.mirror_stats()
            if stats is not None:
                self._rates.setdefault(c.name, RateWindow()).add(now, stats.rows)

    def snapshot(self) -> StatusSnapshot:
        self.sample()
        dead = self._pending_dead_letters()
        sources = tuple(self._source(c, dead) for c in self.bridge.sources)
        total = None if dead is None else sum(dead.values())
        return StatusSnapshot(
            generated_at=utc_now_iso(),
            state_dir=self.bridge.state_dir,
            uptime_s=round(time.monotonic() - self.started, 1),
            clickhouse_url=self.bridge.clickhouse_where,
            kafka_bootstrap=self.bridge.bootstrap,
            sources=sources,
            dead_letters=total,
            reports=self._reports(),
        )

    def _reports(self) -> tuple[ReportStatus, ...] | None:
        try:
            lags = self.bridge.report_lags()
        except CdcError as e:
            log.warning("cannot read the reports' watermarks: %s", e)
            return None
        return tuple(
            ReportStatus(r.name, r.watermark.isoformat().replace("+00:00", "Z"), r.pending_events, round(r.lag_s, 3))
            for r in lags
        )

    def _source(self, c: SourceView, dead: dict[str, int] | None) -> SourceStatus:
        stats = c.mirror_stats() or Stats()
        active, retained, unreachable = self._slot(c)
        report = c.events_report
        freshness = None if not stats.last_captured_ms else max(0.0, time.time() - stats.last_captured_ms / 1000)
        rate = self._rates.get(c.name)
        return SourceStatus(
            name=c.name,
            dsn=c.where,
            slot=c.slot,
            slot_active=active,
            retained_wal_bytes=retained,
            captured=c.captured(),
            applied=stats.rows,
            rows_per_s_1m=round(rate.rate(time.monotonic()), 1) if rate else 0.0,
            freshness_s=None if freshness is None else round(freshness, 3),
            events_stored=report.stored if report is not None else None,
            events_authored=report.authored if report is not None else None,
            deadline_alerts=report.alerts if report is not None else None,
            deadlines_open=report.deadlines_open if report is not None else None,
            dead_letters=None if dead is None else sum(n for t, n in dead.items() if t.startswith(c.name + ".")),
            topics=_topics(stats, c.topics),
            schema_notices=tuple(
                SchemaNotice(n.table, n.kind, n.column, n.detail)
                for n in c.schema_notices()
                if n.first_seen_at >= time.time() - NOTICES_SHOWN_FOR_S
            ),
            errors=tuple(c.errors(SILENT_AFTER_S)) + ((unreachable,) if unreachable else ()),
            in_flight=c.in_flight(),
            broker_truncations=c.epoch if self.bridge.truncates else None,
            tables=tuple(TableNames(*names) for names in c.table_names()),
            initial_load=tuple(
                LoadProgress(
                    p.table,
                    p.copied,
                    p.estimate,
                    p.chunks_done,
                    p.chunks,
                    round(p.rate, 1),
                    p.eta_s,
                    p.events_done,
                    p.events_skipped,
                )  # fmt: skip
                for p in c.load_progress()
            ),
        )

    @staticmethod
    def _slot(c: SourceView) -> tuple[bool | None, int | None, str | None]:
        try:
            slot = c.slot_info()
        except CdcError as e:
            log.warning("cannot read the replication slot of %s: %s", c.name, e)
            return None, None, f"cannot read the replication slot: {e}"
        return (slot.active, slot.retained_wal_bytes, None) if slot is not None else (None, None, None)

    def _pending_dead_letters(self) -> dict[str, int] | None:
        try:
            return self.bridge.pending_dead_letters()
        except CdcError as e:
            log.warning("cannot count dead letters: %s", e)
            return None


def _topics(stats: Stats, topics: list[str]) -> tuple[TopicLag, ...]:
    highwater, done = dict(stats.highwater), dict(stats.committed)  # copies: the consumer thread updates them
    out = []
    for topic in topics:
        parts = [(tp, end) for tp, end in highwater.items() if tp[0] == topic]
        end = sum(e for _, e in parts)
        committed = sum(done.get(tp, 0) for tp, _ in parts)
        lag = sum(max(0, e - done.get(tp, 0)) for tp, e in parts)
        out.append(TopicLag(topic, lag, committed, end))
    return tuple(out)
