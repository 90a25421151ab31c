"""A password with spaces, quotes and '@' never shows, in part or whole: not in the output of
`cdc run` or `cdc status`, not in /status or /metrics, not in any log (Debezium's included)."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import BridgeProcess, sql
from tests.polling import wait_until

pytestmark = pytest.mark.e2e

PASSWORD = "Zq@ x'Y\"k%7 h@ve"


def _fragments() -> list[str]:
    return [PASSWORD[i : i + 4] for i in range(len(PASSWORD) - 3)]


def _leaks(text: str) -> list[str]:
    return [f for f in _fragments() if f in text]


def test_a_password_with_spaces_quotes_and_at_signs_never_shows(
    database: str, state_dir: Path, bridges: list[BridgeProcess]
) -> None:
    db = database.rsplit("/", 1)[1]
    role = f"r_{db}"[:60]
    sql(database, f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD 'Zq@ x''Y\"k%7 h@ve'")
    sql(database, "CREATE TABLE t (id int PRIMARY KEY, v text)")
    sql(database, "INSERT INTO t SELECT g, 'v' FROM generate_series(1, 20) g")
    host_port = database.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    escaped = PASSWORD.replace("\\", "\\\\").replace("'", "\\'")
    dsn = f"host={host} port={port} user={role} dbname={db} password='{escaped}'"
    bridge = BridgeProcess(state_dir, ["run", "--source", dsn])
    bridges.append(bridge)
    ch = bridge.clickhouse()
    wait_until(lambda: ch.query(f"SELECT count() FROM {db}.t").result_rows == [(20,)], 120, "the snapshot")
    wait_until(lambda: ch.query("SELECT count() FROM events.domain_events").result_rows[0][0] >= 20, 120, "events")
    status_url = (state_dir / "status.url").read_text().strip()
    seen = [bridge.output()]
    for args in (["status"], ["status", "--json"]):
        done = subprocess.run(
            [sys.executable, "-m", "cdc.cli", *args, "--state-dir", str(state_dir)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        seen += [done.stdout, done.stderr]
        assert role in done.stdout  # the DSN is shown, without its password
    for path in ("/status", "/metrics"):
        with urllib.request.urlopen(status_url + path, timeout=30) as response:  # noqa: S310 - loopback
            seen.append(response.read().decode())
    assert bridge.stop() == 0
    seen.append(bridge.output())
    logs = sorted((state_dir / "logs").glob("*.log*"))
    assert any(p.name.startswith("debezium") for p in logs)
    seen += [p.read_text(errors="replace") for p in logs]
    leaks = [(i, _leaks(text)) for i, text in enumerate(seen) if _leaks(text)]
    assert leaks == []
