"""The domain-event lane the worker process drives; composed by :func:`cdc.bootstrap.open_events_lane`."""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Protocol

from cdc.consume.loop import ConsumerService
from cdc.events.reports import WorkerReport
from cdc.events.sink import DomainEventSink
from cdc.ports import ChangeStream, Publisher


class _Closable(Protocol):
    def close(self) -> None: ...


@dataclass
class EventsLane:
    service: ConsumerService
    sink: DomainEventSink
    stream: ChangeStream
    publisher: Publisher
    warehouse: _Closable

    def report(self, error: str | None) -> WorkerReport:
        return WorkerReport(
            copy.deepcopy(self.service.stats), self.sink.counts.translated, self.sink.counts.stored, error
        )

    def close(self) -> None:
        for close in (self.stream.close, self.publisher.close, self.warehouse.close):
            with contextlib.suppress(Exception):
                close()
