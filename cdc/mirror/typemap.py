"""PostgreSQL column -> ClickHouse column type, and the SQL that converts Debezium's JSON value.

Pure: builds SQL text only. Debezium is configured with ``decimal.handling.mode=string``,
``binary.handling.mode=base64``, ``interval.handling.mode=string`` and the default
``time.precision.mode=adaptive_time_microseconds``: dates arrive as days since the epoch,
timestamps as epoch microseconds, timestamptz as ISO-8601 strings, numerics and money as exact
strings, intervals as ISO-8601 durations, bytea and bit strings as base64.

ClickHouse parses the envelope itself (see ``cdc.mirror.table``): each row image is read
once with ``JSONExtract(image, 'Tuple(...)')`` into the *extract type* of every column,
then :func:`value_sql` turns that into the column's type. A value ClickHouse cannot hold keeps its
meaning (README, "Types"): dates and timestamps outside :class:`Bounds` (and ``infinity``) are
clamped to the nearest bound and numeric ``NaN`` becomes NULL, and in both cases the row's
``_special`` map names the column with what the source held (:func:`special_sql`); float ``NaN``
and ``±Infinity`` are ClickHouse's own ``nan``/``inf``; unbounded numerics keep PostgreSQL's text.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from cdc.domain.changes import Column
from cdc.domain.values import INFINITE_DATES, NUMERIC_SPECIAL, TS_INFINITY, TS_MINUS_INFINITY


@dataclass(frozen=True, slots=True)
class Bounds:
    """The dates and times the warehouse holds: ClickHouse 25.x and older keep 1900-2299, newer
    ones (chDB 26.9 among them) years 1-9999. The sink asks the warehouse which (:data:`PROBE_SQL`)."""

    first: str  # ISO date of the first day
    last: str  # ISO date of the last day
    date_min: int  # days since the epoch
    date_max: int
    ts_min: int  # microseconds since the epoch
    ts_max: int

    @property
    def ts_lo(self) -> str:
        return f"toDateTime64('{self.first} 00:00:00', 6, 'UTC')"

    @property
    def ts_hi(self) -> str:
        return f"toDateTime64('{self.last} 23:59:59.999999', 6, 'UTC')"


NARROW = Bounds("1900-01-01", "2299-12-31", -25567, 120529, -2208988800 * 10**6, 10413791999 * 10**6 + 999_999)
WIDE = Bounds("0001-01-01", "9999-12-31", -719162, 2932896, -62135596800 * 10**6, 253402300799 * 10**6 + 999_999)
PROBE_SQL = (
    "SELECT toString(addDays(toDate32('1970-01-01'), -719162)) = '0001-01-01'"
    " AND toString(fromUnixTimestamp64Micro(toInt64(253402300799999999), 'UTC')) = '9999-12-31 23:59:59.999999'"
)
# numeric NaN and infinities as Debezium spells them (string mode) -> as PostgreSQL does
_NUMERIC_SPECIAL = tuple(
    (", ".join(f"'{code}'" for code, text in NUMERIC_SPECIAL.items() if text == pg), pg)
    for pg in dict.fromkeys(NUMERIC_SPECIAL.values())
)

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
    "money": "Decimal(19, 2)",  # Debezium writes money with 2 fraction digits (money.fraction.digits)
}
_TEXT = {"text", "varchar", "bpchar", "name", "citext", "json", "jsonb", "xml", "bytea", "interval"}
_BITS = {"bit", "varbit"}  # base64 of the bits as a little-endian number (bit(1): a boolean)
# types Debezium does not know: with include.unknown.datatypes it sends their text form in base64
_BASE64_TEXT = {"box", "circle", "line", "lseg", "path", "polygon"}
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
    if col.pg_type in _TEXT | _BITS | _BASE64_TEXT:
        return "String"
    return _SCALAR.get(col.pg_type, "String")


def clickhouse_base_type(col: Column) -> str:
    """The ClickHouse type for ``col`` without Nullable."""
    element = clickhouse_element_type(col)
    if col.is_array:  # LowCardinality cannot sit inside Nullable: arrays of enums hold plain strings
        return (
            f"Array(Nullable({element.removeprefix('LowCardinality(').removesuffix(')') if col.is_enum else element}))"
        )
    return element


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
    # numerics may hold NaN/Infinity, which Decimal cannot: such values become NULL (and _special says so)
    nullable = col.nullable or force_nullable or (base.startswith("Decimal") and col.pg_type == "numeric")
    return ColumnPlan(col.name, base, nullable, col)


def is_raw(col: Column) -> bool:
    """Types Debezium may emit as non-string JSON that we keep as their JSON text."""
    return (
        not col.is_array
        and clickhouse_element_type(col) == "String"
        and col.pg_type not in _TEXT | _BITS | _BASE64_TEXT | {"numeric", "money"}
        and not col.is_enum
    )


def extract_type(col: Column) -> str:
    """The type JSONExtract reads this column's JSON value into."""
    element = clickhouse_element_type(col)
    inner = "Int64" if col.pg_type == "timestamp" else _EXTRACT.get(element, "String")  # epoch microseconds
    return f"Array(Nullable({inner}))" if col.is_array else f"Nullable({inner})"


