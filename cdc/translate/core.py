"""Translation: one captured row change -> zero or more domain events.

Pure: stdlib only. A table with a registered translator gets that function's events; any
other table gets generic ``<Table>Created`` / ``<Table>Updated`` / ``<Table>Deleted`` events
(version 1). Translators see :class:`Change`: row images decoded to JSON-friendly values
(dates and timestamps as ISO 8601, numerics as exact strings, JSON columns parsed).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cdc.domain.changes import Column, Op, Row, RowChange, TableSchema
from cdc.domain.events import DomainEvent, EventRegistry, correlation_id, event_id, payload_dict, to_json_value
from cdc.domain.ids import utc_from_ms
from cdc.domain.values import INFINITE_DATES, INFINITE_TIMESTAMPS, NUMERIC_SPECIAL, PLACEHOLDER, is_unchanged_toast
from cdc.errors import BadMessage

UNAVAILABLE = PLACEHOLDER  # Debezium's stand-in for an unchanged TOASTed text value
_EPOCH = dt.datetime(1970, 1, 1)
_WORD_BREAK = re.compile(r"[\W_]+")
_OP_NAMES = {
    Op.SNAPSHOT: "snapshot",
    Op.CREATE: "create",
    Op.UPDATE: "update",
    Op.DELETE: "delete",
    Op.TRUNCATE: "truncate",
}


class TranslationError(BadMessage):
    """A translator raised, or returned something that is not a declared event."""


@dataclass(frozen=True, slots=True)
class Change:
    """What a translator sees. ``op`` is ``snapshot``, ``create``, ``update``, ``delete`` or ``truncate``
    (no images: every row of the table is gone at that position).

    ``before`` is None for inserts, and for updates of a table whose REPLICA IDENTITY is
    not FULL (PostgreSQL does not log the old row then); ``changed`` is then every column.
    """

    op: str
    table: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    changed: frozenset[str]
    committed_at: dt.datetime
    snapshot: bool

    @property
    def row(self) -> Mapping[str, Any]:
        """The newest image: ``after``, or ``before`` for a delete."""
        return self.after if self.after is not None else (self.before or {})


def singular(table: str) -> str:
    if table.endswith("ies") and len(table) > 3:
        return table[:-3] + "y"
    if table.endswith("s") and not table.endswith("ss"):
        return table[:-1]
    return table


@functools.lru_cache(maxsize=1024)  # per change: few tables
def generic_names(schema: str, table: str) -> tuple[str, str]:
    """(aggregate type, event-name stem): ``public.order_items`` -> ``order_item``, ``OrderItem``;
    ``sales."Order Items"`` -> ``sales__Order Item``, ``SalesOrderItem`` (the stem keeps letters and digits)."""
    base = singular(table)
    aggregate = base if schema == "public" else f"{schema}__{base}"
    stem = "".join(part[:1].upper() + part[1:] for part in _WORD_BREAK.split(aggregate) if part)
    return aggregate, stem or "Table"


def decode_value(column: Column | None, value: Any) -> Any:
    """A Debezium JSON value as a JSON-friendly Python value, by the column's PostgreSQL type."""
    if value is None or column is None:
        return value
    if column.is_array and isinstance(value, list):
        element = Column(column.name, column.pg_type)
        return [decode_value(element, v) for v in value]
    kind = column.pg_type
    if kind == "numeric" and isinstance(value, str):
        return NUMERIC_SPECIAL.get(value, value)
    try:
        if kind == "date" and value in INFINITE_DATES:
            return INFINITE_DATES[value]
        if kind == "timestamp" and value in INFINITE_TIMESTAMPS:
            return INFINITE_TIMESTAMPS[value]
        if kind == "date" and isinstance(value, int):
            return (dt.date(1970, 1, 1) + dt.timedelta(days=value)).isoformat()
        if kind == "timestamp" and isinstance(value, int):
            return (_EPOCH + dt.timedelta(microseconds=value)).isoformat()
        if kind == "time" and isinstance(value, int):
            if not 0 <= value < 86_400_000_000:
                return "24:00:00" if value == 86_400_000_000 else value  # PostgreSQL allows 24:00:00
            return (dt.datetime.min + dt.timedelta(microseconds=value)).time().isoformat()
    except OverflowError:
        return value  # outside Python's calendar (e.g. 'infinity'): keep Debezium's number
    if kind in ("json", "jsonb") and isinstance(value, str) and value != UNAVAILABLE:
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


# json.dumps with options builds an encoder per call; these are built once (same output).
_KEY_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
_DECODED = frozenset({"date", "timestamp", "time", "json", "jsonb", "numeric"})


_DECODING: dict[int, tuple[TableSchema, dict[str, Column]]] = {}


