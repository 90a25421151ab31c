"""PostgreSQL column -> ClickHouse column type, and the SQL that converts Debezium's JSON value.

Pure: builds SQL text only. Debezium is configured with ``decimal.handling.mode=string``,
``binary.handling.mode=base64`` and the default ``time.precision.mode=adaptive_time_microseconds``:
dates arrive as days since the epoch, timestamps as epoch microseconds, timestamptz as
ISO-8601 strings, numerics as exact strings, bytea as base64.

ClickHouse parses the envelope itself (see ``cdc.mirror.table``): each row image is read
once with ``JSONExtract(image, 'Tuple(...)')`` into the *extract type* of every column,
then :func:`value_sql` turns that into the column's type. Values ClickHouse cannot hold are
made explicit rather than wrapped: dates and timestamps are clamped to 1900-01-01 ..
2299-12-31, ``infinity`` becomes the nearest bound, numeric ``NaN`` becomes NULL.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdc.domain.changes import Column

DATE32_MIN, DATE32_MAX = -25567, 120529  # 1900-01-01 .. 2299-12-31 in days since the epoch
TS64_MIN = -2208988800 * 1_000_000  # 1900-01-01 in microseconds
TS64_MAX = 10413791999 * 1_000_000 + 999_999  # 2299-12-31 23:59:59.999999
_TS_LO = "toDateTime64('1900-01-01 00:00:00', 6, 'UTC')"
_TS_HI = "toDateTime64('2299-12-31 23:59:59.999999', 6, 'UTC')"

_SCALAR = {
    "int2": "Int16",
    "int4": "Int32",
    "int8": "Int64",
    "oid": "UInt32",
    "float4": "Float32",
    "float8": "Float64",
    "bool": "Bool",
    "uuid": "UUID",
    "date": "Date32",
    "timestamp": "DateTime64(6, 'UTC')",
    "timestamptz": "DateTime64(6, 'UTC')",
    "time": "Int64",  # microseconds since midnight
    "interval": "Int64",  # microseconds
}
_TEXT = {"text", "varchar", "bpchar", "name", "citext", "json", "jsonb", "xml", "bytea"}
# How JSONExtract reads the raw JSON value of each ClickHouse element type
_EXTRACT = {
    "Int16": "Int64",
    "Int32": "Int64",
    "Int64": "Int64",
    "UInt32": "Int64",
    "Date32": "Int64",
    "Float32": "Float64",
    "Float64": "Float64",
    "Bool": "Bool",
}


def clickhouse_element_type(col: Column) -> str:
    if col.is_enum:
        return "LowCardinality(String)"
    if col.pg_type == "numeric":
        p, s = col.numeric_precision, col.numeric_scale
        if p is None or p > 76:
            return "String"  # unbounded numeric: kept exact as text
        return f"Decimal({p}, {s or 0})"
    if col.pg_type in _TEXT:
        return "String"
    return _SCALAR.get(col.pg_type, "String")


def clickhouse_base_type(col: Column) -> str:
    """The ClickHouse type for ``col`` without Nullable."""
    element = clickhouse_element_type(col)
    return f"Array(Nullable({element}))" if col.is_array else element


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    """How one source column lands in ClickHouse."""

    name: str
    base_type: str  # without Nullable()
    nullable: bool
    column: Column

    @property
    def ch_type(self) -> str:
        if not self.nullable or self.base_type.startswith("Array("):
            return self.base_type
        if self.base_type.startswith("LowCardinality("):
            return f"LowCardinality(Nullable({self.base_type[15:-1]}))"
        return f"Nullable({self.base_type})"


def plan_column(col: Column, force_nullable: bool = False) -> ColumnPlan:
    base = clickhouse_base_type(col)
    # numerics may hold NaN/Infinity, which Decimal cannot: such values become NULL
    nullable = col.nullable or force_nullable or base.startswith("Decimal")
    return ColumnPlan(col.name, base, nullable, col)


def is_raw(col: Column) -> bool:
    """Types Debezium may emit as non-string JSON that we keep as their JSON text."""
    return (
        not col.is_array
        and clickhouse_element_type(col) == "String"
        and col.pg_type not in _TEXT | {"numeric"}
        and not col.is_enum
    )


def extract_type(col: Column) -> str:
    """The type JSONExtract reads this column's JSON value into."""
    element = clickhouse_element_type(col)
    inner = "Int64" if col.pg_type == "timestamp" else _EXTRACT.get(element, "String")  # epoch microseconds
    return f"Array(Nullable({inner}))" if col.is_array else f"Nullable({inner})"


def value_sql(col: Column, ref: str) -> str:
    """SQL turning the extracted value ``ref`` into the column's ClickHouse type (nullable)."""
    if col.is_array:
        return f"arrayMap(x -> {_element_sql(col, 'x')}, {ref})"
    return _element_sql(col, ref)


def _element_sql(col: Column, ref: str) -> str:
    expr = _convert_sql(col, ref)
    if expr == ref or expr.startswith(("CAST(", "to", "try")):
        return expr  # these keep NULL as NULL
    return f"if({ref} IS NULL, NULL, {expr})"  # least/greatest would turn NULL into a bound


def _convert_sql(col: Column, ref: str) -> str:
    element = clickhouse_element_type(col)
    if element.startswith("Decimal("):
        scale = col.numeric_scale or 0
        return f"CAST(toDecimal256OrNull({ref}, {scale}) AS Nullable({element}))"
    if element == "Date32":
        return f"addDays(toDate32('1970-01-01'), toInt32(least(greatest({ref}, {DATE32_MIN}), {DATE32_MAX})))"
    if element.startswith("DateTime64") and col.pg_type == "timestamp":
        return f"fromUnixTimestamp64Micro(toInt64(least(greatest({ref}, {TS64_MIN}), {TS64_MAX})), 'UTC')"
    if element.startswith("DateTime64"):
        return (
            f"multiIf({ref} = 'infinity', {_TS_HI}, {ref} = '-infinity', {_TS_LO}, "
            f"least(greatest(parseDateTime64BestEffortOrNull({ref}, 6, 'UTC'), {_TS_LO}), {_TS_HI}))"
        )
    if element == "UUID":
        return f"toUUIDOrNull({ref})"
    if col.pg_type == "bytea":
        return f"tryBase64Decode({ref})"
    if element in ("Int16", "Int32", "UInt32", "Float32"):
        return f"CAST({ref} AS Nullable({element}))"
    return ref
