"""The event store: ClickHouse ``events.domain_events``, append-only and idempotent.

An event is stored once: ``append`` skips ids already present, and the table is a
ReplacingMergeTree over the full sort key, so even two writers racing on the same event
converge to one row. Rows are sorted by aggregate, then source position, which is the
order ``history`` returns them in.

Beside the payload as stored (``version``, ``payload``: never rewritten) each row keeps the
payload in the latest shape its writer's registry knew, so SQL readers need no upcasters:

* ``latest_version`` — the version of that shape (``DEFAULT version``: a row written without a
  registry, or before the column existed, is in its own shape);
* ``payload_upcast`` — the upcast payload's JSON, ``''`` when it equals ``payload`` (most events
  are written in their latest shape, so the store does not keep their payload twice);
* ``payload_latest`` — ``ALIAS``: the latest shape of every row, what projections read.

When a new version ships, :func:`cdc.events.upcast.upcast_stored` re-inserts the rows behind
it; the table has no version column, so of two rows with one key the one inserted last wins
(merges and ``FINAL`` alike), and the new row's ``stored_at`` is the time of the rewrite.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cdc import jsontext
from cdc.domain.events import DomainEvent, EventRegistry
from cdc.domain.ids import utc_from_ms
from cdc.ports import Warehouse

DATABASE, TABLE = "events", "domain_events"
_LATEST = (  # added after ``payload``; stores made before them get them from ``DDL``'s ALTERs
    ("payload", "latest_version", "UInt16 DEFAULT version"),
    ("latest_version", "payload_upcast", "String DEFAULT ''"),
    ("payload_upcast", "payload_latest", "String ALIAS if(payload_upcast = '', payload, payload_upcast)"),
)
DDL = (
    f"CREATE DATABASE IF NOT EXISTS {DATABASE}",
    f"CREATE TABLE IF NOT EXISTS {DATABASE}.{TABLE} ("
    " event_id UUID, event_type LowCardinality(String), version UInt16,"
    " aggregate_type LowCardinality(String), aggregate_id String, occurred_at DateTime64(3, 'UTC'),"
    " source LowCardinality(String), source_table LowCardinality(String), op LowCardinality(String),"
    " lsn UInt64, txid Nullable(Int64), sequence UInt16, correlation_id UUID, payload String,"
    + "".join(f" {name} {kind}," for _, name, kind in _LATEST)
    + " stored_at DateTime64(6, 'UTC') DEFAULT now64(6),"
    " INDEX event_id_idx event_id TYPE bloom_filter GRANULARITY 4"
    ") ENGINE = ReplacingMergeTree ORDER BY (aggregate_type, aggregate_id, lsn, sequence, event_id)",
    # idempotent migration of a store created before the latest-shape columns (metadata only)
    *(
        f"ALTER TABLE {DATABASE}.{TABLE} ADD COLUMN IF NOT EXISTS {name} {kind} AFTER {after}"
        for after, name, kind in _LATEST
    ),
)
COLUMNS = (
    "event_id",
    "event_type",
    "version",
    "aggregate_type",
    "aggregate_id",
    "occurred_at",
    "source",
    "source_table",
    "op",
    "lsn",
    "txid",
    "sequence",
    "correlation_id",
    "payload",
)
LATEST_COLUMNS = ("latest_version", "payload_upcast")  # what the writer's registry made of the event
SELECT = (  # the columns ``stored_event`` reads, from the whole store (add WHERE ...)
    "SELECT toString(event_id), event_type, version, aggregate_type, aggregate_id,"
    " toUnixTimestamp64Milli(occurred_at), source, source_table, op, lsn, txid, sequence,"
    f" toString(correlation_id), payload FROM {DATABASE}.{TABLE} FINAL"
)

_PAYLOAD_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False)  # built once


def payload_json(e: DomainEvent) -> str:
    return _PAYLOAD_JSON.encode(e.payload)


@dataclass(frozen=True, slots=True)
class Latest:
    """An event's payload in the latest shape of its type: the ``LATEST_COLUMNS`` of its row."""

    version: int  # the type's latest version the registry knows (the event's own if it knows none)
    upcast: str  # the payload upcast to ``version``, as JSON; '' when the stored payload is that shape


class LatestShapes:
    """Lifts events below their type's latest version through the registry's upcasters.

    Cheap for the usual event, already in its latest shape: one dict lookup, no JSON written.
    """

    def __init__(self, registry: EventRegistry | None) -> None:
        self._registry = registry
        self._versions: dict[str, int] = {}

    def version(self, event_type: str) -> int:
        """The latest version of ``event_type`` the registry knows; 0 when it knows none."""
        found = self._versions.get(event_type)
        if found is None:
            spec = self._registry.latest(event_type) if self._registry is not None else None
            found = self._versions[event_type] = spec.version if spec is not None else 0
        return found

    def behind(self, e: DomainEvent) -> bool:
        return e.version < self.version(e.event_type)

    def of(self, e: DomainEvent) -> Latest:
        """Raises whatever an upcaster raises: the caller decides whose fault that is."""
        if self._registry is None or not self.behind(e):
            return Latest(e.version, "")
        current = self._registry.upcast(e)
        return Latest(current.version, payload_json(current))


