"""The Dagster project on real ClickHouse (chDB, opened in this process) and a real PostgreSQL:
the sensor over the event store's watermark, the projection assets and jobs, and every asset
check both holding and failing when its condition is broken on purpose.

Check tests use their own source name (a ClickHouse database of their own), so they do not see
each other's mirrors; the projection tests use the shop source the definitions are built for.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetChecksDefinition,
    AssetSelection,
    AssetSpec,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    RunRequest,
    SensorResult,
    SkipReason,
    build_sensor_context,
    materialize,
)

from cdc.adapters.clickhouse import ClickHouseWarehouse, open_embedded
from cdc.adapters.postgres import PostgresSource
from cdc.demo import projections as shop
from cdc.demo import shop as demo
from cdc.domain.changes import Column, TableRef, TableSchema
from cdc.domain.events import DomainEvent, correlation_id, event_id
from cdc.embedded.net import free_port
from cdc.embedded.pg_cluster import EmbeddedPostgres
from cdc.events.store import ClickHouseEventStore
from cdc.mirror.sink import ClickHouseMirrorSink
from cdc.ports import Message
from dagster_project.assets import lineage_specs, projection_assets, projection_key
from dagster_project.checks import events_fresh, mirror_checks
from dagster_project.definitions import build_definitions
from dagster_project.resources import SourceResource, WarehouseResource
from dagster_project.sensors import new_events_sensor
from dagster_project.tables import CapturedTable, shop_tables
from tests.envelopes import envelope
from tests.fakes import StaticCatalog

LINEAGE = lineage_specs(shop_tables(shop.SOURCE))
PROJECTIONS = projection_assets(shop.PROJECTIONS)

DAY = dt.date(2025, 11, 24)
NOW_MS = int(time.time() * 1000)  # for data whose age does not matter; freshness tests read the clock themselves
PLACEHOLDER = "__debezium_unavailable_value"


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tmp_path_factory.mktemp("state"))


@pytest.fixture(scope="module")
def wh(state_dir: Path) -> Iterator[ClickHouseWarehouse]:
    """The module's store; the resource below opens a second client on it in this same process."""
    warehouse = open_embedded(state_dir)
    yield warehouse
    warehouse.close()


@pytest.fixture(scope="module")
def resource(wh: ClickHouseWarehouse, state_dir: Path) -> WarehouseResource:
    return WarehouseResource(state_dir=str(state_dir), in_process=True)


# -- mirrors through the real path (Debezium envelopes into the mirror's ingest table) ----------


def schema(source: str, table: str, key: tuple[str, ...], *columns: Column) -> TableSchema:
    return TableSchema(TableRef(source, "public", table), columns, key)


def mirror(wh: ClickHouseWarehouse, s: TableSchema, *changes: tuple[str, dict[str, Any] | None, int, int]) -> None:
    """Apply (op, row, lsn, commit ts ms) changes to ``s``'s mirror, as the bridge's consumer does."""
    sink = ClickHouseMirrorSink(wh, StaticCatalog([s]))
    sink.prepare([s])
    topic = s.ref.topic
    messages = [
        Message(
            topic,
            0,
            lsn,
            b"k",
            envelope(
                op,
                row if op == "d" else None,
                None if op == "d" else row,
                lsn=lsn,
                table=s.ref.table,
                source=s.ref.source,
                ts_ms=ts,
            ),
        )
        for op, row, lsn, ts in changes
    ]
    sink.write(topic, messages)


def unique_source() -> str:
    return f"src{uuid.uuid4().hex[:8]}"


def run_check(check: AssetChecksDefinition, **resources: object) -> tuple[bool, dict[str, Any]]:
    keys = list(check.check_keys)
    assert len(keys) == 1
    result = materialize(
        [AssetSpec(keys[0].asset_key), check], selection=AssetSelection.checks(check), resources=resources
    )
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation.passed, {k: v.value for k, v in evaluation.metadata.items()}


