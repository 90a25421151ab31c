"""The bridge's handle on the events worker process, without starting it."""

from __future__ import annotations

import time

from cdc.bootstrap import open_events_lane
from cdc.events.reports import WorkerConfig, WorkerReport
from cdc.events.worker import EventsWorker


def _worker() -> EventsWorker:
    return EventsWorker(
        WorkerConfig(
            source="shop",
            source_dsn="postgresql://u:secret@h/db",
            bootstrap="h:1",
            clickhouse_url="http://h:2",
            state_dir="/tmp/unused",
            topics=("shop.public.t",),
            translators=(),
        ),
        open_events_lane,
    )


def test_silence_is_measured_from_the_last_report() -> None:
    worker = _worker()
    worker.report = WorkerReport(at=time.monotonic() - 40)
    assert 39 < worker.silent_for() < 60
    worker.report = WorkerReport()
    assert worker.silent_for() < 1


def test_the_config_never_shows_the_password() -> None:
    assert "secret" not in repr(_worker()._process._args[0])  # type: ignore[attr-defined]
