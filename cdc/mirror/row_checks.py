"""SQL the change-log view runs on every row: does it fit the mirror, which values can it not hold. Pure."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from cdc.domain.changes import Column, TableSchema
from cdc.mirror.typemap import clickhouse_element_type, special_sql

if TYPE_CHECKING:
    from cdc.mirror.table import MirrorTable

_NULL_ON_MISMATCH = {"Int16", "Int32", "Int64", "UInt32", "Bool", "Date32", "UUID", "DateTime64(6, 'UTC')"}
_INT_RANGE = {"Int16": (-(2**15), 2**15 - 1), "Int32": (-(2**31), 2**31 - 1), "UInt32": (0, 2**32 - 1)}


def quote(identifier: str) -> str:
    return "`" + identifier.replace("\\", "\\\\").replace("`", "\\`") + "`"


def literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def raw(c: Column) -> str:
    """The column's JSON text in the row image."""
    return f"JSONExtractRaw(img_raw, {literal(c.name)})"


def unmirrorable(schema: TableSchema, reserved: frozenset[str] | set[str]) -> str | None:
    """Why this table cannot be captured (None: it can): the bridge leaves it out and says so."""
    if '"' in schema.ref.schema or '"' in schema.ref.table:
        return (
            "a double quote in its name: Debezium's snapshot query does not escape it (PostgreSQL rejects the"
            " query and the snapshot never ends); rename the table"
        )
    clash = sorted(reserved & {c.name for c in schema.columns})
    if clash:
        return (
            f"its column(s) {', '.join(clash)} have names the mirror uses for itself;"
            " rename them, or leave them out with exclude_columns"
        )
    nested: dict[str, list[str]] = {}
    for c in schema.columns:
        if c.is_array and "." in c.name:
            nested.setdefault(c.name.split(".", 1)[0], []).append(c.name)
    shared = next((names for names in nested.values() if len(names) > 1), None)
    if shared:
        return (
            f"its array columns {', '.join(shared)} share the prefix before a dot, which ClickHouse reads as one"
            " nested structure (arrays of equal length); rename one of them"
        )
    return None


def special_map_sql(
    table: MirrorTable,
    specials: list[Column],
    value_of: Callable[[Column], str] | None = None,
    raw_of: Callable[[Column], str] = raw,
) -> str:
    """``_special``: column -> what the source held, for each value the column cannot hold as is.
    ``value_of``/``raw_of``: SQL of a column's extracted value and JSON text (default: the change-log view's)."""
    if not specials:
        return "CAST(map(), 'Map(String, String)')"
    value_of = value_of or (lambda c: f"tupleElement(tup, {literal(c.name)})")
    names = ", ".join(literal(c.name) for c in specials)
    values = ", ".join(
        f"if({raw_of(c)} = 'null', 'NULL', '')"
        if table.textual(c)
        else special_sql(c, value_of(c), raw_of(c), table.bounds)
        for c in specials
    )
    return (
        f"mapFromArrays(arrayFilter((k, v) -> v != '', [{names}], [{values}]), arrayFilter(v -> v != '', [{values}]))"
    )


def drift_sql(table: MirrorTable) -> str:
    """True for a change the mirror cannot take as it is (the sink follows the source, then retries).

    Cheap on purpose (it runs for every row): one key scan of the image, then per column only
    comparisons on the converted value; the image text is searched only for a NULL result.
    """
    shapes = " OR ".join(
        f"{'keys' if i else '(JSONExtractKeys(img_raw) AS keys)'} ="
        f" [{', '.join(literal(n) for n in shape)}]::Array(String)"
        for i, shape in enumerate(table.known.accepted_shapes())
    )
    checks = [f"(op != 'd' AND NOT ({shapes}))"]
    for plan in table.state_plans:
        c, name = plan.column, quote(plan.name)
        if c.is_array or table.textual(c) or c.name in table.known.key:
            continue
        if not plan.nullable:  # NULL into a NOT NULL column: the source dropped NOT NULL
            checks.append(f"(op != 'd' AND isNull({name}))")
        element = clickhouse_element_type(c)
        if element in _NULL_ON_MISMATCH or (c.pg_type == "timestamptz"):
            # a JSON value of another type converts to NULL: the source changed the column's type
            key = literal(f'"{c.name}":')
            null = ", ".join(literal(f'"{c.name}":{sp}null') for sp in ("", " "))
            checks.append(
                f"(isNull({name}) AND position(img_raw, {key}) > 0 AND NOT multiSearchAny(img_raw, [{null}]))"
            )
        bounds = _INT_RANGE.get(element)
        if bounds:
            value = f"tupleElement(tup, {literal(c.name)})"
            checks.append(f"NOT ifNull({value} BETWEEN {bounds[0]} AND {bounds[1]}, 1)")
    return " OR ".join(checks)
