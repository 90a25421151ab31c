"""A restart on a quiet source: the slot advances and `--until-caught-up` returns without new changes.

Issue 11, part 1: the bridge is stopped right after changes to a captured table, then only tables
it does not capture change. Debezium's stored position is then a COMMIT; after the restart the
connector searches the WAL for a later COMMIT before it lets the slot move. Heartbeats that are
not transactional never end that search: the slot pinned WAL forever and `--until-caught-up`
never returned although every row was in ClickHouse.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import BridgeProcess, sql, start_bridge
from tests.polling import wait_until

pytestmark = pytest.mark.e2e


def _slot(dsn: str) -> tuple[int, int]:
    """(confirmed_flush_lsn, pg_current_wal_lsn) of the database's slot, as numbers."""
    row = sql(
        dsn,
        "SELECT confirmed_flush_lsn - '0/0'::pg_lsn, pg_current_wal_lsn() - '0/0'::pg_lsn"
        " FROM pg_replication_slots WHERE database = current_database()",
    )
    return int(row[0][0]), int(row[0][1])


def ch_rows(state_dir: Path, db: str) -> list[tuple[int, int]]:
    done = subprocess.run(
        [sys.executable, "-m", "cdc.cli", "sql", f"SELECT count(), countIf(v = 'last') FROM {db}.captured",
         "--format", "csv", "--state-dir", str(state_dir)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    count, last = done.stdout.strip().splitlines()[-1].split(",")
    return [(int(count), int(last))]


def test_restart_on_a_quiet_source_lets_the_slot_advance_and_catches_up(
    database: str, state_dir: Path, bridges: list[BridgeProcess]
) -> None:
    sql(database, "CREATE TABLE captured (id int PRIMARY KEY, v text)")
    sql(database, "CREATE TABLE noise (id bigserial PRIMARY KEY, v text)")
    db = database.rsplit("/", 1)[1]
    first = start_bridge(bridges, state_dir, "--source", database, "--tables", "public.captured", "--no-events")
    ch = first.clickhouse()
    first.wait_for_line(r"Mirrored tables")
    sql(database, "INSERT INTO captured SELECT g, 'v' FROM generate_series(1, 200) g")
    wait_until(lambda: ch.query(f"SELECT count() FROM {db}.captured").result_rows == [(200,)], 60, "the inserts")
    # the newest change, and the stop right after it: Debezium's stored position is a COMMIT
    sql(database, "UPDATE captured SET v = 'last' WHERE id = 1")
    time.sleep(0.5)
    assert first.stop() == 0

    # only tables the bridge does not capture change from now on
    for _ in range(20):
        sql(database, "INSERT INTO noise (v) SELECT repeat('x', 500) FROM generate_series(1, 500)")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "cdc.cli", "run", "--source", database, "--tables", "public.captured", "--no-events",
         "--until-caught-up", "--timeout", "120", "--state-dir", str(state_dir)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "caught up" in done.stdout
    assert time.monotonic() - started < 90
    assert ch_rows(state_dir, db) == [(200, 1)]

    # an idle bridge: the slot follows the WAL within a few heartbeats, and a stop takes seconds
    idle = start_bridge(bridges, state_dir, "--source", database, "--tables", "public.captured", "--no-events")
    idle.wait_for_line(r"Mirrored tables")
    _, wal_now = _slot(database)
    wait_until(lambda: _slot(database)[0] >= wal_now, 60, "the slot to confirm past the WAL position at the start")
    t0 = time.monotonic()
    assert idle.stop() == 0
    assert time.monotonic() - t0 < 20
    assert "not yet in ClickHouse" not in idle.output()
    assert "Traceback" not in idle.output() + done.stdout + done.stderr
