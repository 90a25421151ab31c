"""Domain events: what happened to an aggregate, versioned, with where it came from.

Pure: stdlib only. An event *type* is declared once per version as a dataclass (its
payload shape) with :func:`event`; later versions come with :func:`upcaster` functions
that lift a stored payload one version up. Stored payloads are never rewritten: readers
call :meth:`EventRegistry.upcast` to see every event in its type's latest shape.

Declarations land in the *active* registry; :func:`load_modules` imports user modules
into a fresh one, so tests and tools can hold several registries side by side.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as dt
import importlib
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

# ids and JSON values live in cdc.domain.ids; translator modules import them from here too
from cdc.domain.ids import correlation_id as correlation_id
from cdc.domain.ids import event_id as event_id
from cdc.domain.ids import to_json_value as to_json_value
from cdc.domain.ids import utc_from_ms
from cdc.domain.ids import uuid5 as uuid5
from cdc.domain.names import events_topic
from cdc.errors import CdcError

_T = TypeVar("_T")
Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]


class EventDefinitionError(CdcError):
    """An event, upcaster or translator declaration that cannot work."""


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One version of one event type."""

    name: str
    version: int
    aggregate: str  # aggregate type, e.g. "order"; events go to topic ``events.<aggregate>``
    key: str  # payload field holding the aggregate id
    payload_class: type | None  # None: generic events, payload follows the table's columns
    tables: tuple[str, ...] = ()  # ``schema.table`` the event is derived from
    description: str = ""
    authored: bool = False  # applications write it themselves (outbox table or logical message)


@dataclass(frozen=True, slots=True)
class DomainEvent:
    """A fact about one aggregate, derived from one source row change.

    ``event_id`` is a function of the source position, so a redelivered change yields
    the same id; ``correlation_id`` is shared by every event of one source transaction.
    """

    event_id: str
    event_type: str
    version: int
    aggregate_type: str
    aggregate_id: str
    occurred_at_ms: int  # source commit time
    source: str
    table: str  # ``schema.table``
    op: str  # Debezium op code: r, c, u, d
    lsn: int
    txid: int | None
    sequence: int  # index among the events translated from one change
    correlation_id: str
    payload: Mapping[str, Any] = field(hash=False)

    @property
    def occurred_at(self) -> dt.datetime:
        return utc_from_ms(self.occurred_at_ms)

    @property
    def topic(self) -> str:
        return events_topic(self.aggregate_type)

    def with_payload(self, version: int, payload: Mapping[str, Any]) -> DomainEvent:
        return dataclasses.replace(self, version=version, payload=payload)


