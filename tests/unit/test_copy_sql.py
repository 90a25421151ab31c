"""The copy path's SQL: one TSV column per mirror column, converted by the mirror's own rules; types it cannot
encode leave the table to Debezium."""

from dataclasses import replace

from pydantic import SecretStr

from cdc.domain.changes import Column, TableRef, TableSchema
from cdc.mirror.copy_sql import copy_columns, copy_query, copy_table_ddl, copy_view_select, copyable
from cdc.mirror.rules import ColumnRules
from cdc.mirror.table import MirrorTable
from cdc.settings import MaskRule, SourceSpec

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
TABLE = MirrorTable(SCHEMA, "shop")


def test_the_query_reads_the_table_in_the_mirrors_column_order() -> None:
    sql = copy_query(TABLE, SCHEMA, "id >= 1 AND id < 5")
    assert sql.startswith('SELECT "id", "say ""hi"""::text, CASE WHEN "at" = \'infinity\' THEN -2147472692')
    assert sql.index('"say ""hi"""') < sql.index('"at"') < sql.index('(to_json("tags"))::text')
    assert sql.endswith('FROM "sales"."Order Items" WHERE id >= 1 AND id < 5')


def test_a_column_the_source_no_longer_has_is_copied_as_null() -> None:
    live = replace(SCHEMA, columns=tuple(c for c in SCHEMA.columns if c.name != "at"))
    sql = copy_query(TABLE, live)
    assert sql.startswith('SELECT "id", "say ""hi"""::text, NULL, (to_json("tags"))::text FROM')


def test_the_copy_table_holds_extract_types_by_position_and_its_view_converts_them() -> None:
    assert copy_columns(TABLE) == ["c0", "c1", "c2", "c3"]
    ddl = copy_table_ddl(TABLE)
    assert "(c0 Nullable(Int64), c1 Nullable(String), c2 Nullable(Int64), c3 Nullable(String)) ENGINE = Null" in ddl
    view = copy_view_select(TABLE)
    assert "assumeNotNull(CAST(c0 AS Nullable(Int32))) AS `id`" in view  # the key is never NULL
    assert "addDays(toDate32('1970-01-01')" in view and "AS `at`" in view  # the stream's date conversion
    assert "JSONExtract(ifNull(c3, 'null'), 'Array(Nullable(Int64))')" in view  # arrays travel as JSON
    assert "'r' AS _op, toUInt64(0) AS _lsn" in view  # below every streamed change
    assert view.endswith("FROM `shop`.`_copy_sales__Order Items`")


def test_types_the_copy_path_cannot_encode_name_the_column() -> None:
    assert copyable(SCHEMA) is None
    point = replace(SCHEMA, columns=(*SCHEMA.columns, Column("where", "point")))
    assert copyable(point) == "column where is point"
    assert copyable(replace(SCHEMA, columns=(Column("b", "varbit"),))) == "column b is varbit"


def test_a_table_with_a_masked_column_is_never_copied() -> None:
    spec = SourceSpec(SecretStr("postgresql://x"), "shop", mask=(MaskRule('sales.Order Items.say "hi"', "hash"),))
    rules = ColumnRules(None, spec)  # type: ignore[arg-type]  # the catalog is not read here
    assert rules.copy_refusal(SCHEMA) == 'column(s) say "hi" are masked, and only Debezium applies masks'
    other = replace(SCHEMA, ref=TableRef("shop", "sales", "Orders"))
    assert rules.copy_refusal(other) is None
