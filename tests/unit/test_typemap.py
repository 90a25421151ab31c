import pytest

from cdc.domain.changes import Column
from cdc.mirror.typemap import clickhouse_base_type, extract_type, is_raw, plan_column


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        (Column("a", "int2"), "Int16"),
        (Column("a", "int4"), "Int32"),
        (Column("a", "int8"), "Int64"),
        (Column("a", "numeric", numeric_precision=12, numeric_scale=2), "Decimal(12, 2)"),
        (Column("a", "numeric"), "String"),
        (Column("a", "text"), "String"),
        (Column("a", "bool"), "Bool"),
        (Column("a", "date"), "Date32"),
        (Column("a", "timestamp"), "DateTime64(6, 'UTC')"),
        (Column("a", "timestamptz"), "DateTime64(6, 'UTC')"),
        (Column("a", "uuid"), "UUID"),
        (Column("a", "jsonb"), "String"),
        (Column("a", "bytea"), "String"),
        (Column("a", "order_status", is_enum=True), "LowCardinality(String)"),
        (Column("a", "text", is_array=True), "Array(Nullable(String))"),
        (Column("a", "inet"), "String"),
    ],
)
def test_clickhouse_types_follow_postgres(column: Column, expected: str) -> None:
    assert clickhouse_base_type(column) == expected


def test_nullability_follows_postgres_and_wraps_low_cardinality_inside() -> None:
    assert plan_column(Column("a", "text", nullable=False)).ch_type == "String"
    assert plan_column(Column("a", "text")).ch_type == "Nullable(String)"
    assert plan_column(Column("a", "e", is_enum=True)).ch_type == "LowCardinality(Nullable(String))"
    assert plan_column(Column("a", "int4", is_array=True)).ch_type == "Array(Nullable(Int32))"
    assert plan_column(Column("a", "text", nullable=False), force_nullable=True).ch_type == "Nullable(String)"


def test_numeric_columns_are_nullable_because_nan_has_no_decimal() -> None:
    plan = plan_column(Column("n", "numeric", nullable=False, numeric_precision=10, numeric_scale=2))
    assert plan.ch_type == "Nullable(Decimal(10, 2))"


def test_extract_types_match_debezium_json_shapes() -> None:
    assert extract_type(Column("a", "int4")) == "Nullable(Int64)"
    assert extract_type(Column("a", "date")) == "Nullable(Int64)"  # days since the epoch
    assert extract_type(Column("a", "timestamp")) == "Nullable(Int64)"  # epoch microseconds
    assert extract_type(Column("a", "timestamptz")) == "Nullable(String)"  # ISO-8601 text
    assert extract_type(Column("a", "numeric", numeric_precision=5, numeric_scale=1)) == "Nullable(String)"
    assert extract_type(Column("a", "float8")) == "Nullable(Float64)"
    assert extract_type(Column("a", "bool")) == "Nullable(Bool)"
    assert extract_type(Column("a", "date", is_array=True)) == "Array(Nullable(Int64))"


def test_unknown_types_are_kept_as_json_text() -> None:
    assert is_raw(Column("p", "point"))
    assert not is_raw(Column("t", "text"))
    assert not is_raw(Column("n", "numeric"))
    assert not is_raw(Column("e", "mood", is_enum=True))
