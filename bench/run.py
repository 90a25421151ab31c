"""End-to-end benchmark of the embedded bridge: PostgreSQL -> Debezium -> Tansu -> chDB.

Starts everything itself in a fresh temporary state dir (as `cdc demo` does), then measures
the initial load by the copy path against ClickHouse's own postgresql() copy of the same table
(`--initial-load-rows`, default 5,000,000, 0 skips it; bench/initial_load.py), Debezium's
snapshot rate, streaming throughput (rows/s from the first commit until the last row is
queryable in ClickHouse), commit->queryable latency at a steady rate, CPU per process per
phase, and peak memory per process; then the same throughput and latency workloads through
ClickHouse's MaterializedPostgreSQL as a peer (bench/peer_phase.py; `--no-peer` skips it) and
the ratios. Prints a table and writes bench/results/<timestamp>.json.

    .venv/bin/python -m bench.run            # full run (~3-5 min on 2 cores, plus the 5M-row initial load)
    .venv/bin/python -m bench.run --quick    # smoke run (200,000 rows for the initial load)
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # `python bench/run.py`: make `bench` and `cdc` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from bench import initial_load, peer_phase, procstats, report, workload
from bench.interrupts import interruptible
from cdc import bootstrap
from cdc import settings as config
from cdc.adapters.clickhouse import ClickHouseWarehouse, connect_warehouse
from cdc.bridge import Bridge
from cdc.consume.loop import Stats
from cdc.events.reports import WorkerReport
from cdc.settings import SourceSpec

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
SOURCE = "bench"
TARGETS = {"throughput_rows_per_s": 15_000, "latency_p50_ms": 500}
WAIT_TIMEOUT = 900.0


def say(text: str) -> None:
    print(text, flush=True)


@dataclass
class Run:
    """The running stack and what the phases collected."""

    args: argparse.Namespace
    state_dir: Path
    dsn: str = ""
    bridge: Bridge | None = None
    ch: ClickHouseWarehouse | None = None
    pg_data: Path = Path()
    writer: subprocess.Popen[str] | None = None
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def b(self) -> Bridge:
        assert self.bridge is not None
        return self.bridge

    @property
    def stats(self) -> Stats:
        """The mirror lane's counters."""
        stats = self.b.views[0].mirror_stats()
        assert stats is not None
        return stats

    @property
    def runner(self) -> Any:
        """The embedded Debezium runner (it also counts batches)."""
        return self.b.primary.runner

    @property
    def events(self) -> WorkerReport | None:
        return self.b.views[0].events_report

    @property
    def broker_pid(self) -> int | None:
        return getattr(self.b.wiring.broker, "pid", None) if self.bridge is not None else None

    def count(self, table: str, where: str = "") -> int:
        assert self.ch is not None
        sql = f"SELECT count() FROM {SOURCE}._log_{table}" + (f" WHERE {where}" if where else "")
        return int(self.ch.query(sql)[0][0])


