"""The initial load by the copy path on the real stack: parallel chunks while the application writes
(inserts, updates, deletes, key changes), a kill -9 in the middle, a restart that copies only what is
left, and a mirror equal to PostgreSQL value by value."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cdc.mirror.chunks import chunk_count
from tests.e2e.conftest import BridgeProcess, SourceLoad, sql, start_bridge, status_json
from tests.polling import wait_until

pytestmark = pytest.mark.e2e

ROWS = 600_000
CHUNKS = chunk_count(ROWS)  # four of 150,000 (estimated)
SCHEMA = f"""
CREATE TABLE readings (id bigint PRIMARY KEY, sensor int NOT NULL, value numeric(12,2), at timestamptz, note text);
INSERT INTO readings SELECT g, g % 97, g / 7.0, timestamptz '2024-01-01' + g * interval '1 s', md5(g::text)
FROM generate_series(1, {ROWS}) g;
ANALYZE readings;
"""


class Writer(SourceLoad):
    """Every kind of write, spread over the whole key range (so over every chunk), all through the load."""

    def __init__(self, dsn: str) -> None:
        super().__init__(dsn)
        self.rng = random.Random(7)
        self.next_id = ROWS + 1

    def step(self, conn: Any) -> None:
        r = self.rng
        conn.execute("INSERT INTO readings VALUES (%s, 1, 1.5, now(), 'new')", (self.next_id,))
        self.next_id += 1
        conn.execute("UPDATE readings SET value = value + 1, note = 'upd' WHERE id = %s", (r.randint(1, ROWS),))
        conn.execute("DELETE FROM readings WHERE id = %s", (r.randint(1, ROWS),))
        key = r.randint(1, ROWS)  # a key change: the row moves to a key no chunk covers yet
        conn.execute("UPDATE readings SET id = id + 10000000 WHERE id = %s", (key,))


def _rows_pg(dsn: str) -> dict[int, tuple[Any, ...]]:
    rows = sql(dsn, "SELECT id, sensor, trim_scale(value)::text,"
                    " to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), note FROM readings")  # fmt: skip
    return {int(r[0]): tuple(r[1:]) for r in rows}  # type: ignore[call-overload]


def _rows_ch(ch: Any, db: str) -> dict[int, tuple[Any, ...]]:
    try:
        rows = ch.query(f"SELECT id, sensor, toString(value), formatDateTime(at, '%Y-%m-%d %H:%i:%S.%f'), note"
                        f" FROM `{db}`.readings").result_rows  # fmt: skip
    except Exception:
        return {}
    return {int(r[0]): tuple(r[1:]) for r in rows}


def _equal(ch: Any, db: str, dsn: str) -> bool:
    """Every row, every value."""
    return _rows_ch(ch, db) == _rows_pg(dsn)


def _chunks(ch: Any, db: str) -> dict[int, tuple[int, str]]:
    rows = ch.query(
        "SELECT chunk, done, toString(updated_at) FROM cdc.initial_loads FINAL WHERE source = {s:String}",
        parameters={"s": db},
    ).result_rows
    return {int(c): (int(d), str(at)) for c, d, at in rows}


def test_copy_path_loads_while_writes_go_on_survives_kill_9_and_ends_exact(
    database: str, state_dir: Path, bridges: list[BridgeProcess]
) -> None:
    sql(database, SCHEMA)
    db = database.rsplit("/", 1)[1]
    args = ("--source", database, "--initial-load", "copy", "--no-events")
    writer = Writer(database)
    bridge = start_bridge(bridges, state_dir, *args)
    bridge.wait_for_line(r"by the copy path \(public\.readings\)")
    ch = bridge.clickhouse()
    writer.start()
    # kill -9 once at least one chunk is done and before every chunk is
    wait_until(lambda: any(d for d, _ in _chunks(ch, db).values()), 180, "a first chunk copied")
    before = _chunks(ch, db)
    bridge.kill()
    assert len(before) == CHUNKS and not all(d for d, _ in before.values()), before
    done_before = {c: at for c, (d, at) in before.items() if d}

    again = start_bridge(bridges, state_dir, *args)
    again.wait_for_line(r"Mirrored tables")
    ch = again.clickhouse()
    wait_until(lambda: all(d for d, _ in _chunks(ch, db).values()), 300, "every chunk copied")
    writer.stop()
    wait_until(lambda: _equal(ch, db, database), 300, "ClickHouse equal to PostgreSQL, value by value")
    after = _chunks(ch, db)
    progress = status_json(state_dir)["sources"][0]["initial_load"]
    assert [(p["table"], p["chunks_done"], p["chunks"], p["eta_s"]) for p in progress] == [
        ("public.readings", CHUNKS, CHUNKS, 0.0)
    ]
    assert progress[0]["copied"] > ROWS * 0.99 and progress[0]["estimate"] >= ROWS * 0.9
    assert {c: after[c][1] for c in done_before} == done_before  # chunks done before the kill: not copied again
    assert writer.transactions > 20
    assert again.stop() == 0
    assert "Traceback" not in bridge.output() + again.output()


def test_until_caught_up_waits_for_the_copy_and_returns(database: str, state_dir: Path) -> None:
    sql(database, "CREATE TABLE small (id int PRIMARY KEY, v text); INSERT INTO small SELECT g, md5(g::text) "
                  "FROM generate_series(1, 5000) g")  # fmt: skip
    db = database.rsplit("/", 1)[1]
    run = subprocess.run(
        [sys.executable, "-m", "cdc.cli", "run", "--source", database, "--initial-load", "copy", "--no-events",
         "--until-caught-up", "--timeout", "240", "--state-dir", str(state_dir)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "by the copy path (public.small)" in run.stdout
    count = subprocess.run(
        [sys.executable, "-m", "cdc.cli", "sql", f"SELECT count() FROM `{db}`.small", "--format", "csv",
         "--state-dir", str(state_dir)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert count.stdout.strip().splitlines()[-1].strip() == "5000", count.stdout + count.stderr
