"""Schema evolution of a mirrored table: what the ClickHouse side holds, and how it follows the source.

Pure: no IO. :class:`~cdc.mirror.model.MirrorModel` is what the ClickHouse tables of one captured
table hold (every column ever mirrored, in order, with what became of it). :func:`reconcile` takes the
model, the source catalog's current definition and the row-image shapes seen in a batch, and
returns the next model and what changed, as :class:`SchemaNotice`. Policy (PeerDB-like):

* added column — added to the change log and state (Nullable: rows not changed since hold NULL);
* dropped column — kept, made Nullable; later rows hold NULL there;
* renamed column — reported as a rename (a drop and an add of the same type at once);
* type change — widened in place when every old value fits the new type (int2 -> int4 -> int8,
  float4 -> float8, numeric precision/scale up, varchar -> text, ...); otherwise the column becomes
  text from then on (old values rendered by ClickHouse, new ones as Debezium sent them), so no
  value is ever converted into a wrong one;
* NOT NULL dropped — the column becomes Nullable.

Applying a change early (the catalog may be ahead of the stream) is always safe: older
row images still match a tolerated shape and a widened or text column holds their values too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from cdc.domain.changes import Column, TableSchema
from cdc.mirror.model import MirrorModel, SchemaNotice
from cdc.mirror.typemap import clickhouse_base_type, clickhouse_element_type, is_raw

Shape = tuple[tuple[str, str], ...]  # a row image: (column, kind of its JSON value) in order
_INT_RANK = {"Int16": 1, "Int32": 2, "Int64": 3}
_DECIMAL = re.compile(r"Decimal\((\d+), (\d+)\)")


def value_kind(value: Any) -> str:
    """The first character of ``value`` written as JSON (numbers as ``0``)."""
    if value is None:
        return "n"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int | float):
        return "0"
    if isinstance(value, str):
        return '"'
    return "[" if isinstance(value, list) else "{"


def shape_of(image: Mapping[str, Any]) -> Shape:
    return tuple((k, value_kind(v)) for k, v in image.items())


def widens(old: Column, new: Column) -> bool:
    """Every value of ``old``'s ClickHouse type fits ``new``'s unchanged (an in-place ALTER is safe)."""
    if old.is_array != new.is_array:
        return False
    a, b = clickhouse_element_type(old), clickhouse_element_type(new)
    if a == b:
        return old.pg_type == new.pg_type or (
            a == "String" and not is_raw(old) and not is_raw(new) and old.pg_type != "bytea" and new.pg_type != "bytea"
        )
    if a in _INT_RANK and b in _INT_RANK:
        return _INT_RANK[a] < _INT_RANK[b]
    if (a, b) == ("Float32", "Float64"):
        return True
    da, db = _DECIMAL.fullmatch(a), _DECIMAL.fullmatch(b)
    if da and db:
        (p1, s1), (p2, s2) = (int(x) for x in da.groups()), (int(x) for x in db.groups())
        return s2 >= s1 and p2 - s2 >= p1 - s1
    return bool(da) and old.pg_type == new.pg_type == "numeric" and b == "String"  # numeric(p,s) -> numeric


@dataclass
class _Work:
    model: MirrorModel
    table: str
    lsn: int | None
    at: float
    notices: list[SchemaNotice] = field(default_factory=list)

    def note(self, kind: str, column: str, detail: str) -> None:
        self.notices.append(SchemaNotice(self.table, kind, column, detail, self.lsn, self.at))


def reconcile(
    model: MirrorModel,
    source: TableSchema | None,
    observed: Iterable[Shape] = (),
    *,
    table: str,
    lsn: int | None = None,
    at: float = 0.0,
) -> tuple[MirrorModel, list[SchemaNotice]]:
    """The next model after following ``source`` and accepting the row-image shapes ``observed``."""
    work = _Work(model, table, lsn, at)
    if source is not None:
        _follow_catalog(work, source)
    for shape in observed:
        _accept(work, shape)
    return work.model, work.notices


def _follow_catalog(work: _Work, source: TableSchema) -> None:
    m = work.model
    old_live = m.live
    added = [c for c in source.columns if c.name not in m.index or c.name in m.dropped]
    gone = [name for name in old_live if name not in source.column_index]
    columns = list(m.columns)
    dropped, as_text, nullable = set(m.dropped) - {c.name for c in added}, set(m.as_text), set(m.nullable)
    for name in gone:
        dropped.add(name)
        if name in m.key:
            work.note("key_changed", name, "a key column left the source table; the mirror keeps its old key")
    for c in added:
        nullable.add(c.name)  # rows not changed since the ALTER hold NULL, whatever the source's default
        if c.name not in m.index:
            columns.append(c)
            continue
        old = m.index[c.name]  # dropped before and added again: the ClickHouse column must hold both
        if _type(old) != _type(c) and not widens(old, c):
            as_text.add(c.name)
        columns[[x.name for x in columns].index(c.name)] = c
    for i, old in enumerate(columns):
        new = source.column_index.get(old.name)
        if new is None or old.name in gone or any(c.name == old.name for c in added) or new == old:
            continue
        columns[i] = _changed(work, old, new, as_text, nullable)
    renamed = _renames(work, [m.index[n] for n in gone], added)
    for c in added:
        if c.name not in renamed:
            work.note("added", c.name, f"new column ({_type(c)}); rows not changed since hold NULL")
    for name in gone:
        if name not in renamed.values():
            work.note("dropped", name, "column dropped in the source; kept in the mirror, NULL in newer rows")
    if set(source.key) != set(m.key):
        work.note(
            "key_changed",
            ",".join(source.key),
            f"the source key is now ({', '.join(source.key)});"
            f" the mirror keeps ({', '.join(m.key)}) — recreate the mirror to follow it",
        )
    shapes = m.shapes + ((old_live,) if old_live != tuple(c.name for c in columns if c.name not in dropped) else ())
    work.model = replace(
        m,
        columns=tuple(columns),
        dropped=frozenset(dropped),
        as_text=frozenset(as_text),
        nullable=frozenset(nullable),
        shapes=shapes,
    )


def _changed(work: _Work, old: Column, new: Column, as_text: set[str], nullable: set[str]) -> Column:
    name = old.name
    if new.nullable and not old.nullable and name not in nullable:
        nullable.add(name)
        work.note("now_nullable", name, "NOT NULL dropped in the source; the mirror column is now Nullable")
    elif old.nullable and not new.nullable:
        nullable.add(name)  # the ClickHouse column stays Nullable
    if _type(old) == _type(new) or name in as_text:
        return new  # a text column takes any value
    if name in work.model.key:
        work.note(
            "key_changed",
            name,
            f"key column type changed {_type(old)} -> {_type(new)}: not followed; recreate the mirror",
        )
        return old
    if widens(old, new):
        detail = f"{_type(old)} -> {_type(new)}: widened in place"
        if clickhouse_base_type(old) == clickhouse_base_type(new):
            detail = f"{_type(old)} -> {_type(new)}: same ClickHouse type, nothing to do"
        work.note("type_widened", name, detail)
    else:
        as_text.add(name)
        work.note(
            "type_changed",
            name,
            f"{_type(old)} -> {_type(new)}: values from now on are kept as text"
            " (older values converted to text), never converted into the old type",
        )
    return new


def _renames(work: _Work, gone: list[Column], added: list[Column]) -> dict[str, str]:
    """new name -> old name, when exactly one column went and one of the same type came."""
    fresh = [c for c in added if c.name not in work.model.index]
    if len(gone) != 1 or len(fresh) != 1 or _type(gone[0]) != _type(fresh[0]):
        return {}
    old, new = gone[0], fresh[0]
    work.note(
        "renamed",
        new.name,
        f"{old.name} -> {new.name} (seen as a drop and an add of the same type):"
        f" {old.name} kept with NULL in newer rows, {new.name} added",
    )
    return {new.name: old.name}


def _accept(work: _Work, shape: Shape) -> None:
    """Make ``shape`` pass the drift check: unknown columns are added as text, odd values widen the column."""
    m = work.model
    names = tuple(k for k, _ in shape)
    columns, as_text, nullable = list(m.columns), set(m.as_text), set(m.nullable)
    for name, kind in shape:
        if name not in m.index:
            columns.append(Column(name, "unknown"))
            nullable.add(name)
            work.note(
                "unknown_column",
                name,
                "in the change stream but not in the source catalog (dropped again?); mirrored as its JSON text",
            )
        elif kind not in m.kinds(name):
            if kind == "n":
                nullable.add(name)
                work.note("now_nullable", name, "NULL arrived for a NOT NULL column; the mirror column is now Nullable")
            elif name not in m.key:
                as_text.add(name)
                work.note(
                    "type_changed", name, "a value of another JSON type arrived; the column is kept as text from now on"
                )
    # a column the image lacks reads as NULL
    nullable |= {c.name for c in m.columns if c.name not in names and c.name not in m.key}
    shapes = m.shapes if names in m.accepted_shapes() else (*m.shapes, names)
    work.model = replace(
        m, columns=tuple(columns), as_text=frozenset(as_text), nullable=frozenset(nullable), shapes=shapes
    )


def _type(c: Column) -> str:
    base = c.pg_type
    if c.numeric_precision is not None:
        base += f"({c.numeric_precision},{c.numeric_scale or 0})"
    return base + ("[]" if c.is_array else "")


__all__ = ["MirrorModel", "SchemaNotice", "Shape", "reconcile", "shape_of", "value_kind", "widens"]
