"""The peer phase: the same workloads through ClickHouse's MaterializedPostgreSQL (bench/peer.py).

bench.run calls :func:`measure` after its own phases, with the bridge still running (idle: the peer's
table ``bench_peer`` is not captured). The peer child process is started, its initial sync awaited,
then the same writers run against ``bench_peer``:

1. a warm-up bulk batch (``--warmup-rows``, or ``--rows`` when that is 0), reported as the cold rate;
2. the measured bulk batch ``--peer-runs`` times: rows / (writer's first commit -> the peer saw
   ``count()`` reach the batch's rows), both CLOCK_MONOTONIC moments;
3. the steady writer at ``--rate``, logging each transaction's last id and the moment its commit
   returned; per transaction, latency = the first moment the peer's ``max(id)`` reached that id minus
   that moment (:func:`commit_latencies`).
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import psycopg

from bench import peer, workload

ROOT = Path(__file__).resolve().parent.parent
Say = Callable[[str], None]
StartWriter = Callable[..., subprocess.Popen[str]]
FinishWriter = Callable[[], dict[str, Any]]


# -- pure: latencies and their quantiles --------------------------------------------------------
def commit_latencies(commits: Sequence[Sequence[float]], seen: Sequence[Sequence[float]]) -> list[float]:
    """Milliseconds from each ``[last_id, committed_at]`` to the first ``[moment, max_id]`` with
    ``max_id >= last_id``; both lists in order. A transaction never seen is left out."""
    out: list[float] = []
    i = 0
    for last_id, committed_at in commits:
        while i < len(seen) and seen[i][1] < last_id:
            i += 1
        if i == len(seen):
            break
        out.append((seen[i][0] - committed_at) * 1000.0)
    return out


def quantiles(values: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99 as ClickHouse's ``quantilesExact`` picks them (the value at ``int(level * n)`` of the
    sorted values), max and avg, so they compare with the bridge's figures."""
    if not values:
        raise ValueError("no latencies to summarise")
    s = sorted(values)

    def pick(level: float) -> float:
        return round(s[min(int(level * len(s)), len(s) - 1)], 1)

    return {
        "rows": len(s),
        "p50": pick(0.5),
        "p90": pick(0.9),
        "p99": pick(0.99),
        "max": round(s[-1], 1),
        "avg": round(sum(s) / len(s), 1),
    }


def ratios(results: dict[str, Any], peer_results: dict[str, Any]) -> dict[str, float | None]:
    """This project / peer: end-to-end throughput against the peer's best measured run (above 1: we
    are faster), each latency quantile against the peer's (below 1: we are faster)."""
    best = max(r["end_to_end_rows_per_s"] for r in peer_results["throughput_runs"])
    out: dict[str, float | None] = {"throughput": round(results["throughput"]["end_to_end_rows_per_s"] / best, 3)}
    ours, theirs = results["latency"]["commit_to_queryable_ms"], peer_results["latency"]["commit_to_queryable_ms"]
    for q in ("p50", "p90", "p99", "max"):
        out[f"latency_{q}"] = round(ours[q] / theirs[q], 3) if theirs[q] > 0 else None
    return out


