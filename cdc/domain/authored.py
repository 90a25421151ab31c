"""Authored events: events an application writes itself, in the same transaction as its change.

Pure: stdlib only. Two ways in, one shape (Debezium's outbox layout):

* a row inserted into an *outbox table* with columns ``id``, ``aggregatetype``, ``aggregateid``,
  ``type``, ``payload`` and, optionally, ``version``;
* ``pg_logical_emit_message(true, '<prefix>', '<json>')`` whose content is a JSON object with the
  same keys.

The event type must be declared with ``@event(..., authored=True)``; the payload must fit the JSON
Schema of the version it names (the type's latest when it names none), the one the catalog
publishes. Anything else is a :class:`AuthoredEventError`: the message goes to the dead letters.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from cdc.domain.catalog import json_schema
from cdc.domain.events import DomainEvent, EventRegistry, EventSpec, correlation_id, event_id
from cdc.domain.ids import to_json_value
from cdc.errors import BadMessage

FIELDS = ("id", "aggregatetype", "aggregateid", "type", "payload", "version")
MESSAGE_OP = "m"  # Debezium's op code of a logical-decoding message


class AuthoredEventError(BadMessage):
    """An authored event the catalog does not admit (unknown type, wrong version, payload that does not fit)."""


def authored_event(
    registry: EventRegistry,
    record: Mapping[str, Any],
    *,
    source: str,
    origin: str,
    op: str,
    lsn: int,
    txid: int | None,
    commit_ts_ms: int,
) -> DomainEvent:
    """The event an outbox row or message ``record`` describes, validated against the registry.

    ``origin`` is what the store shows as its source table: the outbox table, or ``message:<prefix>``.
    """
    name = record.get("type")
    if not isinstance(name, str) or not name:
        raise AuthoredEventError(f"authored event from {origin} has no 'type'")
    spec = _spec(registry, name, record.get("version"), origin)
    payload = _payload(record.get("payload"), name)
    problems = schema_problems(_schema(spec), payload, "payload")
    if problems:
        raise AuthoredEventError(
            f"{name} v{spec.version} from {origin} does not fit the catalog: " + "; ".join(problems[:5])
        )
    aggregate_type = record.get("aggregatetype")
    if aggregate_type not in (None, "", spec.aggregate):
        raise AuthoredEventError(f"{name} belongs to aggregate {spec.aggregate!r}, not {aggregate_type!r}")
    aggregate_id = str(to_json_value(payload[spec.key])) if payload.get(spec.key) is not None else ""
    given_id = record.get("aggregateid")
    if given_id not in (None, "") and str(given_id) != aggregate_id:
        raise AuthoredEventError(
            f"{name}: aggregateid {given_id!r} differs from the payload's {spec.key} {aggregate_id!r}"
        )
    if not aggregate_id:
        raise AuthoredEventError(f"{name}: the payload's key field {spec.key!r} is empty")
    return DomainEvent(
        event_id=_event_id(record.get("id"), source, origin, lsn, op, name),
        event_type=name,
        version=spec.version,
        aggregate_type=spec.aggregate,
        aggregate_id=aggregate_id,
        occurred_at_ms=commit_ts_ms,
        source=source,
        table=origin,
        op=op,
        lsn=lsn,
        txid=txid,
        sequence=0,
        correlation_id=correlation_id(source, txid, lsn),
        payload=payload,
    )


def message_record(content: bytes, origin: str) -> Mapping[str, Any]:
    """A logical message's content: a JSON object in the outbox layout."""
    try:
        doc = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise AuthoredEventError(f"message from {origin} is not JSON: {e}") from e
    if not isinstance(doc, dict):
        raise AuthoredEventError(f"message from {origin} must be a JSON object with 'type' and 'payload'")
    return doc


def _spec(registry: EventRegistry, name: str, version: Any, origin: str) -> EventSpec:
    latest = registry.latest(name)
    if latest is None:
        raise AuthoredEventError(f"authored event type {name!r} from {origin} is not in the catalog")
    if version in (None, ""):
        spec: EventSpec | None = latest
    else:
        try:
            number = int(version)
        except (TypeError, ValueError):
            raise AuthoredEventError(f"{name}: version {version!r} is not a number") from None
        spec = registry.spec(name, number)
        if spec is None:
            known = ", ".join(f"v{s.version}" for s in registry.versions(name))
            raise AuthoredEventError(f"{name} has no version {number} in the catalog (it has {known})")
    assert spec is not None
    if not spec.authored:
        raise AuthoredEventError(
            f"{name} is derived from table changes, not declared authored (@event(..., authored=True)); "
            "an application may not write it"
        )
    return spec


