"""Erasure rules: which rows of which tables hold one person's (or one thing's) data.

Pure: stdlib only. Declared in a translators module, next to the events::

    erasure("customer", tables={"public.customers": "id", "public.orders": "customer_id"},
            on_delete="public.customers")

``cdc erase customer 42`` then removes, from everything the bridge wrote, the rows of each table
whose column holds 42 (their whole history in the mirror's change log too), every event of the
aggregates those rows made (derived, authored and deadline events alike), their dead letters, the
reports built from them, and the records of the broker's topics. With ``on_delete`` a DELETE of
that table's row in the source erases the same way, by itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cdc.domain.events import EventDefinitionError, active_registry


@dataclass(frozen=True)
class ErasureRule:
    aggregate: str  # what ``cdc erase <aggregate> <id>`` names, e.g. "customer"
    tables: tuple[tuple[str, str], ...]  # (``schema.table``, column holding the id), in order
    on_delete: str | None = None  # a DELETE of this table's row erases its id (the table's column)

    @property
    def delete_column(self) -> str | None:
        return dict(self.tables).get(self.on_delete) if self.on_delete else None


def erasure(aggregate: str, *, tables: Mapping[str, str], on_delete: str | None = None) -> ErasureRule:
    """Declare how to erase an ``aggregate`` (a person, usually): ``tables`` maps ``schema.table`` to the
    column that holds its id (``public`` when no schema is given)."""
    if not tables:
        raise EventDefinitionError(f"erasure {aggregate!r}: name at least one table")
    qualified = tuple((t if "." in t else f"public.{t}", c) for t, c in tables.items())
    if on_delete is not None:
        on_delete = on_delete if "." in on_delete else f"public.{on_delete}"
        if on_delete not in dict(qualified):
            raise EventDefinitionError(f"erasure {aggregate!r}: on_delete {on_delete} is not one of its tables")
    rule = ErasureRule(aggregate, qualified, on_delete)
    active_registry().add_erasure(rule)
    return rule
