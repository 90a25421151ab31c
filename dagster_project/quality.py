"""What the asset checks verify, as plain functions over the ports (no Dagster here).

Each returns a :class:`Verdict`: whether the property holds and the figures that show it.
A table the bridge has not created yet fails its checks with a message saying so, rather
than raising: "not mirrored" is a finding about the pipeline, not an error of the check.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cdc.adapters.postgres import PostgresSource
from cdc.domain.events import EventRegistry
from cdc.errors import ConfigError
from cdc.events.store import DATABASE as EVENTS_DATABASE
from cdc.events.store import TABLE as EVENTS_TABLE
from cdc.events.store import ClickHouseEventStore
from cdc.events.upcast import behind_counts
from cdc.mirror.table import quote
from cdc.ports import Warehouse
from cdc.translate.core import UNAVAILABLE
from dagster_project.tables import CapturedTable
from pipelines.freshness import report_lags
from pipelines.projection import literal

EVENTS = f"{EVENTS_DATABASE}.{EVENTS_TABLE}"
DEFAULT_FRESHNESS_SECONDS = 300.0
_TEXT_TYPE = re.compile(r"^(Array\()?(LowCardinality\()?(Nullable\()?String\)*$")
_SAMPLE = 5

Metadata = dict[str, str | int | float | bool]


@dataclass(frozen=True, slots=True)
class Verdict:
    passed: bool
    metadata: Metadata = field(default_factory=dict)
    description: str = ""
    settled: bool = True  # False: a failure that may be changes in flight (a warning, it stops nothing)


def freshness_limit() -> float:
    """Seconds the newest source commit seen may lie in the past (env ``CDC_FRESHNESS_SECONDS``)."""
    text = os.environ.get("CDC_FRESHNESS_SECONDS", "").strip()
    if not text:
        return DEFAULT_FRESHNESS_SECONDS
    try:
        limit = float(text)
    except ValueError:
        limit = -1.0
    if not limit > 0:
        raise ConfigError(f"CDC_FRESHNESS_SECONDS must be a positive number of seconds, not {text!r}")
    return limit


def exists(warehouse: Warehouse, database: str, table: str) -> bool:
    found = warehouse.query(
        "SELECT count() FROM system.tables WHERE database = {d:String} AND name = {t:String}",
        {"d": database, "t": table},
    )
    return bool(int(found[0][0]))


def _missing(t: CapturedTable) -> Verdict:
    return Verdict(
        False,
        {"view": f"{t.source}.{t.name}"},
        f"{t.source}.{t.name} does not exist: the bridge has not mirrored {t.ref.qualified} yet",
    )


def row_counts(warehouse: Warehouse, source: PostgresSource, t: CapturedTable, wait_s: float | None = None) -> Verdict:
    """The mirror holds as many current rows as the source table.

    A count is a moment's: under load the two sides differ by what is in flight. So the source is
    counted, its WAL position read, the mirror counted once the replication slot passed that position
    (every change up to it is then in ClickHouse; at most ``wait_s``), and the source counted again.
    Equal to either source count passes. A difference while the source's count moved, or before the
    bridge caught up, is *unsettled* (a warning: compare again); only a difference on a quiet table
    with the bridge caught up is a finding that holds reports back.
    """
    if not exists(warehouse, t.source, t.name):
        return _missing(t)
    count = f"SELECT count(*) FROM {t.postgres_table}"
    before = int(source.query(count)[0][0])
    caught_up = _wait_for_slot(source, t.slot, source.current_wal_lsn(), WAIT_S if wait_s is None else wait_s)
    ch = int(warehouse.query(f"SELECT count() FROM {t.view}")[0][0])
    after = int(source.query(count)[0][0])
    metadata: Metadata = {"postgres_rows": after, "clickhouse_rows": ch, "difference": ch - after}
    if ch in (before, after):
        return Verdict(True, {**metadata, "postgres_rows": ch, "difference": 0}, "row counts match")
    if before != after or not caught_up:
        why = "the table is changing" if before != after else "the bridge had not caught up"
        return Verdict(
            False,
            metadata,
            f"{t.ref.qualified}: PostgreSQL has {after} rows, the mirror {ch}, but {why}: compared again next run",
            settled=False,
        )
    return Verdict(False, metadata, f"{t.ref.qualified}: PostgreSQL has {after} rows, the mirror {ch}")


def _wait_for_slot(source: PostgresSource, slot: str, target: int, wait_s: float) -> bool:
    """Whether the slot passed ``target`` within ``wait_s`` (no slot recorded: assume it did)."""
    if not slot:
        return True
    deadline = time.monotonic() + wait_s
    while True:
        flushed = source.slot_flushed_lsn(slot)
        if flushed is not None and flushed >= target:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.3)


def source_lag(warehouse: Warehouse, source: PostgresSource, t: CapturedTable, limit_s: float) -> Verdict:
    """Every change the source committed more than ``limit_s`` ago is queryable in ClickHouse.

    Measured against the source's activity, not the table's: the check reads the source's WAL
    position, then waits (at most ``min(limit_s, WAIT_S)``) for the replication slot to pass it. The
    slot confirms only what every lane made durable, so passing it proves that this mirror (and the
    events) hold every change committed before the check began; an idle table is therefore fresh. When
    the slot does not get there, the lag is at least the wait, and the newest source commit applied to
    the source's mirrors tells how far behind they are.
    """
    if not t.slot:
        return Verdict(False, {"limit_seconds": limit_s}, f"no replication slot recorded for source {t.source}")
    key = (t.source, t.slot)
    cached = _LAGS.get(key)
    if cached is None or time.monotonic() - cached[0] > _LAG_CACHE_S:
        cached = (time.monotonic(), _measure_lag(warehouse, source, t, limit_s))
        _LAGS[key] = cached
    return cached[1]


WAIT_S = 20.0
_LAG_CACHE_S = 30.0  # the checks of one source's tables share one measurement
_LAGS: dict[tuple[str, str], tuple[float, Verdict]] = {}


def _measure_lag(warehouse: Warehouse, source: PostgresSource, t: CapturedTable, limit_s: float) -> Verdict:
    target = source.current_wal_lsn()
    began = time.monotonic()
    wait = min(limit_s, WAIT_S)
    while True:
        flushed = source.slot_flushed_lsn(t.slot)
        if flushed is None:
            return Verdict(
                False,
                {"slot": t.slot, "limit_seconds": limit_s},
                f"replication slot {t.slot} does not exist: no bridge captures source {t.source}",
            )
        waited = time.monotonic() - began
        if flushed >= target:
            return Verdict(
                True,
                {"caught_up_within_seconds": round(waited, 3), "limit_seconds": limit_s},
                f"every change source {t.source} committed before the check is in ClickHouse "
                f"(caught up within {waited:.1f} s; an idle table is fresh)",
            )
        if waited >= wait:
            break
        time.sleep(0.5)
    behind = target - flushed
    newest = _newest_applied(warehouse, t.source)
    lag = max(waited, newest[1]) if newest else waited
    metadata: Metadata = {
        "wal_bytes_behind": behind,
        "lag_seconds_at_least": round(lag, 3),
        "limit_seconds": limit_s,
        "newest_applied_commit": _iso(newest[0]) if newest else "none",
    }
    passed = lag <= limit_s
    return Verdict(
        passed,
        metadata,
        f"source {t.source} has changes not yet in ClickHouse ({behind} WAL bytes behind after {waited:.0f} s); "
        f"the newest applied commit is {lag:.0f} s old (limit {limit_s:.0f} s)",
    )


def _newest_applied(warehouse: Warehouse, source: str) -> tuple[object, float] | None:
    """The newest source commit in any change log of ``source``, and its age in seconds."""
    logs = warehouse.query(
        "SELECT name FROM system.tables WHERE database = {d:String} AND startsWith(name, '_log_')", {"d": source}
    )
    if not logs:
        return None
    union = " UNION ALL ".join(f"SELECT max(_commit_ts) AS ts FROM {quote(source)}.{quote(n)}" for (n,) in logs)
    newest, age_ms = warehouse.query(f"SELECT max(ts), {_AGE_MS.format(column='ts')} FROM ({union})")[0]
    return newest, int(str(age_ms)) / 1000


# measured by the warehouse's clock, the one that also stamps what it stores
_AGE_MS = "toInt64(toUnixTimestamp64Milli(now64(3))) - toInt64(toUnixTimestamp64Milli(max({column})))"


def _iso(value: object) -> str:
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()
    return str(value)


def duplicate_keys(warehouse: Warehouse, t: CapturedTable) -> Verdict:
    """No key of the source table appears twice among the mirror's current rows."""
    if not exists(warehouse, t.source, t.name):
        return _missing(t)
    key = ", ".join(quote(k) for k in t.key)
    groups = f"SELECT tuple({key}) AS k, count() AS n FROM {t.view} GROUP BY {key} HAVING n > 1"
    count, sample = warehouse.query(f"SELECT count(), groupArray({_SAMPLE})(toString(k)) FROM ({groups})")[0]
    metadata: Metadata = {"key": ", ".join(t.key), "duplicated_keys": int(count)}
    if count:
        metadata["sample"] = ", ".join(sample)
    text = f"{count} key(s) of {t.ref.qualified} appear more than once" if count else "every key appears once"
    return Verdict(not count, metadata, text)