class EventRegistry:
    """Event types (every declared version), upcasters, translators and reducers."""

    def __init__(self) -> None:
        self._specs: dict[tuple[str, int], EventSpec] = {}
        self._by_class: dict[type, EventSpec] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        self.translators: dict[str, Callable[..., Iterable[Any]]] = {}
        self.reducers: dict[str, Callable[[Payload, DomainEvent], Payload]] = {}
        self.deadlines: dict[str, Any] = {}  # rule name -> cdc.domain.deadlines.DeadlineRule
        self.erasures: dict[str, Any] = {}  # aggregate -> cdc.domain.erasure.ErasureRule
        self.modules: tuple[str, ...] = ()

    # -- declaration -------------------------------------------------------------------------
    def add_event(self, spec: EventSpec) -> None:
        if spec.version < 1:
            raise EventDefinitionError(f"{spec.name}: version must be >= 1, got {spec.version}")
        if (spec.name, spec.version) in self._specs:
            raise EventDefinitionError(f"{spec.name} v{spec.version} is declared twice")
        for other in self.versions(spec.name):
            if other.aggregate != spec.aggregate:
                raise EventDefinitionError(f"{spec.name}: every version must belong to aggregate {other.aggregate!r}")
        self._specs[(spec.name, spec.version)] = spec
        if spec.payload_class is not None:
            self._by_class[spec.payload_class] = spec

    def add_upcaster(self, name: str, from_version: int, fn: Upcaster) -> None:
        if (name, from_version) in self._upcasters:
            raise EventDefinitionError(f"{name}: two upcasters from v{from_version}")
        self._upcasters[(name, from_version)] = fn

    def add_translator(self, table: str, fn: Callable[..., Iterable[Any]]) -> None:
        if "." not in table:
            table = f"public.{table}"
        if table in self.translators:
            raise EventDefinitionError(f"table {table} has two translators")
        self.translators[table] = fn

    def add_reducer(self, aggregate: str, fn: Callable[[Payload, DomainEvent], Payload]) -> None:
        self.reducers[aggregate] = fn

    def add_deadline(self, rule: Any) -> None:
        if rule.name in self.deadlines:
            raise EventDefinitionError(f"deadline {rule.name!r} is declared twice")
        self.deadlines[rule.name] = rule

    def add_erasure(self, rule: Any) -> None:
        if rule.aggregate in self.erasures:
            raise EventDefinitionError(f"erasure of {rule.aggregate!r} is declared twice")
        self.erasures[rule.aggregate] = rule

    def merge(self, other: EventRegistry) -> None:
        """Add everything ``other`` declares (conflicts raise, as for a declaration made twice)."""
        for spec in other._specs.values():
            self.add_event(spec)
        for (name, version), fn in other._upcasters.items():
            self.add_upcaster(name, version, fn)
        for table, translate in other.translators.items():
            self.add_translator(table, translate)
        for aggregate, fold in other.reducers.items():
            self.add_reducer(aggregate, fold)
        for rule in other.deadlines.values():
            self.add_deadline(rule)
        for erase in other.erasures.values():
            self.add_erasure(erase)

    # -- lookup --------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted({name for name, _ in self._specs})

    def versions(self, name: str) -> list[EventSpec]:
        return sorted((s for (n, _), s in self._specs.items() if n == name), key=lambda s: s.version)

    def spec(self, name: str, version: int) -> EventSpec | None:
        return self._specs.get((name, version))

    def latest(self, name: str) -> EventSpec | None:
        versions = self.versions(name)
        return versions[-1] if versions else None

    def spec_of(self, payload: object) -> EventSpec:
        spec = self._by_class.get(type(payload))
        if spec is None:
            raise EventDefinitionError(f"{type(payload).__name__} is not a declared event (use @event)")
        return spec

    def upcasters(self, name: str) -> dict[int, Upcaster]:
        """``from_version -> fn`` for one event type."""
        return {v: fn for (n, v), fn in self._upcasters.items() if n == name}

    def check_chains(self) -> list[str]:
        """Problems: a version that cannot reach its type's latest version through upcasters."""
        problems = []
        for name in self.names():
            latest = self.versions(name)[-1].version
            steps = self.upcasters(name)
            for spec in self.versions(name)[:-1]:
                missing = [v for v in range(spec.version, latest) if v not in steps]
                if missing:
                    problems.append(
                        f"{name} v{spec.version} cannot be upcast to v{latest}: no upcaster from "
                        + ", ".join(f"v{v}" for v in missing)
                    )
        return problems

    # -- reading -------------------------------------------------------------------------------
    def upcast(self, event: DomainEvent) -> DomainEvent:
        """``event`` in the latest shape of its type; unknown types and generic events pass as they are."""
        latest = self.latest(event.event_type)
        if latest is None or event.version >= latest.version:
            return event
        payload: Payload = copy.deepcopy(dict(event.payload))  # an upcaster may edit nested values in place
        steps = self.upcasters(event.event_type)
        for version in range(event.version, latest.version):
            step = steps.get(version)
            if step is None:
                raise EventDefinitionError(f"{event.event_type}: no upcaster from v{version} to v{version + 1}")
            payload = step(dict(payload))
        return event.with_payload(latest.version, payload)


_active: list[EventRegistry] = [EventRegistry()]


def active_registry() -> EventRegistry:
    return _active[-1]


