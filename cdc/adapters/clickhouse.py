"""ClickHouse adapter: the only module that imports clickhouse-connect.

One ``Warehouse`` over three transports, chosen by configuration alone:
an external server (``CDC_CLICKHOUSE_URL``), the embedded store's HTTP endpoint
when a bridge process owns it, or the embedded chDB store opened in-process.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, DatabaseError, OperationalError

from cdc.embedded.endpoint import chdb_dsn, find_endpoint, store_lock_holder, warehouse_data_dir
from cdc.errors import DataRejected, WarehouseError

log = logging.getLogger(__name__)

# ClickHouse error codes that mean "these values cannot be stored", not "the server is unavailable".
_DATA_CODES = {6, 26, 27, 32, 38, 41, 53, 69, 70, 72, 117, 131, 173, 190, 232, 241, 321, 349, 407}


def _translate(e: Exception, what: str) -> Exception:
    if isinstance(e, OperationalError):
        return WarehouseError(f"ClickHouse unreachable while {what}: {_first_line(e)}")
    code = getattr(e, "code", None)
    if isinstance(e, DatabaseError) and code in _DATA_CODES:
        return DataRejected(f"ClickHouse rejected the data while {what}: {_first_line(e)}")
    return WarehouseError(f"ClickHouse error while {what}: {_first_line(e)}")


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class ClickHouseWarehouse:
    """The Warehouse port over a clickhouse-connect client."""

    def __init__(self, client: Client, where: str, in_process: bool = False) -> None:
        self._client = client
        self.where = where
        self._in_process = in_process  # the embedded chDB store, in this process: it reads files itself

    def command(self, sql: str) -> None:
        try:
            self._client.command(sql)
        except (ClickHouseError, OSError) as e:
            raise _translate(e, "running a statement") from e

    def insert(
        self,
        database: str,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        if not rows:
            return
        try:
            # quoted here: clickhouse-connect leaves a name with a dot in it unquoted (it reads it as db.table)
            self._client.insert(
                f"{_quote(database)}.{_quote(table)}",
                list(rows),
                column_names=list(columns),
                settings=dict(settings or {}),
            )
        except (ClickHouseError, OSError) as e:
            raise _translate(e, f"inserting into {database}.{table}") from e

    def insert_raw(
        self,
        database: str,
        table: str,
        columns: Sequence[str],
        data: bytes,
        fmt: str,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        try:
            self._client.raw_insert(
                f"{_quote(database)}.{_quote(table)}", list(columns), data, fmt=fmt, settings=dict(settings or {})
            )
        except (ClickHouseError, OSError) as e:
            raise _translate(e, f"inserting into {database}.{table}") from e

    def insert_file(
        self,
        database: str,
        table: str,
        columns: Sequence[str],
        path: Path,
        fmt: str,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        target = f"{_quote(database)}.{_quote(table)}"
        try:
            if self._in_process:  # read where it lies (clickhouse-connect would copy it to a file of its own)
                names = ", ".join(_quote(c) for c in columns)
                extra = ", ".join(f"{k} = {v!r}" for k, v in (settings or {}).items())
                infile = "'" + str(path).replace("\\", "\\\\").replace("'", "\\'") + "'"
                self._client.command(
                    f"INSERT INTO {target} ({names}) FROM INFILE {infile}"
                    + (f" SETTINGS {extra}" if extra else "")
                    + f" FORMAT {fmt}"
                )
            else:
                with path.open("rb") as body:  # streamed to the server
                    self._client.raw_insert(target, list(columns), body, fmt=fmt, settings=dict(settings or {}))
        except (ClickHouseError, OSError) as e:
            raise _translate(e, f"inserting into {database}.{table}") from e

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        try:
            return [tuple(r) for r in self._client.query(sql, parameters=dict(parameters or {})).result_rows]
        except (ClickHouseError, OSError) as e:
            raise _translate(e, "querying") from e

    def query_formatted(self, sql: str, fmt: str) -> bytes:
        """The result of ``sql`` rendered by ClickHouse in output format ``fmt``."""
        try:
            return bytes(self._client.raw_query(sql, fmt=fmt))
        except (ClickHouseError, OSError) as e:
            raise _translate(e, "querying") from e

    def close(self) -> None:
        self._client.close()


def redact_url(url: str) -> str:
    """A ClickHouse URL safe to print: the password, if any, replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def warm_up() -> None:
    """Import in the background what clickhouse-connect loads on the first insert (pandas, ~1-4 s),
    so the first batch of a starting bridge does not stall on it."""

    def load() -> None:
        with contextlib.suppress(ImportError):
            importlib.import_module("pandas")

    threading.Thread(target=load, name="warehouse-warm-up", daemon=True).start()


def connect_warehouse(url: str | None, state_dir: Path) -> ClickHouseWarehouse:
    """External server by URL, else the running bridge's endpoint, else the embedded store itself."""
    if url:
        return _http(url)
    endpoint = find_endpoint(state_dir)
    if endpoint:
        return _http(endpoint)
    return open_embedded(state_dir)


def open_embedded(state_dir: Path) -> ClickHouseWarehouse:
    data_dir = warehouse_data_dir(state_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    holder = store_lock_holder(data_dir)
    if holder and holder.split()[-1] != str(os.getpid()):  # this process's own server may hold it
        raise WarehouseError(
            f"the embedded ClickHouse store in {data_dir} is in use by another process ({holder}) "
            "that serves no endpoint; stop it, or set CDC_CLICKHOUSE_URL"
        )
    try:
        client = clickhouse_connect.get_client(dsn=chdb_dsn(data_dir))
    except (ClickHouseError, OSError, RuntimeError) as e:
        raise WarehouseError(
            f"cannot open the embedded ClickHouse store at {data_dir}: {_first_line(e)} "
            "(another process may own it; start `cdc run` or stop the other process)"
        ) from e
    return ClickHouseWarehouse(client, f"chDB store {data_dir}", in_process=True)


def _http(url: str) -> ClickHouseWarehouse:
    parts = urlsplit(url)
    where = f"{parts.scheme}://{parts.hostname}:{parts.port or ''}"
    try:
        # no session: the bridge's threads share one client (a session takes one query at a time), and
        # nothing here keeps state in a session
        client = clickhouse_connect.get_client(
            dsn=url, connect_timeout=5, send_receive_timeout=300, autogenerate_session_id=False
        )
    except (ClickHouseError, OSError) as e:
        msg = f"cannot reach ClickHouse at {where}: {_first_line(e)}; check CDC_CLICKHOUSE_URL"
        raise WarehouseError(msg) from e
    return ClickHouseWarehouse(client, where)


def _quote(identifier: str) -> str:
    return "`" + identifier.replace("\\", "\\\\").replace("`", "\\`") + "`"
