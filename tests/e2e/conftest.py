"""Real embedded stack for end-to-end tests: a private PostgreSQL cluster and `cdc run` as a child process."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import clickhouse_connect
import psycopg
import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from cdc.embedded.net import free_port
from cdc.embedded.pg_cluster import EmbeddedPostgres


def _tempdir(prefix: str) -> Path:
    # not pytest's tmp_path: it sits under a 0700 directory the postgres OS user cannot reach
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def pg() -> Iterator[EmbeddedPostgres]:
    root = _tempdir("cdc-e2e-pg-")
    # every test's bridge leaves its slot behind (as a real bridge would): room for the whole suite
    cluster = EmbeddedPostgres(
        root / "data",
        free_port(),
        root / "postgres.log",
        settings={"max_replication_slots": "40", "max_wal_senders": "40"},
    )
    cluster.start()
    yield cluster
    cluster.stop()
    shutil.copy(root / "postgres.log", "/tmp/last-e2e-postgres.log")
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def database(pg: EmbeddedPostgres, request: pytest.FixtureRequest) -> str:
    """A fresh database per test; returns its DSN."""
    name = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40]
    return fresh_database(pg, name)


def fresh_database(pg: EmbeddedPostgres, name: str) -> str:
    """Database ``name``, empty: a leftover of an earlier run is dropped with its replication slots."""
    pg.run_sql(
        "postgres",
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
        f" WHERE database = '{name}' AND NOT active",
    )
    pg.run_sql("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    pg.create_database(name)
    return pg.dsn(name)


def sql(dsn: str, statement: str, params: tuple[object, ...] | None = None) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def status_json(state_dir: Path) -> dict[str, Any]:
    """`cdc status --json` of the bridge running on ``state_dir`` ({} while none answers)."""
    out = subprocess.run(
        [sys.executable, "-m", "cdc.cli", "status", "--json", "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return dict(json.loads(out.stdout)) if out.stdout.strip() else {}


class SourceLoad:
    """The source application: one transaction of ``step`` every ~10 ms on its own thread until stopped."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.transactions = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def step(self, conn: psycopg.Connection[Any]) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self._stop.is_set():
                with conn.transaction():
                    self.step(conn)
                self.transactions += 1
                self._stop.wait(0.01)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


class BridgeProcess:
    """`cdc run` in a child process, read line by line; stopped with SIGTERM like a service manager does."""

    def __init__(self, state_dir: Path, args: list[str], env: dict[str, str] | None = None) -> None:
        self.state_dir = state_dir
        self.lines: list[str] = []
        extra_env = env
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for key in ("CDC_SOURCE_DSN", "CDC_KAFKA_BOOTSTRAP_SERVERS", "CDC_CLICKHOUSE_URL", "CDC_STATE_DIR"):
            env.pop(key, None)
        env.update(extra_env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cdc.cli", *args, "--state-dir", str(state_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float = 180.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                m = re.search(pattern, line)
                if m:
                    return m
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.1)
        raise AssertionError(f"no line matching {pattern!r}; output so far:\n{self.output()}")

    def clickhouse(self) -> clickhouse_connect.driver.client.Client:
        url = self.wait_for_line(r"ClickHouse endpoint: (http://\S+)").group(1)
        return clickhouse_connect.get_client(dsn=url)

    def stop(self, timeout: float = 120.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._reader.join(5)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


@pytest.fixture
def state_dir() -> Iterator[Path]:
    path = _tempdir("cdc-e2e-state-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def bridges() -> Iterator[list[BridgeProcess]]:
    """Bridge processes started by a test; any still running at the end are stopped."""
    started: list[BridgeProcess] = []
    yield started
    for b in started:
        b.kill()


def start_bridge(bridges: list[BridgeProcess], state_dir: Path, *args: str) -> BridgeProcess:
    bridge = BridgeProcess(state_dir, ["run", *args])
    bridges.append(bridge)
    return bridge


def read_to_end(bootstrap: str, topics: list[str] | None = None) -> list[ConsumerRecord]:
    """Every record of ``topics`` (all but the broker's own ``__*`` when None) up to each partition's end
    as of now, in offset order per partition. Heartbeat ticks never let a topic go quiet, so this does
    not wait for silence."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        names = topics if topics is not None else [t for t in consumer.topics() if not t.startswith("__")]
        parts = [TopicPartition(t, p) for t in names for p in consumer.partitions_for_topic(t) or ()]
        if not parts:
            return []
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        out: list[ConsumerRecord] = []
        while any(consumer.position(tp) < end[tp] for tp in parts):
            for batch in consumer.poll(timeout_ms=500).values():
                out.extend(batch)
        return out
    finally:
        consumer.close()


def cdc_cli(state_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A `cdc` command on ``state_dir``, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "cdc.cli", *args, "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )
