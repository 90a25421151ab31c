"""`make soak`: drive load at a real bridge while injecting faults, then check parity and report.

    python -m bench.soak --duration 900            # 15 minutes, faults at random moments
    python -m bench.soak --duration 120 --faults kill-bridge,kill-broker,kill-worker,restart-postgres

A private PostgreSQL cluster, the soak's own schema (bench/soak_load.py), unthrottled writers and
`cdc run` as a child process — exactly as a user runs it. Faults: kill -9 of the whole bridge
(restarted at once, as a service manager would), kill -9 of its broker only, kill -9 of its
events worker only, and `pg_ctl restart -m immediate`. Memory of everything the bridge started
is sampled every 10 s. When the time is up the writers stop and the soak waits until ClickHouse
equals PostgreSQL (bench/parity.py); it exits 1 when it does not.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import clickhouse_connect

from bench import parity, soak_procs
from bench.soak_load import TABLES, Application
from cdc.embedded.net import free_port
from cdc.embedded.pg_cluster import EmbeddedPostgres

FAULTS = ("kill-bridge", "kill-broker", "kill-worker", "restart-postgres")
# what `cdc status` must say after each fault (the bridge restarted by kill-bridge has nothing to report)
REPORTED = {"kill-broker": "broker stopped", "kill-worker": "worker exited", "restart-postgres": "PostgreSQL"}
DATABASE = "soak"
SAMPLE_EVERY_S = 10.0


def say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)


@dataclass
class Run:
    duration: float
    faults: Sequence[str]  # in order; with ``random_faults`` the kinds to pick from
    random_faults: bool = False
    threads: int = 1
    batch: int = 10  # rows per insert transaction, at most
    rate: float = 0.0
    seed: int = 7
    env: dict[str, str] = field(default_factory=dict)
    converge_timeout: float = 900.0
    keep: bool = False  # keep the state (PostgreSQL, logs) even when parity holds
    root: Path = field(default_factory=lambda: _tempdir("cdc-soak-"))
    injected: list[tuple[float, str, bool, bool | None]] = field(default_factory=list)  # (t, fault, done, reported)
    memory: list[tuple[float, int, dict[str, float]]] = field(default_factory=list)  # (t, bridge generation, roles)


def _tempdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)  # the postgres OS user must enter it
    return path


class Soak:
    def __init__(self, run: Run) -> None:
        self.run = run
        self.pg = EmbeddedPostgres(run.root / "pg" / "data", free_port(), run.root / "postgres.log")
        self.state_dir = run.root / "state"
        self.bridge: soak_procs.Bridge | None = None
        self.generation = 0
        self.started = 0.0

    def start(self) -> None:
        self.pg.start()
        self.pg.create_database(DATABASE)
        self.app = Application(self.pg.dsn(DATABASE), self.run.threads, self.run.rate, self.run.seed, self.run.batch)
        self.app.install()
        self._start_bridge()

    def _start_bridge(self) -> str:
        self.bridge = soak_procs.Bridge(
            self.state_dir, self.pg.dsn(DATABASE), self.run.env, self.run.root / "bridge.log"
        )
        self.generation += 1
        self.endpoint = self.bridge.wait_started()
        return self.endpoint

    # -- faults -------------------------------------------------------------------------------------
    def inject(self, fault: str) -> bool:
        assert self.bridge is not None
        pid = self.bridge.pid
        done = {
            "kill-bridge": lambda: self._kill_bridge(),
            "kill-broker": lambda: soak_procs.kill9(soak_procs.broker_pid(pid)),
            "kill-worker": lambda: soak_procs.kill9(soak_procs.events_worker_pid(pid)),
            "restart-postgres": lambda: self.pg.restart("immediate") is None,
        }[fault]()
        at = round(time.monotonic() - self.started, 1)
        reported = self._reported(REPORTED[fault]) if fault in REPORTED and done else None
        self.run.injected.append((at, fault, bool(done), reported))
        say(f"fault: {fault} ({'done' if done else 'nothing to do'}{', reported by cdc status' if reported else ''})")
        return bool(done)

    def _reported(self, text: str, timeout: float = 60.0) -> bool:
        """Whether the bridge's /status lists an error saying ``text`` within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                url = (self.state_dir / "status.url").read_text().strip()
                with urllib.request.urlopen(f"{url}/status", timeout=10) as response:  # noqa: S310 - loopback
                    errors = [e for s in json.loads(response.read())["sources"] for e in s["errors"]]
                if any(text in e for e in errors):
                    return True
            except (OSError, ValueError, KeyError):
                pass  # the status server may be restarting with the parts
            time.sleep(1.0)
        return False

    def _kill_bridge(self) -> bool:
        assert self.bridge is not None
        self.bridge.kill()
        self._start_bridge()  # at once, as a service manager would
        return True

    # -- the run --------------------------------------------------------------------------------------
    def drive(self) -> None:
        """Load for ``duration`` seconds with the faults spread over it; memory sampled meanwhile."""
        self.app.start()
        self.started = time.monotonic()
        schedule = self._schedule()
        next_sample = 0.0
        while (now := time.monotonic() - self.started) < self.run.duration:
            if schedule and now >= schedule[0][0]:
                self.inject(schedule.pop(0)[1])
            if now >= next_sample:
                self._sample(now)
                next_sample = now + SAMPLE_EVERY_S
            time.sleep(0.5)
        self.app.stop()
        self._sample(time.monotonic() - self.started)

    def _schedule(self) -> list[tuple[float, str]]:
        """Fault times: spread evenly over the middle of the run (or at random moments, bounded in count)."""
        rnd = random.Random(self.run.seed)
        start, end = self.run.duration * 0.15, self.run.duration * 0.8
        if self.run.random_faults:
            count = max(1, int((end - start) / 60))  # one a minute on average
            times = sorted(rnd.uniform(start, end) for _ in range(count))
            return [(t, rnd.choice(list(self.run.faults))) for t in times]
        step = (end - start) / max(1, len(self.run.faults))
        return [(start + i * step, f) for i, f in enumerate(self.run.faults)]

    def _sample(self, now: float) -> None:
        if self.bridge is not None and self.bridge.proc.poll() is None:
            self.run.memory.append((round(now, 1), self.generation, soak_procs.tree_rss_mb(self.bridge.pid)))

    def converge(self) -> tuple[parity.Verdict, list[str], float]:
        """Wait until ClickHouse equals PostgreSQL (values and no repeats), at most ``converge_timeout``."""
        ch = clickhouse_connect.get_client(dsn=self.endpoint)
        began = time.monotonic()
        verdict, repeats = parity.Verdict(["not checked"]), ["not checked"]
        while time.monotonic() - began < self.run.converge_timeout:
            try:
                if not parity.counts_match(TABLES, self.pg.dsn(DATABASE), ch, DATABASE):
                    time.sleep(5)  # still catching up: the cheap check first
                    continue
                verdict = parity.checksums(TABLES, self.pg.dsn(DATABASE), ch, DATABASE)
                repeats = parity.no_repeats(TABLES, ch, DATABASE, DATABASE) if verdict.exact else repeats
            except Exception as e:  # noqa: BLE001 - reported as the reason parity was not reached
                verdict = parity.Verdict([f"{type(e).__name__}: {e}"])
            if verdict.exact and not repeats:
                break
            time.sleep(5)
        return verdict, repeats, round(time.monotonic() - began, 1)

    def close(self) -> int:
        code = self.bridge.stop() if self.bridge is not None else 0
        self.pg.stop()
        return code


