"""The status snapshot: what `cdc status` prints and `/status` serves. Pure, stdlib only.

A snapshot is a tree of frozen dataclasses; `to_dict()` gives the JSON document (schema version
`SCHEMA_VERSION`) and `from_dict()` reads one back, rejecting anything malformed with a
`ValueError` that names the field.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

SCHEMA_VERSION = 1


def utc_now_iso() -> str:
    """Now as ISO 8601 UTC with a `Z`, to the millisecond: the snapshot's `generated_at`."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class TopicLag:
    """A change topic's consumer position: `lag` = `end` (high watermark) - `committed`, never negative."""

    topic: str
    lag: int
    committed: int
    end: int

    def to_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "lag": self.lag, "committed": self.committed, "end": self.end}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TopicLag:
        return cls(_str(data, "topic"), _int(data, "lag"), _int(data, "committed"), _int(data, "end"))


@dataclass(frozen=True)
class TableNames:
    """Where one captured table goes: its topic and its ClickHouse view (README, "Names")."""

    table: str  # schema.table as PostgreSQL names it (parts with dots or quotes double-quoted)
    topic: str
    clickhouse: str  # database.name

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "topic": self.topic, "clickhouse": self.clickhouse}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TableNames:
        return cls(_str(data, "table"), _str(data, "topic"), _str(data, "clickhouse"))


@dataclass(frozen=True)
class LoadProgress:
    """One table's initial load by the copy path: rows copied of about ``estimate``, pace, time left."""

    table: str
    copied: int
    estimate: int
    chunks_done: int
    chunks: int
    rows_per_s: float
    eta_s: float | None
    events_chunks_done: int | None = None  # chunks whose snapshot events are stored (None: none wanted)
    events_skipped_rows: int = 0  # copied rows whose snapshot events could not be exact (cdc.mirror.snapshot_events)

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "copied": self.copied,
            "estimate": self.estimate,
            "chunks_done": self.chunks_done,
            "chunks": self.chunks,
            "rows_per_s": self.rows_per_s,
            "eta_s": self.eta_s,
            "events_chunks_done": self.events_chunks_done,
            "events_skipped_rows": self.events_skipped_rows,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoadProgress:
        return cls(
            _str(data, "table"),
            _int(data, "copied"),
            _int(data, "estimate"),
            _int(data, "chunks_done"),
            _int(data, "chunks"),
            _float(data, "rows_per_s"),
            _opt_float(data, "eta_s"),
            None if data.get("events_chunks_done") is None else _int(data, "events_chunks_done"),
            _int(data, "events_skipped_rows") if "events_skipped_rows" in data else 0,
        )


@dataclass(frozen=True)
class SchemaNotice:
    """A source schema change the bridge noticed (e.g. a column added or dropped) and wants seen."""

    table: str
    kind: str
    column: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "kind": self.kind, "column": self.column, "detail": self.detail}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SchemaNotice:
        return cls(_str(data, "table"), _str(data, "kind"), _str(data, "column"), _str(data, "detail"))


