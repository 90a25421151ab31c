"""`cdc add-table` on the real stack: a bridge capturing one table takes a second one (600,000 existing rows)
while the application writes to both; the new table is copied and joins the stream, the first keeps
streaming, both end equal to PostgreSQL value by value, and a restart keeps capturing the added table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import BridgeProcess, SourceLoad, sql, start_bridge, status_json
from tests.e2e.test_initial_load import CHUNKS, ROWS, SCHEMA, Writer, _equal
from tests.polling import wait_until

pytestmark = pytest.mark.e2e


class Ticks(SourceLoad):
    """Inserts and updates into the table captured from the start."""

    def step(self, conn: Any) -> None:
        conn.execute("INSERT INTO ticks (v) VALUES (md5(random()::text))")
        conn.execute("UPDATE ticks SET v = v || 'x' WHERE id = (SELECT max(id) - 3 FROM ticks)")


def _ticks_equal(ch: Any, db: str, dsn: str) -> bool:
    try:
        mirror = sorted(ch.query(f"SELECT id, v FROM `{db}`.ticks").result_rows)
    except Exception:
        return False
    return [tuple(r) for r in mirror] == [tuple(r) for r in sql(dsn, "SELECT id, v FROM ticks ORDER BY id")]


def _chunks_done(state_dir: Path) -> dict[str, int]:
    sources = status_json(state_dir).get("sources") or [{}]
    return {p["table"]: p["chunks_done"] for p in sources[0].get("initial_load") or []}


def _add(state_dir: Path, *tables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdc.cli", "add-table", *tables, "--state-dir", str(state_dir)],
        capture_output=True, text=True, timeout=400,
    )  # fmt: skip


def test_a_table_added_to_a_running_bridge_is_copied_then_streamed(
    database: str, state_dir: Path, bridges: list[BridgeProcess]
) -> None:
    sql(database, "CREATE TABLE ticks (id bigserial PRIMARY KEY, v text NOT NULL)")
    sql(database, SCHEMA)
    db = database.rsplit("/", 1)[1]
    args = ("--source", database, "--tables", "public.ticks", "--no-events")
    bridge = start_bridge(bridges, state_dir, *args)
    ch = bridge.clickhouse()
    ticks, writer = Ticks(database), Writer(database)
    ticks.start()
    writer.start()  # writes into readings before, during and after it is added
    wait_until(lambda: ticks.transactions > 20, 60, "writes into ticks")

    added = _add(state_dir, "public.readings")
    assert added.returncode == 0, added.stdout + added.stderr
    assert "now captures public.readings" in added.stdout
    wait_until(lambda: _chunks_done(state_dir).get("public.readings") == CHUNKS, 300, "readings copied")
    again = _add(state_dir, "public.readings")
    assert again.returncode == 2 and "already" in again.stderr, again.stderr
    missing = _add(state_dir, "public.nope")
    assert missing.returncode == 2 and "nope" in missing.stderr, missing.stderr

    writer.stop()
    ticks.stop()
    wait_until(lambda: _equal(ch, db, database), 300, "readings equal to PostgreSQL, value by value")
    wait_until(lambda: _ticks_equal(ch, db, database), 120, "ticks equal to PostgreSQL")
    assert writer.transactions > 20
    assert bridge.stop() == 0
    assert "Traceback" not in bridge.output()

    # a restart with the same flags (which do not name readings) goes on capturing it
    sql(database, f"INSERT INTO readings VALUES ({ROWS * 100}, 5, 2.5, now(), 'after the restart')")
    restarted = start_bridge(bridges, state_dir, *args)
    ch = restarted.clickhouse()
    wait_until(lambda: _equal(ch, db, database), 180, "the row written while the bridge was down")
    assert restarted.stop() == 0
