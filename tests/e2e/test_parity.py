"""`cdc verify` / ``POST /parity`` on the real stack (one bridge for the module): a correct mirror passes, also
with masked and excluded columns, text and composite keys; a mirror changed behind the bridge's back (a value,
a row deleted, a row added, in the state table with versions above any LSN) fails and names the range; a busy
table gives no false drift; the budget and the cursor walk a table over successive runs."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from cdc.embedded.pg_cluster import EmbeddedPostgres
from tests.e2e.conftest import BridgeProcess, SourceLoad, _tempdir, fresh_database, sql
from tests.polling import wait_until

pytestmark = pytest.mark.e2e

SCHEMA = """
CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, qty int, price numeric(10,2), at timestamptz,
                    tags text[], note text);
INSERT INTO items SELECT i, 'item ' || i, i % 7, i * 1.25, '2026-01-01 00:00:00+00'::timestamptz + i * interval '1 h',
                         ARRAY['t' || (i % 3)], CASE WHEN i % 5 = 0 THEN NULL ELSE 'n' || i END
  FROM generate_series(1, 3000) i;
CREATE TABLE people (id int PRIMARY KEY, name text, email text, phone text, notes text);
INSERT INTO people SELECT i, 'p' || i, CASE WHEN i % 4 = 0 THEN NULL ELSE 'secret' || i || '@x.org' END,
                          CASE WHEN i % 3 = 0 THEN NULL ELSE '+33 ' || i END, 'hidden ' || i
  FROM generate_series(1, 40) i;
CREATE TABLE codes (code text PRIMARY KEY, v int);
INSERT INTO codes SELECT 'c' || lpad(i::text, 4, '0'), i FROM generate_series(0, 499) i;
INSERT INTO codes VALUES ('Zürich', 1), ('apple', 2), ('Apple', 3), ('éclair', 4), ('', 5);
CREATE TABLE pairs (a int, b int, v text, PRIMARY KEY (a, b));
INSERT INTO pairs SELECT i / 10, i % 10, 'v' || i FROM generate_series(0, 99) i;
CREATE TABLE flags (id int PRIMARY KEY, b varbit);
INSERT INTO flags VALUES (1, B'101');
CREATE TABLE walk (id int PRIMARY KEY, v text);
INSERT INTO walk SELECT i, 'w' || i FROM generate_series(1, 3000) i;
CREATE TABLE busy (id int PRIMARY KEY, n int NOT NULL, note text);
INSERT INTO busy SELECT i, 0, 'b' FROM generate_series(1, 3000) i;
ANALYZE;
"""
CONFIG = """
[[source]]
name = "par"
dsn_env = "PAR_DSN"
events = false
exclude_columns = ["public.people.notes"]
mask = { "public.people.email" = "hash", "public.people.phone" = "redact" }
"""
COUNTS = {"items": 3000, "people": 40, "codes": 505, "pairs": 100, "flags": 1, "walk": 3000, "busy": 3000}
FAST = {"wait_s": 0.5, "settle_s": 3.0}  # the source is idle but for the busy test: the mirror is caught up


class Stack:
    def __init__(self, bridge: BridgeProcess, dsn: str) -> None:
        self.bridge, self.dsn = bridge, dsn
        self.ch = bridge.clickhouse()
        self.url = (bridge.state_dir / "status.url").read_text().strip()

    def parity(self, **body: Any) -> list[dict[str, Any]]:
        request = urllib.request.Request(f"{self.url}/parity", data=json.dumps(FAST | body).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=300) as response:  # noqa: S310 (loopback)
            return list(json.loads(response.read())["reports"])

    def verify(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cdc.cli", "verify", *args, "--state-dir", str(self.bridge.state_dir)],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    def count(self, table: str) -> int:
        try:
            return int(self.ch.query(f"SELECT count() FROM par.{table}").result_rows[0][0])
        except Exception:
            return -1

    def corrupt(self, table: str, where: str, replace: str) -> None:
        """A state row written behind the bridge's back, with a version above any LSN: the stream cannot heal it."""
        state = f"par._state_{table}"
        self.ch.command(
            f"INSERT INTO {state} SELECT * REPLACE ({replace}, toUInt64(2e18) AS _version)"
            f" FROM (SELECT * FROM {state} FINAL WHERE {where})"
        )


@pytest.fixture(scope="module")
def stack(pg: EmbeddedPostgres) -> Iterator[Stack]:
    dsn = fresh_database(pg, "parity_e2e")
    sql(dsn, SCHEMA)
    state_dir = _tempdir("cdc-e2e-parity-")
    (state_dir / "cdc.toml").write_text(CONFIG)
    bridge = BridgeProcess(
        state_dir, ["run", "--config", str(state_dir / "cdc.toml")], env={"PAR_DSN": dsn, "CDC_MASK_SALT": "pepper123"}
    )
    try:
        bridge.wait_for_line(r"ClickHouse endpoint: (http://\S+)")
        wait_until(lambda: (state_dir / "status.url").exists(), 180, "the status server")
        stack = Stack(bridge, dsn)
        wait_until(lambda: all(stack.count(t) == n for t, n in COUNTS.items()), 240, "every table mirrored")
        yield stack
        assert bridge.stop() == 0
        assert "Traceback" not in bridge.output()
    finally:
        bridge.kill()