@dataclass(frozen=True)
class SourceStatus:
    """One captured PostgreSQL database. `None` means unknown (e.g. the query for it failed).

    `dsn` must already be redacted. `freshness_s`: seconds since the newest applied change was
    captured (committed in PostgreSQL), `None` before any change was applied. `dead_letters`:
    dead letters waiting for a replay. `in_flight`: changes Debezium captured that are not yet
    durable in every lane (the replication slot still holds them). `broker_truncations`: times the
    embedded broker's topics were emptied after every lane stored them.
    """

    name: str
    dsn: str
    slot: str
    slot_active: bool | None = None
    retained_wal_bytes: int | None = None
    captured: int = 0
    applied: int = 0
    rows_per_s_1m: float = 0.0
    freshness_s: float | None = None
    events_stored: int | None = None
    events_authored: int | None = None
    deadline_alerts: int | None = None
    deadlines_open: int | None = None
    dead_letters: int | None = None
    topics: tuple[TopicLag, ...] = ()
    schema_notices: tuple[SchemaNotice, ...] = ()
    errors: tuple[str, ...] = ()
    in_flight: int | None = None
    broker_truncations: int | None = None
    tables: tuple[TableNames, ...] = ()
    initial_load: tuple[LoadProgress, ...] = ()

    @property
    def lag_messages(self) -> int:
        """Messages not yet applied, summed over the source's topics."""
        return sum(t.lag for t in self.topics)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dsn": self.dsn,
            "slot": self.slot,
            "slot_active": self.slot_active,
            "retained_wal_bytes": self.retained_wal_bytes,
            "captured": self.captured,
            "applied": self.applied,
            "rows_per_s_1m": self.rows_per_s_1m,
            "freshness_s": self.freshness_s,
            "lag_messages": self.lag_messages,
            "events_stored": self.events_stored,
            "events_authored": self.events_authored,
            "deadline_alerts": self.deadline_alerts,
            "deadlines_open": self.deadlines_open,
            "dead_letters": self.dead_letters,
            "topics": [t.to_dict() for t in self.topics],
            "schema_notices": [n.to_dict() for n in self.schema_notices],
            "errors": list(self.errors),
            "in_flight": self.in_flight,
            "broker_truncations": self.broker_truncations,
            "tables": [t.to_dict() for t in self.tables],
            "initial_load": [p.to_dict() for p in self.initial_load],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SourceStatus:
        """`lag_messages` is derived from `topics`, so a given value is not read."""
        active = data.get("slot_active")
        if active is not None and not isinstance(active, bool):
            raise ValueError(f"status field 'slot_active' must be true, false or null, not {active!r}")
        return cls(
            name=_str(data, "name"),
            dsn=_str(data, "dsn"),
            slot=_str(data, "slot"),
            slot_active=active,
            retained_wal_bytes=_opt_int(data, "retained_wal_bytes"),
            captured=_int(data, "captured"),
            applied=_int(data, "applied"),
            rows_per_s_1m=_float(data, "rows_per_s_1m"),
            freshness_s=_opt_float(data, "freshness_s"),
            events_stored=_opt_int(data, "events_stored"),
            events_authored=_opt_int(data, "events_authored") if "events_authored" in data else None,
            deadline_alerts=_opt_int(data, "deadline_alerts") if "deadline_alerts" in data else None,
            deadlines_open=_opt_int(data, "deadlines_open") if "deadlines_open" in data else None,
            dead_letters=_opt_int(data, "dead_letters"),
            topics=tuple(TopicLag.from_dict(t) for t in _list(data, "topics")),
            schema_notices=tuple(SchemaNotice.from_dict(n) for n in _list(data, "schema_notices")),
            errors=tuple(str(e) for e in _list(data, "errors")),
            in_flight=_opt_int(data, "in_flight") if "in_flight" in data else None,
            broker_truncations=_opt_int(data, "broker_truncations") if "broker_truncations" in data else None,
            tables=tuple(TableNames.from_dict(t) for t in _list(data, "tables")) if "tables" in data else (),
            initial_load=tuple(LoadProgress.from_dict(p) for p in _list(data, "initial_load"))
            if "initial_load" in data
            else (),
        )


@dataclass(frozen=True)
class ReportStatus:
    """One report (projection) against the event store: its watermark (the newest ``stored_at`` its last
    build saw), the events stored since, and the age of the oldest of them (0 when none waits)."""

    name: str
    watermark: str
    pending_events: int
    lag_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "watermark": self.watermark, "pending_events": self.pending_events,
                "lag_s": self.lag_s}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReportStatus:
        return cls(_str(data, "name"), _str(data, "watermark"), _int(data, "pending_events"), _float(data, "lag_s"))


