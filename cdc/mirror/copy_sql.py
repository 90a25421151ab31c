"""The initial load's copy path: PostgreSQL writes each existing row as the change message Debezium's
snapshot would send, and ClickHouse parses it with the mirror's own views. Pure: builds SQL only.

``COPY (SELECT <envelope>) TO STDOUT`` streams one JSON envelope per row (text format, whose escaping
ClickHouse's TSV reads back byte for byte) into the table's Null ``_ingest_`` table, so a copied row
goes through exactly the conversions, checks and ``_special`` rules a streamed one does: no per-row
Python, and no second type mapping to keep in step with the first. Each value is encoded as Debezium
3.6 encodes it (``decimal.handling.mode=string``, base64 binaries, ISO 8601 intervals, the JDBC
driver's infinity codes; measured in tests/e2e/test_any_schema.py). A column type this module cannot
encode that way makes the table :class:`Uncopyable`: Debezium's snapshot reads it instead.

**Why the result is exact** (the copy runs while the stream runs): copied rows carry ``source.lsn``
0, below every streamed change, and the copy reads the table only after the replication slot exists.
For any row, the mirror keeps the change with the highest LSN (``cdc.mirror.table``). The stream holds
every change committed after the slot's position ``S``; a copy read at ``T >= S`` holds the row as
committed at ``T``. If the stream has a change of the row, the newest such change is the row's
newest state (a change committed before ``T`` is also in the copy, one committed after ``T`` is newer
than it), and it wins over the copy. If the stream has none, nothing changed the row after ``S``, so
the copy is its state. Deletes are streamed changes too, and a row inserted after ``S`` is in the
stream whether or not the copy saw it. So any chunk may be read at any time after ``S``, each in its
own transaction, and read again after a crash: the mirror converges to the source either way.
"""

from __future__ import annotations

import json

from cdc.domain.changes import Column, TableSchema
from cdc.domain.names import sql_table
from cdc.domain.values import INFINITE_DATES, TS_INFINITY, TS_MINUS_INFINITY
from cdc.errors import CdcError

_NATIVE = {"int2", "int4", "int8", "oid", "float4", "float8", "bool"}  # to_json matches Debezium's JSON
_TEXT = {
    "text", "varchar", "bpchar", "name", "citext", "json", "jsonb", "xml", "tsvector", "uuid", "inet", "cidr",
    "macaddr", "macaddr8", "ltree", "int4range", "int8range", "numrange", "daterange", "tsrange", "tstzrange",
}  # fmt: skip
_BASE64_TEXT = {"box", "circle", "line", "lseg", "path", "polygon"}  # unknown to Debezium: base64 of the text
_ARRAY_AS_IS = _NATIVE | _TEXT  # to_json of the array is Debezium's array
_DATE_INF, _DATE_MINUS_INF = (min(k for k, v in INFINITE_DATES.items() if v == t) for t in ("infinity", "-infinity"))


class Uncopyable(CdcError):
    """A table whose values the copy path cannot encode as Debezium would: its snapshot stays Debezium's."""


def envelope_query(schema: TableSchema, where: str = "") -> str:
    """``SELECT <one envelope as text> FROM <table> [WHERE ...]`` for ``COPY (...) TO STDOUT``."""
    ref = schema.ref
    parts = [
        f"{_lit(json.dumps(c.name, ensure_ascii=False) + ':')} || coalesce(({_value(c, _ident(c.name))})::text, 'null')"
        for c in schema.columns
    ]
    after = " || ',' || ".join(parts) if parts else "''"
    source = json.dumps({"lsn": 0, "txId": None, "ts_ms": 0, "snapshot": "true", "schema": ref.schema,
                         "table": ref.table}, separators=(",", ":"))  # fmt: skip
    head = '{"op":"r","before":null,"source":' + source + ',"after":{'
    body = f"{_lit(head)} || {after} || '}}}}'"
    return f"SELECT {body} FROM {sql_table(ref.schema, ref.table)}" + (f" WHERE {where}" if where else "")


