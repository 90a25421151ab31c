"""``upcast_stored`` on real ClickHouse (chDB): events stored while only OrderPlaced v1 existed get the
v2 shape once v2 and its upcaster ship, the shop's projections then read the new field; a second run
changes nothing; an upcaster that raises is counted and named while the other events are upcast; a
store made before the latest-shape columns existed is migrated in place.
"""

from __future__ import annotations

import datetime as dt
import queue
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

from cdc.adapters.clickhouse import ClickHouseWarehouse
from cdc.consume.dead_letters import DeadLetters
from cdc.consume.loop import ConsumerService
from cdc.demo import events as shop_events
from cdc.demo.projections import orders_in_flight
from cdc.domain.events import EventRegistry, Payload, collecting, event, load_modules, upcaster
from cdc.events import worker
from cdc.events.lane import EventsLane
from cdc.events.reports import WorkerReport
from cdc.events.sink import DomainEventSink
from cdc.events.store import COLUMNS, ClickHouseEventStore, event_row, payload_json
from cdc.events.upcast import UpcastResult, any_behind, upcast_stored
from cdc.ports import OutRecord
from pipelines.builder import ProjectionBuilder
from tests.fakes import FakeBroker, FakeStream, StaticCatalog
from tests.integration.test_projections import Log, expected, view_rows

EVENTS = "events.domain_events"
# the store's table as it was before the latest-shape columns
OLD_DDL = (
    f"CREATE TABLE {EVENTS} ("
    " event_id UUID, event_type LowCardinality(String), version UInt16,"
    " aggregate_type LowCardinality(String), aggregate_id String, occurred_at DateTime64(3, 'UTC'),"
    " source LowCardinality(String), source_table LowCardinality(String), op LowCardinality(String),"
    " lsn UInt64, txid Nullable(Int64), sequence UInt16, correlation_id UUID, payload String,"
    " stored_at DateTime64(6, 'UTC') DEFAULT now64(6),"
    " INDEX event_id_idx event_id TYPE bloom_filter GRANULARITY 4"
    ") ENGINE = ReplacingMergeTree ORDER BY (aggregate_type, aggregate_id, lsn, sequence, event_id)"
)


@pytest.fixture
def wh(chdb_warehouse: ClickHouseWarehouse) -> ClickHouseWarehouse:
    """The module's chDB store with no events from earlier tests."""
    ClickHouseEventStore(chdb_warehouse)
    chdb_warehouse.command(f"TRUNCATE TABLE {EVENTS}")
    return chdb_warehouse


def _v1_only() -> EventRegistry:
    """The shop's OrderPlaced before v2 shipped."""
    registry = EventRegistry()
    with collecting(registry):
        event("OrderPlaced", version=1, aggregate="order", key="order_id")(shop_events.OrderPlacedV1)
    return registry


def _v2_failing_on(address: str) -> EventRegistry:
    """OrderPlaced v1 and v2 with an upcaster that raises on one stored payload."""
    registry = _v1_only()
    with collecting(registry):
        event("OrderPlaced", version=2, aggregate="order", key="order_id")(shop_events.OrderPlaced)

        @upcaster("OrderPlaced", from_version=1)
        def v1_to_v2(payload: Payload) -> Payload:
            if payload["address"] == address:
                raise ValueError(f"cannot read the address {address!r}")
            return shop_events.order_placed_v1_to_v2(payload)

    return registry


def _log() -> Log:
    log = Log(1_000)
    log.placed(100, 1, "2025-11-24T10:00:00.000000Z", v1=True)
    log.status(100, "placed", "baking", "2025-11-24T10:05:00Z")
    log.placed(101, 2, "2025-11-24T11:00:00.000000Z")  # v2 already: nothing to do for it
    log.placed(102, 3, "2025-11-24T12:00:00.000000Z", v1=True)
    return log