def test_a_correct_mirror_passes_with_masks_exclusions_and_any_key(stack: Stack) -> None:
    masked = dict(stack.ch.query("SELECT id, phone FROM par.people WHERE id IN (1, 3)").result_rows)
    assert masked == {1: "********", 3: "********"}  # Debezium redacts NULLs too: the copy must do the same
    run = stack.verify("public.items", "public.people", "public.codes", "public.pairs")
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 4 and all(": ok, " in line for line in lines), run.stdout
    assert "par public.items: ok, 3,000 rows" in run.stdout and "(to the table's end" in run.stdout

    (report,) = stack.parity(table="public.codes", range_rows=100)
    assert report["result"] == "ok" and report["rows_compared"] == 505 and report["ranges_checked"] == 6, report
    (report,) = stack.parity(table="public.flags")
    assert report["result"] == "unsupported" and "varbit" in report["reason"], report
    run = stack.verify("public.flags")
    assert run.returncode == 2 and "par public.flags: unsupported: the copy path cannot read" in run.stdout, run.stdout
    tables = {r[0] for r in stack.ch.query("SHOW TABLES FROM par").result_rows}
    assert not any("parity" in t for t in tables), tables  # the scratch tables are gone


def test_drift_is_found_and_its_first_range_named(stack: Stack) -> None:
    stack.corrupt("items", "id = 1234", "'drifted' AS name")
    stack.corrupt("items", "id = 2500", "toUInt8(1) AS _is_deleted")
    stack.corrupt("items", "id = 10", "toInt64(99999) AS id")
    (report,) = stack.parity(table="public.items", range_rows=500)
    assert report["result"] == "drift", report
    assert (report["missing"], report["extra"], report["differing"]) == (1, 1, 1), report
    assert report["first_range"] == {"lower": 1001, "upper": 1501}, report  # 3,000 keys in ranges of 500
    assert report["sample_keys"] == [[1234], [2500], [99999]], report
    assert report["rows_compared"] == 3000 and report["ranges_checked"] == 6 and report["complete_cycle"]

    run = stack.verify("public.items")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 missing, 1 extra, 1 differing; first differing range [open, open); keys 1234, 2500, 99999" in (
        run.stdout
    ), run.stdout  # the default ranges hold 50,000 rows: one for the whole table

    stack.corrupt("codes", "code = 'c0250'", "v + 1 AS v")
    stack.corrupt("people", "id = 5", "'not the hash' AS email")
    by_table = {r["table"]: r for r in stack.parity(range_rows=100)}
    codes, people = by_table["public.codes"], by_table["public.people"]
    assert codes["differing"] == 1 and codes["sample_keys"] == [["c0250"]], codes
    low, high = codes["first_range"]["lower"], codes["first_range"]["upper"]
    assert (low is None or low.encode() <= b"c0250") and (high is None or high.encode() > b"c0250"), codes
    assert people["differing"] == 1 and people["sample_keys"] == [[5]], people
    assert by_table["public.pairs"]["result"] == "ok" and by_table["public.busy"]["result"] == "ok", by_table


class Busy(SourceLoad):
    def __init__(self, dsn: str) -> None:
        super().__init__(dsn)
        self.rng, self.next_id = random.Random(3), 100_000

    def step(self, conn: Any) -> None:
        for _ in range(5):
            conn.execute("UPDATE busy SET n = n + 1, note = 'u' WHERE id = %s", (self.rng.randint(1, 3000),))
        conn.execute("INSERT INTO busy VALUES (%s, 0, 'new')", (self.next_id,))
        conn.execute("DELETE FROM busy WHERE id = %s", (self.next_id - 50,))
        self.next_id += 1


def test_a_busy_table_gives_no_false_drift(stack: Stack) -> None:
    writer = Busy(stack.dsn)
    writer.start()
    try:
        reports = [
            stack.parity(table="public.busy", range_rows=1000, attempts=5, wait_s=1.0, settle_s=15.0)[0]
            for _ in range(3)
        ]
    finally:
        writer.stop()
    assert writer.transactions > 50
    assert all(r["result"] == "ok" for r in reports), reports
    assert sum(r["rechecked"] for r in reports) > 0, reports  # changes in flight were seen, and re-read


def test_the_budget_walks_the_table_over_successive_runs(stack: Stack) -> None:
    runs = []
    for _ in range(12):
        (report,) = stack.parity(table="public.walk", budget_rows=1000, range_rows=500)
        runs.append(report)
        assert report["result"] == "ok", report
        if report["complete_cycle"]:
            break
    assert len(runs) >= 3 and runs[-1]["complete_cycle"] and runs[-1]["next_cursor"] is None, runs
    assert not any(r["complete_cycle"] for r in runs[:-1]), runs
    assert [r["next_cursor"] for r in runs] == [1001, 2001, None], runs  # ranges of 500 keys, two per run
    assert [r["rows_compared"] for r in runs] == [1000, 1000, 1000], runs  # every row once in the cycle
    (again,) = stack.parity(table="public.walk", budget_rows=1000, range_rows=500)
    assert again["next_cursor"] == 1001 and not again["complete_cycle"], again  # a new cycle from the start
    (skewed,) = stack.parity(table="public.busy", budget_rows=1000, range_rows=500)
    assert skewed["rows_compared"] == 1000 and skewed["next_cursor"] == 1001, skewed  # ids 1-3000 and 100000+
    stack.corrupt("walk", "id = 1700", "'drifted' AS v")
    (whole,) = stack.parity(table="public.walk", budget_rows=5000, range_rows=500)
    assert whole["first_range"] == {"lower": 1501, "upper": 2001} and whole["complete_cycle"], whole
