"""The initial load's copy path: PostgreSQL writes each existing row's values as Debezium's snapshot would
encode them, as plain tab-separated columns, and ClickHouse converts them with the mirror's own rules.
Pure: builds SQL only.

``COPY (SELECT ...) TO STDOUT`` (text format, whose escaping ClickHouse's TSV reads back byte for byte)
streams each row's columns into the table's Null ``_copy_`` table, typed as the stream's *extract types*
(:func:`cdc.mirror.typemap.extract_type`: dates as days, timestamps as epoch microseconds, numerics as
exact text...). Its materialized view applies :func:`cdc.mirror.typemap.value_sql` and the ``_special``
rules to them, as the change-log view does to a streamed row's JSON, so a copied row gets exactly the
conversions a streamed one does, with no JSON and no per-row Python on the way, and there is one type
mapping, not two. Arrays and the columns the mirror keeps as text travel as their Debezium JSON. Each
value is encoded as Debezium 3.6 encodes it (``decimal.handling.mode=string``, base64 binaries, ISO 8601
intervals, the JDBC driver's infinity codes; compared value by value in tests/e2e/test_any_schema.py).
A column type this module cannot encode makes the table :class:`Uncopyable`: Debezium's snapshot reads it.

**Why the result is exact** (the copy runs while the stream runs): copied rows carry LSN 0, below every
streamed change, and the copy reads the table only after the replication slot exists. For any row, the
mirror keeps the change with the highest LSN (``cdc.mirror.table``). The stream holds every change
committed after the slot's position ``S``; a copy read at ``T >= S`` holds the row as committed at
``T``. If the stream has a change of the row, the newest such change is the row's newest state (a change
committed before ``T`` is also in the copy, one committed after ``T`` is newer than it), and it wins over
the copy. If the stream has none, nothing changed the row after ``S``, so the copy is its state. Deletes
are streamed changes too, and a row inserted after ``S`` is in the stream whether or not the copy saw
it. So any chunk may be read at any time after ``S``, each in its own transaction, and read again after
a crash: the mirror converges to the source either way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from cdc.domain.changes import Column, TableSchema
from cdc.domain.names import sql_table
from cdc.domain.values import INFINITE_DATES, TS_INFINITY, TS_MINUS_INFINITY
from cdc.errors import CdcError
from cdc.mirror.row_checks import literal, quote, special_map_sql
from cdc.mirror.typemap import NARROW, extract_type, value_sql

if TYPE_CHECKING:
    from cdc.mirror.table import MirrorTable

# COPY's text output of these is what ClickHouse's TSV reads for the extract type (NaN, Infinity, t/f too)
_NATIVE = {"int2", "int4", "int8", "oid", "float4", "float8", "bool"}
_TEXT = {
    "text", "varchar", "bpchar", "name", "citext", "json", "jsonb", "xml", "tsvector", "uuid", "macaddr",
    "macaddr8", "ltree", "int4range", "int8range", "numrange", "daterange", "tsrange", "tstzrange",
}  # fmt: skip
_BASE64_TEXT = {"box", "circle", "line", "lseg", "path", "polygon"}  # unknown to Debezium: base64 of the text
_ARRAY_AS_IS = _NATIVE | _TEXT | {"inet", "cidr"}  # to_json of the array is Debezium's array
_DATE_INF, _DATE_MINUS_INF = (min(k for k, v in INFINITE_DATES.items() if v == t) for t in ("infinity", "-infinity"))


class Uncopyable(CdcError):
    """A table whose values the copy path cannot encode as Debezium would: its snapshot stays Debezium's."""


def as_json(table: MirrorTable, c: Column) -> bool:
    """Whether ``c`` travels as its Debezium JSON (arrays, and columns the mirror keeps as JSON text)."""
    return c.is_array or table.textual(c)


def copy_table_ddl(table: MirrorTable, prefix: str = "_copy_") -> str:
    """The Null table a copy inserts into: one column per mirror column, as the change-log view extracts it."""
    cols = ", ".join(
        f"{name} {'Nullable(String)' if as_json(table, c) else extract_type(c)}"
        for name, c in zip(copy_columns(table), table.columns, strict=True)
    )
    return f"CREATE TABLE {table.qualified(prefix)} ({cols}) ENGINE = Null"


def copy_columns(table: MirrorTable) -> list[str]:
    """The ``_copy_`` table's column names, one per mirror column in order: by position, so the view's
    output columns (named as the source's) never shadow its inputs."""
    return [f"c{i}" for i in range(len(table.columns))]