def _stored(wh: ClickHouseWarehouse, order: int) -> tuple[Any, ...]:
    """The order's OrderPlaced row as FINAL reads it: version, payload, latest_version, payload_latest."""
    return wh.query(
        f"SELECT version, payload, latest_version, payload_latest FROM {EVENTS} FINAL"
        " WHERE aggregate_id = {id:String} AND event_type = 'OrderPlaced'",
        {"id": str(order)},
    )[0]


def _physical(wh: ClickHouseWarehouse) -> tuple[int, int]:
    """(rows without FINAL, newest stored_at in µs): what a run wrote."""
    rows, newest = wh.query(f"SELECT count(), toUnixTimestamp64Micro(max(stored_at)) FROM {EVENTS}")[0]
    return int(rows), int(newest)


def test_events_stored_before_v2_get_its_shape_and_the_projections_see_the_new_field(wh: ClickHouseWarehouse) -> None:
    log = _log()
    ClickHouseEventStore(wh, _v1_only()).append(log.events)
    p = orders_in_flight()
    builder = ProjectionBuilder(wh, overlap=dt.timedelta(0))
    builder.full(p)
    assert [row[3] for row in view_rows(wh, p)] == ["", "101 Oak Ave", ""]  # v1 addresses are not in v2's field

    progress: list[int] = []
    result = upcast_stored(wh, load_modules(["cdc.demo.events"]), progress=lambda r: progress.append(r.done))

    assert (result.behind, result.rewritten, result.failed, result.failures) == (
        2,
        Counter({("OrderPlaced", 1): 2}),
        Counter(),
        [],
    )
    assert progress == [2] and result.targets == {"OrderPlaced": 2}
    version, payload, latest_version, latest = _stored(wh, 100)
    assert (version, payload, latest_version) == (1, payload_json(log.events[0]), 2)  # stored payload kept as it was
    assert '"delivery_address":"100 Elm St"' in latest and '"address"' not in latest
    rebuilt = builder.incremental(p)  # the rewritten rows' new stored_at brings their scopes back
    assert (rebuilt.scopes, rebuilt.rows) == (2, 2)
    assert view_rows(wh, p) == expected(p.name, log.events)
    assert [row[3] for row in view_rows(wh, p)] == ["100 Elm St", "101 Oak Ave", "102 Elm St"]


def test_a_second_run_finds_nothing_behind_and_writes_nothing(wh: ClickHouseWarehouse) -> None:
    ClickHouseEventStore(wh, _v1_only()).append(_log().events)
    shop = load_modules(["cdc.demo.events"])
    assert any_behind(wh, shop)
    upcast_stored(wh, shop)
    before = _physical(wh)

    again = upcast_stored(wh, shop)

    assert (again.behind, again.done, again.summary()) == (0, 0, ["every stored event is in its type's latest shape"])
    assert _physical(wh) == before


def test_a_failing_upcaster_is_counted_and_named_and_the_other_events_are_upcast(wh: ClickHouseWarehouse) -> None:
    log = _log()
    ClickHouseEventStore(wh, _v1_only()).append(log.events)
    registry = _v2_failing_on("102 Elm St")
    progress: list[tuple[int, int]] = []

    result = upcast_stored(wh, registry, batch_rows=1, progress=lambda r: progress.append((r.done, r.failed.total())))

    bad = next(e for e in log.events if e.aggregate_id == "102")
    assert result.rewritten == Counter({("OrderPlaced", 1): 1})
    assert result.failed == Counter({("OrderPlaced", 1): 1})
    assert [(f.event_id, f.event_type, f.version) for f in result.failures] == [(bad.event_id, "OrderPlaced", 1)]
    assert "ValueError: cannot read the address '102 Elm St'" in result.failures[0].error
    assert progress == [(1, 0), (2, 1)]  # one batch per event, the failed one did not stop the next
    assert any(bad.event_id in line for line in result.summary())
    assert _stored(wh, 100)[2] == 2
    assert _stored(wh, 102)[2:] == (1, payload_json(bad))  # left in its own shape, and still behind:
    again = upcast_stored(wh, registry)
    assert (again.behind, again.rewritten.total(), again.failed.total()) == (1, 0, 1)


