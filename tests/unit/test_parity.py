"""Content parity's pure parts (cdc.mirror.parity_ranges, cdc.mirror.parity): how a table is walked in key
ranges, the conditions on both sides, the cursor, the comparison's SQL, the masks, and the report."""

from __future__ import annotations

from dataclasses import replace

from pydantic import SecretStr

from cdc.domain.changes import Column, TableRef, TableSchema
from cdc.mirror import parity_ranges as pr
from cdc.mirror.copy_sql import copy_query
from cdc.mirror.parity import ParityReport, diff_sql
from cdc.mirror.parity_ranges import KeyRange
from cdc.mirror.rules import ColumnRules
from cdc.mirror.table import MirrorTable
from cdc.settings import MaskRule, SourceSpec

ORDERS = TableSchema(
    TableRef("shop", "public", "orders"),
    (Column("id", "int8", nullable=False), Column("email", "text"), Column("phone", "text"), Column("n", "int4")),
    ("id",),
)
CODES = TableSchema(TableRef("shop", "public", "codes"), (Column("code", "text", nullable=False),), ("code",))
PAIRS = TableSchema(
    TableRef("shop", "public", "pairs"), (Column("a", "int4", nullable=False), Column("b", "int4", nullable=False)),
    ("a", "b"),
)  # fmt: skip


def test_only_keys_both_engines_order_alike_are_walked_in_ranges() -> None:
    assert pr.walk_kind(ORDERS) == "integer"
    assert pr.walk_kind(CODES) == "text"
    assert pr.walk_kind(PAIRS) is None  # several columns: compared whole
    uuid = replace(ORDERS, columns=(Column("id", "uuid"),))
    assert pr.walk_kind(uuid) is None  # PostgreSQL and ClickHouse order uuids differently
    bpchar = replace(CODES, columns=(Column("code", "bpchar"),))
    assert pr.walk_kind(bpchar) is None  # padding makes its order not byte order


def test_a_range_selects_the_same_keys_on_both_sides() -> None:
    rng = KeyRange(501, 1001)
    assert pr.pg_where(ORDERS, "integer", rng) == '"id" >= 501 AND "id" < 1001'
    assert pr.ch_where(ORDERS, "integer", rng) == "`id` >= 501 AND `id` < 1001"
    assert pr.pg_where(ORDERS, "integer", KeyRange()) == "" and pr.ch_where(ORDERS, "integer", KeyRange()) == "1"
    text = KeyRange("b'x", None)
    assert pr.pg_where(CODES, "text", text) == "\"code\" COLLATE \"C\" >= 'b''x'"  # byte order, as ClickHouse's
    assert pr.ch_where(CODES, "text", text) == "`code` >= 'b\\'x'"
    assert pr.pg_where(PAIRS, None, KeyRange()) == "" and pr.ch_where(PAIRS, None, KeyRange()) == "1"


def test_the_next_bound_is_range_rows_further_in_the_walks_order() -> None:
    assert (
        pr.bound_sql(ORDERS, "integer", None, 500)
        == 'SELECT "id" FROM "public"."orders" ORDER BY "id" OFFSET 500 LIMIT 1'
    )
    assert pr.bound_sql(ORDERS, "integer", 501, 500) == (
        'SELECT "id" FROM "public"."orders" WHERE "id" >= 501 ORDER BY "id" OFFSET 500 LIMIT 1'
    )  # an index range scan of 500 entries, however the keys are spread
    assert pr.bound_sql(CODES, "text", "m", 100) == (
        'SELECT "code" FROM "public"."codes" WHERE "code" COLLATE "C" >= \'m\''
        ' ORDER BY "code" COLLATE "C" OFFSET 100 LIMIT 1'
    )


def test_a_few_keys_are_selected_by_value_where_literals_are_safe() -> None:
    assert pr.keys_where(PAIRS, [(1, 2), (3, 4)], "pg") == '("a", "b") IN ((1, 2), (3, 4))'
    assert pr.keys_where(CODES, [("it's",)], "ch") == "(`code`) IN (('it\\'s'))"
    assert pr.keys_where(CODES, [("it's",)], "pg") == "(\"code\") IN (('it''s'))"
    uuid = replace(ORDERS, columns=(Column("id", "uuid"),))
    assert pr.keys_where(uuid, [("x",)], "pg") is None  # the whole range is read again instead
    assert pr.keys_where(ORDERS, [], "pg") is None


def test_the_cursor_round_trips_and_restarts_when_the_key_changed() -> None:
    assert pr.encode_cursor(None) == "" and pr.decode_cursor("", "integer") is None
    assert pr.decode_cursor(pr.encode_cursor(1001), "integer") == 1001
    assert pr.decode_cursor(pr.encode_cursor("c0250"), "text") == "c0250"
    assert pr.decode_cursor(pr.encode_cursor("c0250"), "integer") is None  # the key became an integer
    assert pr.decode_cursor("true", "integer") is None and pr.decode_cursor("{oops", "text") is None
    assert "FINAL WHERE source = 'sh\\'op'" in pr.cursor_sql("sh'op", "public.orders")
    assert pr.save_cursor_sql("shop", "public.orders", "1001", 2).endswith(
        "'shop', 'public.orders', '1001', 2, now64(3, 'UTC'))"
    )


