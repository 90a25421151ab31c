"""Re-upcast the event store when a new event version ships: ``upcast_stored``.

Each stored row keeps the payload in the latest shape its writer knew (``latest_version``,
``payload_latest``; see :mod:`cdc.events.store`). When the registry learns a newer version, the
rows behind it are read in batches and re-inserted with the payload upcast again *from the stored
payload* (which stays as it was). The table is a ReplacingMergeTree without a version column: of
two rows with the same key the one inserted last wins, in merges and in ``FINAL`` reads alike.

A re-inserted row gets a new ``stored_at`` (the column's default, now), so the next incremental
projection build, which picks the scopes to recompute by ``stored_at``, recomputes every scope a
rewritten event belongs to.

Idempotent: a second run finds nothing behind and writes nothing; a run stopped half-way leaves
rows either rewritten or still behind, and the next run finishes. An event whose upcaster raises
is counted and named in the result and stays behind; the others are rewritten.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cdc.domain.events import EventRegistry
from cdc.events.store import (
    COLUMNS,
    DATABASE,
    LATEST_COLUMNS,
    SELECT,
    TABLE,
    ClickHouseEventStore,
    LatestShapes,
    latest_row,
    stored_event,
)
from cdc.ports import Warehouse

BATCH_ROWS = 10_000
MAX_NAMED = 100  # failures named in the result; all are counted
_BEHIND = (
    " WHERE event_type IN {types:Array(String)}"
    " AND latest_version < transform(event_type, {types:Array(String)}, {versions:Array(UInt16)}, toUInt16(0))"
)
_KEY = "(aggregate_type, aggregate_id, lsn, sequence, event_id)"
_AFTER = f" AND {_KEY} > ({{at:String}}, {{ai:String}}, {{lsn:UInt64}}, {{seq:UInt16}}, {{id:UUID}})"
_TABLE = f"{DATABASE}.{TABLE}"


@dataclass(frozen=True, slots=True)
class UpcastFailure:
    """A stored event its upcasters could not lift; it stays in the shape it had."""

    event_id: str
    event_type: str
    version: int
    error: str


@dataclass
class UpcastResult:
    """What one run did (or, with ``dry_run``, would do). Counts are keyed by (event type, stored version)."""

    targets: dict[str, int]  # event type -> the latest version the registry knows (types with more than one)
    dry_run: bool = False
    behind: int = 0  # events found behind when the run started
    rewritten: Counter[tuple[str, int]] = field(default_factory=Counter)
    failed: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: list[UpcastFailure] = field(default_factory=list)  # the first MAX_NAMED

    @property
    def done(self) -> int:
        return self.rewritten.total() + self.failed.total()

    def summary(self) -> list[str]:
        """Lines for a person: per type and version what was (or would be) rewritten, and what failed."""
        verb = "would upcast" if self.dry_run else "upcast"
        lines = [
            f"{verb} {n} {name} v{version} -> v{self.targets[name]}"
            for (name, version), n in sorted(self.rewritten.items())
        ]
        lines += [
            f"FAILED {n} {name} v{version}: the upcaster raised (they stay v{version})"
            for (name, version), n in sorted(self.failed.items())
        ]
        lines += [f"  {f.event_type} v{f.version} {f.event_id}: {f.error}" for f in self.failures]
        if self.failed.total() > len(self.failures):
            lines.append(f"  ... and {self.failed.total() - len(self.failures)} more")
        return lines or ["every stored event is in its type's latest shape"]


def upcast_stored(
    warehouse: Warehouse,
    registry: EventRegistry,
    batch_rows: int = BATCH_ROWS,
    dry_run: bool = False,
    progress: Callable[[UpcastResult], None] | None = None,
) -> UpcastResult:
    """Store the latest shape of every event stored below its type's latest version in ``registry``.

    Reads ``batch_rows`` events at a time (in sort-key order) and re-inserts each batch at once;
    ``progress`` is called after every batch. ``dry_run`` upcasts and counts but writes nothing.
    Rows a newer registry wrote (``latest_version`` above this one's) are left alone.
    """
    ClickHouseEventStore(warehouse)  # the store, migrated to the latest-shape columns
    targets = _targets(registry)
    result = UpcastResult(targets, dry_run)
    if not targets:
        return result
    params = _params(targets)
    result.behind = int(warehouse.query(f"SELECT count() FROM {_TABLE} FINAL{_BEHIND}", params)[0][0])
    shapes = LatestShapes(registry)
    page = f"{SELECT}{_BEHIND}"
    while result.behind:
        rows = warehouse.query(f"{page} ORDER BY {_KEY} LIMIT {int(batch_rows)}", params)
        if not rows:
            break
        lifted = [row for row in (_lift(r, shapes, result) for r in rows) if row is not None]
        if lifted and not dry_run:
            warehouse.insert(DATABASE, TABLE, (*COLUMNS, *LATEST_COLUMNS), lifted)
        if progress is not None:
            progress(result)
        if len(rows) < batch_rows:
            break
        last = rows[-1]
        params.update(at=last[3], ai=last[4], lsn=last[9], seq=last[11], id=uuid.UUID(last[0]))
        page = f"{SELECT}{_BEHIND}{_AFTER}"
    return result


def any_behind(warehouse: Warehouse, registry: EventRegistry) -> bool:
    """Cheap (no FINAL): may a stored event be behind ``registry``? False means surely not."""
    targets = _targets(registry)
    if not targets:
        return False
    found = warehouse.query(f"SELECT count() FROM (SELECT 1 FROM {_TABLE}{_BEHIND} LIMIT 1)", _params(targets))
    return bool(found[0][0])


def behind_counts(warehouse: Warehouse, registry: EventRegistry) -> dict[tuple[str, int], int]:
    """Events stored behind ``registry``'s latest version of their type, by (type, stored latest version)."""
    targets = _targets(registry)
    if not targets:
        return {}
    rows = warehouse.query(
        f"SELECT event_type, latest_version, count() FROM {_TABLE} FINAL{_BEHIND}"
        " GROUP BY event_type, latest_version ORDER BY event_type, latest_version",
        _params(targets),
    )
    return {(str(name), int(version)): int(n) for name, version, n in rows}


def _targets(registry: EventRegistry) -> dict[str, int]:
    """Event type -> its latest version, for the types an event can be behind (declared in several versions)."""
    return {s.name: s.version for s in map(registry.latest, registry.names()) if s is not None and s.version > 1}


def _params(targets: dict[str, int]) -> dict[str, Any]:
    return {"types": list(targets), "versions": list(targets.values())}


def _lift(row: tuple[Any, ...], shapes: LatestShapes, result: UpcastResult) -> list[Any] | None:
    """The row to re-insert (the stored payload text kept byte for byte), or None when the upcaster failed."""
    event = stored_event(row)
    try:
        latest = shapes.of(event)
    except Exception as e:  # the user's upcaster, on one stored payload: count it, name it, go on
        result.failed[(event.event_type, event.version)] += 1
        if len(result.failures) < MAX_NAMED:
            result.failures.append(
                UpcastFailure(event.event_id, event.event_type, event.version, f"{type(e).__name__}: {e}")
            )
        return None
    result.rewritten[(event.event_type, event.version)] += 1
    return latest_row(event, row[13], latest)
