"""The event store: ClickHouse ``events.domain_events``, append-only and idempotent.

An event is stored once: ``append`` skips ids already present, and the table is a
ReplacingMergeTree over the full sort key, so even two writers racing on the same event
converge to one row. Rows are sorted by aggregate, then source position, which is the
order ``history`` returns them in.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from cdc.domain.events import DomainEvent
from cdc.ports import Warehouse

DATABASE, TABLE = "events", "domain_events"
DDL = (
    f"CREATE DATABASE IF NOT EXISTS {DATABASE}",
    f"CREATE TABLE IF NOT EXISTS {DATABASE}.{TABLE} ("
    " event_id UUID, event_type LowCardinality(String), version UInt16,"
    " aggregate_type LowCardinality(String), aggregate_id String, occurred_at DateTime64(3, 'UTC'),"
    " source LowCardinality(String), source_table LowCardinality(String), op LowCardinality(String),"
    " lsn UInt64, txid Nullable(Int64), sequence UInt16, correlation_id UUID, payload String,"
    " stored_at DateTime64(6, 'UTC') DEFAULT now64(6),"
    " INDEX event_id_idx event_id TYPE bloom_filter GRANULARITY 4"
    ") ENGINE = ReplacingMergeTree ORDER BY (aggregate_type, aggregate_id, lsn, sequence, event_id)",
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
_SELECT = (
    "SELECT toString(event_id), event_type, version, aggregate_type, aggregate_id,"
    " toUnixTimestamp64Milli(occurred_at), source, source_table, op, lsn, txid, sequence,"
    f" toString(correlation_id), payload FROM {DATABASE}.{TABLE} FINAL"
)

_PAYLOAD_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False)  # built once


def payload_json(e: DomainEvent) -> str:
    return _PAYLOAD_JSON.encode(e.payload)


class ClickHouseEventStore:
    """Appends events idempotently and reads an aggregate's history back in source order."""

    def __init__(self, warehouse: Warehouse) -> None:
        self._warehouse = warehouse
        for statement in DDL:
            warehouse.command(statement)

    def append(self, events: Sequence[DomainEvent], payloads: Mapping[str, str] | None = None) -> int:
        """Store the events not stored yet; returns how many were new.

        ``payloads`` may carry each event's payload JSON by event id, already serialised.
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
        texts = payloads or {}
        rows = [event_row(e, texts.get(e.event_id)) for e in fresh.values()]
        self._warehouse.insert(DATABASE, TABLE, COLUMNS, rows)
        return len(rows)

    def history(self, aggregate_type: str, aggregate_id: str, as_of_ms: int | None = None) -> list[DomainEvent]:
        """The aggregate's events as stored (not upcast), oldest first, optionally up to ``as_of_ms``."""
        sql = _SELECT + " WHERE aggregate_type = {t:String} AND aggregate_id = {i:String}"
        params: dict[str, Any] = {"t": aggregate_type, "i": aggregate_id}
        if as_of_ms is not None:
            sql += " AND occurred_at <= fromUnixTimestamp64Milli({at:Int64}, 'UTC')"
            params["at"] = as_of_ms
        rows = self._warehouse.query(sql + " ORDER BY lsn, sequence, event_id", params)
        return [_event(r) for r in rows]

    def count(self) -> int:
        return int(self._warehouse.query(f"SELECT count() FROM {DATABASE}.{TABLE} FINAL")[0][0])


def event_row(e: DomainEvent, payload_text: str | None = None) -> list[Any]:
    """The event as a row of ``COLUMNS``."""
    return [
        uuid.UUID(e.event_id),
        e.event_type,
        e.version,
        e.aggregate_type,
        e.aggregate_id,
        dt.datetime.fromtimestamp(e.occurred_at_ms / 1000, tz=dt.UTC),
        e.source,
        e.table,
        e.op,
        e.lsn,
        e.txid,
        e.sequence,
        uuid.UUID(e.correlation_id),
        payload_text or payload_json(e),
    ]


def _event(r: tuple[Any, ...]) -> DomainEvent:
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
