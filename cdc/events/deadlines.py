"""The events lane's open deadlines, rebuilt from the event store when the lane starts.

The store holds every start, ending event and alert the lane wrote, so the deadlines open at a
restart are the starts with no ending event after them and no alert of their own: state rebuilt
from the events, with no table of its own to keep in step (or to erase a person from).
"""

from __future__ import annotations

import logging

from cdc.domain.deadlines import DeadlineRule, DeadlineTracker, Pending, alert_id
from cdc.domain.events import EventRegistry
from cdc.events.store import DATABASE, TABLE, stored_event
from cdc.ports import Warehouse

_STORE = f"{DATABASE}.{TABLE}"
log = logging.getLogger(__name__)


def _key_sql(rule: DeadlineRule) -> str:
    if rule.key is None:
        return "aggregate_id"
    field = "'" + rule.key.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return (
        f"if(JSONType(payload_latest, {field}) = 'String', JSONExtractString(payload_latest, {field}),"
        f" JSONExtractRaw(payload_latest, {field}))"
    )


def open_deadlines(warehouse: Warehouse, registry: EventRegistry) -> DeadlineTracker:
    """A tracker for the registry's rules, holding the deadlines the store says are still open."""
    tracker = DeadlineTracker(registry)
    for rule in registry.deadlines.values():
        tracker.restore(_open(warehouse, registry, rule))
    log.info("deadlines: %d open deadline(s) restored from the event store", tracker.open)
    return tracker


def _open(warehouse: Warehouse, registry: EventRegistry, rule: DeadlineRule) -> list[Pending]:
    key = _key_sql(rule)
    emitted = next(s.name for n in registry.names() for s in registry.versions(n) if s.payload_class is rule.emits)
    rows = warehouse.query(
        "SELECT toString(s.event_id), s.event_type, s.latest_version, s.aggregate_type, s.aggregate_id,"
        " s.t, s.source, s.source_table, s.op, s.lsn, s.txid, s.sequence, toString(s.correlation_id),"
        " s.latest_payload, s.k"
        f" FROM (SELECT *, payload_latest AS latest_payload, toUnixTimestamp64Milli(occurred_at) AS t, {key} AS k"
        f"  FROM {_STORE} FINAL"
        f"  WHERE event_type IN {{start:Array(String)}} AND op != 'r') AS s"
        f" LEFT JOIN (SELECT {key} AS k, max(lsn) AS l FROM {_STORE} FINAL"
        "  WHERE event_type IN {end:Array(String)} GROUP BY k) AS e ON s.k = e.k"
        " WHERE s.lsn > e.l AND (s.correlation_id, s.t + {within:Int64}) NOT IN"
        "  (SELECT correlation_id, toUnixTimestamp64Milli(occurred_at)"
        f"   FROM {_STORE} WHERE event_type = {{emits:String}})"
        " ORDER BY s.lsn, s.sequence",
        {"start": list(rule.start), "end": list(rule.end), "within": rule.within_ms, "emits": emitted},
    )
    starts = [(stored_event(r[:14]), str(r[14])) for r in rows]  # the start in its latest shape
    fired = _stored(warehouse, [alert_id(rule.name, e.event_id) for e, _ in starts])
    return [
        Pending(rule.name, k, e, e.occurred_at_ms + rule.within_ms)
        for e, k in starts
        if alert_id(rule.name, e.event_id) not in fired
    ]


def _stored(warehouse: Warehouse, ids: list[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(ids), 10_000):
        rows = warehouse.query(
            f"SELECT DISTINCT toString(event_id) FROM {_STORE} WHERE event_id IN {{ids:Array(UUID)}}",
            {"ids": ids[i : i + 10_000]},
        )
        found.update(r[0] for r in rows)
    return found
