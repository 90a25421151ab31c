"""The peer: ClickHouse's own MaterializedPostgreSQL replicating ``bench_peer``, in a child process.

chDB allows one store per process and the bench process holds the bridge's, so the peer runs as
``python -m bench.peer`` with a chDB store of its own in a temporary directory (removed at the end).
It creates ``CREATE DATABASE peer ENGINE = MaterializedPostgreSQL(...) SETTINGS
materialized_postgresql_tables_list = 'bench_peer'`` on the bench's PostgreSQL — ClickHouse then makes
its own publication and replication slot (named after the PostgreSQL database), copies the table and
polls the slot for changes — reports ``ready`` once the table is queryable, and then answers commands,
one JSON line each on stdin, one JSON line on stdout:

- ``{"cmd": "count", "base": B, "rows": N}``: poll ``count()`` of the rows with ``id > B`` every 10 ms
  until it reaches N; the CLOCK_MONOTONIC moments the first row and the last were queryable.
- ``{"cmd": "watch", "base": B, "until": M}``: poll ``max(id)`` of the rows with ``id > B`` every 10 ms
  until it reaches M; every ``[moment, max(id)]`` at which it grew (the parent matches them with the
  writer's commit log: :func:`bench.peer_phase.commit_latencies`).
- ``{"cmd": "stop"}``: drop the database (which drops its slot and publication), report the process's
  CPU seconds and peak memory (VmHWM), exit.

Polls filter on ``id > B`` so ClickHouse reads only the new rows' granules (the table is ordered by
``id``). One poll costs ~2.5 ms of CPU in chDB (``SELECT 1`` alone ~0.8 ms), so polling every 10 ms
takes about a quarter of a core from the peer's own work — polling every 3 ms took nearly a whole one.
The DSN comes in the environment, not on the command line.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # `python bench/peer.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import json
import os
import shutil
import signal
import tempfile
import time
from typing import Any

import psycopg

from bench import procstats, workload

DSN_VARIABLE = "BENCH_PEER_DSN"
DATABASE = "peer"
READY_TIMEOUT = 120.0
WAIT_TIMEOUT = 900.0


def emit(message: dict[str, Any]) -> None:
    """One reply on stdout, with this process's CPU seconds so far (chDB's threads included)."""
    print(json.dumps({**message, "cpu_s": round(procstats.cpu_seconds("self"), 2)}), flush=True)


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Replica:
    """The MaterializedPostgreSQL database in this process's chDB store."""

    def __init__(self, dsn: str, store: Path, table: str) -> None:
        self.dsn, self.table = dsn, table
        import chdb  # here: the events worker, spawned from the bench's main module, need not map chDB too

        self.conn: Any = chdb.connect(str(store))  # type: ignore[no-untyped-call]

    def query(self, sql: str) -> list[str]:
        return [str(v) for v in self.conn.query(sql, "TabSeparated").bytes().decode().split()]

    def _pg_names(self) -> tuple[set[str], set[str]]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            slots = {str(r[0]) for r in conn.execute("SELECT slot_name FROM pg_replication_slots").fetchall()}
            pubs = {str(r[0]) for r in conn.execute("SELECT pubname FROM pg_publication").fetchall()}
        return slots, pubs

    def create(self) -> dict[str, Any]:
        """Create the database; once the table is queryable, how long that took and the slot and
        publication ClickHouse made (so the parent can drop them should this process die)."""
        slots0, pubs0 = self._pg_names()
        address, database, user, password = workload.pg_address(self.dsn)
        args = ", ".join(_literal(v) for v in (address, database, user, password))
        began = time.monotonic()
        self.conn.query("SET allow_experimental_database_materialized_postgresql = 1")
        self.conn.query(
            f"CREATE DATABASE {DATABASE} ENGINE = MaterializedPostgreSQL({args})"
            f" SETTINGS materialized_postgresql_tables_list = {_literal(self.table)}"
        )
        deadline = began + READY_TIMEOUT
        while True:
            try:
                self.query(f"SELECT count() FROM {DATABASE}.{self.table}")
                break
            except RuntimeError:  # chDB raises RuntimeError until the table's initial copy made it
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        ready = time.monotonic()
        slots, pubs = self._pg_names()
        return {
            "sync_s": round(ready - began, 3),
            "slots": sorted(slots - slots0),
            "publications": sorted(pubs - pubs0),
        }

    def count(self, base: int, rows: int) -> dict[str, Any]:
        sql = f"SELECT count() FROM {DATABASE}.{self.table} WHERE id > {int(base)}"
        deadline = time.monotonic() + WAIT_TIMEOUT
        first_seen = None
        polls = 0
        while time.monotonic() < deadline:
            n = int(self.query(sql)[0])
            now = time.monotonic()
            polls += 1
            if n and first_seen is None:
                first_seen = now
            if n >= rows:
                return {"first_visible": first_seen, "queryable": now, "polls": polls}
            time.sleep(0.01)
        raise TimeoutError(f"peer: {n:,} of {rows:,} rows after {WAIT_TIMEOUT:.0f} s")

    def watch(self, base: int, until: int, interval: float = 0.01) -> dict[str, Any]:
        """Each moment ``max(id)`` grew, as the moment the query that saw it *began* (the rows were
        queryable then; the previous poll, ``interval`` earlier, did not see them)."""
        sql = f"SELECT max(id) FROM {DATABASE}.{self.table} WHERE id > {int(base)}"
        deadline = time.monotonic() + WAIT_TIMEOUT
        seen: list[tuple[float, int]] = []
        top = base
        polls = 0
        while time.monotonic() < deadline:
            before = time.monotonic()
            value = int(self.query(sql)[0])
            polls += 1
            if value > top:
                top = value
                seen.append((before, value))
                if top >= until:
                    return {"seen": seen, "polls": polls}
            time.sleep(max(0.0, interval - (time.monotonic() - before)))
        raise TimeoutError(f"peer: max(id) {top:,}, waiting for {until:,} after {WAIT_TIMEOUT:.0f} s")

    def drop(self) -> None:
        self.conn.query(f"DROP DATABASE IF EXISTS {DATABASE} SYNC")

    def close(self) -> None:
        self.conn.close()


def serve(replica: Replica) -> None:
    emit({"event": "ready", **replica.create()})
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "count":
            emit({"event": "count", **replica.count(command["base"], command["rows"])})
        elif command["cmd"] == "watch":
            emit({"event": "watch", **replica.watch(command["base"], command["until"])})
        elif command["cmd"] == "stop":
            return
        else:
            raise ValueError(f"unknown peer command {command!r}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="MaterializedPostgreSQL peer (run by bench.run; DSN in $" + DSN_VARIABLE + ")"
    )
    p.add_argument("--table", default=workload.PEER_TABLE)
    p.add_argument("--store-parent", default=None, help="where to make the temporary chDB store")
    args = p.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us (stdin closed or a stop command)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # ... or terminates us: clean up first
    store = Path(tempfile.mkdtemp(prefix="cdc-bench-peer-", dir=args.store_parent))
    replica = None
    try:
        replica = Replica(os.environ[DSN_VARIABLE], store, args.table)
        serve(replica)
        vmhwm_kb = procstats.status_kb("self", "VmHWM")
        replica.drop()  # before the reply: the slot and publication are gone when the parent goes on
        emit({"event": "stopped", "vmhwm_mb": round(vmhwm_kb / 1024, 1)})
    finally:
        if replica is not None:
            try:
                replica.drop()
            finally:
                replica.close()
        shutil.rmtree(store, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
