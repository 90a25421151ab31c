"""Debezium's PostgreSQL connector run by a Kafka Connect cluster, driven through its REST API.

The external-mode counterpart of `cdc.debezium.engine.DebeziumRunner`, with the surface the bridge
uses (`start`, `stop`, `raise_if_failed`, `running`, `records_produced`, `snapshot_completed`,
`streaming_connected`). What it registers is `cdc.debezium.config.connect_properties`: the very
connector properties the embedded engine runs, so both modes capture the same way.

Delivery guarantee: Kafka Connect commits a source offset only for records Kafka acknowledged, and
Debezium confirms an LSN to the replication slot only once its offset is committed; a crash or a
restart replays from the last committed offset: at-least-once into Kafka, as embedded.

Kafka Connect is a shared service: `stop()` leaves the connector running (capture goes on while
the bridge is down, the consumers catch up when it is back) unless the runner was built with
`stop_connector=True`, which stops it (tasks end, offsets stay); the next `start()` resumes it.

Secrets: the PUT body carries the database password (Connect needs it); it is never logged, and
every message built from Connect's answers has the configuration's secret values masked.
HTTP through urllib only: no new dependency.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from cdc.debezium.config import ConnectorSettings, connect_properties, connector_name, redacted
from cdc.debezium.connect_status import describe_trace, scrub, secret_values, snapshot_state
from cdc.errors import CaptureError, ConfigError

log = logging.getLogger(__name__)


def _states(status: Mapping[str, Any]) -> tuple[str, list[Mapping[str, Any]]]:
    return str((status.get("connector") or {}).get("state", "UNASSIGNED")), list(status.get("tasks") or [])


class KafkaConnectRunner:
    """The Debezium PostgreSQL connector in Kafka Connect, registered under `connector_name(settings)`.

    Status and offsets are read at most once per `poll_interval`; a Connect that cannot be reached
    is an error only after `unreachable_grace` seconds (capture itself goes on inside Connect).
    `produced`, when given, counts records in the change topics (the REST API has no such metric);
    without it `records_produced` is -1 (unknown).
    """

    def __init__(
        self,
        connect_url: str,
        settings: ConnectorSettings,
        *,
        stop_connector: bool = False,
        produced: Callable[[], int] | None = None,
        poll_interval: float = 1.0,
        request_timeout: float = 5.0,
        unreachable_grace: float = 120.0,
    ) -> None:
        parts = urllib.parse.urlsplit(connect_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"Kafka Connect URL must look like http://host:8083, not {parts.scheme}://…")
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if parts.username:  # Connect's REST API behind basic auth: credentials from the URL
            token = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
            self._headers["Authorization"] = "Basic " + base64.b64encode(token.encode()).decode()
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        self.url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        self.name = connector_name(settings)
        self.config = connect_properties(settings)
        self._secrets = secret_values(self.config) + ([parts.password] if parts.password else [])
        self._stop_connector = stop_connector
        self._produced = produced
        self._poll, self._timeout, self._grace = poll_interval, request_timeout, unreachable_grace
        self._lock = threading.Lock()
        self._error: CaptureError | None = None
        self._started = False
        self._status: Mapping[str, Any] = {}
        self._status_at = self._offsets_at = float("-inf")
        self._unreachable_since: float | None = None
        self._snapshot_done: bool | None = None

    # -- HTTP ------------------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        """(status code, parsed JSON or None); raises CaptureError when Connect cannot be reached."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                return int(response.status), _json(response.read())
        except urllib.error.HTTPError as e:
            return int(e.code), _json(e.read())
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise CaptureError(
                f"Kafka Connect at {self.url} is unreachable ({self._scrub(str(reason))}); "
                "is it up? (docker compose ps kafka-connect, or check CDC_KAFKA_CONNECT_URL)"
            ) from e

    def _scrub(self, text: str) -> str:
        return scrub(text, self._secrets)

    def _answer(self, code: int, body: Any) -> str:
        message = body.get("message") if isinstance(body, Mapping) else None
        return self._scrub(str(message or f"HTTP {code}"))[:800]

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, timeout: float = 120) -> None:
        """Register (or update) the connector and return once it and its task run; raise otherwise.

        Idempotent: PUT of the same config changes nothing. Tasks left FAILED by an earlier run are
        restarted once, a paused or stopped connector is resumed.
        """
        deadline = time.monotonic() + timeout
        self._error, self._snapshot_done, self._started = None, None, False
        previous = self._wait_reachable(deadline)
        code, body = self._call("PUT", f"/connectors/{self.name}/config", self.config)
        while code == 409 and time.monotonic() < deadline:  # a worker rebalance is in progress
            time.sleep(self._poll)
            code, body = self._call("PUT", f"/connectors/{self.name}/config", self.config)
        if code in (400, 422):
            raise ConfigError(f"Kafka Connect rejected connector {self.name!r}: {self._answer(code, body)}")
        if code not in (200, 201):
            raise CaptureError(f"Kafka Connect could not register connector {self.name!r}: {self._answer(code, body)}")
        log.info("connector %r registered with %s: %s", self.name, self.url, redacted(self.config))
        grace_until = 0.0
        state, tasks = _states(previous)
        if state in ("PAUSED", "STOPPED"):
            self._call("PUT", f"/connectors/{self.name}/resume")
        if state == "FAILED" or any(t.get("state") == "FAILED" for t in tasks):
            self._call("POST", f"/connectors/{self.name}/restart?includeTasks=true&onlyFailed=true")
            grace_until = time.monotonic() + min(10.0, timeout / 4)  # the status store may show FAILED a while
        self._wait_running(deadline, grace_until, timeout)
        self._started = True
        log.info("connector %r runs in Kafka Connect at %s", self.name, self.url)

    def _wait_reachable(self, deadline: float) -> Mapping[str, Any]:
        """The connector's current status ({} when unknown), retrying while Connect is not up yet."""
        while True:
            try:
                code, body = self._call("GET", f"/connectors/{self.name}/status")
                return body if code == 200 and isinstance(body, Mapping) else {}
            except CaptureError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(min(self._poll, 1.0))

    def _wait_running(self, deadline: float, grace_until: float, timeout: float) -> None:
        status: Mapping[str, Any] = {}
        while time.monotonic() < deadline:
            code, body = self._call("GET", f"/connectors/{self.name}/status")
            status = body if code == 200 and isinstance(body, Mapping) else {}
            state, tasks = _states(status)
            failure = self._failure(status)
            if failure is not None and time.monotonic() >= grace_until:
                raise failure
            if state == "RUNNING" and tasks and all(t.get("state") == "RUNNING" for t in tasks):
                self._status, self._status_at = status, time.monotonic()
                return
            time.sleep(self._poll)
        state, tasks = _states(status)
        raise CaptureError(
            f"connector {self.name!r} did not reach RUNNING within {timeout:.0f} s (connector {state}, tasks "
            f"{[t.get('state') for t in tasks]}); see `docker compose logs kafka-connect`"
        )

    def _failure(self, status: Mapping[str, Any]) -> CaptureError | None:
        state, tasks = _states(status)
        failed = [t for t in tasks if t.get("state") == "FAILED"]
        if state != "FAILED" and not failed:
            return None
        where = f"task {failed[0].get('id', 0)}" if failed else "connector"
        trace = str((failed[0] if failed else status.get("connector") or {}).get("trace") or "")
        return CaptureError(
            self._scrub(
                f"Debezium connector {self.name!r} failed in Kafka Connect ({where}): {describe_trace(trace)}. "
                f"Full trace: GET {self.url}/connectors/{self.name}/status; after fixing the cause, restart the "
                "bridge (it restarts failed tasks)"
            )
        )

    holds_back = False  # Kafka Connect commits offsets once Kafka (durable) has the records

    def drain(self, timeout: float) -> int:
        """Nothing to hold back: the external Kafka keeps what the lanes have not read yet."""
        return 0

    def connected(self) -> bool | None:
        return None  # Kafka Connect's REST API reports task state, which raise_if_failed reads

    def stop(self, timeout: float = 30) -> None:
        """Leave the connector running in Connect (a shared service), or stop it if built to."""
        self._started = False
        if not self._stop_connector:
            log.info("connector %r keeps running in Kafka Connect at %s", self.name, self.url)
            return
        previous = self._timeout
        self._timeout = min(self._timeout, timeout)
        try:
            code, body = self._call("PUT", f"/connectors/{self.name}/stop")
            if code not in (200, 202, 204, 404):
                log.warning("stopping connector %r: %s", self.name, self._answer(code, body))
        except CaptureError as e:
            log.warning("connector %r not stopped: %s", self.name, e)
        finally:
            self._timeout = previous

    # -- observe ---------------------------------------------------------------------------------
    def _refresh(self) -> None:
        """Read the status (at most once per poll interval) and record a failure for good."""
        with self._lock:
            now = time.monotonic()
            if not self._started or self._error is not None or now - self._status_at < self._poll:
                return
            self._status_at = now
            try:
                code, body = self._call("GET", f"/connectors/{self.name}/status")
            except CaptureError as e:
                self._unreachable_since = self._unreachable_since or now
                if now - self._unreachable_since >= self._grace:
                    self._error = CaptureError(f"{e} for {now - self._unreachable_since:.0f} s")
                return
            self._unreachable_since = None
            if code == 404:
                self._error = CaptureError(
                    f"connector {self.name!r} was deleted from Kafka Connect at {self.url}; "
                    "restart the bridge to register it again"
                )
                return
            self._status = body if code == 200 and isinstance(body, Mapping) else self._status
            self._error = self._failure(self._status)

    @property
    def error(self) -> CaptureError | None:
        self._refresh()
        return self._error

    def raise_if_failed(self) -> None:
        """Raise if the connector or its task failed, was deleted, or Connect stayed unreachable."""
        if self.error is not None:
            raise self.error

    @property
    def running(self) -> bool:
        if self.error is not None or not self._started:
            return False
        state, tasks = _states(self._status)
        return state == "RUNNING" and bool(tasks) and all(t.get("state") == "RUNNING" for t in tasks)

    @property
    def records_produced(self) -> int:
        """Records in the change topics when a counter was given, else -1 (Connect does not say)."""
        return self._produced() if self._produced is not None else -1

    def snapshot_completed(self) -> bool:
        """True once Connect committed an offset past the snapshot (committed = acknowledged by Kafka).

        Offsets are committed every `offset.flush.interval.ms` of the Connect worker (compose: 1 s).
        """
        if self._snapshot_done:
            return True
        with self._lock:
            if time.monotonic() - self._offsets_at >= self._poll:
                self._offsets_at = time.monotonic()
                try:
                    code, body = self._call("GET", f"/connectors/{self.name}/offsets")
                except CaptureError as e:
                    log.warning("%s", e)
                    return False
                if code == 200 and isinstance(body, Mapping):
                    self._snapshot_done = snapshot_state(body)
        return bool(self._snapshot_done)

    def streaming_connected(self) -> bool:
        """The task runs and its committed position is past the snapshot.

        Connect's REST API exposes no "connected" metric; a running task streaming from the slot is
        the nearest it tells (with heartbeats on, an idle database still commits offsets).
        """
        return self.running and self.snapshot_completed()


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return {"message": raw.decode("utf-8", "replace")[:800]}
