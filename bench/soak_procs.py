"""The processes of a soak: `cdc run` as a child, and the faults done to it (kill -9, restarts)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench import procstats


class Bridge:
    """`cdc run` in a child process; its output goes to a file and is kept for searching."""

    def __init__(self, state_dir: Path, dsn: str, env: dict[str, str], log: Path) -> None:
        self.lines: list[str] = []
        child_env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        for key in ("CDC_SOURCE_DSN", "CDC_KAFKA_BOOTSTRAP_SERVERS", "CDC_CLICKHOUSE_URL", "CDC_STATE_DIR"):
            if key not in env:
                child_env.pop(key, None)
        self._log = log.open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cdc.cli", "run", "--source", dsn, "--state-dir", str(state_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=child_env,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            self._log.write(line)
            self._log.flush()

    def wait_started(self, timeout: float = 240.0) -> str:
        """The ClickHouse endpoint, once the bridge printed it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if line.startswith("ClickHouse endpoint:") and any(
                    x.startswith("Mirrored tables:") for x in self.lines
                ):
                    return line.split(":", 1)[1].strip()
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError("the bridge did not start:\n" + "\n".join(self.lines[-30:]))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 180.0) -> int:
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
        self._reader.join(5)


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = procstats.children(todo.pop())
        out += kids
        todo += kids
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def broker_pid(bridge_pid: int) -> int | None:
    return next((p for p in descendants(bridge_pid) if "tansu" in Path(_cmdline(p).split(" ")[0]).name), None)


def events_worker_pid(bridge_pid: int) -> int | None:
    return next((p for p in descendants(bridge_pid) if "spawn_main" in _cmdline(p)), None)


def tree_rss_mb(pid: int) -> dict[str, float]:
    """Resident memory of the bridge and everything it started, by role."""
    roles = {"bridge": float(procstats.status_kb(pid, "VmRSS")) / 1024}
    for child in descendants(pid):
        line = _cmdline(child)
        role = "broker" if "tansu" in line else "events worker" if "spawn_main" in line else "other"
        roles[role] = roles.get(role, 0.0) + procstats.status_kb(child, "VmRSS") / 1024
    return {k: round(v, 1) for k, v in roles.items()}


def kill9(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True
