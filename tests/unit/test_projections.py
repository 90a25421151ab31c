"""The pure parts of projections: declarations, parameter binding, storage SQL, the shop's catalogue."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from cdc.demo import projections as shop
from cdc.domain.events import load_modules
from pipelines import storage
from pipelines.builder import BuildResult, ProjectionBuilder
from pipelines.projection import Projection, ProjectionError, Sql, bind, in_scope, literal, micros

SCOPES = "SELECT DISTINCT day FROM t WHERE stored_at > {lo:DateTime64(6)} AND stored_at <= {hi:DateTime64(6)}"
ROWS = f"SELECT day, product_id, n FROM t WHERE {in_scope('day', 'Date')}"


def sample(**changes: Any) -> Projection:
    fields: dict[str, Any] = dict(
        name="sales",
        description="d",
        columns=(("day", "Date"), ("product_id", "Int64"), ("n", "UInt64")),
        key=("day", "product_id"),
        scope="day",
        scopes_sql=SCOPES,
        rows_sql=ROWS,
    )
    return Projection(**{**fields, **changes})


# -- declarations ----------------------------------------------------------------------------------


def test_a_projection_names_its_tables_and_columns() -> None:
    p = sample()
    assert (p.view, p.storage, p.shadow) == ("reports.sales", "reports._sales", "reports._sales__shadow")
    assert (p.value_columns, p.scope_type) == (("n",), "Date")


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"scope": "n"}, "scope n must be a key column"),
        ({"key": ("day", "missing")}, "key column missing is not a declared column"),
        ({"key": ()}, "the key is empty"),
        ({"columns": (("day", "Date"), ("product_id", "Int64"), ("_version", "UInt64"))}, "_version is reserved"),
        ({"columns": (("day", "Date"), ("product_id", "Int64"), ("day", "Date"))}, "declared twice"),
        ({"name": "sales; DROP"}, "not a plain identifier"),
        ({"scopes_sql": "SELECT DISTINCT day FROM t WHERE stored_at > {lo:DateTime64(6)}"}, r"parameter \{hi:"),
        ({"rows_sql": "SELECT day, product_id, n FROM t"}, r"parameter \{scopes:"),
    ],
)
def test_a_projection_that_cannot_work_is_refused(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(ProjectionError, match=problem):
        sample(**changes)


# -- binding ---------------------------------------------------------------------------------------


def test_bind_writes_typed_literals() -> None:
    moment = dt.datetime(2025, 11, 24, 17, 0, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    sql = bind(
        "SELECT {a:String}, {b:DateTime64(6)}, {c:Array(Date)}, {d:Bool}, {e:Int64}",
        {"a": "it's a \\ test", "b": moment, "c": [dt.date(2025, 1, 2)], "d": True, "e": -3},
    )
    assert sql == (
        "SELECT CAST('it\\'s a \\\\ test' AS String),"
        " CAST(fromUnixTimestamp64Micro(1764000000000005, 'UTC') AS DateTime64(6)),"
        " CAST([toDate('2025-01-02')] AS Array(Date)), CAST(true AS Bool), CAST(-3 AS Int64)"
    )
    assert micros(moment) == micros(moment.astimezone(dt.UTC)) == 1_764_000_000_000_005


def test_bind_substitutes_once_so_values_cannot_add_parameters() -> None:
    assert (
        bind("{a:String} {b:String}", {"a": "{b:String}", "b": "x"})
        == "CAST('{b:String}' AS String) CAST('x' AS String)"
    )


def test_bind_passes_sql_expressions_as_they_are() -> None:
    assert bind("has({s:Array(Int64)}, x)", {"s": Sql("SELECT [1]")}) == "has(CAST((SELECT [1]) AS Array(Int64)), x)"


@pytest.mark.parametrize("value", [dt.datetime(2025, 1, 1), float("nan"), b"raw", Decimal("NaN"), object()])
def test_values_without_a_safe_literal_are_refused(value: object) -> None:
    with pytest.raises(ProjectionError):
        literal(value)


def test_a_parameter_without_a_value_is_refused() -> None:
    with pytest.raises(ProjectionError, match=r"\{hi:DateTime64\(6\)\}"):
        bind(SCOPES, {"lo": dt.datetime(2025, 1, 1, tzinfo=dt.UTC)})


# -- storage SQL -----------------------------------------------------------------------------------


def test_storage_is_versioned_by_build_and_ordered_by_key() -> None:
    ddl = storage.table_ddl(sample(), "reports._sales")
    assert "ReplacingMergeTree(_version, _is_deleted) ORDER BY (day, product_id)" in ddl
    assert storage.view_ddl(sample()).endswith("FROM reports._sales FINAL WHERE _is_deleted = 0")


def test_a_refresh_is_one_insert_of_fresh_rows_and_tombstones_of_the_same_scopes() -> None:
    sql = bind(storage.refresh_sql(sample(), 7), {"scopes": [dt.date(2025, 1, 2)], "full": False})
    assert sql.count("INSERT INTO") == 1 and sql.startswith("INSERT INTO reports._sales (day, product_id, n,")
    assert "FROM reports._sales FINAL WHERE _is_deleted = 0 AND (CAST(false AS Bool) OR has(" in sql
    assert "min(_old) AS _is_deleted" in sql and "GROUP BY day, product_id" in sql


def test_a_build_result_without_a_version_did_nothing() -> None:
    assert BuildResult("p", "incremental", 0, 0, 0, None).skipped
    assert not BuildResult("p", "incremental", 1, 1, 0, None, version=5).skipped


class Unused:
    """A warehouse that must not be reached."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"warehouse.{name} was called")


def test_partition_needs_a_day_scoped_projection() -> None:
    with pytest.raises(ProjectionError, match="scoped by customer_id"):
        ProjectionBuilder(Unused()).partition(shop.customer_lifetime_value(), dt.date(2025, 1, 1))


# -- the shop's projections ------------------------------------------------------------------------


def test_the_shop_has_five_projections_found_by_name() -> None:
    assert [p.name for p in shop.PROJECTIONS] == [
        "revenue_daily_product",
        "order_funnel",
        "customer_lifetime_value",
        "orders_in_flight",
        "overdue_orders",
    ]
    assert shop.by_name("order_funnel") == shop.PROJECTIONS[1]
    with pytest.raises(ProjectionError, match="no shop projection 'nope'"):
        shop.by_name("nope")


def test_the_source_database_is_a_parameter() -> None:
    p = shop.by_name("revenue_daily_product", source="pizza")
    assert p.tables == ("pizza.products",)
    assert "pizza.products" in p.rows_sql and "source = 'pizza'" in p.rows_sql and "source = 'pizza'" in p.scopes_sql
    assert "shop" not in p.rows_sql


def test_lineage_names_events_the_shop_declares_or_generic_item_events() -> None:
    declared = set(load_modules(["cdc.demo.events"]).names()) | {
        "OrderItemCreated",
        "OrderItemUpdated",
        "OrderItemDeleted",
    }
    for p in shop.PROJECTIONS:
        assert p.event_types and set(p.event_types) <= declared, p.name
