"""PostgreSQL's special values as they arrive in a change (Debezium 3.6, JSON, decimals as strings). Pure.

Measured through the real connector (tests/e2e/test_any_schema.py): ``infinity`` dates and
timestamps arrive as the JDBC driver's infinity constants converted to days or microseconds,
timestamptz as the text ``infinity``; numeric ``NaN`` and infinities as ``NAN`` /
``POSITIVE_INFINITY`` / ``NEGATIVE_INFINITY``; floats as the JSON strings ``NaN`` / ``Infinity``.
"""

from __future__ import annotations

# dates in days since the epoch: the driver's infinity in milliseconds cut to an int (snapshot and stream),
# or PostgreSQL's own end-of-time codes shifted to the Unix epoch (seen on some streamed rows)
INFINITE_DATES = {-622191234: "infinity", -2147472692: "infinity", -625821272: "-infinity", -2147472691: "-infinity"}
TS_INFINITY, TS_MINUS_INFINITY = 9223372036825200000, -9223372036832400000  # microseconds
INFINITE_TIMESTAMPS = {TS_INFINITY: "infinity", TS_MINUS_INFINITY: "-infinity"}
# numeric specials as Debezium spells them -> as PostgreSQL does
NUMERIC_SPECIAL = {
    "NAN": "NaN",
    "NaN": "NaN",
    "POSITIVE_INFINITY": "Infinity",
    "Infinity": "Infinity",
    "NEGATIVE_INFINITY": "-Infinity",
    "-Infinity": "-Infinity",
}

# Debezium's stand-ins for an unchanged TOASTed value (see cdc.mirror.placeholders for which types get which)
PLACEHOLDER = "__debezium_unavailable_value"
PLACEHOLDER_B64 = "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ=="  # the same, as a bytea in base64 mode
HSTORE_PLACEHOLDER = '{"' + PLACEHOLDER + '":"' + PLACEHOLDER + '"}'
INT_ARRAY_PLACEHOLDER = tuple(PLACEHOLDER.encode())
UUID_ARRAY_PLACEHOLDER = "b68a35a7-17ad-35b3-af2a-ae46edb4545a"  # a name-based UUID of those bytes
_STANDINS: tuple[object, ...] = (
    PLACEHOLDER,
    PLACEHOLDER_B64,
    HSTORE_PLACEHOLDER,
    [PLACEHOLDER],
    list(INT_ARRAY_PLACEHOLDER),
    [UUID_ARRAY_PLACEHOLDER],
)


_TEXT_STANDINS = frozenset(s for s in _STANDINS if isinstance(s, str))
_LIST_STANDINS = tuple(s for s in _STANDINS if isinstance(s, list))


def is_unchanged_toast(value: object) -> bool:
    """Whether a captured value is Debezium's stand-in for an unchanged TOASTed value."""
    if isinstance(value, str):  # one set lookup: this runs for every column of every change
        return value in _TEXT_STANDINS
    return isinstance(value, list) and any(value == s for s in _LIST_STANDINS)


# Which stand-in each type gets (Debezium's UnchangedToastedReplicationMessageColumn; measured):
# arrays of these element types get one, every other array gets NULL; of the scalar types that
# TOAST applies to, these get NULL (text-like ones, json, jsonb, xml, hstore, ranges get the text).
_ARRAY_STANDINS = frozenset({"text", "varchar", "bpchar", "json", "jsonb", "int4", "int8", "date", "uuid"})
_SCALAR_LOST = frozenset({"bytea", "numeric", "bit", "varbit"})


def standin_lost(pg_type: str, is_array: bool) -> bool:
    """Whether Debezium sends NULL (not a stand-in) for an unchanged TOASTed value of this type."""
    return pg_type not in _ARRAY_STANDINS if is_array else pg_type in _SCALAR_LOST