# -- CPU accounting per phase -------------------------------------------------------------------
class CpuMeter:
    """CPU seconds per process (and per thread of this process) between start() and stop()."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def _snap(self) -> dict[str, Any]:
        names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
        tansu_pid = self.run.broker_pid
        return {
            "t": time.monotonic(),
            "bridge": procstats.cpu_seconds("self"),
            "threads": procstats.thread_cpu(names),
            "tansu": procstats.cpu_seconds(tansu_pid) if tansu_pid else 0.0,
            "postgres": procstats.postgres_children_cpu_total(self.run.pg_data),
            # the domain-event consumer: its own process (restarted workers' CPU before a restart is lost)
            "events_worker": sum(procstats.cpu_seconds(p) for p in procstats.spawned_children(os.getpid())),
            "machine": procstats.machine_busy_seconds(),
            "batches": self._batches(),
        }

    def _batches(self) -> dict[str, int]:
        if self.run.bridge is None or self.run.bridge.primary.runner is None or self.run.bridge.primary.lane is None:
            return {"debezium_batches": 0, "debezium_records": 0, "consumer_batches": 0, "consumer_messages": 0}
        runner, stats = self.run.runner, self.run.stats
        return {
            "debezium_batches": runner.batches,
            "debezium_records": runner.records_produced,
            "consumer_batches": stats.batches,
            "consumer_messages": stats.messages,
        }

    def start(self) -> None:
        self._before = self._snap()

    @staticmethod
    def _batch_sizes(before: dict[str, int], after: dict[str, int]) -> dict[str, float]:
        d = {k: after[k] - before[k] for k in after}
        return {
            "debezium_batches": d["debezium_batches"],
            "debezium_records_per_batch": round(d["debezium_records"] / max(d["debezium_batches"], 1), 1),
            "consumer_batches": d["consumer_batches"],
            "consumer_messages_per_batch": round(d["consumer_messages"] / max(d["consumer_batches"], 1), 1),
        }

    def stop(self, writer_cpu: float = 0.0) -> dict[str, Any]:
        after, before = self._snap(), self._before
        wall = after["t"] - before["t"]
        ours = {k: after[k] - before[k] for k in ("bridge", "events_worker", "tansu", "postgres")}
        ours["events_worker"] = max(ours["events_worker"], 0.0)  # a worker restarted meanwhile starts again at 0
        ours["writer"] = writer_cpu
        threads = {n: s - before["threads"].get(n, 0.0) for n, s in after["threads"].items()}
        busiest = sorted(threads.items(), key=lambda kv: -kv[1])[:8]
        top = {name: round(s, 2) for name, s in busiest if s >= 0.05}
        return {
            "wall_s": round(wall, 2),
            "cpu_s": {k: round(v, 2) for k, v in ours.items()},
            "cpu_s_other_processes": round(max(0.0, after["machine"] - before["machine"] - sum(ours.values())), 2),
            "bridge_threads_cpu_s": top,
            "batches": self._batch_sizes(before["batches"], after["batches"]),
            "loadavg_end": procstats.loadavg(),
        }


# -- waiting ------------------------------------------------------------------------------------
class Progress:
    """One line per ~2 s while a phase waits: captured (in Kafka) and applied (in ClickHouse)."""

    def __init__(self, run: Run, label: str) -> None:
        self.run, self.label = run, label
        self.last = (time.monotonic(), run.stats.rows)
        self.produced_at: float | None = None

    def tick(self, note: str = "") -> None:
        now = time.monotonic()
        then, before = self.last
        if now - then < 2.0:
            return
        rows = self.run.stats.rows
        self.last = (now, rows)
        say(
            f"  [{self.label}] captured {self.run.runner.records_produced:,} | applied {rows:,}"
            f" ({(rows - before) / (now - then):,.0f}/s){note}"
        )


def wait_queryable(
    run: Run,
    table: str,
    expected: int,
    applied_target: int,
    progress: Progress,
    produced_target: int | None = None,
    writer_running: Any = None,
) -> dict[str, float]:
    """Block until ``expected`` rows are in ``SOURCE._log_<table>``; monotonic times of the milestones.

    The in-process counters are polled every 10 ms (cheap); ClickHouse is asked only once they
    say everything was applied, so polling does not load the store while it ingests.
    """
    stats, runner = run.stats, run.runner
    deadline = time.monotonic() + WAIT_TIMEOUT
    marks: dict[str, float] = {}
    while time.monotonic() < deadline:
        run.b.supervise()
        now = time.monotonic()
        if produced_target is not None and "produced" not in marks and runner.records_produced >= produced_target:
            marks["produced"] = now
        if writer_running is not None and "writer_done" not in marks and not writer_running():
            marks["writer_done"] = now
        if stats.rows >= applied_target and run.count(table) >= expected:
            marks["queryable"] = time.monotonic()
            return marks
        progress.tick()
        time.sleep(0.01 if stats.rows < applied_target else 0.05)
    raise TimeoutError(f"{table}: {run.count(table):,} of {expected:,} rows queryable after {WAIT_TIMEOUT:.0f} s")


def wait_events(run: Run, target: int, since: float) -> float | None:
    """Seconds from ``since`` until the domain-event consumer translated ``target`` changes (None: not running)."""
    if run.events is None:
        return None
    deadline = time.monotonic() + WAIT_TIMEOUT
    while (done := run.events.translated) < target:
        run.b.supervise()
        if time.monotonic() > deadline:
            raise TimeoutError(f"domain events: {done:,} of {target:,} after {WAIT_TIMEOUT:.0f} s")
        time.sleep(0.05)
    return time.monotonic() - since


def start_writer(run: Run, *args: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "bench.workload", *args, "--dsn", run.dsn]
    run.writer = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    return run.writer


def finish_writer(run: Run) -> dict[str, Any]:
    assert run.writer is not None
    out, _ = run.writer.communicate(timeout=WAIT_TIMEOUT)
    if run.writer.returncode != 0:
        raise RuntimeError(f"writer failed with exit code {run.writer.returncode}")
    run.writer = None
    return dict(json.loads(out.strip().splitlines()[-1]))


# -- phases ---------------------------------------------------------------------------------------
def phase_initial_load(run: Run) -> None:
    """The copy path's initial load against ClickHouse's postgresql(), with a bridge of its own in a
    child process, stopped (and its slot dropped) before the other phases start theirs."""
    n = run.args.initial_load_rows
    if not n:
        return
    say(f"[1/5] initial load: {n:,} rows into bench_load, copied by the copy path, then by ClickHouse's postgresql()")
    r = initial_load.run_phase(run.dsn, n, run.state_dir, run.pg_data, say)
    run.results["initial_load"] = r
    say(
        f"  initial load: copy path {r['copy_rows_per_s']:,.0f} rows/s, postgresql() "
        f"{r['postgresql_function']['rows_per_s']:,.0f} rows/s: {r['ratio']:.2f}x (target ≥ {r['target_ratio']}×)"
    )


def phase_snapshot(run: Run) -> None:
    n = run.args.snapshot_rows
    say(f"[2/5] snapshot: loading {n:,} rows into bench_snapshot before the bridge starts (Debezium's snapshot) ...")
    load_s = workload.load_rows(run.dsn, n) if n else 0.0
    settings = config.load(str(run.state_dir), events=False if run.args.no_events else None)
    run.bridge = bootstrap.build_bridge(
        settings,
        [
            SourceSpec(
                SecretStr(run.dsn), SOURCE, ("public.bench_snapshot", "public.bench_rows"), initial_load="debezium"
            )
        ],
        lambda line: say(f"  bridge: {line}"),
    )
    meter = CpuMeter(run)
    meter.start()
    t0 = time.monotonic()
    run.bridge.start()
    t_started = time.monotonic()
    interruptible()  # the JVM has just taken SIGINT over
    run.ch = connect_warehouse(run.b.clickhouse_url, run.state_dir)  # over HTTP, like any other client
    say(f"  bridge started in {t_started - t0:.1f} s (chDB, Tansu, JVM + Debezium); snapshotting ...")
    marks = wait_queryable(run, "bench_snapshot", n, n, Progress(run, "snapshot"))
    span = marks["queryable"] - t0
    run.results["snapshot"] = {
        "rows": n,
        "load_into_postgres_s": round(load_s, 2),
        "bridge_start_s": round(t_started - t0, 2),
        "seconds_from_bridge_start": round(span, 2),
        "seconds_after_start_returned": round(marks["queryable"] - t_started, 2),
        "rows_per_s": round(n / (marks["queryable"] - t_started), 1) if n else None,
        "rows_per_s_incl_startup": round(n / span, 1) if n else None,
        "cpu": meter.stop(),
    }
    say(f"  snapshot: {n:,} rows queryable {marks['queryable'] - t_started:.1f} s after the bridge started")


def phase_warmup(run: Run) -> None:
    """Stream ``--warmup-rows`` rows into the already captured snapshot table first, so the JVM's
    JIT compiler has done its work before the measured phase; the cold rate is reported too."""
    a = run.args
    if not a.warmup_rows:
        return
    say(f"[warm-up] streaming {a.warmup_rows:,} rows into bench_snapshot so the JVM is warmed up ...")
    stats = run.stats
    meter = CpuMeter(run)
    meter.start()
    writer = start_writer(
        run, "bulk", "--rows", str(a.warmup_rows), "--tx-size", str(a.tx_size), "--table", "bench_snapshot"
    )
    marks = wait_queryable(
        run,
        "bench_snapshot",
        a.snapshot_rows + a.warmup_rows,
        stats.rows + a.warmup_rows,
        Progress(run, "warm-up"),
        writer_running=lambda: writer.poll() is None,
    )
    w = finish_writer(run)
    span = marks["queryable"] - w["first_commit"]
    run.results["warmup"] = {
        "rows": a.warmup_rows,
        "end_to_end_rows_per_s": round(a.warmup_rows / span, 1),
        "end_to_end_s": round(span, 2),
        "cpu": meter.stop(w["cpu_s"]),
    }
    say(f"  warm-up (cold JVM): {a.warmup_rows / span:,.0f} rows/s end to end ({span:.1f} s)")


def phase_throughput(run: Run) -> None:
    a = run.args
    say(f"[3/5] throughput: {a.rows:,} rows into bench_rows, transactions of {a.tx_size} rows, as fast as possible ...")
    stats = run.stats
    applied0, produced0 = stats.rows, run.runner.records_produced
    events0 = run.events.translated if run.events else 0
    rounds0 = truncation_rounds(run)
    meter = CpuMeter(run)
    meter.start()
    writer = start_writer(run, "bulk", "--rows", str(a.rows), "--tx-size", str(a.tx_size))
    marks = wait_queryable(
        run,
        "bench_rows",
        a.rows,
        applied0 + a.rows,
        Progress(run, "throughput"),
        produced_target=produced0 + a.rows,
        writer_running=lambda: writer.poll() is None,
    )
    w = finish_writer(run)
    events_s = wait_events(run, events0 + a.rows, w["first_commit"])
    cpu = meter.stop(w["cpu_s"])
    span = marks["queryable"] - w["first_commit"]
    write_s = w["last_commit"] - w["started"]
    produced_s = marks.get("produced", marks["queryable"]) - w["first_commit"]
    run.results["throughput"] = {
        "rows": a.rows,
        "tx_size": a.tx_size,
        "transactions": w["transactions"],
        "end_to_end_s": round(span, 2),
        "end_to_end_rows_per_s": round(a.rows / span, 1),
        "source_write_s": round(write_s, 2),
        "source_rows_per_s": round(a.rows / write_s, 1),
        "captured_into_kafka_rows_per_s": round(a.rows / produced_s, 1),
        "drain_after_last_commit_s": round(marks["queryable"] - w["last_commit"], 2),
        "latency_under_load_ms": latency(run, f"id <= {a.rows}"),
        "domain_events_rows_per_s": round(a.rows / events_s, 1) if events_s else None,
        # the embedded broker emptied meanwhile: Debezium waits until every lane stored what it sent
        "broker_truncations": truncation_rounds(run) - rounds0,
        "last_truncation_pause_s": round(run.b.truncator.stats.last_pause_s, 2) if run.b.truncator else None,
        "cpu": cpu,
    }
    say(
        f"  throughput: {a.rows / span:,.0f} rows/s end to end ({span:.1f} s); PostgreSQL took "
        f"{a.rows / write_s:,.0f} rows/s"
        + (f"; domain events {a.rows / events_s:,.0f} rows/s" if events_s else "")
        + (
            f"; the broker was emptied {t} time(s), the last pausing capture {p:.1f} s"
            if (t := run.results["throughput"]["broker_truncations"])
            and (p := run.results["throughput"]["last_truncation_pause_s"]) is not None
            else ""
        )
    )


def truncation_rounds(run: Run) -> int:
    return run.b.truncator.stats.rounds if run.b.truncator is not None else 0


def phase_latency(run: Run) -> None:
    a = run.args
    say(
        f"[4/5] latency: {a.rate:,.0f} rows/s for {a.latency_seconds:.0f} s, "
        f"{a.latency_tx_rows} rows per transaction ..."
    )
    first_id = workload.max_id(run.dsn, "bench_rows")
    applied0 = run.stats.rows
    events0 = run.events.translated if run.events else 0
    meter = CpuMeter(run)
    meter.start()
    writer = start_writer(
        run, "steady", "--rate", str(a.rate), "--seconds", str(a.latency_seconds), "--tx-size", str(a.latency_tx_rows)
    )
    progress = Progress(run, "latency")
    while writer.poll() is None:
        run.b.supervise()
        progress.tick()
        time.sleep(0.2)
    w = finish_writer(run)
    wait_queryable(run, "bench_rows", first_id + w["rows"], applied0 + w["rows"], progress)
    cpu = meter.stop(w["cpu_s"])
    lat = latency(run, f"id > {first_id}")
    events = None
    if wait_events(run, events0 + w["rows"], time.monotonic()) is not None:
        events = event_latency(run, first_id, w["rows"])
    run.results["latency"] = {
        "rate_rows_per_s": a.rate,
        "seconds": a.latency_seconds,
        "tx_rows": a.latency_tx_rows,
        "rows": w["rows"],
        "achieved_rows_per_s": round(w["rows"] / (w["last_commit"] - w["started"]), 1),
        "late_transactions": w["late_transactions"],
        "commit_to_queryable_ms": lat,
        "commit_to_event_stored_ms": events,
        "cpu": cpu,
    }
    say(
        f"  latency: p50 {lat['p50']:.0f} ms, p90 {lat['p90']:.0f} ms, p99 {lat['p99']:.0f} ms, max {lat['max']:.0f} ms"
    )
    if events is not None:
        say(
            f"  domain events: commit -> stored p50 {events['p50']:.0f} ms, p99 {events['p99']:.0f} ms, "
            f"max {events['max']:.0f} ms; behind the mirror's row p50 {events['behind_mirror_p50']:.0f} ms, "
            f"max {events['behind_mirror_max']:.0f} ms"
        )


def phase_peer(run: Run) -> None:
    """The same writers through ClickHouse's MaterializedPostgreSQL in a child process (bench/peer.py),
    on its own table: warm-up, ``--peer-runs`` throughput batches, the steady-rate latency. The bridge
    keeps running, idle, meanwhile (its CPU and memory over the phase are reported)."""
    a = run.args
    if a.no_peer:
        return
    say(
        f"[5/5] peer: ClickHouse's MaterializedPostgreSQL on bench_peer: warm-up, {a.peer_runs} x {a.rows:,} rows, "
        f"then {a.rate:,.0f} rows/s for {a.latency_seconds:.0f} s (the bridge idles meanwhile) ..."
    )
    meter = CpuMeter(run)
    meter.start()
    measured = peer_phase.measure(
        a, run.dsn, run.state_dir, lambda *argv: start_writer(run, *argv), lambda: finish_writer(run), say
    )
    batches = [measured["warmup"], *measured["throughput_runs"], measured["latency"]]
    writers_cpu = sum(b["writer_cpu_s"] for b in batches)
    idle = meter.stop(writers_cpu)
    run.results["peer"] = {
        **measured,
        "bridge_idle": {
            "wall_s": idle["wall_s"],
            "bridge_process_cpu_s": idle["cpu_s"]["bridge"],
            "tansu_cpu_s": idle["cpu_s"]["tansu"],
            "bridge_process_vmrss_mb": round(procstats.status_kb("self", "VmRSS") / 1024, 1),
        },
        "postgres_cpu_s": idle["cpu_s"]["postgres"],
        # the machine's load from outside the bench over the phase (the peer's own CPU taken out)
        "cpu_s_other_processes": round(max(0.0, idle["cpu_s_other_processes"] - measured["cpu_s"]), 2),
        "ratios": peer_phase.ratios(run.results, measured),
    }
    r = run.results["peer"]["ratios"]
    say(
        f"  this project / peer: throughput {report.ratio_text(r['throughput'])}, "
        f"latency p50 {report.ratio_text(r['latency_p50'])} "
        f"(above 1 is better for throughput, below 1 for latency)"
    )


def latency(run: Run, where: str) -> dict[str, float]:
    """Quantiles of _ingested_at - _commit_ts (ms) over the change-log rows matching ``where``."""
    assert run.ch is not None
    d = "toUnixTimestamp64Milli(_ingested_at) - toUnixTimestamp64Milli(_commit_ts)"
    row = run.ch.query(
        f"SELECT count(), quantilesExact(0.5, 0.9, 0.99)({d}), max({d}), avg({d})"
        f" FROM {SOURCE}._log_bench_rows WHERE {where}"
    )[0]
    return {"rows": int(row[0]), **_quantiles(row[1], row[2]), "avg": round(float(row[3]), 1)}


def _quantiles(q: Sequence[Any], most: Any) -> dict[str, float]:
    """``quantilesExact(0.5, 0.9, 0.99)`` and ``max`` as the report's keys."""
    return {"p50": float(q[0]), "p90": float(q[1]), "p99": float(q[2]), "max": float(most)}


