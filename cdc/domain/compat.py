"""Governance over the event catalog: compare the code's catalog with the snapshot kept in the repo.

Pure except two tiny file helpers at the end. A payload shape must not change under a version
number that has already been published, and an old version must not vanish while stored
payloads still need it; :func:`check` reports both, each finding with its fix.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cdc.domain.catalog import CATALOG_VERSION, UPDATE_HINT, step_name, type_label
from cdc.domain.events import EventDefinitionError


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
    return [v for v in range(start, end) if step_name(v) not in steps]


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
