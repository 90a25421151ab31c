"""Gating: a report is not built while a check it depends on has failed.

A projection depends on the *blocking* checks of the mirrors it reads (its ``tables``, and the tables
its event types are derived from) and of the event store. Those checks run on their schedule (and on
demand in the UI); a build first reads each one's latest result from the Dagster instance and, if one
failed with severity ERROR, fails saying which check, when and why — so a mirror that drifted from its
source stops the reports built on it until a passing check (e.g. after ``cdc resync``) lifts the stop.
A check that has never run does not hold a build back: not known to be wrong is not wrong.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dagster import AssetCheckEvaluation, AssetCheckKey, AssetCheckSeverity, AssetKey, DagsterInstance, Failure
from dagster._core.storage.asset_check_execution_record import (
    COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES,
    AssetCheckExecutionRecord,
)

from cdc.domain.events import EventRegistry
from cdc.errors import ConfigError
from cdc.translate import generic_names
from dagster_project.tables import CapturedTable, load_registry
from pipelines.projection import Projection

MIRROR_BLOCKING = ("row_count_matches_postgres", "content_parity", "unique_keys", "no_toast_placeholders")
EVENTS_BLOCKING = ("upcast_current",)
_GENERIC = ("Created", "Updated", "Deleted", "Truncated")


@dataclass(frozen=True)
class Gate:
    """The blocking checks each projection (by name) depends on."""

    upstream: Mapping[str, tuple[AssetCheckKey, ...]] = field(default_factory=dict)

    def failures(self, instance: DagsterInstance, p: Projection) -> list[str]:
        """Why ``p`` must not be built now: one line per failed blocking check, none when it may."""
        found = []
        for key in self.upstream.get(p.name, ()):
            record = _latest_completed(instance, key)
            evaluation = record.evaluation if record is not None else None
            if not isinstance(evaluation, AssetCheckEvaluation):
                continue
            if evaluation.passed or evaluation.severity != AssetCheckSeverity.ERROR:
                continue
            assert record is not None
            at = dt.datetime.fromtimestamp(record.create_timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            why = evaluation.description or "no description"
            found.append(f"check {key.asset_key.to_user_string()}:{key.name} failed at {at}: {why}")
        return found

    def enforce(self, instance: DagsterInstance, p: Projection) -> None:
        failed = self.failures(instance, p)
        if failed:
            raise Failure(
                description=f"reports/{p.name} is not built while a check it depends on fails: "
                + "; ".join(failed)
                + ". Fix the cause (e.g. `cdc resync TABLE` for a drifted mirror), then run the checks again",
                allow_retries=False,
            )


def _latest_completed(instance: DagsterInstance, key: AssetCheckKey) -> AssetCheckExecutionRecord | None:
    """The newest evaluation that ended (a check planned or running has none yet: the one before counts)."""
    records = instance.event_log_storage.get_asset_check_execution_history(
        key, limit=1, status=COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES
    )
    return records[0] if records else None


def build_gate(projections: Sequence[Projection], tables: Sequence[CapturedTable], events_key: AssetKey) -> Gate:
    """Each projection's blocking checks: those of the mirrors it reads and of the event store."""
    feeds = _event_feeds(tables)
    by_view = {f"{t.source}.{t.name}": t for t in tables}
    events_checks = tuple(AssetCheckKey(events_key, name) for name in EVENTS_BLOCKING)
    upstream = {}
    for p in projections:
        read = [by_view[v] for v in p.tables if v in by_view]
        sourced = [t for name in p.event_types for t in feeds.get(name, ())]
        if p.event_types and not sourced:  # event types whose tables are unknown here: every table with events
            sourced = [t for t in tables if t.events]
        mirrors = list(dict.fromkeys(read + sourced))
        checks = [
            AssetCheckKey(AssetKey(["clickhouse", t.source, t.name]), n) for t in mirrors for n in MIRROR_BLOCKING
        ]
        upstream[p.name] = (*checks, *events_checks)
    return Gate(upstream)


def _event_feeds(tables: Sequence[CapturedTable]) -> dict[str, list[CapturedTable]]:
    """Event type -> the captured tables its events come from: declared ones from the translator
    modules the bridge recorded, generic ``<Table>Created`` ones from the table's name."""
    feeds: dict[str, list[CapturedTable]] = {}
    by_table = {(t.source, t.schema, t.table): t for t in tables}
    for t in tables:
        if not t.events:
            continue
        stem = generic_names(t.schema, t.table)[1]
        for suffix in _GENERIC:
            feeds.setdefault(stem + suffix, []).append(t)
        registry = _registry(t.translators)
        for name in registry.names():
            for spec in registry.versions(name):
                for qualified in spec.tables:
                    schema, _, table = qualified.rpartition(".")
                    found = by_table.get((t.source, schema or "public", table))
                    if found is not None and found not in feeds.setdefault(name, []):
                        feeds[name].append(found)
    return feeds


def _registry(modules: tuple[str, ...]) -> EventRegistry:
    """The translator modules' registry; an empty one when they cannot be loaded here (lineage only)."""
    try:
        return load_registry(modules)
    except ConfigError:
        return EventRegistry()
