"""Copy a table's existing rows into its mirror through the copy path (:mod:`cdc.mirror.copy_sql`).

Blocks of whole lines go from PostgreSQL's ``COPY ... TO STDOUT`` to the table's ``_ingest_`` table
as they are: no per-row work in Python. Why the result is exact while the stream runs: see
:mod:`cdc.mirror.copy_sql`.
"""

from __future__ import annotations

from cdc.mirror.copy_sql import envelope_query
from cdc.mirror.table import MirrorTable
from cdc.ports import SourceDatabase, Warehouse

BLOCK_BYTES = 16 << 20  # per insert: a few tens of thousands of rows of a typical table


def copy_rows(source: SourceDatabase, warehouse: Warehouse, table: MirrorTable, where: str = "") -> int:
    """Copy the rows of ``table`` (those matching ``where``, a SQL condition) into its mirror; the count."""
    rows = 0
    for block in source.copy_out(envelope_query(table.schema, where), BLOCK_BYTES):
        warehouse.insert_raw(table.database, table.ingest_table, ("value",), block, "TabSeparated")
        rows += block.count(b"\n")
    return rows