def _payload(value: Any, name: str) -> dict[str, Any]:
    if isinstance(value, str):  # a text or json column: the JSON itself
        try:
            value = json.loads(value)
        except ValueError as e:
            raise AuthoredEventError(f"{name}: payload is not JSON: {e}") from e
    if not isinstance(value, dict):
        raise AuthoredEventError(f"{name}: payload must be a JSON object, got {type(value).__name__}")
    return value


def _event_id(given: Any, source: str, origin: str, lsn: int, op: str, name: str) -> str:
    """The application's own id when it is a UUID (it may then deduplicate by it); else one from the position."""
    if given not in (None, ""):
        try:
            return str(uuid.UUID(str(given)))
        except ValueError:
            pass
    return event_id(source, origin, lsn, op, str(given or ""), 0, name)


_SCHEMAS: dict[tuple[str, int], dict[str, Any]] = {}


def _schema(spec: EventSpec) -> dict[str, Any]:
    key = (spec.name, spec.version)
    if key not in _SCHEMAS:
        _SCHEMAS[key] = json_schema(spec.payload_class, spec) if spec.payload_class is not None else {}
    return _SCHEMAS[key]


# -- the subset of JSON Schema the catalog writes (cdc.domain.catalog) ---------------------------------
def schema_problems(schema: Mapping[str, Any], value: Any, path: str) -> list[str]:
    """Where ``value`` does not fit ``schema``; empty when it does."""
    if "anyOf" in schema:
        if any(not schema_problems(s, value, path) for s in schema["anyOf"]):
            return []
        return [f"{path}: {_describe(value)} fits none of {len(schema['anyOf'])} allowed shapes"]
    if "enum" in schema:
        return [] if value in schema["enum"] else [f"{path}: {value!r} is not one of {schema['enum']}"]
    kind = schema.get("type")
    if kind is None:
        return []
    if not _is(kind, value):
        return [f"{path}: expected {kind}, got {_describe(value)}"]
    if kind == "string" and "format" in schema and not _formatted(schema["format"], value):
        return [f"{path}: {value!r} is not a {schema['format']}"]
    if kind == "object":
        return _object_problems(schema, value, path)
    if kind == "array":
        return _array_problems(schema, value, path)
    return []


def _is(kind: str, value: Any) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, _TYPES[kind])


_TYPES: dict[str, Any] = {"string": str, "boolean": bool, "null": type(None), "object": dict, "array": list}


_FORMATS: dict[str, Callable[[str], object]] = {
    "decimal": decimal.Decimal,
    "date-time": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "uuid": uuid.UUID,
}


def _formatted(fmt: str, value: str) -> bool:
    parse = _FORMATS.get(fmt)
    if parse is None:
        return True
    try:
        parse(value)
    except (ValueError, decimal.InvalidOperation):
        return False
    return True


def _object_problems(schema: Mapping[str, Any], value: dict[str, Any], path: str) -> list[str]:
    props: Mapping[str, Any] = schema.get("properties", {})
    out = [f"{path}.{name}: missing" for name in schema.get("required", []) if name not in value]
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in props:
            out += schema_problems(props[name], item, f"{path}.{name}")
        elif extra is False:
            out.append(f"{path}.{name}: not a field of this version")
        elif isinstance(extra, dict):
            out += schema_problems(extra, item, f"{path}.{name}")
    return out


def _array_problems(schema: Mapping[str, Any], value: list[Any], path: str) -> list[str]:
    prefix = schema.get("prefixItems")
    if prefix is not None:
        if len(value) != len(prefix):
            return [f"{path}: expected {len(prefix)} items, got {len(value)}"]
        return [
            p for i, (s, v) in enumerate(zip(prefix, value, strict=True)) for p in schema_problems(s, v, f"{path}[{i}]")
        ]
    items = schema.get("items")
    out = [p for i, v in enumerate(value) for p in schema_problems(items, v, f"{path}[{i}]")] if items else []
    if schema.get("uniqueItems") and len({json.dumps(v, sort_keys=True) for v in value}) != len(value):
        out.append(f"{path}: items must be unique")
    return out


def _describe(value: Any) -> str:
    return "null" if value is None else type(value).__name__
