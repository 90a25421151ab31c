"""Projections: reports over the event store, each declared once in SQL and rebuilt by scope.

Pure: builds SQL text only. A projection names its *scope* column — the unit it recomputes
(a day, a customer, an order). ``scopes_sql`` says which scopes the events stored in a window
touched; ``rows_sql`` computes every row of a set of scopes *from the whole event store*. An
incremental build therefore writes exactly what a full build would for those scopes, which is
what makes incremental == full hold by construction rather than by care.

Both SQL texts use ClickHouse's own query-parameter syntax (``{name:Type}``), so they can be run
as they are in clickhouse-client with ``--param_name=...``:

* ``scopes_sql``: ``{lo:DateTime64(6)}`` and ``{hi:DateTime64(6)}`` bound the events' ``stored_at``
  (``lo`` exclusive, ``hi`` inclusive); it returns one column named like the scope column.
* ``rows_sql``: ``{scopes:Array(<scope type>)}`` and ``{full:Bool}``; write the restriction with
  :func:`in_scope`. It must return every declared column, one row per key.

:func:`bind` renders parameters as typed literals, because ``INSERT ... SELECT`` goes through the
warehouse port's ``command``, which takes no parameters.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cdc.errors import CdcError

DATABASE = "reports"
RESERVED = frozenset({"_version", "_is_deleted"})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PARAMETER = re.compile(r"\{(\w+):([^{}]+)\}")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class ProjectionError(CdcError):
    """A projection that cannot be declared or built; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Projection:
    """One report: table ``reports.<name>``, its columns, key, scope column and SQL.

    ``scope`` must be one of the key columns: a key then never moves between scopes, so
    recomputing the scopes an event touched is enough to find every row it changed.
    ``event_types`` and ``tables`` (mirror views such as ``shop.products``) are its lineage: its build
    waits while a check of those mirrors, or of the event store, fails.
    """

    name: str
    description: str
    columns: tuple[tuple[str, str], ...]  # (name, ClickHouse type)
    key: tuple[str, ...]
    scope: str
    scopes_sql: str
    rows_sql: str
    event_types: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    daily_partitions: bool = False  # a Date scope: Dagster shows one partition per day, and rebuilds days

    def __post_init__(self) -> None:
        for problem in _problems(self):
            raise ProjectionError(f"projection {self.name!r}: {problem}")

    @property
    def view(self) -> str:
        """What readers query: current rows, deletions hidden, no FINAL needed."""
        return f"{DATABASE}.{self.name}"

    @property
    def storage(self) -> str:
        return f"{DATABASE}._{self.name}"

    @property
    def shadow(self) -> str:
        return f"{DATABASE}._{self.name}__shadow"

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    @property
    def value_columns(self) -> tuple[str, ...]:
        return tuple(name for name in self.column_names if name not in self.key)

    @property
    def scope_type(self) -> str:
        return dict(self.columns)[self.scope]

    def column_type(self, name: str) -> str:
        return dict(self.columns)[name]


def _problems(p: Projection) -> list[str]:
    names = p.column_names
    problems = [f"{n!r} is not a plain identifier" for n in (p.name, *names) if not _IDENTIFIER.fullmatch(n)]
    problems += [f"column {n} is reserved for the storage table" for n in names if n in RESERVED]
    if len(set(names)) != len(names):
        problems.append("a column is declared twice")
    if not p.key:
        problems.append("the key is empty")
    problems += [f"key column {k} is not a declared column" for k in p.key if k not in names]
    if p.scope not in p.key:
        problems.append(f"scope {p.scope} must be a key column (a key must never move between scopes)")
    elif p.daily_partitions and p.scope_type != "Date":
        problems.append(f"daily partitions need a Date scope; {p.scope} is {p.scope_type}")
    for text, wanted in ((p.scopes_sql, ("lo", "hi")), (p.rows_sql, ("scopes", "full"))):
        found = {m.group(1) for m in _PARAMETER.finditer(text)}
        problems += [f"SQL does not use the parameter {{{w}:...}}" for w in wanted if w not in found]
    return problems


def in_scope(expression: str, scope_type: str) -> str:
    """The restriction ``rows_sql`` applies: everything in a full build, else the given scopes."""
    return f"({{full:Bool}} OR has({{scopes:Array({scope_type})}}, {expression}))"


@dataclass(frozen=True, slots=True)
class Sql:
    """A parameter value that is already an SQL expression (e.g. a scalar subquery)."""

    text: str


def bind(sql: str, parameters: Mapping[str, object]) -> str:
    """``sql`` with each ``{name:Type}`` replaced by ``CAST(<literal> AS Type)``.

    One pass: text substituted in is never scanned again, so values cannot inject parameters.
    """

    def render(match: re.Match[str]) -> str:
        name, kind = match.group(1), match.group(2).strip()
        if name not in parameters:
            raise ProjectionError(f"no value for query parameter {{{name}:{kind}}}")
        return f"CAST({literal(parameters[name])} AS {kind})"

    return _PARAMETER.sub(render, sql)


def literal(value: object) -> str:
    """A Python value as a ClickHouse literal; datetimes must be timezone-aware (instants)."""
    if isinstance(value, Sql):
        return f"({value.text})"
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    if isinstance(value, decimal.Decimal) and value.is_finite():
        return quote(str(value))
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, dt.datetime):
        return f"fromUnixTimestamp64Micro({micros(value)}, 'UTC')"
    if isinstance(value, dt.date):
        return f"toDate({quote(value.isoformat())})"
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    raise ProjectionError(f"cannot write {value!r} as a ClickHouse literal")


def quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def micros(moment: dt.datetime) -> int:
    """Microseconds since the epoch; a naive datetime is refused (its instant is unknown)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ProjectionError(f"datetime {moment.isoformat()} has no timezone; pass an aware datetime")
    return (moment - _EPOCH) // dt.timedelta(microseconds=1)


def from_micros(value: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=value)