def check_named(checks: list[AssetChecksDefinition], name: str) -> AssetChecksDefinition:
    return next(c for c in checks if next(iter(c.check_keys)).name == name)


# -- the sensor ----------------------------------------------------------------------------------


def _event(
    order: int, kind: str, payload: dict[str, Any], at: dt.datetime, lsn: int, aggregate: str = "order"
) -> DomainEvent:
    table = "public.order_items" if aggregate == "order_item" else "public.orders"
    aggregate_id = str(payload.get("order_id")) if aggregate == "order" else f"{order}:{payload['line_no']}"
    return DomainEvent(
        event_id(shop.SOURCE, table, lsn, "u", aggregate_id, 0, kind),
        kind,
        2 if kind == "OrderPlaced" else 1,
        aggregate,
        aggregate_id,
        int(at.timestamp() * 1000),
        shop.SOURCE,
        table,
        "u",
        lsn,
        lsn,
        0,
        correlation_id(shop.SOURCE, lsn, lsn),
        payload,
    )


def shop_events(first_lsn: int) -> list[DomainEvent]:
    """Order 1: placed with two pizzas of product 10, delivered on DAY; order 2: placed, baking."""
    at = dt.datetime.combine(DAY, dt.time(12), dt.UTC)
    iso = at.isoformat()
    return [
        _event(
            1,
            "OrderPlaced",
            {
                "order_id": 1,
                "customer_id": 7,
                "delivery_address": "1 Oak Ave",
                "total": "16.00",
                "channel": "web",
                "placed_at": iso,
            },
            at,
            first_lsn,
        ),
        _event(
            1,
            "OrderItemCreated",
            {"order_id": 1, "line_no": 1, "product_id": 10, "quantity": 2, "unit_price": "8.00"},
            at,
            first_lsn + 1,
            "order_item",
        ),
        _event(1, "OrderDelivered", {"order_id": 1, "total": "16.00", "delivered_at": iso}, at, first_lsn + 2),
        _event(
            2,
            "OrderPlaced",
            {
                "order_id": 2,
                "customer_id": 8,
                "delivery_address": "2 Elm St",
                "total": "9.00",
                "channel": "web",
                "placed_at": iso,
            },
            at,
            first_lsn + 3,
        ),
        _event(
            2,
            "OrderStatusChanged",
            {"order_id": 2, "from_status": "placed", "to_status": "baking", "changed_at": iso},
            at,
            first_lsn + 4,
        ),
    ]


def placed(source: str, order: int, at_ms: int) -> DomainEvent:
    """An order placed in a source of its own (the sensor watches every source's events)."""
    return DomainEvent(
        event_id(source, "public.orders", order, "c", str(order), 0, "OrderPlaced"),
        "OrderPlaced",
        2,
        "order",
        str(order),
        at_ms,
        source,
        "public.orders",
        "c",
        order,
        None,
        0,
        correlation_id(source, None, order),
        {"order_id": order},
    )


def newest(wh: ClickHouseWarehouse) -> str:
    return str(wh.query("SELECT toString(max(stored_at)) FROM events.domain_events")[0][0])


def tick(
    resource: WarehouseResource, cursor: str | None, instance: DagsterInstance | None = None
) -> SensorResult | SkipReason:
    with build_sensor_context(
        cursor=cursor, resources={"warehouse": resource}, instance=instance or DagsterInstance.ephemeral()
    ) as context:
        result = new_events_sensor(15)(context)
    assert isinstance(result, SensorResult | SkipReason)
    return result


def test_sensor_skips_while_no_event_is_stored(resource: WarehouseResource) -> None:
    result = tick(resource, None)  # the first test of the module: nothing stored yet
    assert isinstance(result, SkipReason) and "no events stored yet" in (result.skip_message or "")