def _needs_decoding(schema: TableSchema) -> dict[str, Column]:
    """The columns whose Debezium value differs from the JSON-friendly one (the rest pass as they are).

    Cached by identity: hashing a schema (every column) cost more than the lookup saved.
    """
    hit = _DECODING.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    found = {c.name: c for c in schema.columns if c.pg_type in _DECODED}
    if len(_DECODING) >= 256:
        _DECODING.clear()
    _DECODING[id(schema)] = (schema, found)
    return found


def decode_row(schema: TableSchema | None, row: Row | None) -> dict[str, Any] | None:
    if row is None:
        return None
    if schema is None:
        return dict(row)
    decoded = dict(row)
    for name, column in _needs_decoding(schema).items():
        if name in decoded:
            decoded[name] = decode_value(column, decoded[name])
    return decoded


def to_change(change: RowChange, schema: TableSchema | None) -> Change:
    before, after = decode_row(schema, change.before), decode_row(schema, change.after)
    if after is not None and before is not None:
        # an unchanged TOASTed value: keep the old one, and it did not change
        raw = change.after or {}
        after = {k: (before.get(k) if is_unchanged_toast(raw.get(k)) else v) for k, v in after.items()}
    changed = change.changed_columns()
    if change.after is not None:  # the raw image: there the placeholder is still visible
        changed = frozenset(k for k in changed if not is_unchanged_toast(change.after.get(k)))
    return Change(
        op=_OP_NAMES[change.op],
        table=change.table.qualified,
        before=before,
        after=after,
        changed=changed,
        committed_at=utc_from_ms(change.position.commit_ts_ms),
        snapshot=change.position.snapshot,
    )


def key_of(change: RowChange, schema: TableSchema | None) -> dict[str, Any]:
    """The row's identity: its key columns (every column when the table has no key)."""
    row = change.row
    if schema is not None and schema.key:
        return {k: row.get(k) for k in schema.key}
    return dict(row)


def translate(change: RowChange, schema: TableSchema | None, registry: EventRegistry) -> list[DomainEvent]:
    """The events of one change: the table's translator's, else generic ones."""
    view = to_change(change, schema)
    key = key_of(change, schema)
    key_text = _KEY_JSON.encode(to_json_value(key))
    fn = registry.translators.get(change.table.qualified)
    if fn is None:
        drafts = _generic(change, view, key)
    else:
        try:
            produced = list(fn(view) or ())
            drafts = []
            for payload in produced:
                spec = registry.spec_of(payload)
                body = payload_dict(payload)
                drafts.append((spec.name, spec.version, spec.aggregate, _aggregate_id(body.get(spec.key)), body))
        except Exception as e:
            raise TranslationError(
                f"translator for {change.table.qualified} failed at lsn {change.position.lsn}: {type(e).__name__}: {e}"
            ) from e
        if change.op is Op.TRUNCATE and not drafts:
            drafts = _generic(change, view, key)  # a translator that says nothing of a TRUNCATE gets the generic event
    pos = change.position
    corr = correlation_id(change.table.source, pos.txid, pos.lsn)
    return [
        DomainEvent(
            event_id=event_id(change.table.source, change.table.qualified, pos.lsn, change.op.value, key_text, i, name),
            event_type=name,
            version=version,
            aggregate_type=aggregate,
            aggregate_id=aggregate_id,
            occurred_at_ms=pos.commit_ts_ms,
            source=change.table.source,
            table=change.table.qualified,
            op=change.op.value,
            lsn=pos.lsn,
            txid=pos.txid,
            sequence=i,
            correlation_id=corr,
            payload=body,
        )
        for i, (name, version, aggregate, aggregate_id, body) in enumerate(drafts)
    ]


def _aggregate_id(value: Any) -> str:
    if value is None or value == "":
        raise TranslationError("event has no aggregate id (its key field is empty)")
    return str(value)


def _generic(change: RowChange, view: Change, key: dict[str, Any]) -> list[tuple[str, int, str, str, dict[str, Any]]]:
    aggregate, stem = generic_names(change.table.schema, change.table.table)
    if change.op is Op.TRUNCATE:  # about the whole table: its aggregate id is the table's name
        return [(f"{stem}Truncated", 1, aggregate, change.table.qualified, {"table": change.table.qualified})]
    aggregate_id = ":".join(str(to_json_value(v)) for v in key.values())
    key_fields = {k: to_json_value(v) for k, v in key.items()}
    if change.op in (Op.SNAPSHOT, Op.CREATE):
        body = to_json_value(dict(view.after or {}))
        return [(f"{stem}Created", 1, aggregate, aggregate_id, body)]
    if change.op is Op.UPDATE:
        after = view.after or {}
        changed = {k: to_json_value(after.get(k)) for k in sorted(view.changed)}
        return [(f"{stem}Updated", 1, aggregate, aggregate_id, {**key_fields, "changed": changed})]
    return [(f"{stem}Deleted", 1, aggregate, aggregate_id, key_fields)]
