"""The captured tables the Dagster project knows: the demo shop's, with the source's primary keys.

The keys are stated here, from the shop's schema (``cdc/demo/schema.sql``), rather than read from
the mirror: the uniqueness check must hold the mirror to the source's identity, not to its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdc.demo.shop import DEMO_TABLES
from cdc.domain.changes import TableRef
from cdc.mirror.table import mirror_name, quote

SHOP_KEYS: dict[str, tuple[str, ...]] = {
    "public.customers": ("id",),
    "public.products": ("id",),
    "public.orders": ("id",),
    "public.order_items": ("order_id", "line_no"),
}


@dataclass(frozen=True, slots=True)
class CapturedTable:
    """One source table and where the bridge puts it: topic ``<source>.<schema>.<table>`` and
    ClickHouse views ``<source>.<table>`` (current rows) and ``<source>.<table>_changes``."""

    source: str
    schema: str
    table: str
    key: tuple[str, ...]

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
        return f"{_pg_quote(self.schema)}.{_pg_quote(self.table)}"


def _pg_quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def shop_tables(source: str) -> list[CapturedTable]:
    """The demo shop's four tables, captured under the logical source name ``source``."""
    tables = []
    for qualified in DEMO_TABLES:
        schema, _, table = qualified.partition(".")
        tables.append(CapturedTable(source, schema, table, SHOP_KEYS[qualified]))
    return tables