def test_sensor_requests_a_run_when_events_land_and_skips_when_idle(
    wh: ClickHouseWarehouse, resource: WarehouseResource
) -> None:
    store = ClickHouseEventStore(wh)
    store.append([placed(unique_source(), 1, NOW_MS)])
    first = tick(resource, None)
    assert isinstance(first, SensorResult) and first.cursor == newest(wh)
    (request,) = first.run_requests or []
    assert isinstance(request, RunRequest) and request.run_key == first.cursor

    idle = tick(resource, first.cursor)
    assert isinstance(idle, SkipReason) and "no new events" in (idle.skip_message or "")

    store.append([placed(unique_source(), 1, NOW_MS)])
    moved = tick(resource, first.cursor)
    assert isinstance(moved, SensorResult) and moved.cursor == newest(wh) and moved.cursor > first.cursor
    assert [r.run_key for r in moved.run_requests or []] == [moved.cursor]


def test_sensor_waits_while_a_build_run_is_in_progress(wh: ClickHouseWarehouse, resource: WarehouseResource) -> None:
    ClickHouseEventStore(wh).append([placed(unique_source(), 1, NOW_MS)])
    instance = DagsterInstance.ephemeral()
    run = DagsterRun(
        job_name="full_rebuild",
        run_id=str(uuid.uuid4()),
        status=DagsterRunStatus.STARTED,
        tags={"cdc/builds": "reports"},
    )
    instance.add_run(run)
    busy = tick(resource, None, instance)
    assert isinstance(busy, SkipReason) and run.run_id in (busy.skip_message or "")
    instance.report_run_canceled(run)  # once the run is over, the sensor goes on
    assert isinstance(tick(resource, None, instance), SensorResult)


# -- the projection assets and jobs --------------------------------------------------------------


@pytest.fixture(scope="module")
def shop_data(wh: ClickHouseWarehouse) -> None:
    products = schema(shop.SOURCE, "products", ("id",), Column("id", "int4", nullable=False), Column("name", "text"))
    mirror(wh, products, ("r", {"id": 10, "name": "Margherita"}, 10, NOW_MS))
    ClickHouseEventStore(wh).append(shop_events(100))


def _materializations(result: Any) -> dict[str, dict[str, Any]]:
    found = {}
    for event in result.get_asset_materialization_events():
        m = event.event_specific_data.materialization
        found[m.asset_key.path[-1]] = {k: v.value for k, v in m.metadata.items()}
    return found


def test_materializing_the_projections_builds_every_report(
    wh: ClickHouseWarehouse, resource: WarehouseResource, shop_data: None
) -> None:
    result = materialize(
        [*LINEAGE, *PROJECTIONS], selection=AssetSelection.groups("projections"), resources={"warehouse": resource}
    )
    built = _materializations(result)
    assert set(built) == {p.name for p in shop.PROJECTIONS}
    for p in shop.PROJECTIONS:
        rows = int(wh.query(f"SELECT count() FROM {p.view}")[0][0])
        assert rows > 0 and built[p.name]["dagster/row_count"] == rows, p.name
        assert built[p.name]["mode"] == "incremental"
        assert built[p.name]["watermark"] == built["order_funnel"]["watermark"]
    assert wh.query(
        "SELECT day, product_id, product_name, quantity, revenue, orders FROM reports.revenue_daily_product"
        f" WHERE day = '{DAY}'"
    ) == [(DAY, 10, "Margherita", 2, Decimal("16.00"), 1)]


def test_a_partitioned_run_rebuilds_its_day_only(resource: WarehouseResource, shop_data: None) -> None:
    revenue = next(a for a in PROJECTIONS if projection_key(shop.by_name("revenue_daily_product")) in a.keys)
    result = materialize(
        [*LINEAGE, revenue], selection=[revenue], partition_key=DAY.isoformat(), resources={"warehouse": resource}
    )
    meta = _materializations(result)["revenue_daily_product"]
    assert (meta["mode"], meta["scopes"], meta["rows_written"]) == ("scopes", 1, 1)
    assert [e.partition for e in result.get_asset_materialization_events()] == [DAY.isoformat()]


