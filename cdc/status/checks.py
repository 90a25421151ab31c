"""Warnings on a status snapshot: what is wrong, how much, and what to do. Pure, stdlib only."""

from __future__ import annotations

from dataclasses import dataclass

from cdc.status.model import SourceStatus, StatusSnapshot

GIB = 1024**3


@dataclass(frozen=True)
class Thresholds:
    """When a healthy-looking number becomes a warning. `None` turns a check off."""

    max_retained_wal_bytes: int | None = GIB
    max_freshness_s: float | None = 300.0
    max_lag_messages: int | None = None
    max_report_lag_s: float | None = 600.0


def format_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def format_seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    minutes, seconds = divmod(int(s), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours < 48 else f"{hours // 24}d{hours % 24:02d}h"


def warnings_for(snapshot: StatusSnapshot, thresholds: Thresholds | None = None) -> list[str]:
    """Every warning the snapshot deserves, per source first, then bridge-wide; each says what to do."""
    limits = thresholds or Thresholds()
    found: list[str] = []
    for source in snapshot.sources:
        found.extend(_slot_warnings(source, limits))
        found.extend(_flow_warnings(source, limits))
        found.extend(_attention_warnings(source, snapshot.state_dir))
    for r in snapshot.reports or ():
        if limits.max_report_lag_s is not None and r.lag_s > limits.max_report_lag_s:
            found.append(
                f"report {r.name}: {r.pending_events:,} stored event(s) waited {format_seconds(r.lag_s)} for a build: "
                "is the Dagster daemon running (`cdc ui`)? Its runs show why a build failed or waits"
            )
    attributed = sum(s.dead_letters or 0 for s in snapshot.sources)
    if snapshot.dead_letters and snapshot.dead_letters > attributed:
        found.append(
            f"{snapshot.dead_letters:,} dead letter(s) waiting in cdc.dead_letters: see `cdc dlq list`, "
            "fix the cause, then `cdc dlq replay`"
        )
    return found


def _slot_warnings(source: SourceStatus, limits: Thresholds) -> list[str]:
    where = f"source {source.name}: replication slot {source.slot}"
    found: list[str] = []
    if source.slot_active is False:
        found.append(
            f"{where} is inactive: nothing is reading the WAL, so PostgreSQL keeps it; check that "
            "Debezium runs (the bridge's log) or restart the bridge"
        )
    retained = source.retained_wal_bytes
    limit = limits.max_retained_wal_bytes
    if retained is not None and limit is not None and retained > limit:
        found.append(
            f"{where} retains {format_bytes(retained)} of WAL (threshold {format_bytes(limit)}): "
            "restart the bridge so it catches up, or, if this bridge is gone for good, drop the slot "
            f"with SELECT pg_drop_replication_slot('{source.slot}') before the disk fills"
        )
    return found


def _flow_warnings(source: SourceStatus, limits: Thresholds) -> list[str]:
    found: list[str] = []
    lag, fresh, limit = source.lag_messages, source.freshness_s, limits.max_freshness_s
    if lag > 0 and fresh is not None and limit is not None and fresh > limit:
        found.append(
            f"source {source.name}: the newest applied change is {format_seconds(fresh)} old with "
            f"{lag:,} message(s) waiting (threshold {format_seconds(limit)}): the consumers are stuck "
            "or too slow; see the bridge's log for ClickHouse errors or retries"
        )
    if limits.max_lag_messages is not None and lag > limits.max_lag_messages:
        found.append(
            f"source {source.name}: consumer lag is {lag:,} message(s) (threshold "
            f"{limits.max_lag_messages:,}): ClickHouse is not keeping up; see the bridge's log"
        )
    return found


# the mirror follows these by itself: listed in the status, no warning
HANDLED_SCHEMA_CHANGES = frozenset({"added", "type_widened", "now_nullable"})


def _attention_warnings(source: SourceStatus, state_dir: str) -> list[str]:
    found: list[str] = []
    if source.dead_letters:
        found.append(
            f"source {source.name}: {source.dead_letters:,} dead letter(s) waiting: see `cdc dlq list`, "
            "fix the cause (a translator or the data), then `cdc dlq replay`"
        )
    needs_look = [n for n in source.schema_notices if n.kind not in HANDLED_SCHEMA_CHANGES]
    if needs_look:
        tables = sorted({n.table for n in needs_look})
        found.append(
            f"source {source.name}: {len(needs_look)} schema change(s) need a look "
            f"({', '.join(tables)}), listed under the source: update the translators and reports "
            "that use those columns"
        )
    for error in source.errors:
        found.append(f"source {source.name}: {error} (details in {state_dir}/logs/cdc.log)")
    return found