def test_the_diff_hashes_every_column_of_the_view_on_both_sides_by_key() -> None:
    sql = diff_sql(MirrorTable(ORDERS, "shop"), "`id` >= 1")
    row_hash = "cityHash64(tuple(`id`, `email`, `phone`, `n`))"
    assert sql.count(row_hash) == 2
    assert "FROM `shop`.`_parity_orders` FINAL WHERE _is_deleted = 0" in sql  # the copied source rows
    assert "1 AS side FROM `shop`.`orders` WHERE `id` >= 1" in sql  # the mirror's current rows
    assert sql.endswith("GROUP BY `id` HAVING in_source != in_mirror OR source_hash != mirror_hash ORDER BY `id`")


def test_masked_columns_are_read_as_debezium_sends_them_and_excluded_ones_not_at_all() -> None:
    spec = SourceSpec(
        SecretStr("postgresql://x"),
        "shop",
        mask=(MaskRule("public.orders.email", "hash"), MaskRule("public.orders.phone", "redact")),
        exclude_columns=("public.orders.n",),
    )
    rules = ColumnRules(None, spec)  # type: ignore[arg-type]  # the catalog is not read here
    masks = rules.masks(ORDERS, "pepper123")
    assert masks == {
        "email": "encode(sha256(convert_to('pepper123' || \"email\"::text, 'UTF8')), 'hex')",
        "phone": "'********'",
    }
    mirrored = rules.apply(ORDERS)
    sql = copy_query(MirrorTable(mirrored, "shop"), ORDERS, '"id" < 10', masks)
    assert sql == (
        "SELECT \"id\", (encode(sha256(convert_to('pepper123' || \"email\"::text, 'UTF8')), 'hex'))::text,"
        ' (\'********\')::text FROM "public"."orders" WHERE "id" < 10'
    )  # the clear values never leave PostgreSQL; n is not read
    assert rules.masks(CODES, "pepper123") == {}


def test_the_report_says_drift_unsupported_or_failed() -> None:
    ok = ParityReport("shop", "public.orders", rows_compared=10, ranges_checked=1, complete_cycle=True)
    assert ok.result == "ok" and not ok.drift
    drift = replace(ok, missing=1, first_range=KeyRange(None, 501).to_json(), sample_keys=[[7]])
    assert drift.result == "drift"
    out = drift.to_json()
    assert list(out)[:3] == ["source", "table", "result"]
    assert out["first_range"] == {"lower": None, "upper": 501} and out["sample_keys"] == [[7]]
    assert set(out) >= {"supported", "reason", "rows_compared", "ranges_checked", "complete_cycle", "missing",
                        "extra", "differing", "unsettled", "rechecked", "next_cursor", "seconds"}  # fmt: skip
    assert ParityReport("shop", "t", supported=False, reason="x").result == "unsupported"
    assert ParityReport("shop", "t", failed=True, reason="x").result == "failed"


def test_the_route_refuses_malformed_requests_and_waits_for_a_starting_bridge() -> None:
    from cdc.parities import Parities

    parities = Parities([], lambda: None, lambda: "")
    assert parities.action("GET", None)[0] == 405
    for body in ({"table": 5}, {"source": ["x"]}, {"budget_rows": "many"}, {"budget_rows": True}, {"wait_s": -1}):
        code, answer = parities.action("POST", body)
        assert code == 400 and "POST a JSON object" in answer["error"], body
    code, answer = parities.action("POST", {"table": "public.orders", "budget_rows": 10})
    assert code == 409 and "still starting" in answer["error"]


def test_the_cli_line_names_the_result_the_first_range_and_the_keys() -> None:
    from cdc.cli.control import _parity_line

    drift = replace(
        ParityReport("shop", "public.orders", rows_compared=1200, ranges_checked=3, complete_cycle=False),
        missing=1, differing=2, first_range=KeyRange(501, 1001).to_json(), sample_keys=[[507], [600], [990]],
        next_cursor=1201, seconds=0.42,
    )  # fmt: skip
    assert _parity_line(drift.to_json()) == (
        "shop public.orders: drift, 1,200 rows in 3 range(s) (the next run goes on from 1201, 0.4 s);"
        " 1 missing, 0 extra, 2 differing; first differing range [501, 1001); keys 507, 600, 990"
    )
    text = replace(drift, first_range=KeyRange("a", None).to_json(), sample_keys=[["ab"], ["b", 1]])
    assert _parity_line(text.to_json()).endswith('first differing range ["a", open); keys "ab", ["b", 1]')
    unsupported = ParityReport("shop", "public.flags", supported=False, reason="column b is varbit")
    assert _parity_line(unsupported.to_json()) == "shop public.flags: unsupported: column b is varbit"
