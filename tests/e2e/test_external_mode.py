"""External mode: configuration alone swaps the embedded broker and warehouse for servers the bridge does not own."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import pytest

from cdc.embedded.broker import TansuBroker
from cdc.embedded.net import free_port, wait_for_port
from tests.e2e.conftest import BridgeProcess, _tempdir, sql
from tests.polling import wait_until

pytestmark = pytest.mark.e2e

# A ClickHouse-protocol server in its own process: the bridge must reach it over HTTP like any server.
SERVER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from cdc.embedded.chdb_server import ChdbHttpServer
    server = ChdbHttpServer(Path(sys.argv[1]), port=int(sys.argv[2]))
    server.start()
    print("ready", flush=True)
    while True:
        time.sleep(1)
""")


@pytest.fixture
def clickhouse_server() -> Iterator[str]:
    port = free_port()
    data = _tempdir("cdc-e2e-ch-")
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(data), str(port)])
    try:
        assert wait_for_port("127.0.0.1", port, 60), "ClickHouse test server did not start"
        yield f"http://default:secret@127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(data, ignore_errors=True)  # the server's store, outside the state dir


@pytest.fixture
def kafka(tmp_path: Path) -> Iterator[str]:
    broker = TansuBroker(free_port(), tmp_path / "tansu.log")
    broker.start()
    yield broker.bootstrap_servers
    broker.stop()


def test_external_kafka_and_clickhouse_by_configuration(
    database: str, state_dir: Path, clickhouse_server: str, kafka: str, bridges: list[BridgeProcess]
) -> None:
    sql(database, "CREATE TABLE t (id int PRIMARY KEY, v text)")
    sql(database, "INSERT INTO t SELECT g, 'v' FROM generate_series(1, 50) g")
    env = {"CDC_KAFKA_BOOTSTRAP_SERVERS": kafka, "CDC_CLICKHOUSE_URL": clickhouse_server}
    bridge = BridgeProcess(state_dir, ["run", "--source", database], env=env)
    bridges.append(bridge)
    bridge.wait_for_line(r"Kafka bootstrap:\s+" + kafka.replace(".", r"\."))
    assert "secret" not in bridge.output()
    sql(database, "UPDATE t SET v = 'changed' WHERE id <= 5")
    db = database.rsplit("/", 1)[1]
    client = clickhouse_connect.get_client(dsn=clickhouse_server)

    def mirrored() -> bool:
        try:
            rows = client.query(f"SELECT count(), countIf(v = 'changed') FROM {db}.t").result_rows
        except Exception:
            return False
        return rows == [(50, 5)]

    wait_until(mirrored, 180, "rows in the external ClickHouse")
    assert not (state_dir / "clickhouse").exists()  # no embedded store was created
    assert bridge.stop() == 0
