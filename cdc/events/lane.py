"""Composition of the domain-event consumer (run by :mod:`cdc.events.worker` in its own process)."""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from pathlib import Path

from cdc.adapters.clickhouse import ClickHouseWarehouse, connect_warehouse
from cdc.adapters.kafka import KafkaChangeStream, KafkaPublisher
from cdc.adapters.postgres import PostgresSource
from cdc.consume.dead_letters import DeadLetters
from cdc.consume.loop import ConsumerService
from cdc.domain.events import EventDefinitionError, load_modules
from cdc.errors import ConfigError
from cdc.events.sink import DomainEventSink
from cdc.events.store import ClickHouseEventStore
from cdc.events.worker import WorkerConfig, WorkerReport


@dataclass
class EventsLane:
    service: ConsumerService
    sink: DomainEventSink
    stream: KafkaChangeStream
    publisher: KafkaPublisher
    warehouse: ClickHouseWarehouse

    def report(self, error: str | None) -> WorkerReport:
        return WorkerReport(
            copy.deepcopy(self.service.stats), self.sink.counts.translated, self.sink.counts.stored, error
        )

    def close(self) -> None:
        for close in (self.stream.close, self.publisher.close, self.warehouse.close):
            with contextlib.suppress(Exception):
                close()


def open_events_lane(config: WorkerConfig) -> EventsLane:
    try:
        registry = load_modules(config.translators)
    except EventDefinitionError as e:
        raise ConfigError(f"translators: {e}") from None
    warehouse = connect_warehouse(config.clickhouse_url, Path(config.state_dir))
    publisher = KafkaPublisher(config.bootstrap, f"cdc-events-{config.source}")
    stream = KafkaChangeStream(config.bootstrap, f"cdc-events-{config.source}", config.topics)
    sink = DomainEventSink(registry, PostgresSource(config.source_dsn), publisher, ClickHouseEventStore(warehouse))
    service = ConsumerService(stream, sink, DeadLetters(warehouse, publisher), "events")
    return EventsLane(service, sink, stream, publisher, warehouse)
