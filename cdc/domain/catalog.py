"""The event catalog: every declared event type and version, with its JSON Schema.

Pure. Consumers of ``events.<aggregate>`` topics need a contract they can read without our
code, so the catalog is derived from the payload dataclasses themselves. A snapshot of it
lives in the repository; :mod:`cdc.domain.compat` checks the code against it.
"""

from __future__ import annotations

import collections.abc as abc
import dataclasses
import datetime as dt
import decimal
import json
import types
import typing
import uuid
from typing import Any, Literal

from cdc.domain.events import EventDefinitionError, EventRegistry, EventSpec

CATALOG_VERSION = 1
DRAFT = "https://json-schema.org/draft/2020-12/schema"
UPDATE_HINT = "record it with `cdc events check --update`"
GENERIC_NOTE = (
    "Tables without a translator get generic `<Table>Created` / `<Table>Updated` / `<Table>Deleted` events, "
    "version 1: Created carries the row's columns, Updated the key columns plus `changed` "
    "{column: new value}, Deleted the key columns. Their payloads follow each table's columns in the "
    "source database, so they are not listed per type here."
)
_SCALARS: dict[Any, dict[str, str]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
    decimal.Decimal: {"type": "string", "format": "decimal"},  # exact, as to_json_value writes it
    dt.datetime: {"type": "string", "format": "date-time"},
    dt.date: {"type": "string", "format": "date"},
    dt.time: {"type": "string", "format": "time"},
    uuid.UUID: {"type": "string", "format": "uuid"},
}
_SEQUENCES = (list, abc.Sequence, set, frozenset, abc.Set)
_MAPPINGS = (dict, abc.Mapping)
_SUPPORTED = (
    "str, int, float, bool, Decimal, datetime, date, time, UUID, Any, Literal[...], X | None, "
    "list[X], tuple[X, ...], set[X], dict[str, X] or a dataclass"
)


# -- JSON Schema ----------------------------------------------------------------------------------
def json_schema(cls: type, spec: EventSpec | None = None) -> dict[str, Any]:
    """The JSON Schema of a payload dataclass; ``spec`` supplies the title and description."""
    if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
        raise EventDefinitionError(f"{cls!r} is not a dataclass, so it has no payload schema")
    title = spec.name if spec is not None else cls.__name__
    description = spec.description if spec is not None else _first_paragraph(cls)
    body = _object_schema(cls, title, ())
    return {"$schema": DRAFT, **body, "title": title, "description": description}


def _first_paragraph(cls: type) -> str:
    doc = (cls.__doc__ or "").strip()
    if doc.startswith(f"{cls.__name__}("):  # dataclass made it up from the signature
        return ""
    return doc.split("\n\n")[0].replace("\n", " ")


