"""The bridge's handle on the events worker process, without starting it."""

from __future__ import annotations

import time
from dataclasses import replace

from cdc.bootstrap import open_events_lane
from cdc.consume.loop import Stats
from cdc.events.reports import WorkerConfig, WorkerReport, merged
from cdc.events.worker import EventsWorker, EventsWorkers


def _worker() -> EventsWorker:
    return EventsWorker(_config(), open_events_lane)


def test_silence_is_measured_from_the_last_report() -> None:
    worker = _worker()
    worker.report = WorkerReport(at=time.monotonic() - 40)
    assert 39 < worker.silent_for() < 60
    worker.report = WorkerReport()
    assert worker.silent_for() < 1


def test_the_config_never_shows_the_password() -> None:
    assert "secret" not in repr(_worker()._process._args[0])  # type: ignore[attr-defined]


def _config(**changes: object) -> WorkerConfig:
    base = WorkerConfig(
        source="shop",
        source_dsn="postgresql://u:secret@h/db",
        bootstrap="h:1",
        clickhouse_url="http://h:2",
        state_dir="/tmp/unused",
        topics=("shop.public.t",),
        translators=(),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_several_workers_are_one_group_and_only_the_first_upcasts() -> None:
    group = EventsWorkers(_config(group="cdc-events-shop"), open_events_lane, 3)
    configs = [w._process._args[0] for w in group.workers]  # type: ignore[attr-defined]
    assert [c.worker for c in configs] == [0, 1, 2]
    assert {c.group for c in configs} == {"cdc-events-shop"}
    assert [w._process.name for w in group.workers] == ["cdc-events-shop", "cdc-events-shop-2", "cdc-events-shop-3"]


def test_merged_reports_count_everything_and_keep_the_groups_furthest_commit() -> None:
    t = ("shop.public.t", 0), ("shop.public.t", 1)
    a = WorkerReport(
        Stats(
            messages=10, rows=9, dead_letters=1, committed={t[0]: 50, t[1]: 7}, highwater={t[0]: 60}, highwater_at=5.0
        ),
        translated=9,
        stored=9,
        epoch=2,
        at=100.0,
    )
    b = WorkerReport(  # took partition 1 over from a: its commit there is the group's
        Stats(messages=5, rows=5, committed={t[1]: 30}, highwater={t[1]: 31}, highwater_at=3.0, last_error="down"),
        translated=5,
        stored=4,
        epoch=1,
        at=90.0,
    )
    m = merged([a, b])
    assert (m.stats.messages, m.stats.rows, m.stats.dead_letters, m.translated, m.stored) == (15, 14, 1, 14, 13)
    assert m.stats.committed == {t[0]: 50, t[1]: 30}
    assert m.stats.highwater == {t[0]: 60, t[1]: 31}
    assert (m.stats.highwater_at, m.epoch, m.at, m.stats.last_error) == (3.0, 1, 90.0, "down")  # the slowest member
    assert merged([a]) is a


def test_the_group_is_alive_only_while_every_worker_is() -> None:
    group = EventsWorkers(_config(), open_events_lane, 2)
    assert not group.alive()  # not started
    group.workers[0].report = WorkerReport(at=time.monotonic() - 30)
    group.workers[1].report = WorkerReport()
    assert 29 < group.silent_for() < 60  # the most silent member