def toast_placeholders(warehouse: Warehouse, t: CapturedTable) -> Verdict:
    """No text column of a current row holds Debezium's stand-in for an unchanged TOASTed value
    (it appears when a table without REPLICA IDENTITY FULL updates a row but not its large value)."""
    if not exists(warehouse, t.source, t.name):
        return _missing(t)
    columns = warehouse.query(
        "SELECT name, type FROM system.columns WHERE database = {d:String} AND table = {t:String} ORDER BY position",
        {"d": t.source, "t": t.name},
    )
    text = [(name, kind) for name, kind in columns if _TEXT_TYPE.match(kind.replace(" ", ""))]
    if not text:
        return Verdict(True, {"text_columns": 0}, "no text columns")
    marker = literal(UNAVAILABLE)
    counts = [
        f"countIf({'has' if kind.startswith('Array(') else 'equals'}({quote(name)}, {marker}))" for name, kind in text
    ]
    found = dict(
        zip((name for name, _ in text), warehouse.query(f"SELECT {', '.join(counts)} FROM {t.view}")[0], strict=True)
    )
    bad = {name: int(n) for name, n in found.items() if n}
    metadata: Metadata = {"text_columns": len(text), "placeholder_values": sum(bad.values())}
    metadata.update({f"column {name}": n for name, n in bad.items()})
    return Verdict(not bad, metadata, f"placeholder found in {', '.join(bad)}" if bad else "no placeholders")


