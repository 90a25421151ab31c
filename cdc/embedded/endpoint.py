"""Discovery of the process that owns the embedded ClickHouse (chDB) store. Stdlib only.

The owner writes `<state_dir>/clickhouse/endpoint.json` (`{"url": ..., "pid": ...}`) once its
HTTP endpoint answers; any other process calls `find_endpoint` and, when it gets a URL, talks
HTTP to it instead of opening the store itself (chDB admits one process per data directory).
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

ENDPOINT_FILE = "endpoint.json"


def warehouse_data_dir(state_dir: Path) -> Path:
    """Where the embedded store keeps its data."""
    return Path(state_dir) / "clickhouse" / "data"


def chdb_dsn(data_dir: Path) -> str:
    """The clickhouse-connect DSN of an in-process chDB engine on `data_dir`.

    `chdb:///abs/path`: clickhouse-connect takes the URL path verbatim (no unquoting) and chDB
    compares engine paths literally, so the path is resolved the way the server resolves it.
    """
    path = os.path.realpath(data_dir)
    if any(char in path for char in "?#"):
        raise ValueError(f"a chDB data directory cannot contain '?' or '#': {path}")
    return f"chdb://{path}"


def store_lock_holder(data_dir: Path) -> str | None:
    """Who holds the store's lock, when another process does: chDB flocks `status`, which names its PID."""
    try:
        with (Path(data_dir) / "status").open("rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lines = handle.read(200).decode("utf-8", "replace").splitlines()
                return lines[0].strip() if lines else "another process"
            fcntl.flock(handle, fcntl.LOCK_UN)
    except OSError:
        return None
    return None


def _endpoint_file(state_dir: Path) -> Path:
    return Path(state_dir) / "clickhouse" / ENDPOINT_FILE


def write_endpoint(state_dir: Path, url: str) -> None:
    """Publish this process's endpoint; atomic, so readers never see half a file."""
    write_atomically(_endpoint_file(state_dir), json.dumps({"url": url, "pid": os.getpid()}))


def write_atomically(target: Path, text: str) -> None:
    """Write ``text`` to ``target`` through a temporary file and a rename: readers see all or nothing."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def clear_endpoint(state_dir: Path) -> None:
    _endpoint_file(state_dir).unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _ping(url: str, timeout: float) -> bool | None:
    return probe(url, "/ping", b"Ok.", timeout)


def probe(url: str, path: str, expected: bytes, timeout: float) -> bool | None:
    """True if GET ``path`` answers 200 with ``expected``; False if nothing (or something else)
    answers; None on timeout (a live server may just be slow)."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}{path}", timeout=timeout) as response:  # noqa: S310
            return bool(response.status == 200 and response.read(16).strip() == expected)
    except TimeoutError:
        return None
    except urllib.error.URLError as e:
        return None if isinstance(e.reason, TimeoutError) else False
    except (OSError, ValueError):
        return False


def find_endpoint(state_dir: Path, timeout: float = 1.0) -> str | None:
    """The owner's URL if its process is alive and `/ping` answers `Ok.` within `timeout`, else None.

    The file is removed when it is stale: its process is gone, or nothing at its URL answers
    `Ok.` (the owner publishes the file only once it serves). A live owner that is merely slow
    to answer keeps its file.
    """
    path = _endpoint_file(state_dir)
    try:
        record = json.loads(path.read_text())
        url, pid = str(record["url"]), int(record["pid"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        path.unlink(missing_ok=True)
        return None
    answer = _ping(url, timeout) if _pid_alive(pid) else False
    if answer is False:
        path.unlink(missing_ok=True)
    return url if answer else None
