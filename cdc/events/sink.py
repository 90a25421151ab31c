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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cdc import jsontext
from cdc.debezium.config import HEARTBEAT_PREFIX
from cdc.debezium.envelope import is_tombstone, parse_record
from cdc.domain.authored import MESSAGE_OP, authored_event, message_record
from cdc.domain.changes import Op, RowChange, SourceMessage, SourcePosition, TableRef, TableSchema
from cdc.domain.deadlines import DeadlineTracker
from cdc.domain.events import DomainEvent, EventRegistry
from cdc.domain.ids import iso_from_ms
from cdc.errors import BadMessage
from cdc.events.requests import ErasureRequests
from cdc.events.store import ClickHouseEventStore, Latest, LatestShapes, payload_json
from cdc.ports import Catalog, Message, OutRecord, Publisher, Rejected, TopicPartition
from cdc.translate import to_change, translate

log = logging.getLogger(__name__)


@dataclass
class EventCounts:
    translated: int = 0
    stored: int = 0
    skipped: int = 0  # changes a translator mapped to no event
    authored: int = 0  # events applications wrote themselves (outbox rows, logical messages)
    alerts: int = 0  # events deadlines emitted


@dataclass(frozen=True)
class Authoring:
    """Where a source's applications write their own events (cdc.domain.authored)."""

    tables: frozenset[str] = frozenset()  # outbox tables, ``schema.table``
    prefix: str = ""  # logical-message prefix; "" = none


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
        authoring: Authoring = Authoring(),
        deadlines: DeadlineTracker | None = None,
        erasure_requests: ErasureRequests | None = None,
    ) -> None:
        self.registry = registry
        self.snapshot_events = snapshot_events  # off: existing rows (op r) make no event
        self._catalog = catalog
        self._publisher = publisher
        self._store = store
        self._schemas: dict[TableRef, TableSchema | None] = {}
        self._shapes = LatestShapes(registry)
        self._authoring = authoring
        self.deadlines = deadlines if deadlines else None  # a tracker without rules costs nothing
        self._times: dict[TopicPartition, int] = {}  # newest commit time read per partition
        self._seen: dict[TopicPartition, int] = {}  # ... of the batch being written (kept once it is stored)
        self.tick_ms: int | None = None  # newest heartbeat tick: the source's commit clock on an idle source
        self._lsn = 0
        self.counts = EventCounts()
        # ``on_delete`` erasure rules: table -> (aggregate, column); a DELETE there asks for an erasure
        self._erase_on_delete = {
            r.on_delete: (r.aggregate, r.delete_column) for r in registry.erasures.values() if r.on_delete
        }
        self._erasure_requests = erasure_requests if self._erase_on_delete else None
        self._asked: list[tuple[str, str, str, int]] = []

    def write(self, topic: str, messages: Sequence[Message]) -> Sequence[Rejected]:
        self._seen, self._asked = {}, []
        checkpoint = self.deadlines.checkpoint() if self.deadlines is not None else None
        try:
            events, records, rejected, payloads = self.translate_all(messages)
            if self.deadlines is not None:
                events, records, payloads = self._with_alerts(events, records, payloads)
            self._deliver(events, records, payloads)
            if self._asked and self._erasure_requests is not None:
                self._erasure_requests.add(self._asked)  # before the commit: a crash loses no request
        except BaseException:
            if self.deadlines is not None and checkpoint is not None:
                self.deadlines.rollback(checkpoint)  # the loop retries the batch: the tracker sees it again
            raise
        for tp, ms in self._seen.items():
            self._times[tp] = max(ms, self._times.get(tp, 0))
        return rejected

    def _deliver(self, events: list[DomainEvent], records: list[OutRecord], payloads: dict[str, str]) -> None:
        if events:
            latest = self._latest(events)  # before publishing: a failing upcaster's message goes to the dead letters
            self._publisher.publish(records)
            self.counts.stored += self._store.append(events, payloads, latest)
            self.counts.translated += len(events)

    def _with_alerts(
        self, events: list[DomainEvent], records: list[OutRecord], payloads: dict[str, str]
    ) -> tuple[list[DomainEvent], list[OutRecord], dict[str, str]]:
        """The events with the alerts of the deadlines they end too late (each alert before its ending event)."""
        assert self.deadlines is not None
        out_events: list[DomainEvent] = []
        out_records: list[OutRecord] = []
        for e, record in zip(events, records, strict=True):
            for alert in self.deadlines.observe(e):
                self._add_alert(alert, out_events, out_records, payloads)
            out_events.append(e)
            out_records.append(record)
        return out_events, out_records, payloads

    def _add_alert(
        self, alert: DomainEvent, events: list[DomainEvent], records: list[OutRecord], payloads: dict[str, str]
    ) -> None:
        text = jsontext.dumps_clean(alert.payload).decode()
        events.append(alert)
        records.append(event_record(alert, text))
        payloads[alert.event_id] = text
        self.counts.alerts += 1

    def finish_batch(
        self, positions: Callable[[], Mapping[TopicPartition, int]], highwater: Mapping[TopicPartition, int]
    ) -> None:
        """After a whole batch: emit the alerts of deadlines the source's clock has passed.

        The clock (watermark) is the oldest of every assigned partition's newest commit time; a
        partition read to its end counts with the newest heartbeat tick instead, since Debezium sends a
        tick only after every change committed before it. So nothing committed before the watermark
        can still arrive, and an alert fires only when no ending event can still come in time.
        """
        if self.deadlines is None:
            return
        read = positions()
        if not read:
            return
        clock = []
        for tp, position in read.items():
            caught_up = position >= highwater.get(tp, position + 1)
            ms = self.tick_ms if caught_up and self.tick_ms is not None else self._times.get(tp)
            if ms is None:
                return  # a partition not read yet: its history is unknown
            clock.append(ms)
        checkpoint = self.deadlines.checkpoint()
        try:
            events: list[DomainEvent] = []
            records: list[OutRecord] = []
            payloads: dict[str, str] = {}
            for alert in self.deadlines.advance(min(clock), self._lsn):
                self._add_alert(alert, events, records, payloads)
            self._deliver(events, records, payloads)
        except BaseException:
            self.deadlines.rollback(checkpoint)
            raise

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
        record = parse_record(msg.value)
        position = record.position
        tp = (msg.topic, msg.partition)
        self._seen[tp] = max(position.commit_ts_ms, self._seen.get(tp, 0))
        self._lsn = max(self._lsn, position.lsn)
        if isinstance(record, SourceMessage):
            return self._message(record)
        if record.table.qualified in self._authoring.tables:
            return self._outbox(record)
        if record.op is Op.DELETE and record.table.qualified in self._erase_on_delete:
            self._ask_erasure(record)
        if record.op is Op.SNAPSHOT and not self.snapshot_events:
            return []  # the source says: no events for existing rows
        return translate(record, self._schema(record.table), self.registry)

    def _ask_erasure(self, change: RowChange) -> None:
        aggregate, column = self._erase_on_delete[change.table.qualified]
        value = (change.before or {}).get(column or "")
        if value is not None:
            self._asked.append((change.table.source, aggregate, str(value), change.position.lsn))

    def _message(self, message: SourceMessage) -> list[DomainEvent]:
        """A heartbeat tick moves the source's clock; a message with the authoring prefix is an event."""
        pos = message.position
        if message.prefix == HEARTBEAT_PREFIX:
            self.tick_ms = max(pos.commit_ts_ms, self.tick_ms or 0)
            return []
        if not self._authoring.prefix or message.prefix != self._authoring.prefix:
            return []  # another application's message (Debezium forwards only the prefixes asked for)
        origin = f"message:{message.prefix}"
        record = message_record(message.content, origin)
        return self._authored(record, message.source, origin, MESSAGE_OP, pos)

    def _outbox(self, change: RowChange) -> list[DomainEvent]:
        """An inserted outbox row is an authored event; updates and deletes of it say nothing (the
        application may delete its rows once written)."""
        if change.op not in (Op.CREATE, Op.SNAPSHOT) or change.after is None:
            return []
        row = to_change(change, self._schema(change.table)).after or {}
        return self._authored(row, change.table.source, change.table.qualified, change.op.value, change.position)

    def _authored(
        self, record: Mapping[str, Any], source: str, origin: str, op: str, pos: SourcePosition
    ) -> list[DomainEvent]:
        made = authored_event(
            self.registry,
            record,
            source=source,
            origin=origin,
            op=op,
            lsn=pos.lsn,
            txid=pos.txid,
            commit_ts_ms=pos.commit_ts_ms,
        )
        self.counts.authored += 1
        return [made]

    def _schema(self, ref: TableRef) -> TableSchema | None:
        if ref not in self._schemas:
            self._schemas[ref] = self._catalog.table_schema(ref)
        return self._schemas[ref]