def _object_schema(cls: type, path: str, seen: tuple[type, ...]) -> dict[str, Any]:
    if cls in seen:
        raise EventDefinitionError(f"event field {path}: {cls.__name__} contains itself, which JSON cannot bound")
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError) as e:  # a forward reference that is not importable from the module
        raise EventDefinitionError(f"event field {path}: cannot resolve the annotations of {cls.__name__}: {e}") from e
    fields = sorted(dataclasses.fields(cls), key=lambda f: f.name)
    required = [f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    return {
        "type": "object",
        "title": cls.__name__,
        "properties": {f.name: _type_schema(hints[f.name], f"{path}.{f.name}", (*seen, cls)) for f in fields},
        "required": required,
        "additionalProperties": False,
    }


def _type_schema(tp: Any, path: str, seen: tuple[type, ...]) -> dict[str, Any]:
    if tp is Any or tp is object:
        return {}
    if isinstance(tp, abc.Hashable) and tp in _SCALARS:
        return dict(_SCALARS[tp])
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _object_schema(tp, path, seen)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal and all(isinstance(a, str | int | bool | type(None)) for a in args):
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        ordered = [a for a in args if a is not type(None)] + [a for a in args if a is type(None)]
        return {"anyOf": [_type_schema(a, path, seen) for a in ordered]}
    if tp is tuple or origin is tuple:
        return _tuple_schema(args, path, seen)
    if tp in _SEQUENCES or origin in _SEQUENCES:
        unique = {"uniqueItems": True} if (origin or tp) in (set, frozenset, abc.Set) else {}
        items = {"items": _type_schema(args[0], f"{path}[]", seen)} if args else {}
        return {"type": "array", **items, **unique}
    if (tp in _MAPPINGS or origin in _MAPPINGS) and (not args or args[0] is str):
        values = {"additionalProperties": _type_schema(args[1], f"{path}{{}}", seen)} if args else {}
        return {"type": "object", **values}
    name = (getattr(tp, "__name__", None) if origin is None else None) or repr(tp)
    raise EventDefinitionError(f"event field {path} has unsupported type {name}: use {_SUPPORTED}")


def _tuple_schema(args: tuple[Any, ...], path: str, seen: tuple[type, ...]) -> dict[str, Any]:
    if not args:
        return {"type": "array"}
    if len(args) == 2 and args[1] is Ellipsis:
        return {"type": "array", "items": _type_schema(args[0], f"{path}[]", seen)}
    prefix = [_type_schema(a, f"{path}[{i}]", seen) for i, a in enumerate(args)]
    return {"type": "array", "prefixItems": prefix, "items": False, "minItems": len(args)}


def type_label(schema: dict[str, Any]) -> str:
    """A short, human type name for a (sub)schema: ``integer | null``, ``array<string>``, ``decimal``."""
    if "anyOf" in schema:
        return " | ".join(type_label(s) for s in schema["anyOf"])
    if "enum" in schema:
        return "enum(" + ", ".join(json.dumps(v) for v in schema["enum"]) + ")"
    kind = schema.get("type")
    if kind == "string":
        return str(schema.get("format", "string"))
    if kind == "array":
        if "prefixItems" in schema:
            return "tuple<" + ", ".join(type_label(s) for s in schema["prefixItems"]) + ">"
        outer = "set" if schema.get("uniqueItems") else "array"
        return f"{outer}<{type_label(schema['items'])}>" if "items" in schema else outer
    if kind == "object":
        if "properties" in schema:
            return str(schema.get("title", "object"))
        values = schema.get("additionalProperties")
        return f"map<string, {type_label(values)}>" if isinstance(values, dict) else "object"
    return str(kind) if kind else "any"


# -- the catalog document ------------------------------------------------------------------------
def build_catalog(registry: EventRegistry) -> dict[str, Any]:
    """Every declared type and version as plain JSON data, in a stable order (so snapshots diff cleanly)."""
    return {
        "catalog_version": CATALOG_VERSION,
        "events": {name: _event_entry(registry, name) for name in registry.names()},
        "translators": sorted(registry.translators),
        "deadlines": {name: _deadline_entry(registry, rule) for name, rule in sorted(registry.deadlines.items())},
        "generic_events": GENERIC_NOTE,
    }


def origin(registry: EventRegistry, name: str) -> str:
    """How events of a type come about: ``derived`` from table changes by translators, ``authored`` by
    applications (outbox table or logical message), or emitted by a ``deadline`` rule."""
    latest = registry.latest(name)
    if latest is not None and any(rule.emits is latest.payload_class for rule in registry.deadlines.values()):
        return "deadline"
    return "authored" if latest is not None and latest.authored else "derived"


def _deadline_entry(registry: EventRegistry, rule: Any) -> dict[str, Any]:
    emits = next((s.name for n in registry.names() for s in registry.versions(n) if s.payload_class is rule.emits), "")
    return {
        "start": list(rule.start),
        "end": list(rule.end),
        "within_seconds": rule.within_ms / 1000,
        "key": rule.key or "aggregate id",
        "emits": emits,
    }


def _event_entry(registry: EventRegistry, name: str) -> dict[str, Any]:
    specs = registry.versions(name)
    latest = specs[-1]
    return {
        "aggregate": latest.aggregate,
        "origin": origin(registry, name),
        "key": latest.key,
        "latest": latest.version,
        "versions": {str(s.version): _version_entry(s) for s in specs},
        "upcasters": [step_name(v) for v in sorted(registry.upcasters(name))],
    }


def _version_entry(spec: EventSpec) -> dict[str, Any]:
    if spec.payload_class is not None:
        schema = json_schema(spec.payload_class, spec)
    else:  # declared without a class: the payload follows a table's columns
        schema = {"$schema": DRAFT, "type": "object", "title": spec.name, "description": spec.description}
    return {
        "tables": sorted(spec.tables),
        "description": spec.description,
        "schema": schema,
        "fields": {f: type_label(s) for f, s in schema.get("properties", {}).items()},
    }


def step_name(from_version: int) -> str:
    return f"v{from_version}→v{from_version + 1}"


def render_markdown(catalog: dict[str, Any]) -> str:
    """The catalog as a page for people: one section per event type, a field table per version."""
    lines = ["# Domain event catalog", "", "Generated from the event declarations; do not edit by hand.", ""]
    for name, entry in sorted(catalog["events"].items()):
        lines += _markdown_event(name, entry)
    lines += ["## Generic events", "", str(catalog.get("generic_events", GENERIC_NOTE)), ""]
    translated = ", ".join(f"`{t}`" for t in catalog.get("translators", [])) or "none"
    lines += [f"Tables with a translator: {translated}.", ""]
    deadlines = catalog.get("deadlines", {})
    if deadlines:
        lines += ["## Deadlines", "", "| rule | starts | ends | within | key | emits |", "|---|---|---|---|---|---|"]
        lines += [
            f"| `{name}` | {', '.join(d['start'])} | {', '.join(d['end'])} | {d['within_seconds']:g} s"
            f" | {d['key']} | {d['emits']} |"
            for name, d in sorted(deadlines.items())
        ]
        lines.append("")
    return "\n".join(lines)


_ORIGINS = {
    "derived": "derived from table changes by a translator",
    "authored": "authored: applications write it (outbox table or logical message), validated against this catalog",
    "deadline": "emitted by a deadline rule (source commit time)",
}


def _markdown_event(name: str, entry: dict[str, Any]) -> list[str]:
    versions = sorted(entry["versions"].items(), key=lambda kv: -int(kv[0]))
    description = next((v["description"] for _, v in versions if v["description"]), "")
    tables = sorted({t for _, v in versions for t in v["tables"]})
    lines = [f"## {name}", ""] + ([description, ""] if description else [])
    lines += [
        f"- Aggregate: `{entry['aggregate']}` (topic `events.{entry['aggregate']}`)",
        f"- Origin: {_ORIGINS.get(entry.get('origin', 'derived'), entry.get('origin'))}",
        f"- Key: `{entry['key']}`",
        f"- Source tables: {', '.join(f'`{t}`' for t in tables) or 'none'}",
        f"- Latest version: {entry['latest']}",
        f"- Upcasters: {', '.join(entry['upcasters']) or 'none'}",
        "",
    ]
    for number, version in versions:
        lines += [f"### {name} v{number}" + (" (retired)" if version.get("retired") else ""), ""]
        required = set(version["schema"].get("required", []))
        lines += ["| field | type | required |", "|---|---|---|"]
        lines += [
            f"| `{f}` | {t.replace('|', chr(92) + '|')} | {'yes' if f in required else 'no'} |"
            for f, t in sorted(version["fields"].items())
        ]
        lines.append("")
    return lines