def content_parity(report: Mapping[str, Any]) -> tuple[Verdict, bool]:
    """A bridge's parity report (``cdc.mirror.parity``) as a verdict, and whether a failure is an error
    (drift found) rather than a warning (the table could not be compared)."""
    r = report
    metadata: Metadata = {
        "result": r["result"],
        "rows_compared": int(r.get("rows_compared") or 0),
        "ranges_checked": int(r.get("ranges_checked") or 0),
        "whole_table_covered": bool(r.get("complete_cycle")),
    }
    if r["result"] in ("unsupported", "failed"):
        return Verdict(False, metadata, f"content not compared: {r.get('reason')}"), False
    metadata.update(missing=int(r["missing"]), extra=int(r["extra"]), differing=int(r["differing"]))
    if r.get("unsettled"):
        metadata["still_changing"] = int(r["unsettled"])
    if r["result"] == "ok":
        text = f"every column of {metadata['rows_compared']:,} row(s) matches the source"
        return Verdict(True, metadata, text), False
    first = r.get("first_range") or {}
    lower, upper = first.get("lower"), first.get("upper")
    where = "the whole table" if lower is None and upper is None else f"[{_bound(lower)}, {_bound(upper)})"
    keys = "; ".join(_key_text(k) for k in (r.get("sample_keys") or [])[:5])
    metadata["first_differing_range"] = where
    if keys:
        metadata["sample_keys"] = keys
    text = (
        f"drift: {r['missing']} missing, {r['extra']} extra, {r['differing']} differing row(s); first differing "
        f"key range: {where}{f' (keys {keys})' if keys else ''}; repair with `cdc resync {r['table']}`"
    )
    return Verdict(False, metadata, text), True


def _key_text(key: object) -> str:
    """A sample key: its one value, or its values in parentheses for a composite key."""
    if isinstance(key, list):
        return str(key[0]) if len(key) == 1 else "(" + ", ".join(str(v) for v in key) + ")"
    return str(key)


def _bound(value: object) -> str:
    if value is None:
        return "open"
    return ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)


def report_lag(warehouse: Warehouse, name: str, limit_s: float) -> Verdict:
    """The report has no stored event waiting longer than ``limit_s`` for a build (``pipelines.freshness``)."""
    found = [r for r in report_lags(warehouse) if r.name == name]
    if not found:
        return Verdict(False, {"limit_seconds": limit_s}, f"report {name} has not been built yet")
    r = found[0]
    metadata: Metadata = {
        "watermark": r.watermark.isoformat(),
        "pending_events": r.pending_events,
        "lag_seconds": round(r.lag_s, 3),
        "limit_seconds": limit_s,
    }
    if not r.pending_events:
        return Verdict(True, metadata, "built up to the newest stored event")
    text = (
        f"{r.pending_events} stored event(s) wait for a build, the oldest for {r.lag_s:.0f} s (limit {limit_s:.0f} s)"
    )
    return Verdict(r.lag_s <= limit_s, metadata, text)


def upcast_current(warehouse: Warehouse, registry: EventRegistry) -> Verdict:
    """No stored event is behind the latest version of its type: SQL projections read ``payload_latest``,
    so an event left in an older shape would be read wrongly (``cdc events upcast`` lifts them)."""
    if not exists(warehouse, EVENTS_DATABASE, EVENTS_TABLE):
        return Verdict(True, {"events_behind": 0}, f"{EVENTS} does not exist yet")
    ClickHouseEventStore(warehouse)  # the latest-shape columns, on a store an older bridge made
    behind = behind_counts(warehouse, registry)
    total = sum(behind.values())
    metadata: Metadata = {"events_behind": total}
    metadata.update({f"{name} v{version}": n for (name, version), n in behind.items()})
    if not total:
        return Verdict(True, metadata, "every stored event is in the latest shape of its type")
    kinds = ", ".join(f"{n} {name} v{version}" for (name, version), n in behind.items())
    return Verdict(
        False,
        metadata,
        f"{total} stored event(s) are behind their type's latest version ({kinds}): run `cdc events upcast` "
        "or the upcast_events job",
    )