class ClickHouseEventStore:
    """Appends events idempotently and reads an aggregate's history back in source order.

    With a ``registry`` each new row also gets its payload in the latest shape (``LATEST_COLUMNS``);
    without one, events are stored as their own latest shape until ``upcast_stored`` lifts them.
    """

    def __init__(self, warehouse: Warehouse, registry: EventRegistry | None = None) -> None:
        self._warehouse = warehouse
        self._shapes = LatestShapes(registry)
        for statement in DDL:
            warehouse.command(statement)

    def append(
        self,
        events: Sequence[DomainEvent],
        payloads: Mapping[str, str] | None = None,
        latest: Mapping[str, Latest] | None = None,
    ) -> int:
        """Store the events not stored yet; returns how many were new.

        ``payloads`` may carry each event's payload JSON by event id, already serialised, and
        ``latest`` the latest shape of events already upcast; the others are upcast here.
        """
        fresh = {e.event_id: e for e in events}
        if not fresh:
            return 0
        found = self._warehouse.query(
            f"SELECT DISTINCT toString(event_id) FROM {DATABASE}.{TABLE} WHERE event_id IN {{ids:Array(UUID)}}",
            {"ids": list(fresh)},
        )
        for (known,) in found:
            fresh.pop(known, None)
        texts, shapes = payloads or {}, latest or {}
        data = b"\n".join(
            _json_row(e, texts.get(e.event_id), shapes.get(e.event_id) or self._shapes.of(e)) for e in fresh.values()
        )
        self._warehouse.insert_raw(DATABASE, TABLE, (*COLUMNS, *LATEST_COLUMNS), data, "JSONCompactEachRow")
        return len(fresh)

    def history(self, aggregate_type: str, aggregate_id: str, as_of_ms: int | None = None) -> list[DomainEvent]:
        """The aggregate's events as stored (not upcast), oldest first, optionally up to ``as_of_ms``."""
        sql = SELECT + " WHERE aggregate_type = {t:String} AND aggregate_id = {i:String}"
        params: dict[str, Any] = {"t": aggregate_type, "i": aggregate_id}
        if as_of_ms is not None:
            sql += " AND occurred_at <= fromUnixTimestamp64Milli({at:Int64}, 'UTC')"
            params["at"] = as_of_ms
        rows = self._warehouse.query(sql + " ORDER BY lsn, sequence, event_id", params)
        return [stored_event(r) for r in rows]

    def count(self) -> int:
        return int(self._warehouse.query(f"SELECT count() FROM {DATABASE}.{TABLE} FINAL")[0][0])


def event_row(e: DomainEvent, payload_text: str | None = None) -> list[Any]:
    """The event as a row of ``COLUMNS`` (UUIDs as text: clickhouse-connect parses it cheaper than ``uuid.UUID``)."""
    return _values(e, payload_text, utc_from_ms(e.occurred_at_ms))


def _values(e: DomainEvent, payload_text: str | None, occurred_at: Any) -> list[Any]:
    return [
        e.event_id,
        e.event_type,
        e.version,
        e.aggregate_type,
        e.aggregate_id,
        occurred_at,
        e.source,
        e.table,
        e.op,
        e.lsn,
        e.txid,
        e.sequence,
        e.correlation_id,
        payload_text or payload_json(e),
    ]


@functools.lru_cache(maxsize=4096)  # the events of one transaction share their commit time
def _time_text(ms: int) -> str:
    """A commit time as ClickHouse reads a ``DateTime64(3, 'UTC')`` from text (a number would be seconds)."""
    return utc_from_ms(ms).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _json_row(e: DomainEvent, payload_text: str | None, latest: Latest) -> bytes:
    """The event as one line of ``JSONCompactEachRow`` over ``COLUMNS`` + ``LATEST_COLUMNS``: one C call
    writes it, where clickhouse-connect's native insert converts each value in Python."""
    row = [*_values(e, payload_text, _time_text(e.occurred_at_ms)), latest.version, latest.upcast]
    return jsontext.dumps_clean(row, sort_keys=False)


def latest_row(e: DomainEvent, payload_text: str | None, latest: Latest) -> list[Any]:
    """The event as a row of ``COLUMNS`` + ``LATEST_COLUMNS``."""
    return [*event_row(e, payload_text), latest.version, latest.upcast]


def stored_event(r: tuple[Any, ...]) -> DomainEvent:
    """A row of ``SELECT`` as the event it stores (its payload as stored, not upcast)."""
    return DomainEvent(
        event_id=r[0],
        event_type=r[1],
        version=int(r[2]),
        aggregate_type=r[3],
        aggregate_id=r[4],
        occurred_at_ms=int(r[5]),
        source=r[6],
        table=r[7],
        op=r[8],
        lsn=int(r[9]),
        txid=None if r[10] is None else int(r[10]),
        sequence=int(r[11]),
        correlation_id=r[12],
        payload=json.loads(r[13]),
    )
