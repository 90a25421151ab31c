"""`cdc events ...` (catalog, check, replay, upcast) and the dispatch of `cdc events`/`cdc dlq` to their parts."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from cdc.domain import catalog as cat
from cdc.domain import compat
from cdc.domain.events import DomainEvent, EventRegistry, Payload
from cdc.errors import ConfigError
from cdc.events.store import ClickHouseEventStore
from cdc.events.upcast import UpcastResult, upcast_stored
from cdc.ports import Warehouse
from cdc.settings import Settings, split_list


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


def upcast(warehouse: Warehouse, registry: EventRegistry, dry_run: bool, batch_rows: int) -> int:
    """Exit 0 when every event behind was upcast (or would be, with ``dry_run``), 1 when an upcaster failed."""
    if batch_rows < 1:
        raise ConfigError(f"--batch-rows must be at least 1, got {batch_rows}")

    def progress(result: UpcastResult) -> None:
        out(f"  {result.done}/{result.behind} events" + (f", {result.failed.total()} failed" if result.failed else ""))

    result = upcast_stored(warehouse, registry, batch_rows, dry_run, progress)
    if result.behind:
        out(f"{result.behind} stored event(s) were behind the latest versions of {', '.join(sorted(result.targets))}")
    for line in result.summary():
        out(line)
    return 1 if result.failed else 0


def dispatch(args: argparse.Namespace, settings: Settings) -> int:
    """Ask the composition root for the registry, warehouse and broker each subcommand needs."""
    from cdc import bootstrap
    from cdc.cli import dlq

    modules = split_list(getattr(args, "translators", None))
    if args.command == "events" and args.events_command == "catalog":
        return catalog(bootstrap.registry(settings, modules), args.format)
    if args.command == "events" and args.events_command == "check":
        return check(bootstrap.registry(settings, modules), Path(args.snapshot), args.update)
    broker = bootstrap.running_broker(settings) if args.command == "dlq" and args.dlq_command == "replay" else ""
    warehouse = bootstrap.warehouse(settings)
    try:
        if args.command == "events" and args.events_command == "upcast":
            return upcast(warehouse, bootstrap.registry(settings, modules), args.dry_run, args.batch_rows)
        if args.command == "events":
            registry = bootstrap.registry(settings, modules, required=False)
            return replay_aggregate(
                warehouse, registry, args.aggregate_type, args.aggregate_id, args.as_of, args.format
            )
        if args.dlq_command == "list":
            return dlq.dlq_list(warehouse, args.all, args.limit, args.format)
        publisher = bootstrap.publisher(broker, "cdc-dlq-replay")
        try:
            return dlq.dlq_replay(warehouse, publisher, args.topic, args.limit)
        finally:
            publisher.close()
    finally:
        warehouse.close()
