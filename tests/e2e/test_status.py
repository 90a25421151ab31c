"""`cdc status` and /metrics against a running `cdc run`: the figures move while load runs."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from cdc.debezium.config import default_slot_name
from tests.e2e.conftest import BridgeProcess, SourceLoad, sql, start_bridge
from tests.polling import wait_until

pytestmark = pytest.mark.e2e


def _status(state_dir: Path) -> tuple[int, dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "cdc.cli", "status", "--json", "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.returncode, (json.loads(out.stdout) if out.stdout.strip() else {"stderr": out.stderr})


def _metric(text: str, name: str) -> float:
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{")]
    assert values, f"no {name} in /metrics"
    return sum(values)


class Ticks(SourceLoad):
    def step(self, conn: Any) -> None:
        conn.execute("INSERT INTO ticks (note) SELECT 'load' FROM generate_series(1, 50)")


def test_status_and_metrics_move_while_load_runs(database: str, state_dir: Path, bridges: list[BridgeProcess]) -> None:
    sql(database, "CREATE TABLE ticks (id bigserial PRIMARY KEY, at timestamptz DEFAULT now(), note text)")
    sql(database, "INSERT INTO ticks (note) SELECT 'seed' FROM generate_series(1, 100)")
    bridge = start_bridge(bridges, state_dir, "--source", database, "--no-events")
    url = bridge.wait_for_line(r"Status and metrics:\s+(http://\S+)/status").group(1)
    ch = bridge.clickhouse()
    db = database.rsplit("/", 1)[1]
    wait_until(lambda: ch.query(f"SELECT count() FROM {db}.ticks").result_rows[0][0] == 100, 120, "snapshot")

    writer = Ticks(database)
    writer.start()
    try:
        code, first = _status(state_dir)
        assert code in (0, 1), first
        (src,) = first["sources"]
        assert src["name"] == db and src["slot"] == default_slot_name(db) and src["slot_active"] is True
        assert src["retained_wal_bytes"] is not None
        assert [t["topic"] for t in src["topics"]] == [f"{db}.public.ticks"]
        metrics_before = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()

        def moved() -> bool:
            _, later = _status(state_dir)
            s = later["sources"][0]
            return s["applied"] >= src["applied"] + 500 and s["rows_per_s_1m"] > 0 and s["freshness_s"] is not None

        wait_until(moved, 120, "applied count and rate moving in cdc status")
        metrics_after = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
        assert _metric(metrics_after, "cdc_applied_total") > _metric(metrics_before, "cdc_applied_total")
        assert _metric(metrics_after, "cdc_slot_active") == 1
        assert "# TYPE cdc_consumer_lag_messages gauge" in metrics_after
    finally:
        writer.stop()

    text = subprocess.run(
        [sys.executable, "-m", "cdc.cli", "status", "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert db in text.stdout and "ticks" in text.stdout, text.stdout + text.stderr
    assert bridge.stop() == 0
    code, gone = _status(state_dir)
    assert code == 2 and "no bridge" in gone["stderr"].lower(), gone
