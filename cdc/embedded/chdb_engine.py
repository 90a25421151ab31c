"""The chDB engine of one data directory; the only module that imports `chdb`."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import chdb

from cdc.embedded import chdb_http as proto
from cdc.embedded.endpoint import store_lock_holder
from cdc.errors import StackError

logger = logging.getLogger(__name__)


def _connect(path: str) -> Any:
    return chdb.connect(path)  # type: ignore[no-untyped-call]


def close_quietly(stream: Any) -> None:
    try:
        stream.close()
    except Exception:
        logger.debug("error closing a chDB stream", exc_info=True)


class Engine:
    """The chDB engine of one data directory: an anchor handle plus one handle per request."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = os.path.realpath(data_dir)
        self.timezone = "UTC"
        self._anchor: Any = None

    def open(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._anchor = _connect(self.path)
        except Exception as e:
            holder = store_lock_holder(self.data_dir)
            if holder is not None:
                raise StackError(
                    f"chDB store {self.data_dir} is locked by another process ({holder}); "
                    "use that process's HTTP endpoint"
                ) from e
            raise StackError(f"cannot open chDB store {self.data_dir}: {proto.error_message(e)}") from e
        self.timezone = self._anchor.query("SELECT timezone()", "TabSeparated").bytes().decode().strip()

    def connect(self, request: proto.HttpQuery, readonly: bool) -> Any:
        """A fresh handle with the request's database, settings and (for GET) readonly=2 applied."""
        conn = _connect(self.path)
        try:
            for statement in proto.session_statements(request, readonly):
                conn.query(statement, "TabSeparated")
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        if self._anchor is not None:
            self._anchor.close()
            self._anchor = None
