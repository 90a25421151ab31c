"""Names: any PostgreSQL table -> its Kafka topic and its ClickHouse name, and table names as users write them.

Pure: stdlib only. PostgreSQL allows any character in a quoted identifier (spaces, dots, quotes,
Unicode, 63 bytes, names that differ only in case); Kafka topics allow ``[A-Za-z0-9._-]`` and 249
characters; ClickHouse allows anything quoted, but keeps each table as a file whose name escapes
every byte outside ``[A-Za-z0-9_]`` as ``%XX`` and may not pass 255 bytes.

* **Topic**: Debezium's own rule (its default topic naming strategy), so the bridge reads what the
  connector writes: ``<source>.<schema>.<table>`` with every UTF-16 unit outside ``[A-Za-z0-9._-]``
  replaced by ``_``, cut to 249 characters. That rule is not collision-free (``Order Items`` and
  ``Order_Items`` share ``shop.sales.Order_Items``): tables that share a topic are told apart by the
  ``source.schema`` / ``source.table`` of every message (:func:`cdc.mirror.table` filters on them),
  so a shared topic costs a little work and loses nothing.
* **ClickHouse**: ``<table>`` for schema ``public``, ``<schema>__<table>`` otherwise, kept exactly
  (case, spaces, Unicode: ClickHouse quotes them). When that plain form could be read two ways (a
  ``__`` inside a name, or ``_`` next to the separator) or would make too long a file name, the name is
  the plain form (cut if needed) plus ``__`` and 10 hex digits of a hash of the exact schema and table.
  Plain names hold at most one ``__`` and hashed names at least two, so no two tables ever share a name,
  whatever else the source holds, and a name never changes when other tables come or go.
"""

from __future__ import annotations

import functools
import hashlib
import re

TOPIC_MAX = 249
_TOPIC_CHAR = re.compile(r"[A-Za-z0-9._-]")
_FILE_CHAR = re.compile(rb"[A-Za-z0-9_]")
FILE_NAME_MAX = 175  # escaped bytes: ClickHouse allows 190, and the mirror adds _mv_state_ or _changes
_HASHED_BASE_MAX = 160
_PART = re.compile(r'"((?:[^"]|"")*)"|([^."]*)')


def topic_name(source: str, schema: str, table: str) -> str:
    """The topic Debezium writes this table's changes to."""
    return sanitize_topic(f"{source}.{schema}.{table}")


def message_topic(source: str) -> str:
    """Where Debezium writes a source's logical-decoding messages (heartbeat ticks, authored events)."""
    return sanitize_topic(f"{source}.message")


def events_topic(aggregate: str) -> str:
    """``events.<aggregate>``, made a valid topic name the same way (aggregates of odd tables have spaces)."""
    return sanitize_topic(f"events.{aggregate}")


@functools.lru_cache(maxsize=4096)  # per event on the events lane: few distinct names
def sanitize_topic(name: str) -> str:
    """Debezium's sanitising: each UTF-16 unit (Java's char) outside ``[A-Za-z0-9._-]`` becomes ``_``."""
    out = [ch if _TOPIC_CHAR.fullmatch(ch) else "_" * (2 if ord(ch) > 0xFFFF else 1) for ch in name]
    text = "".join(out)[:TOPIC_MAX]
    return {".": "_", "..": "__"}.get(text, text)


def file_length(name: str) -> int:
    """Bytes of ``name`` as ClickHouse escapes it into a file name."""
    return sum(1 if _FILE_CHAR.fullmatch(bytes([b])) else 3 for b in name.encode())


def mirror_name(schema: str, table: str) -> str:
    """The ClickHouse name of a table's mirror (its tables are ``_state_<name>``, ``_log_<name>``, ...)."""
    if schema == "public":
        base, plain = table, "__" not in table
    else:
        base = f"{schema}__{table}"
        plain = _pairs(base) == 1
    if plain and base and file_length(base) <= FILE_NAME_MAX:
        return base
    digest = hashlib.sha256(f"{schema}\0{table}".encode()).hexdigest()[:10]
    while file_length(base) > _HASHED_BASE_MAX:
        base = base[:-1]
    return f"{base}__{digest}"


def _pairs(text: str) -> int:
    """Occurrences of ``__``, overlapping ones counted (``a___b`` has two)."""
    return sum(1 for i in range(len(text) - 1) if text[i : i + 2] == "__")


def parse_table(text: str) -> tuple[str, str]:
    """``schema.table`` as a user writes it -> (schema, table). Parts may be double-quoted like in SQL
    (``sales."Order Items"``, ``"my.schema"."t"``, a quote doubled inside quotes); unquoted parts are taken as
    written (no case folding); the table alone means schema ``public``. Raises ValueError."""
    parts: list[str] = []
    pos = 0
    while True:
        m = _PART.match(text, pos)
        assert m is not None  # the second alternative matches the empty string
        quoted, bare = m.group(1), m.group(2)
        part = quoted.replace('""', '"') if quoted is not None else bare
        if not part:
            raise ValueError(f"table {text!r}: empty name (write it as schema.table, quoting parts with dots)")
        parts.append(part)
        pos = m.end()
        if pos == len(text):
            break
        if text[pos] != ".":
            raise ValueError(f"table {text!r}: unexpected {text[pos]!r} (quote names with dots or quotes)")
        pos += 1
    if len(parts) == 1:
        return "public", parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise ValueError(f"table {text!r}: more than schema.table (put names that contain dots in double quotes)")


def display_table(schema: str, table: str) -> str:
    """``schema.table``, a part double-quoted when it holds a dot or a quote: :func:`parse_table` reads it back."""
    return f"{_display_part(schema)}.{_display_part(table)}"


def _display_part(part: str) -> str:
    return '"' + part.replace('"', '""') + '"' if ("." in part or '"' in part or not part) else part


def sql_table(schema: str, table: str) -> str:
    """``"schema"."table"`` for PostgreSQL statements."""
    return '"' + schema.replace('"', '""') + '"."' + table.replace('"', '""') + '"'
