"""The initial-load figure: the bridge's copy path against ClickHouse's own ``postgresql()`` copy.

:func:`run_phase` (bench.run calls it before its other phases) fills ``bench_load`` in PostgreSQL,
then runs this module as a child process, which

1. starts a bridge of its own (own state dir: chDB store, Tansu, JVM) on that one table with
   ``initial_load="copy"``, and times it from ``Bridge.start()``: when the copy began (the first
   chunk was claimed, from ``InitialLoad.progress()``), when the first chunk and all chunks were
   copied, and when every row was queryable in the mirror view ``bench.bench_load``;
2. then, in the same warehouse, times ``INSERT INTO bench_pgfn.bench_load SELECT ... FROM
   postgresql(...)`` of the same table into a plain MergeTree of the mirror's column types;
3. stops its bridge and writes its figures as JSON to ``--result``.

Afterwards the parent drops the slot, publication and table, so the later phases start as before.
Why a child process: the later phases' bridge then starts as it always did (its start-up includes
the JVM's, its JVM runs one Debezium engine — a second engine in one JVM has stalled a stream
before, see the Makefile's test target — and the bench process's peak memory is theirs alone).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # `python bench/initial_load.py`: make `bench` and `cdc` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

from pydantic import SecretStr

from bench import procstats, workload
from bench.interrupts import interruptible
from cdc import bootstrap
from cdc import settings as config
from cdc.adapters.clickhouse import ClickHouseWarehouse, connect_warehouse
from cdc.bridge import Bridge
from cdc.debezium.config import default_slot_name
from cdc.errors import CdcError
from cdc.settings import SourceSpec

ROOT = Path(__file__).resolve().parent.parent
SOURCE = "bench"  # the mirror view is bench.bench_load
REFERENCE_DB = "bench_pgfn"  # where ClickHouse's postgresql() copy goes
DSN_VARIABLE = "BENCH_LOAD_DSN"  # the child reads the DSN here, not from its command line
TARGET_RATIO = 0.5  # copy path rate / postgresql() rate
WAIT_TIMEOUT = 1800.0
Say = Callable[[str], None]


def say(text: str) -> None:
    print(text, flush=True)


# -- the parent's side --------------------------------------------------------------------------
def run_phase(dsn: str, rows: int, state_dir: Path, pg_data: Path, note: Say) -> dict[str, Any]:
    """Fill ``bench_load``, measure both copies in a child process, clean up; the figures."""
    load_s = workload.fill_load_table(dsn, rows)
    note(f"  {rows:,} rows in PostgreSQL in {load_s:.1f} s (VACUUM ANALYZE included); starting a copy-path bridge ...")
    child_dir = state_dir / "initial-load"
    child_dir.mkdir()
    result_path = child_dir / "result.json"
    argv = [sys.executable, "-m", "bench.initial_load", "--rows", str(rows), "--state-dir", str(child_dir)]
    argv += ["--pg-data", str(pg_data), "--result", str(result_path)]
    child = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, DSN_VARIABLE: dsn})
    try:
        code = child.wait(timeout=WAIT_TIMEOUT + 300)
    except BaseException:  # Ctrl-C (which reached the child too) or a timeout: it stops its bridge first
        if child.poll() is None:
            child.terminate()
        try:
            child.wait(timeout=120)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        raise
    if code != 0:
        raise RuntimeError(f"the initial-load child process failed with exit code {code}")
    measured: dict[str, Any] = json.loads(result_path.read_text())
    workload.drop_load_table(dsn, default_slot_name(SOURCE))
    reference = measured["postgresql_function"]
    return {
        "rows": rows,
        "load_into_postgres_s": round(load_s, 2),
        **measured,
        "ratio": round(measured["copy_rows_per_s"] / reference["rows_per_s"], 3),
        "ratio_incl_bridge_start": round(measured["rows_per_s_from_bridge_start"] / reference["rows_per_s"], 3),
        "target_ratio": TARGET_RATIO,
    }


# -- the child's side ---------------------------------------------------------------------------
def _cpu(pg_data: Path) -> dict[str, float]:
    return {"bridge": procstats.cpu_seconds("self"), "postgres": procstats.postgres_children_cpu_total(pg_data)}


def _cpu_since(before: dict[str, float], pg_data: Path) -> dict[str, float]:
    return {k: round(v - before[k], 2) for k, v in _cpu(pg_data).items()}


def measure(dsn: str, rows: int, state_dir: Path, pg_data: Path) -> dict[str, Any]:
    """Both copies of ``bench_load``: the bridge's copy path, then ClickHouse's postgresql()."""
    settings = config.load(str(state_dir), events=False)
    spec = SourceSpec(SecretStr(dsn), SOURCE, (f"public.{workload.LOAD_TABLE}",), initial_load="copy")
    bridge = bootstrap.build_bridge(settings, [spec], lambda line: say(f"  bridge: {line}"))
    ch: ClickHouseWarehouse | None = None
    interrupted = False
    try:
        t0 = time.monotonic()
        bridge.start()
        started = time.monotonic()
        cpu0 = _cpu(pg_data)  # the copy's, not the start-up's (the JVM's warm-up is CPU-heavy)
        interruptible()  # the JVM has just taken SIGINT over
        ch = connect_warehouse(bridge.clickhouse_url, state_dir)
        say(f"  bridge started in {started - t0:.1f} s; copying ...")
        marks = wait_loaded(bridge, ch, rows)
        copy_cpu, vmhwm_kb = _cpu_since(cpu0, pg_data), procstats.status_kb("self", "VmHWM")
        say(f"  copy path: {rows:,} rows queryable {marks['queryable'] - t0:.1f} s after the bridge start")
        settled_s = settle(ch)  # the copy's parts merged: their merging does not slow the reference down
        say(f"  copy path: ClickHouse's merges of its parts ended {settled_s:.1f} s later")
        reference = postgresql_copy(ch, dsn, rows, pg_data)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # stopping the bridge must not be cut short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if ch is not None:
            ch.close()
        bridge.stop(drain=not interrupted)
    copy_s = marks["queryable"] - marks["began"]
    return {
        "chunks": int(marks["chunks"]),
        "bridge_start_s": round(started - t0, 2),
        "copy_began_s": round(marks["began"] - t0, 2),
        "first_chunk_copied_s": round(marks["first_chunk"] - t0, 2),
        "all_chunks_copied_s": round(marks["copied"] - t0, 2),
        "queryable_s": round(marks["queryable"] - t0, 2),
        "copy_s": round(copy_s, 2),
        "copy_rows_per_s": round(rows / copy_s, 1),
        "rows_per_s_from_bridge_start": round(rows / (marks["queryable"] - t0), 1),
        "cpu_s": copy_cpu,
        "merges_settled_after_s": round(settled_s, 2),
        "bridge_process_vmhwm_mb": round(vmhwm_kb / 1024, 1),
        "postgresql_function": reference,
    }


def wait_loaded(bridge: Bridge, ch: ClickHouseWarehouse, rows: int) -> dict[str, float]:
    """Block until ``rows`` rows are queryable in ``bench.bench_load``; monotonic times of the milestones.

    The load's in-process progress is polled every 20 ms (cheap); ClickHouse is asked for the count
    only once every chunk is copied."""
    deadline = time.monotonic() + WAIT_TIMEOUT
    marks: dict[str, float] = {}
    said = time.monotonic()
    while time.monotonic() < deadline:
        bridge.supervise()
        error = bridge.consumer_error
        if error and "stopped" in error:  # a copy worker hit a bug; "(retrying)" errors heal themselves
            raise RuntimeError(error)
        progress = bridge.views[0].load_progress()
        now = time.monotonic()
        p = progress[0] if progress else None
        if p is not None and p.chunks_done and "first_chunk" not in marks:
            marks["first_chunk"] = now
        if p is not None and p.chunks_done == p.chunks and "copied" not in marks:
            # progress' rate is rows/s since the first chunk was claimed: that moment is when the copy began
            marks.update(copied=now, began=now - p.copied / p.rate if p.rate > 0 else now, chunks=p.chunks)
        if "copied" in marks and _count(ch) >= rows:
            marks["queryable"] = time.monotonic()
            return marks
        if p is not None and now - said >= 2.0:
            said = now
            say(f"  [initial load] copied {p.copied:,} of ~{p.estimate:,} rows ({p.chunks_done}/{p.chunks} chunks)"
                f", {p.rate:,.0f} rows/s")  # fmt: skip
        time.sleep(0.02 if "copied" not in marks else 0.05)
    raise TimeoutError(f"{SOURCE}.{workload.LOAD_TABLE}: {_count(ch):,} of {rows:,} rows after {WAIT_TIMEOUT:.0f} s")


def settle(ch: ClickHouseWarehouse, timeout: float = 300.0) -> float:
    """Seconds until ClickHouse runs no merge (checked for a second), at most ``timeout``."""
    began = time.monotonic()
    quiet_since = None
    while time.monotonic() - began < timeout:
        if int(ch.query("SELECT count() FROM system.merges")[0][0]) == 0:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= 1.0:
                return quiet_since - began
        else:
            quiet_since = None
        time.sleep(0.05)
    return timeout


def _count(ch: ClickHouseWarehouse, table: str = f"{SOURCE}.{workload.LOAD_TABLE}") -> int:
    return int(ch.query(f"SELECT count() FROM {table}")[0][0])


def postgresql_copy(ch: ClickHouseWarehouse, dsn: str, rows: int, pg_data: Path) -> dict[str, Any]:
    """ClickHouse's own copy of the same table into a plain MergeTree of the mirror's column types."""
    types = dict(
        ch.query(
            "SELECT name, type FROM system.columns WHERE database = {d:String} AND table = {t:String}",
            {"d": SOURCE, "t": workload.LOAD_TABLE},
        )
    )
    target = f"{REFERENCE_DB}.{workload.LOAD_TABLE}"
    ch.command(f"CREATE DATABASE IF NOT EXISTS {REFERENCE_DB}")
    ch.command(f"CREATE TABLE {target} ({', '.join(f'{c} {types[c]}' for c in workload.COLUMNS)})"
               " ENGINE = MergeTree ORDER BY id")  # fmt: skip
    address, database, user, password = workload.pg_address(dsn)
    args = ", ".join(_literal(v) for v in (address, database, workload.LOAD_TABLE, user, password, "public"))
    names = ", ".join(workload.COLUMNS)
    say(f"  postgresql(): INSERT INTO {target} SELECT ... FROM postgresql('{address}', '{database}', ...) ...")
    cpu0 = _cpu(pg_data)
    began = time.monotonic()
    try:
        ch.command(f"INSERT INTO {target} ({names}) SELECT {names} FROM postgresql({args})")
    except CdcError as e:
        if not password:
            raise
        # the error may quote the statement, password included: say it without, and without the cause
        raise RuntimeError(f"postgresql() copy failed: {str(e).replace(password, '***')}") from None
    seconds = time.monotonic() - began
    cpu = _cpu_since(cpu0, pg_data)
    copied = _count(ch, target)
    if copied != rows:
        raise RuntimeError(f"postgresql() copied {copied:,} rows of {rows:,}")
    say(f"  postgresql(): {rows:,} rows in {seconds:.1f} s")
    return {"table": target, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds, 1), "cpu_s": cpu}


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="initial-load figure (run by bench.run; DSN in $" + DSN_VARIABLE + ")")
    p.add_argument("--rows", type=int, required=True, help="rows bench_load holds")
    p.add_argument("--state-dir", type=Path, required=True, help="this bridge's own (empty) state dir")
    p.add_argument("--pg-data", type=Path, required=True, help="PostgreSQL's data dir (for its CPU seconds)")
    p.add_argument("--result", type=Path, required=True, help="where to write the figures (JSON)")
    args = p.parse_args(argv)
    interruptible()
    try:
        result = measure(os.environ[DSN_VARIABLE], args.rows, args.state_dir, args.pg_data)
    except KeyboardInterrupt:
        return 130
    args.result.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
