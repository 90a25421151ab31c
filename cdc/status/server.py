"""The running bridge's status over HTTP on loopback: `/metrics`, `/status`, `/healthz`. Stdlib only.

`/metrics` is the Prometheus text format 0.0.4, `/status` the JSON snapshot `cdc status` prints,
`/healthz` answers `ok` while the server runs (it never computes a snapshot). A snapshot costs
queries to PostgreSQL and ClickHouse, so one is computed at most once per `cache_s` however many
clients ask at once; a snapshot that fails answers 500 with its message and the server goes on.

The bridge publishes the server's URL in `<state_dir>/status.url` (`write_status_url`), so
`cdc status` and people (`curl $(cat .cdc/status.url)/metrics`) find it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from cdc.embedded.endpoint import probe, write_atomically
from cdc.errors import StackError
from cdc.status import CONTENT_TYPE, StatusSnapshot, Thresholds, as_snapshot, prometheus_text, warnings_for

logger = logging.getLogger(__name__)

STATUS_URL_FILE = "status.url"
TEXT = "text/plain; charset=utf-8"
SnapshotProvider = Callable[[], StatusSnapshot | Mapping[str, Any]]
# A control route: (method, JSON body or None) -> (HTTP code, JSON answer). Loopback only, like the rest.
Action = Callable[[str, Mapping[str, Any] | None], tuple[int, Any]]


class MetricsServer:
    """Serves the snapshot `snapshot()` returns, with `warnings_for(…, thresholds)` added to its warnings."""

    def __init__(
        self,
        port: int,
        snapshot: SnapshotProvider,
        thresholds: Thresholds | None = None,
        cache_s: float = 1.0,
        host: str = "127.0.0.1",
        publish_to: Path | None = None,
        actions: Mapping[str, Action] | None = None,
    ) -> None:
        self._address = (host, port)
        self.actions = dict(actions or {})  # path -> control route (e.g. /resync)
        self._publish_to = publish_to  # a state dir: its status.url names this server while it runs
        self._provider = snapshot
        self._thresholds = thresholds or Thresholds()
        self._cache_s = cache_s
        self._lock = threading.Lock()  # one computation at a time; waiting requests reuse its result
        self._cached: tuple[float, StatusSnapshot] | None = None
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and serve on a daemon thread; port 0 takes any free port (see `url`)."""
        try:
            self._httpd = _Server(self._address, self)
        except OSError as e:
            raise StackError(
                f"cannot serve status on {self._address[0]}:{self._address[1]}: {e.strerror or e}; choose another port"
            ) from e
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="cdc-metrics", daemon=True
        )
        self._thread.start()
        if self._publish_to is not None:
            write_status_url(self._publish_to, self.url)

    def stop(self) -> None:
        if self._publish_to is not None and self._httpd is not None:
            clear_status_url(self._publish_to, self.url)
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise StackError("the status server is not running")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._address[0]}:{self.port}"

    def current(self) -> StatusSnapshot:
        """The snapshot with warnings, at most `cache_s` old; raises whatever the provider raises."""
        with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < self._cache_s:
                return self._cached[1]
            snap = as_snapshot(self._provider())
            snap = snap.with_warnings(warnings_for(snap, self._thresholds))
            self._cached = (time.monotonic(), snap)
            return snap


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], owner: MetricsServer) -> None:
        super().__init__(address, _Handler)
        self.owner = owner


class _Handler(BaseHTTPRequestHandler):
    server_version = "cdc-status"
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.command, urlsplit(self.path).path)

    def do_POST(self) -> None:
        path = urlsplit(self.path).path.rstrip("/") or "/"
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(min(length, 1 << 20)) or b"{}") if length else {}
        except ValueError:
            self._send(400, TEXT, "error: the body is not JSON\n")
            return
        self._act(path, "POST", body if isinstance(body, dict) else {})

    def _act(self, path: str, method: str, body: Mapping[str, Any] | None) -> None:
        action = cast(_Server, self.server).owner.actions.get(path)
        if action is None:
            self._send(404, TEXT, "not found: try /metrics, /status, /healthz, /resync or /parity\n")
            return
        try:
            code, answer = action(method, body)
        except Exception as e:  # a bug: say it, keep serving
            logger.exception("%s %s failed", method, path)
            code, answer = 500, {"error": f"{type(e).__name__}: {e}"}
        self._send(code, "application/json", json.dumps(answer, indent=2) + "\n")

    def do_GET(self) -> None:
        path = urlsplit(self.path).path.rstrip("/") or "/"
        if path in cast(_Server, self.server).owner.actions:
            self._act(path, "GET", None)
            return
        if path == "/healthz":
            self._send(200, TEXT, "ok\n")
            return
        if path not in ("/metrics", "/status"):
            self._send(404, TEXT, "not found: try /metrics, /status or /healthz\n")
            return
        try:
            snap = cast(_Server, self.server).owner.current()
        except Exception as e:
            logger.warning("status snapshot failed: %s: %s", type(e).__name__, e)
            logger.debug("status snapshot failed", exc_info=True)
            self._send(500, TEXT, f"error: the status snapshot failed: {type(e).__name__}: {e}\n")
            return
        if path == "/metrics":
            self._send(200, CONTENT_TYPE, prometheus_text(snap))
        else:
            self._send(200, "application/json", json.dumps(snap.to_dict(), indent=2) + "\n")

    def _send(self, code: int, content_type: str, text: str) -> None:
        body = text.encode("utf-8")
        try:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            logger.debug("status client left before the answer")


def _url_file(state_dir: Path) -> Path:
    return Path(state_dir) / STATUS_URL_FILE


def write_status_url(state_dir: Path, url: str) -> None:
    """Publish the status server's URL (one line); atomic, so readers never see half a file."""
    write_atomically(_url_file(state_dir), url + "\n")


def clear_status_url(state_dir: Path, url: str | None = None) -> None:
    """Remove the published URL (only if it is still `url`, when given)."""
    path = _url_file(state_dir)
    if url is not None:
        try:
            if path.read_text().strip() != url:
                return
        except OSError:
            return
    path.unlink(missing_ok=True)


def _healthy(url: str, timeout: float) -> bool | None:
    return probe(url, "/healthz", b"ok", timeout)


def find_status_url(state_dir: Path, timeout: float = 1.0) -> str | None:
    """The running bridge's status URL if its server answers `/healthz`, else None.

    A file nobody answers at is stale (the bridge died without cleaning up) and is removed; a
    server that is merely slow to answer keeps its file.
    """
    path = _url_file(state_dir)
    try:
        url = path.read_text().strip()
    except OSError:
        return None
    if not url.startswith("http://"):
        path.unlink(missing_ok=True)
        return None
    answer = _healthy(url, timeout)
    if answer is False:
        path.unlink(missing_ok=True)
    return url if answer else None