@contextlib.contextmanager
def collecting(registry: EventRegistry) -> Iterator[EventRegistry]:
    """Route declarations made inside the block (e.g. while importing a module) to ``registry``."""
    _active.append(registry)
    try:
        yield registry
    finally:
        _active.pop()


_module_registries: dict[str, EventRegistry] = {}


def _module_registry(name: str) -> EventRegistry:
    """The declarations of one module, collected once per process.

    A module is executed once (a second import or reload would make new payload classes
    and break registries already holding the old ones); one imported before, outside
    :func:`load_modules`, is re-executed once so its declarations can be collected.
    """
    if name not in _module_registries:
        registry = EventRegistry()
        with collecting(registry):
            try:
                if name in sys.modules:
                    importlib.reload(sys.modules[name])
                else:
                    importlib.import_module(name)
            except ImportError as e:
                raise EventDefinitionError(f"cannot import translator module {name!r}: {e}") from e
        _module_registries[name] = registry
    return _module_registries[name]


def load_modules(modules: Iterable[str]) -> EventRegistry:
    """A registry holding the declarations of ``modules``; each module is imported once per process."""
    registry = EventRegistry()
    names = tuple(m.strip() for m in modules if m.strip())
    for name in names:
        registry.merge(_module_registry(name))
    registry.modules = names
    problems = registry.check_chains() + _deadline_problems(registry)
    if problems:
        raise EventDefinitionError("; ".join(problems))
    return registry


def _deadline_problems(registry: EventRegistry) -> list[str]:
    return [p for rule in registry.deadlines.values() for p in rule.problems(registry)]


# -- declaration decorators (write into the active registry) ----------------------------------
def event(
    name: str,
    *,
    version: int = 1,
    aggregate: str,
    key: str,
    tables: Iterable[str] = (),
    description: str = "",
    authored: bool = False,
) -> Callable[[type[_T]], type[_T]]:
    """Declare a dataclass as version ``version`` of event type ``name``. ``authored``: applications
    write it themselves (an outbox table or a logical message); the bridge validates and stores it."""

    def register(cls: type[_T]) -> type[_T]:
        if not dataclasses.is_dataclass(cls):
            raise EventDefinitionError(f"@event {name}: {cls.__name__} must be a dataclass")
        if key not in {f.name for f in dataclasses.fields(cls)}:
            raise EventDefinitionError(f"@event {name}: key field {key!r} is not a field of {cls.__name__}")
        own_doc = cls.__doc__ or ""
        if own_doc.startswith(f"{cls.__name__}("):  # the signature dataclasses writes when there is no docstring
            own_doc = ""
        doc = description or own_doc.strip().split("\n\n")[0].replace("\n", " ")
        active_registry().add_event(EventSpec(name, version, aggregate, key, cls, tuple(tables), doc, authored))
        return cls

    return register


def upcaster(name: str, *, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Declare the function lifting a ``name`` payload from ``from_version`` to ``from_version + 1``."""

    def register(fn: Upcaster) -> Upcaster:
        active_registry().add_upcaster(name, from_version, fn)
        return fn

    return register


def translator(table: str) -> Callable[[_T], _T]:
    """Declare the translator of ``schema.table`` (``public`` if no schema is given)."""

    def register(fn: _T) -> _T:
        active_registry().add_translator(table, fn)  # type: ignore[arg-type]
        return fn

    return register


def reducer(aggregate: str) -> Callable[[_T], _T]:
    """Declare how events of ``aggregate`` fold into its state: ``fn(state, event) -> state``."""

    def register(fn: _T) -> _T:
        active_registry().add_reducer(aggregate, fn)  # type: ignore[arg-type]
        return fn

    return register


def payload_dict(payload: object) -> Payload:
    """A declared event's payload as JSON-ready values."""
    if not dataclasses.is_dataclass(payload) or isinstance(payload, type):
        raise EventDefinitionError(f"{payload!r} is not an event payload")
    value = to_json_value({f.name: getattr(payload, f.name) for f in dataclasses.fields(payload)})
    assert isinstance(value, dict)
    return value
