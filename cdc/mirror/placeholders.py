"""Debezium's stand-ins for an unchanged TOASTed value, per ClickHouse column type. Pure.

Under REPLICA IDENTITY DEFAULT an UPDATE that leaves a large (TOASTed) value alone does not log
it, and Debezium 3.6 sends a stand-in whose shape depends on the column's type (measured through
the real connector, tests/e2e/test_any_schema.py):

* text-like columns (text, varchar, json, jsonb, xml, tsvector, ...): the text
  ``__debezium_unavailable_value``; hstore: ``{"__debezium_unavailable_value": "__debezium_unavailable_value"}``;
* arrays of text-like types: ``["__debezium_unavailable_value"]``;
* int4[], int8[], date[]: the placeholder's bytes as numbers ``[95, 95, 100, ...]``;
* uuid[]: ``["b68a35a7-17ad-35b3-af2a-ae46edb4545a"]`` (a name-based UUID of those bytes);
* every other type (bytea, numeric, numeric[], float and bytea arrays, ranges, ...): **NULL**,
  which cannot be told from a real NULL. Debezium fills those (and every type) from the old row
  when the table has REPLICA IDENTITY FULL; the bridge warns about such tables (README, "Types").
"""

from __future__ import annotations

from collections.abc import Sequence

from cdc.domain.changes import Column, TableSchema
from cdc.domain.names import sql_table
from cdc.domain.values import (
    HSTORE_PLACEHOLDER,
    INT_ARRAY_PLACEHOLDER,
    PLACEHOLDER,
    PLACEHOLDER_B64,
    UUID_ARRAY_PLACEHOLDER,
    standin_lost,
)

_INT_ARRAY_TYPES = {"Array(Nullable(Int32))", "Array(Nullable(Int64))", "Array(Nullable(Date32))"}


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def placeholder_test(base_type: str, expr: str) -> str | None:
    """SQL true when ``expr`` (a value of a column of ClickHouse type ``base_type``) is the stand-in;
    None when a value of that type never is."""
    if base_type == "Array(Nullable(String))":
        return f"has({expr}, {_literal(PLACEHOLDER)})"
    if base_type == "String":
        texts = ", ".join(_literal(t) for t in (PLACEHOLDER, PLACEHOLDER_B64, HSTORE_PLACEHOLDER))
        return f"ifNull({expr} IN ({texts}), 0)"
    if base_type in _INT_ARRAY_TYPES:
        return f"arrayMap(x -> toInt64(x), {expr}) = [{', '.join(map(str, INT_ARRAY_PLACEHOLDER))}]"
    if base_type == "Array(Nullable(UUID))":
        return f"{expr} = [toUUID({_literal(UUID_ARRAY_PLACEHOLDER)})]"
    return None


def toast_warnings(schemas: Sequence[TableSchema]) -> list[str]:
    """One line per table whose unchanged large values would arrive as NULL, with the fix."""
    out = []
    for schema in schemas:
        if schema.replica_identity not in ("d", "i"):
            continue  # FULL: Debezium fills every unchanged value from the old row
        lost = [c.name for c in schema.columns if _toast_lost(c)]
        if lost:
            out.append(
                f"{schema.ref.display}: an update that leaves a large value of {', '.join(lost)} unchanged arrives"
                " as NULL (Debezium sends no placeholder for these types) and the mirror shows NULL; fix:"
                f" ALTER TABLE {sql_table(schema.ref.schema, schema.ref.table)} REPLICA IDENTITY FULL"
            )
    return out


def _toast_lost(c: Column) -> bool:
    """Out of line in practice (bytea, arrays; numeric's storage keeps it inline) and sent as NULL unchanged."""
    return (c.is_array or c.pg_type == "bytea") and standin_lost(c.pg_type, c.is_array)