def event_latency(run: Run, first_id: int, rows: int) -> dict[str, float]:
    """Over the events of rows above ``first_id``: quantiles of stored_at - occurred_at (commit time), and
    how far each event was stored after its row's change-log row (the events lane's lag behind the mirror)."""
    assert run.ch is not None
    ch, deadline = run.ch, time.monotonic() + 60
    mine = f"source_table = 'public.bench_rows' AND toUInt64OrZero(aggregate_id) > {first_id}"
    while ch.query(f"SELECT count() FROM events.domain_events WHERE {mine}")[0][0] < rows:  # counters run ahead
        if time.monotonic() > deadline:
            break  # reported over the events there are
        time.sleep(0.2)
    d = "toUnixTimestamp64Milli(e.stored_at) - toUnixTimestamp64Milli(e.occurred_at)"
    behind = "toUnixTimestamp64Milli(e.stored_at) - toUnixTimestamp64Milli(m._ingested_at)"
    row = ch.query(
        f"SELECT count(), quantilesExact(0.5, 0.9, 0.99)({d}), max({d}), quantileExact(0.5)({behind}), max({behind})"
        " FROM events.domain_events AS e"
        f" INNER JOIN (SELECT id, _ingested_at FROM {SOURCE}._log_bench_rows WHERE id > {first_id}) AS m"
        " ON toUInt64(e.aggregate_id) = m.id"
        f" WHERE {mine} AND aggregate_type = 'bench_row'"
    )[0]
    return {
        "events": int(row[0]),
        **_quantiles(row[1], row[2]),
        "behind_mirror_p50": float(row[3]),
        "behind_mirror_max": float(row[4]),
    }


