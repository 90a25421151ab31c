"""The Dagster webserver and daemon for the project's definitions, started as child processes.

Only `dagster_project` imports dagster; this module runs its command-line tools. Both children
listen on loopback only, keep their instance under ``<state dir>/dagster``, log to
``<state dir>/logs/dagster-*.log``, and die with the bridge (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from cdc.embedded.children import die_with_parent
from cdc.embedded.net import LOOPBACK
from cdc.errors import StackError

log = logging.getLogger(__name__)
DEFINITIONS_MODULE = "dagster_project.definitions"
# One report build at a time: the sensor's incremental runs and the nightly full rebuild share a tag.
# A run whose worker never starts is failed after 2 minutes (else the sensor, which waits for the
# build in progress, would wait for ever), and a failed build is retried twice: after the load
# stops no new event would start another one.
_INSTANCE_YAML = """telemetry:
  enabled: false
concurrency:
  runs:
    tag_concurrency_limits:
      - key: cdc/builds
        limit: 1
run_monitoring:
  enabled: true
  start_timeout_seconds: 120
  poll_interval_seconds: 15
  max_resume_run_attempts: 0
run_retries:
  enabled: true
  max_retries: 2
"""


def _tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise StackError(f"{name} not found; install the project (`make install`) to get Dagster")
    return found


class DagsterUi:
    """``dagster-webserver`` on ``port`` plus ``dagster-daemon`` (sensors and schedules)."""

    def __init__(self, port: int, state_dir: Path, env: dict[str, str]) -> None:
        self.port = port
        self.url = f"http://{LOOPBACK}:{port}"
        self.home = state_dir / "dagster"
        self._log_dir = state_dir / "logs"
        self._env = env
        self._procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []

    def start(self) -> None:
        """Start both children (from the main thread, so the death signal holds)."""
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "dagster.yaml").write_text(_INSTANCE_YAML)
        self._log_dir.mkdir(parents=True, exist_ok=True)
        root = str(Path(__file__).resolve().parents[2])  # where `dagster_project` lives
        env = {
            **os.environ,
            **self._env,
            "DAGSTER_HOME": str(self.home),
            "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
        }
        self._create_storage(env, root)
        web = [_tool("dagster-webserver"), "-m", DEFINITIONS_MODULE, "-d", root, "-h", LOOPBACK, "-p", str(self.port)]
        daemon = [_tool("dagster-daemon"), "run", "-m", DEFINITIONS_MODULE, "-d", root]
        for name, argv in (("webserver", web), ("daemon", daemon)):
            out = open(self._log_dir / f"dagster-{name}.log", "ab")  # noqa: SIM115 - lives with the child
            self._logs.append(out)
            self._procs.append(
                subprocess.Popen(
                    argv,
                    env=env,
                    cwd=root,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C reaches the bridge, which stops these in order
                    preexec_fn=die_with_parent(os.getpid()),  # noqa: PLW1509 - prctl needs it
                )
            )

    def _create_storage(self, env: dict[str, str], root: str) -> None:
        """Create the instance's SQLite storage before the two children start.

        Both would create it at once on a fresh home, and that race can stamp two alembic heads
        into the schedule storage: the code location then fails to load and no sensor ever runs.
        """
        if (self.home / "schedules" / "schedules.db").exists():
            return
        argv = [_tool("dagster"), "instance", "migrate"]
        with open(self._log_dir / "dagster-daemon.log", "ab") as out:
            try:
                done = subprocess.run(
                    argv, env=env, cwd=root, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, timeout=300
                )
            except subprocess.TimeoutExpired:
                log.warning("dagster instance migrate took over 300 s; see %s", self._log_dir)
                return
        if done.returncode != 0:  # the children will try again; the log has the reason
            log.warning("dagster instance migrate exited %d; see %s", done.returncode, self._log_dir)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/server_info", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def running(self) -> bool:
        """Both children still run."""
        return bool(self._procs) and all(p.poll() is None for p in self._procs)

    def wait_ready(self, timeout: float = 120.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready():
                return True
            if any(p.poll() is not None for p in self._procs):
                return False
            time.sleep(0.5)
        return False

    def diagnosis(self) -> str:
        """Why it is not up: which child exited, and the end of the webserver's and daemon's logs."""
        names = ("webserver", "daemon")[: len(self._procs)]
        lines = [
            f"{name} exited with code {p.returncode}"
            for name, p in zip(names, self._procs, strict=True)
            if p.poll() is not None
        ]
        for name in ("webserver", "daemon"):
            path = self._log_dir / f"dagster-{name}.log"
            try:
                tail = path.read_bytes()[-600:].decode("utf-8", "replace").strip().splitlines()[-3:]
            except OSError:
                continue
            lines += [f"{path.name}: {line}" for line in tail]
        return "; ".join(lines) or "no log output yet"

    def stop(self, timeout: float = 20.0) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self._procs:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("Dagster child %d did not stop within %.0f s; killing it", proc.pid, timeout)
                proc.kill()
                proc.wait(5)
        for out in self._logs:
            out.close()
        self._procs, self._logs = [], []
