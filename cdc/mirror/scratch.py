"""A twin of a mirror's state table, filled by the copy path through its own Null table and view: ``cdc resync``
(:mod:`cdc.mirror.resync`) loads one to swap in, content parity (:mod:`cdc.mirror.parity`) one to compare with.
Each user has its own prefixes, so neither touches the mirror's own ``_copy_`` table or the other's objects."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from cdc.errors import CdcError
from cdc.mirror.copy_sql import copy_table_ddl, copy_view_select
from cdc.mirror.table import MirrorTable
from cdc.ports import Warehouse

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScratchState:
    """The prefixes of the twin (``state``), of the Null table a copy inserts into (``copy``) and of the
    materialized view turning its rows into state rows (``view``)."""

    state: str
    copy: str
    view: str

    def create_ddl(self, table: MirrorTable) -> list[str]:
        """Statements creating the three (drop them first: :meth:`drop`)."""
        return [
            f"CREATE TABLE {table.qualified(self.state)} AS {table.qualified('_state_')}",
            copy_table_ddl(table, self.copy),
            f"CREATE MATERIALIZED VIEW {table.qualified(self.view)} TO {table.qualified(self.state)} AS "
            + table.state_select(f"({copy_view_select(table, self.copy)})"),
        ]

    def drop(self, warehouse: Warehouse, table: MirrorTable, what: str) -> None:
        """Drop the three if they exist; a warehouse away is logged (``what`` names the work), not raised:
        the next run drops them first."""
        for statement in (
            f"DROP VIEW IF EXISTS {table.qualified(self.view)}",
            f"DROP TABLE IF EXISTS {table.qualified(self.copy)}",
            f"DROP TABLE IF EXISTS {table.qualified(self.state)} SYNC",
        ):
            try:
                warehouse.command(statement)
            except CdcError as e:
                log.warning("%s of %s: could not drop its scratch objects: %s", what, table.schema.ref.display, e)