def test_a_dry_run_counts_and_tries_but_writes_nothing(wh: ClickHouseWarehouse) -> None:
    ClickHouseEventStore(wh, _v1_only()).append(_log().events)
    before = _physical(wh)

    result = upcast_stored(wh, load_modules(["cdc.demo.events"]), dry_run=True)

    assert (result.dry_run, result.behind, result.rewritten) == (True, 2, Counter({("OrderPlaced", 1): 2}))
    assert result.summary() == ["would upcast 2 OrderPlaced v1 -> v2"]
    assert _physical(wh) == before and _stored(wh, 100)[2] == 1


def test_a_store_made_before_the_latest_shape_columns_is_migrated_in_place(wh: ClickHouseWarehouse) -> None:
    wh.command(f"DROP TABLE {EVENTS}")
    wh.command(OLD_DDL)
    legacy = _log().events[0]
    wh.insert("events", "domain_events", COLUMNS, [event_row(legacy)])

    ProjectionBuilder(wh).ensure(orders_in_flight())  # the builder's ensure runs the same DDL
    ClickHouseEventStore(wh)  # and again: idempotent

    columns = [name for (name,) in wh.query("SELECT name FROM system.columns WHERE table = 'domain_events'")]
    assert columns[columns.index("payload") :] == [
        "payload",
        "latest_version",
        "payload_upcast",
        "payload_latest",
        "stored_at",
    ]
    assert _stored(wh, 100) == (1, payload_json(legacy), 1, payload_json(legacy))  # its own shape until upcast
    result = upcast_stored(wh, load_modules(["cdc.demo.events"]))
    assert result.rewritten == Counter({("OrderPlaced", 1): 1})
    assert '"delivery_address":"100 Elm St"' in _stored(wh, 100)[3]


def test_an_upcast_result_summary_names_versions_per_type() -> None:
    result = UpcastResult({"OrderPlaced": 3}, rewritten=Counter({("OrderPlaced", 1): 5, ("OrderPlaced", 2): 1}))
    assert result.summary() == ["upcast 5 OrderPlaced v1 -> v3", "upcast 1 OrderPlaced v2 -> v3"]


class _Silent:
    """The lane's Kafka side, which upcasting the store never uses."""

    def publish(self, records: Sequence[OutRecord]) -> None:
        raise AssertionError("upcasting the store publishes nothing")

    def close(self) -> None:
        pass


def test_the_events_worker_upcasts_what_is_behind_before_it_consumes(wh: ClickHouseWarehouse) -> None:
    ClickHouseEventStore(wh, _v1_only()).append(_log().events)
    stream, publisher = FakeStream(FakeBroker(), "events", []), _Silent()
    sink = DomainEventSink(load_modules(["cdc.demo.events"]), StaticCatalog([]), publisher, ClickHouseEventStore(wh))
    lane = EventsLane(ConsumerService(stream, sink, DeadLetters(wh), "events"), sink, stream, publisher, wh)
    reports: queue.Queue[WorkerReport] = queue.Queue()

    worker._upcast_stored(lane, reports, 3)  # what run_worker does first

    assert (_stored(wh, 100)[2], _stored(wh, 102)[2]) == (2, 2)
    assert reports.get_nowait().epoch == 3  # the bridge kept hearing from the worker meanwhile
    again = lane.upcast_stored(lambda _: None)  # the replaced rows are still there until a merge: a FINAL look
    assert again is not None and (again.behind, again.done) == (0, 0)
    wh.command(f"OPTIMIZE TABLE {EVENTS} FINAL")  # merged: the cheap look alone sees nothing behind
    assert lane.upcast_stored(lambda _: None) is None
