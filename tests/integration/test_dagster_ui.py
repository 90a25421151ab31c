"""The Dagster webserver and daemon that `cdc demo` starts, on a fresh instance home."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cdc.embedded.dagster_ui import DagsterUi
from cdc.embedded.net import free_port


def _alembic_heads(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT count(*) FROM alembic_version").fetchone()[0])


def test_a_fresh_home_gets_its_storage_before_webserver_and_daemon_start(tmp_path: Path) -> None:
    """Both children creating the SQLite storage at once could stamp two alembic heads; the
    code location then failed to load in the daemon, and no sensor ever ran (seen in CI)."""
    ui = DagsterUi(free_port(), tmp_path, {"CDC_STATE_DIR": str(tmp_path)})
    try:
        ui.start()  # returns right after spawning the children, long before they import Dagster
        home = tmp_path / "dagster"
        assert _alembic_heads(home / "schedules" / "schedules.db") == 1
        assert _alembic_heads(home / "history" / "runs.db") == 1
        assert ui.wait_ready(180), ui.diagnosis()
    finally:
        ui.stop()