def copy_view_select(table: MirrorTable, prefix: str = "_copy_") -> str:
    """The ``_copy_`` table's rows (or those of ``<prefix><name>``) as change-log rows (``op`` r, LSN 0),
    converted as streamed ones are."""
    position = {c.name: f"c{i}" for i, c in enumerate(table.columns)}
    values = []
    for plan in table.log_plans:
        c = plan.column
        got = _extracted(table, c, position[c.name])
        expr = got if table.textual(c) else value_sql(c, got, table.bounds)
        if not plan.nullable and not plan.base_type.startswith("Array("):
            expr = f"assumeNotNull({expr})"
        values.append(f"{expr} AS {quote(c.name)}")
    special = special_map_sql(
        table,
        table.specials(),
        lambda c: _extracted(table, c, position[c.name]),
        lambda c: _raw(table, c, position[c.name]),
    )
    return (
        f"SELECT {', '.join(values)}, {special} AS _special, 'r' AS _op, toUInt64(0) AS _lsn,"
        " CAST(NULL AS Nullable(Int64)) AS _txid, now64(3, 'UTC') AS _commit_ts, toUInt8(1) AS _snapshot"
        f" FROM {table.qualified(prefix)}"
    )


def _extracted(table: MirrorTable, c: Column, name: str) -> str:
    """Column ``name`` as the change-log view's ``tup`` holds it (or, for a textual column, its final text)."""
    if table.textual(c) and c.is_array:
        return f"JSONExtract(ifNull({name}, 'null'), 'Array(Nullable(String))')"
    if table.textual(c):
        return f"if(startsWith({name}, '\"'), JSONExtractString({name}), {name})"
    if c.is_array:
        return f"JSONExtract(ifNull({name}, 'null'), {literal(extract_type(c))})"
    return name


def _raw(table: MirrorTable, c: Column, name: str) -> str:
    """Column ``name``'s JSON text, as the change-log view's ``raw`` is (used for arrays and textual columns)."""
    return f"ifNull({name}, 'null')" if as_json(table, c) else f"ifNull(toString({name}), 'null')"


def copy_query(table: MirrorTable, live: TableSchema, where: str = "", masks: Mapping[str, str] | None = None) -> str:
    """``SELECT`` one TSV column per column of the ``_copy_`` table, from the source table as it is now
    (``live``): a mirror column the source no longer has is NULL. ``masks``: column -> a PostgreSQL
    expression read instead of the column (its masked value, as Debezium would send it)."""
    have = live.column_index
    parts = []
    for c in table.columns:
        now = have.get(c.name)
        if now is None:
            parts.append("NULL")
            continue
        ref = f"({masks[c.name]})" if masks and c.name in masks else pg_ident(c.name)
        parts.append(f"({_json(now, ref)})::text" if as_json(table, c) else _copy_value(now, ref))
    source = live.ref
    return f"SELECT {', '.join(parts) or 'NULL'} FROM {sql_table(source.schema, source.table)}" + (
        f" WHERE {where}" if where else ""
    )


def _copy_value(c: Column, ref: str) -> str:
    """:func:`_plain`, but a ``timestamptz`` of the years every mirror holds (1900-2299) as PostgreSQL's own
    text (``2026-12-06 11:51:18.48+00``: the session is in UTC), which ClickHouse parses to the same value
    as Debezium's ``2026-12-06T11:51:18.480000Z`` and for which no ``_special`` text is kept: ``to_char`` is
    40% of the source's work in a copy. Values outside those years keep Debezium's spelling."""
    if c.pg_type != "timestamptz" or c.is_array:
        return _plain(c, ref)
    return (
        f"CASE WHEN {ref} >= '{NARROW.first} 00:00:00+00' AND {ref} < '{int(NARROW.last[:4]) + 1}-01-01 00:00:00+00'"
        f" THEN {ref}::text ELSE {_plain(c, ref)} END"
    )


def envelope_query(schema: TableSchema, where: str = "") -> str:
    """``SELECT <n>, <change message>`` per row: the row numbered, and as the message Debezium's snapshot
    would send (``op`` r, LSN 0), for the domain events of existing rows (:mod:`cdc.mirror.snapshot_events`)."""
    ref = schema.ref
    parts = [
        f"{pg_literal(json.dumps(c.name, ensure_ascii=False) + ':')}"
        f" || coalesce(({_json(c, pg_ident(c.name))})::text, 'null')"
        for c in schema.columns
    ]
    after = " || ',' || ".join(parts) if parts else "''"
    names = json.dumps({"name": ref.source, "schema": ref.schema, "table": ref.table}, separators=(",", ":"))[1:-1]
    head = '{"op":"r","before":null,"source":{"lsn":0,"txId":null,"snapshot":"true",' + names + ',"ts_ms":'
    now_ms = "(extract(epoch FROM now()) * 1000)::bigint"  # when the snapshot was read, as Debezium's is
    body = f"{pg_literal(head)} || {now_ms} || '}},\"after\":{{' || {after} || '}}}}'"
    return f"SELECT row_number() OVER (), {body} FROM {sql_table(ref.schema, ref.table)}" + (
        f" WHERE {where}" if where else ""
    )


