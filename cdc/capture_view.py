"""One source as the status observer and the console read it: counters, slot, errors.

Reads only: the :class:`~cdc.capture.SourceCapture` it wraps runs the parts, this reports on them
(the :class:`~cdc.status.observer.SourceView` protocol).
"""

from __future__ import annotations

from collections.abc import Sequence

from cdc.capture import SourceCapture
from cdc.consume.loop import Stats
from cdc.events.reports import WorkerReport
from cdc.mirror.initial_load import Progress
from cdc.mirror.table import mirror_name
from cdc.ports import SlotInfo


class CaptureView:
    def __init__(self, capture: SourceCapture) -> None:
        self.c = capture

    @property
    def name(self) -> str:
        return self.c.name

    @property
    def where(self) -> str:
        return self.c.where

    @property
    def slot(self) -> str:
        return self.c.slot

    @property
    def topics(self) -> list[str]:
        return self.c.topics

    @property
    def epoch(self) -> int:
        return self.c.epoch

    def mirror_stats(self) -> Stats | None:
        return self.c.lane.service.stats if self.c.lane is not None else None

    @property
    def events_report(self) -> WorkerReport | None:
        return self.c.events.report if self.c.events is not None else None

    def captured(self) -> int:
        """Change records Debezium produced to Kafka (Kafka Connect: as the mirror's last fetch saw them)."""
        if self.c.runner is None:
            return 0
        produced = self.c.runner.records_produced
        if produced < 0 and self.c.lane is not None:  # Kafka Connect does not count what a connector produced
            return sum(dict(self.c.lane.service.stats.highwater).values())
        return max(0, produced)

    def load_progress(self) -> list[Progress]:
        load = self.c.load
        return load.progress() if load is not None else []

    def table_names(self) -> list[tuple[str, str, str]]:
        return [(s.ref.display, s.ref.topic, f"{self.c.name}.{mirror_name(s.ref)}") for s in self.c.schemas]

    def in_flight(self) -> int | None:
        """Changes Debezium produced that are not yet durable in every lane (None: not known)."""
        gate = getattr(self.c.runner, "gate", None)
        return gate.not_durable() if gate is not None else None

    def slot_info(self) -> SlotInfo | None:
        """This source's replication slot as PostgreSQL shows it (None: not created yet)."""
        return next((s for s in self.c.source.slots() if s.slot_name == self.c.slot), None)

    def schema_notices(self) -> Sequence[object]:
        return self.c.sink.schema_notices() if self.c.sink is not None else ()

    def errors(self, silent_after_s: float) -> list[str]:
        errors = []
        if self.c.lane is not None and (self.c.lane.error or self.c.lane.service.stats.last_error):
            errors.append(f"{self.c.lane.name}: {self.c.lane.error or self.c.lane.service.stats.last_error}")
        report = self.events_report
        if report is not None and (report.error or report.stats.last_error):
            errors.append(f"events {self.c.name}: {report.error or report.stats.last_error}")
        if self.c.events is not None and self.c.events.alive() and self.c.events.silent_for() > silent_after_s:
            errors.append(
                f"events {self.c.name}: the consumer has not reported for {self.c.events.silent_for():.0f} s "
                f"(see {self.c.options.state_dir / 'logs' / 'events.log'})"
            )
        if self.c.load is not None and self.c.load.error:
            errors.append(self.c.load.error)
        return errors + self.c.supervisor.errors(self.c.runner)