def memory(run: Run, sampler: procstats.Sampler) -> None:
    sampler.sample()
    broker_pid = run.broker_pid
    pm = procstats.postmaster_pid(run.pg_data)
    backends = procstats.children(pm) if pm else []
    largest_child_kb = max((procstats.status_kb(p, "VmHWM") for p in backends), default=0)
    workers = procstats.spawned_children(os.getpid())
    run.results["memory_peak_mb"] = {
        "bridge_process_vmhwm": round(procstats.status_kb("self", "VmHWM") / 1024, 1),
        "events_worker_vmhwm": round(sum(procstats.status_kb(p, "VmHWM") for p in workers) / 1024, 1),
        "tansu_vmhwm": round(procstats.status_kb(broker_pid, "VmHWM") / 1024, 1) if broker_pid else None,
        "postgres_total_pss_peak": round(sampler.pg_peak_pss_kb / 1024, 1),
        "postgres_postmaster_vmhwm": round(procstats.status_kb(pm, "VmHWM") / 1024, 1) if pm else None,
        "postgres_largest_child_vmhwm": round(largest_child_kb / 1024, 1),
        "postgres_processes_peak": sampler.pg_peak_processes,
    }


# -- driver ---------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--rows", type=int, default=300_000, help="rows of the throughput workload")
    p.add_argument("--tx-size", type=int, default=100, help="rows per transaction in the throughput workload")
    p.add_argument("--rate", type=float, default=1000.0, help="rows/s of the steady latency workload")
    p.add_argument("--latency-seconds", type=float, default=30.0, help="duration of the latency workload")
    p.add_argument(
        "--latency-tx-rows",
        type=int,
        default=10,
        help="rows per transaction in the latency workload (one every tx-rows/rate s)",
    )
    p.add_argument("--snapshot-rows", type=int, default=100_000, help="rows present before the bridge starts")
    p.add_argument(
        "--initial-load-rows",
        type=int,
        default=5_000_000,
        help="rows of the initial-load phase (copy path vs ClickHouse's postgresql()); 0 = skip it",
    )
    p.add_argument(
        "--warmup-rows",
        type=int,
        default=300_000,
        help="rows streamed (and reported as the cold rate) before the measured throughput phase; 0 = none",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small run for a smoke test: 20k rows, 20k snapshot rows, 200k initial-load rows, 10 s latency "
        "(explicit options still win)",
    )
    p.add_argument(
        "--state-parent",
        default=None,
        help="where to create the temporary state dir "
        "(default: the system temp dir; the postgres OS user must be able to enter it)",
    )
    p.add_argument(
        "--no-events",
        action="store_true",
        help="run the mirror consumer only (default: the domain-event consumer runs too, as in production)",
    )
    p.add_argument(
        "--no-peer",
        action="store_true",
        help="skip the peer phase (the same workloads through ClickHouse's MaterializedPostgreSQL)",
    )
    p.add_argument("--peer-runs", type=int, default=2, help="measured throughput batches through the peer")
    p.add_argument(
        "--events-workers",
        type=int,
        default=None,
        help="domain-event worker processes (sets CDC_EVENTS_WORKERS for the bridge; default: the bridge's, 1)",
    )
    p.add_argument("--keep-state", action="store_true", help="keep the state dir (logs, data) afterwards")
    p.add_argument("--no-json", action="store_true", help="do not write bench/results/<timestamp>.json")
    args = p.parse_args(argv)
    if args.peer_runs < 1:
        p.error("--peer-runs must be at least 1 (--no-peer skips the peer)")
    if args.events_workers is not None:
        if args.events_workers < 1:
            p.error("--events-workers must be at least 1")
        os.environ["CDC_EVENTS_WORKERS"] = str(args.events_workers)  # read by the settings the bridge is built from
    if args.quick:
        given = set(argv if argv is not None else sys.argv[1:])
        quick = {
            "--rows": ("rows", 20_000),
            "--snapshot-rows": ("snapshot_rows", 20_000),
            "--initial-load-rows": ("initial_load_rows", 200_000),
            "--latency-seconds": ("latency_seconds", 10.0),
            "--warmup-rows": ("warmup_rows", 0),
        }
        for flag, (name, value) in quick.items():
            if not any(g == flag or g.startswith(flag + "=") for g in given):
                setattr(args, name, value)
    return args


