"""The pure parts of schema evolution: following the catalog, accepting row shapes, the SQL they lead to."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cdc.domain.changes import Column, TableRef, TableSchema
from cdc.mirror.evolution import reconcile, shape_of, widens
from cdc.mirror.model import MirrorModel
from cdc.mirror.table import MirrorTable
from cdc.mirror.toast import has_placeholder, message_lsn, repair_sql

REF = TableRef("src", "public", "items")
COLS = (Column("id", "int8", nullable=False), Column("qty", "int4", nullable=False), Column("body", "text"))
SCHEMA = TableSchema(REF, COLS, ("id",))


def _follow(*columns: Column, model: MirrorModel | None = None) -> tuple[MirrorModel, set[tuple[str, str]]]:
    new, notices = reconcile(model or MirrorModel.of(SCHEMA), replace(SCHEMA, columns=columns), table=REF.topic)
    return new, {(n.kind, n.column) for n in notices}


def test_unchanged_source_changes_nothing() -> None:
    assert _follow(*COLS) == (MirrorModel.of(SCHEMA), set())


def test_added_column_is_nullable_and_older_images_stay_accepted() -> None:
    model, notices = _follow(*COLS, Column("note", "text", nullable=False))
    assert notices == {("added", "note")}
    assert model.live == ("id", "qty", "body", "note")
    assert model.accepted_shapes() == (("id", "qty", "body", "note"), ("id", "qty", "body"))
    assert model.state_nullable("note")


def test_dropped_column_is_kept_nullable() -> None:
    model, notices = _follow(COLS[0], COLS[2])
    assert notices == {("dropped", "qty")}
    assert [c.name for c in model.columns] == ["id", "qty", "body"] and model.live == ("id", "body")
    assert model.state_nullable("qty")


def test_drop_and_add_of_the_same_type_is_a_rename() -> None:
    _, notices = _follow(COLS[0], COLS[1], Column("content", "text"))
    assert notices == {("renamed", "content")}


@pytest.mark.parametrize(
    ("old", "new", "widened"),
    [
        (Column("c", "int2"), Column("c", "int4"), True),
        (Column("c", "int4"), Column("c", "int8"), True),
        (Column("c", "int8"), Column("c", "int4"), False),
        (Column("c", "float4"), Column("c", "float8"), True),
        (Column("c", "varchar"), Column("c", "text"), True),
        (
            Column("c", "numeric", numeric_precision=10, numeric_scale=2),
            Column("c", "numeric", numeric_precision=12, numeric_scale=4),
            True,
        ),
        (
            Column("c", "numeric", numeric_precision=10, numeric_scale=2),
            Column("c", "numeric", numeric_precision=10, numeric_scale=4),
            False,
        ),  # fewer integer digits
        (Column("c", "numeric", numeric_precision=10, numeric_scale=2), Column("c", "numeric"), True),
        (Column("c", "int4"), Column("c", "text"), False),
        (Column("c", "date"), Column("c", "timestamp"), False),
        (Column("c", "text"), Column("c", "bytea"), False),
        (Column("c", "int4", is_array=True), Column("c", "int4"), False),
    ],
)
def test_widening(old: Column, new: Column, widened: bool) -> None:
    assert widens(old, new) is widened


def test_type_changes_widen_or_become_text() -> None:
    model, notices = _follow(COLS[0], replace(COLS[1], pg_type="int8"), COLS[2])
    assert notices == {("type_widened", "qty")} and not model.as_text
    model, notices = _follow(COLS[0], replace(COLS[1], pg_type="text"), COLS[2], model=model)
    assert notices == {("type_changed", "qty")} and model.as_text == {"qty"}
    model, notices = _follow(COLS[0], replace(COLS[1], nullable=True), COLS[2])
    assert notices == {("now_nullable", "qty")} and model.state_nullable("qty")


def test_key_type_change_is_reported_not_followed() -> None:
    model, notices = _follow(replace(COLS[0], pg_type="text"), *COLS[1:])
    assert notices == {("key_changed", "id")} and model.index["id"].pg_type == "int8"


def test_observed_shapes_are_accepted_and_odd_values_widen_the_column() -> None:
    model = MirrorModel.of(SCHEMA)
    prefix = shape_of({"id": 1, "qty": 2})
    stray = shape_of({"id": 1, "qty": "two", "body": None, "ghost": [1]})
    new, notices = reconcile(model, SCHEMA, [prefix, stray], table=REF.topic)
    assert {(n.kind, n.column) for n in notices} == {("type_changed", "qty"), ("unknown_column", "ghost")}
    assert ("id", "qty") in new.accepted_shapes() and ("id", "qty", "body", "ghost") in new.accepted_shapes()
    assert new.kinds("ghost") == new.kinds("qty")  # both take any JSON value now, as text


def test_model_survives_a_round_trip() -> None:
    model, _ = _follow(
        COLS[0], replace(COLS[1], pg_type="text"), Column("n", "numeric", numeric_precision=5, numeric_scale=1)
    )
    assert MirrorModel.from_json(model.to_json()) == replace(model, shapes=())


def test_drift_sql_checks_every_accepted_shape_and_int_ranges() -> None:
    model, _ = _follow(*COLS, Column("note", "text"))
    sql = MirrorTable(SCHEMA, "src", model).drift_sql()
    assert "['id', 'qty', 'body', 'note']::Array(String)" in sql
    assert "['id', 'qty', 'body']::Array(String)" in sql
    assert "BETWEEN -2147483648 AND 2147483647" in sql  # qty is int4


def test_alter_ddl_adds_and_modifies_only_what_differs() -> None:
    model, _ = _follow(COLS[0], COLS[2], Column("note", "text"))  # qty dropped, note added
    table = MirrorTable(SCHEMA, "src", model)
    special = {"_special": "Map(String, String)"}
    existing = {
        "_state_items": {"id": "Int64", "qty": "Int32", "body": "Nullable(String)", **special},
        "_log_items": {"id": "Int64", "qty": "Nullable(Int32)", "body": "Nullable(String)", **special},
    }
    assert table.alter_ddl(existing) == [
        "ALTER TABLE `src`.`_state_items` MODIFY COLUMN `qty` Nullable(Int32)",
        "ALTER TABLE `src`.`_state_items` ADD COLUMN IF NOT EXISTS `note` Nullable(String) AFTER `body`",
        "ALTER TABLE `src`.`_log_items` ADD COLUMN IF NOT EXISTS `note` Nullable(String) AFTER `body`",
    ]
    # a mirror made before `_special` existed gets it
    older = {name: {c: t for c, t in cols.items() if c != "_special"} for name, cols in existing.items()}
    assert [s for s in table.alter_ddl(older) if "_special" in s] == [
        "ALTER TABLE `src`.`_state_items` ADD COLUMN IF NOT EXISTS _special Map(String, String)",
        "ALTER TABLE `src`.`_log_items` ADD COLUMN IF NOT EXISTS _special Map(String, String)",
    ]


def test_placeholder_detection_and_repair_sql() -> None:
    assert has_placeholder(b'{"after": {"body": "__debezium_unavailable_value"}}')
    assert has_placeholder(b'{"after": {"blob": "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ=="}}')
    assert has_placeholder(b'{"after": {"ids": [95,95,100,101,98,101,122,105,117,109,95]}}')  # int4[], int8[], date[]
    assert has_placeholder(b'{"after": {"refs": ["b68a35a7-17ad-35b3-af2a-ae46edb4545a"]}}')  # uuid[]
    assert not has_placeholder(b'{"after": {"body": "x", "ids": [95,95]}}') and not has_placeholder(None)
    assert message_lsn(b'{"source": {"lsn": 42}}') == 42 and message_lsn(b"nope") is None
    sql = repair_sql(MirrorTable(SCHEMA, "src"), 42)
    assert sql.startswith("INSERT INTO `src`.`_state_items`") and "_lsn >= 42" in sql
    assert "argMaxIf(tuple(`body`)" in sql and "argMaxIf(tuple(`qty`)" not in sql  # only text can be a placeholder
