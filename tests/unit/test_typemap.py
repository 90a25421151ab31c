from collections import Counter

import pytest

from cdc.domain.changes import Column
from cdc.mirror.typemap import DATE32_MAX, TS64_MAX, TS64_MIN, clickhouse_base_type, default_for, plan_column


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
        (Column("a", "timestamp"), "DateTime64(6)"),
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
    adjusted: Counter[str] = Counter()
    assert plan_column(Column("a", "text", nullable=False), adjusted).ch_type == "String"
    assert plan_column(Column("a", "text"), adjusted).ch_type == "Nullable(String)"
    enum = plan_column(Column("a", "e", nullable=True, is_enum=True), adjusted)
    assert enum.ch_type == "LowCardinality(Nullable(String))"
    array = plan_column(Column("a", "int4", is_array=True), adjusted)
    assert array.ch_type == "Array(Nullable(Int32))"


def test_out_of_range_dates_are_clamped_and_counted() -> None:
    adjusted: Counter[str] = Counter()
    date = plan_column(Column("d", "date"), adjusted)
    ts = plan_column(Column("t", "timestamp"), adjusted)
    tstz = plan_column(Column("z", "timestamptz"), adjusted)
    assert date.convert is not None and ts.convert is not None and tstz.convert is not None
    assert date.convert(10) == 10
    assert date.convert(3_000_000) == DATE32_MAX
    assert ts.convert(-10**18) == TS64_MIN
    assert tstz.convert("2024-05-01T10:00:00.5Z") == "2024-05-01T10:00:00.5Z"
    assert tstz.convert("9999-12-31T00:00:00Z") == TS64_MAX
    assert tstz.convert("infinity") == TS64_MAX
    assert adjusted == Counter({"d": 1, "t": 1, "z": 2})


def test_numeric_nan_becomes_null_and_is_counted() -> None:
    adjusted: Counter[str] = Counter()
    plan = plan_column(Column("n", "numeric", nullable=False, numeric_precision=10, numeric_scale=2), adjusted)
    assert plan.nullable  # NaN must have somewhere to go
    assert plan.convert is not None
    assert plan.convert("12.50") == "12.50"
    assert plan.convert("NaN") is None
    assert plan.convert("-Infinity") is None
    assert adjusted["n"] == 2


def test_bytea_is_decoded_and_json_kept_as_text() -> None:
    adjusted: Counter[str] = Counter()
    b = plan_column(Column("b", "bytea"), adjusted)
    assert b.convert is not None and b.convert("AAEC") == b"\x00\x01\x02"
    interval_like = plan_column(Column("x", "point"), adjusted)
    assert interval_like.convert is not None and interval_like.convert({"x": 1}) == '{"x":1}'


def test_arrays_convert_elements() -> None:
    adjusted: Counter[str] = Counter()
    plan = plan_column(Column("d", "date", is_array=True), adjusted)
    assert plan.convert is not None
    assert plan.convert([1, None, 10**7]) == [1, None, DATE32_MAX]
    assert plan.convert(None) == []


def test_defaults_for_absent_values() -> None:
    assert default_for("Int64") == 0
    assert default_for("String") == ""
    assert default_for("Array(Nullable(Int32))") == []
    assert default_for("Bool") is False