def environment(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpus": os.cpu_count(),
        "loadavg_start": procstats.loadavg(),
        "python": sys.version.split()[0],
        "options": {k: v for k, v in vars(args).items() if k not in ("no_json",)},
        "events_workers": int(os.environ.get("CDC_EVENTS_WORKERS") or 1),
        "targets": TARGETS,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    state_dir = Path(tempfile.mkdtemp(prefix="cdc-bench-", dir=args.state_parent))
    state_dir.chmod(0o755)  # the postgres OS user must enter it
    run = Run(args, state_dir, results={"environment": environment(args)})
    pg = bootstrap.embedded_postgres(config.load(str(state_dir)))
    run.pg_data = pg.data_dir
    sampler = procstats.Sampler(pg.data_dir)
    interrupted = False
    interruptible()
    say(
        f"cdc bench: state in {state_dir}; load average {run.results['environment']['loadavg_start']} "
        f"on {os.cpu_count()} CPUs"
    )
    try:
        pg.start()
        pg.create_database(SOURCE)
        run.dsn = pg.dsn(SOURCE)
        workload.create_tables(run.dsn)
        phase_initial_load(run)
        sampler.start()  # after the initial load: peak memory is the bridge phases' (that phase reports its own)
        phase_snapshot(run)
        phase_warmup(run)
        phase_throughput(run)
        phase_latency(run)
        memory(run, sampler)  # the bridge phases' peaks: the peer's own process reports its own
        phase_peer(run)
        run.results["environment"]["loadavg_end"] = procstats.loadavg()
    except KeyboardInterrupt:
        interrupted = True
        say("\ninterrupted: stopping ...")
    finally:
        sampler.stop()
        if run.writer is not None and run.writer.poll() is None:
            run.writer.terminate()
            run.writer.wait(timeout=10)
        if run.ch is not None:
            run.ch.close()
        if run.bridge is not None:
            run.bridge.stop(drain=not interrupted)
        pg.stop()
        if not args.keep_state:
            shutil.rmtree(state_dir, ignore_errors=True)
    if interrupted:
        return 130
    say(report.render(run.results))
    if not args.no_json:
        RESULTS_DIR.mkdir(exist_ok=True)
        path = RESULTS_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(json.dumps(run.results, indent=2) + "\n")
        say(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