def test_full_rebuild_job_runs_a_full_build_of_every_projection(resource: WarehouseResource, shop_data: None) -> None:
    job = build_definitions({"warehouse": resource, "source": SourceResource()}).resolve_job_def("full_rebuild")
    built = _materializations(job.execute_in_process(instance=DagsterInstance.ephemeral()))
    assert {name: meta["mode"] for name, meta in built.items()} == {p.name: "full" for p in shop.PROJECTIONS}
    assert all(meta["rows_written"] == meta["dagster/row_count"] > 0 for meta in built.values())


# -- the asset checks ----------------------------------------------------------------------------

CUSTOMER = (Column("id", "int8", nullable=False), Column("name", "text"), Column("email", "text"))


def test_unique_keys_fails_when_the_mirror_keeps_two_rows_of_one_source_key(
    wh: ClickHouseWarehouse, resource: WarehouseResource
) -> None:
    source = unique_source()
    # a mirror keyed by (id, email) rather than the source's primary key (id): an e-mail change adds a row
    miskeyed = schema(source, "customers", ("id", "email"), *CUSTOMER)
    mirror(
        wh,
        miskeyed,
        ("r", {"id": 1, "name": "Ann", "email": "ann@a"}, 10, NOW_MS),
        ("r", {"id": 2, "name": "Bob", "email": "bob@b"}, 11, NOW_MS),
    )
    check = check_named(mirror_checks(CapturedTable(source, "public", "customers", ("id",))), "unique_keys")
    assert run_check(check, warehouse=resource) == (True, {"key": "id", "duplicated_keys": 0})
    mirror(wh, miskeyed, ("u", {"id": 1, "name": "Ann", "email": "ann@new"}, 12, NOW_MS))
    passed, meta = run_check(check, warehouse=resource)
    assert not passed and meta["duplicated_keys"] == 1 and meta["sample"] == "(1)"


@pytest.mark.parametrize(
    "row", [{"name": PLACEHOLDER, "tags": ["veg"]}, {"name": "Diavola", "tags": [PLACEHOLDER]}], ids=["string", "array"]
)
def test_no_toast_placeholders_fails_on_debeziums_placeholder(
    wh: ClickHouseWarehouse, resource: WarehouseResource, row: dict[str, Any]
) -> None:
    source = unique_source()
    products = schema(
        source,
        "products",
        ("id",),
        Column("id", "int4", nullable=False),
        Column("name", "text"),
        Column("tags", "text", is_array=True),
    )
    mirror(
        wh,
        products,
        ("r", {"id": 1, "name": "Margherita", "tags": ["veg"]}, 10, NOW_MS),
        ("r", {"id": 2, "name": "Diavola", "tags": []}, 11, NOW_MS),
    )
    check = check_named(mirror_checks(CapturedTable(source, "public", "products", ("id",))), "no_toast_placeholders")
    assert run_check(check, warehouse=resource)[0]
    mirror(wh, products, ("u", {"id": 2, **row}, 12, NOW_MS))  # an update that left a TOASTed value out
    assert run_check(check, warehouse=resource)[0]  # the mirror itself keeps the stored value (cdc.mirror.toast)
    # a state row written by something else (an older bridge, a manual load) still holding the placeholder
    wh.insert(
        source,
        "_state_products",
        ("id", "name", "tags", "_version", "_is_deleted", "_lsn", "_op"),
        [(2, row["name"], row["tags"], 13, 0, 13, "u")],
    )
    passed, meta = run_check(check, warehouse=resource)
    column = "name" if row["name"] == PLACEHOLDER else "tags"
    assert not passed and meta[f"column {column}"] == 1 and meta["placeholder_values"] == 1


