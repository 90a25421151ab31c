"""Domain events of the rows the copy path loads, on the real stack: the bridge creates the slot with an
exported snapshot, so each row that existed when streaming began makes exactly one snapshot event (op r)
with its values of that moment, also across a kill -9 while they are being made, while rows inserted,
updated and deleted during the load make stream events only; and a source can turn them off."""

from __future__ import annotations

import json
import os
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

ROWS = 300_000
CHUNKS = chunk_count(ROWS)
SCHEMA = f"""
CREATE TABLE accounts (id bigint PRIMARY KEY, owner text NOT NULL, balance numeric(12,2) NOT NULL);
INSERT INTO accounts SELECT g, 'owner ' || g, g / 4.0 FROM generate_series(1, {ROWS}) g;
ANALYZE accounts;
"""


class Writes(SourceLoad):
    def __init__(self, dsn: str) -> None:
        super().__init__(dsn)
        self.rng, self.next_id, self.updated = random.Random(3), ROWS + 1, set[int]()

    def step(self, conn: Any) -> None:
        conn.execute("INSERT INTO accounts VALUES (%s, 'late', 1)", (self.next_id,))
        self.next_id += 1
        key = self.rng.randint(1, ROWS)
        conn.execute("UPDATE accounts SET balance = balance + 100 WHERE id = %s", (key,))
        self.updated.add(key)
        conn.execute("DELETE FROM accounts WHERE id = %s", (self.rng.randint(1, ROWS),))


def _progress(state_dir: Path) -> list[dict[str, Any]]:
    """The initial load's progress per table ([] while the bridge's status server is not up)."""
    sources = status_json(state_dir).get("sources") or [{}]
    return list(sources[0].get("initial_load") or [])


def _events(ch: Any, where: str) -> list[tuple[Any, ...]]:
    return [
        tuple(r)
        for r in ch.query(
            f"SELECT op, aggregate_id, payload FROM events.domain_events FINAL WHERE source_table = 'public.accounts'"
            f" AND {where}"
        ).result_rows
    ]


def test_copied_rows_make_one_snapshot_event_each_as_of_the_slot(
    database: str, state_dir: Path, bridges: list[BridgeProcess]
) -> None:
    sql(database, SCHEMA)
    db = database.rsplit("/", 1)[1]
    bridge = start_bridge(bridges, state_dir, "--source", database, "--initial-load", "copy")
    bridge.wait_for_line(r"by the copy path \(public\.accounts\)")
    slot = f"SELECT count(*) = 1 FROM pg_replication_slots WHERE slot_name = 'cdc_{db}'"
    wait_until(lambda: bool(sql(database, slot)[0][0]), 60, "the slot")
    writes = Writes(database)
    writes.start()  # every write from here is after the slot's snapshot
    wait_until(lambda: writes.transactions > 50, 60, "writes during the load")
    # kill -9 once the mirror has every chunk and while the events of existing rows are being made
    wait_until(lambda: [p["chunks_done"] for p in _progress(state_dir)] == [CHUNKS], 300,
               "every chunk copied")  # fmt: skip
    assert [p["events_chunks_done"] for p in _progress(state_dir)] != [CHUNKS]
    bridge.kill()
    bridge = start_bridge(bridges, state_dir, "--source", database, "--initial-load", "copy")
    ch = bridge.clickhouse()
    wait_until(
        lambda: [p.get("events_chunks_done") for p in _progress(state_dir)] == [CHUNKS],
        600,
        "the snapshot events of every chunk",
    )
    writes.stop()
    wait_until(lambda: len(_events(ch, "op = 'c'")) == writes.next_id - ROWS - 1, 300, "the inserts' events")

    snapshot = _events(ch, "op = 'r'")
    ids = sorted(int(a) for _, a, _ in snapshot)
    assert ids == list(range(1, ROWS + 1))  # each existing row once; no row inserted after the slot
    payloads = {int(a): json.loads(p) for _, a, p in snapshot}
    for key in sorted(writes.updated)[:200]:  # the values of when streaming began, not the later ones
        assert float(payloads[key]["balance"]) == key / 4.0, payloads[key]
    progress = _progress(state_dir)[0]
    assert progress["events_skipped_rows"] == 0
    left = ch.query("SELECT count() FROM cdc.snapshot_envelopes").result_rows[0][0]
    wait_until(lambda: ch.query("SELECT count() FROM cdc.snapshot_envelopes").result_rows[0][0] == 0, 120,
               f"the stashed messages dropped (were {left})")  # fmt: skip
    assert bridge.stop() == 0
    assert "Traceback" not in bridge.output()


def test_snapshot_events_off_leaves_existing_rows_without_events(database: str, state_dir: Path) -> None:
    sql(database, "CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes SELECT g, md5(g::text)"
                  " FROM generate_series(1, 2000) g")  # fmt: skip
    db = database.rsplit("/", 1)[1]
    for mode in ("debezium", "copy"):
        state = state_dir / mode
        run = subprocess.run(
            [sys.executable, "-m", "cdc.cli", "run", "--source", database, "--source-name", f"{db}_{mode}",
             "--initial-load", mode, "--until-caught-up", "--timeout", "240", "--state-dir", str(state)],
            capture_output=True, text=True, timeout=300, env={**os.environ, "CDC_SNAPSHOT_EVENTS": "false"},
        )  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr
        count = subprocess.run(
            [sys.executable, "-m", "cdc.cli", "sql", "--format", "csv", "--state-dir", str(state),
             f"SELECT (SELECT count() FROM `{db}_{mode}`.notes), (SELECT count() FROM events.domain_events"
             f" WHERE source = '{db}_{mode}' AND op = 'r')"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert count.stdout.strip().splitlines()[-1] == "2000,0", (mode, count.stdout + count.stderr)
