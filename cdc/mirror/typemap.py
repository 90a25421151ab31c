"""PostgreSQL column -> ClickHouse column type, and the per-value conversion Debezium JSON needs.

Pure. Debezium is configured with ``decimal.handling.mode=string`` and the default
``time.precision.mode=adaptive_time_microseconds``: dates arrive as days since the
epoch, timestamps as epoch microseconds, timestamptz as ISO-8601 strings, numerics as
exact strings. clickhouse-connect accepts those shapes directly for Date32,
DateTime64 and Decimal, so most columns need no Python-side conversion at all.

Values ClickHouse cannot hold (dates outside 1900..2299, numeric NaN/Infinity) are
clamped or nulled and *counted*: the mirror reports how many values it adjusted.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cdc.domain.changes import Column

Converter = Callable[[Any], Any]

DATE32_MIN, DATE32_MAX = -25567, 120529  # 1900-01-01 .. 2299-12-31 in days since epoch
TS64_MIN = -2208988800 * 1_000_000  # 1900-01-01 in microseconds
TS64_MAX = 10413791999 * 1_000_000 + 999_999  # 2299-12-31 23:59:59.999999

_SCALAR = {
    "int2": "Int16",
    "int4": "Int32",
    "int8": "Int64",
    "oid": "UInt32",
    "float4": "Float32",
    "float8": "Float64",
    "bool": "Bool",
    "text": "String",
    "varchar": "String",
    "bpchar": "String",
    "name": "String",
    "citext": "String",
    "uuid": "UUID",
    "json": "String",
    "jsonb": "String",
    "xml": "String",
    "bytea": "String",
    "date": "Date32",
    "timestamp": "DateTime64(6)",
    "timestamptz": "DateTime64(6, 'UTC')",
    "time": "Int64",
    "interval": "Int64",
}


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    """How one source column lands in ClickHouse."""

    name: str
    base_type: str  # without Nullable()
    nullable: bool
    convert: Converter | None

    @property
    def ch_type(self) -> str:
        if not self.nullable or self.base_type.startswith("Array("):
            return self.base_type
        if self.base_type.startswith("LowCardinality("):
            return f"LowCardinality(Nullable({self.base_type[15:-1]}))"
        return f"Nullable({self.base_type})"


def clickhouse_base_type(col: Column) -> str:
    """The ClickHouse type for ``col`` without Nullable."""
    element = _element_type(col)
    if col.is_array:
        return f"Array(Nullable({element}))"
    return element


def _element_type(col: Column) -> str:
    if col.is_enum:
        return "LowCardinality(String)"
    if col.pg_type == "numeric":
        p, s = col.numeric_precision, col.numeric_scale
        if p is None or p > 76:
            return "String"  # unbounded numeric: kept exact as text
        return f"Decimal({p}, {s or 0})"
    return _SCALAR.get(col.pg_type, "String")


def plan_column(col: Column, adjusted: Counter[str], force_nullable: bool = False) -> ColumnPlan:
    """Plan a column. ``adjusted`` counts values that had to be clamped or nulled."""
    base = clickhouse_base_type(col)
    # numerics may hold NaN/Infinity, which Decimal cannot: such values become NULL
    nullable = col.nullable or force_nullable or base.startswith("Decimal")
    return ColumnPlan(col.name, base, nullable, _converter(col, base, adjusted))


def _converter(col: Column, base: str, adjusted: Counter[str]) -> Converter | None:
    scalar = _scalar_converter(col, _element_type(col), adjusted)
    if not col.is_array:
        return scalar
    if scalar is None:
        return _array_or_empty
    return lambda v: [None if x is None else scalar(x) for x in v] if isinstance(v, list) else []


def _scalar_converter(col: Column, base: str, adjusted: Counter[str]) -> Converter | None:
    name = col.name
    if base == "Date32":
        return _clamp_int(DATE32_MIN, DATE32_MAX, name, adjusted)
    if base == "DateTime64(6)":
        return _clamp_int(TS64_MIN, TS64_MAX, name, adjusted)
    if base.startswith("DateTime64(6, "):
        return _zoned_timestamp(name, adjusted)
    if base.startswith("Decimal"):
        return _finite_decimal(name, adjusted)
    if col.pg_type == "bytea":
        return _b64
    if base == "String" and col.pg_type not in ("text", "varchar", "bpchar", "name", "citext"):
        return _as_text
    return None


def _array_or_empty(v: Any) -> Any:
    return v if isinstance(v, list) else []


def _clamp_int(lo: int, hi: int, name: str, adjusted: Counter[str]) -> Converter:
    def convert(v: Any) -> Any:
        if v is None or lo <= v <= hi:
            return v
        adjusted[name] += 1
        return lo if v < lo else hi

    return convert


def _zoned_timestamp(name: str, adjusted: Counter[str]) -> Converter:
    def convert(v: Any) -> Any:
        if v is None:
            return None
        head = v[:4]
        if head.isdigit() and v[4:5] == "-" and 1900 <= int(head) <= 2299:
            return v
        adjusted[name] += 1
        if v.startswith("-") or (head.isdigit() and int(head) < 1900):
            return TS64_MIN
        return TS64_MAX

    return convert


def _finite_decimal(name: str, adjusted: Counter[str]) -> Converter:
    def convert(v: Any) -> Any:
        if v is None or (isinstance(v, str) and v[-1:].isdigit()):
            return v
        if isinstance(v, (int, float)) and v == v and v not in (float("inf"), float("-inf")):
            return str(v)
        adjusted[name] += 1  # NaN / Infinity / -Infinity
        return None

    return convert


def _b64(v: Any) -> Any:
    return None if v is None else base64.b64decode(v)


def _as_text(v: Any) -> Any:
    if v is None or isinstance(v, str):
        return v
    return json.dumps(v, separators=(",", ":"))


def default_for(base_type: str) -> Any:
    """A value for a non-nullable column absent from a row image (e.g. deletes under REPLICA IDENTITY DEFAULT)."""
    if base_type.startswith("Array("):
        return []
    if base_type.startswith(("Int", "UInt", "Float", "Date", "Decimal")):
        return 0
    if base_type == "Bool":
        return False
    if base_type == "UUID":
        return "00000000-0000-0000-0000-000000000000"
    return ""