def memory_report(samples: Sequence[tuple[float, int, dict[str, float]]], warm_s: float) -> dict[str, Any]:
    """Peak total, and growth after warm-up within each bridge generation (a restart starts anew)."""
    totals = [(t, g, sum(roles.values())) for t, g, roles in samples]
    growth = 0.0
    for generation in {g for _, g, _ in totals}:
        mine = [(t, v) for t, g, v in totals if g == generation]
        warm = [v for t, v in mine if t >= mine[0][0] + warm_s]
        if len(warm) >= 2:
            growth = max(growth, max(warm) - warm[0])
    peak = max((v for _, _, v in totals), default=0.0)
    last = samples[-1][2] if samples else {}
    minutes = [(t, roles) for t, _, roles in samples if int(t) % 60 < SAMPLE_EVERY_S]  # about one a minute
    return {
        "peak_total_mb": round(peak, 1),
        "growth_after_warmup_mb": round(growth, 1),
        "last_by_role_mb": last,
        "by_minute_mb": [{"t_s": t, **roles} for t, roles in minutes],
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    run = Run(
        duration=args.duration,
        faults=[] if args.no_faults else [f for f in args.faults.split(",") if f] if args.faults else list(FAULTS),
        random_faults=not args.faults and not args.no_faults,
        threads=args.threads,
        batch=args.batch,
        rate=args.rate,
        seed=args.seed,
        env={"CDC_GUARDRAILS__BROKER_BUFFER_RECORDS": str(args.broker_buffer)} if args.broker_buffer else {},
        keep=args.keep,
    )
    return report(execute(run), args.json)


def execute(run: Run, progress: Callable[[str], None] = say) -> dict[str, Any]:
    soak = Soak(run)
    progress(f"soak: {run.duration:.0f} s, faults {', '.join(run.faults) or 'none'}; state in {run.root}")
    try:
        soak.start()
        soak.drive()
        c = soak.app.counts
        progress(f"load stopped: {c.transactions:,} transactions ({c.inserted:,} inserts, {c.updated:,} updates,"
                 f" {c.deleted:,} deletes); waiting for ClickHouse to equal PostgreSQL ...")  # fmt: skip
        verdict, repeats, converge_s = soak.converge()
    finally:
        exit_code = soak.close()
    exact = verdict.exact and not repeats
    if exact and not run.keep:
        shutil.rmtree(run.root, ignore_errors=True)
    c = soak.app.counts
    return {
        "duration_s": run.duration,
        "written": {
            "transactions": c.transactions,
            "inserted": c.inserted,
            "updated": c.updated,
            "deleted": c.deleted,
            "failed_transactions": c.errors,
        },  # fmt: skip
        "rows_per_s": round((c.inserted + c.updated + c.deleted) / run.duration, 1),
        "faults": [{"at_s": t, "fault": f, "done": d, "reported": r} for t, f, d, r in run.injected],
        "memory": memory_report(run.memory, warm_s=min(60.0, run.duration / 4)),
        "converged_after_s": converge_s,
        "rows": verdict.rows,
        "problems": verdict.problems + repeats,
        "exact": exact,
        "bridge_exit_code": exit_code,
        "state": str(run.root) if run.root.exists() else "removed (parity held)",
    }


def report(result: dict[str, Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        m = result["memory"]
        faults = ", ".join(f"{f['fault']}@{f['at_s']}s" for f in result["faults"]) or "none"
        print(f"written: {result['written']} ({result['rows_per_s']:,} row changes/s)")
        print(f"faults:  {faults}")
        print(
            f"memory:  peak {m['peak_total_mb']} MB (bridge, broker, events worker), growth after warm-up "
            f"{m['growth_after_warmup_mb']} MB; last {m['last_by_role_mb']}"
        )
        print(f"parity:  {'EXACT' if result['exact'] else 'DIFFERS'} after {result['converged_after_s']} s")
        print(f"rows:    {result['rows']}")
        for problem in result["problems"]:
            print(f"  ! {problem}")
    return 0 if result["exact"] and result["bridge_exit_code"] == 0 else 1


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=900.0, help="seconds of load (default 900: 15 minutes)")
    p.add_argument("--faults", help=f"comma-separated, in this order: {', '.join(FAULTS)} (default: random)")
    p.add_argument("--no-faults", action="store_true", help="load only (for memory and throughput figures)")
    p.add_argument("--threads", type=int, default=1, help="writer threads (default 1)")
    p.add_argument("--batch", type=int, default=10, help="rows per insert transaction, at most (default 10)")
    p.add_argument("--rate", type=float, default=0.0, help="transactions/s per writer (default 0: unthrottled)")
    p.add_argument("--seed", type=int, default=7, help="random seed of faults and load")
    p.add_argument("--broker-buffer", type=int, help="records the embedded broker keeps between truncations")
    p.add_argument("--keep", action="store_true", help="keep the state directory even when parity holds")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