def test_mirror_freshness_fails_when_the_newest_commit_is_older_than_the_limit(
    wh: ClickHouseWarehouse, resource: WarehouseResource, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = unique_source()
    orders = schema(source, "orders", ("id",), Column("id", "int8", nullable=False), Column("status", "text"))
    check = check_named(mirror_checks(CapturedTable(source, "public", "orders", ("id",))), "fresh")
    monkeypatch.delenv("CDC_FRESHNESS_SECONDS", raising=False)
    assert not run_check(check, warehouse=resource)[0]  # not mirrored yet
    hour_ago_ms = int(time.time() * 1000) - 3_600_000  # now, not at import: the suite may run for minutes first
    mirror(wh, orders, ("r", {"id": 1, "status": "placed"}, 10, hour_ago_ms))
    passed, meta = run_check(check, warehouse=resource)
    assert not passed and meta["limit_seconds"] == 300 and 3590 < meta["lag_seconds"] < 3700
    monkeypatch.setenv("CDC_FRESHNESS_SECONDS", "7200")
    assert run_check(check, warehouse=resource)[0]
    monkeypatch.delenv("CDC_FRESHNESS_SECONDS")
    mirror(wh, orders, ("u", {"id": 1, "status": "baking"}, 11, int(time.time() * 1000)))
    assert run_check(check, warehouse=resource)[0]


def test_event_freshness_fails_when_the_newest_event_is_older_than_the_limit(
    wh: ClickHouseWarehouse, resource: WarehouseResource, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CDC_FRESHNESS_SECONDS", raising=False)
    source = unique_source()
    check = events_fresh(source)
    store = ClickHouseEventStore(wh)
    assert not run_check(check, warehouse=resource)[0]  # no event of this source yet
    now_ms = int(time.time() * 1000)  # now, not at import: the suite may run for minutes first
    store.append([placed(source, 1, now_ms - 3_600_000)])
    passed, meta = run_check(check, warehouse=resource)
    assert not passed and meta["lag_seconds"] > 3590
    store.append([placed(source, 2, now_ms)])
    assert run_check(check, warehouse=resource)[0]


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresSource]:
    """The demo schema in a real PostgreSQL cluster (under a dir the postgres OS user can reach)."""
    path = Path(tempfile.mkdtemp(prefix="cdc-dagster-test-"))
    path.chmod(0o755)
    pg = EmbeddedPostgres(path / "pg", free_port())
    pg.start()
    try:
        pg.create_database(demo.DEMO_DATABASE)
        source = PostgresSource(pg.dsn(demo.DEMO_DATABASE))
        demo.install_schema(source)
        yield source
    finally:
        pg.stop()
        shutil.rmtree(path, ignore_errors=True)


def test_row_count_check_compares_the_mirror_with_postgres(
    wh: ClickHouseWarehouse, resource: WarehouseResource, postgres: PostgresSource
) -> None:
    source = unique_source()
    for i in (1, 2):
        postgres.execute(
            "INSERT INTO customers (id, name, email, address) VALUES (%s, %s, %s, 'x')", (i, f"c{i}", f"c{i}@{source}")
        )
    customers = schema(source, "customers", ("id",), *CUSTOMER)
    mirror(wh, customers, *(("r", {"id": i, "name": f"c{i}", "email": "e"}, 10 + i, NOW_MS) for i in (1, 2)))
    check = check_named(
        mirror_checks(CapturedTable(source, "public", "customers", ("id",))), "row_count_matches_postgres"
    )
    resources = {"warehouse": resource, "source": SourceResource(dsn=postgres.dsn)}
    assert run_check(check, **resources) == (True, {"postgres_rows": 2, "clickhouse_rows": 2, "difference": 0})
    postgres.execute("INSERT INTO customers (id, name, email, address) VALUES (3, 'c3', 'c3@x', 'x')")
    assert run_check(check, **resources) == (False, {"postgres_rows": 3, "clickhouse_rows": 2, "difference": -1})
