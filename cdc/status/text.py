"""`cdc status` as a person reads it: a block per source, a table of topics, warnings last."""

from __future__ import annotations

from cdc.status.checks import format_bytes, format_seconds
from cdc.status.model import SourceStatus, StatusSnapshot, TopicLag

UNKNOWN = "?"


def render_text(snapshot: StatusSnapshot) -> str:
    """A multi-line report ending in a newline; unknown numbers show as `?`."""
    lines = [
        f"cdc bridge on {snapshot.state_dir}: up {format_seconds(snapshot.uptime_s)} (as of {snapshot.generated_at})",
        f"  ClickHouse {snapshot.clickhouse_url}   Kafka {snapshot.kafka_bootstrap}",
    ]
    if not snapshot.sources:
        lines += ["", "no source is being captured"]
    for source in snapshot.sources:
        lines += ["", *_source_block(source)]
    lines += ["", *_reports_block(snapshot)]
    lines += ["", f"dead letters waiting: {_count(snapshot.dead_letters)}"]
    if snapshot.warnings:
        lines += ["", f"warnings ({len(snapshot.warnings)}):", *(f"  ! {w}" for w in snapshot.warnings)]
    else:
        lines += ["", "no warnings"]
    return "\n".join(lines) + "\n"


def _reports_block(snapshot: StatusSnapshot) -> list[str]:
    if snapshot.reports is None:
        return ["reports: ? (cannot read their watermarks)"]
    if not snapshot.reports:
        return ["reports: none built yet (Dagster builds them: `cdc ui`)"]
    width = max(len(r.name) for r in snapshot.reports)
    lines = [f"reports (against the event store)   {'report':<{width}}  {'waiting':>9}  {'lag':>8}  built up to"]
    for r in snapshot.reports:
        lag = format_seconds(r.lag_s) if r.pending_events else "current"
        lines.append(f"{'':<36}{r.name:<{width}}  {r.pending_events:>9,}  {lag:>8}  {r.watermark}")
    return lines


def _source_block(source: SourceStatus) -> list[str]:
    fresh = "- (nothing applied yet)" if source.freshness_s is None else f"{format_seconds(source.freshness_s)} ago"
    lines = [
        f"source {source.name}  {source.dsn}",
        f"  slot           {source.slot}: {_slot_state(source)}",
        f"  captured       {source.captured:,}   applied {source.applied:,}   "
        f"rows/s (1 min) {source.rows_per_s_1m:,.1f}",
        f"  last change    {fresh}   lag {source.lag_messages:,} message(s)",
        f"  events stored  {_count(source.events_stored)}   dead letters {_count(source.dead_letters)}"
        + (f"   authored {source.events_authored:,}" if source.events_authored else "")
        + (
            f"   deadlines open {source.deadlines_open:,}, passed {source.deadline_alerts or 0:,}"
            if source.deadlines_open or source.deadline_alerts
            else ""
        ),
        f"  in flight      {_count(source.in_flight)} captured, not yet durable in ClickHouse"
        + ("" if source.broker_truncations is None else f"   broker emptied {source.broker_truncations:,} time(s)"),
    ]
    for p in source.initial_load:
        left = "" if p.eta_s is None else f", {format_seconds(p.eta_s)} left"
        state = "done" if p.chunks_done == p.chunks else f"{p.rows_per_s:,.0f} rows/s{left}"
        done = f"chunk {p.chunks_done}/{p.chunks}"
        events = (
            ""
            if p.events_chunks_done is None
            else f"; events of existing rows: chunk {p.events_chunks_done}/{p.chunks}"
        )
        skipped = f" ({p.events_skipped_rows:,} rows skipped)" if p.events_skipped_rows else ""
        lines.append(
            f"  initial load   {p.table}: {p.copied:,} of ~{p.estimate:,} rows, {done}, {state}{events}{skipped}"
        )
    if source.tables:
        lines += ["", *_names_table(source)]
    if source.topics:
        lines += ["", *_topic_table(source.topics)]
    if source.schema_notices:
        lines += ["", "  schema notices:"]
        lines += [f"    {n.table}.{n.column}: {n.kind}: {n.detail}" for n in source.schema_notices]
    if source.errors:
        lines += ["", "  errors:", *(f"    {e}" for e in source.errors)]
    return lines


def _slot_state(source: SourceStatus) -> str:
    active = {True: "active", False: "INACTIVE", None: "state unknown"}[source.slot_active]
    retained = UNKNOWN if source.retained_wal_bytes is None else format_bytes(source.retained_wal_bytes)
    return f"{active}, retains {retained} of WAL"


NAMES_SHOWN = 30  # more tables than this: `cdc status --json` lists them


def _names_table(source: SourceStatus) -> list[str]:
    if len(source.tables) > NAMES_SHOWN:
        return [
            f"  {len(source.tables)} tables captured (cdc status --json lists each with its topic and ClickHouse name)"
        ]
    rows = [(t.table, t.topic, t.clickhouse) for t in source.tables]
    header = ("table", "topic", "ClickHouse")
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(3)]
    return [
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in (header, *rows)
    ]


def _topic_table(topics: tuple[TopicLag, ...]) -> list[str]:
    header = ("topic", "committed", "end", "lag")
    rows = [(t.topic, f"{t.committed:,}", f"{t.end:,}", f"{t.lag:,}") for t in topics]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(4)]

    def line(row: tuple[str, str, str, str]) -> str:
        first = row[0].ljust(widths[0])
        return "  " + "  ".join([first, *(cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True))])

    return [line(header), *(line(row) for row in rows)]


def _count(value: int | None) -> str:
    return UNKNOWN if value is None else f"{value:,}"
