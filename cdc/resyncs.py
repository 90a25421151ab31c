"""The running bridge's resyncs (``cdc resync TABLE``, ``POST /resync``): which source and table, one at a
time per table, each on its own thread; the work itself is :mod:`cdc.mirror.resync`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cdc.capture import SourceCapture
from cdc.domain.changes import TableSchema
from cdc.domain.names import display_table, parse_table
from cdc.errors import CdcError, ConfigError
from cdc.mirror.resync import Resync, ResyncJob
from cdc.ports import Warehouse


class Resyncs:
    def __init__(self, captures: Sequence[SourceCapture], warehouse: Callable[[], Warehouse | None]) -> None:
        self._captures = captures
        self._warehouse = warehouse
        self._jobs: list[ResyncJob] = []
        self._lock = threading.Lock()

    def jobs(self) -> list[ResyncJob]:
        with self._lock:
            return list(self._jobs)

    def start(self, table: str, source: str | None = None) -> ResyncJob:
        """Start reloading ``table`` (``schema.table``; ``source``: needed when several sources have it)."""
        capture, schema = find_table(self._captures, table, source)
        warehouse = self._warehouse()
        if warehouse is None or capture.sink is None:
            raise ConfigError("the bridge is still starting: run `cdc resync` again in a moment")
        if capture.load is not None and capture.load.loading(schema.ref.qualified):
            raise ConfigError(f"{schema.ref.display} is still in its initial load: resync it once that is done")
        with self._lock:
            if any(j.running and j.source == capture.name and j.table == schema.ref.display for j in self._jobs):
                raise ConfigError(f"a resync of {schema.ref.display} is already running")
            job = ResyncJob(capture.name, schema.ref.display)
            self._jobs = [*self._jobs[-19:], job]  # the last twenty
        why = capture.rules.copy_refusal(schema)
        if why:
            raise ConfigError(f"{schema.ref.display} cannot be resynced while the bridge runs: {why}")
        work = Resync(capture.source, warehouse, capture.sink, schema.ref, refusal=capture.rules.copy_refusal)
        threading.Thread(target=work.run, args=(job,), name=f"resync-{capture.name}", daemon=True).start()
        return job

    def action(self, method: str, body: Mapping[str, Any] | None) -> tuple[int, Any]:
        """``GET /resync``: the jobs; ``POST /resync {"table": ..., "source": ...}``: start one."""
        if method == "GET":
            return 200, [j.to_dict() for j in self.jobs()]
        table = (body or {}).get("table")
        source = (body or {}).get("source")
        if not isinstance(table, str) or not (source is None or isinstance(source, str)):
            return 400, {"error": 'POST a JSON object {"table": "schema.table", "source": "name" (optional)}'}
        try:
            return 202, self.start(table, source).to_dict()
        except CdcError as e:
            return 409, {"error": str(e)}


def find_table(captures: Sequence[SourceCapture], table: str, source: str | None) -> tuple[SourceCapture, TableSchema]:
    """The capture of ``table`` (``schema.table``) by ``source`` (any, when None); ConfigError if none or several."""
    try:
        wanted = parse_table(table)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    found = [
        (c, s) for c in captures if source in (None, c.name) for s in c.schemas if (s.ref.schema, s.ref.table) == wanted
    ]
    if not found:
        captured = ", ".join(f"{c.name}: {s.ref.display}" for c in captures for s in c.schemas)
        where = f"source {source!r}" if source else "any source"
        raise ConfigError(f"{display_table(*wanted)} is not captured by {where}; captured: {captured or 'none'}")
    if len(found) > 1:
        names = ", ".join(c.name for c, _ in found)
        raise ConfigError(f"{display_table(*wanted)} is captured by several sources ({names}): name one")
    return found[0]