@dataclass(frozen=True)
class StatusSnapshot:
    """The running bridge at one moment. `clickhouse_url` and `kafka_bootstrap` must hold no secret.

    `dead_letters`: bridge-wide dead letters waiting for a replay (`None` when unknown).
    `warnings`: what a person should act on, each saying what to do (see `cdc.status.checks`).
    """

    generated_at: str
    state_dir: str
    uptime_s: float
    clickhouse_url: str
    kafka_bootstrap: str
    sources: tuple[SourceStatus, ...] = ()
    dead_letters: int | None = None
    warnings: tuple[str, ...] = ()
    version: int = SCHEMA_VERSION
    reports: tuple[ReportStatus, ...] | None = ()  # None: unknown (the query failed)

    def with_warnings(self, warnings: Sequence[str]) -> StatusSnapshot:
        """A copy whose warnings are this one's followed by `warnings`, without repeats."""
        return replace(self, warnings=tuple(dict.fromkeys((*self.warnings, *warnings))))

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "generated_at": self.generated_at,
            "state_dir": self.state_dir,
            "uptime_s": self.uptime_s,
            "clickhouse_url": self.clickhouse_url,
            "kafka_bootstrap": self.kafka_bootstrap,
            "sources": [s.to_dict() for s in self.sources],
            "dead_letters": self.dead_letters,
            "warnings": list(self.warnings),
            "reports": None if self.reports is None else [r.to_dict() for r in self.reports],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StatusSnapshot:
        if not isinstance(data, Mapping):
            raise ValueError(f"a status snapshot is a JSON object, not {type(data).__name__}")
        version = data.get("version")
        if version != SCHEMA_VERSION:
            raise ValueError(
                f"status schema version {version!r} is not {SCHEMA_VERSION}: "
                "the bridge and this `cdc` are different releases"
            )
        return cls(
            generated_at=_str(data, "generated_at"),
            state_dir=_str(data, "state_dir"),
            uptime_s=_float(data, "uptime_s"),
            clickhouse_url=_str(data, "clickhouse_url"),
            kafka_bootstrap=_str(data, "kafka_bootstrap"),
            sources=tuple(SourceStatus.from_dict(s) for s in _list(data, "sources")),
            dead_letters=_opt_int(data, "dead_letters"),
            warnings=tuple(str(w) for w in _list(data, "warnings")),
            reports=_reports(data),
        )


def _reports(data: Mapping[str, Any]) -> tuple[ReportStatus, ...] | None:
    if "reports" not in data:
        return ()
    if data["reports"] is None:
        return None
    return tuple(ReportStatus.from_dict(r) for r in _list(data, "reports"))


def as_snapshot(value: StatusSnapshot | Mapping[str, Any]) -> StatusSnapshot:
    """Accept either form a snapshot provider returns."""
    return value if isinstance(value, StatusSnapshot) else StatusSnapshot.from_dict(value)


def _get(data: Mapping[str, Any], key: str) -> Any:
    if not isinstance(data, Mapping):
        raise ValueError(f"expected a JSON object holding {key!r}, got {type(data).__name__}")
    if key not in data:
        raise ValueError(f"status field {key!r} is missing")
    return data[key]


def _str(data: Mapping[str, Any], key: str) -> str:
    value = _get(data, key)
    if not isinstance(value, str):
        raise ValueError(f"status field {key!r} must be a string, not {value!r}")
    return value


def _int(data: Mapping[str, Any], key: str) -> int:
    value = _get(data, key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"status field {key!r} must be an integer, not {value!r}")
    return value


def _opt_int(data: Mapping[str, Any], key: str) -> int | None:
    return None if data.get(key) is None else _int(data, key)


def _float(data: Mapping[str, Any], key: str) -> float:
    value = _get(data, key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"status field {key!r} must be a number, not {value!r}")
    return float(value)


def _opt_float(data: Mapping[str, Any], key: str) -> float | None:
    return None if data.get(key) is None else _float(data, key)


def _list(data: Mapping[str, Any], key: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list | tuple):
        raise ValueError(f"status field {key!r} must be a list, not {value!r}")
    return list(value)
