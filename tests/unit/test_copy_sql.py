"""The copy path's SQL: one Debezium-shaped envelope per row; types it cannot encode leave the table to Debezium."""

from dataclasses import replace

from cdc.domain.changes import Column, TableRef, TableSchema
from cdc.mirror.copy_sql import copyable, envelope_query

SCHEMA = TableSchema(
    TableRef("shop", "sales", "Order Items"),
    (
        Column("id", "int4", nullable=False),
        Column('say "hi"', "text"),
        Column("at", "date"),
        Column("tags", "int4", is_array=True),
    ),
    ("id",),
)


def test_the_envelope_names_the_table_and_keeps_the_column_order() -> None:
    sql = envelope_query(SCHEMA, "id >= 1 AND id < 5")
    assert sql.startswith('SELECT \'{"op":"r","before":null,"source":{"lsn":0,')
    assert '"schema":"sales","table":"Order Items"' in sql
    assert sql.index("'\"id\":'") < sql.index('\'"say \\"hi\\"":\'') < sql.index("'\"at\":'") < sql.index("'\"tags\":'")
    assert 'FROM "sales"."Order Items" WHERE id >= 1 AND id < 5' in sql
    assert "-2147472692" in sql  # date 'infinity' as Debezium's code, so the mirror names it


def test_types_the_copy_path_cannot_encode_name_the_column() -> None:
    assert copyable(SCHEMA) is None
    point = replace(SCHEMA, columns=(*SCHEMA.columns, Column("where", "point")))
    assert copyable(point) == "column where is point"
    assert copyable(replace(SCHEMA, columns=(Column("b", "varbit"),))) == "column b is varbit"