def value_sql(col: Column, ref: str, bounds: Bounds = NARROW) -> str:
    """SQL turning the extracted value ``ref`` into the column's ClickHouse type (nullable)."""
    if col.is_array:
        return f"arrayMap(x -> {_element_sql(col, 'x', bounds)}, {ref})"
    return _element_sql(col, ref, bounds)


def _element_sql(col: Column, ref: str, bounds: Bounds) -> str:
    expr = _convert_sql(col, ref, bounds)
    if expr == ref or expr.startswith(("CAST(", "to", "try")):
        return expr  # these keep NULL as NULL
    return f"if({ref} IS NULL, NULL, {expr})"  # least/greatest would turn NULL into a bound


def _convert_sql(col: Column, ref: str, b: Bounds) -> str:
    element = clickhouse_element_type(col)
    if element.startswith("Decimal("):
        scale = 2 if col.pg_type == "money" else col.numeric_scale or 0
        return f"CAST(toDecimal256OrNull({ref}, {scale}) AS Nullable({element}))"
    if element == "Date32":
        return f"addDays(toDate32('1970-01-01'), toInt32(least(greatest({ref}, {b.date_min}), {b.date_max})))"
    if element.startswith("DateTime64") and col.pg_type == "timestamp":
        return f"fromUnixTimestamp64Micro(toInt64(least(greatest({ref}, {b.ts_min}), {b.ts_max})), 'UTC')"
    if element.startswith("DateTime64"):
        return (
            f"multiIf({ref} = 'infinity', {b.ts_hi}, {ref} = '-infinity', {b.ts_lo}, "
            f"least(greatest(parseDateTime64BestEffortOrNull({ref}, 6, 'UTC'), {b.ts_lo}), {b.ts_hi}))"
        )
    if element == "UUID":
        return f"toUUIDOrNull({ref})"
    if col.pg_type in ("bytea", *_BASE64_TEXT):
        return f"tryBase64Decode({ref})"
    if col.pg_type in _BITS:
        bits = f"trimLeft(bin(reverse(tryBase64Decode({ref}))), '0')"
        padded = f"leftPad({bits}, {col.length}, '0')" if col.length else bits
        return f"multiIf({ref} = 'true', '1', {ref} = 'false', '0', {padded})"
    if col.pg_type == "numeric":  # unbounded: PostgreSQL's own spelling of NaN and the infinities
        cases = ", ".join(f"{ref} IN ({codes}), '{text}'" for codes, text in _NUMERIC_SPECIAL)
        return f"multiIf({cases}, {ref})"
    if element in ("Int16", "Int32", "UInt32", "Float32"):
        return f"CAST({ref} AS Nullable({element}))"
    return ref


def has_special(col: Column) -> bool:
    """Whether a value of ``col`` may be one ClickHouse cannot hold (named in ``_special``)."""
    element = clickhouse_element_type(col)
    return element in ("Date32", "DateTime64(6, 'UTC')") or (col.pg_type == "numeric" and element != "String")


def special_sql(col: Column, ref: str, raw: str, b: Bounds) -> str:
    """A String: '' when the extracted value ``ref`` is held as is, else what the source held:
    ``infinity``, ``-infinity``, ``NaN``, or the value as Debezium sent it (``raw``: the JSON text)."""
    if col.is_array:  # ClickHouse arrays cannot be NULL: a NULL array reads [] and _special says 'NULL'
        if not has_special(col):
            return f"if({raw} = 'null', 'NULL', '')"
        one = special_sql(replace(col, is_array=False), "x", "x", b)
        return f"multiIf({raw} = 'null', 'NULL', arrayExists(x -> {one} != '', {ref}), {raw}, '')"
    # each tests first for a value held as is (nearly all of them), with the value's own conversion: the
    # view computes it once for both (a third of the copy path's work in ClickHouse when it did not)
    element = clickhouse_element_type(col)
    if element == "Date32":
        inf, minus = (", ".join(str(k) for k, v in INFINITE_DATES.items() if v == t) for t in ("infinity", "-infinity"))
        return (
            f"multiIf({ref} IS NULL, '', {ref} BETWEEN {b.date_min} AND {b.date_max}, '', {ref} IN ({inf}),"
            f" 'infinity', {ref} IN ({minus}), '-infinity', concat(toString({ref}), ' days'))"
        )  # the infinity codes lie outside every mirror's dates
    if col.pg_type == "timestamp":
        return (
            f"multiIf({ref} IS NULL, '', {ref} BETWEEN {b.ts_min} AND {b.ts_max}, '', {ref} = {TS_INFINITY},"
            f" 'infinity', {ref} = {TS_MINUS_INFINITY}, '-infinity', concat(toString({ref}), ' µs'))"
        )
    if col.pg_type == "timestamptz":  # 'infinity' and '-infinity' do not parse: kept as they came
        parsed = f"parseDateTime64BestEffortOrNull({ref}, 6, 'UTC')"
        return f"multiIf({ref} IS NULL, '', ifNull({parsed} BETWEEN {b.ts_lo} AND {b.ts_hi}, 0), '', {ref})"
    cases = ", ".join(f"{ref} IN ({codes}), '{text}'" for codes, text in _NUMERIC_SPECIAL)
    parsed = f"toDecimal256OrNull({ref}, {col.numeric_scale or 0})"  # as value_sql: a numeric(p, s) always fits
    return f"multiIf({ref} IS NULL, '', isNotNull({parsed}), '', {cases}, {ref})"