# -- the child process --------------------------------------------------------------------------
class PeerProcess:
    """``python -m bench.peer``: commands as JSON lines on its stdin, replies on its stdout."""

    def __init__(self, dsn: str, state_dir: Path) -> None:
        self.dsn = dsn
        argv = [sys.executable, "-m", "bench.peer", "--store-parent", str(state_dir)]
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env={**os.environ, peer.DSN_VARIABLE: dsn}, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.slots: list[str] = []
        self.publications: list[str] = []
        self.cpu_s = 0.0  # the child's CPU seconds as of its last reply
        threading.Thread(target=self._read, args=(self.proc.stdout,), name="bench-peer", daemon=True).start()

    def _read(self, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            self.replies.put(json.loads(line))
        self.replies.put(None)  # the child exited

    def send(self, **command: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def receive(self, event: str, timeout: float = peer.WAIT_TIMEOUT + 60) -> dict[str, Any]:
        try:
            reply = self.replies.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"the peer sent no {event!r} within {timeout:.0f} s") from None
        if reply is None or reply.get("event") != event:
            raise RuntimeError(f"the peer failed (exit code {self.proc.poll()}) waiting for {event!r}: {reply}")
        return reply

    def ready(self) -> dict[str, Any]:
        reply = self.receive("ready", peer.READY_TIMEOUT + 60)
        self.slots, self.publications = reply["slots"], reply["publications"]
        self.cpu_s = reply["cpu_s"]
        return reply

    def stop(self) -> dict[str, Any]:
        self.send(cmd="stop")
        reply = self.receive("stopped", 120)
        self.proc.wait(timeout=60)
        return reply

    def close(self) -> None:
        """Make sure the child is gone and its slot and publication with it."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for slot in self.slots:
            workload.drop_slot(self.dsn, slot)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            for pub in self.publications:
                conn.execute(f'DROP PUBLICATION IF EXISTS "{pub}"')


# -- the phase ----------------------------------------------------------------------------------
def _bulk(p: PeerProcess, rows: int, tx_size: int, start: StartWriter, finish: FinishWriter) -> dict[str, Any]:
    base, cpu0 = workload.max_id(p.dsn, workload.PEER_TABLE), p.cpu_s
    p.send(cmd="count", base=base, rows=rows)
    start("bulk", "--rows", str(rows), "--tx-size", str(tx_size), "--table", workload.PEER_TABLE)
    got = p.receive("count")
    w = finish()
    p.cpu_s = got["cpu_s"]
    span = got["queryable"] - w["first_commit"]
    return {
        "rows": rows,
        "end_to_end_s": round(span, 3),
        "end_to_end_rows_per_s": round(rows / span, 1),
        "first_row_visible_after_s": round(got["first_visible"] - w["first_commit"], 3),
        "source_rows_per_s": round(rows / (w["last_commit"] - w["started"]), 1),
        "drain_after_last_commit_s": round(got["queryable"] - w["last_commit"], 3),
        "peer_polls": got["polls"],  # ~2.5 ms of the peer's CPU each: measurement cost the bridge does not pay
        "peer_cpu_s": round(got["cpu_s"] - cpu0, 2),
        "writer_cpu_s": round(w["cpu_s"], 2),
    }


def _latency(p: PeerProcess, a: Any, start: StartWriter, finish: FinishWriter) -> dict[str, Any]:
    base, cpu0 = workload.max_id(p.dsn, workload.PEER_TABLE), p.cpu_s
    until = base + workload.steady_transactions(a.rate, a.latency_seconds, a.latency_tx_rows) * a.latency_tx_rows
    p.send(cmd="watch", base=base, until=until)
    start(
        "steady", "--rate", str(a.rate), "--seconds", str(a.latency_seconds), "--tx-size", str(a.latency_tx_rows),
        "--table", workload.PEER_TABLE, "--log-commits",
    )  # fmt: skip
    got = p.receive("watch")
    w = finish()
    p.cpu_s = got["cpu_s"]
    return {
        "rows": w["rows"],
        "achieved_rows_per_s": round(w["rows"] / (w["last_commit"] - w["started"]), 1),
        "late_transactions": w["late_transactions"],
        "commit_to_queryable_ms": quantiles(commit_latencies(w["commits"], got["seen"])),
        "peer_polls": got["polls"],
        "peer_cpu_s": round(got["cpu_s"] - cpu0, 2),
        "writer_cpu_s": round(w["cpu_s"], 2),
    }


def measure(a: Any, dsn: str, state_dir: Path, start: StartWriter, finish: FinishWriter, say: Say) -> dict[str, Any]:
    """Warm-up, ``a.peer_runs`` measured bulk batches and the steady-rate latency through the peer."""
    p = PeerProcess(dsn, state_dir)
    try:
        ready = p.ready()
        say(f"  peer: MaterializedPostgreSQL ready in {ready['sync_s']:.1f} s (slot {', '.join(p.slots) or '?'})")
        warm_rows = a.warmup_rows or a.rows
        warm = _bulk(p, warm_rows, a.tx_size, start, finish)
        say(f"  peer warm-up: {warm['end_to_end_rows_per_s']:,.0f} rows/s ({warm_rows:,} rows)")
        runs = []
        for i in range(a.peer_runs):
            r = _bulk(p, a.rows, a.tx_size, start, finish)
            runs.append(r)
            say(
                f"  peer throughput run {i + 1}: {r['end_to_end_rows_per_s']:,.0f} rows/s end to end "
                f"({r['end_to_end_s']:.2f} s; first row visible after {r['first_row_visible_after_s']:.2f} s)"
            )
        lat = _latency(p, a, start, finish)
        q = lat["commit_to_queryable_ms"]
        say("  peer latency: " + ", ".join(f"{k} {q[k]:,.0f} ms" for k in ("p50", "p90", "p99", "max")))
        stopped = p.stop()
    finally:
        p.close()
    return {
        "engine": "ClickHouse MaterializedPostgreSQL (chDB, its own store, a child process)",
        "initial_sync_s": ready["sync_s"],
        "warmup": warm,
        "throughput_runs": runs,
        "latency": lat,
        "cpu_s": stopped["cpu_s"],
        "vmhwm_mb": stopped["vmhwm_mb"],
    }
