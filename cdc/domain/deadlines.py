"""Deadlines: "a start event not followed by an ending event within a window" emits an event.

Pure: stdlib only. A translators module declares a rule with :func:`deadline`::

    deadline("order-delivery", start="OrderPlaced", end=("OrderDelivered", "OrderCancelled"),
             within=dt.timedelta(minutes=45), emits=OrderDeliveryOverdue)

Time is the source's commit time, never a consumer's clock. A start event opens a deadline due at
its commit time + ``within``, keyed by its aggregate id (or the payload field ``key``); an ending
event for the same key closes it. The deadline has *passed* when the source's history holds no
ending event committed at or before the due time:

* an ending event committed after the due time emits the alert before it closes the deadline;
* :meth:`DeadlineTracker.advance` emits it as soon as the events lane knows that nothing committed
  at or before the due time can still arrive (its watermark, moved by changes and heartbeats).

Both paths decide by commit times alone, so replaying the same history emits the same alerts,
and the alert's id derives from the rule and the start event's id: the store keeps it once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cdc.domain.events import DomainEvent, EventRegistry, active_registry, payload_dict
from cdc.domain.ids import iso_from_ms, uuid5

OP = "deadline"  # the ``op`` of an event a deadline emitted (no row change made it)
_SPECIAL = ("due_at", "started_at", "started_event_id")  # fields the default builder fills itself


@dataclass(frozen=True, slots=True)
class Pending:
    """An open deadline: ``start`` (in its type's latest shape) is due at ``due_ms``."""

    rule: str
    key: str
    start: DomainEvent
    due_ms: int


Build = Callable[[Pending], object]


@dataclass(frozen=True)
class DeadlineRule:
    """One declared deadline. ``emits`` is a declared ``@event`` payload class of the start's aggregate."""

    name: str
    start: tuple[str, ...]
    end: tuple[str, ...]
    within_ms: int
    emits: type
    key: str | None = None  # payload field shared by start and ending events; None: the aggregate id
    build: Build | None = None  # the alert's payload; default: fields named like the start's, plus _SPECIAL

    def key_of(self, e: DomainEvent) -> str | None:
        if self.key is None:
            return e.aggregate_id
        value = e.payload.get(self.key)
        return None if value is None else str(value)

    def payload(self, pending: Pending) -> object:
        if self.build is not None:
            return self.build(pending)
        start = pending.start
        values: dict[str, Any] = {
            "due_at": iso_from_ms(pending.due_ms),
            "started_at": iso_from_ms(start.occurred_at_ms),
            "started_event_id": start.event_id,
        }
        fields = {f.name for f in dataclasses.fields(self.emits)}
        return self.emits(**{f: (values[f] if f in values else start.payload.get(f)) for f in fields})

    def problems(self, registry: EventRegistry) -> list[str]:
        """What keeps this rule from working with ``registry`` (checked when a module is loaded)."""
        out = []
        emitted = next((s for s in _specs(registry) if s.payload_class is self.emits), None)
        if emitted is None:
            return [f"deadline {self.name!r}: emits {self.emits.__name__}, which is not a declared @event"]
        for name in (*self.start, *self.end):
            if registry.latest(name) is None:
                out.append(f"deadline {self.name!r}: {name} is not a declared event")
        both = set(self.start) & set(self.end)
        if both:
            out.append(f"deadline {self.name!r}: {', '.join(sorted(both))} both starts and ends it")
        if self.within_ms <= 0:
            out.append(f"deadline {self.name!r}: within must be longer than zero")
        aggregates = {s.aggregate for n in self.start if (s := registry.latest(n)) is not None}
        if self.key is None and aggregates - {emitted.aggregate}:
            out.append(
                f"deadline {self.name!r}: {emitted.name} belongs to {emitted.aggregate!r} but the start events to "
                f"{', '.join(sorted(aggregates))}; give `key` or emit an event of the start's aggregate"
            )
        if self.build is None:
            out += self._default_build_problems(registry, emitted.name)
        return out

    def _default_build_problems(self, registry: EventRegistry, emitted: str) -> list[str]:
        required = {
            f.name
            for f in dataclasses.fields(self.emits)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        out = []
        for name in self.start:
            spec = registry.latest(name)
            if spec is None or spec.payload_class is None:
                continue
            have = {f.name for f in dataclasses.fields(spec.payload_class)} | set(_SPECIAL)
            missing = sorted(required - have)
            if missing:
                out.append(
                    f"deadline {self.name!r}: {emitted} needs {', '.join(missing)}, which {name} does not carry; "
                    "give those fields defaults or pass build="
                )
        return out


def _specs(registry: EventRegistry) -> Iterable[Any]:
    for name in registry.names():
        yield from registry.versions(name)


def deadline(
    name: str,
    *,
    start: str | Iterable[str],
    end: str | Iterable[str],
    within: dt.timedelta,
    emits: type,
    key: str | None = None,
    build: Build | None = None,
) -> DeadlineRule:
    """Declare a deadline rule (in a translators module, next to its events). Events of rows that
    existed before capture began (a snapshot, op ``r``) open no deadline: their commit time is the
    snapshot's, not when the thing started."""
    rule = DeadlineRule(
        name=name,
        start=(start,) if isinstance(start, str) else tuple(start),
        end=(end,) if isinstance(end, str) else tuple(end),
        within_ms=int(within.total_seconds() * 1000),
        emits=emits,
        key=key,
        build=build,
    )
    active_registry().add_deadline(rule)
    return rule


def alert_id(rule: str, start_event_id: str) -> str:
    """The id of the alert a deadline opened by ``start_event_id`` emits: the same on every replay."""
    return uuid5(f"deadline|{rule}|{start_event_id}")


class DeadlineTracker:
    """The open deadlines of one events lane, fed its events in source order per key."""

    def __init__(self, registry: EventRegistry) -> None:
        self._registry = registry
        self._rules: dict[str, DeadlineRule] = dict(registry.deadlines)
        self._by_start: dict[str, list[DeadlineRule]] = {}
        self._by_end: dict[str, list[DeadlineRule]] = {}
        for rule in self._rules.values():
            for n in rule.start:
                self._by_start.setdefault(n, []).append(rule)
            for n in rule.end:
                self._by_end.setdefault(n, []).append(rule)
        self._pending: dict[tuple[str, str], Pending] = {}
        self._due: list[tuple[int, str, str, str]] = []  # (due_ms, rule, key, start id); closed ones stay until due
        self.fired = 0

    def __bool__(self) -> bool:
        return bool(self._rules)

    @property
    def open(self) -> int:
        return len(self._pending)

    def checkpoint(self) -> tuple[dict[tuple[str, str], Pending], list[tuple[int, str, str, str]], int]:
        """The state before a batch: a batch that fails is retried, and must meet the same state."""
        return dict(self._pending), list(self._due), self.fired

    def rollback(self, state: tuple[dict[tuple[str, str], Pending], list[tuple[int, str, str, str]], int]) -> None:
        self._pending, self._due, self.fired = dict(state[0]), list(state[1]), state[2]

    def restore(self, pending: Iterable[Pending]) -> None:
        """Deadlines found open in the event store (after a restart)."""
        for p in pending:
            self._open(p)

    def _open(self, p: Pending) -> None:
        if (p.rule, p.key) in self._pending:
            return  # already open: the earliest start counts
        self._pending[(p.rule, p.key)] = p
        heapq.heappush(self._due, (p.due_ms, p.rule, p.key, p.start.event_id))

    def observe(self, e: DomainEvent) -> list[DomainEvent]:
        """One event, in order: alerts of deadlines it ends too late, then the deadlines it opens."""
        out: list[DomainEvent] = []
        for rule in self._by_end.get(e.event_type, ()):
            key = rule.key_of(e)
            p = self._pending.get((rule.name, key)) if key is not None else None
            if p is None or (e.lsn, e.sequence) <= (p.start.lsn, p.start.sequence):
                continue
            del self._pending[(rule.name, p.key)]
            if e.occurred_at_ms > p.due_ms:
                out.append(self._alert(rule, p, e.lsn))
        if e.event_type in self._by_start:
            latest = self._registry.upcast(e)
            for rule in self._by_start[e.event_type]:
                key = rule.key_of(latest)
                if key is not None and e.op != "r":
                    self._open(Pending(rule.name, key, latest, e.occurred_at_ms + rule.within_ms))
        return out + [chained for alert in out for chained in self.observe(alert)]

    def advance(self, watermark_ms: int, lsn: int) -> list[DomainEvent]:
        """Nothing committed before ``watermark_ms`` can still arrive: alert every deadline due before it."""
        out: list[DomainEvent] = []
        while self._due and self._due[0][0] < watermark_ms:
            _, rule, key, start_id = heapq.heappop(self._due)
            p = self._pending.get((rule, key))
            if p is not None and p.start.event_id == start_id:
                del self._pending[(rule, key)]
                out.append(self._alert(self._rules[rule], p, lsn))
        return out + [chained for alert in out for chained in self.observe(alert)]

    def _alert(self, rule: DeadlineRule, p: Pending, lsn: int) -> DomainEvent:
        payload = rule.payload(p)
        spec = self._registry.spec_of(payload)
        body = payload_dict(payload)
        self.fired += 1
        start = p.start
        return DomainEvent(
            event_id=alert_id(rule.name, start.event_id),
            event_type=spec.name,
            version=spec.version,
            aggregate_type=spec.aggregate,
            aggregate_id=start.aggregate_id if body.get(spec.key) is None else str(body[spec.key]),
            occurred_at_ms=p.due_ms,
            source=start.source,
            table=start.table,
            op=OP,
            lsn=lsn,
            txid=None,
            sequence=0,
            correlation_id=start.correlation_id,
            payload=body,
        )
