"""`cdc resync TABLE` on the real stack: a mirror made to drift (a row it should not have, values changed,
a row missing) is reloaded from PostgreSQL into a shadow table and swapped in while the application
keeps writing; queries never see a half-loaded table, and the result equals PostgreSQL value by value."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import BridgeProcess, sql, start_bridge
from tests.e2e.test_initial_load import CHUNKS, ROWS, SCHEMA, Writer, _equal
from tests.polling import wait_until

pytestmark = pytest.mark.e2e


def _count(ch: Any, db: str) -> int:
    return int(ch.query(f"SELECT count() FROM `{db}`.readings").result_rows[0][0])


def test_resync_repairs_a_drifted_mirror_while_writes_go_on(
    database: str, state_dir: Path, bridges: list[BridgeProcess]
) -> None:
    sql(database, SCHEMA)
    db = database.rsplit("/", 1)[1]
    bridge = start_bridge(bridges, state_dir, "--source", database, "--initial-load", "copy", "--no-events")
    ch = bridge.clickhouse()
    wait_until(lambda: _equal(ch, db, database), 300, "the initial load, exact")
    writer = Writer(database)
    writer.start()

    # drift, as a bug or a hand-made change would leave it: versions above any LSN, so the stream cannot heal it
    state = f"`{db}`.`_state_readings`"
    columns = "id, sensor, value, at, note, _version, _is_deleted, _lsn, _txid, _commit_ts, _op"
    ch.command(f"INSERT INTO {state} ({columns}) VALUES (-5, 0, 0, now64(), 'ghost', 2e18, 0, 0, NULL, now64(), 'c')")
    ch.command(f"INSERT INTO {state} ({columns}) SELECT id, sensor, value, at, 'drifted', 2e18, 0, 0, NULL, now64(),"
               f" 'u' FROM {state} FINAL WHERE id BETWEEN 1000 AND 1099")  # fmt: skip
    ch.command(f"INSERT INTO {state} ({columns}) SELECT id, sensor, value, at, note, 2e18, 1, 0, NULL, now64(), 'd'"
               f" FROM {state} FINAL WHERE id BETWEEN 2000 AND 2009")  # fmt: skip
    assert not _equal(ch, db, database)

    low = [ROWS]  # the smallest count a query saw during the resync
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.05):
            try:
                low[0] = min(low[0], _count(ch, db))
            except Exception:  # noqa: S110 (a query refused while the swap happens would show up as a low count)
                low[0] = 0

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    run = subprocess.run(
        [sys.executable, "-m", "cdc.cli", "resync", "public.readings", "--state-dir", str(state_dir)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    stop.set()
    watcher.join()
    assert run.returncode == 0, run.stdout + run.stderr
    assert "started" in run.stdout and "done" in run.stdout and f"chunk {CHUNKS}/{CHUNKS}" in run.stdout, run.stdout
    assert low[0] > ROWS * 0.95, f"a query saw {low[0]} rows during the resync: a half-loaded table"

    writer.stop()
    wait_until(lambda: _equal(ch, db, database), 300, "ClickHouse equal to PostgreSQL after the resync")
    assert writer.transactions > 20
    tables = {r[0] for r in ch.query(f"SHOW TABLES FROM `{db}`").result_rows}
    assert not any(t.startswith(("_resync_", "_mv_resync_")) for t in tables), tables  # the shadow is gone

    refused = subprocess.run(
        [sys.executable, "-m", "cdc.cli", "resync", "public.nope", "--state-dir", str(state_dir)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert refused.returncode == 2 and "public.nope is not captured" in refused.stderr, refused.stderr
    assert "public.readings" in refused.stderr  # says what is captured
    listed = subprocess.run(
        [sys.executable, "-m", "cdc.cli", "resync", "--list", "--state-dir", str(state_dir)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert listed.returncode == 0 and "public.readings: done" in listed.stdout, listed.stdout + listed.stderr
    assert bridge.stop() == 0
    assert "Traceback" not in bridge.output()
