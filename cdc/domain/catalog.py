"""The event catalog: every declared event type and version, its JSON Schema, and a check.

Pure except two tiny file helpers at the end. Consumers of ``events.<aggregate>`` topics
need a contract they can read without our code, so the catalog is derived from the payload
dataclasses themselves. A snapshot of it lives in the repository; :func:`check` compares
the code against it so a payload shape cannot change under a version number that has
already been published, and an old version cannot vanish while stored payloads need it.
"""

from __future__ import annotations

import collections.abc as abc
import copy
import dataclasses
import datetime as dt
import decimal
import json
import os
import types
import typing
import uuid
from dataclasses import dataclass
from pathlib import Path
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
        "generic_events": GENERIC_NOTE,
    }


def _event_entry(registry: EventRegistry, name: str) -> dict[str, Any]:
    specs = registry.versions(name)
    latest = specs[-1]
    return {
        "aggregate": latest.aggregate,
        "key": latest.key,
        "latest": latest.version,
        "versions": {str(s.version): _version_entry(s) for s in specs},
        "upcasters": [_step(v) for v in sorted(registry.upcasters(name))],
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


def _step(from_version: int) -> str:
    return f"v{from_version}→v{from_version + 1}"


def render_markdown(catalog: dict[str, Any]) -> str:
    """The catalog as a page for people: one section per event type, a field table per version."""
    lines = ["# Domain event catalog", "", "Generated from the event declarations; do not edit by hand.", ""]
    for name, entry in sorted(catalog["events"].items()):
        lines += _markdown_event(name, entry)
    lines += ["## Generic events", "", str(catalog.get("generic_events", GENERIC_NOTE)), ""]
    translated = ", ".join(f"`{t}`" for t in catalog.get("translators", [])) or "none"
    lines += [f"Tables with a translator: {translated}.", ""]
    return "\n".join(lines)


def _markdown_event(name: str, entry: dict[str, Any]) -> list[str]:
    versions = sorted(entry["versions"].items(), key=lambda kv: -int(kv[0]))
    description = next((v["description"] for _, v in versions if v["description"]), "")
    tables = sorted({t for _, v in versions for t in v["tables"]})
    lines = [f"## {name}", ""] + ([description, ""] if description else [])
    lines += [
        f"- Aggregate: `{entry['aggregate']}` (topic `events.{entry['aggregate']}`)",
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


# -- governance ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Finding:
    """One difference between the code's catalog and the recorded snapshot; the message says the fix."""

    event: str
    version: int | None  # None: about the event type as a whole
    severity: Literal["error", "info"]
    message: str


def _error(name: str, version: int | None, message: str) -> Finding:
    return Finding(name, version, "error", message)


def _info(name: str, version: int | None, message: str) -> Finding:
    return Finding(name, version, "info", f"{message}; {UPDATE_HINT}")


def check(current: dict[str, Any], snapshot: dict[str, Any]) -> list[Finding]:
    """What changed since the snapshot; errors are changes that would break published or stored events."""
    findings: list[Finding] = []
    now, then = current["events"], snapshot["events"]
    for name in sorted(set(now) | set(then)):
        if name not in then:
            findings.append(_info(name, None, f"{name} is a new event type ({_listing(now[name])})"))
        elif name not in now:
            gone = f"{name} is recorded ({_listing(then[name])}) but no longer declared"
            why = "events already published would lose their definition — restore its declaration"
            findings.append(_error(name, None, f"{gone}: {why}"))
        else:
            findings += _check_type(name, now[name], then[name])
    return findings


def _listing(entry: dict[str, Any]) -> str:
    return ", ".join(f"v{v}" for v in sorted(entry["versions"], key=int))


def _check_type(name: str, now: dict[str, Any], then: dict[str, Any]) -> list[Finding]:
    findings = []
    why = {"aggregate": f"are in topic events.{then['aggregate']}", "key": f"carry ids taken from {then['key']!r}"}
    for attr in ("aggregate", "key"):
        if now[attr] != then[attr]:
            changed = f"{name} {attr} changed from {then[attr]!r} to {now[attr]!r}"
            fix = f"keep {then[attr]!r}, or declare a new event type"
            findings.append(_error(name, None, f"{changed}: published events {why[attr]} — {fix}"))
    ours, theirs = now["versions"], then["versions"]
    for v in sorted({int(k) for k in (*ours, *theirs)}):
        if str(v) in ours and str(v) in theirs:
            findings += _check_same(name, v, now, ours[str(v)], theirs[str(v)])
        elif str(v) in ours:
            findings.append(_check_new(name, v, now, then))
        else:
            findings += _check_dropped(name, v, now, theirs[str(v)])
    return findings


def _check_same(name: str, v: int, now: dict[str, Any], ours: dict[str, Any], theirs: dict[str, Any]) -> list[Finding]:
    if _shape(ours["schema"]) != _shape(theirs["schema"]):
        diff = _field_diff(ours["schema"], theirs["schema"])
        if v >= now["latest"]:
            fix = f"declare version {v + 1} with an upcaster from v{v}, or revert"
        else:
            fix = f"v{v} is not the latest version: restore its recorded shape (stored v{v} payloads have it)"
        return [_error(name, v, f"{name} v{v} fields changed without a version bump: {diff} — {fix}")]
    if theirs.get("retired"):
        return [_info(name, v, f"{name} v{v} is declared again")]
    if ours["schema"] != theirs["schema"] or ours["tables"] != theirs["tables"]:
        return [_info(name, v, f"{name} v{v} description or source tables changed")]
    return []


def _shape(schema: dict[str, Any]) -> dict[str, Any]:
    """A schema minus its prose: a docstring edit is not a payload change."""
    return {k: val for k, val in schema.items() if k != "description"}


def _field_diff(ours: dict[str, Any], theirs: dict[str, Any]) -> str:
    new, old = ours.get("properties", {}), theirs.get("properties", {})
    new_req, old_req = set(ours.get("required", [])), set(theirs.get("required", []))
    changed = []
    for f in sorted(set(new) & set(old)):
        before, after = type_label(old[f]), type_label(new[f])
        if before != after:
            changed.append(f"{f} ({before} → {after})")
        elif new[f] != old[f]:
            changed.append(f)
        elif (f in new_req) != (f in old_req):
            changed.append(f"{f} ({'required → optional' if f in old_req else 'optional → required'})")
    parts = [("added", sorted(set(new) - set(old))), ("removed", sorted(set(old) - set(new))), ("changed", changed)]
    return ", ".join(f"{word} {', '.join(names)}" for word, names in parts if names) or "the schema differs"


def _missing_steps(entry: dict[str, Any], start: int, end: int) -> list[int]:
    steps = set(entry["upcasters"])
    return [v for v in range(start, end) if _step(v) not in steps]


def _check_new(name: str, v: int, now: dict[str, Any], then: dict[str, Any]) -> Finding:
    recorded = max(int(k) for k in then["versions"])
    if v <= recorded:
        fix = f"number new versions above the recorded ones (declare v{recorded + 1})"
        return _error(name, v, f"{name} v{v} is new but v{recorded} is already recorded: {fix}")
    missing = _missing_steps(now, min(int(k) for k in (*now["versions"], *then["versions"])), v)
    if missing:
        froms = ", ".join(f"v{m}" for m in missing)
        fix = f"declare @upcaster({name!r}, from_version={missing[0]}) for each"
        return _error(
            name,
            v,
            f"{name} v{v} has no upcaster from {froms}: stored older payloads could not be read as v{v} — {fix}",
        )
    return _info(name, v, f"{name} v{v} is a new version")


def _check_dropped(name: str, v: int, now: dict[str, Any], theirs: dict[str, Any]) -> list[Finding]:
    missing = [v] if v > now["latest"] else _missing_steps(now, v, now["latest"])
    if missing:
        gone = f"{name} v{v} is no longer declared and there is no upcaster from {', '.join(f'v{m}' for m in missing)}"
        return [
            _error(name, v, f"{gone}: stored v{v} payloads could no longer be read — restore v{v} or its upcasters")
        ]
    if theirs.get("retired"):
        return []
    return [_info(name, v, f"{name} v{v} is no longer declared (its stored payloads still upcast to v{now['latest']})")]


def merge_snapshot(current: dict[str, Any], snapshot: dict[str, Any] | None) -> dict[str, Any]:
    """The snapshot to record: ``current`` plus, marked retired, every version only the old snapshot has.

    Retired shapes are kept so the repository remembers what stored payloads look like.
    """
    merged = copy.deepcopy(current)
    for name, old in (snapshot or {}).get("events", {}).items():
        entry = merged["events"].setdefault(name, {**copy.deepcopy(old), "versions": {}})
        for number, version in old["versions"].items():
            if number not in entry["versions"]:
                entry["versions"][number] = {**copy.deepcopy(version), "retired": True}
        entry["versions"] = dict(sorted(entry["versions"].items(), key=lambda kv: int(kv[0])))
    merged["events"] = dict(sorted(merged["events"].items()))
    return merged


# -- snapshot file (the only IO here; kept tiny) -------------------------------------------------
def dumps_snapshot(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def load_snapshot(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The recorded catalog, or None if there is none yet."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as e:
        raise EventDefinitionError(
            f"event catalog snapshot {path} is not valid JSON ({e}): restore it from "
            "version control or rewrite it with `cdc events check --update`"
        ) from e
    if not isinstance(doc, dict) or doc.get("catalog_version") != CATALOG_VERSION or "events" not in doc:
        raise EventDefinitionError(f"{path} is not a version {CATALOG_VERSION} event catalog snapshot")
    return doc


def write_snapshot(path: str | os.PathLike[str], doc: dict[str, Any]) -> None:
    Path(path).write_text(dumps_snapshot(doc), encoding="utf-8")
