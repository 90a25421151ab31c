"""The running bridge's content parity (``cdc verify``, ``POST /parity``): which tables, with the sink's own
mirror tables (so masking, exclusion and schema evolution are the sink's), one run at a time; the
comparison itself is :mod:`cdc.mirror.parity`.

``POST /parity`` takes a JSON object, every member optional::

    {"table": "schema.table" | null,   # null: every captured table
     "source": "name" | null,          # needed when several sources capture the table
     "budget_rows": 200000,            # source rows compared per table in this run, at most (about)
     "range_rows": 50000,              # rows per key range
     "attempts": 3, "wait_s": 2.0,     # re-reads of a differing key, and the pause before each
     "settle_s": 15.0}                 # at most this long waiting for the stream before a re-read

and answers 200 ``{"reports": [<ParityReport.to_json()>, ...]}`` (one per table, see
:mod:`cdc.mirror.parity`), 400 for a malformed request, 409 when it cannot run now (unknown table, the
bridge starting, another run going on).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cdc.capture import SourceCapture
from cdc.domain.changes import TableSchema
from cdc.errors import CdcError, ConfigError
from cdc.mirror.parity import BUDGET_ROWS, RANGE_ROWS, ContentParity, ParityReport
from cdc.ports import Warehouse
from cdc.resyncs import find_table

_NUMBERS = {"budget_rows": int, "range_rows": int, "attempts": int, "wait_s": float, "settle_s": float}
USAGE = (
    'POST a JSON object {"table": "schema.table" or null, "source": "name" or null, "budget_rows": n,'
    ' "range_rows": n, "attempts": n, "wait_s": s, "settle_s": s} (every member optional)'
)


class Parities:
    def __init__(
        self, captures: Sequence[SourceCapture], warehouse: Callable[[], Warehouse | None], salt: Callable[[], str]
    ) -> None:
        self._captures = captures
        self._warehouse = warehouse
        self._salt = salt  # the masking salt the running Debezium hashes with
        self._lock = threading.Lock()

    def run(self, table: str | None, source: str | None, **limits: Any) -> list[ParityReport]:
        """Compare ``table`` (every captured table when None) with its source, up to the budget."""
        warehouse = self._warehouse()
        if warehouse is None or any(c.sink is None for c in self._captures):
            raise ConfigError("the bridge is still starting: run `cdc verify` again in a moment")
        if table is not None:
            targets = [find_table(self._captures, table, source)]
        else:
            targets = [(c, s) for c in self._captures if source in (None, c.name) for s in c.schemas]
            if not targets:
                raise ConfigError(f"source {source!r} is not one of this bridge's")
        if not self._lock.acquire(blocking=False):
            raise ConfigError("a content parity check is already running: try again when it is done")
        try:
            return [self._one(warehouse, capture, schema, limits) for capture, schema in targets]
        finally:
            self._lock.release()

    def _one(
        self, warehouse: Warehouse, capture: SourceCapture, schema: TableSchema, limits: Mapping[str, Any]
    ) -> ParityReport:
        if capture.load is not None and capture.load.loading(schema.ref.qualified):
            return ParityReport(capture.name, schema.ref.display, False, "the table is still in its initial load")
        assert capture.sink is not None
        try:
            table = capture.sink.follow_source(schema.ref)
        except CdcError as e:
            return ParityReport(capture.name, schema.ref.display, failed=True, reason=str(e))
        masks = capture.rules.masks(table.schema, self._salt())
        parity = ContentParity(
            capture.source, warehouse, table, capture.name, masks, capture.caught_up_to, **dict(limits)
        )
        return parity.run()

    def action(self, method: str, body: Mapping[str, Any] | None) -> tuple[int, Any]:
        """``POST /parity``: see the module's docstring."""
        if method != "POST":
            return 405, {"error": USAGE}
        body = body or {}
        table, source = body.get("table"), body.get("source")
        limits = {k: body[k] for k in _NUMBERS if body.get(k) is not None}
        if (
            not (table is None or isinstance(table, str))
            or not (source is None or isinstance(source, str))
            or any(isinstance(v, bool) or not isinstance(v, int | float) or v < 0 for v in limits.values())
        ):
            return 400, {"error": USAGE}
        limits = {k: _NUMBERS[k](v) for k, v in limits.items()}
        try:
            return 200, {"reports": [r.to_json() for r in self.run(table, source, **limits)]}
        except CdcError as e:
            return 409, {"error": str(e)}


__all__ = ["BUDGET_ROWS", "RANGE_ROWS", "Parities"]
