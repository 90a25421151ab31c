"""`cdc events ...` and `cdc dlq ...`: thin commands over the registry, the event store and dead letters."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from cdc.consume.dlq import DeadLetter, list_dead_letters, replay
from cdc.domain import catalog as cat
from cdc.domain import compat
from cdc.domain.events import DomainEvent, EventRegistry, Payload
from cdc.errors import ConfigError
from cdc.events.store import ClickHouseEventStore
from cdc.ports import Publisher, Warehouse


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def catalog(registry: EventRegistry, fmt: str) -> int:
    doc = cat.build_catalog(registry)
    out(json.dumps(doc, indent=2, sort_keys=True) if fmt == "json" else cat.render_markdown(doc))
    return 0


def check(registry: EventRegistry, snapshot_path: Path, update: bool) -> int:
    """Exit 0 when the definitions are compatible with the snapshot (or after ``--update``), else 1."""
    current = cat.build_catalog(registry)
    snapshot = compat.load_snapshot(snapshot_path)
    findings = compat.check(current, snapshot) if snapshot is not None else []
    errors = [f for f in findings if f.severity == "error"]
    for f in findings:
        out(f"{f.severity}: {f.message}")
    if update:
        if errors:
            out(f"not updating {snapshot_path}: fix the errors above first")
            return 1
        compat.write_snapshot(snapshot_path, compat.merge_snapshot(current, snapshot))
        out(f"recorded {len(current['events'])} event types in {snapshot_path}")
        return 0
    if snapshot is None:
        out(f"no catalog snapshot at {snapshot_path}; record one with `cdc events check --update`")
        return 1
    if errors:
        out(f"{len(errors)} incompatible change(s) against {snapshot_path}")
        return 1
    out(f"event definitions match {snapshot_path}" if not findings else "compatible; record with --update")
    return 0


def parse_time(text: str) -> int:
    """ISO 8601 (UTC unless an offset is given) -> epoch milliseconds."""
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--as-of {text!r} is not an ISO 8601 time such as 2026-11-27T18:00:00Z") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def fold(registry: EventRegistry, aggregate_type: str, events: list[DomainEvent]) -> Payload:
    """The aggregate's state: its reducer if one is declared, else the payloads merged in order."""
    reducer = registry.reducers.get(aggregate_type)
    state: Payload = {}
    for e in events:
        if reducer is not None:
            state = reducer(state, e)
        elif e.event_type.endswith("Deleted"):
            state = {**state, "deleted": True}
        elif e.event_type.endswith("Updated") and isinstance(e.payload.get("changed"), dict):
            state = {**state, **e.payload["changed"]}
        else:
            state = {**state, **e.payload}
    return state


def replay_aggregate(
    warehouse: Warehouse, registry: EventRegistry, aggregate_type: str, aggregate_id: str, as_of: str | None, fmt: str
) -> int:
    stored = ClickHouseEventStore(warehouse).history(aggregate_type, aggregate_id, parse_time(as_of) if as_of else None)
    if not stored:
        out(f"no events for {aggregate_type} {aggregate_id}" + (f" up to {as_of}" if as_of else ""))
        return 1
    current = [registry.upcast(e) for e in stored]
    state = fold(registry, aggregate_type, current)
    if fmt == "json":
        history = [_event_doc(s, c) for s, c in zip(stored, current, strict=True)]
        out(
            json.dumps(
                {"aggregate_type": aggregate_type, "aggregate_id": aggregate_id, "history": history, "state": state},
                indent=2,
                default=str,
            )
        )
        return 0
    upcast = sum(1 for s, c in zip(stored, current, strict=True) if s.version != c.version)
    out(f"{aggregate_type} {aggregate_id}: {len(current)} events" + (f", {upcast} upcast on read" if upcast else ""))
    for s, c in zip(stored, current, strict=True):
        version = f"v{c.version}" + (f" (stored v{s.version})" if s.version != c.version else "")
        out(
            f"  {c.occurred_at:%Y-%m-%d %H:%M:%S.%f}"[:-3]
            + f"  {c.event_type} {version}  "
            + json.dumps(c.payload, sort_keys=True, default=str)
        )
    out("state:")
    out(json.dumps(state, indent=2, sort_keys=True, default=str))
    return 0


def _event_doc(stored: DomainEvent, current: DomainEvent) -> dict[str, Any]:
    return {
        "event_id": current.event_id,
        "event_type": current.event_type,
        "version": current.version,
        "stored_version": stored.version,
        "occurred_at": current.occurred_at.isoformat(),
        "lsn": current.lsn,
        "txid": current.txid,
        "correlation_id": current.correlation_id,
        "payload": current.payload,
    }


def _preview(data: bytes | None, width: int = 60) -> str:
    if data is None:
        return "null"
    text = data.decode("utf-8", "backslashreplace")
    return text if len(text) <= width else text[: width - 1] + "…"


def dlq_list(warehouse: Warehouse, include_replayed: bool, limit: int, fmt: str) -> int:
    letters = list_dead_letters(warehouse, include_replayed, limit)
    if fmt == "json":
        for d in letters:
            out(
                json.dumps(
                    {
                        "origin": d.origin,
                        "topic": d.topic,
                        "partition": d.partition,
                        "offset": d.offset,
                        "stages": d.stages,
                        "error": d.error,
                        "stack": d.stack,
                        "key": _preview(d.key, 10**9),
                        "value": _preview(d.value, 10**9),
                        "failed_at": d.failed_at.isoformat(),
                        "replayed_at": d.replayed_at.isoformat() if d.replayed_at else None,
                    }
                )
            )
        return 0
    if not letters:
        out("no dead letters" + ("" if include_replayed else " waiting for replay"))
        return 0
    for d in letters:
        state = f"replayed {d.replayed_at:%H:%M:%S}" if d.replayed_at else "pending"
        out(f"{d.failed_at:%Y-%m-%d %H:%M:%S}  {d.origin}  [{', '.join(d.stages)}] {state}")
        out(f"    error: {d.error}")
        if d.stack:
            out(f"    at:    {d.stack}")
        out(f"    key:   {_preview(d.key)}")
        out(f"    value: {_preview(d.value)}")
    return 0


def dlq_replay(warehouse: Warehouse, publisher: Publisher, topic: str | None, limit: int) -> int:
    letters: list[DeadLetter] = [
        d for d in list_dead_letters(warehouse, False, limit) if topic is None or d.topic == topic
    ]
    count = replay(warehouse, publisher, letters)
    for d in letters:
        out(f"republished {d.origin} [{', '.join(d.stages)}]")
    out(f"{count} dead letter(s) sent back through the bridge; any that fail again reappear in `cdc dlq list`")
    return 0
