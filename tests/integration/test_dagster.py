"""The Dagster project on real ClickHouse (chDB, opened in this process) and a real PostgreSQL:
the sensor over the event store's watermark, the projection assets and jobs, and every asset
check both holding and failing when its condition is broken on purpose.

Check tests use their own source name (a ClickHouse database of their own), so they do not see
each other's mirrors; the projection tests use the shop source the definitions are built for.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetChecksDefinition,
    AssetCheckSeverity,
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
from dagster_project import quality
from dagster_project.assets import lineage_specs, projection_assets
from dagster_project.checks import events_fresh, events_upcast_current, mirror_checks, report_fresh
from dagster_project.definitions import build_definitions
from dagster_project.gate import Gate
from dagster_project.jobs import upcast_job
from dagster_project.keys import mirror_key, projection_key
from dagster_project.resources import BridgeResource, SourceResource, WarehouseResource
from dagster_project.sensors import new_events_sensor
from dagster_project.tables import CapturedTable
from pipelines.freshness import report_lags
from tests.envelopes import envelope
from tests.fakes import StaticCatalog

SHOP_TABLES = [CapturedTable(shop.SOURCE, "public", t.split(".")[1], ("id",), events=True) for t in demo.DEMO_TABLES]
LINEAGE = lineage_specs(SHOP_TABLES)
PROJECTIONS = projection_assets(shop.PROJECTIONS, Gate())

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


def run_check(
    check: AssetChecksDefinition, instance: DagsterInstance | None = None, **resources: object
) -> tuple[bool, dict[str, Any]]:
    keys = list(check.check_keys)
    assert len(keys) == 1
    result = materialize(
        [AssetSpec(keys[0].asset_key), check],
        selection=AssetSelection.checks(check),
        resources=resources,
        instance=instance,
        raise_on_error=False,  # a failed blocking check fails its step
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
    """Order 1: placed with two pizzas of product 10, delivered on DAY; order 2: placed, baking, and
    overdue two minutes later (the delivery deadline's alert)."""
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
        _event(
            2,
            "OrderDeliveryOverdue",
            {"order_id": 2, "customer_id": 8, "placed_at": iso, "due_at": (at + dt.timedelta(minutes=2)).isoformat()},
            at + dt.timedelta(minutes=2),
            first_lsn + 5,
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
    definitions = build_definitions(
        {"warehouse": resource, "source": SourceResource(), "bridge": BridgeResource()},
        tables=SHOP_TABLES,
        projections=shop.PROJECTIONS,
    )
    job = definitions.resolve_job_def("full_rebuild")
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


class SlotReader:
    """A stand-in for a healthy bridge: consumes a logical slot continuously, so it keeps up with the WAL."""

    def __init__(self, source: PostgresSource, slot: str) -> None:
        self.source, self.slot = source, slot
        source.execute("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (slot,))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.source.query("SELECT count(*) FROM pg_logical_slot_get_changes(%s, NULL, NULL)", (self.slot,))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def drop(self) -> None:
        self.source.execute("SELECT pg_drop_replication_slot(%s)", (self.slot,))


def test_freshness_is_measured_against_source_activity(
    wh: ClickHouseWarehouse, resource: WarehouseResource, postgres: PostgresSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CDC_FRESHNESS_SECONDS", raising=False)
    monkeypatch.setattr(quality, "WAIT_S", 3.0)
    monkeypatch.setattr(quality, "_LAGS", {})
    source = unique_source()
    slot = f"cdc_{source}"
    t = CapturedTable(source, "public", "orders", ("id",), slot, "", True)
    (mirror_fresh,) = [c for c in mirror_checks(t) if next(iter(c.check_keys)).name == "fresh"]
    resources = {"warehouse": resource, "source": SourceResource(dsn=postgres.dsn)}
    passed, meta = run_check(mirror_fresh, **resources)
    assert not passed and meta["slot"] == slot  # no slot: nothing captures the source
    quality._LAGS.clear()  # one measurement stands for every table of a source for a while
    orders = schema(source, "orders", ("id",), Column("id", "int8", nullable=False), Column("status", "text"))
    hour_ago_ms = int(time.time() * 1000) - 3_600_000  # now, not at import: the suite may run for minutes first
    mirror(wh, orders, ("r", {"id": 1, "status": "placed"}, 10, hour_ago_ms))
    reader = SlotReader(postgres, slot)
    reader.start()
    try:
        # an hour since the table's last change, but the bridge keeps up with the source: fresh
        passed, meta = run_check(mirror_fresh, **resources)
        assert passed and meta["caught_up_within_seconds"] < 3, meta
        quality._LAGS.clear()
        assert run_check(events_fresh(t), **resources)[0]  # the event store's check measures the same way
    finally:
        reader.stop()
    try:
        # the bridge stopped while the source goes on: the newest applied commit is an hour old
        quality._LAGS.clear()
        postgres.execute("CREATE TABLE IF NOT EXISTS busy (id int)")
        postgres.execute("INSERT INTO busy VALUES (1)")
        passed, meta = run_check(mirror_fresh, **resources)
        assert not passed and meta["wal_bytes_behind"] > 0 and meta["lag_seconds_at_least"] > 3590, meta
        assert meta["limit_seconds"] == 300
        quality._LAGS.clear()
        monkeypatch.setenv("CDC_FRESHNESS_SECONDS", "7200")
        assert run_check(mirror_fresh, **resources)[0]
    finally:
        reader.drop()


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


def test_a_row_count_difference_before_the_bridge_caught_up_is_a_warning_not_a_stop(
    wh: ClickHouseWarehouse, resource: WarehouseResource, postgres: PostgresSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quality, "WAIT_S", 1.0)
    source = unique_source()
    t = CapturedTable(source, "public", "customers", ("id",), f"cdc_{source}")
    pg_rows = int(postgres.query("SELECT count(*) FROM customers")[0][0])
    mirror(wh, schema(source, "customers", ("id",), *CUSTOMER), ("r", {"id": 1, "name": "n", "email": "e"}, 11, NOW_MS))
    reader = SlotReader(postgres, t.slot)  # a slot nobody reads: the bridge is behind the source
    try:
        postgres.execute("INSERT INTO customers (id, name, email, address) VALUES (%s, 'x', %s, 'x')",
                         (1000 + pg_rows, f"x@{source}"))  # fmt: skip
        verdict = quality.row_counts(wh, postgres, t)
        assert not verdict.passed and not verdict.settled and "had not caught up" in verdict.description
        check = check_named(mirror_checks(t), "row_count_matches_postgres")
        evaluation = materialize(
            [AssetSpec(mirror_key(t)), check],
            selection=AssetSelection.checks(check),
            resources={"warehouse": resource, "source": SourceResource(dsn=postgres.dsn)},
            raise_on_error=False,
        ).get_asset_check_evaluations()[0]
        assert not evaluation.passed and evaluation.severity == AssetCheckSeverity.WARN  # gates nothing
        reader.start()  # the bridge catches up, the table is quiet: the difference is a finding
        verdict = quality.row_counts(wh, postgres, t, wait_s=10.0)
        assert not verdict.passed and verdict.settled
    finally:
        reader.stop()
        reader.drop()


def test_a_failed_blocking_check_stops_the_reports_built_on_it_until_it_passes(
    wh: ClickHouseWarehouse, resource: WarehouseResource, postgres: PostgresSource, shop_data: None
) -> None:
    source = unique_source()
    customers_table = CapturedTable(source, "public", "customers", ("id",))
    postgres.execute("INSERT INTO customers (id, name, email, address) VALUES (101, 'g', %s, 'x')", (f"g@{source}",))
    customers = schema(source, "customers", ("id",), *CUSTOMER)
    pg_rows = int(postgres.query("SELECT count(*) FROM customers")[0][0])
    mirror(wh, customers, *(("r", {"id": i, "name": "n", "email": "e"}, 10 + i, NOW_MS) for i in range(pg_rows - 1)))
    check = check_named(mirror_checks(customers_table), "row_count_matches_postgres")
    (funnel,) = [p for p in shop.PROJECTIONS if p.name == "order_funnel"]
    gate = Gate({funnel.name: tuple(check.check_keys)})
    report = projection_assets([funnel], gate)
    instance = DagsterInstance.ephemeral()
    resources = {"warehouse": resource, "source": SourceResource(dsn=postgres.dsn)}

    def build() -> Any:
        return materialize([*LINEAGE, *report], selection=[projection_key(funnel)], resources=resources,
                           instance=instance, raise_on_error=False)  # fmt: skip

    assert build().success  # the check has not run: nothing known to be wrong
    assert not run_check(check, instance, **resources)[0]
    failed = build()
    assert not failed.success and not failed.get_asset_materialization_events()
    (failure,) = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
    message = str(failure.event_specific_data.error.message)  # type: ignore[union-attr]
    assert "reports/order_funnel is not built" in message and "row_count_matches_postgres" in message
    assert f"PostgreSQL has {pg_rows} rows, the mirror {pg_rows - 1}" in message
    mirror(wh, customers, ("r", {"id": pg_rows, "name": "n", "email": "e"}, 10 + pg_rows, NOW_MS))
    assert run_check(check, instance, **resources)[0]
    built = build()
    assert built.success and _materializations(built)["order_funnel"]["rows_written"] >= 0


def test_events_behind_their_latest_version_fail_a_blocking_check_until_the_upcast_job_lifts_them(
    wh: ClickHouseWarehouse, resource: WarehouseResource
) -> None:
    source = unique_source()
    old = dataclasses.replace(
        placed(source, 1, NOW_MS),
        version=1,
        payload={"order_id": 1, "customer_id": 7, "address": "1 Elm St", "placed_at": "x"},
    )
    ClickHouseEventStore(wh).append([old])  # a writer that knew only v1: stored in its own shape
    modules = ("cdc.demo.events",)
    check = events_upcast_current(modules)
    passed, meta = run_check(check, warehouse=resource)
    assert not passed and meta["events_behind"] >= 1 and meta["OrderPlaced v1"] >= 1, meta
    result = upcast_job(modules).execute_in_process(resources={"warehouse": resource})
    assert result.success
    passed, meta = run_check(check, warehouse=resource)
    assert passed and meta["events_behind"] == 0, meta
    (latest,) = wh.query(
        "SELECT latest_version, JSONExtractString(payload_latest, 'delivery_address') FROM events.domain_events"
        " FINAL WHERE event_id = {id:UUID}",
        {"id": old.event_id},
    )
    assert latest == (2, "1 Elm St")


def test_report_freshness_is_its_watermark_against_the_event_store(
    wh: ClickHouseWarehouse, resource: WarehouseResource, shop_data: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    (funnel,) = [p for p in shop.PROJECTIONS if p.name == "order_funnel"]
    check = report_fresh(funnel)
    materialize([*LINEAGE, *PROJECTIONS], selection=[projection_key(funnel)], resources={"warehouse": resource})
    passed, meta = run_check(check, warehouse=resource)
    assert passed and meta["pending_events"] == 0 and meta["lag_seconds"] == 0, meta
    (lag,) = [r for r in report_lags(wh) if r.name == funnel.name]
    assert lag.pending_events == 0 and lag.watermark.isoformat() == meta["watermark"]
    ClickHouseEventStore(wh).append([placed(unique_source(), 1, NOW_MS)])  # stored after the build
    time.sleep(1.2)
    (lag,) = [r for r in report_lags(wh) if r.name == funnel.name]
    assert lag.pending_events == 1 and 1.0 <= lag.lag_s < 60
    monkeypatch.setenv("CDC_FRESHNESS_SECONDS", "0.5")
    passed, meta = run_check(check, warehouse=resource)
    assert not passed and meta["pending_events"] == 1, meta
    materialize([*LINEAGE, *PROJECTIONS], selection=[projection_key(funnel)], resources={"warehouse": resource})
    assert run_check(check, warehouse=resource)[0]  # built up to the newest event again
