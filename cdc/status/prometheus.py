"""A status snapshot in the Prometheus text exposition format 0.0.4. Pure, stdlib only.

Every family has HELP and TYPE lines; counters end in `_total`; unknown values (`None`) are left
out rather than reported as 0, so an alert on a missing series can tell "unknown" from "fine".
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from cdc import __version__
from cdc.status.model import SourceStatus, StatusSnapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = tuple[tuple[str, str], ...]


@dataclass
class _Family:
    name: str
    kind: str  # gauge | counter
    help: str
    samples: list[tuple[Labels, float]] = field(default_factory=list)

    def add(self, value: float | int | bool | None, **labels: str) -> None:
        if value is not None:
            self.samples.append((tuple(labels.items()), float(value)))


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def _families() -> dict[str, _Family]:
    spec = [
        ("up", "gauge", "1 while the bridge serves its status"),
        ("build_info", "gauge", "the bridge's version, as a label; always 1"),
        ("uptime_seconds", "gauge", "seconds since the bridge started"),
        ("slot_active", "gauge", "1 when the source's replication slot has a reader, else 0"),
        ("slot_retained_wal_bytes", "gauge", "bytes of WAL PostgreSQL keeps for the replication slot"),
        ("captured_total", "counter", "row changes Debezium captured since the bridge started"),
        ("applied_total", "counter", "change messages applied to ClickHouse since the bridge started"),
        ("rows_per_second", "gauge", "change messages applied per second over the last minute"),
        ("freshness_seconds", "gauge", "seconds since the newest applied change was captured"),
        ("consumer_lag_messages", "gauge", "messages in the topic not yet applied and committed"),
        ("committed_offset", "gauge", "the consumer group's committed offset in the topic"),
        ("end_offset", "gauge", "the topic's end offset (high watermark)"),
        ("events_stored_total", "counter", "domain events stored in ClickHouse"),
        ("events_authored_total", "counter", "events applications wrote themselves (outbox table, logical messages)"),
        ("deadline_alerts_total", "counter", "events deadline rules emitted (a deadline passed on source time)"),
        ("deadlines_open", "gauge", "deadlines started and not yet ended or passed"),
        ("in_flight_records", "gauge", "captured changes not yet durable in every lane (the slot still holds them)"),
        ("broker_truncations_total", "counter", "times the embedded broker's topics were emptied once durable"),
        ("initial_load_rows_copied", "gauge", "rows the copy path has loaded into the table's mirror"),
        ("initial_load_rows_estimated", "gauge", "rows the table held when its initial load was planned (estimate)"),
        ("initial_load_seconds_left", "gauge", "estimated seconds until the table's initial load ends"),
        (
            "initial_load_event_chunks_done",
            "gauge",
            "chunks of the table whose existing rows' domain events are stored",
        ),
        ("dead_letters", "gauge", "dead letters waiting for a replay"),
        ("schema_notices", "gauge", "source schema changes that need a look"),
        ("source_errors", "gauge", "errors the bridge reports for the source"),
        ("warnings", "gauge", "warnings `cdc status` shows"),
        ("report_lag_seconds", "gauge", "age of the oldest stored event the report has not built yet (0: none)"),
        ("report_pending_events", "gauge", "events stored after the report's watermark"),
        ("report_watermark_timestamp_seconds", "gauge", "the newest stored_at the report's last build had seen"),
    ]
    return {name: _Family(f"cdc_{name}", kind, text) for name, kind, text in spec}


def prometheus_text(snapshot: StatusSnapshot) -> str:
    """The snapshot as Prometheus metrics (families with no sample are left out)."""
    fam = _families()
    fam["up"].add(1)
    fam["build_info"].add(1, version=__version__)
    fam["uptime_seconds"].add(snapshot.uptime_s)
    for source in snapshot.sources:
        _add_source(fam, source)
    attributed = sum(s.dead_letters or 0 for s in snapshot.sources)
    if snapshot.dead_letters is not None and (not snapshot.sources or snapshot.dead_letters > attributed):
        fam["dead_letters"].add(snapshot.dead_letters - attributed, source="")  # not tied to a source
    fam["warnings"].add(len(snapshot.warnings))
    for r in snapshot.reports or ():
        fam["report_lag_seconds"].add(r.lag_s, report=r.name)
        fam["report_pending_events"].add(r.pending_events, report=r.name)
        fam["report_watermark_timestamp_seconds"].add(_epoch(r.watermark), report=r.name)
    return "".join(_render(f) for f in fam.values() if f.samples)


def _add_source(fam: dict[str, _Family], s: SourceStatus) -> None:
    src = s.name
    active = None if s.slot_active is None else int(s.slot_active)
    fam["slot_active"].add(active, source=src, slot=s.slot)
    fam["slot_retained_wal_bytes"].add(s.retained_wal_bytes, source=src, slot=s.slot)
    fam["captured_total"].add(s.captured, source=src)
    fam["applied_total"].add(s.applied, source=src)
    fam["rows_per_second"].add(s.rows_per_s_1m, source=src)
    fam["freshness_seconds"].add(s.freshness_s, source=src)
    for t in s.topics:
        fam["consumer_lag_messages"].add(t.lag, source=src, topic=t.topic)
        fam["committed_offset"].add(t.committed, source=src, topic=t.topic)
        fam["end_offset"].add(t.end, source=src, topic=t.topic)
    fam["events_stored_total"].add(s.events_stored, source=src)
    fam["events_authored_total"].add(s.events_authored, source=src)
    fam["deadline_alerts_total"].add(s.deadline_alerts, source=src)
    fam["deadlines_open"].add(s.deadlines_open, source=src)
    fam["in_flight_records"].add(s.in_flight, source=src)
    fam["broker_truncations_total"].add(s.broker_truncations, source=src)
    for p in s.initial_load:
        fam["initial_load_rows_copied"].add(p.copied, source=src, table=p.table)
        fam["initial_load_rows_estimated"].add(p.estimate, source=src, table=p.table)
        fam["initial_load_seconds_left"].add(p.eta_s, source=src, table=p.table)
        if p.events_chunks_done is not None:
            fam["initial_load_event_chunks_done"].add(p.events_chunks_done, source=src, table=p.table)
    fam["dead_letters"].add(s.dead_letters, source=src)
    fam["schema_notices"].add(len(s.schema_notices), source=src)
    fam["source_errors"].add(len(s.errors), source=src)


def _render(family: _Family) -> str:
    lines = [f"# HELP {family.name} {_escape_help(family.help)}", f"# TYPE {family.name} {family.kind}"]
    lines += [f"{family.name}{_labels(labels)} {format_value(value)}" for labels, value in family.samples]
    return "\n".join(lines) + "\n"


def _labels(labels: Iterable[tuple[str, str]]) -> str:
    parts = [f'{key}="{escape_label_value(value)}"' for key, value in labels]
    return "{" + ",".join(parts) + "}" if parts else ""


def _epoch(iso: str) -> float | None:
    try:
        return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