def copyable(schema: TableSchema) -> str | None:
    """Why the copy path cannot load this table (None: it can)."""
    for c in schema.columns:
        try:
            _value(c, "x")
        except Uncopyable as e:
            return str(e)
    return None


def _value(c: Column, ref: str) -> str:
    """SQL giving the column's value as Debezium's JSON (a ``json`` value, or NULL)."""
    if c.is_enum:
        return f"to_json({ref}::text[])" if c.is_array else f"to_json({ref}::text)"
    if c.is_array:
        if c.pg_type in _ARRAY_AS_IS:
            return f"to_json({ref})"
        if c.pg_type in ("numeric", "money"):
            return f"to_json({ref}::numeric[]::text[])"
        if c.pg_type in ("date", "timestamp", "timestamptz", "time"):
            element = _value(Column(c.name, c.pg_type), "e.v")
            return (
                f"CASE WHEN {ref} IS NOT NULL THEN coalesce((SELECT json_agg({element} ORDER BY e.i)"
                f" FROM unnest({ref}) WITH ORDINALITY AS e(v, i)), '[]'::json) END"
            )
        raise Uncopyable(f"column {c.name} is {c.pg_type}[]")
    kind = c.pg_type
    if kind in _NATIVE:
        return f"to_json({ref})"
    if kind in ("inet", "cidr"):  # ::text would add /32 where the output function (and Debezium) does not
        return f"CASE WHEN {ref} IS NOT NULL THEN to_json(format('%s', {ref})) END"
    if kind in _TEXT:
        return f"to_json({ref}::text)"
    if kind in ("numeric", "money"):
        return f"to_json({ref}::numeric::text)"
    if kind == "date":
        return (
            f"to_json(CASE WHEN {ref} = 'infinity' THEN {_DATE_INF} WHEN {ref} = '-infinity' THEN {_DATE_MINUS_INF}"
            f" ELSE {ref} - DATE '1970-01-01' END)"
        )
    if kind == "timestamp":
        return (
            f"to_json(CASE WHEN {ref} = 'infinity' THEN {TS_INFINITY} WHEN {ref} = '-infinity' THEN"
            f" {TS_MINUS_INFINITY} ELSE (extract(epoch FROM {ref}) * 1000000)::bigint END)"
        )
    if kind == "timestamptz":
        return (
            f"to_json(CASE WHEN isfinite({ref}) THEN to_char({ref} AT TIME ZONE 'UTC',"
            f' \'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\') ELSE {ref}::text END)'
        )
    if kind == "time":
        return f"to_json((extract(epoch FROM {ref}) * 1000000)::bigint)"
    if kind == "timetz":
        return f"to_json((({ref}) AT TIME ZONE 'UTC')::time::text || 'Z')"
    if kind == "interval":
        fields = ", ".join(f"extract({f} FROM {ref})" for f in ("year", "month", "day", "hour", "minute"))
        iso = f"format('P%sY%sM%sDT%sH%sM%sS', {fields}, trim_scale(extract(second FROM {ref})))"
        return f"CASE WHEN {ref} IS NOT NULL THEN to_json({iso}) END"  # format() reads NULL as ''
    if kind == "hstore":  # Debezium: a JSON object as text, compact
        pairs = (
            "string_agg(to_json(k.key)::text || ':' || coalesce(to_json(k.value)::text, 'null'), ',' ORDER BY k.key)"
        )
        obj = f"(SELECT '{{' || {pairs} || '}}' FROM each({ref}) AS k)"
        return f"CASE WHEN {ref} IS NOT NULL THEN to_json(coalesce({obj}, '{{}}')) END"
    if kind == "bytea":
        return f"to_json(translate(encode({ref}, 'base64'), E'\\n', ''))"
    if kind in _BASE64_TEXT:
        return f"to_json(translate(encode(convert_to({ref}::text, 'UTF8'), 'base64'), E'\\n', ''))"
    raise Uncopyable(f"column {c.name} is {kind}")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
