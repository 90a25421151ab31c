"""The source catalog, as PostgreSQL's system tables describe it: the query and its rows -> TableSchema.

No driver here: the PostgreSQL adapter runs :data:`CATALOG_SQL` and hands the rows over.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from cdc.domain.changes import Column, TableRef, TableSchema

CATALOG_SQL = """
SELECT n.nspname, c.relname, c.relreplident, a.attname, a.attnotnull,
       bt.typname, bt.typtype, et.typname AS elem, et.typtype AS elem_typtype,
       CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END AS typmod,
       COALESCE(pk.is_pk, false), COALESCE(ri.is_ri, false), pk.exists_pk, a.attgenerated <> '', c.relkind
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
LEFT JOIN pg_type et ON et.oid = bt.typelem AND bt.typcategory = 'A'
LEFT JOIN LATERAL (
    SELECT a.attnum = ANY(con.conkey) AS is_pk, true AS exists_pk FROM pg_constraint con
    WHERE con.conrelid = c.oid AND con.contype = 'p') pk ON true
LEFT JOIN LATERAL (
    SELECT a.attnum = ANY(i.indkey::int2[]) AS is_ri FROM pg_index i
    WHERE i.indrelid = c.oid AND i.indisreplident) ri ON true
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'
  {only}
ORDER BY n.nspname, c.relname, a.attnum
"""


NO_IDENTITY = (
    "{t} has no primary key and no usable replica identity: left out of the publication, because PostgreSQL "
    "would then reject UPDATE and DELETE on it in your application. Fix: add a primary key, or run "
    "ALTER TABLE {t} REPLICA IDENTITY FULL"
)


def with_source(schema: TableSchema, source: str) -> TableSchema:
    return replace(schema, ref=TableRef(source, schema.ref.schema, schema.ref.table))


def schemas_from_rows(rows: Iterable[tuple[Any, ...]]) -> list[TableSchema]:
    grouped: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for r in rows:
        grouped.setdefault((r[0], r[1]), []).append(r)
    return [_schema(ns, rel, cols) for (ns, rel), cols in grouped.items()]


def _schema(ns: str, rel: str, rows: list[tuple[Any, ...]]) -> TableSchema:
    # PostgreSQL 15 does not send generated columns in logical replication: not mirrored (see README)
    generated = tuple(r[3] for r in rows if r[13])
    rows = [r for r in rows if not r[13]]
    columns = tuple(_column(r) for r in rows)
    ident = rows[0][2]
    has_pk = bool(rows[0][12])
    pk = tuple(r[3] for r in rows if r[10])
    ri = tuple(r[3] for r in rows if r[11])
    if has_pk and ident in ("d", "f"):
        key = pk
    elif ident == "i":
        key = ri
    elif ident == "f":
        key = tuple(c.name for c in columns)
    else:
        key = ()
    return TableSchema(
        TableRef("", ns, rel), columns, key, ident, has_pk, generated=generated, partitioned=rows[0][14] == "p"
    )


def _column(r: tuple[Any, ...]) -> Column:
    _, _, _, name, notnull, typname, typtype, elem, elem_typtype, typmod, *_ = r
    is_array = elem is not None
    base, base_kind = (elem, elem_typtype) if is_array else (typname, typtype)
    precision = scale = length = None
    if base == "numeric" and typmod is not None and typmod >= 4:
        precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
    if base == "bit" and typmod is not None and typmod > 0:
        length = typmod
    return Column(
        name,
        base,
        nullable=not notnull,
        is_array=is_array,
        is_enum=base_kind == "e",
        numeric_precision=precision,
        numeric_scale=scale,
        length=length,
    )
