"""KafkaConnectRunner against a small fake of Kafka Connect's REST API (PUT config, GET status and
offsets, resume/stop/restart): it is a control-plane client, what matters is what it sends and how
it reads the answers. The connector config it registers is the embedded engine's connector part.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cdc.debezium.config import (
    ConnectorSettings,
    connect_properties,
    connector_name,
    embedded_properties,
    engine_properties,
)
from cdc.debezium.connect_status import describe_trace, secret_values, snapshot_state
from cdc.debezium.kafka_connect import KafkaConnectRunner
from cdc.errors import CaptureError, ConfigError

PASSWORD = "pw-Zq81-secret"
TRACE = (
    f"org.apache.kafka.connect.errors.ConnectException: An exception occurred in the change event producer. "
    f"This connector will be stopped.\n\tat io.debezium.pipeline.ErrorHandler.setProducerThrowable(x.java:67)\n"
    f"Caused by: org.postgresql.util.PSQLException: FATAL: password authentication failed for user "
    f'"postgres" (tried {PASSWORD})\n\tat org.postgresql.core.v3.ConnectionFactoryImpl.doAuthentication'
)


def settings(**kw: Any) -> ConnectorSettings:
    base: dict[str, Any] = dict(
        source="shop",
        host="postgres",
        port=5432,
        user="postgres",
        password=PASSWORD,
        dbname="shop",
        tables=("public.orders", "public.customers"),
        offset_file=Path("/tmp/unused.offsets"),
    )
    return ConnectorSettings(**{**base, **kw})


class FakeConnect:
    """The REST subset the runner uses; `states` are served one per status GET (the last one repeats)."""

    def __init__(self) -> None:
        self.configs: dict[str, dict[str, str]] = {}
        self.requests: list[tuple[str, str]] = []
        self.states: list[tuple[str, list[tuple[str, str]]]] = [("RUNNING", [("RUNNING", "")])]
        self.offsets: list[dict[str, Any]] = []
        self.put_answer: tuple[int, dict[str, Any]] | None = None
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: object) -> None:
                raw = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_PUT(self) -> None:
                fake.requests.append(("PUT", self.path))
                parts = self.path.strip("/").split("/")
                if parts[-1] == "config":
                    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                    if fake.put_answer:
                        return self._send(*fake.put_answer)
                    created = parts[1] not in fake.configs
                    fake.configs[parts[1]] = body
                    return self._send(201 if created else 200, {"name": parts[1], "config": body, "tasks": []})
                self._send(202, {})

            def do_POST(self) -> None:
                fake.requests.append(("POST", self.path))
                self._send(202, {})

            def do_GET(self) -> None:
                fake.requests.append(("GET", self.path))
                parts = self.path.strip("/").split("/")
                if parts[1] not in fake.configs:
                    return self._send(404, {"error_code": 404, "message": f"Connector {parts[1]} not found"})
                if parts[-1] == "offsets":
                    return self._send(
                        200, {"offsets": [{"partition": {"server": "shop"}, "offset": o} for o in fake.offsets[-1:]]}
                    )
                state, tasks = fake.states[0] if len(fake.states) == 1 else fake.states.pop(0)
                self._send(
                    200,
                    {
                        "name": parts[1],
                        "connector": {"state": state, "worker_id": "w:8083"},
                        "tasks": [
                            {"id": i, "state": s, "worker_id": "w:8083", **({"trace": t} if t else {})}
                            for i, (s, t) in enumerate(tasks)
                        ],
                        "type": "source",
                    },
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()


@pytest.fixture
def connect() -> Iterator[FakeConnect]:
    fake = FakeConnect()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def runner(fake: FakeConnect, **kw: Any) -> KafkaConnectRunner:
    return KafkaConnectRunner(fake.url, settings(), poll_interval=0.01, request_timeout=2, **kw)


def test_connect_config_is_the_embedded_engines_connector_part() -> None:
    s = settings(snapshot_mode="when_needed", heartbeat_interval_ms=1000)
    engine_only = set(engine_properties(s)) | {"name"}
    assert connect_properties(s) == {k: v for k, v in embedded_properties(s).items() if k not in engine_only}
    assert connector_name(s) == embedded_properties(s)["name"] == "cdc-shop"


def test_start_puts_the_config_and_waits_for_the_task(connect: FakeConnect) -> None:
    connect.states = [("UNASSIGNED", []), ("RUNNING", [("UNASSIGNED", "")]), ("RUNNING", [("RUNNING", "")])]
    r = runner(connect)
    r.start(timeout=10)
    assert connect.configs == {"cdc-shop": connect_properties(settings())}
    assert ("PUT", "/connectors/cdc-shop/config") in connect.requests
    assert r.running
    r.raise_if_failed()
    assert r.records_produced == -1
    r.start(timeout=10)  # idempotent: the same config again
    assert connect.configs == {"cdc-shop": connect_properties(settings())}


def test_snapshot_progress_is_read_from_committed_offsets(connect: FakeConnect) -> None:
    r = runner(connect, produced=lambda: 42)
    r.start(timeout=10)
    assert r.records_produced == 42
    assert not r.snapshot_completed()  # nothing committed yet
    connect.offsets.append(
        {
            "lsn": 100,
            "txId": 7,
            "ts_usec": 1,
            "snapshot": "INITIAL",
            "last_snapshot_record": False,
            "snapshot_completed": False,
        }
    )
    assert not _eventually(r.snapshot_completed, 0.2) and not r.streaming_connected()
    connect.offsets.append(
        {"lsn": 100, "txId": 7, "snapshot": "INITIAL", "last_snapshot_record": True, "snapshot_completed": True}
    )
    assert _eventually(r.snapshot_completed)
    assert r.streaming_connected()


def test_snapshot_state_reads_debezium_postgres_offsets() -> None:
    def offsets(*items: dict[str, Any]) -> dict[str, Any]:
        return {"offsets": [{"partition": {"server": "shop"}, "offset": o} for o in items]}

    assert snapshot_state({"offsets": []}) is None
    assert snapshot_state(offsets({"snapshot": True, "last_snapshot_record": False})) is False  # Debezium 1.x/2.x
    assert snapshot_state(offsets({"snapshot": True, "last_snapshot_record": True})) is True
    assert snapshot_state(offsets({"snapshot": "INITIAL", "snapshot_completed": False})) is False
    assert snapshot_state(offsets({"lsn": 5, "lsn_proc": 5, "lsn_commit": 4, "messageType": "UPDATE"})) is True
    assert snapshot_state(offsets({"lsn": 5, "snapshot": "INCREMENTAL"})) is True  # streams meanwhile


def test_failed_task_raises_with_its_trace_and_never_the_password(
    connect: FakeConnect, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    connect.states = [("RUNNING", [("FAILED", TRACE)])]
    connect.configs["cdc-shop"] = {}  # registered by an earlier run and failed: restarted once, fails again
    r = runner(connect)
    with pytest.raises(CaptureError) as failure:
        r.start(timeout=1)
    text = str(failure.value)
    assert "task 0" in text and "ConnectException: An exception occurred in the change event producer" in text
    assert "password authentication failed" in text and "check the user and password" in text
    assert ("POST", "/connectors/cdc-shop/restart?includeTasks=true&onlyFailed=true") in connect.requests
    assert PASSWORD not in text and PASSWORD not in caplog.text
    assert connect.configs["cdc-shop"]["database.password"] == PASSWORD  # Connect itself needs it


def test_task_failing_later_is_raised_by_raise_if_failed(connect: FakeConnect) -> None:
    r = runner(connect)
    r.start(timeout=10)
    connect.states = [("RUNNING", [("FAILED", TRACE)])]
    assert _eventually(lambda: not r.running)
    with pytest.raises(CaptureError, match="password authentication failed") as failure:
        r.raise_if_failed()
    assert PASSWORD not in str(failure.value)


def test_rejected_config_is_a_config_error_without_secrets(connect: FakeConnect) -> None:
    connect.put_answer = (
        400,
        {"error_code": 400, "message": f"Connector configuration is invalid: database.password={PASSWORD} is wrong"},
    )
    with pytest.raises(ConfigError) as failure:
        runner(connect).start(timeout=5)
    assert "invalid" in str(failure.value) and PASSWORD not in str(failure.value)


def test_unreachable_connect_says_where_and_what_to_check() -> None:
    r = KafkaConnectRunner("http://127.0.0.1:9/", settings(), poll_interval=0.05, request_timeout=0.5)
    with pytest.raises(CaptureError, match=r"Connect at http://127.0.0.1:9 is unreachable.*CDC_KAFKA_CONNECT_URL"):
        r.start(timeout=0.3)


def test_paused_connector_is_resumed_and_stop_leaves_it_running(connect: FakeConnect) -> None:
    connect.configs["cdc-shop"] = {}
    connect.states = [("PAUSED", [("PAUSED", "")]), ("RUNNING", [("RUNNING", "")])]
    r = runner(connect)
    r.start(timeout=10)
    assert ("PUT", "/connectors/cdc-shop/resume") in connect.requests
    before = len(connect.requests)
    r.stop()
    assert len(connect.requests) == before, "a shared Connect keeps the connector running"
    stopping = runner(connect, stop_connector=True)
    stopping.start(timeout=10)
    stopping.stop()
    assert connect.requests[-1] == ("PUT", "/connectors/cdc-shop/stop")


def test_deleted_connector_is_reported(connect: FakeConnect) -> None:
    r = runner(connect)
    r.start(timeout=10)
    del connect.configs["cdc-shop"]
    assert _eventually(lambda: r.error is not None)
    with pytest.raises(CaptureError, match="deleted from Kafka Connect"):
        r.raise_if_failed()


def test_basic_auth_credentials_leave_the_url() -> None:
    r = KafkaConnectRunner("http://admin:s3cret@connect:8083/", settings())
    assert r.url == "http://connect:8083" and "s3cret" in r._secrets


def test_helpers_find_secrets_and_describe_traces() -> None:
    props = connect_properties(settings())
    assert secret_values(props) == [PASSWORD]
    salted = connect_properties(settings(mask_hash=("public.customers.email",), mask_salt="Salt1234abcd"))
    assert set(secret_values(salted)) == {"Salt1234abcd", PASSWORD}  # the hash salt sits inside a key
    assert describe_trace("") == "no trace reported"
    assert describe_trace("java.lang.RuntimeException: boom\n\tat x") == "java.lang.RuntimeException: boom"


def _eventually(check: Any, timeout: float = 3.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return bool(check())
