"""The benchmark's source workload: table DDL, bulk and steady-rate writers.

Writers run in their own process (``python -m bench.workload bulk|steady ...``, one JSON
line of results on stdout), so they do not share the bridge process's GIL and cores are
shared the way an application and a bridge would share them. Times are CLOCK_MONOTONIC,
which is system-wide on Linux, so the parent can compare them with its own clock.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

TABLES = ("bench_snapshot", "bench_rows", "bench_peer")
PEER_TABLE = "bench_peer"  # the MaterializedPostgreSQL peer's own table (bench.peer); the bridge does not capture it
LOAD_TABLE = "bench_load"  # the initial-load phase's own table (bench.initial_load): filled, copied, dropped
COLUMNS = ("id", "quantity", "account_id", "amount", "note", "happened_at", "active")
DDL = """CREATE TABLE IF NOT EXISTS {table} (
    id          bigserial PRIMARY KEY,
    quantity    integer        NOT NULL,
    account_id  bigint         NOT NULL,
    amount      numeric(12, 2) NOT NULL,
    note        text           NOT NULL,
    happened_at timestamptz    NOT NULL,
    active      boolean        NOT NULL
)"""
# One statement per transaction: n rows, note ~42 chars, values vary with the row number.
INSERT = """INSERT INTO {table} (quantity, account_id, amount, note, happened_at, active)
SELECT g %% 1000, g * 7919, (g %% 1000000) / 100.0, 'bench row ' || md5(g::text),
       now() - (g %% 86400) * interval '1 second', g %% 2 = 0
FROM generate_series(%s::bigint, %s::bigint) AS g"""


def create_tables(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in TABLES:
            conn.execute(DDL.format(table=table))


def load_rows(dsn: str, rows: int, table: str = "bench_snapshot", chunk: int = 50_000) -> float:
    """Insert ``rows`` into ``table`` before a bridge starts, ``chunk`` rows a transaction; seconds taken."""
    started = time.monotonic()
    sql = INSERT.format(table=table)
    with psycopg.connect(dsn) as conn:
        for lo in range(1, rows + 1, chunk):
            conn.execute(sql, (lo, min(lo + chunk - 1, rows)))
            conn.commit()
    return time.monotonic() - started


def fill_load_table(dsn: str, rows: int) -> float:
    """A fresh ``LOAD_TABLE`` with ``rows`` rows, vacuumed and analyzed (the copy path plans its chunks
    from the planner's row estimate); seconds taken."""
    started = time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {LOAD_TABLE}")
        conn.execute(DDL.format(table=LOAD_TABLE))
    load_rows(dsn, rows, LOAD_TABLE, chunk=250_000)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"VACUUM ANALYZE {LOAD_TABLE}")  # not in a transaction block: autocommit
    return time.monotonic() - started


def drop_slot(dsn: str, slot: str, timeout: float = 30.0) -> None:
    """Drop the replication slot ``slot`` if it exists, once no session uses it (its user has exited)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
            if row is None:
                return
            if not row[0]:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"replication slot {slot} still active after {timeout:.0f} s")
            time.sleep(0.2)


def drop_load_table(dsn: str, slot: str) -> None:
    """Remove what the initial-load phase left in PostgreSQL: its bridge's replication slot (once its
    walsender has exited), publication and table, so the later phases start as if it never ran."""
    drop_slot(dsn, slot)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP PUBLICATION IF EXISTS "{slot}"')  # the bridge names its publication as its slot
        conn.execute(f"DROP TABLE IF EXISTS {LOAD_TABLE}")


def pg_address(dsn: str) -> tuple[str, str, str, str]:
    """``host:port``, database, user and password of ``dsn``, as ClickHouse's postgresql() takes them.
    The password is for the table function only: never print it."""
    params = conninfo_to_dict(dsn)
    host = str(params.get("host") or "127.0.0.1")
    if host.startswith("/"):  # a Unix socket directory: ClickHouse connects over TCP only
        host = "127.0.0.1"
    port = str(params.get("port") or "5432")
    user = str(params.get("user") or "")
    return f"{host}:{port}", str(params.get("dbname") or user), user, str(params.get("password") or "")


def max_id(dsn: str, table: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def bulk(dsn: str, rows: int, tx_size: int, table: str = "bench_rows") -> dict[str, Any]:
    """``rows`` rows in transactions of ``tx_size``, as fast as PostgreSQL commits them."""
    if table not in TABLES:
        raise ValueError(f"unknown bench table {table!r}")
    sql = INSERT.format(table=table)
    first_commit = 0.0
    with psycopg.connect(dsn) as conn:
        started = time.monotonic()
        for lo in range(1, rows + 1, tx_size):
            conn.execute(sql, (lo, min(lo + tx_size - 1, rows)), prepare=True)
            conn.commit()
            if not first_commit:
                first_commit = time.monotonic()
        last_commit = time.monotonic()
    return {
        "rows": rows,
        "transactions": -(-rows // tx_size),
        "started": started,
        "first_commit": first_commit,
        "last_commit": last_commit,
        "cpu_s": time.process_time(),
    }


def steady_transactions(rate: float, seconds: float, tx_rows: int) -> int:
    """How many transactions :func:`steady` sends (so a reader knows the last id in advance)."""
    return max(1, round(seconds / (tx_rows / rate)))


def steady(
    dsn: str, rate: float, seconds: float, tx_rows: int, table: str = "bench_rows", log_commits: bool = False
) -> dict[str, Any]:
    """``rate`` rows/s for ``seconds``: a transaction of ``tx_rows`` every ``tx_rows / rate`` s.

    The schedule is absolute (no drift); a late transaction is sent at once, not skipped. With
    ``log_commits`` each transaction returns its highest id, and the result lists ``[id, moment
    commit() returned]`` per transaction (``commits``), for a reader that sees only ``max(id)``.
    """
    if table not in TABLES:
        raise ValueError(f"unknown bench table {table!r}")
    sql = INSERT.format(table=table)
    if log_commits:
        sql = f"WITH ins AS ({sql} RETURNING id) SELECT max(id) FROM ins"
    interval = tx_rows / rate
    count = steady_transactions(rate, seconds, tx_rows)
    late = 0
    commits: list[tuple[int, float]] = []
    with psycopg.connect(dsn) as conn:
        started = time.monotonic()
        for i in range(count):
            wait = started + i * interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            elif wait < -interval:
                late += 1
            cur = conn.execute(sql, (i * tx_rows + 1, (i + 1) * tx_rows), prepare=True)
            last_id = cur.fetchone() if log_commits else None
            conn.commit()
            if last_id is not None:
                commits.append((int(last_id[0]), time.monotonic()))
        last_commit = time.monotonic()
    result: dict[str, Any] = {
        "rows": count * tx_rows,
        "transactions": count,
        "started": started,
        "first_commit": started,
        "last_commit": last_commit,
        "late_transactions": late,
        "cpu_s": time.process_time(),
    }
    if log_commits:
        result["commits"] = commits
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="bench writer (run by bench.run)")
    parser.add_argument("mode", choices=["bulk", "steady"])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--tx-size", type=int, default=100)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--table", choices=TABLES, default="bench_rows")
    parser.add_argument(
        "--log-commits", action="store_true", help="steady: list each transaction's last id and commit moment"
    )
    args = parser.parse_args(argv)
    if args.mode == "bulk":
        result = bulk(args.dsn, args.rows, args.tx_size, args.table)
    else:
        result = steady(args.dsn, args.rate, args.seconds, args.tx_size, args.table, args.log_commits)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
