"""Erasure rules as a translators module declares them."""

from __future__ import annotations

import pytest

from cdc.domain.erasure import erasure
from cdc.domain.events import EventDefinitionError, EventRegistry, collecting


def test_tables_are_qualified_and_the_delete_column_is_the_tables() -> None:
    reg = EventRegistry()
    with collecting(reg):
        rule = erasure("customer", tables={"customers": "id", "sales.orders": "buyer"}, on_delete="customers")
    assert reg.erasures == {"customer": rule}
    assert rule.tables == (("public.customers", "id"), ("sales.orders", "buyer"))
    assert (rule.on_delete, rule.delete_column) == ("public.customers", "id")


@pytest.mark.parametrize(
    ("tables", "on_delete", "words"),
    [({}, None, "name at least one table"), ({"customers": "id"}, "orders", "on_delete public.orders is not one")],
)
def test_a_rule_that_cannot_work_is_refused(tables: dict[str, str], on_delete: str | None, words: str) -> None:
    with collecting(EventRegistry()), pytest.raises(EventDefinitionError, match=words):
        erasure("customer", tables=tables, on_delete=on_delete)


def test_one_rule_per_aggregate() -> None:
    reg = EventRegistry()
    with collecting(reg), pytest.raises(EventDefinitionError, match="declared twice"):
        erasure("customer", tables={"customers": "id"})
        erasure("customer", tables={"clients": "id"})
