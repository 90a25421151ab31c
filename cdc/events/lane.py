"""The domain-event lane the worker process drives; composed by :func:`cdc.bootstrap.open_events_lane`."""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cdc.consume.loop import ConsumerService
from cdc.errors import CdcError
from cdc.events.deadlines import open_deadlines
from cdc.events.reports import WorkerReport
from cdc.events.sink import DomainEventSink
from cdc.events.upcast import UpcastResult, any_behind, upcast_stored
from cdc.ports import ChangeStream, Publisher, Warehouse

log = logging.getLogger(__name__)


class _ClosableWarehouse(Warehouse, Protocol):
    def close(self) -> None: ...


@dataclass
class EventsLane:
    service: ConsumerService
    sink: DomainEventSink
    stream: ChangeStream
    publisher: Publisher
    warehouse: _ClosableWarehouse

    def report(self, error: str | None) -> WorkerReport:
        counts, deadlines = self.sink.counts, self.sink.deadlines
        return WorkerReport(
            copy.deepcopy(self.service.stats),
            counts.translated,
            counts.stored,
            error,
            authored=counts.authored,
            alerts=counts.alerts,
            deadlines_open=deadlines.open if deadlines is not None else 0,
        )

    def rewind(self) -> None:
        """After a truncation round (an erasure's among them): read from offset 0 again, and take the open
        deadlines from the store anew (an erased aggregate's are gone from it)."""
        self.service.rewind()
        if self.sink.deadlines is not None:
            try:
                self.sink.deadlines = open_deadlines(self.warehouse, self.sink.registry)
            except CdcError as e:  # the warehouse away: keep the deadlines held so far
                log.warning("open deadlines not re-read from the event store after a rewind: %s", e)

    def upcast_stored(self, progress: Callable[[UpcastResult], None]) -> UpcastResult | None:
        """Lift the stored events behind the lane's registry (None: a cheap look found none behind)."""
        if not any_behind(self.warehouse, self.sink.registry):
            return None
        return upcast_stored(self.warehouse, self.sink.registry, progress=progress)

    def close(self) -> None:
        for close in (self.stream.close, self.publisher.close, self.warehouse.close):
            with contextlib.suppress(Exception):
                close()
