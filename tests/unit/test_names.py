"""Names: topics as Debezium writes them, collision-free ClickHouse names, table names as users write them."""

import itertools

import pytest

from cdc.debezium.config import table_include_list
from cdc.domain.names import (
    FILE_NAME_MAX,
    display_table,
    events_topic,
    file_length,
    mirror_name,
    parse_table,
    sql_table,
    topic_name,
)


@pytest.mark.parametrize(
    ("schema", "table", "topic"),
    [
        ("public", "orders", "shop.public.orders"),
        ("sales", "Order Items", "shop.sales.Order_Items"),  # what Debezium wrote in the report
        ("sales", "Order_Items", "shop.sales.Order_Items"),  # the same topic: told apart by source.table
        ("public", "a.b", "shop.public.a.b"),
        ("public", "ключ", "shop.public.____"),
        ("public", "😀", "shop.public.__"),  # Java counts two UTF-16 units
        ("public", "t" * 300, ("shop.public." + "t" * 300)[:249]),
    ],
)
def test_topics_follow_debeziums_own_sanitising(schema: str, table: str, topic: str) -> None:
    assert topic_name("shop", schema, table) == topic


def test_events_topics_are_valid_topic_names() -> None:
    assert events_topic("sales__Order Item") == "events.sales__Order_Item"


ODD = [
    ("public", "orders"),
    ("public", "Orders"),
    ("public", "Order Items"),
    ("public", "x__y"),
    ("x", "y"),
    ("x_", "y"),
    ("x", "_y"),
    ("a", "b__c"),
    ("a__b", "c"),
    ("public", "a.b"),
    ("a", "b"),
    ("public", "a__b"),
    ("sales", "Order Items"),
    ("sales", "Order_Items"),
    ("public", "ü" * 31),
    ("public", "t_" + "ü" * 30 + "x"),
    ("s" * 63, "t" * 63),
    ("ü" * 31, "ü" * 31),
    ("public", "select"),
    ("public", 'say "hi"'),
    ("public", "__"),
    ("_", "_"),
    ("public", "_"),
]


def test_clickhouse_names_never_collide_and_fit_a_file_name() -> None:
    names = [mirror_name(s, t) for s, t in ODD]
    assert len(set(names)) == len(names), sorted(names)
    assert all(file_length(n) <= FILE_NAME_MAX for n in names)


def test_clickhouse_names_stay_readable_when_unambiguous() -> None:
    assert mirror_name("public", "orders") == "orders"
    assert mirror_name("public", "Order Items") == "Order Items"
    assert mirror_name("sales", "Order Items") == "sales__Order Items"
    assert mirror_name("public", "x__y").startswith("x__y__")  # would read as schema x, table y
    assert mirror_name("x_", "y") != mirror_name("x", "_y")


def test_names_made_of_underscores_never_collide() -> None:
    parts = ["_", "__", "a", "a_", "_a", "a__b"]
    pairs = [(s, t) for s, t in itertools.product(["public", *parts], parts)]
    names = [mirror_name(s, t) for s, t in pairs]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize(
    ("written", "parsed"),
    [
        ("orders", ("public", "orders")),
        ("sales.orders", ("sales", "orders")),
        ("sales.Order Items", ("sales", "Order Items")),
        ('sales."Order Items"', ("sales", "Order Items")),
        ('"a.b"', ("public", "a.b")),
        ('"my.schema"."t.1"', ("my.schema", "t.1")),
        ('public."say ""hi"""', ("public", 'say "hi"')),
        ("Orders", ("public", "Orders")),  # no case folding
    ],
)
def test_table_names_as_users_write_them(written: str, parsed: tuple[str, str]) -> None:
    assert parse_table(written) == parsed
    assert parse_table(display_table(*parsed)) == parsed


@pytest.mark.parametrize("bad", ["a.b.c", "", "a.", '"unterminated', 'a"b'])
def test_unreadable_table_names_say_how_to_write_them(bad: str) -> None:
    with pytest.raises(ValueError, match="table"):
        parse_table(bad)


def test_sql_quoting_and_debeziums_include_list() -> None:
    assert sql_table("sales", 'say "hi"') == '"sales"."say ""hi"""'
    include = table_include_list(('sales."Order Items"', '"a.b".x', 'public."we,ird"'))
    # case-sensitive, anchored; Debezium's list splitter reads \\, as a comma inside one pattern
    assert include == r"^(?-i)sales\.Order\ Items$,^(?-i)a\.b\.x$,^(?-i)public\.we\,ird$"