def copyable(schema: TableSchema) -> str | None:
    """Why the copy path cannot load this table (None: it can)."""
    for c in schema.columns:
        try:
            _json(c, "x")
        except Uncopyable as e:
            return str(e)
    return None


def _json(c: Column, ref: str) -> str:
    """SQL giving the column's value as Debezium's JSON (a ``json`` value, or NULL)."""
    if c.is_enum:
        return f"to_json({ref}::text[])" if c.is_array else f"to_json({ref}::text)"
    if c.pg_type in ("numeric", "money") and not c.is_array:
        return f"to_json({ref}::numeric::text)"  # decimal.handling.mode=string
    if not c.is_array:
        return f"to_json({ref})" if c.pg_type in _NATIVE else f"to_json({_plain(c, ref)})"
    if c.pg_type in _ARRAY_AS_IS:
        return f"to_json({ref})"
    if c.pg_type in ("numeric", "money"):
        return f"to_json({ref}::numeric[]::text[])"
    if c.pg_type in ("date", "timestamp", "timestamptz", "time"):
        element = _json(Column(c.name, c.pg_type), "e.v")
        return (
            f"CASE WHEN {ref} IS NOT NULL THEN coalesce((SELECT json_agg({element} ORDER BY e.i)"
            f" FROM unnest({ref}) WITH ORDINALITY AS e(v, i)), '[]'::json) END"
        )
    raise Uncopyable(f"column {c.name} is {c.pg_type}[]")


def _plain(c: Column, ref: str) -> str:
    """SQL whose text output is the (scalar) column's value as Debezium encodes it, unquoted."""
    kind = c.pg_type
    if c.is_enum or kind in _TEXT:
        return f"{ref}::text"
    if kind in _NATIVE:
        return ref
    if kind in ("inet", "cidr"):  # ::text would add /32 where the output function (and Debezium) does not
        return f"CASE WHEN {ref} IS NOT NULL THEN format('%s', {ref}) END"
    if kind in ("numeric", "money"):
        return f"{ref}::numeric"  # money's own output follows lc_monetary
    if kind == "date":
        return (
            f"CASE WHEN {ref} = 'infinity' THEN {_DATE_INF} WHEN {ref} = '-infinity' THEN {_DATE_MINUS_INF}"
            f" ELSE {ref} - DATE '1970-01-01' END"
        )
    if kind == "timestamp":
        return (
            f"CASE WHEN {ref} = 'infinity' THEN {TS_INFINITY} WHEN {ref} = '-infinity' THEN"
            f" {TS_MINUS_INFINITY} ELSE (extract(epoch FROM {ref}) * 1000000)::bigint END"
        )
    if kind == "timestamptz":
        return (
            f"CASE WHEN isfinite({ref}) THEN to_char({ref} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
            f" ELSE {ref}::text END"
        )
    if kind == "time":
        return f"(extract(epoch FROM {ref}) * 1000000)::bigint"
    if kind == "timetz":
        return f"(({ref}) AT TIME ZONE 'UTC')::time::text || 'Z'"
    if kind == "interval":
        fields = ", ".join(f"extract({f} FROM {ref})" for f in ("year", "month", "day", "hour", "minute"))
        iso = f"format('P%sY%sM%sDT%sH%sM%sS', {fields}, trim_scale(extract(second FROM {ref})))"
        return f"CASE WHEN {ref} IS NOT NULL THEN {iso} END"  # format() reads NULL as ''
    if kind == "hstore":  # Debezium: a JSON object as text, compact
        pairs = (
            "string_agg(to_json(k.key)::text || ':' || coalesce(to_json(k.value)::text, 'null'), ',' ORDER BY k.key)"
        )
        obj = f"(SELECT '{{' || {pairs} || '}}' FROM each({ref}) AS k)"
        return f"CASE WHEN {ref} IS NOT NULL THEN coalesce({obj}, '{{}}') END"
    if kind == "bytea":
        return f"translate(encode({ref}, 'base64'), E'\\n', '')"
    if kind in _BASE64_TEXT:
        return f"translate(encode(convert_to({ref}::text, 'UTF8'), 'base64'), E'\\n', '')"
    raise Uncopyable(f"column {c.name} is {kind}")


def pg_ident(name: str) -> str:
    """A PostgreSQL identifier, double-quoted."""
    return '"' + name.replace('"', '""') + '"'


def pg_literal(text: str) -> str:
    """A PostgreSQL string literal."""
    return "'" + text.replace("'", "''") + "'"
