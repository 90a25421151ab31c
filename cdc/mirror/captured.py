"""The record of what the bridge captures, kept in ClickHouse for everything that is not the bridge.

Each start of a source (and each ``cdc add-table``) writes one row per captured table to
``cdc.captured_tables``: the table, its source key, and the facts another process needs to check it
(the replication slot, the *name* of the variable holding the source's DSN, never the DSN, and the
translator modules). Tables no longer captured are marked inactive. Dagster's definitions are built
from it, so the asset graph and the checks follow the user's database, not a fixed list. Pure: SQL
through the ``Warehouse`` port.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cdc.domain.changes import TableRef
from cdc.domain.names import sql_table
from cdc.mirror.table import mirror_name, quote
from cdc.ports import Warehouse

DDL = (
    "CREATE DATABASE IF NOT EXISTS cdc",
    "CREATE TABLE IF NOT EXISTS cdc.captured_tables (source String, schema String, table String,"
    " key Array(String), slot String, dsn_env String, events Bool, translators Array(String), active Bool,"
    " updated_at DateTime64(6, 'UTC') DEFAULT now64(6))"
    " ENGINE = ReplacingMergeTree(updated_at) ORDER BY (source, schema, table)",
)
_COLUMNS = ("source", "schema", "table", "key", "slot", "dsn_env", "events", "translators", "active")
_READ = (
    "SELECT source, schema, table, key, slot, dsn_env, events, translators FROM cdc.captured_tables FINAL"
    " WHERE active ORDER BY source, schema, table"
)


@dataclass(frozen=True, slots=True)
class CapturedTable:
    """One source table and where the bridge puts it: topic ``<source>.<schema>.<table>`` and
    ClickHouse views ``<source>.<mirror name>`` (current rows) and ``<source>.<mirror name>_changes``."""

    source: str
    schema: str
    table: str
    key: tuple[str, ...]
    slot: str = ""
    dsn_env: str = ""  # "" : the DSN of the bridge's flag or CDC_SOURCE_DSN
    events: bool = False  # the source's changes also become domain events
    translators: tuple[str, ...] = ()

    @property
    def ref(self) -> TableRef:
        return TableRef(self.source, self.schema, self.table)

    @property
    def name(self) -> str:
        """The mirror's name (the table, prefixed by its schema outside ``public``)."""
        return mirror_name(self.ref)

    @property
    def topic(self) -> str:
        return self.ref.topic

    @property
    def view(self) -> str:
        return f"{quote(self.source)}.{quote(self.name)}"

    @property
    def change_log(self) -> str:
        """The physical change log (every change once; ``max(_commit_ts)`` needs no FINAL)."""
        return f"{quote(self.source)}.{quote('_log_' + self.name)}"

    @property
    def postgres_table(self) -> str:
        return sql_table(self.schema, self.table)


def record(warehouse: Warehouse, source: str, tables: Sequence[CapturedTable]) -> None:
    """``tables`` are every table ``source`` captures now: write them, and mark the source's others inactive."""
    for statement in DDL:
        warehouse.command(statement)
    now = {(t.schema, t.table) for t in tables}
    gone = [t for t in read(warehouse) if t.source == source and (t.schema, t.table) not in now]
    rows = [_row(t, True) for t in tables] + [_row(t, False) for t in gone]
    if rows:
        warehouse.insert("cdc", "captured_tables", _COLUMNS, rows)


def _row(t: CapturedTable, active: bool) -> tuple[object, ...]:
    return (t.source, t.schema, t.table, list(t.key), t.slot, t.dsn_env, t.events, list(t.translators), active)


def read(warehouse: Warehouse) -> list[CapturedTable]:
    """Every table some source captures, by source and name; none before a bridge first started."""
    found = warehouse.query("SELECT count() FROM system.tables WHERE database = 'cdc' AND name = 'captured_tables'")
    if not int(found[0][0]):
        return []
    return [
        CapturedTable(source, schema, table, tuple(key), slot, dsn_env, bool(events), tuple(translators))
        for source, schema, table, key, slot, dsn_env, events, translators in warehouse.query(_READ)
    ]
