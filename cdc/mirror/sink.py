"""The mirror sink: row changes -> ClickHouse current-state and change-log tables."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

from cdc.domain.changes import RowChange, TableRef, TableSchema
from cdc.errors import CdcError
from cdc.mirror.table import MirrorTable
from cdc.ports import Catalog, Warehouse

log = logging.getLogger(__name__)


class UnknownTableError(CdcError):
    """A change arrived for a table the source catalog does not know."""


class ClickHouseMirrorSink:
    """Writes changes idempotently: a batch applied twice leaves the same tables.

    ``write`` returns only after ClickHouse stored both the state rows and the
    change-log rows, so the caller may then commit the broker offsets.
    """

    def __init__(self, warehouse: Warehouse, catalog: Catalog, database_for: dict[str, str] | None = None) -> None:
        self._warehouse = warehouse
        self._catalog = catalog
        self._database_for = database_for or {}
        self._tables: dict[TableRef, MirrorTable] = {}
        self.rows_written: Counter[str] = Counter()

    def prepare(self, schemas: Sequence[TableSchema]) -> None:
        """Create the ClickHouse objects for ``schemas`` up front (idempotent)."""
        for schema in schemas:
            self._ensure(schema.ref, schema)

    def table(self, ref: TableRef) -> MirrorTable:
        return self._ensure(ref, None)

    def _ensure(self, ref: TableRef, schema: TableSchema | None) -> MirrorTable:
        table = self._tables.get(ref)
        if table is not None:
            return table
        schema = schema or self._catalog.table_schema(ref)
        if schema is None:
            raise UnknownTableError(f"no table {ref.qualified} in source {ref.source!r}")
        table = MirrorTable(schema, self._database_for.get(ref.source, ref.source))
        for statement in table.ddl():
            self._warehouse.command(statement)
        self._tables[ref] = table
        log.info("mirroring %s into %s", ref.qualified, table.view)
        return table

    def write(self, ref: TableRef, changes: Sequence[RowChange]) -> None:
        table = self.table(ref)
        state, changelog = table.rows(changes)
        db, name = table.database, table.name
        self._warehouse.insert(db, "_state_" + name, table.state_columns, state)
        self._warehouse.insert(db, "_log_" + name, table.log_columns, changelog)
        self.rows_written[ref.qualified] += len(changes)

    def adjusted_values(self) -> dict[str, int]:
        """Per ``table.column``: values clamped or nulled because ClickHouse cannot hold them."""
        out: dict[str, int] = {}
        for ref, table in self._tables.items():
            for column, n in table.adjusted.items():
                out[f"{ref.qualified}.{column}"] = n
        return out
