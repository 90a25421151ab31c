"""An external ClickHouse unreachable for a minute: the bridge says so, retries, and ends exact; a
stop during an outage takes seconds and leaves what is in flight in the slot (issue 11, part 4)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest

from cdc.embedded.net import free_port, wait_for_port
from tests.e2e.conftest import BridgeProcess, SourceLoad, _tempdir, sql, status_json
from tests.e2e.test_external_mode import SERVER
from tests.polling import wait_until

pytestmark = pytest.mark.e2e


class ClickHouseServer:
    """The external warehouse: a ClickHouse-protocol server in its own process, on a fixed port."""

    def __init__(self) -> None:
        self.port, self.data = free_port(), _tempdir("cdc-e2e-ch-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, str(self.data), str(self.port)])
        assert wait_for_port("127.0.0.1", self.port, 60), "ClickHouse test server did not start"

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(30)


class Writer(SourceLoad):
    def step(self, conn: Any) -> None:
        conn.execute("INSERT INTO items (qty) SELECT g FROM generate_series(1, 20) g")
        conn.execute("UPDATE totals SET n = n + 1 WHERE id = 1")


def _errors(state_dir: Path) -> list[str]:
    return [e for s in status_json(state_dir).get("sources", []) for e in s["errors"]]


def test_a_warehouse_outage_is_reported_retried_and_ends_exact(
    database: str, state_dir: Path, bridges: list[BridgeProcess]
) -> None:
    sql(database, "CREATE TABLE items (id bigserial PRIMARY KEY, qty int NOT NULL)")
    sql(database, "CREATE TABLE totals (id int PRIMARY KEY, n bigint NOT NULL)")
    sql(database, "INSERT INTO totals VALUES (1, 0)")
    db = database.rsplit("/", 1)[1]
    server = ClickHouseServer()
    server.start()
    env = {"CDC_CLICKHOUSE_URL": server.url}
    try:
        bridge = BridgeProcess(state_dir, ["run", "--source", database], env=env)
        bridges.append(bridge)
        bridge.wait_for_line(r"Mirrored tables")
        writer = Writer(database)
        writer.start()
        time.sleep(3)
        server.kill()
        wait_until(lambda: any("ClickHouse" in e for e in _errors(state_dir)), 90, "cdc status reporting the outage")
        time.sleep(60 - 5)  # a minute without the warehouse, the application writing all along
        server.start()
        writer.stop()
        ch = clickhouse_connect.get_client(dsn=server.url)

        def exact() -> bool:
            pg = sql(
                database, "SELECT (SELECT count(*) FROM items), (SELECT sum(qty) FROM items), (SELECT n FROM totals)"
            )
            try:
                got = ch.query(f"SELECT (SELECT count() FROM {db}.items), (SELECT sum(qty) FROM {db}.items),"
                               f" (SELECT n FROM {db}.totals)").result_rows  # fmt: skip
            except Exception:
                return False
            # a scalar subquery over a table ClickHouse has not loaded yet reads NULL: not equal yet
            return [tuple(_int(v) for v in r) for r in got] == [tuple(_int(v) for v in r) for r in pg]

        wait_until(exact, 300, "ClickHouse equal to PostgreSQL after the outage")
        wait_until(lambda: not [e for e in _errors(state_dir) if "retrying" in e.lower()], 120, "errors cleared")

        # a stop while the warehouse is down again takes seconds; the changes meanwhile stay in the slot
        sql(database, "INSERT INTO items (qty) SELECT g FROM generate_series(1, 500) g")
        server.kill()
        wait_until(lambda: any("ClickHouse" in e for e in _errors(state_dir)), 90, "the second outage reported")
        t0 = time.monotonic()
        assert bridge.stop() == 0
        assert time.monotonic() - t0 < 60
        server.start()
        again = BridgeProcess(state_dir, ["run", "--source", database], env=env)
        bridges.append(again)
        wait_until(exact, 300, "the changes made while stopped, after the restart")
        assert again.stop() == 0
        assert "Traceback" not in bridge.output() + again.output()
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.kill()
        shutil.rmtree(server.data, ignore_errors=True)  # the server's store, outside the state dir


def _int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]
