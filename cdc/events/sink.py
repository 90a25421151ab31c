"""The domain-event sink: change messages -> translated events -> Kafka ``events.*`` + the event store.

``write`` returns after the broker acknowledged every event and the store holds them (each
also in its type's latest shape: see :mod:`cdc.events.store`), so
the consume loop may then commit the change-topic offsets. Redelivered changes translate
to the same event ids: the store keeps one copy, and consumers of ``events.*`` can drop
repeats by the ``event_id`` header. A message that cannot be parsed or translated comes
back as :class:`Rejected` (-> dead letters) while the rest of the batch goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from cdc import jsontext
from cdc.debezium.envelope import is_tombstone, parse_change
from cdc.domain.changes import Op, TableRef, TableSchema
from cdc.domain.events import DomainEvent, EventRegistry
from cdc.domain.ids import iso_from_ms
from cdc.errors import BadMessage
from cdc.events.store import ClickHouseEventStore, Latest, LatestShapes, payload_json
from cdc.ports import Catalog, Message, OutRecord, Publisher, Rejected
from cdc.translate import translate

log = logging.getLogger(__name__)


@dataclass
class EventCounts:
    translated: int = 0
    stored: int = 0
    skipped: int = 0  # changes a translator mapped to no event


def event_record(e: DomainEvent, payload_text: str | None = None) -> OutRecord:
    """The Kafka form of an event: keyed by aggregate id, type/version/id in headers.

    ``payload_text`` is the payload's JSON when the caller has it already (it is spliced in,
    not parsed and written again).
    """
    doc = {
        "event_id": e.event_id,
        "event_type": e.event_type,
        "version": e.version,
        "aggregate_type": e.aggregate_type,
        "aggregate_id": e.aggregate_id,
        "occurred_at": iso_from_ms(e.occurred_at_ms),
        "correlation_id": e.correlation_id,
        "source": {
            "name": e.source,
            "table": e.table,
            "op": e.op,
            "lsn": e.lsn,
            "txid": e.txid,
            "sequence": e.sequence,
        },
    }
    head = jsontext.dumps_clean(doc, sort_keys=False)
    value = b"".join((head[:-1], b',"payload":', (payload_text or payload_json(e)).encode(), b"}"))
    headers = (
        ("event_type", e.event_type.encode()),
        ("event_version", str(e.version).encode()),
        ("event_id", e.event_id.encode()),
        ("correlation_id", e.correlation_id.encode()),
    )
    return OutRecord(e.topic, e.aggregate_id.encode(), value, headers)


def _payloads(events: Sequence[DomainEvent]) -> list[str]:
    """Each event's payload as JSON (translation made it of ``to_json_value``'s values); a value JSON
    cannot carry is the message's problem."""
    try:
        return [jsontext.dumps_clean(e.payload).decode() for e in events]
    except (TypeError, ValueError) as e:
        raise BadMessage(f"an event payload cannot be written as JSON: {e}") from e


class UpcastError(BadMessage):
    """An upcaster (the user's code, like a translator) failed on an event this message made."""


class DomainEventSink:
    """Translates with ``registry``; publishes with ``publisher``; stores in ``store``."""

    def __init__(
        self,
        registry: EventRegistry,
        catalog: Catalog,
        publisher: Publisher,
        store: ClickHouseEventStore,
        snapshot_events: bool = True,
    ) -> None:
        self.registry = registry
        self.snapshot_events = snapshot_events  # off: existing rows (op r) make no event
        self._catalog = catalog
        self._publisher = publisher
        self._store = store
        self._schemas: dict[TableRef, TableSchema | None] = {}
        self._shapes = LatestShapes(registry)
        self.counts = EventCounts()

    def write(self, topic: str, messages: Sequence[Message]) -> Sequence[Rejected]:
        events, records, rejected, payloads = self.translate_all(messages)
        if events:
            latest = self._latest(events)  # before publishing: a failing upcaster's message goes to the dead letters
            self._publisher.publish(records)
            self.counts.stored += self._store.append(events, payloads, latest)
            self.counts.translated += len(events)
        return rejected

    def _latest(self, events: Sequence[DomainEvent]) -> dict[str, Latest]:
        """The latest shape of the events translated below their type's latest version (seldom any:
        translators usually emit the latest); the others are stored as their own latest shape."""
        latest = {}
        for e in events:
            if self._shapes.behind(e):
                try:
                    latest[e.event_id] = self._shapes.of(e)
                except Exception as error:  # the upcaster's own; the consume loop isolates the message behind it
                    raise UpcastError(
                        f"upcasting {e.event_type} v{e.version} at lsn {e.lsn} failed: {type(error).__name__}: {error}"
                    ) from error
        return latest

    def translate_all(
        self, messages: Sequence[Message]
    ) -> tuple[list[DomainEvent], list[OutRecord], list[Rejected], dict[str, str]]:
        """Events, their Kafka records, the rejected messages, and each event's payload JSON by id."""
        events: list[DomainEvent] = []
        records: list[OutRecord] = []
        rejected: list[Rejected] = []
        payloads: dict[str, str] = {}
        for msg in messages:
            if is_tombstone(msg.value):
                continue
            try:
                produced = self._translate(msg)
                texts = _payloads(produced)
            except BadMessage as e:  # only the message itself; a bug in here stops the lane
                rejected.append(Rejected(msg, e))
                continue
            out = [event_record(e, text) for e, text in zip(produced, texts, strict=True)]
            if not produced:
                self.counts.skipped += 1
            events.extend(produced)
            records.extend(out)
            payloads.update((e.event_id, text) for e, text in zip(produced, texts, strict=True))
        return events, records, rejected, payloads

    def _translate(self, msg: Message) -> list[DomainEvent]:
        assert msg.value is not None
        change = parse_change(msg.value)
        if change is None:
            return []  # truncate / logical message: not a row change
        if change.op is Op.SNAPSHOT and not self.snapshot_events:
            return []  # the source says: no events for existing rows
        return translate(change, self._schema(change.table), self.registry)

    def _schema(self, ref: TableRef) -> TableSchema | None:
        if ref not in self._schemas:
            self._schemas[ref] = self._catalog.table_schema(ref)
        return self._schemas[ref]
