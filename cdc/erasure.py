"""Erasure in ClickHouse: one aggregate's rows, history, events and dead letters removed, and audited.

The rule (:mod:`cdc.domain.erasure`) names the tables and the column that holds the id. For each
table the rows whose column holds it are found in the mirror's change log (every version, deletes
included) and state; their keys name the aggregates those rows made in the event store. Then, as
ClickHouse mutations that rewrite the parts (``ALTER TABLE … DELETE``, synchronous), the rows leave
the state and the change log, every event of those aggregates leaves the store (derived, authored
and deadline events), and the dead letters of those rows leave ``cdc.dead_letters``. One row in
``cdc.erasures`` records what was erased and when: counts per table, never the values, and the id
only as a SHA-256 digest.

The broker's topics are the bridge's part (:mod:`cdc.truncation`: it runs this while Debezium is
paused, then empties every topic); the reports are rebuilt from what is left.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cdc.consume.dead_letters import DEAD_LETTERS_DDL
from cdc.domain.erasure import ErasureRule
from cdc.domain.names import parse_table
from cdc.events.store import DATABASE, TABLE
from cdc.mirror import captured
from cdc.mirror.row_checks import literal
from cdc.mirror.table import quote
from cdc.ports import Warehouse

log = logging.getLogger(__name__)
AUDIT_DDL = (
    "CREATE DATABASE IF NOT EXISTS cdc",
    "CREATE TABLE IF NOT EXISTS cdc.erasures (erased_at DateTime64(3, 'UTC') DEFAULT now64(3),"
    " source String, aggregate_type LowCardinality(String), id_sha256 String, trigger LowCardinality(String),"
    " rows Map(String, UInt64), aggregates UInt64, events UInt64, dead_letters UInt64,"
    " topics String, reports Array(String)) ENGINE = MergeTree ORDER BY erased_at",
)
_SYNC = " SETTINGS mutations_sync = 2"  # the statement returns once the parts are rewritten
_STORE = f"{DATABASE}.{TABLE}"


@dataclass
class Erased:
    """What one erasure removed (counts only)."""

    source: str
    aggregate_type: str
    id_sha256: str
    trigger: str
    rows: dict[str, int] = field(default_factory=dict)  # per source table: state rows + change-log versions removed
    aggregates: int = 0
    events: int = 0
    dead_letters: int = 0
    topics: str = ""  # what became of the broker's records
    reports: list[str] = field(default_factory=list)
    reports_left: list[str] = field(default_factory=list)  # built before, not rebuilt now: may still hold it

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def erase(warehouse: Warehouse, source: str, rule: ErasureRule, aggregate_id: str, trigger: str) -> Erased:
    """Remove the aggregate's data from the mirror, the event store and the dead letters (not the audit)."""
    tables = {(t.schema, t.table): t for t in captured.read(warehouse) if t.source == source}
    done = Erased(source, rule.aggregate, digest(aggregate_id), trigger)
    aggregates: set[tuple[str, str]] = {(rule.aggregate, aggregate_id)}
    for name, column in rule.tables:
        table = tables.get(parse_table(name))
        if table is None:
            log.warning("erasure of %s: %s is not captured by source %s; skipped", rule.aggregate, name, source)
            continue
        keys = _keys(warehouse, table, column, aggregate_id)
        aggregates |= _aggregates(warehouse, source, name, keys)
        done.rows[name] = _delete_rows(warehouse, table, column, aggregate_id)
        done.dead_letters += _delete_dead_letters(warehouse, table, keys)
    done.aggregates = len(aggregates)
    done.events = _delete_events(warehouse, source, aggregates)
    return done


def built_reports(warehouse: Warehouse) -> list[str]:
    """The reports built so far (``reports._watermarks``), whichever process built them."""
    exists = warehouse.query("SELECT count() FROM system.tables WHERE database = 'reports' AND name = '_watermarks'")
    if not int(exists[0][0]):
        return []
    return sorted(str(r[0]) for r in warehouse.query("SELECT DISTINCT projection FROM reports._watermarks"))


