"""Loopback TCP ports of the embedded components: probes, and the book that keeps them across restarts."""

from __future__ import annotations

import json
import logging
import socket
import time
from pathlib import Path

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
PREFERRED_PORTS = {"postgres": 55432, "kafka": 19092, "clickhouse": 18123, "dagster": 13000, "status": 19400}


def free_port(host: str = LOOPBACK) -> int:
    """Return a port the OS considers free on ``host`` right now.

    The port is released before returning, so another process may take it in between;
    callers that bind later must still handle "address in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    """True when something already listens on ``host:port`` or the port cannot be bound."""
    if _accepts_connections(host, port, timeout=0.5):
        return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR so a port in TIME_WAIT from a previous run counts as free,
        # as it does for the servers we start (they all set it).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    """Poll until ``host:port`` accepts a TCP connection; False when ``timeout`` ran out."""
    deadline = time.monotonic() + timeout
    while True:
        if _accepts_connections(host, port, timeout=0.5):
            return True
        if time.monotonic() >= deadline:
            logger.debug("port %s:%d not accepting after %.1fs", host, port, timeout)
            return False
        time.sleep(0.05)


def _accepts_connections(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class PortBook:
    """Loopback ports of the embedded components, kept in ``state_dir/ports.json`` so a restart reuses them."""

    def __init__(self, state_dir: Path) -> None:
        self._path = state_dir / "ports.json"
        self._ports: dict[str, int] = {}
        if self._path.exists():
            try:
                self._ports = {k: int(v) for k, v in json.loads(self._path.read_text()).items()}
            except (ValueError, OSError):
                self._ports = {}

    def port(self, name: str, busy_ok: bool = False) -> int:
        """The port for ``name``: the remembered one if free, else the preferred, else any free port."""
        for candidate in (self._ports.get(name), PREFERRED_PORTS.get(name)):
            if candidate and (busy_ok or not port_in_use(candidate)):
                return self._remember(name, candidate)
        return self._remember(name, free_port())

    def _remember(self, name: str, port: int) -> int:
        self._ports[name] = port
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._path.write_text(json.dumps(self._ports, indent=2))
        return port
