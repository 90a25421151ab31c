"""The running bridge's erasures (``cdc erase``, ``POST /erase``, and deletes of an ``on_delete`` table).

One at a time. Each first waits until the changes committed before it are in ClickHouse (a DELETE
of the person's rows in the source must not land after the erasure), then, with the embedded broker,
runs inside a truncation round: Debezium paused with nothing in flight, the aggregate erased in
ClickHouse (:mod:`cdc.erasure`), every topic emptied, the lanes rewound. An external Kafka keeps its
records: the result says so, and README says what to do. Then the reports are rebuilt and the
audit row written.

Deletes that should erase are noted by the events lane in ``cdc.erasure_requests`` (in the batch
that stores the delete's events, so a crash loses none); the bridge erases them from its
supervising loop and removes each request once done.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cdc import erasure
from cdc.capture import SourceCapture
from cdc.errors import CdcError, ConfigError
from cdc.events.requests import REQUESTS, REQUESTS_DDL
from cdc.mirror.row_checks import literal
from cdc.ports import Warehouse
from cdc.truncation import Truncator

log = logging.getLogger(__name__)
CATCH_UP_S = 120.0
EXTERNAL_TOPICS = "not rewritten: the Kafka is external (README, 'Erasure' says how to clean its topics)"


class Erasures:
    def __init__(
        self,
        captures: Sequence[SourceCapture],
        warehouse: Callable[[], Warehouse | None],
        truncator: Callable[[], Truncator | None],
        rebuild_reports: Callable[[Warehouse, str], list[str]] | None = None,
    ) -> None:
        self._captures = captures
        self._warehouse = warehouse
        self._truncator = truncator
        self._rebuild = rebuild_reports
        self._lock = threading.Lock()
        self._next_poll = 0.0
        self._worker: threading.Thread | None = None

    def action(self, method: str, body: Mapping[str, Any] | None) -> tuple[int, Any]:
        """``POST /erase {"aggregate": "customer", "id": "42", "source": "name" (optional)}``."""
        body = body or {}
        aggregate, aggregate_id, source = body.get("aggregate"), body.get("id"), body.get("source")
        if method != "POST" or not isinstance(aggregate, str) or not isinstance(aggregate_id, str):
            return 400, {"error": 'POST a JSON object {"aggregate": "customer", "id": "42", "source": "name"}'}
        if source is not None and not isinstance(source, str):
            return 400, {"error": "source must be a name"}
        try:
            return 200, self.erase(aggregate, aggregate_id, source, "command").to_dict()
        except CdcError as e:
            return 409, {"error": str(e)}

    def erase(self, aggregate: str, aggregate_id: str, source: str | None, trigger: str) -> erasure.Erased:
        capture = self._capture(aggregate, source)
        warehouse = self._warehouse()
        if warehouse is None:
            raise ConfigError("the bridge is still starting: run `cdc erase` again in a moment")
        assert capture.registry is not None
        rule = capture.registry.erasures[aggregate]
        with self._lock:
            self._catch_up(capture)
            result: list[erasure.Erased] = []

            def work() -> None:
                result.append(erasure.erase(warehouse, capture.name, rule, aggregate_id, trigger))

            truncator = self._truncator()
            if truncator is None:
                work()
                result[0].topics = EXTERNAL_TOPICS
            elif not truncator.round(while_paused=work) or not result:
                raise ConfigError("Debezium did not pause in time (a lane is far behind?): run `cdc erase` again")
            else:
                result[0].topics = "emptied: every topic of the embedded broker was deleted and re-created"
            done = result[0]
            if self._rebuild is not None:
                done.reports = self._rebuild(warehouse, capture.name)
            done.reports_left = sorted(set(erasure.built_reports(warehouse)) - set(done.reports))
            erasure.audit(warehouse, done)
        log.info(
            "erased %s (sha256 %s…) of source %s: %s", aggregate, done.id_sha256[:12], capture.name, done.to_dict()
        )
        return done

    def _capture(self, aggregate: str, source: str | None) -> SourceCapture:
        found = [
            c
            for c in self._captures
            if source in (None, c.name) and c.registry is not None and aggregate in c.registry.erasures
        ]
        if not found:
            declared = sorted({a for c in self._captures if c.registry is not None for a in c.registry.erasures})
            raise ConfigError(
                f"no erasure rule for {aggregate!r}"
                + (f" in source {source!r}" if source else "")
                + f"; declared: {', '.join(declared) or 'none'}"
                " (declare one with erasure(...) in the translators module)"
            )
        if len(found) > 1:
            raise ConfigError(
                f"{aggregate!r} has erasure rules in several sources ({', '.join(c.name for c in found)}): name one"
            )
        return found[0]

    def _catch_up(self, capture: SourceCapture) -> None:
        """Wait until what the source committed before now is in ClickHouse (bounded)."""
        try:
            target = capture.source.current_wal_lsn()
        except CdcError as e:
            raise ConfigError(f"the source is unreachable, so its latest changes cannot be waited for: {e}") from e
        deadline = time.monotonic() + CATCH_UP_S
        while not capture.caught_up_to(target):
            if time.monotonic() > deadline:
                raise ConfigError(f"source {capture.name} did not catch up within {CATCH_UP_S:.0f} s: try again later")
            time.sleep(0.2)

    # -- deletes that erase -------------------------------------------------------------------------
    def apply_requested(self, every_s: float = 5.0) -> None:
        """Erase what deletes of ``on_delete`` tables asked for, on a thread of its own (called from the
        bridge's supervising loop, which must not wait for an erasure)."""
        if time.monotonic() < self._next_poll or (self._worker is not None and self._worker.is_alive()):
            return
        self._next_poll = time.monotonic() + every_s
        if not any(c.registry is not None and c.registry.erasures for c in self._captures):
            return
        self._worker = threading.Thread(target=self._requested, name="erasures", daemon=True)
        self._worker.start()

    def _requested(self) -> None:
        try:
            self._erase_requested()
        except CdcError as e:  # the warehouse away: the requests wait in their table
            log.warning("erasures asked for by deletes are postponed: %s", e)

    def _erase_requested(self) -> None:
        warehouse = self._warehouse()
        if warehouse is None:
            return
        for statement in REQUESTS_DDL:
            warehouse.command(statement)
        rows = warehouse.query(
            f"SELECT source, aggregate_type, aggregate_id FROM {REQUESTS} FINAL ORDER BY requested_at"
        )
        for source, aggregate, aggregate_id in rows:
            try:
                self.erase(str(aggregate), str(aggregate_id), str(source), "delete")
            except CdcError as e:
                log.warning("erasure asked for by a delete in %s is postponed: %s", source, e)
                return
            warehouse.command(
                f"ALTER TABLE {REQUESTS} DELETE WHERE source = {literal(str(source))}"
                f" AND aggregate_type = {literal(str(aggregate))}"
                f" AND aggregate_id = {literal(str(aggregate_id))} SETTINGS mutations_sync = 2"
            )