def audit(warehouse: Warehouse, done: Erased) -> None:
    for statement in AUDIT_DDL:
        warehouse.command(statement)
    warehouse.insert(
        "cdc",
        "erasures",
        (
            "source",
            "aggregate_type",
            "id_sha256",
            "trigger",
            "rows",
            "aggregates",
            "events",
            "dead_letters",
            "topics",
            "reports",
        ),
        [
            (
                done.source,
                done.aggregate_type,
                done.id_sha256,
                done.trigger,
                done.rows,
                done.aggregates,
                done.events,
                done.dead_letters,
                done.topics,
                done.reports,
            )
        ],
    )


def _match(column: str, aggregate_id: str) -> str:
    return f"toString({quote(column)}) = {literal(aggregate_id)}"


def _keys(warehouse: Warehouse, table: captured.CapturedTable, column: str, aggregate_id: str) -> list[str]:
    """The erased rows' aggregate ids as generic events write them: key values joined by ':'."""
    key = "concat(" + ", ':', ".join(f"toString({quote(k)})" for k in table.key) + ")" if table.key else "''"
    where = _match(column, aggregate_id)
    db = quote(table.source)
    rows = warehouse.query(
        f"SELECT DISTINCT {key} FROM {db}.{quote('_log_' + table.name)} WHERE {where}"
        f" UNION DISTINCT SELECT DISTINCT {key} FROM {db}.{quote('_state_' + table.name)} WHERE {where}"
    )
    return sorted({str(r[0]) for r in rows})


def _aggregates(warehouse: Warehouse, source: str, table: str, keys: Sequence[str]) -> set[tuple[str, str]]:
    if not keys:
        return set()
    rows = warehouse.query(
        f"SELECT DISTINCT aggregate_type, aggregate_id FROM {_STORE} WHERE source = {{s:String}}"
        " AND source_table = {t:String} AND aggregate_id IN {k:Array(String)}",
        {"s": source, "t": table, "k": list(keys)},
    )
    return {(str(a), str(i)) for a, i in rows}


def _delete_rows(warehouse: Warehouse, table: captured.CapturedTable, column: str, aggregate_id: str) -> int:
    db, where = quote(table.source), _match(column, aggregate_id)
    found = 0
    for prefix in ("_state_", "_log_"):  # rows copied by the initial load are in the state only
        target = f"{db}.{quote(prefix + table.name)}"
        found += int(warehouse.query(f"SELECT count() FROM {target} WHERE {where}")[0][0])
        warehouse.command(f"ALTER TABLE {target} DELETE WHERE {where}{_SYNC}")
    return found


def _delete_dead_letters(warehouse: Warehouse, table: captured.CapturedTable, keys: Sequence[str]) -> int:
    """Dead letters of the erased rows: their topic, and a Kafka key (Debezium's JSON of the row's key)
    that names one of them."""
    if not keys or not table.key:
        return 0
    for statement in DEAD_LETTERS_DDL:
        warehouse.command(statement)
    parts = ", ':', ".join(
        f"if(JSONType(ifNull(key, ''), {literal(k)}) = 'String', JSONExtractString(ifNull(key, ''), {literal(k)}),"
        f" JSONExtractRaw(ifNull(key, ''), {literal(k)}))"
        for k in table.key
    )
    where = f"topic = {literal(table.topic)} AND concat({parts}) IN ({', '.join(literal(k) for k in keys)})"
    (found,) = warehouse.query(f"SELECT count() FROM cdc.dead_letters WHERE {where}")[0]
    if found:
        warehouse.command(f"ALTER TABLE cdc.dead_letters DELETE WHERE {where}{_SYNC}")
    return int(found)


def _delete_events(warehouse: Warehouse, source: str, aggregates: set[tuple[str, str]]) -> int:
    if not aggregates:
        return 0
    pairs = ", ".join(f"({literal(a)}, {literal(i)})" for a, i in sorted(aggregates))
    where = f"source = {literal(source)} AND (aggregate_type, aggregate_id) IN ({pairs})"
    (found,) = warehouse.query(f"SELECT count() FROM {_STORE} WHERE {where}")[0]
    if found:
        warehouse.command(f"ALTER TABLE {_STORE} DELETE WHERE {where}{_SYNC}")
    return int(found)
